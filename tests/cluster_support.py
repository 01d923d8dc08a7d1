"""A real Spark standalone cluster on loopback: a master and workers from pyspark's own jars.

``StandaloneCluster.start(root, workers=2, secret=...)`` runs ``spark-class ...deploy.master.Master`` and
``...deploy.worker.Worker`` (1 core, 1g each, their own work directories under ``root``),
each in its own process group (with ``secret``, ``spark.authenticate`` on, the secret in a
0600 properties file), waits until the master lists every worker alive, and
``stop()`` ends every group (SIGTERM, then SIGKILL). ``SPARK_LOCAL_IP`` keeps their web UIs on
loopback (they bind every address otherwise). The master's own JSON status is the witness
the tests read: which applications it runs, and on which workers their executors are.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spark_mcp.drivers.environment import spark_home
from spark_mcp.drivers.process import free_loopback_port

_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def get_json(url: str) -> Any:
    with _NO_PROXY.open(url, timeout=10) as response:
        return json.loads(response.read())


def poll(condition: Callable[[], Any], *, timeout_s: float, what: str) -> Any:
    """``condition()`` once it is truthy, polled within a deadline (for code outside an event loop)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            value = condition()
        except (OSError, ValueError):  # not listening yet, or a web UI still starting (an empty body)
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not happen within {timeout_s:g} s")
        time.sleep(0.2)


def _distinct_ports(count: int, avoid: set[int] | None = None) -> list[int]:
    """``count`` free loopback ports, none of them in ``avoid`` nor twice."""
    found: list[int] = []
    while len(found) < count:
        port = free_loopback_port()
        if port not in found and port not in (avoid or set()):
            found.append(port)
    return found


@dataclass
class Daemon:
    name: str
    process: subprocess.Popen[bytes]
    log: Path
    ui_port: int


@dataclass
class StandaloneCluster:
    root: Path
    master_port: int
    ui_port: int
    secret: str | None = None
    daemons: list[Daemon] = field(default_factory=list)

    @property
    def master_url(self) -> str:
        return f"spark://127.0.0.1:{self.master_port}"

    @property
    def ui_url(self) -> str:
        return f"http://127.0.0.1:{self.ui_port}"

    def status(self) -> dict[str, Any]:
        """The master's JSON status (``workers``, ``activeapps``, ``completedapps``...)."""
        status = get_json(f"{self.ui_url}/json/")
        assert isinstance(status, dict)
        return status

    def active_apps(self) -> dict[str, dict[str, Any]]:
        """The master's running and waiting applications, by name (``spark-mcp-<driver id>``)."""
        return {app["name"]: app for app in self.status()["activeapps"]}

    def worker_executors(self) -> dict[str, list[dict[str, Any]]]:
        """Each worker's running executors, from the worker's own JSON, by worker UI address."""
        found = {}
        for worker in self.status()["workers"]:
            if worker["state"] == "ALIVE":
                found[worker["webuiaddress"]] = get_json(f"{worker['webuiaddress']}/json/")["executors"]
        return found

    def executor_logs(self, app_id: str) -> list[Path]:
        """The stderr of every executor of ``app_id`` the workers ran (``<work dir>/<app>/<executor>/stderr``)."""
        return sorted(self.root.glob(f"worker-*/work/{app_id}/*/stderr"))

    # -- starting and stopping -------------------------------------------------------------

    @classmethod
    def start(
        cls, root: Path, *, workers: int = 2, secret: str | None = None, timeout_s: float = 180
    ) -> StandaloneCluster:
        ports = _distinct_ports(2)
        cluster = cls(root, ports[0], ports[1], secret)
        try:
            cluster._spawn(
                "master",
                "org.apache.spark.deploy.master.Master",
                ["--host", "127.0.0.1", "--port", str(cluster.master_port), "--webui-port", str(cluster.ui_port)],
                cluster.ui_port,
            )
            poll(lambda: cluster.status()["status"] == "ALIVE", timeout_s=timeout_s, what="the master starting")
            for index in range(workers):
                work = root / f"worker-{index}" / "work"
                work.mkdir(parents=True)
                ui = _distinct_ports(
                    1, avoid={cluster.master_port, cluster.ui_port, *(d.ui_port for d in cluster.daemons)}
                )[0]
                cluster._spawn(
                    f"worker-{index}",
                    "org.apache.spark.deploy.worker.Worker",
                    [
                        cluster.master_url,
                        *("--cores", "1", "--memory", "1g", "--host", "127.0.0.1"),
                        *("--webui-port", str(ui), "--work-dir", str(work)),
                    ],
                    ui,
                )
            poll(
                lambda: cluster.status()["aliveworkers"] == workers,
                timeout_s=timeout_s,
                what=f"{workers} workers registering with the master",
            )
        except BaseException:
            cluster.stop()
            raise
        return cluster

    def _spawn(self, name: str, main: str, args: list[str], ui_port: int) -> None:
        log = self.root / f"{name}.log"
        if self.secret is not None:
            conf = self.root / "auth.properties"
            if not conf.exists():
                fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "w") as out:
                    out.write(f"spark.authenticate=true\nspark.authenticate.secret={self.secret}\n")
            args = [*args, "--properties-file", str(conf)]
        env = {
            **os.environ,
            "SPARK_HOME": str(spark_home()),
            "SPARK_LOCAL_IP": "127.0.0.1",  # the web UIs bind every address without it
            "SPARK_LOG_DIR": str(self.root),
            "SPARK_WORKER_DIR": str(self.root),
            "SPARK_DAEMON_MEMORY": "256m",
        }
        with log.open("ab") as out:
            process = subprocess.Popen(
                [str(spark_home() / "bin" / "spark-class"), main, *args],
                env=env,
                cwd=self.root,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stop() ends the JVM and its children
            )
        self.daemons.append(Daemon(name, process, log, ui_port))

    def stop_daemon(self, daemon: Daemon, *, timeout_s: float = 30) -> None:
        """SIGTERM its process group, then SIGKILL whatever of the group is left (its executors included)."""
        try:
            os.killpg(daemon.process.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        with contextlib.suppress(subprocess.TimeoutExpired):
            daemon.process.wait(timeout=timeout_s)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(daemon.process.pid, signal.SIGKILL)
        daemon.process.wait(timeout=10)

    def stop(self) -> None:
        """Workers first (they would otherwise try to reconnect), then the master."""
        for daemon in reversed(self.daemons):
            self.stop_daemon(daemon)
        self.daemons.clear()
