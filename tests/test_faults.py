"""Faults: each ends in a clear error and a working server, with nothing lost and every call audited.

- a driver killed (SIGKILL) in the middle of a query;
- a driver that never becomes ready;
- no room for results: a real file size limit (RLIMIT_FSIZE) on a server process;
- an audit log that cannot be written (the same limit): the server fails closed;
- a slow client over stdio: it reads its replies late, and sends a request a piece at a time;
- a client that disconnects in the middle of a call: the work is interrupted in Spark.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import sys
import time
from pathlib import Path

import anyio
import grpc
import pytest
from mcp import Client, MCPError, StdioServerParameters
from mcp.client._memory import InMemoryTransport
from mcp.client._transport import TransportStreams
from mcp.types import CallToolResult
from pyspark.errors.exceptions.connect import SparkConnectGrpcException

from spark_mcp.app import App
from spark_mcp.audit import AuditLog, Redactor, verify
from spark_mcp.drivers.process import spawn, terminate
from spark_mcp.errors import DriverLost, SparkError
from spark_mcp.jobs import Job, JobState
from spark_mcp.server import build_server
from spark_mcp.spark import runner
from spark_mcp.spark.errors import translate
from tests.fleet_support import driver_rows
from tests.helpers import (
    LONG_QUERY,
    SPARK_MCP,
    AuditCursor,
    ClientFactory,
    actionable_error,
    call,
    driver_pids,
    handshake,
    make_config,
    pid_running,
    raw_server,
    read_replies,
    rpc_line,
    send,
    server_env,
    tool_call,
    write_config,
)

pytestmark = pytest.mark.anyio

# Sets a file size limit on itself, then becomes the server (same pid: the limit holds for the
# server and every driver it starts). The soft limit can be raised again from outside (prlimit).
LIMITED = (
    "import os, resource, sys\n"
    "resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[1]), resource.RLIM_INFINITY))\n"
    "os.execv(sys.argv[2], sys.argv[2:])\n"
)


def limited_server(config: Path, limit: int) -> StdioServerParameters:
    return StdioServerParameters(
        command=sys.executable,
        args=["-c", LIMITED, str(limit), SPARK_MCP, "serve", "--config", str(config), "--user", "alice"],
        # No bytecode: under the limit Python would cache a large module's .pyc cut short
        # (a short write it does not notice), and every later import of it would fail.
        env={**server_env(), "PYTHONDONTWRITEBYTECODE": "1"},
    )


def audit_records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


async def running_job(app: App, principal: str) -> Job:
    """The principal's job once Spark reports tasks for it: it is really computing."""
    with anyio.fail_after(180):
        while True:
            jobs = [j for j in app.jobs.running() if j.principal == principal and j.progress.tasks]
            if jobs:
                return jobs[0]
            await anyio.sleep(0.05)


# -- a driver killed mid-query -----------------------------------------------------------


