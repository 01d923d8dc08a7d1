"""run_sql against a real driver, through the MCP client, in both protocol eras."""

from __future__ import annotations

import json
import time
from decimal import Decimal

import pytest
from mcp import Client

from tests.helpers import ClientFactory, call, call_error, text_of

pytestmark = [pytest.mark.anyio, pytest.mark.spark, pytest.mark.any_era]


async def test_a_query_returns_typed_columns_exact_rows_and_a_result_id(alice: Client) -> None:
    sql = (
        "SELECT n_nationkey, n_name, CAST(1.10 AS DECIMAL(10,2)) AS price, DATE'2024-02-29' AS day "
        "FROM tpch.nation ORDER BY n_nationkey LIMIT 3"
    )
    started = time.monotonic()
    result = await alice.call_tool("run_sql", {"sql": sql})
    call_ms = (time.monotonic() - started) * 1000
    assert not result.is_error, text_of(result)
    reply = result.structured_content
    assert reply is not None
    assert reply["state"] == "succeeded"
    assert reply["columns"] == [
        {"name": "n_nationkey", "type": "bigint"},
        {"name": "n_name", "type": "string"},
        {"name": "price", "type": "decimal(10,2)"},
        {"name": "day", "type": "date"},
    ]
    assert reply["rows"][0] == [0, "ALGERIA", "1.10", "2024-02-29"]
    assert reply["row_count"] == 3
    assert reply["truncated"] is False
    assert reply["result_id"].startswith("res_")
    # The job's time is the one the text reports, and it is part of the call's own time.
    assert f"ok in {reply['elapsed_ms']} ms; result {reply['result_id']}" in text_of(result)
    assert 0 <= reply["elapsed_ms"] <= call_ms


async def test_decimals_keep_every_digit(alice: Client) -> None:
    reply = await call(alice, "run_sql", sql="SELECT CAST('12345678901234567890.123456789' AS DECIMAL(38,9)) AS d")
    assert Decimal(reply["rows"][0][0]) == Decimal("12345678901234567890.123456789")


async def test_more_rows_than_max_rows_are_reported_as_truncated(alice: Client) -> None:
    result = await alice.call_tool("run_sql", {"sql": "SELECT * FROM tpch.lineitem", "max_rows": 5})
    reply = result.structured_content
    assert reply is not None
    assert reply["row_count"] == 5 and len(reply["rows"]) == 5
    assert reply["truncated"] is True
    assert (reply["total_rows"], reply["result_state"]) == (None, "on_demand")  # the rest is computed when asked for
    text = result.content[0].text
    assert "more rows exist" in text


async def test_max_rows_above_the_role_cap_is_lowered_and_said(alice: Client) -> None:
    reply = await call(alice, "run_sql", sql="SELECT * FROM range(1000)", max_rows=900)
    assert reply["row_count"] <= 200  # alice's role caps replies at 200 rows
    assert any("lowered" in n for n in reply["notes"])


async def test_the_character_budget_cuts_wide_rows_and_says_so(alice: Client) -> None:
    result = await alice.call_tool(
        "run_sql", {"sql": "SELECT id, repeat('x', 500) AS wide FROM range(100)", "max_rows": 100}
    )
    reply = result.structured_content
    assert reply is not None
    assert reply["truncated"] is True
    assert reply["row_count"] < 100
    assert len(result.content[0].text) <= 8000 + 300  # the preview plus a one-line header
    assert len(json.dumps(reply["rows"])) <= 8000
    assert any("characters" in n for n in reply["notes"])


async def test_the_text_content_is_a_compact_table(alice: Client) -> None:
    result = await alice.call_tool("run_sql", {"sql": "SELECT r_regionkey, r_name FROM tpch.region ORDER BY 1"})
    text = result.content[0].text
    assert "r_regionkey | r_name" in text
    assert "0 | AFRICA" in text
    links = [c for c in result.content if c.type == "resource_link"]
    assert links and str(links[0].uri).startswith("spark://results/res_")


