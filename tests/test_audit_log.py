"""Every tool call leaves exactly one audit record, written before the reply, in a verifiable chain."""

from __future__ import annotations

import json
import time

import anyio
import pytest
from mcp import Client

from spark_mcp.app import App
from spark_mcp.audit import verify
from tests.helpers import LONG_QUERY, call

pytestmark = [pytest.mark.anyio, pytest.mark.spark]


def records(app: App) -> list[dict]:
    return [json.loads(line) for line in app.config.audit_path.read_text().splitlines()]


async def test_every_call_leaves_exactly_one_record_and_the_chain_verifies(alice: Client, app: App) -> None:
    before = len(records(app))
    calls = [
        ("whoami", {}),
        ("run_sql", {"sql": "SELECT r_name FROM tpch.region ORDER BY 1"}),
        ("run_sql", {"sql": "SELECT * FROM hr.salaries"}),  # denied
        ("run_sql", {"sql": "SELECT * FROM tpch.nope"}),  # Spark error
        ("run_sql", {"sql": "SELECT 1", "max_rows": -5}),  # argument validation error
        ("no_such_tool", {}),  # unknown tool
        ("list_tables", {"namespace": "tpch"}),
        ("describe_table", {"table": "tpch.region"}),
        ("explain", {"sql": "SELECT 1"}),
    ]
    for tool, arguments in calls:
        await alice.call_tool(tool, arguments)
    added = records(app)[before:]
    assert [r["tool"] for r in added] == [tool for tool, _ in calls]
    assert verify(app.config.audit_path).ok


async def test_a_record_carries_statement_kind_tables_decision_outcome_and_rows(alice: Client, app: App) -> None:
    started = time.monotonic()
    reply = await call(alice, "run_sql", sql="SELECT r_name FROM tpch.region ORDER BY 1")
    call_ms = (time.monotonic() - started) * 1000
    record = records(app)[-1]
    assert record["principal"] == "alice"
    assert record["tool"] == "run_sql"
    assert record["session_id"].startswith("ses_")
    assert record["statement"] == "SELECT r_name FROM tpch.region ORDER BY 1"
    assert record["kind"] == "query"
    assert record["tables"] == ["spark_catalog.tpch.region"]
    assert record["decision"] == "allowed" and record["rule"]
    assert record["outcome"] == "ok" and record["error_class"] is None
    assert record["rows"] == 5
    assert record["result_id"].startswith("res_") and record["job_id"].startswith("job_")
    assert record["request_id"] and record["job_id"] == reply["job_id"]
    # The call's duration covers the job it waited for, and lies within what the client saw.
    assert reply["elapsed_ms"] <= record["duration_ms"] <= call_ms


async def test_a_denied_call_is_recorded_with_its_reason_and_rule(alice: Client, app: App) -> None:
    await alice.call_tool("run_sql", {"sql": "SELECT name FROM hr.salaries"})
    record = records(app)[-1]
    assert record["decision"] == "denied"
    assert record["rule"] == 'roles.analyst.deny[1] "hr.*"'
    assert "hr.salaries" in record["reason"]
    assert record["outcome"] == "error" and record["error_class"] == "policy_denied"
    assert record["tables"] == ["spark_catalog.hr.salaries"]


async def test_spark_errors_and_bad_arguments_are_recorded_as_errors(alice: Client, app: App) -> None:
    await alice.call_tool("run_sql", {"sql": "SELECT * FROM tpch.nope"})
    assert records(app)[-1]["error_class"] == "TABLE_OR_VIEW_NOT_FOUND"
    await alice.call_tool("run_sql", {"sql": "SELECT 1", "max_rows": 0})
    assert records(app)[-1]["error_class"] == "invalid_input"


async def test_a_cancelled_call_is_recorded_too(alice: Client, app: App) -> None:
    before = len(records(app))
    with anyio.move_on_after(2):
        await alice.call_tool("run_sql", {"sql": LONG_QUERY, "wait_s": 60})
    with anyio.fail_after(10):
        while len(records(app)) == before:
            await anyio.sleep(0.05)
    record = records(app)[before]
    assert record["tool"] == "run_sql" and record["outcome"] == "error" and record["error_class"] == "cancelled"


async def test_secrets_in_statements_are_redacted_in_the_audit_log(alice: Client, app: App) -> None:
    token = app.drivers.drivers()[0].token
    await alice.call_tool("run_sql", {"sql": f"SELECT '{token}' AS t, 'password=hunter2' AS p"})
    text = app.config.audit_path.read_text()
    assert token not in text
    assert "hunter2" not in text
    assert "[REDACTED]" in records(app)[-1]["statement"]


async def test_resource_reads_are_recorded(alice: Client, app: App) -> None:
    reply = await call(alice, "run_sql", sql="SELECT 1 AS x")
    await alice.read_resource(f"spark://results/{reply['result_id']}")
    record = records(app)[-1]
    assert record["tool"] == f"resource:spark://results/{reply['result_id']}"
    assert record["outcome"] == "ok" and record["result_id"] == reply["result_id"]
