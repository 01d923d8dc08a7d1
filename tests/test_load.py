"""Load: 16 concurrent clients for a bounded time, with the mix agents send (previews of
``tpch.lineitem``, TPC-H Q6, paging past a preview, ``SELECT 1``, ``describe_table``).

No call may fail; every call leaves exactly one audit record; and afterwards nothing has
leaked: sessions, running jobs, threads and file descriptors are back where they were (to
within a few, once idle worker threads have exited), while the calls made number in the
dozens at least (hundreds on an idle machine), so a leak of one per call cannot hide in the
tolerance.

Two variants: 16 in-memory MCP clients against the session-wide app, and 16 concurrent
callers over one stdio connection to a server process, as a host sends parallel requests.
The default run has the short in-memory run, in the current protocol era; ``-m slow`` adds it
in the legacy era, the short stdio run, and a minute of each.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client, StdioServerParameters

from spark_mcp.app import App
from tests.helpers import (
    SPARK_MCP,
    AuditCursor,
    ClientFactory,
    call,
    open_fds,
    os_threads,
    pid_running,
    server_env,
    text_of,
    write_config,
)

pytestmark = [pytest.mark.anyio, pytest.mark.spark]

CLIENTS = 16
CI_SECONDS = 15
SLOW_SECONDS = 60
# Allowed growth once idle: pools may keep a thread or descriptor more than before. A run must
# make several times more calls than this, so that a leak of one per call shows.
THREADS_TOLERANCE = 6
FDS_TOLERANCE = 8

Q6 = """SELECT sum(l_extendedprice * l_discount) AS revenue FROM tpch.lineitem
WHERE l_shipdate >= date '1994-01-01' AND l_shipdate < date '1995-01-01'
  AND l_discount BETWEEN 0.05 AND 0.07 AND l_quantity < 24"""

Caller = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]
WAITING = {"run_sql", "fetch_rows"}


async def one_of_the_mix(step: int, send: Caller) -> list[str]:
    """Step ``step`` of an agent's work; returns the tools it called."""
    match step % 5:
        case 0:
            reply = await send("run_sql", {"sql": "SELECT * FROM tpch.lineitem", "max_rows": 50})
            assert reply["row_count"] == 50 and reply["truncated"]
            return ["run_sql"]
        case 1:
            reply = await send("run_sql", {"sql": Q6})
            assert reply["row_count"] == 1
            return ["run_sql"]
        case 2:
            preview = await send("run_sql", {"sql": "SELECT * FROM tpch.orders ORDER BY o_orderkey", "max_rows": 10})
            page = await send("fetch_rows", {"result_id": preview["result_id"], "offset": 5_000, "limit": 20})
            assert page["row_count"] == 20 and page["total_rows"] == 15_000
            return ["run_sql", "fetch_rows"]
        case 3:
            reply = await send("run_sql", {"sql": "SELECT 1 AS one"})
            assert reply["rows"] == [[1]]
            return ["run_sql"]
        case _:
            reply = await send("describe_table", {"table": "tpch.lineitem"})
            assert len(reply["columns"]) == 16
            return ["describe_table"]


async def run_agents(senders: list[Caller], seconds: float) -> tuple[Counter[str], list[str]]:
    """Each sender works through the mix until the time is up; the tools called, and every failure."""
    called: Counter[str] = Counter()
    failures: list[str] = []
    deadline = time.monotonic() + seconds

    async def agent(index: int, send: Caller) -> None:
        for step in itertools.count(index):
            if time.monotonic() >= deadline:
                return
            try:
                called.update(await one_of_the_mix(step, send))
            except AssertionError as failure:
                failures.append(f"agent {index}, step {step % 5}: {failure}")
                return

    with anyio.fail_after(seconds + 600):  # a call may be queued behind others, never stuck
        async with anyio.create_task_group() as group:
            for index, send in enumerate(senders):
                group.start_soon(agent, index, send)
    return called, failures