@pytest.mark.spark
@pytest.mark.any_era
async def test_a_driver_killed_mid_query_fails_that_call_clearly_and_the_next_call_gets_a_new_driver(
    connect: ClientFactory, app: App
) -> None:
    async with connect("dmitri") as dmitri:
        audit = AuditCursor(app.config.audit_path, "dmitri")
        before = await call(dmitri, "run_sql", sql="SELECT r_name FROM tpch.region ORDER BY 1")
        driver = app.drivers.current("dmitri")
        assert driver is not None and driver.pid is not None
        replies = {}

        async def long_query() -> None:
            replies["long"] = await dmitri.call_tool("run_sql", {"sql": LONG_QUERY, "wait_s": 150})

        async with anyio.create_task_group() as group:
            group.start_soon(long_query)
            job = await running_job(app, "dmitri")
            os.kill(driver.pid, signal.SIGKILL)

        said = actionable_error("run_sql", replies["long"])
        assert said.startswith("driver_lost:") and "Call again" in said, said
        assert job.state is JobState.FAILED
        # The next call works, on a new driver.
        after = await call(dmitri, "run_sql", sql="SELECT 2 AS two")
        assert after["rows"] == [[2]]
        replacement = app.drivers.current("dmitri")
        assert replacement is not None and replacement.id != driver.id
        assert driver.id not in driver_pids()
        # Nothing lost: what was stored before the fault is still there, and the failed job says why.
        page = await call(dmitri, "fetch_rows", result_id=before["result_id"], format="json")
        assert [row[0] for row in page["rows"]] == ["AFRICA", "AMERICA", "ASIA", "EUROPE", "MIDDLE EAST"]
        failed = await call(dmitri, "get_job", job_id=job.id, wait_s=0)
        assert failed["state"] == "failed" and failed["error"]["code"] == "driver_lost"
        records = audit.new()
        assert [(r["tool"], r["error_class"]) for r in records] == [
            ("run_sql", None),
            ("run_sql", "driver_lost"),
            ("run_sql", None),
            ("fetch_rows", None),
            ("get_job", None),
        ]


# -- a driver that never becomes ready ---------------------------------------------------

# A fake `java`, only to inject a fault a real JVM does not produce on demand: it answers
# `-version` as Java 17 does (so the server's Java check passes), then never becomes ready,
# and ignores SIGTERM, so that only the SIGKILL that follows stops it.
FAKE_JAVA = """#!/bin/sh
case "$1" in -version) echo 'openjdk version "17.0.99" 2099-01-01' >&2; exit 0;; esac
trap '' TERM
echo "fake java: starting, and never ready" >&2
while :; do sleep 1; done
"""


@pytest.mark.spark
async def test_a_driver_that_never_becomes_ready_is_stopped_at_its_deadline_and_leaves_nothing(
    tmp_path: Path, data_dir: Path
) -> None:
    java_home = tmp_path / "java"
    (java_home / "bin").mkdir(parents=True)
    (java_home / "bin" / "java").write_text(FAKE_JAVA)
    (java_home / "bin" / "java").chmod(0o755)
    driver = {"java_home": str(java_home), "startup_timeout_s": 5, "stop_timeout_s": 2}
    config = make_config(tmp_path / "home", data_dir, datasets=[], driver=driver)
    async with App.running(config) as app, Client(build_server(app=app, user="alice")) as alice:
        audit = AuditCursor(config.audit_path, "alice")
        for _ in range(2):  # and again: each attempt ends the same clean way
            with anyio.fail_after(120):
                result = await alice.call_tool("run_sql", {"sql": "SELECT 1"})
            said = actionable_error("run_sql", result)
            assert said.startswith("driver_start_failed: the driver was not ready within 5 s"), said
            assert "raise driver.startup_timeout_s" in said and "fake java: starting" in said
            # The launcher ignored SIGTERM: the SIGKILL after driver.stop_timeout_s stopped it, and
            # no process of the driver (its whole process group) is left, nor its state file.
            started = {workdir.name for workdir in (config.home / "drivers").iterdir()}
            assert started and not started & set(driver_pids())
            assert driver_rows(config.home) == []
        who = await call(alice, "whoami")
        assert who["principal"] == "alice"
        records = audit.new()
        assert [(r["tool"], r["error_class"]) for r in records] == [
            ("run_sql", "driver_start_failed"),
            ("run_sql", "driver_start_failed"),
            ("whoami", None),
        ]


# -- no room for results -----------------------------------------------------------------

FULL_DISK_LIMIT = 2 * 1024 * 1024  # per file: results past it fail; logs and the audit log stay under it
WIDE = "SELECT id, repeat('x', 200) AS pad FROM range(100000)"  # about 20 MB as Arrow


