"""Driver supervision against real JVMs: start failures, deaths, secrets, loopback, bounded retries."""

from __future__ import annotations

import os
import re
import signal
import stat
import time
from pathlib import Path

import anyio
import pytest
from mcp import Client

from spark_mcp.app import App
from spark_mcp.drivers.base import Driver
from spark_mcp.drivers.process import free_loopback_port, process_has_marker
from spark_mcp.errors import DriverLost, DriverStartError, QuotaExceeded, SessionClosed
from spark_mcp.spark.connect import open_session
from spark_mcp.state.db import state_path
from tests.fleet_support import driver_rows
from tests.helpers import LOOPBACK, ClientFactory, call, call_error, driver_pids, listening_addresses, make_config

pytestmark = [pytest.mark.anyio, pytest.mark.any_era]


@pytest.mark.spark
async def test_a_driver_listens_on_loopback_only(alice: Client, app: App) -> None:
    await call(alice, "run_sql", sql="SELECT 1")
    driver = app.drivers.current("alice")
    assert driver is not None and driver.pid is not None
    addresses = listening_addresses(driver.pid)
    assert addresses, "the driver should be listening"
    assert set(addresses) <= LOOPBACK, addresses


@pytest.mark.spark
async def test_a_drivers_scratch_files_stay_in_its_private_folder(alice: Client, app: App) -> None:
    # Spark Connect writes each session's artifacts (uploaded files, cached local data) under
    # java.io.tmpdir; in a shared /tmp other users of the machine could read them.
    await call(alice, "run_sql", sql="SELECT 1")
    driver = app.drivers.current("alice")
    assert driver is not None and driver.workdir is not None
    session = await anyio.to_thread.run_sync(lambda: open_session(driver, user_id="scratch-check"))
    try:
        found = await anyio.to_thread.run_sync(
            lambda: session.spark.sql(
                "SELECT java_method('java.lang.System', 'getProperty', 'java.io.tmpdir')"
            ).collect()[0][0]
        )
    finally:
        await anyio.to_thread.run_sync(session.close)
    assert Path(found).resolve() == (driver.workdir / "tmp").resolve()
    assert stat.S_IMODE(driver.workdir.stat().st_mode) == 0o700


@pytest.mark.spark
async def test_the_token_is_never_in_argv_state_files_logs_or_replies(alice: Client, app: App) -> None:
    whoami = await alice.call_tool("whoami", {})
    sessions = await alice.call_tool("list_sessions", {})
    driver = app.drivers.current("alice")
    assert driver is not None and driver.pid is not None
    token = driver.token
    assert token.encode() not in Path(f"/proc/{driver.pid}/cmdline").read_bytes()
    state_files = [p for p in app.config.home.iterdir() if p.name.startswith("state.db")]
    assert state_files and all(token.encode() not in p.read_bytes() for p in state_files)
    assert token not in driver.log_path.read_text(errors="replace")
    assert token not in app.config.audit_path.read_text()
    assert token not in repr(driver)
    assert token not in str(whoami.structured_content) + str(sessions.structured_content)
    # It does reach the driver, through the environment (readable only by the same user).
    assert f"SPARK_CONNECT_AUTHENTICATE_TOKEN={token}".encode() in Path(f"/proc/{driver.pid}/environ").read_bytes()


@pytest.mark.spark
async def test_driver_state_files_and_folders_are_private(alice: Client, app: App) -> None:
    await call(alice, "run_sql", sql="SELECT 1")
    driver = app.drivers.current("alice")
    assert driver is not None
    assert (driver.workdir.stat().st_mode & 0o777) == 0o700
    assert ((driver.workdir / "token").stat().st_mode & 0o777) == 0o600
    assert (driver.log_path.stat().st_mode & 0o777) == 0o600
    assert (state_path(app.config.home).stat().st_mode & 0o777) == 0o600
    row = next(r for r in driver_rows(app.config.home) if r.id == driver.id)
    assert (row.pid, row.principal, row.owner, row.profile) == (driver.pid, "alice", "user:alice", "default")


