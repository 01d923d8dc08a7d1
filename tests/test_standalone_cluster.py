"""Drivers on a real Spark standalone cluster: a master and two workers on loopback.

The cluster (``cluster_support``) has two workers of one core and 1g each, and requires
``spark.authenticate`` with a secret, which the server's drivers get from
``driver.cluster_secret_file`` (a driver without it is refused). Every driver of
the ``standalone`` backend here asks for one executor of one core and 512m
(``spark.cores.max`` = 1), so two principals fill the cluster: the third finds no free core.
The master's own JSON status, the workers' JSON and the executors' own logs in the workers'
work directories are the witnesses that the work ran on the cluster.
"""

from __future__ import annotations

import os
import secrets
import socket
import stat
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client

from spark_mcp.app import App
from spark_mcp.config import Config
from spark_mcp.doctor import run_checks
from spark_mcp.server import build_server
from tests.cluster_support import StandaloneCluster, poll
from tests.fleet_support import driver_rows
from tests.helpers import call, call_error, make_config

pytestmark = [pytest.mark.anyio, pytest.mark.spark]

LINEITEM_ROWS = 60175  # TPC-H scale 0.01
STARTUP_TIMEOUT_S = 240.0  # a loaded two-core machine; the tests' own deadlines add a margin
MIB = 1024**2


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StandaloneCluster]:
    running = StandaloneCluster.start(tmp_path_factory.mktemp("cluster"), workers=2, secret=secrets.token_urlsafe(24))
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def secret_file(tmp_path_factory: pytest.TempPathFactory, cluster: StandaloneCluster) -> Path:
    """The cluster's secret, as an operator gives it to spark-mcp: a 0600 file of the server's user."""
    assert cluster.secret is not None
    path = tmp_path_factory.mktemp("secret") / "cluster-secret"
    path.write_text(cluster.secret + "\n")
    path.chmod(0o600)
    return path


def standalone_config(home: Path, data_dir: Path, master: str, ui: str | None, **driver: Any) -> Config:
    return make_config(
        home,
        data_dir,
        datasets=[
            {"name": f"tpch.{t}", "path": str(data_dir / "tpch" / f"{t}.parquet")} for t in ("lineitem", "nation")
        ],
        driver={
            "backend": "standalone",
            "master": master,
            "master_ui": ui,
            "cores": 1,
            "memory": "512m",
            "startup_timeout_s": STARTUP_TIMEOUT_S,
            "spark_conf": {"spark.executor.cores": "1", "spark.executor.memory": "512m"},
            **driver,
        },
    )


@pytest.fixture(scope="module")
async def cluster_app(
    tmp_path_factory: pytest.TempPathFactory, data_dir: Path, cluster: StandaloneCluster, secret_file: Path
) -> AsyncIterator[App]:
    config = standalone_config(
        tmp_path_factory.mktemp("cluster-home"),
        data_dir,
        cluster.master_url,
        cluster.ui_url,
        cluster_secret_file=str(secret_file),
    )
    async with App.running(config, environ=dict(os.environ)) as app:
        yield app


def client(app: App, user: str) -> Client:
    return Client(build_server(app=app, user=user), mode="auto")