@pytest.mark.spark
async def test_a_result_that_finds_no_room_is_a_clear_error_and_the_server_stays_up(
    tmp_path: Path, data_dir: Path
) -> None:
    home = tmp_path / "home"
    config = write_config(home, data_dir)
    async with Client(limited_server(config, FULL_DISK_LIMIT)) as alice:
        with anyio.fail_after(300):
            preview = await call(alice, "run_sql", sql=WIDE)
        assert preview["result_state"] == "on_demand"  # the 50-row preview fits
        # The rest does not: the file size limit stops the result store, for real.
        with anyio.fail_after(300):
            result = await alice.call_tool("fetch_rows", {"result_id": preview["result_id"], "offset": 60_000})
        said = actionable_error("fetch_rows", result)
        assert said.startswith("storage_error: the server has no room to store result"), said
        assert "File too large" in said and "fewer rows" in said
        # Nothing lost: the preview is still readable, and says the rest failed; the server works.
        page = await call(alice, "fetch_rows", result_id=preview["result_id"], limit=3, format="json")
        assert [row[0] for row in page["rows"]] == [0, 1, 2] and page["result_state"] == "failed"
        small = await call(alice, "run_sql", sql="SELECT count(*) AS n FROM tpch.nation")
        assert small["rows"] == [[25]]
    records = audit_records(home / "audit" / "audit.jsonl")
    assert [(r["tool"], r["error_class"]) for r in records] == [
        ("run_sql", None),
        ("fetch_rows", "storage_error"),
        ("fetch_rows", None),
        ("run_sql", None),
    ]
    assert verify(home / "audit" / "audit.jsonl").ok
    assert not list((home / "results").glob("*/*.tmp"))  # the partial file was removed


# -- an audit log that cannot be written -------------------------------------------------


