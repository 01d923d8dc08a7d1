"""A cancelled query whose Spark tasks will not stop: its driver is restarted, and its user is told why.

The stuck query is a nested-loop join whose condition hashes every pair: each streamed row
costs a million SHA-256s, and Spark checks for a kill only after each batch of 1,000 rows.
So once its join stage runs, cancelling it cannot stop its tasks for many minutes: a real
stuck task, not a simulated one. A query whose tasks do stop when cancelled must leave its
driver alone.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest
from mcp import Client

from spark_mcp.app import App
from spark_mcp.drivers.base import Driver, DriverState
from spark_mcp.drivers.process import is_same_process
from spark_mcp.drivers.stuck_tasks import REAPER_LOG, StuckTaskWatch, stuck_task_ids, write_log_config
from spark_mcp.server import build_server
from tests.fleet_support import wait_for
from tests.helpers import call, call_error, make_config

KILL_TIMEOUT_S = 4

STUCK_SQL = (
    "SELECT count(*) AS n FROM range(1000000) a JOIN range(1000000) b "
    "ON sha2(CAST(a.id + b.id AS STRING), 256) = 'nothing hashes to this'"
)
# The same shape, but cheap per row: its tasks reach a kill check within moments.
STOPPABLE_SQL = "SELECT count(*) AS n FROM range(100000000000) a JOIN range(10) b ON a.id + b.id < 0"


# -- reading the reaper's line (pure) ------------------------------------------------------

REAPER_LINE = (
    "org.apache.spark.executor.Executor Killed task 17 could not be stopped within 4000 ms; "
    "not killing JVM because we are running in local mode."
)
# What a user can make a driver log: a message of theirs, with line breaks in it.
FORGED = "x\n" + REAPER_LINE + "\n26/11/29 01:27:20 ERROR Executor: " + REAPER_LINE.split(" ", 1)[1]


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        ([REAPER_LINE], ["17"]),
        ([REAPER_LINE, REAPER_LINE.replace("task 17", "task 18")], ["17", "18"]),
        ([REAPER_LINE.replace("Executor ", "Executor$TaskReaper ")], ["17"]),
        (["org.apache.spark.executor.Executor Executor killed task 0.0 in stage 15.0 (TID 17)"], []),
        (["org.apache.spark.executor.Executor Killed task 17 is still running after 2000 ms"], []),  # not its verdict
        # The driver log's format, or a line inside a user's message: not the reaper log's verdict.
        (["26/11/29 01:27:20 ERROR Executor: " + REAPER_LINE.split(" ", 1)[1]], []),
        (["org.apache.spark.executor.Executor Exception in task 0.0: x\\r\\n" + REAPER_LINE], []),
        ([" " + REAPER_LINE], []),
        ([], []),
    ],
)
def test_only_the_reapers_verdict_names_a_stuck_task(lines: list[str], expected: list[str]) -> None:
    assert stuck_task_ids(lines) == expected


def test_the_watch_reads_each_reaper_log_once_and_only_whole_lines(tmp_path: Path) -> None:
    log = tmp_path / REAPER_LOG
    driver = Driver(
        id="drv-1", profile="default", backend="local", host="127.0.0.1", port=1, workdir=tmp_path,
        log_path=tmp_path / "driver.log", token="",
    )  # fmt: skip
    driver.state = DriverState.READY
    watch = StuckTaskWatch()
    assert watch.scan([driver]) == []  # no reaper log yet
    log.write_text("org.apache.spark.executor.Executor Exception in task 0.0 in stage 1.0 (TID 1)\n")
    assert watch.scan([driver]) == []
    with log.open("a") as handle:
        handle.write(REAPER_LINE[:40])  # half a line: not read yet
    assert watch.scan([driver]) == []
    with log.open("a") as handle:
        handle.write(REAPER_LINE[40:] + "\n")
    [stuck] = watch.scan([driver])
    assert stuck.driver is driver and stuck.task_ids == ["17"]
    assert "driver.task_kill_timeout_s (4 s)" in stuck.reason(4)
    assert watch.scan([driver]) == []  # the same line is not reported twice
    (tmp_path / "driver.log").write_text(REAPER_LINE + "\n")  # the driver's own log is not read
    assert watch.scan([driver]) == []
    driver.backend = "standalone"  # its executors are Spark's to end
    with log.open("a") as handle:
        handle.write(REAPER_LINE + "\n")
    assert watch.scan([driver]) == []


def test_the_driver_log_configuration_keeps_sparks_format_and_one_line_per_reaper_event(tmp_path: Path) -> None:
    text = write_log_config(tmp_path).read_text()
    assert "appender.console.layout.pattern = %d{yy/MM/dd HH:mm:ss} %p %c{1}: %m%n%ex" in text
    assert f"appender.reaper.fileName = {tmp_path / REAPER_LOG}" in text
    assert "appender.reaper.layout.pattern = %c %enc{%m}{CRLF}%n" in text


# -- against a real driver -----------------------------------------------------------------


@pytest.fixture(scope="module")
async def stuck_app(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> AsyncIterator[App]:
    config = make_config(
        tmp_path_factory.mktemp("stuck-home"),
        data_dir,
        datasets=[],
        driver={"task_kill_timeout_s": KILL_TIMEOUT_S, "stop_timeout_s": 5},
    )
    async with App.running(config, environ=dict(os.environ)) as app:
        yield app


def client(app: App, user: str) -> Client:
    return Client(build_server(app=app, user=user), mode="auto")


def alive(driver: Driver) -> bool:
    return driver.pid is not None and is_same_process(driver.pid, driver.pid_start)


async def session_and_driver(app: App, user: Client) -> tuple[str, Driver]:
    """A new session of ``user``'s, and the driver it runs on."""
    session = await call(user, "create_session")
    driver = app.drivers.get(session["driver_id"])
    assert driver is not None
    return session["session_id"], driver