async def test_a_missing_table_names_table_or_view_not_found(alice: Client) -> None:
    text = await call_error(alice, "run_sql", sql="SELECT * FROM tpch.no_such_table")
    assert "TABLE_OR_VIEW_NOT_FOUND" in text
    assert "JVM" not in text and "\tat " not in text


async def test_a_missing_table_where_the_caller_may_not_read_is_denied_like_one_that_exists(alice: Client) -> None:
    # "Not found" here, against a denial for hr.salaries, would tell alice which tables hr holds.
    for sql in ("SELECT * FROM hr.no_such_table", "SELECT n_name FROM tpch.nation JOIN hr.nope ON true"):
        text = await call_error(alice, "run_sql", sql=sql)
        assert "policy_denied" in text and "may not read spark_catalog.hr." in text, text
        assert "TABLE_OR_VIEW_NOT_FOUND" not in text


async def test_a_command_alice_may_not_run_is_refused_alike_whether_its_table_exists(alice: Client) -> None:
    # Analysed, REFRESH is refused for its action; failing analysis (no such table) it was
    # refused as a read of hr.nope, which told alice that hr.salaries exists.
    for sql in ("REFRESH TABLE hr.{t}", "INSERT INTO hr.{t} VALUES ('x', 1)", "ALTER TABLE hr.{t} ADD COLUMN z INT"):
        found = await call_error(alice, "run_sql", sql=sql.format(t="salaries"))
        missing = await call_error(alice, "run_sql", sql=sql.format(t="nope"))
        assert "policy_denied" in found and "may not read" not in found, found
        assert found.replace("salaries", "X") == missing.replace("nope", "X"), (found, missing)


async def test_a_syntax_error_names_the_parse_error_class(alice: Client) -> None:
    text = await call_error(alice, "run_sql", sql="SELEKT 1")
    assert "PARSE_SYNTAX_ERROR" in text


async def test_a_runtime_error_is_translated_without_a_stack(alice: Client) -> None:
    text = await call_error(alice, "run_sql", sql="SELECT assert_true(false, 'boom')")
    assert "boom" in text
    assert "JVM stacktrace" not in text and "\tat org.apache" not in text


async def test_bad_arguments_are_refused_with_a_message_the_agent_can_use(alice: Client) -> None:
    result = await alice.call_tool("run_sql", {"sql": "SELECT 1", "max_rows": 0})
    assert result.is_error
    assert "max_rows" in result.content[0].text


async def test_tpch_q1_runs_and_returns_four_groups(alice: Client) -> None:
    sql = """
        SELECT l_returnflag, l_linestatus, sum(l_quantity) AS sum_qty,
               sum(l_extendedprice * (1 - l_discount)) AS sum_disc_price, avg(l_discount) AS avg_disc, count(*) AS n
        FROM tpch.lineitem
        WHERE l_shipdate <= date '1998-12-01' - interval '90' day
        GROUP BY l_returnflag, l_linestatus
        ORDER BY l_returnflag, l_linestatus"""
    reply = await call(alice, "run_sql", sql=sql)
    assert reply["row_count"] == 4
    assert [r[:2] for r in reply["rows"]] == [["A", "F"], ["N", "F"], ["N", "O"], ["R", "F"]]


async def test_csv_datasets_are_registered_with_their_options(alice: Client) -> None:
    reply = await call(
        alice, "run_sql", sql="SELECT region, sum(amount) FROM sales.orders GROUP BY region ORDER BY region"
    )
    assert reply["rows"] == [["north", 17.5], ["south", -3.25]]


async def test_sessions_are_isolated_from_each_other(alice: Client) -> None:
    first = await call(alice, "create_session")
    second = await call(alice, "create_session")
    try:
        await call(alice, "run_sql", sql="CREATE TEMP VIEW mine AS SELECT 1 AS x", session_id=first["session_id"])
        seen = await call(alice, "run_sql", sql="SELECT * FROM mine", session_id=first["session_id"])
        assert seen["rows"] == [[1]]
        text = await call_error(alice, "run_sql", sql="SELECT * FROM mine", session_id=second["session_id"])
        assert "TABLE_OR_VIEW_NOT_FOUND" in text
    finally:
        await call(alice, "close_session", session_id=first["session_id"])
        await call(alice, "close_session", session_id=second["session_id"])