def sender(client: Client, called: Counter[str]) -> Caller:
    async def send(tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
        # A busy driver queues work: wait for it rather than get a job handle back.
        result = await client.call_tool(tool, {**arguments, "wait_s": 300} if tool in WAITING else arguments)
        called[tool] += 1  # counted whatever the outcome: every call must be audited
        assert not result.is_error, f"{tool}: {text_of(result)}"
        assert result.structured_content is not None
        return result.structured_content

    return send


async def settled(measure: Callable[[], int], ceiling: int, what: str) -> None:
    """Wait (a minute at most: idle worker threads exit after 10 s) until ``measure()`` is at most ``ceiling``."""
    deadline = time.monotonic() + 60
    while measure() > ceiling and time.monotonic() < deadline:
        await anyio.sleep(0.5)
    assert measure() <= ceiling, f"{what}: {measure()} after the load, at most {ceiling} expected"


def open_session_ids(listed: dict[str, Any]) -> list[tuple[str, str]]:
    return [(s["session_id"], s["state"]) for s in listed["sessions"]]


# -- 16 in-memory clients ----------------------------------------------------------------


async def load_in_memory(app: App, connect: ClientFactory, seconds: float) -> None:
    async with connect("lena") as lena:
        await call(lena, "run_sql", sql="SELECT 1")  # her driver and default session
        sessions_before = open_session_ids(await call(lena, "list_sessions"))
        audit = AuditCursor(app.config.audit_path, "lena")
        async with AsyncExitStack() as stack:
            clients = [await stack.enter_async_context(connect("lena")) for _ in range(CLIENTS)]
            sent: Counter[str] = Counter()
            senders = [sender(client, sent) for client in clients]
            await run_agents(senders, 3)  # warm up: pools of threads grow to what the load needs
            audit.new()
            sent.clear()
            threads, native_threads, fds = threading.active_count(), os_threads(), open_fds()
            called, failures = await run_agents(senders, seconds)
        assert failures == [], failures
        assert sum(called.values()) >= 3 * max(THREADS_TOLERANCE, FDS_TOLERANCE), called
        records = audit.new()
        assert Counter(r["tool"] for r in records) == sent  # exactly one record per call
        assert all(r["outcome"] == "ok" for r in records)
        assert open_session_ids(await call(lena, "list_sessions")) == sessions_before
        with anyio.fail_after(60):
            while [job for job in app.jobs.running() if job.principal == "lena"]:
                await anyio.sleep(0.2)
    await settled(threading.active_count, threads + THREADS_TOLERANCE, "threads")
    await settled(os_threads, native_threads + THREADS_TOLERANCE, "native threads")
    await settled(open_fds, fds + FDS_TOLERANCE, "file descriptors")


@pytest.mark.any_era
async def test_16_clients_at_once_get_every_answer_and_leak_nothing(
    app: App, connect: ClientFactory, mode: str
) -> None:
    await load_in_memory(app, connect, CI_SECONDS)


@pytest.mark.slow
async def test_16_clients_for_a_minute(app: App, connect: ClientFactory, mode: str) -> None:
    await load_in_memory(app, connect, SLOW_SECONDS)


# -- 16 callers over one stdio connection ------------------------------------------------


async def load_over_stdio(tmp_path: Path, data_dir: Path, seconds: float) -> None:
    home = tmp_path / "home"
    config = write_config(home, data_dir)
    params = StdioServerParameters(
        command=SPARK_MCP, args=["serve", "--config", str(config), "--user", "lena"], env=server_env()
    )
    async with Client(params) as host:
        await call(host, "run_sql", sql="SELECT 1", wait_s=300)  # the driver starts here
        server = pid_running(str(config))
        sessions_before = open_session_ids(await call(host, "list_sessions"))
        sent: Counter[str] = Counter()
        senders = [sender(host, sent)] * CLIENTS
        await run_agents(senders, 3)
        sent.clear()
        threads, fds = os_threads(server), open_fds(server)
        log_lines = len((home / "audit" / "audit.jsonl").read_text().splitlines())
        called, failures = await run_agents(senders, seconds)
        assert failures == [], failures
        assert sum(called.values()) >= 3 * max(THREADS_TOLERANCE, FDS_TOLERANCE), called
        records = [json.loads(line) for line in (home / "audit" / "audit.jsonl").read_text().splitlines()]
        assert Counter(r["tool"] for r in records[log_lines:]) == sent
        assert all(r["outcome"] == "ok" for r in records[log_lines:])
        assert open_session_ids(await call(host, "list_sessions")) == sessions_before
        await settled(lambda: os_threads(server), threads + THREADS_TOLERANCE, "threads")
        await settled(lambda: open_fds(server), fds + FDS_TOLERANCE, "file descriptors")


@pytest.mark.slow  # a server and driver of its own: 40 s on 2 cores; the in-memory load runs by default
async def test_16_callers_over_one_stdio_connection_get_every_answer_and_leak_nothing(
    tmp_path: Path, data_dir: Path
) -> None:
    await load_over_stdio(tmp_path, data_dir, CI_SECONDS)


@pytest.mark.slow
async def test_16_callers_over_stdio_for_a_minute(tmp_path: Path, data_dir: Path) -> None:
    await load_over_stdio(tmp_path, data_dir, SLOW_SECONDS)
