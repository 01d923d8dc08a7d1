"""The Sail engine on the local backend: pysail's Rust Spark Connect server as a driver.

A Sail driver is started and stopped the way ``local`` starts a JVM: spawned through
``process`` in a folder of its own (log, scratch space), on a free loopback port, with a
state file, and stopped with SIGTERM then SIGKILL. What differs:

- Sail has **no authentication**. It is bound to 127.0.0.1 and nothing else (``--ip`` is
  fixed here, never configurable); any process on this machine, of any OS user, can
  connect to its port. The README says what that means on a shared machine. A Sail driver
  still gets a random token, which the client sends and Sail ignores, so that sessions and
  reply redaction treat both engines alike; it protects nothing.
- Sail runs PySpark code in-process for Python UDFs and data sources, and reads the
  installed PySpark version to pick its Spark configuration table. The launcher puts a stub
  ``pyspark`` module (a version number and nothing else) in its place, so Sail uses the
  configuration of the newest Spark it knows, and any Python UDF or data source fails to
  load: a Sail driver cannot run code a client ships to it (``code.run`` is refused by
  construction, not only by policy).
- Sail keeps its catalog per session, so the configured datasets are registered in every
  new session (``Driver.session_setup``), not once per driver.
- Readiness is Sail's listening socket: the port is listened on by this very process (read
  from ``/proc`` on Linux, so a port taken by someone else is never mistaken for the
  driver), and a gRPC channel to it becomes ready.
"""

from __future__ import annotations

import importlib.util
import os
import re
import secrets
import socket
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import anyio
import structlog

from spark_mcp.config import Config
from spark_mcp.drivers.base import Driver, DriverState, Lifetime, new_driver_token
from spark_mcp.drivers.environment import spark_version
from spark_mcp.drivers.files import drivers_dir, ensure_private_dir, remove_workdir
from spark_mcp.drivers.local import DriverSpec, OnLaunch, log_excerpt
from spark_mcp.drivers.process import free_loopback_port, process_start_time, spawn, terminate
from spark_mcp.errors import DriverStartError
from spark_mcp.statement import SESSION_CATALOG

log = structlog.get_logger(__name__)

ENGINE = "sail"
_PORT_CLASH = re.compile(r"Address already in use|os error 98", re.IGNORECASE)
_PORT_ATTEMPTS = 3
# The newest Spark whose configuration table pysail 0.7 carries; newer clients get it too.
_NEWEST_SPARK_PROFILE = (4, 2)

# Runs Sail's CLI in this Python (same pid as the spawned process). argv[1] is a marker only
# this driver's command line carries (``spark-mcp drivers stop`` checks it before signalling).
_LAUNCHER = (
    "import sys, types\n"
    "stub = types.ModuleType('pyspark')\n"
    "stub.__version__ = sys.argv[2]\n"
    "sys.modules['pyspark'] = stub  # no PySpark: Python UDFs and data sources cannot load\n"
    "from pysail import _native\n"
    "_native.main(['sail', *sys.argv[3:]])\n"
)


def sail_available() -> str | None:
    """None when pysail can be imported here, else why not (for errors and ``doctor``)."""
    if importlib.util.find_spec("pysail") is None:
        return "the Sail engine needs the pysail package: install it (e.g. `uv add pysail`)"
    return None


def spark_profile(pyspark_version: str) -> str:
    """The Spark version Sail should emulate for a client of ``pyspark_version``."""
    match = re.match(r"(\d+)\.(\d+)", pyspark_version)
    wanted = (int(match.group(1)), int(match.group(2))) if match else _NEWEST_SPARK_PROFILE
    major, minor = min(wanted, _NEWEST_SPARK_PROFILE)
    return f"{major}.{minor}.0"


def sail_argv(*, driver_id: str, port: int, workdir: Path, profile: str) -> list[str]:
    """The command line. It holds no secret (Sail has none) and binds to loopback only."""
    return [
        sys.executable,
        "-c",
        _LAUNCHER,
        f"spark.mcp.driver.id={driver_id}",
        profile,
        "spark",
        "server",
        "--ip",
        "127.0.0.1",
        "--port",
        str(port),
        "-C",
        str(workdir),
    ]


def sail_env(config: Config, environ: Mapping[str, str], *, workdir: Path) -> dict[str, str]:
    """The driver's environment: Sail's settings are ours alone (inherited SAIL_* are dropped)."""
    env = {
        k: v
        for k, v in environ.items()
        if not k.startswith(("SPARK_MCP_", "SAIL_")) and k != "SPARK_CONNECT_AUTHENTICATE_TOKEN"
    }
    catalog = (
        f'[{{name="{SESSION_CATALOG}", type="memory", initial_database=["default"], '
        'initial_database_comment="default database"}]'
    )
    env.update(
        {
            "SAIL_MODE": "local",
            "SAIL_CATALOG__LIST": catalog,
            "SAIL_CATALOG__DEFAULT_CATALOG": SESSION_CATALOG,
            # Partitions per stage, the closest thing Sail has to local[N].
            "SAIL_EXECUTION__DEFAULT_PARALLELISM": str(config.driver.cores),
            # spark-mcp expires idle sessions itself; Sail must not drop one first (its default is 900 s).
            "SAIL_SPARK__SESSION_TIMEOUT_SECS": str(int(config.limits.session_idle_timeout_s) + 600),
            "TMPDIR": str(workdir / "tmp"),
        }
    )
    return env