async def test_closed_and_unknown_sessions_are_reported_as_such(alice: Client) -> None:
    session = await call(alice, "create_session")
    await call(alice, "close_session", session_id=session["session_id"])
    closed = await call_error(alice, "run_sql", sql="SELECT 1", session_id=session["session_id"])
    assert "session_closed" in closed and "closed by its owner" in closed
    unknown = await call_error(alice, "run_sql", sql="SELECT 1", session_id="ses_000000000000")
    assert "session_not_found" in unknown
    malformed = await call_error(alice, "run_sql", sql="SELECT 1", session_id="nonsense")
    assert "invalid_input" in malformed


async def test_another_principal_cannot_see_or_use_my_session(connect: ClientFactory, alice: Client) -> None:
    session = await call(alice, "create_session")
    try:
        async with connect("bob") as bob:
            text = await call_error(bob, "run_sql", sql="SELECT 1", session_id=session["session_id"])
            assert "session_not_found" in text
            text = await call_error(bob, "close_session", session_id=session["session_id"])
            assert "session_not_found" in text
            listed = await call(bob, "list_sessions")
            assert session["session_id"] not in [s["session_id"] for s in listed["sessions"]]
    finally:
        await call(alice, "close_session", session_id=session["session_id"])


async def test_the_default_session_is_created_on_first_use_and_reused(alice: Client) -> None:
    await call(alice, "run_sql", sql="SELECT 1")
    listed = await call(alice, "list_sessions")
    defaults = [s for s in listed["sessions"] if s["default"]]
    assert len(defaults) == 1
    reply = await call(alice, "run_sql", sql="SELECT 2")
    assert reply["session_id"] == defaults[0]["session_id"]


async def test_the_session_limit_of_the_role_is_enforced(alice: Client) -> None:
    created = []
    try:
        text = ""
        for _ in range(4):  # alice's role allows 3 open sessions, the default one included
            result = await alice.call_tool("create_session", {})
            if result.is_error:
                text = result.content[0].text
                break
            created.append(result.structured_content["session_id"])
        assert "limit_exceeded" in text
    finally:
        for session_id in created:
            await call(alice, "close_session", session_id=session_id)


async def test_all_22_tpch_queries_run_for_a_read_only_analyst(alice: Client) -> None:
    from tests.fixtures.capture_explain import TPCH_QUERIES

    session = (await call(alice, "create_session"))["session_id"]
    try:
        await call(alice, "run_sql", sql="USE tpch", session_id=session)  # the queries name bare tables
        for number, sql in sorted(TPCH_QUERIES.items()):
            result = await alice.call_tool("run_sql", {"sql": sql, "session_id": session, "max_rows": 5})
            assert not result.is_error, f"Q{number}: {result.content[0].text}"
            reply = result.structured_content
            assert reply["state"] == "succeeded" and reply["statement_kind"] == "query", f"Q{number}"
    finally:
        await call(alice, "close_session", session_id=session)


async def test_a_statement_without_a_result_set_says_so_in_text_and_structure(connect: ClientFactory) -> None:
    async with connect("alice") as alice:
        session = (await call(alice, "create_session"))["session_id"]
        try:
            result = await alice.call_tool(
                "run_sql", {"session_id": session, "sql": "CREATE TEMP VIEW few AS SELECT * FROM tpch.nation"}
            )
            assert not result.is_error, result.content[0].text
            reply = result.structured_content
            assert reply["result_set"] is False
            assert reply["statement_kind"] == "temp_view"
            assert (reply["rows"], reply["row_count"], reply["columns"], reply["result_id"]) == ([], 0, [], None)
            text = result.content[0].text
            assert "no result set" in text and "rows" not in text
            assert [c.type for c in result.content] == ["text"]  # nothing to page, so no resource link
            rows = await call(alice, "run_sql", session_id=session, sql="SELECT count(*) FROM few")
            assert rows["result_set"] is True and rows["rows"] == [[25]]
        finally:
            await call(alice, "close_session", session_id=session)
