"""The standalone backend: drivers in client mode against a Spark standalone master.

A driver is the local backend's process (same folder, token, argv order, supervision and
stopping) with ``--master spark://...`` and an explicit executor ask (``executors``), so its
work runs on the cluster's workers. What differs is when it is ready, and how it fails:

- Before anything starts, the master's port must accept a connection; a master that is down
  is ``ClusterUnreachable`` at once, and nothing was started. A master that takes the
  connection but refuses the driver (``spark.authenticate`` without the right secret, another
  protocol) says so in the driver's log, and is ``ClusterUnreachable`` as soon as it does.
- The driver is ready when its Connect server listens *and* an executor has registered with
  it. In client mode a driver starts fine on a cluster without room and then waits for
  executors forever; so once the driver's log names its application, the master's status
  (``master_status``) is read, and a cluster with no free cores or memory for one executor
  is ``ClusterBusy`` at once. Without a readable status, the driver start deadline decides.
- With ``driver.cluster_secret_file``, the driver authenticates to the cluster (and encrypts
  its RPC); the secret reaches it in a 0600 properties file in its credentials folder.
- Any failure stops the driver (its application ends on the master with it) before the
  error is raised; the fleet then forgets it, so no process, state row or application is left.
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import structlog

from spark_mcp.config import Config, master_addresses
from spark_mcp.drivers.base import Driver
from spark_mcp.drivers.executors import ExecutorAsk
from spark_mcp.drivers.files import LogFollower, ensure_private_dir, write_private
from spark_mcp.drivers.local import DriverSpec, LocalBackend, OnLaunch
from spark_mcp.drivers.master_status import app_verdict, fetch_status
from spark_mcp.errors import ClusterBusy, ClusterUnreachable, DriverStartError

log = structlog.get_logger(__name__)

_MIB = 1024**2
_CONNECT_TIMEOUT_S = 5.0
_STATUS_EVERY_S = 1.0

# What a driver's own log says about its cluster (StandaloneSchedulerBackend, StandaloneAppClient).
_APP_ID = re.compile(r"Connected to Spark cluster with app ID (\S+)")
_GRANTED = re.compile(r"Granted executor ID (\S+) on hostPort")
_REGISTERED = "Registered executor"
_REMOVED = re.compile(r"Executor (\S+) removed: (.*)")
_KILLED = re.compile(r"Application has been killed\. Reason: (.*)")
_UNRESPONSIVE = "All masters are unresponsive"
_REFUSED = "Failed to connect to master"
_SECRET = re.compile(r"[!-\[\]-~]{8,1024}")  # printable ASCII but space and backslash


@dataclass
class ClusterLog:
    """What a driver's log has said so far about its application and executors."""

    app_id: str | None = None
    granted: int = 0
    registered: int = 0
    last_removed: str | None = None
    killed: str | None = None
    unresponsive: bool = False
    refused: str | None = None  # why the master refused a connection ("Caused by: ..."), or "" before it is known
    _cause_wanted: bool = field(default=False, repr=False)

    def feed(self, line: str) -> None:
        if self._cause_wanted and line.startswith("Caused by: "):
            self.refused, self._cause_wanted = line.removeprefix("Caused by: ").strip()[:300], False
        elif _REFUSED in line and self.app_id is None:
            self.refused, self._cause_wanted = "", True
        elif (match := _APP_ID.search(line)) is not None:
            self.app_id = match.group(1)
        elif _GRANTED.search(line):
            self.granted += 1
        elif _REGISTERED in line:
            self.registered += 1
        elif (match := _REMOVED.search(line)) is not None:
            self.last_removed = match.group(2).strip()[:200]
        elif (match := _KILLED.search(line)) is not None:
            self.killed = match.group(1).strip()[:200]
        elif _UNRESPONSIVE in line:
            self.unresponsive = True


def read_cluster_log(path: Path) -> ClusterLog:
    seen = ClusterLog()
    for line in LogFollower(path).lines():
        seen.feed(line)
    return seen


def read_cluster_secret(path: Path) -> str:
    """The cluster's ``spark.authenticate`` secret: one line of printable ASCII (no spaces or backslashes,
    which a properties file would change), ``ValueError`` otherwise."""
    secret = path.read_text().strip()
    if not _SECRET.fullmatch(secret):
        raise ValueError("must hold one secret of 8 to 1024 printable ASCII characters, without spaces or '\\'")
    return secret


def check_reachable(master: str, *, timeout_s: float = _CONNECT_TIMEOUT_S) -> str | None:
    """None when some master of ``master`` accepts a TCP connection, else what went wrong with each."""
    problems = []
    for host, port in master_addresses(master):
        try:
            with socket.create_connection((host, port), timeout=timeout_s):
                return None
        except OSError as exc:
            problems.append(f"{host}:{port}: {exc.strerror or exc}")
    return "; ".join(problems)