async def cancel_in_its_join_stage(app: App, user: Client, principal: str, sql: str) -> None:
    """Start ``sql``, wait until its join's tasks run (the broadcast stage is done), and cancel it."""
    started = await call(user, "run_sql", sql=sql, wait_s=0)
    job = app.jobs.get(principal, started["job_id"])
    await wait_for(lambda: job.progress.stages_done >= 1 and job.progress.inflight_tasks >= 1, timeout_s=120)
    cancelled = await call(user, "cancel_job", job_id=job.id)
    assert cancelled["state"] == "cancelled"


@pytest.mark.anyio
@pytest.mark.spark
async def test_a_driver_whose_cancelled_tasks_will_not_stop_is_restarted_and_its_user_told_why(
    stuck_app: App,
) -> None:
    async with client(stuck_app, "alice") as alice:
        session_id, driver = await session_and_driver(stuck_app, alice)
        await cancel_in_its_join_stage(stuck_app, alice, "alice", STUCK_SQL)
        # Spark's task reaper gives up after driver.task_kill_timeout_s; the fleet then stops the driver.
        await wait_for(lambda: stuck_app.drivers.get(driver.id) is None, timeout_s=120)
        assert not alive(driver)
        said = await call_error(alice, "run_sql", sql="SELECT 1 AS one", session_id=session_id)
        assert "Spark could not stop the tasks" in said and f"driver.task_kill_timeout_s ({KILL_TIMEOUT_S} s)" in said
        assert "call again for a new session" in said
        again = await call(alice, "run_sql", sql="SELECT 1 AS one")
        assert again["rows"] == [[1]]
        assert stuck_app.drivers.assigned("user:alice", "default") not in (None, driver)


@pytest.mark.anyio
@pytest.mark.spark
async def test_a_driver_whose_cancelled_tasks_stop_or_whose_log_quotes_the_reaper_is_left_alone(
    stuck_app: App,
) -> None:
    async with client(stuck_app, "bob") as bob:
        session_id, driver = await session_and_driver(stuck_app, bob)
        # A user's text in the driver's log (an error message of theirs) is not the reaper's verdict.
        for text in (FORGED, REAPER_LINE):
            said = await call_error(bob, "run_sql", sql=f"SELECT raise_error('{text}')")
            assert said.startswith("USER_RAISED_EXCEPTION")
        assert REAPER_LINE in driver.log_path.read_text()
        await cancel_in_its_join_stage(stuck_app, bob, "bob", STOPPABLE_SQL)
        # Past the reaper's timeout and a few of the watch's rounds: nothing is stopped.
        await anyio.sleep(KILL_TIMEOUT_S * 3)
        assert stuck_app.drivers.get(driver.id) is driver and alive(driver)
        reply = await call(bob, "run_sql", sql="SELECT 1 AS one", session_id=session_id)
        assert reply["rows"] == [[1]]