def listener_owned_by(pid: int, port: int) -> bool | None:
    """Whether ``pid`` holds the socket listening on 127.0.0.1:``port`` (None: cannot tell here)."""
    try:
        table = Path("/proc/net/tcp").read_text()
    except OSError:
        return None
    wanted = f"0100007F:{port:04X}"
    rows = (line.split() for line in table.splitlines()[1:])
    inodes = {fields[9] for fields in rows if fields[1] == wanted and fields[3] == "0A"}  # 0A: LISTEN
    if not inodes:
        return False
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    links = set()
    for fd in fds:
        try:
            links.add(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except OSError:
            continue  # closed meanwhile (the listing's own descriptor, for one)
    return any(f"socket:[{inode}]" in links for inode in inodes)


def _tcp_listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def grpc_ready(port: int, timeout_s: float) -> bool:
    """A gRPC (HTTP/2) channel to the port becomes ready: a Spark Connect server answers there."""
    import grpc  # here, not with the module: it loads while Sail boots, not on serve's start-up path

    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        grpc.channel_ready_future(channel).result(timeout=timeout_s)
        return True
    except grpc.FutureTimeoutError:
        return False
    finally:
        channel.close()


class SailBackend:
    """Starts and stops Sail drivers on this machine."""

    name = "local"
    engine = ENGINE

    def __init__(self, config: Config, environ: Mapping[str, str], *, session_setup: tuple[str, ...] = ()) -> None:
        self._config = config
        self._environ = dict(environ)
        self._session_setup = session_setup

    async def start(self, spec: DriverSpec, *, on_launch: OnLaunch | None = None) -> Driver:
        """A ready Sail driver. It always lives as long as its server: with no token of its own
        and its catalog in its sessions, there is nothing a later server could safely re-adopt."""
        problem = sail_available()
        if problem:
            raise DriverStartError(f"cannot start a Sail driver: {problem}")
        last_error: DriverStartError | None = None
        for _ in range(_PORT_ATTEMPTS):
            driver = self._launch(spec)
            if on_launch is not None:
                on_launch(driver)
            try:
                await self._wait_ready(driver)
                return driver
            except DriverStartError as exc:
                last_error = exc
                if not _PORT_CLASH.search(driver.log_path.read_text(errors="replace")):
                    raise
                log.warning("driver.port_clash", driver_id=driver.id, port=driver.port)
        assert last_error is not None
        raise last_error

    def _launch(self, spec: DriverSpec) -> Driver:
        driver_id = f"drv-{secrets.token_hex(5)}"
        workdir = ensure_private_dir(drivers_dir(self._config.home) / driver_id)
        ensure_private_dir(workdir / "tmp")
        port = free_loopback_port()
        log_path = workdir / "driver.log"
        argv = sail_argv(driver_id=driver_id, port=port, workdir=workdir, profile=spark_profile(spark_version()))
        env = sail_env(self._config, self._environ, workdir=workdir)
        process = spawn(argv, env=env, cwd=workdir, log_path=log_path, parent_death=True)
        driver = Driver(
            id=driver_id,
            profile=spec.profile.name,
            backend=self.name,
            host="localhost",
            port=port,
            workdir=workdir,
            log_path=log_path,
            token=new_driver_token(),  # Sail checks no token: see the module docstring
            engine=ENGINE,
            memory_bytes=spec.profile.memory_bytes,
            lifetime=Lifetime.SERVER,
            process=process,
            pid=process.pid,
            pid_start=process_start_time(process.pid),
            spark_version=f"sail {_pysail_version()}",
            session_setup=self._session_setup,
        )
        log.info(
            "driver.starting", driver_id=driver_id, profile=spec.profile.name, port=port, pid=process.pid, engine=ENGINE
        )
        return driver

    async def _wait_ready(self, driver: Driver) -> None:
        assert driver.process is not None
        process = driver.process
        deadline = time.monotonic() + self._config.driver.startup_timeout_s
        while True:
            code = process.poll()
            if code is not None:
                await self._fail(driver, f"the Sail driver exited with code {code} before it was ready")
            owned = listener_owned_by(process.pid, driver.port)
            listening = owned if owned is not None else _tcp_listening(driver.port)
            answered = listening and await anyio.to_thread.run_sync(grpc_ready, driver.port, 2.0)
            if answered and process.poll() is None:  # still ours: a port lost to another process fails above
                driver.state = DriverState.READY
                driver.ready_at = time.time()
                log.info("driver.ready", driver_id=driver.id, seconds=round(driver.ready_at - driver.started_at, 2))
                return
            if time.monotonic() > deadline:
                await self._fail(
                    driver,
                    f"the Sail driver was not ready within {self._config.driver.startup_timeout_s:g} s "
                    "(raise driver.startup_timeout_s on a slow machine)",
                )
            await anyio.sleep(0.02)

    async def _fail(self, driver: Driver, why: str) -> None:
        driver.state = DriverState.FAILED
        await self.stop(driver)
        driver.state = DriverState.FAILED
        raise DriverStartError(f"{why}. From its log ({driver.log_path}):\n{log_excerpt(driver.log_path)}")

    async def stop(self, driver: Driver) -> None:
        """Stop the server (SIGTERM, then SIGKILL after driver.stop_timeout_s)."""
        if driver.process is not None and driver.process.poll() is None:
            driver.state = DriverState.STOPPING
            process = driver.process
            await anyio.to_thread.run_sync(
                lambda: terminate(process.pid, timeout_s=self._config.driver.stop_timeout_s, proc=process)
            )
        if driver.process is not None:
            driver.exit_code = driver.process.poll()
        if driver.state not in (DriverState.FAILED, DriverState.LOST):
            driver.state = DriverState.STOPPED
            remove_workdir(driver.workdir)  # a failed or lost one keeps its log
        log.info("driver.stopped", driver_id=driver.id, exit_code=driver.exit_code, engine=ENGINE)


def _pysail_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("pysail")
    except PackageNotFoundError:
        return "unknown"
