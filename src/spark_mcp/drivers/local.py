"""The local backend: a Spark Connect server JVM on this machine, from pyspark's own jars.

Each driver gets a free loopback port, a fresh random token passed in its environment
(never argv; a copy waits in a 0600 file for a server that re-adopts it), its own folder
under ``<home>/drivers/<id>`` with its log, scratch space, (in-memory catalog) warehouse and
private copies of its profile's credentials, and its profile's cores, memory and settings.
A driver that lives as long as its server gets the parent-death signal; a persistent one
does not, so it survives the server.

The standalone backend (``standalone``) is this backend with another master, executor
settings and a longer idea of ready; it overrides the hooks ``_master``, ``_cluster_settings``,
``_driver_address``, ``stage_files`` and ``_progress``.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import anyio
import structlog

from spark_mcp.config import Config
from spark_mcp.drivers.analysis_plugin import AnalysisPluginJar
from spark_mcp.drivers.base import Driver, DriverState, Lifetime, new_driver_token
from spark_mcp.drivers.class_cache import ClassCache
from spark_mcp.drivers.command_line import driver_argv, driver_env
from spark_mcp.drivers.credentials import StagedCredentials, stage
from spark_mcp.drivers.environment import check_java, spark_version
from spark_mcp.drivers.files import drivers_dir, ensure_private_dir, remove_secrets, remove_workdir, write_token
from spark_mcp.drivers.process import free_loopback_port, is_same_process, process_start_time, spawn, terminate
from spark_mcp.drivers.profiles import Profile
from spark_mcp.drivers.stuck_tasks import write_log_config
from spark_mcp.errors import DriverStartError

log = structlog.get_logger(__name__)

READY_LINE = "Spark Connect server started at"
_PORT_CLASH = re.compile(r"Address already in use|Failed to bind|BindException", re.IGNORECASE)
_INTERESTING = re.compile(r"\b(ERROR|FATAL)\b|Exception|Error:|Caused by|error:", re.IGNORECASE)
_PORT_ATTEMPTS = 3


@dataclass(frozen=True)
class DriverSpec:
    """What to start: a profile, how long it lives, and (hive catalog) whose metastore it opens."""

    profile: Profile
    lifetime: Lifetime = Lifetime.SERVER
    metastore_dir: Path | None = None  # None: the in-memory catalog
    principal: str | None = None  # whom it is started for (None: a spare, or a group's driver)


def log_excerpt(log_path: Path, *, limit: int = 12) -> str:
    """The lines of a driver log that explain a failure: errors first, then the tail."""
    try:
        lines = log_path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log was written)"
    interesting = [line for line in lines if _INTERESTING.search(line) and not line.startswith("\tat ")]
    tail = [line for line in lines[-6:] if line not in interesting]
    picked = (interesting[:limit] + tail)[: limit + 6]
    return "\n".join(f"  {line[:300]}" for line in picked) or "(the log is empty)"


OnLaunch = Callable[[Driver], None]


class LocalBackend:
    """Starts and stops driver JVMs on this machine."""

    name = "local"

    def __init__(self, config: Config, environ: Mapping[str, str]) -> None:
        self._config = config
        self._environ = dict(environ)
        self._classes = ClassCache.for_config(config, self._environ)
        self._plugin = AnalysisPluginJar.for_config(config, self._environ)
        self._plugin_jar: Path | None = None
        self._java: Path | None = None

    async def start(self, spec: DriverSpec, *, on_launch: OnLaunch | None = None) -> Driver:
        """A ready driver (listening, not yet prepared). ``on_launch`` sees it as soon as its process exists."""
        java = check_java(self._config.driver.java_home, self._environ)
        if java.problem or java.executable is None:
            raise DriverStartError(f"cannot start a Spark driver: {java.problem}. Run `spark-mcp doctor` for details.")
        self._java = java.executable
        # Compiled once per install (about 3 s), off the event loop.
        self._plugin_jar = await anyio.to_thread.run_sync(self._plugin.jar, java.executable)
        last_error: DriverStartError | None = None
        for _ in range(_PORT_ATTEMPTS):
            driver = self._launch(spec)
            if on_launch is not None:
                on_launch(driver)
            try:
                await self._wait_ready(driver)
                self._classes.started(java.executable, driver.id, driver.pid)
                return driver
            except DriverStartError as exc:
                last_error = exc
                if self._classes.to_blame(java.executable, driver.id, driver.log_path):
                    continue  # removed: started again without it
                if not _PORT_CLASH.search(driver.log_path.read_text(errors="replace")):
                    raise
                log.warning("driver.port_clash", driver_id=driver.id, port=driver.port)
            finally:
                self._classes.settled(driver.id)
        assert last_error is not None
        raise last_error

    def _launch(self, spec: DriverSpec) -> Driver:
        driver_id = f"drv-{secrets.token_hex(5)}"
        workdir = ensure_private_dir(drivers_dir(self._config.home) / driver_id)
        ensure_private_dir(workdir / "tmp")
        if spec.metastore_dir is not None:
            ensure_private_dir(spec.metastore_dir)
        port = free_loopback_port()
        token = new_driver_token()
        write_token(workdir, token)
        write_log_config(workdir)
        log_path = workdir / "driver.log"
        staged = stage(spec.profile, workdir)
        options = self.stage_files(workdir)
        assert self._java is not None  # found by ``start``
        java_options = self._classes.java_options(self._java, driver_id, workdir)
        argv = self.argv(
            spec, driver_id=driver_id, port=port, workdir=workdir, credentials=staged, options=options,
            java_options=java_options, plugin_jar=self._plugin_jar,
        )  # fmt: skip
        process = spawn(
            argv,
            env=driver_env(self._config, self._environ, token, staged),
            cwd=workdir,
            log_path=log_path,
            parent_death=spec.lifetime is Lifetime.SERVER,
        )
        driver = Driver(
            id=driver_id,
            profile=spec.profile.name,
            engine=spec.profile.engine,
            backend=self.name,
            host="localhost",  # the Python client sends a token without TLS only to "localhost"
            port=port,
            workdir=workdir,
            log_path=log_path,
            token=token,
            memory_bytes=spec.profile.memory_bytes,
            lifetime=spec.lifetime,
            process=process,
            pid=process.pid,
            pid_start=process_start_time(process.pid),
            spark_version=spark_version(),
        )
        log.info(
            "driver.starting",
            driver_id=driver_id,
            profile=spec.profile.name,
            port=port,
            pid=process.pid,
            lifetime=spec.lifetime.value,
        )
        return driver

    def argv(
        self,
        spec: DriverSpec,
        *,
        driver_id: str,
        port: int,
        workdir: Path,
        credentials: StagedCredentials,
        options: Sequence[str] = (),
        java_options: Sequence[str] = (),
        plugin_jar: Path | None = None,
    ) -> list[str]:
        """This backend's command line for a driver of ``spec`` (see ``driver_argv``)."""
        return driver_argv(
            self._config,
            spec,
            driver_id=driver_id,
            port=port,
            workdir=workdir,
            credentials=credentials,
            master=self._master(spec),
            cluster=self._cluster_settings(spec),
            driver_address=self._driver_address(),
            options=options,
            java_options=java_options,
            plugin_jar=plugin_jar,
        )

    # -- what the standalone backend changes -------------------------------------------------

    def stage_files(self, workdir: Path) -> list[str]:
        """Write what this backend's drivers read from their folder; the spark-submit options naming it."""
        return []

    def _master(self, spec: DriverSpec) -> str:
        return f"local[{spec.profile.cores}]"

    def _cluster_settings(self, spec: DriverSpec) -> list[tuple[str, str]]:
        return []

    def _driver_address(self) -> str:
        return "127.0.0.1"

    async def _progress(self, driver: Driver, *, listening: bool) -> bool:
        """Called on every poll while ``driver`` starts: True once it can take work. A backend that
        sees it never will calls ``_fail``; the exit and the deadline are checked here after it."""
        return listening

    # -- readiness and stopping ------------------------------------------------------------------

    async def _wait_ready(self, driver: Driver) -> None:
        assert driver.process is not None
        deadline = time.monotonic() + self._config.driver.startup_timeout_s
        offset = 0
        listening = False
        while True:
            try:
                with driver.log_path.open("r", errors="replace") as handle:
                    handle.seek(offset)
                    chunk = handle.read()
            except OSError:
                chunk = ""
            listening = listening or READY_LINE in chunk
            if await self._progress(driver, listening=listening):
                driver.state = DriverState.READY
                driver.ready_at = time.time()
                log.info("driver.ready", driver_id=driver.id, seconds=round(driver.ready_at - driver.started_at, 1))
                return
            # Keep the tail of what we read so a ready line split across reads is still seen.
            offset += max(0, len(chunk.encode()) - len(READY_LINE))
            code = driver.process.poll()
            if code is not None:
                await self._fail(driver, f"the driver exited with code {code} before it was ready")
            if time.monotonic() > deadline:
                await self._fail(
                    driver,
                    f"the driver was not ready within {self._config.driver.startup_timeout_s:g} s "
                    "(raise driver.startup_timeout_s on a slow machine)",
                )
            await anyio.sleep(0.1)

    async def _fail(self, driver: Driver, why: str, error: type[DriverStartError] = DriverStartError) -> NoReturn:
        driver.state = DriverState.FAILED
        await self.stop(driver)
        driver.state = DriverState.FAILED
        raise error(f"{why}. From its log ({driver.log_path}):\n{log_excerpt(driver.log_path)}")

    async def stop(self, driver: Driver) -> None:
        """Stop the JVM (SIGTERM, then SIGKILL after driver.stop_timeout_s) and remove its secrets.

        A driver that ended cleanly leaves nothing behind; a failed or lost one keeps its log.
        """
        pid, process = driver.pid, driver.process
        before = driver.state
        failed = before in (DriverState.FAILED, DriverState.LOST)  # its log is kept to say why
        alive = (
            process.poll() is None
            if process is not None
            else (pid is not None and is_same_process(pid, driver.pid_start))
        )
        if alive and pid is not None:
            driver.state = DriverState.STOPPING
            await anyio.to_thread.run_sync(
                lambda: terminate(pid, timeout_s=self._config.driver.stop_timeout_s, proc=process)
            )
        if process is not None:
            driver.exit_code = process.poll()
        java = self._java
        if java is not None:
            # A driver that recorded its classes leaves them for the archive (``class_cache``).
            await anyio.to_thread.run_sync(
                lambda: self._classes.stopped(
                    java,
                    driver.id,
                    driver.workdir,
                    was_ready=driver.ready_at is not None,
                    memory=self._config.driver.memory,
                )
            )
        if failed:
            driver.state = before
            remove_secrets(driver.workdir)
        else:
            driver.state = DriverState.STOPPED
            remove_workdir(driver.workdir)
        log.info("driver.stopped", driver_id=driver.id, exit_code=driver.exit_code)