async def test_when_the_audit_log_cannot_be_written_the_server_fails_closed_and_recovers(
    tmp_path: Path, data_dir: Path
) -> None:
    home = tmp_path / "home"
    config = write_config(home, data_dir)
    log_path = home / "audit" / "audit.jsonl"
    # An earlier, legitimate record of 1 MB: the limit below must leave room for the state
    # database (which the server opens at start, before any call) but none for another record.
    with AuditLog(log_path, Redactor()) as log:
        log.emit(
            request_id="r0", principal="alice", tool="run_sql", outcome="ok", duration_ms=1, statement="x" * 1_000_000
        )
    size = log_path.stat().st_size
    async with Client(limited_server(config, size + 50)) as alice:  # no room for one more record
        with pytest.raises(MCPError, match="audit_error: the audit log cannot be written"):
            await alice.call_tool("whoami", {})
        # While it cannot, nothing runs: this statement would start a driver, and none is started.
        with pytest.raises(MCPError, match="audit_error: the audit log cannot be written"):
            await alice.call_tool("run_sql", {"sql": "SELECT 1"})
        assert driver_rows(home) == []
        assert log_path.stat().st_size == size  # no half record was left behind
        assert verify(log_path).ok
        # Room again (the operator raised the limit): the first call is refused but recorded,
        # and the calls after it run.
        server = pid_running(str(config))
        resource.prlimit(server, resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        with pytest.raises(MCPError, match=r"did not run.*it can be again: retry"):
            await alice.call_tool("whoami", {})
        who = await call(alice, "whoami")
        assert who["principal"] == "alice"
    assert [(r["tool"], r["error_class"]) for r in audit_records(log_path)] == [
        ("run_sql", None),
        ("whoami", "audit_error"),
        ("whoami", None),
    ]
    assert verify(log_path).ok


# -- a slow client -----------------------------------------------------------------------


async def audited(path: Path, count: int) -> list[dict]:
    """The audit log once it holds ``count`` records."""
    with anyio.fail_after(180):
        while not path.exists() or len(path.read_text().splitlines()) < count:
            await anyio.sleep(0.05)
    return audit_records(path)


@pytest.mark.spark
async def test_a_slow_client_does_not_hold_up_other_requests(tmp_path: Path, data_dir: Path) -> None:
    home = tmp_path / "home"
    log_path = home / "audit" / "audit.jsonl"
    with raw_server(write_config(home, data_dir)) as server:
        handshake(server)
        send(server, tool_call(1, "run_sql", sql="SELECT 1 AS one"))  # the driver starts here
        with anyio.fail_after(300):
            await anyio.to_thread.run_sync(read_replies, server, {1})

        # A client that reads late: six tools/list replies (about 25 kB each) fill the pipe and
        # block the server's writer; a statement sent after them still runs, and is recorded,
        # before the client has read a byte.
        for request_id in range(10, 16):
            send(server, rpc_line(request_id, "tools/list"))
        send(server, tool_call(20, "run_sql", sql="SELECT 20 AS twenty"))
        records = await audited(log_path, 2)
        assert [(r["tool"], r["outcome"]) for r in records[-1:]] == [("run_sql", "ok")]
        with anyio.fail_after(120):
            replies = await anyio.to_thread.run_sync(read_replies, server, {10, 11, 12, 13, 14, 15, 20})
        assert all(len(replies[i]["result"]["tools"]) == 16 for i in range(10, 16))
        assert replies[20]["result"]["structuredContent"]["rows"] == [[20]]

        # A client that sends slowly: half a request, then nothing until another reply is read.
        # The half-read request holds nothing up, and is answered once its other half arrives.
        send(server, tool_call(30, "run_sql", sql="SELECT 30 AS thirty"))
        trickled = tool_call(31, "describe_table", table="tpch.region")
        send(server, trickled[:25])
        with anyio.fail_after(120):
            first = await anyio.to_thread.run_sync(read_replies, server, {30})
        assert first[30]["result"]["structuredContent"]["rows"] == [[30]]
        for piece in (trickled[25:40], trickled[40:]):
            send(server, piece)
        with anyio.fail_after(120):
            second = await anyio.to_thread.run_sync(read_replies, server, {31})
        assert second[31]["result"]["structuredContent"]["table"] == "spark_catalog.tpch.region"
    records = audit_records(log_path)
    assert [r["tool"] for r in records] == ["run_sql", "run_sql", "run_sql", "describe_table"]
    assert verify(log_path).ok


# -- a client that disconnects mid-call --------------------------------------------------


class SeverableTransport(InMemoryTransport):
    """The SDK's in-memory transport (JSON-RPC over streams, as stdio and HTTP carry it), whose
    line the test can cut: the client's end closes with a call in flight and nothing is sent."""

    async def __aenter__(self) -> TransportStreams:
        self.streams = await super().__aenter__()
        return self.streams

    async def sever(self) -> None:
        await self.streams[1].aclose()


@pytest.mark.spark
async def test_a_client_that_disconnects_mid_call_has_its_work_interrupted_in_spark(
    app: App, connect: ClientFactory, mode: str
) -> None:
    audit = AuditCursor(app.config.audit_path, "dmitri")
    transport = SeverableTransport(build_server(app=app, user="dmitri"))
    lost: list[BaseException] = []
    async with Client(transport, mode=mode) as leaving:

        async def call_then_lose_the_line() -> None:
            try:
                await leaving.call_tool("run_sql", {"sql": LONG_QUERY, "wait_s": 150})
            except MCPError as exc:  # the connection went away under the call
                lost.append(exc)

        async with anyio.create_task_group() as group:
            group.start_soon(call_then_lose_the_line)
            job = await running_job(app, "dmitri")
            await transport.sever()
    assert lost, "the call should have ended with the connection, without a reply"
    with anyio.fail_after(120):
        while not job.state.terminal:
            await anyio.sleep(0.05)
    assert job.state is JobState.CANCELLED
    session = app.sessions.get("dmitri", job.session_id)
    assert runner.interrupt(session.connect, job.tag) == []  # nothing with its tag still runs
    assert [(r["tool"], r["error_class"]) for r in audit.new()] == [("run_sql", "cancelled")]
    async with connect("dmitri") as dmitri:  # the server, and dmitri's session, still work
        after = await call(dmitri, "run_sql", sql="SELECT 3 AS three", session_id=job.session_id, wait_s=150)
        assert after["rows"] == [[3]]


@pytest.mark.spark
async def test_a_host_that_dies_mid_call_has_its_work_stopped_and_the_call_audited(
    tmp_path: Path, data_dir: Path
) -> None:
    home = tmp_path / "home"
    log_path = home / "audit" / "audit.jsonl"
    with raw_server(write_config(home, data_dir)) as server:
        handshake(server)
        send(server, tool_call(1, "run_sql", sql=LONG_QUERY, wait_s=150))
        # Wait until Spark runs it, asking on the same connection (calls are served concurrently).
        request_id, tasks = 100, 0
        with anyio.fail_after(300):
            while not tasks:
                request_id += 1
                send(server, tool_call(request_id, "list_jobs"))
                jobs = (await anyio.to_thread.run_sync(read_replies, server, {request_id}))[request_id]
                listed = jobs["result"]["structuredContent"]["jobs"]
                if listed:
                    request_id += 1
                    send(server, tool_call(request_id, "get_job", job_id=listed[0]["job_id"], wait_s=0.5))
                    job = (await anyio.to_thread.run_sync(read_replies, server, {request_id}))[request_id]
                    tasks = (job["result"]["structuredContent"]["progress"] or {"tasks": 0})["tasks"]
        driver = driver_rows(home)[0]
        # The host dies: both ends of its pipes close at once, with the call in flight.
        assert server.stdin is not None and server.stdout is not None
        server.stdin.close()
        server.stdout.close()
        with anyio.fail_after(120):
            await anyio.to_thread.run_sync(server.wait)
    assert driver.id not in driver_pids()  # the driver, and the work on it, stopped
    records = audit_records(log_path)
    assert {r["tool"] for r in records[:-1]} <= {"list_jobs", "get_job"}
    assert [(r["tool"], r["error_class"]) for r in records[-1:]] == [("run_sql", "cancelled")]
    assert verify(log_path).ok


# -- what Spark's client raises when the driver fails oddly, as an agent reads it -----------


RENDEZVOUS = (
    "<_MultiThreadedRendezvous of RPC that terminated with:\n\tstatus = StatusCode.UNKNOWN\n"
    '\tdetails = ""\n\tdebug_error_string = "UNKNOWN"\n>'
)


@pytest.mark.parametrize(
    ("raised", "code", "error_class", "says"),
    [
        # The driver ended a call without an error of its own (a statement nested thousands deep).
        (
            SparkConnectGrpcException(RENDEZVOUS, grpc_status_code=grpc.StatusCode.UNKNOWN),
            "spark_error",
            "GRPC_UNKNOWN",
            "without an error of its own (no details); a statement or plan that is very deeply nested",
        ),
        # Spark's own error, only inside the call's description (a statement too deep to parse).
        (
            SparkConnectGrpcException(
                RENDEZVOUS.replace("UNKNOWN", "INTERNAL").replace(
                    'details = ""',
                    'details = "\n[FAILED_TO_PARSE_TOO_COMPLEX] The statement was too complex to parse.\n'
                    '== SQL ==\nSELECT ((((\n"',
                ),
                grpc_status_code=grpc.StatusCode.INTERNAL,
            ),
            "spark_error",
            "FAILED_TO_PARSE_TOO_COMPLEX",
            "The statement was too complex to parse.",
        ),
        # pyspark could not read the error the driver sent.
        (
            ValueError("Code in Status proto (StatusCode.INTERNAL) doesn't match status code (StatusCode.UNKNOWN)"),
            "spark_error",
            "GRPC_UNKNOWN",
            "Spark's answer could not be read (gRPC UNKNOWN)",
        ),
        # The session's channel was closed under a running call: its driver died.
        (ValueError("Cannot invoke RPC: Channel closed!"), "driver_lost", None, "the driver stopped"),
    ],
)
def test_odd_failures_of_spark_s_client_are_translated_into_errors_an_agent_can_act_on(
    raised: Exception, code: str, error_class: str | None, says: str
) -> None:
    error = translate(raised)
    assert error.code == code and says in error.message
    if error_class is not None:
        assert isinstance(error, SparkError) and error.error_class == error_class
    else:
        assert isinstance(error, DriverLost)


# -- longer runs, by hand (-m slow) ------------------------------------------------------

# Its first rows come at once, and every row costs a hash of 20 kB: a preview is quick, the
# whole result (fetch_rows past the preview: up to results.max_rows rows) takes minutes.
QUICK_THEN_SLOW = "SELECT id, sha2(repeat(cast(id AS STRING), 20000), 512) AS h FROM range(100000000)"


@pytest.mark.slow
@pytest.mark.spark
async def test_a_driver_killed_while_it_produces_the_rest_of_a_result_leaves_the_preview_readable(
    connect: ClientFactory, app: App
) -> None:
    async with connect("dmitri") as dmitri:
        audit = AuditCursor(app.config.audit_path, "dmitri")
        for _ in range(3):  # and again, each time on the driver that replaced the last one
            preview = await call(dmitri, "run_sql", sql=QUICK_THEN_SLOW, max_rows=5, wait_s=150)
            assert preview["result_state"] == "on_demand"
            driver = app.drivers.current("dmitri")
            assert driver is not None and driver.pid is not None
            replies: dict[str, CallToolResult] = {}

            async def fetch_the_rest(result_id: str, into: dict[str, CallToolResult]) -> None:
                into["rest"] = await dmitri.call_tool(
                    "fetch_rows", {"result_id": result_id, "offset": 5, "wait_s": 150}
                )

            async with anyio.create_task_group() as group:
                group.start_soon(fetch_the_rest, preview["result_id"], replies)
                await running_job(app, "dmitri")
                os.kill(driver.pid, signal.SIGKILL)
            said = actionable_error("fetch_rows", replies["rest"])
            assert said.startswith("driver_lost:"), said
            page = await call(dmitri, "fetch_rows", result_id=preview["result_id"], limit=5, format="json")
            assert page["rows"] == preview["rows"] and page["result_state"] == "failed"
            after = await call(dmitri, "run_sql", sql="SELECT 2 AS two", wait_s=150)
            assert after["rows"] == [[2]]
        tools = [(r["tool"], r["error_class"]) for r in audit.new()]
        assert tools == [("run_sql", None), ("fetch_rows", "driver_lost"), ("fetch_rows", None), ("run_sql", None)] * 3


def live_members(group: int) -> list[int]:
    """Processes of ``group`` that have not exited (zombies have)."""
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                state, _parent, pgrp = (entry / "stat").read_text().rsplit(")", 1)[-1].split()[:3]
            except (OSError, ValueError):
                continue
            if int(pgrp) == group and state != "Z":
                members.append(int(entry.name))
    return members


def test_stopping_a_driver_stops_its_whole_process_group_even_a_child_that_ignores_sigterm(tmp_path: Path) -> None:
    # A stand-in for a driver that hangs while it starts: spark-submit's shell (which SIGTERM
    # stops) waiting on a launcher that ignores SIGTERM. Only the SIGKILL that follows stops it.
    script = "sh -c \"trap '' TERM; echo launcher-started; while :; do sleep 0.2; done\" & wait"
    log_path = tmp_path / "driver.log"
    process = spawn(["sh", "-c", script], env=dict(os.environ), cwd=tmp_path, log_path=log_path)
    deadline = time.monotonic() + 30
    while "launcher-started" not in log_path.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(live_members(process.pid)) >= 2
    assert terminate(process.pid, timeout_s=1, proc=process)
    assert live_members(process.pid) == []
