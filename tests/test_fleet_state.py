"""The fleet's state in SQLite: drivers, sessions and jobs survive the process; tokens never enter it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from spark_mcp.config import load_config
from spark_mcp.drivers import Driver, Fleet, FleetHooks
from spark_mcp.drivers.process import is_same_process, process_start_time, wait_for_exit
from spark_mcp.drivers.profiles import resolve_profiles
from spark_mcp.drivers.recovery import recover, server_alive, this_server
from spark_mcp.errors import JobLost
from spark_mcp.jobs import Job, JobState
from spark_mcp.journal import StateJournal
from spark_mcp.results import ResultMeta
from spark_mcp.state import StateDB
from spark_mcp.state.drivers import DriverRow, DriverStore, ServerRef
from spark_mcp.state.jobs import JobRow, JobStore
from spark_mcp.state.sessions import SessionRow, SessionStore

GONE = ServerRef(pid=2**22 + 7, start=1)  # no such process: pid_max is at most 2**22


def driver_row(driver_id: str, *, server: ServerRef | None = None, owner: str | None = "user:ann") -> DriverRow:
    return DriverRow(
        id=driver_id,
        engine="spark",
        backend="local",
        profile="default",
        owner=owner,
        principal="ann",
        lifetime="persistent",
        state="ready",
        host="localhost",
        port=4040,
        pid=123,
        pid_start=456,
        memory_bytes=1024,
        workdir=f"/w/{driver_id}",
        log=f"/w/{driver_id}/driver.log",
        server_pid=server.pid if server else None,
        server_start=server.start if server else None,
        started_at=time.time(),
        ready_at=time.time(),
        last_used=time.time(),
    )


def test_driver_rows_round_trip_and_a_server_lets_its_drivers_go(tmp_path: Path) -> None:
    me = this_server()
    store = DriverStore(StateDB(tmp_path / "state.db"))
    store.put(driver_row("drv-a", server=me))
    store.put(driver_row("drv-b", server=GONE, owner=None))
    store.update("drv-a", state="stopping", owner="user:bob")
    assert [r.id for r in store.all()] == ["drv-a", "drv-b"]
    row = store.get("drv-a")
    assert row is not None and (row.state, row.owner, row.server) == ("stopping", "user:bob", me)
    store.touch_many({"drv-a": 1.5})
    store.release_server(me)
    row = store.get("drv-a")
    assert row is not None and row.server is None and row.last_used == 1.5
    assert store.get("drv-b") is not None and store.get("drv-b").server == GONE  # type: ignore[union-attr]
    store.delete("drv-a")
    assert store.get("drv-a") is None
    with pytest.raises(ValueError, match="not driver columns"):
        store.update("drv-b", token="x")


def test_a_live_server_and_a_gone_one_are_told_apart() -> None:
    assert server_alive(this_server())
    assert not server_alive(GONE)
    assert not server_alive(ServerRef(os.getpid(), (this_server().start or 0) + 1))  # same pid, another start
    assert not server_alive(None)


def test_a_pid_and_its_start_time_name_one_process() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    start = process_start_time(child.pid)
    assert start is not None and is_same_process(child.pid, start)
    assert not is_same_process(child.pid, start - 1)
    assert child.stdin is not None
    child.stdin.close()
    child.wait()
    assert not is_same_process(child.pid, start)


def test_waiting_for_a_process_that_is_not_our_child_returns_when_it_exits() -> None:
    # A grandchild: re-parented away from us once its parent exits, as an adopted driver is.
    parent = subprocess.run(
        [
            sys.executable,
            "-c",
            "import subprocess, sys; p = subprocess.Popen([sys.executable, '-c', "
            "'import time; time.sleep(1)']); print(p.pid)",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    pid = int(parent.stdout)
    wait_for_exit(pid)
    assert process_start_time(pid) is None or not is_same_process(pid, process_start_time(pid))


def test_sessions_are_saved_until_they_end(tmp_path: Path) -> None:
    store = SessionStore(StateDB(tmp_path / "state.db"))
    row = SessionRow("ses_1", "ann", "small", "drv-a", "uuid-1", "uuid-server", True, 1.0, 2.0)
    store.put(row)
    store.put(SessionRow("ses_2", "bob", "default", "drv-b", "uuid-2", None, False, 3.0, 3.0))
    store.touch_many({"ses_1": 9.0})
    assert store.all()[0] == SessionRow("ses_1", "ann", "small", "drv-a", "uuid-1", "uuid-server", True, 1.0, 9.0)
    store.mark_lost("ses_2", "gone")
    assert store.all()[1].state == "lost" and store.all()[1].why_closed == "gone"
    store.delete_many(["ses_1", "ses_2"])
    assert store.all() == []


def job(job_id: str, principal: str = "ann", state: JobState = JobState.RUNNING, created: float = 1.0) -> Job:
    return Job(
        id=job_id,
        principal=principal,
        session_id="ses_1",
        tool="run_sql",
        statement="SELECT 1",
        kind="query",
        tables=[],
        timeout_s=10,
        tag="t",
        interrupt=lambda tag: 0,
        state=state,
        created_at=created,
    )


def no_results(principal: str, result_id: str) -> ResultMeta:
    raise AssertionError("no result should be loaded")


def test_jobs_of_a_dead_server_become_lost_and_say_why_and_others_stay(tmp_path: Path) -> None:
    db = StateDB(tmp_path / "state.db")
    dead = StateJournal(JobStore(db), GONE, no_results, redact=str)
    dead.record(job("job_running"))
    dead.record(job("job_done", state=JobState.FAILED))
    live_elsewhere = ServerRef(os.getppid(), process_start_time(os.getppid()))
    StateJournal(JobStore(db), live_elsewhere, no_results, redact=str).record(job("job_elsewhere"))
    mine = StateJournal(JobStore(db), this_server(), no_results, redact=str)
    assert [row.id for row in mine.mark_lost(server_alive)] == ["job_running"]
    lost = mine.load("ann", "job_running")
    assert lost is not None and lost.state is JobState.LOST and lost.state.terminal
    assert isinstance(lost.error, JobLost) and "stopped before it finished" in lost.error.message
    assert lost.error.code == "job_lost"
    assert mine.load("bob", "job_running") is None  # another principal's job is not found
    assert {j.id for j in mine.recent("ann", 10)} == {"job_running", "job_done", "job_elsewhere"}


def test_finished_jobs_keep_their_result_and_old_ones_are_pruned(tmp_path: Path) -> None:
    meta = ResultMeta(
        result_id="res_1",
        principal="ann",
        session_id="ses_1",
        created_at=1.0,
        expires_at=time.time() + 60,
        row_count=1,
        bytes=10,
        more_rows=False,
        cap=None,
    )
    journal = StateJournal(JobStore(StateDB(tmp_path / "state.db")), this_server(), lambda p, r: meta, redact=str)
    done = job("job_old", state=JobState.SUCCEEDED, created=1.0)
    done.result = meta
    journal.record(done)
    journal.record(job("job_new", state=JobState.SUCCEEDED, created=2.0))
    loaded = journal.load("ann", "job_old")
    assert loaded is not None and loaded.result == meta and loaded.error is None
    journal.prune(1)
    assert [j.id for j in journal.recent("ann", 10)] == ["job_new"]


def test_no_state_row_has_room_for_a_token() -> None:
    assert set(JobRow.__dataclass_fields__) >= {"statement", "error_message"}
    assert not {"token", "interrupt"} & set(JobRow.__dataclass_fields__)
    assert "token" not in DriverRow.__dataclass_fields__


def test_statements_and_errors_are_redacted_before_they_are_stored(tmp_path: Path) -> None:
    db = StateDB(tmp_path / "state.db")
    journal = StateJournal(JobStore(db), this_server(), no_results, redact=lambda t: t.replace("tok-123", "[REDACTED]"))
    failed = job("job_secret", state=JobState.FAILED)
    failed.statement = "SELECT 'tok-123'"
    failed.error = JobLost("it quoted tok-123")
    journal.record(failed)
    stored = b"".join(path.read_bytes() for path in tmp_path.glob("state.db*"))
    assert b"SELECT '[REDACTED]'" in stored and b"tok-123" not in stored
    loaded = journal.load("ann", "job_secret")
    assert loaded is not None and loaded.statement == "SELECT '[REDACTED]'"


class NoBackend:
    """Recovery never starts a driver; a backend that would is a bug here."""

    name = "local"

    async def start(self, spec: object, *, on_launch: object = None) -> Driver:
        raise AssertionError("recovery must not start drivers")

    async def stop(self, driver: Driver) -> None:
        raise AssertionError("recovery stops rows, not drivers")


async def never(driver: Driver) -> None:
    raise AssertionError("no driver here is ours to probe")


@pytest.fixture
def stranger() -> Iterator[subprocess.Popen[bytes]]:
    """A live process that is no driver of ours (its pid could be one a driver once had)."""
    process = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    yield process
    assert process.stdin is not None
    process.stdin.close()
    process.wait()


@pytest.mark.anyio
async def test_recovery_leaves_a_live_servers_drivers_alone_and_never_signals_a_process_not_ours(
    tmp_path: Path, stranger: subprocess.Popen[bytes]
) -> None:
    config = load_config(None, environ={}, overrides={"home": str(tmp_path / "home")})
    store = DriverStore(StateDB(tmp_path / "state.db"))
    hooks = FleetHooks(
        prepare=lambda d, spare: never(d),
        retire=lambda d, why: never(d),
        on_lost=lambda d: None,
        open_sessions=lambda d: 0,
        running_jobs=lambda d: 0,
    )
    fleet = Fleet(
        config,
        resolve_profiles(config),
        {"local": NoBackend()},
        store,
        server=this_server(),
        memory_budget=1 << 30,
        hooks=hooks,
    )
    parent = ServerRef(os.getppid(), process_start_time(os.getppid()))
    store.put(replace(driver_row("drv-theirs", server=parent), pid=stranger.pid))
    store.put(replace(driver_row("drv-dead", server=GONE), pid=GONE.pid))
    start = process_start_time(stranger.pid)
    store.put(replace(driver_row("drv-reused", server=GONE), pid=stranger.pid, pid_start=start))
    report = await recover(fleet, store, never)
    assert report.foreign == ["drv-theirs"]
    assert sorted(report.forgotten) == ["drv-dead", "drv-reused"]  # no marker: not ours to signal
    assert report.adopted == [] and report.stopped == []
    assert is_same_process(stranger.pid, start)
    assert [row.id for row in store.all()] == ["drv-theirs"]
