"""Long-running work against a real driver: jobs, progress, cancel, deadlines, paging, exports."""

from __future__ import annotations

import base64
import csv
import io
import itertools
import json

import anyio
import pyarrow as pa
import pytest
from mcp import Client

from spark_mcp.app import App
from spark_mcp.spark import runner
from tests.helpers import LONG_QUERY, ClientFactory, call, call_error

pytestmark = [pytest.mark.anyio, pytest.mark.spark]


async def wait_terminal(client: Client, job_id: str) -> dict:
    with anyio.fail_after(60):
        while True:
            reply = await call(client, "get_job", job_id=job_id, wait_s=5)
            if reply["state"] not in ("queued", "running"):
                return reply


async def test_a_long_query_becomes_a_job_with_progress_and_cancel_stops_it_in_spark(alice: Client, app: App) -> None:
    session = await call(alice, "create_session")
    progress: list[tuple[float, float | None, str | None]] = []

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        progress.append((done, total, message))

    result = await alice.call_tool(
        "run_sql",
        {"sql": LONG_QUERY, "wait_s": 6, "session_id": session["session_id"]},
        progress_callback=on_progress,
    )
    reply = result.structured_content
    assert reply is not None and not result.is_error
    assert reply["state"] == "running"
    assert reply["job_id"].startswith("job_")
    assert "get_job" in result.content[0].text
    assert progress, "Spark's stage progress should have been forwarded as MCP progress"
    assert all(b[0] >= a[0] for a, b in itertools.pairwise(progress)), "progress only grows"

    status = await call(alice, "get_job", job_id=reply["job_id"], wait_s=0)
    assert status["state"] == "running"
    assert status["progress"]["stages"] >= 1

    cancelling = await alice.call_tool("cancel_job", {"job_id": reply["job_id"]})
    cancelled = cancelling.structured_content
    assert cancelled is not None and cancelled["state"] == "cancelled"
    assert "interrupted" in cancelling.content[0].text
    # Nothing carrying the job's tag is left running on the driver.
    spark_session = app.sessions.get("alice", session["session_id"])
    assert runner.interrupt(spark_session.connect, f"spark-mcp-{reply['job_id']}") == []
    # The session is still usable after the interrupt.
    after = await call(alice, "run_sql", sql="SELECT 1 AS one", session_id=session["session_id"])
    assert after["rows"] == [[1]]
    await call(alice, "close_session", session_id=session["session_id"])


async def test_a_job_past_its_deadline_is_interrupted_and_reported_timed_out(connect: ClientFactory) -> None:
    async with connect("tim") as tim:  # tim's role gives every statement 4 seconds
        text = await call_error(tim, "run_sql", sql=LONG_QUERY, wait_s=60)
        assert text.startswith("timed_out:")
        jobs = await call(tim, "list_jobs")
        assert jobs["jobs"][0]["state"] == "timed_out"


async def test_a_cancelled_mcp_request_interrupts_the_spark_work(alice: Client) -> None:
    with anyio.move_on_after(4):
        await alice.call_tool("run_sql", {"sql": LONG_QUERY, "wait_s": 120})
    jobs = await call(alice, "list_jobs", limit=1)
    job = jobs["jobs"][0]
    assert job["statement"] == LONG_QUERY
    final = await wait_terminal(alice, job["job_id"])
    assert final["state"] == "cancelled"


async def test_get_job_of_someone_else_is_not_found(connect: ClientFactory, alice: Client) -> None:
    reply = await call(alice, "run_sql", sql="SELECT 1")
    async with connect("bob") as bob:
        assert "job_not_found" in await call_error(bob, "get_job", job_id=reply["job_id"])
        assert "job_not_found" in await call_error(bob, "cancel_job", job_id=reply["job_id"])
        assert "result_not_found" in await call_error(bob, "fetch_rows", result_id=reply["result_id"])
    assert "invalid_input" in await call_error(alice, "get_job", job_id="../../etc")


async def test_a_finished_job_returns_the_same_result_shape_as_run_sql(alice: Client) -> None:
    reply = await call(alice, "run_sql", sql="SELECT 40 + 2 AS answer")
    again = await call(alice, "get_job", job_id=reply["job_id"])
    assert again["state"] == "succeeded"
    assert again["rows"] == [[42]] and again["result_id"] == reply["result_id"]