@pytest.mark.spark
async def test_a_driver_that_dies_is_noticed_and_replaced(connect: ClientFactory, app: App) -> None:
    async with connect("victor") as victor:
        first = await call(victor, "run_sql", sql="SELECT 1")
        named = await call(victor, "create_session")
        driver = app.drivers.current("victor")
        assert driver is not None and driver.pid is not None
        os.kill(driver.pid, signal.SIGKILL)
        with anyio.fail_after(30):
            while driver.usable:
                await anyio.sleep(0.05)
        text = await call_error(victor, "run_sql", sql="SELECT 1", session_id=named["session_id"])
        assert "session_closed" in text and "stopped unexpectedly" in text
        listed = await call(victor, "list_sessions")
        assert {s["state"] for s in listed["sessions"]} == {"lost"}
        # The default session says once that it was lost; the next call starts a new driver.
        text = await call_error(victor, "run_sql", sql="SELECT 1")
        assert "session_closed" in text
        again = await call(victor, "run_sql", sql="SELECT 2 AS two")
        assert again["rows"] == [[2]] and again["session_id"] != first["session_id"]
        replacement = app.drivers.current("victor")
        assert replacement is not None and replacement.id != driver.id


@pytest.mark.spark
async def test_a_driver_that_fails_to_start_quotes_its_log_and_leaves_nothing(tmp_path: Path, data_dir: Path) -> None:
    # A setting config may change, with a value Spark refuses while it starts.
    config = make_config(
        tmp_path / "home", data_dir, driver={"memory": "512m", "spark_conf": {"spark.memory.fraction": "5"}}
    )
    async with App.running(config) as app:
        principal = app.principal("alice")
        with pytest.raises(DriverStartError, match="before it was ready") as error:
            await app.executor.create_session(principal)
        assert app.drivers.drivers() == []
    message = str(error.value)
    assert "spark.memory.fraction should be between 0 and 1" in message
    log = re.search(r"drivers/(drv-[0-9a-f]+)/driver\.log", message)
    assert log is not None, message
    assert log.group(1) not in driver_pids()
    assert driver_rows(config.home) == []


async def test_a_driver_larger_than_the_memory_quota_is_refused_before_it_starts(
    tmp_path: Path, data_dir: Path
) -> None:
    config = make_config(tmp_path / "home", data_dir, driver={"memory": "100t"})
    async with App.running(config) as app:
        with pytest.raises(QuotaExceeded, match=r"^quotas.max_driver_memory: this driver needs"):
            await app.executor.create_session(app.principal("alice"))
        assert app.drivers.drivers() == []


async def test_a_dead_endpoint_fails_within_seconds_not_minutes(tmp_path: Path) -> None:
    nobody = Driver(
        id="drv-nobody",
        profile="default",
        backend="local",
        host="localhost",
        port=free_loopback_port(),
        workdir=tmp_path,
        log_path=tmp_path / "log",
        token="t",
    )
    with anyio.fail_after(60), pytest.raises(DriverLost, match="unreachable"):
        await anyio.to_thread.run_sync(lambda: open_session(nobody, user_id="x"))


@pytest.mark.spark
async def test_a_wrong_token_is_refused_quickly(alice: Client, app: App) -> None:
    await call(alice, "run_sql", sql="SELECT 1")
    real = app.drivers.current("alice")
    assert real is not None
    impostor = Driver(
        id=real.id,
        profile=real.profile,
        backend="local",
        host=real.host,
        port=real.port,
        workdir=real.workdir,
        log_path=real.log_path,
        token="not-the-token",
    )
    with anyio.fail_after(60), pytest.raises(DriverLost, match="credentials"):
        await anyio.to_thread.run_sync(lambda: open_session(impostor, user_id="alice"))


@pytest.mark.spark
async def test_idle_sessions_expire_and_stopping_the_app_stops_every_driver(tmp_path: Path, data_dir: Path) -> None:
    config = make_config(tmp_path / "home", data_dir, datasets=[])
    async with App.running(config) as app:
        session = await app.executor.create_session(app.principal("alice"))
        pid = session.driver.pid
        assert pid is not None and process_has_marker(pid, f"spark.mcp.driver.id={session.driver.id}")
        idle_limit = config.limits.session_idle_timeout_s
        assert await app.sessions.expire_idle(now=lambda: time.time() + idle_limit / 2) == []
        assert await app.sessions.expire_idle(now=lambda: time.time() + idle_limit + 1) == [session.id]
        with pytest.raises(SessionClosed, match="idle for more than"):
            await app.executor.session(app.principal("alice"), session.id)
    assert session.driver.id not in driver_pids()
    assert not session.driver.workdir.exists()
    assert driver_rows(config.home) == []