def home_driver_pids(home: Path) -> set[int]:
    """Live driver processes started for ``home`` (their command line names its folder)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if b"spark.mcp.driver.id=" in cmdline and str(home / "drivers").encode() in cmdline:
                found.add(int(entry.name))
    return found


async def session_of(app: App, user: str) -> dict[str, Any]:
    async with client(app, user) as c:
        return await call(c, "create_session")


async def test_each_principals_work_runs_on_the_workers_executors_one_application_per_driver(
    cluster_app: App, cluster: StandaloneCluster
) -> None:
    drivers = {}
    for user in ("alice", "bob"):
        async with client(cluster_app, user) as c:
            session = await call(c, "create_session")
            result = await call(c, "run_sql", sql="select count(*) as n from tpch.lineitem where l_quantity > 0")
            assert result["rows"] == [[LINEITEM_ROWS]]
            drivers[user] = session["driver_id"]
    assert drivers["alice"] != drivers["bob"]

    # The master runs one application per principal's driver, named after it, each holding its one core.
    apps = cluster.active_apps()
    mine = {user: apps[f"spark-mcp-{driver_id}"] for user, driver_id in drivers.items()}
    assert {app["state"] for app in mine.values()} == {"RUNNING"}
    assert [app["cores"] for app in mine.values()] == [1, 1]
    assert [app["memoryperexecutor"] for app in mine.values()] == [512, 512]
    app_ids = {app["id"] for app in mine.values()}
    assert len(app_ids) == 2

    # Each worker (one core each) runs exactly one executor, one of each application...
    executors = cluster.worker_executors()
    assert sorted(len(found) for found in executors.values()) == [1, 1]
    assert {e["appid"] for found in executors.values() for e in found} == app_ids
    # ...and those executors, not the drivers, ran the tasks: their own logs in the workers' work dirs say so.
    for app_id in app_ids:
        logs = poll(lambda app_id=app_id: cluster.executor_logs(app_id), timeout_s=30, what="executor logs")
        assert any("Running task" in log.read_text(errors="replace") for log in logs), app_id

    # The cluster's secret reached each driver in a private file, never in its argv or environment.
    assert cluster.secret is not None
    for driver_id in drivers.values():
        driver = cluster_app.drivers.get(driver_id)
        assert driver is not None and driver.pid is not None
        for what in ("cmdline", "environ"):
            assert cluster.secret.encode() not in Path(f"/proc/{driver.pid}/{what}").read_bytes(), what
        properties = driver.workdir / "credentials" / "cluster.properties"
        assert stat.S_IMODE(properties.stat().st_mode) == 0o600
        assert stat.S_IMODE(properties.parent.stat().st_mode) == 0o700
        assert cluster.secret not in driver.log_path.read_text(errors="replace")

    # The quota counts what the cluster is asked for: the driver (512m + 384m overhead) and its executor (512m).
    rows = {row.id: row for row in driver_rows(cluster_app.config.home)}
    assert {rows[d].backend for d in drivers.values()} == {"standalone"}
    assert {rows[d].memory_bytes for d in drivers.values()} == {(512 + 384 + 512) * MIB}


async def test_a_cluster_with_every_core_taken_refuses_a_driver_in_time_and_leaves_nothing(
    cluster_app: App, cluster: StandaloneCluster
) -> None:
    for user in ("alice", "bob"):  # each holds one of the two cores (started here if this test runs alone)
        await session_of(cluster_app, user)
    assert sum(w["coresfree"] for w in cluster.status()["workers"]) == 0
    home = cluster_app.config.home
    before = (home_driver_pids(home), {row.id for row in driver_rows(home)}, set(cluster.active_apps()))
    completed_before = len(cluster.status()["completedapps"])

    with anyio.fail_after(STARTUP_TIMEOUT_S + 60):
        async with client(cluster_app, "victor") as c:
            error = await call_error(c, "create_session")
    assert error.startswith("cluster_busy: the cluster has no free cores or memory for an executor"), error
    assert "each executor asks 1 core and 512 MiB; 2 alive workers, 0 of 2 cores" in error
    assert "Try again when other work on the cluster ends" in error

    # Nothing is left: no new process, no state row, no application on the master...
    assert (home_driver_pids(home), {row.id for row in driver_rows(home)}) == before[:2]
    poll(lambda: set(cluster.active_apps()) == before[2], timeout_s=30, what="the master forgetting the app")
    # ...though the master did see it come and go (it registered, then ended when the driver stopped).
    assert len(cluster.status()["completedapps"]) == completed_before + 1
    # The cluster still serves the principals who hold it.
    async with client(cluster_app, "alice") as c:
        result = await call(c, "run_sql", sql="select count(*) as n from tpch.nation")
        assert result["rows"] == [[25]]


async def test_a_driver_without_the_clusters_secret_is_refused_at_once_and_leaves_nothing(
    tmp_path_factory: pytest.TempPathFactory, data_dir: Path, cluster: StandaloneCluster
) -> None:
    home = tmp_path_factory.mktemp("no-secret-home")
    config = standalone_config(home, data_dir, cluster.master_url, cluster.ui_url)
    before = set(cluster.active_apps())
    async with App.running(config, environ=dict(os.environ)) as app:
        with anyio.fail_after(STARTUP_TIMEOUT_S + 60):
            async with client(app, "alice") as c:
                error = await call_error(c, "create_session")
        assert error.startswith("cluster_unreachable: the driver could not register with the Spark master"), error
        assert "SASL" in error and "driver.cluster_secret_file" in error
        assert home_driver_pids(home) == set() and driver_rows(home) == []
    assert set(cluster.active_apps()) == before  # it never got as far as an application


async def test_a_master_that_is_down_is_a_clear_error_at_once_and_nothing_starts(
    tmp_path_factory: pytest.TempPathFactory, data_dir: Path
) -> None:
    home = tmp_path_factory.mktemp("down-home")
    nobody = socket.socket()
    nobody.bind(("127.0.0.1", 0))  # held, never listening: nothing answers there
    port = nobody.getsockname()[1]
    try:
        config = standalone_config(home, data_dir, f"spark://127.0.0.1:{port}", None)
        async with App.running(config, environ=dict(os.environ)) as app:
            with anyio.fail_after(STARTUP_TIMEOUT_S + 60):
                async with client(app, "alice") as c:
                    error = await call_error(c, "create_session")
            assert error.startswith(f"cluster_unreachable: the Spark master spark://127.0.0.1:{port} is not reachable")
            assert "Start the master or fix driver.master" in error and "no driver was started" in error
            assert home_driver_pids(home) == set() and driver_rows(home) == []
            assert not (home / "drivers").exists() or not any((home / "drivers").iterdir())
    finally:
        nobody.close()


@pytest.fixture
def silent_master() -> Iterator[int]:
    """A port that accepts connections and never answers: a hung master (or something else entirely)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except TimeoutError:
                continue
            except OSError:
                return

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        for conn in accepted:
            conn.close()
        server.close()