class StandaloneBackend(LocalBackend):
    """Starts drivers in client mode against ``driver.master``; stops them as the local backend does."""

    name = "standalone"

    def __init__(self, config: Config, environ: Mapping[str, str]) -> None:
        super().__init__(config, environ)
        if config.driver.master is None:  # config validation makes this unreachable
            raise ValueError("the standalone backend needs driver.master")
        self.master = config.driver.master
        self._ui = config.driver.master_ui_url
        self._watching: dict[str, _Watch] = {}

    async def start(self, spec: DriverSpec, *, on_launch: OnLaunch | None = None) -> Driver:
        problem = await anyio.to_thread.run_sync(check_reachable, self.master)
        if problem is not None:
            raise ClusterUnreachable(
                f"the Spark master {self.master} is not reachable ({problem}). Start the master or fix "
                "driver.master, then try again (`spark-mcp doctor` checks it); no driver was started."
            )
        launched: list[Driver] = []

        def seen(driver: Driver) -> None:
            launched.append(driver)
            self._watching[driver.id] = _Watch(LogFollower(driver.log_path), spec.profile.executors)
            if on_launch is not None:
                on_launch(driver)

        try:
            return await super().start(spec, on_launch=seen)
        except (ClusterUnreachable, ClusterBusy):
            raise
        except DriverStartError as exc:
            # It died, or the deadline passed: say what the cluster did (or did not) do for it.
            if not launched:
                raise
            cluster = read_cluster_log(launched[-1].log_path)
            if cluster.app_id is None:
                raise ClusterUnreachable(f"{self._unregistered(cluster)} {exc.message}") from exc
            if cluster.registered == 0:
                raise ClusterBusy(f"{self._no_executor(cluster)}. {exc.message}") from exc
            raise
        finally:
            for driver in launched:
                self._watching.pop(driver.id, None)

    # -- the hooks of the local backend ------------------------------------------------------

    def _master(self, spec: DriverSpec) -> str:
        return self.master

    def _cluster_settings(self, spec: DriverSpec) -> list[tuple[str, str]]:
        assert spec.profile.executors is not None  # profiles of this backend always have one
        auth = []
        if self._config.driver.cluster_secret_file is not None:
            # Authenticate to the master, workers and executors with the cluster's secret, and encrypt
            # RPC and block transfers with keys derived from it (AES; SASL toward daemons without it).
            auth = [("spark.authenticate", "true"), ("spark.network.crypto.enabled", "true")]
        return spec.profile.executors.settings + auth

    def stage_files(self, workdir: Path) -> list[str]:
        """With a cluster secret: a 0600 properties file holding it, in the driver's credentials folder.

        Spark wants the secret of a standalone cluster in its configuration
        (``spark.authenticate.secret``); a properties file keeps it out of argv. The folder is
        removed when the driver stops or fails, as its other credentials are.
        """
        secret_file = self._config.driver.cluster_secret_file
        if secret_file is None:
            return []
        try:
            secret = read_cluster_secret(secret_file)
        except (OSError, ValueError) as exc:
            raise DriverStartError(f"driver.cluster_secret_file {secret_file}: {exc}") from exc
        path = ensure_private_dir(workdir / "credentials") / "cluster.properties"
        write_private(path, f"spark.authenticate.secret={secret}\n".encode())
        return ["--properties-file", str(path)]

    def _driver_address(self) -> str:
        return self._config.driver.cluster_address

    async def _progress(self, driver: Driver, *, listening: bool) -> bool:
        """Ready once the Connect server listens and an executor has registered; fail as soon as none can."""
        watch = self._watching.get(driver.id)
        if watch is None:  # not started by ``start`` (cannot happen): judge by the local rule
            return listening
        for line in watch.follower.lines():
            watch.seen.feed(line)
        seen = watch.seen
        if listening and seen.registered:
            log.info("driver.executors", driver_id=driver.id, app_id=seen.app_id, registered=seen.registered)
            return True
        if seen.killed or seen.unresponsive:
            why = seen.killed or "all masters are unresponsive"
            await self._fail(
                driver, f"the Spark master {self.master} ended the driver's application: {why}", ClusterUnreachable
            )
        if seen.refused is not None and len(master_addresses(self.master)) == 1:
            # Its one master took the TCP connection but refused the driver (with several, another may take it).
            await self._fail(driver, self._unregistered(seen), ClusterUnreachable)
        now = time.monotonic()
        if seen.app_id and not seen.registered and self._ui and now >= watch.next_status:
            watch.next_status = now + _STATUS_EVERY_S
            status = await anyio.to_thread.run_sync(fetch_status, self._ui)
            why_not = None if status is None else app_verdict(status, seen.app_id, **_one_executor(watch.ask))
            if why_not is not None:
                await self._fail(driver, f"{why_not}. {_BUSY_ADVICE}", ClusterBusy)
        return False

    # -- explaining ----------------------------------------------------------------------------

    def _unregistered(self, seen: ClusterLog) -> str:
        cause = f" ({seen.refused})" if seen.refused else ""
        return (
            f"the driver could not register with the Spark master {self.master}{cause}: check that a Spark "
            "master of a compatible version runs there and accepts this machine, and that spark.authenticate "
            "and its secret (driver.cluster_secret_file) match the cluster's."
        )

    def _no_executor(self, seen: ClusterLog) -> str:
        if seen.granted:
            last = f" (last: {seen.last_removed})" if seen.last_removed else ""
            return (
                f"the cluster granted {seen.granted} executor(s) to application {seen.app_id}, but none connected "
                f"back to the driver{last}. The workers must reach this machine at driver.cluster_address = "
                f"{self._config.driver.cluster_address}"
            )
        return f"application {seen.app_id} got no executor. {_BUSY_ADVICE}"


@dataclass
class _Watch:
    """What ``_progress`` knows of one starting driver."""

    follower: LogFollower
    ask: ExecutorAsk | None
    seen: ClusterLog = field(default_factory=lambda: ClusterLog())
    next_status: float = 0.0


def _one_executor(ask: ExecutorAsk | None) -> dict[str, int]:
    """One executor of an ask, as the master counts it on a worker (cores, MiB)."""
    if ask is None:
        return {"executor_cores": 1, "executor_memory_mb": 1024}  # Spark's defaults
    return {"executor_cores": ask.executor_cores or 1, "executor_memory_mb": max(1, ask.executor_memory // _MIB)}


_BUSY_ADVICE = (
    "The driver was stopped and its application ended on the master. Try again when other work on the cluster "
    "ends, use a profile that asks for fewer or smaller executors (spark.cores.max, spark.executor.cores, "
    "spark.executor.memory), or add workers"
)
