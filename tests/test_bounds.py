"""Resource bounds: a huge result, a huge SQL text, a plan that explodes in size, thousands of
sessions. Each is refused or bounded by configuration, with an error that says which bound,
and the server stays up.

What is not bounded yet: the number of principals, and so of drivers (one per principal);
the fleet's ``quotas.max_drivers`` is meant to bound it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client

from spark_mcp.app import App
from spark_mcp.errors import PlanError
from spark_mcp.plans import MAX_JSON_DEPTH, MAX_JSON_NODES, MAX_PLAN_DEPTH, MAX_PLAN_OPERATIONS, parse_plan
from spark_mcp.spark import runner
from tests.helpers import (
    AuditCursor,
    ClientFactory,
    actionable_error,
    call,
    call_error,
    handshake,
    nested_joins,
    raw_server,
    read_replies,
    rpc_line,
    send,
    text_of,
    tool_call,
    write_config,
)

pytestmark = [pytest.mark.anyio, pytest.mark.any_era]

SQL_LIMIT = 200_000  # run_sql's and explain's max_length for sql


# -- a huge result ------------------------------------------------------------------------


@pytest.mark.spark
async def test_a_result_past_results_max_rows_is_cut_there_and_says_so(alice: Client, app: App) -> None:
    cap = app.config.results.max_rows
    reply = await call(alice, "run_sql", sql=f"SELECT id FROM range({cap + 100})", max_rows=5)
    assert reply["truncated"] is True
    page = await call(
        alice, "fetch_rows", result_id=reply["result_id"], offset=cap - 5, limit=50, format="json", wait_s=300
    )
    assert [row[0] for row in page["rows"]] == list(range(cap - 5, cap))
    assert (page["total_rows"], page["next_offset"], page["result_state"]) == (cap, None, "complete")
    assert any(f"results.max_rows ({cap:,} rows)" in note for note in page["notes"]), page["notes"]


@pytest.mark.spark
async def test_a_page_far_past_the_end_is_empty_and_says_where_the_end_is(alice: Client) -> None:
    reply = await call(alice, "run_sql", sql="SELECT r_name FROM tpch.region")
    page = await call(alice, "fetch_rows", result_id=reply["result_id"], offset=2**62, format="json")
    assert page["row_count"] == 0 and page["next_offset"] is None
    assert any("past the end: the result has 5 rows" in note for note in page["notes"])


# -- a huge SQL text ----------------------------------------------------------------------


@pytest.mark.spark
async def test_sql_over_the_length_limit_is_refused_by_name_and_sql_just_under_it_runs(alice: Client) -> None:
    padding = SQL_LIMIT - len("SELECT '' AS s")
    just_under = f"SELECT '{'x' * padding}' AS s"
    assert len(just_under) == SQL_LIMIT
    reply = await call(alice, "run_sql", sql=just_under)
    assert reply["total_rows"] == 1  # its one cell is larger than a reply may be: the result holds it whole
    whole = json.loads((await alice.read_resource(f"spark://results/{reply['result_id']}")).contents[0].text)
    assert whole["rows"] == [["x" * padding]]
    for tool in ("run_sql", "explain"):
        result = await alice.call_tool(tool, {"sql": just_under + " "})
        said = actionable_error(tool, result)
        assert said.startswith("1 validation error") and "\nsql\n" in said and f"at most {SQL_LIMIT}" in said
    plan = {"source": {"sql": just_under + " "}}
    said = await call_error(alice, "run_plan", plan=plan)
    assert said.startswith("plan_error: plan.source.sql") and f"at most {SQL_LIMIT}" in said


@pytest.mark.spark
async def test_sql_nested_too_deep_to_parse_is_refused_with_sparks_reason(alice: Client) -> None:
    # Whether 400 levels fit in the parser's stack depends on how much of it the JVM has compiled
    # by then (compiled frames are smaller): either an answer or Spark's reason, never a crash.
    nested = await alice.call_tool("run_sql", {"sql": "SELECT " + "(" * 400 + "1" + ")" * 400})
    if nested.is_error:
        said = text_of(nested)
        assert "FAILED_TO_PARSE_TOO_COMPLEX" in said and "JVM" not in said, said
    else:
        assert nested.structured_content is not None and nested.structured_content["rows"] == [[1]]
    said = await call_error(alice, "run_sql", sql="SELECT " + "(" * 3000 + "1" + ")" * 3000)  # past any stack
    assert said.startswith(("FAILED_TO_PARSE_TOO_COMPLEX:", "GRPC_")), said
    assert "JVM" not in said and "Rendezvous" not in said
    after = await call(alice, "run_sql", sql="SELECT 1 AS one")
    assert after["rows"] == [[1]]


# -- a plan that explodes -----------------------------------------------------------------


def filters(n: int) -> list[dict[str, Any]]:
    return [{"op": "filter", "condition": f"id >= {-i}"} for i in range(n)]


@pytest.mark.spark
async def test_plans_nested_up_to_the_limit_run_and_deeper_ones_are_refused_before_spark(alice: Client) -> None:
    reply = await call(alice, "run_plan", plan=nested_joins(MAX_PLAN_DEPTH), wait_s=300)
    assert reply["rows"] == [[0], [1]]
    for tool in ("run_plan", "explain"):
        said = await call_error(alice, tool, plan=nested_joins(MAX_PLAN_DEPTH + 1))
        assert said.startswith("plan_error: plan.operations[0].right.operations[0].right"), said
        assert f"nested more than {MAX_PLAN_DEPTH} deep" in said and "save_as" in said


@pytest.mark.spark
async def test_a_plan_with_too_many_operations_in_all_is_refused(alice: Client) -> None:
    def plan(filters_on_top: int) -> dict[str, Any]:
        # Seven unions of 70-filter plans under a few filters: 500 operations in all, in chains
        # short enough for Spark's analyzer (it gives up on chains of about 100 operations).
        branch = {"source": {"range": {"end": 2}}, "operations": filters(70)}
        unions = [{"op": "union", "other": branch}] * 7
        return {"source": {"range": {"end": 2}}, "operations": [*unions, *filters(filters_on_top)]}

    assert MAX_PLAN_OPERATIONS == 7 + 7 * 70 + 3
    said = await call_error(alice, "run_plan", plan=plan(4))
    assert said.startswith(f"plan_error: plan: the plan has more than {MAX_PLAN_OPERATIONS} operations in all")
    reply = await call(alice, "run_plan", plan=plan(3), wait_s=300)
    assert sorted(reply["rows"]) == [[0]] * 8 + [[1]] * 8


@pytest.mark.spark
async def test_plan_json_too_deep_or_too_large_is_refused_before_it_is_read(alice: Client) -> None:
    deep: dict[str, Any] = {"source": {"range": {"end": 1}}}
    for _ in range(MAX_JSON_DEPTH):
        deep = {"source": deep}
    said = await call_error(alice, "run_plan", plan=deep)
    assert said == f"plan_error: plan: the JSON is nested more than {MAX_JSON_DEPTH} levels deep; simplify the plan"
    wide = {"source": {"range": {"end": 1}}, "operations": [{"op": "select", "columns": ["id"] * MAX_JSON_NODES}]}
    said = await call_error(alice, "explain", plan=wide)
    assert said.startswith(f"plan_error: plan: the JSON has more than {MAX_JSON_NODES:,} values")


@pytest.mark.spark
async def test_a_plan_whose_data_explodes_is_stopped_at_its_deadline(connect: ClientFactory, app: App) -> None:
    big = {"source": {"range": {"end": 1_000_000}}}
    plan = {
        **big,
        "operations": [
            {"op": "join", "right": big, "how": "cross"},
            {"op": "group_by", "columns": [], "aggs": [{"fn": "count", "column": "*"}]},
        ],
    }
    async with connect("tim") as tim:  # every statement of tim's role gets 4 seconds
        said = await call_error(tim, "run_plan", plan=plan, wait_s=120)
        assert said.startswith("timed_out:") and "query_timeout_s" in said
        job = app.jobs.list_for("tim")[0]
        session = app.sessions.get("tim", job.session_id)
        assert runner.interrupt(session.connect, job.tag) == []  # nothing with its tag still runs
        # Its join's tasks check for the kill only between batches of streamed rows, and hold both
        # cores until then (tim's statements get 4 s each). On a warm driver that can take minutes:
        # then Spark's task reaper gives up after driver.task_kill_timeout_s (60 s) and the driver
        # is restarted (test_stuck_tasks). Either way tim gets answers again.
        with anyio.fail_after(180):
            while (await tim.call_tool("run_sql", {"sql": "SELECT 1 AS one"})).is_error:
                await anyio.sleep(1)


async def test_json_nested_past_what_the_transport_parses_is_dropped_and_the_server_goes_on(
    tmp_path: Path, data_dir: Path
) -> None:
    """Over stdio, a request 100,000 levels deep never reaches spark-mcp: the SDK cannot parse it
    and drops it without a reply (so it is not a call, and not audited). A 30 MB statement is
    read and refused by its length. Neither needs a driver, and the server answers after both."""
    home = tmp_path / "home"
    deep = '{"a":' * 100_000 + "1" + "}" * 100_000
    plan_call = '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"run_plan","arguments":{"plan":'
    huge_sql = rpc_line(2, "tools/call", {"name": "run_sql", "arguments": {"sql": "x" * 30_000_000}})
    with raw_server(write_config(home, data_dir)) as server:
        with anyio.fail_after(120):
            await anyio.to_thread.run_sync(handshake, server)
        send(server, (plan_call + deep + "}}}\n").encode())
        send(server, huge_sql)
        send(server, tool_call(3, "whoami"))
        with anyio.fail_after(120):
            replies = await anyio.to_thread.run_sync(read_replies, server, {2, 3})
        assert 1 not in replies
        assert "at most 200000 characters" in replies[2]["result"]["content"][0]["text"]
        assert replies[3]["result"]["structuredContent"]["principal"] == "alice"
    records = [json.loads(line) for line in (home / "audit" / "audit.jsonl").read_text().splitlines()]
    assert [(r["tool"], r["error_class"]) for r in records] == [("run_sql", "invalid_input"), ("whoami", None)]


# -- thousands of sessions ----------------------------------------------------------------


async def open_sessions(client: Client) -> list[str]:
    listed = await call(client, "list_sessions")
    return [s["session_id"] for s in listed["sessions"] if s["state"] == "open" and not s["default"]]


@pytest.mark.spark
async def test_concurrent_and_repeated_session_requests_stop_at_the_users_limit(
    connect: ClientFactory, app: App
) -> None:
    await sessions_past_the_limit(connect, app, at_once=50, after=1000)


@pytest.mark.slow
@pytest.mark.spark
async def test_thousands_of_session_requests_at_once_stop_at_the_users_limit(connect: ClientFactory, app: App) -> None:
    await sessions_past_the_limit(connect, app, at_once=2000, after=5000)


async def sessions_past_the_limit(connect: ClientFactory, app: App, *, at_once: int, after: int) -> None:
    async with connect("lena") as lena:
        await call(lena, "run_sql", sql="SELECT 1")  # her default session and driver
        before = await open_sessions(lena)
        limit = app.governance.limits(app.principal("lena")).max_sessions
        audit = AuditCursor(app.config.audit_path, "lena")
        outcomes: list[str] = []

        async def create() -> None:
            result = await lena.call_tool("create_session", {})
            outcomes.append("ok" if not result.is_error else actionable_error("create_session", result))

        try:
            with anyio.fail_after(300):
                async with anyio.create_task_group() as group:
                    for _ in range(at_once):
                        group.start_soon(create)
            opened = await open_sessions(lena)
            assert len(opened) + 1 == limit  # the default session counts too
            assert outcomes.count("ok") == limit - 1 - len(before)
            refused = [o for o in outcomes if o != "ok"]
            prefix = f"limit_exceeded: limits.max_sessions: you have {limit} open sessions, the limit"
            assert all(o.startswith(prefix) for o in refused)
            with anyio.fail_after(600 + after * 0.5):
                for _ in range(after):  # thousands more, one after another: each refused, none opened
                    assert (await call_error(lena, "create_session")).startswith("limit_exceeded:")
            assert len(await open_sessions(lena)) + 1 == limit
            tools = [r["tool"] for r in audit.new()]  # every attempt, and each listing, audited once
            assert tools.count("create_session") == at_once + after and tools.count("list_sessions") == 2
            assert len(tools) == at_once + after + 2
        finally:
            for session_id in await open_sessions(lena):
                if session_id not in before:
                    await call(lena, "close_session", session_id=session_id)


# -- the plan size limits, as pure logic ---------------------------------------------------


def _deep_json(levels: int) -> dict[str, Any]:
    value: dict[str, Any] = {"source": {"range": {"end": 1}}}
    for _ in range(levels - 4):  # the innermost plan is four levels deep, its number counted
        value = {"source": value}
    return value


def _unions(plans: int, filters_each: int) -> dict[str, Any]:
    branch = {"source": {"range": {"end": 1}}, "operations": filters(filters_each)}
    return {"source": {"range": {"end": 1}}, "operations": [{"op": "union", "other": branch}] * plans}


@pytest.mark.parametrize(
    ("plan", "refused_because"),
    [
        (nested_joins(MAX_PLAN_DEPTH), None),
        (nested_joins(MAX_PLAN_DEPTH + 1), f"nested more than {MAX_PLAN_DEPTH} deep"),
        (_unions(5, 99), None),  # 5 + 5 * 99 = 500 operations
        (_unions(5, 100), f"more than {MAX_PLAN_OPERATIONS} operations in all"),
        (_deep_json(MAX_JSON_DEPTH), "matches none of the forms"),  # deep enough, and still read
        (_deep_json(MAX_JSON_DEPTH + 1), f"nested more than {MAX_JSON_DEPTH} levels deep"),
        ({"source": {"range": {"end": 1}}, "operations": [{"op": "select", "columns": ["id"] * 99_990}]}, None),
        (
            {"source": {"range": {"end": 1}}, "operations": [{"op": "select", "columns": ["id"] * MAX_JSON_NODES}]},
            f"more than {MAX_JSON_NODES:,} values",
        ),
    ],
)
def test_plan_size_limits(plan: dict[str, Any], refused_because: str | None) -> None:
    if refused_because is None:
        parse_plan(plan)
    else:
        with pytest.raises(PlanError, match=refused_because):
            parse_plan(plan)