@pytest.mark.slow  # a long fault: it waits out its 45 s deadline
async def test_a_master_that_never_answers_fails_the_start_within_its_deadline_and_leaves_nothing(
    tmp_path_factory: pytest.TempPathFactory, data_dir: Path, silent_master: int
) -> None:
    home = tmp_path_factory.mktemp("silent-home")
    deadline_s = 45.0  # shorter than Spark's own three 20 s registration attempts
    config = standalone_config(home, data_dir, f"spark://127.0.0.1:{silent_master}", None, startup_timeout_s=deadline_s)
    async with App.running(config, environ=dict(os.environ)) as app:
        with anyio.fail_after(deadline_s + 60):
            async with client(app, "alice") as c:
                error = await call_error(c, "create_session")
        assert error.startswith("cluster_unreachable: the driver could not register with the Spark master"), error
        assert "not ready within 45 s" in error
        assert home_driver_pids(home) == set() and driver_rows(home) == []


def test_doctor_checks_that_the_configured_master_is_reachable(
    tmp_path: Path, data_dir: Path, cluster: StandaloneCluster
) -> None:
    good = standalone_config(tmp_path / "good", data_dir, cluster.master_url, cluster.ui_url)
    check = next(c for c in run_checks(good, dict(os.environ)) if c.name == "spark master")
    assert check.ok and "2 alive workers" in check.detail, check

    with socket.socket() as nobody:
        nobody.bind(("127.0.0.1", 0))
        down = standalone_config(tmp_path / "down", data_dir, f"spark://127.0.0.1:{nobody.getsockname()[1]}", None)
        check = next(c for c in run_checks(down, dict(os.environ)) if c.name == "spark master")
    assert not check.ok and "not reachable" in check.detail and check.fix and "driver.master" in check.fix
