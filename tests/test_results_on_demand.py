"""Preview first: a query replies with its preview rows, and the rest is produced when asked for.

Against a real driver through the MCP client. TPC-H lineitem at scale 0.01 has 60,175 rows
in one file, written in l_orderkey order.
"""

from __future__ import annotations

import json

import pytest
from mcp import Client

from tests.helpers import ClientFactory, call, call_error

pytestmark = [pytest.mark.anyio, pytest.mark.spark]

LINEITEM_ROWS = 60_175


async def fill_jobs(client: Client) -> list[dict]:
    return [j for j in (await call(client, "list_jobs"))["jobs"] if j["tool"] == "fetch_rows"]


async def test_a_preview_of_a_big_table_replies_with_its_rows_and_computes_no_more(alice: Client) -> None:
    before = len(await fill_jobs(alice))
    result = await alice.call_tool("run_sql", {"sql": "SELECT * FROM tpch.lineitem", "max_rows": 20})
    reply = result.structured_content
    assert not result.is_error and reply is not None
    assert (reply["row_count"], reply["truncated"], reply["result_state"], reply["total_rows"]) == (
        20,
        True,
        "on_demand",
        None,
    )
    assert "more rows exist" in result.content[0].text and "fetch_rows(offset=20)" in result.content[0].text
    # Reading within the preview computes nothing new.
    page = await call(alice, "fetch_rows", result_id=reply["result_id"], offset=5, limit=10, format="json")
    assert page["rows"] == reply["rows"][5:15] and page["result_state"] == "on_demand"
    assert page["next_offset"] == 15
    assert len(await fill_jobs(alice)) == before


async def test_fetching_past_the_preview_produces_every_row_exactly_once_in_order(alice: Client) -> None:
    reply = await call(alice, "run_sql", sql="SELECT l_orderkey, l_linenumber FROM tpch.lineitem", max_rows=10)
    result_id = reply["result_id"]
    page = await call(alice, "fetch_rows", result_id=result_id, offset=10, limit=200, format="json")
    assert (page["result_state"], page["total_rows"]) == ("complete", LINEITEM_ROWS)
    assert page["notes"] == [], page["notes"]  # one file, read in order: the second run agrees with the preview
    everything = json.loads((await alice.read_resource(f"spark://results/{result_id}")).contents[0].text)["rows"]
    assert len(everything) == LINEITEM_ROWS
    assert everything[:10] == reply["rows"]
    assert everything[10:210] == page["rows"]
    assert len({tuple(row) for row in everything}) == LINEITEM_ROWS  # (orderkey, linenumber) is the key
    again = await call(alice, "get_job", job_id=reply["job_id"])  # the preview's job now shows the whole result
    assert (again["result_state"], again["total_rows"]) == ("complete", LINEITEM_ROWS)


async def test_a_second_run_that_orders_rows_differently_is_said_to(alice: Client) -> None:
    reply = await call(alice, "run_sql", sql="SELECT l_orderkey FROM tpch.lineitem ORDER BY rand()", max_rows=10)
    page = await call(alice, "fetch_rows", result_id=reply["result_id"], offset=0, limit=20, format="json")
    assert page["result_state"] == "complete"
    assert any("first rows differ from the preview" in n for n in page["notes"]), page["notes"]
    assert page["rows"][:10] != reply["rows"]


async def test_reading_a_result_resource_completes_it_first(alice: Client) -> None:
    reply = await call(alice, "run_sql", sql="SELECT n_nationkey FROM tpch.nation ORDER BY 1", max_rows=3)
    assert reply["result_state"] == "on_demand"
    rows = json.loads((await alice.read_resource(f"spark://results/{reply['result_id']}")).contents[0].text)["rows"]
    assert rows == [[k] for k in range(25)]


async def test_a_plan_reading_an_on_demand_result_gets_all_of_it(alice: Client) -> None:
    reply = await call(alice, "run_sql", sql="SELECT n_nationkey FROM tpch.nation", max_rows=2)
    counted = await call(
        alice,
        "run_plan",
        plan={
            "source": {"result_id": reply["result_id"]},
            "operations": [{"op": "group_by", "columns": [], "aggs": [{"fn": "count", "column": "*", "alias": "n"}]}],
        },
    )
    assert counted["rows"] == [[25]]


async def test_a_failing_second_run_leaves_the_preview_readable_and_says_it_failed(alice: Client) -> None:
    # The first rows have small order keys; a later one trips the assertion, so only the full run fails.
    sql = "SELECT l_orderkey, assert_true(l_orderkey < 1000) AS ok FROM tpch.lineitem"
    reply = await call(alice, "run_sql", sql=sql, max_rows=5)
    assert reply["result_state"] == "on_demand"
    page = await call(alice, "fetch_rows", result_id=reply["result_id"], offset=0, limit=100, format="json")
    assert page["result_state"] == "failed" and page["total_rows"] is None
    assert page["rows"] == reply["rows"]  # the preview is still there, and nothing pretends to be complete
    assert any("failed" in n and "asking fetch_rows for them again retries" in n for n in page["notes"]), page
    with pytest.raises(Exception, match="failed"):
        await alice.read_resource(f"spark://results/{reply['result_id']}")


async def test_the_rest_cannot_be_produced_once_its_session_is_closed(alice: Client) -> None:
    session = (await call(alice, "create_session"))["session_id"]
    try:
        reply = await call(alice, "run_sql", session_id=session, sql="SELECT * FROM tpch.orders", max_rows=5)
    finally:
        await call(alice, "close_session", session_id=session)
    text = await call_error(alice, "fetch_rows", result_id=reply["result_id"], offset=5, limit=10)
    assert text.startswith("session_closed:") and "first 5 rows stay readable" in text
    page = await call(alice, "fetch_rows", result_id=reply["result_id"], offset=0, limit=5, format="json")
    assert page["rows"] == reply["rows"]


async def test_the_second_run_is_analysed_and_judged_again(connect: ClientFactory) -> None:
    # The rest comes from running the statement again through governance, not from a saved plan:
    # once the temp view it read is gone, the rest cannot be produced, and the caller is told why.
    async with connect("alice") as alice:
        session = (await call(alice, "create_session"))["session_id"]
        try:
            await call(alice, "run_sql", session_id=session, sql="CREATE TEMP VIEW v AS SELECT * FROM tpch.orders")
            reply = await call(alice, "run_sql", session_id=session, sql="SELECT * FROM v", max_rows=5)
            await call(alice, "run_sql", session_id=session, sql="DROP VIEW v")
            text = await call_error(alice, "fetch_rows", result_id=reply["result_id"], offset=5, limit=5)
            assert text.startswith("TABLE_OR_VIEW_NOT_FOUND"), text
            page = await call(alice, "fetch_rows", result_id=reply["result_id"], offset=0, limit=5, format="json")
            assert page["rows"] == reply["rows"] and page["result_state"] == "on_demand"
        finally:
            await call(alice, "close_session", session_id=session)


async def test_commands_and_summaries_are_complete_at_once(alice: Client) -> None:
    summary = await call(alice, "run_sql", sql="SELECT l_quantity FROM tpch.lineitem", summary=True)
    assert (summary["result_state"], summary["total_rows"]) == ("complete", LINEITEM_ROWS)
    described = await call(alice, "run_sql", sql="DESCRIBE TABLE tpch.nation", max_rows=1)
    assert described["result_state"] == "complete" and described["total_rows"] == 4