async def test_paging_returns_every_row_exactly_once(alice: Client) -> None:
    reply = await call(alice, "run_sql", sql="SELECT id, id * 3 AS triple FROM range(5000)", max_rows=1)
    result_id = reply["result_id"]
    assert (reply["total_rows"], reply["result_state"], reply["truncated"]) == (None, "on_demand", True)
    seen: list[int] = []
    offset: int | None = 0
    while offset is not None:
        page = await call(alice, "fetch_rows", result_id=result_id, offset=offset, limit=200, format="json")
        assert page["row_count"] <= 200
        assert (page["result_state"], page["total_rows"]) == ("complete", 5000)
        seen += [row[0] for row in page["rows"]]
        assert all(row[1] == row[0] * 3 for row in page["rows"])
        offset = page["next_offset"]
    assert seen == list(range(5000))


async def test_a_million_row_result_is_paged_without_ever_sending_more_than_asked(root: Client) -> None:
    reply = await call(root, "run_sql", sql="SELECT id, concat('row-', id) AS label FROM range(1000000)", max_rows=5)
    assert reply["total_rows"] is None and reply["row_count"] == 5 and reply["truncated"] is True
    for offset in (0, 499_950, 999_990):
        page = await call(root, "fetch_rows", result_id=reply["result_id"], offset=offset, limit=50, format="json")
        assert page["row_count"] <= 50
        assert page["rows"][0] == [offset, f"row-{offset}"]
    last = await call(root, "fetch_rows", result_id=reply["result_id"], offset=999_990, limit=50, format="json")
    assert last["row_count"] == 10 and last["next_offset"] is None


async def test_fetch_rows_formats_table_and_csv(alice: Client) -> None:
    reply = await call(alice, "run_sql", sql="SELECT r_regionkey, r_name FROM tpch.region ORDER BY 1")
    table = await call(alice, "fetch_rows", result_id=reply["result_id"], offset=1, limit=2)
    assert table["text"].splitlines()[0] == "r_regionkey | r_name"
    assert "1 | AMERICA" in table["text"]
    assert table["next_offset"] == 3
    as_csv = await call(alice, "fetch_rows", result_id=reply["result_id"], format="csv")
    rows = list(csv.reader(io.StringIO(as_csv["text"])))
    assert rows[0] == ["r_regionkey", "r_name"] and rows[1] == ["0", "AFRICA"]


async def test_full_results_round_trip_through_the_json_csv_and_arrow_resources(alice: Client) -> None:
    reply = await call(
        alice,
        "run_sql",
        sql="SELECT n_nationkey, n_name, CAST(n_nationkey / 3 AS DECIMAL(9,3)) AS third FROM tpch.nation ORDER BY 1",
    )
    uri = f"spark://results/{reply['result_id']}"

    as_json = json.loads((await alice.read_resource(uri)).contents[0].text)
    assert len(as_json["rows"]) == 25
    assert as_json["rows"][4] == [4, "EGYPT", "1.333"]

    as_csv = (await alice.read_resource(uri + ".csv")).contents[0].text
    assert list(csv.reader(io.StringIO(as_csv)))[5] == ["4", "EGYPT", "1.333"]

    blob = (await alice.read_resource(uri + ".arrow")).contents[0].blob
    table = pa.ipc.open_stream(base64.b64decode(blob)).read_all()
    assert table.num_rows == 25
    assert table.schema.field("third").type == pa.decimal128(9, 3)
    assert table.schema.field("third").metadata[b"spark_type"] == b"decimal(9,3)"


async def test_resources_of_someone_else_are_not_found(connect: ClientFactory, alice: Client) -> None:
    reply = await call(alice, "run_sql", sql="SELECT 1")
    async with connect("bob") as bob:
        with pytest.raises(Exception, match="no result"):
            await bob.read_resource(f"spark://results/{reply['result_id']}")


async def test_summary_describes_a_large_result_without_its_rows(alice: Client) -> None:
    reply = await call(
        alice, "run_sql", sql="SELECT l_returnflag, l_quantity, l_shipdate FROM tpch.lineitem", summary=True
    )
    assert reply["summary"] is True
    names = [c["name"] for c in reply["columns"]]
    summary = {row[0]: dict(zip(names, row, strict=True)) for row in reply["rows"]}
    assert set(summary) == {"l_returnflag", "l_quantity", "l_shipdate"}
    assert summary["l_returnflag"]["distinct_count"] == 3
    assert summary["l_quantity"]["min"] == "1.00" and summary["l_quantity"]["max"] == "50.00"
    assert summary["l_shipdate"]["null_count"] == 0
