"""Many users on one HTTP server: each sees only their own sessions, jobs and results.

Two API-token users work at the same time on the shared test ``App`` (real Spark drivers,
one per principal). Each then tries the other's ``session_id``, ``job_id`` and
``result_id``: every attempt is "not found", and is audited with the caller, how they
authenticated, their token's id and the not-found class.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
from mcp import Client, MCPError

from spark_mcp.app import App
from spark_mcp.audit import AuditRecord, tail
from spark_mcp.config.model import ServerConfig
from tests.http_support import Running, mcp_client, serving

pytestmark = [pytest.mark.spark, pytest.mark.anyio]


@pytest.fixture
async def server(app: App) -> AsyncIterator[Running]:
    config = app.config.model_copy(update={"server": ServerConfig(transport="http", host="127.0.0.1", port=0)})
    async with serving(config, app=app) as running:
        yield running


def issue(server: Running, user: str) -> tuple[str, str]:
    assert server.service.tokens is not None
    issued = server.service.tokens.create(
        user, scopes=["spark:read", "spark:write"], resource=server.service.resource, name=f"{user}-test"
    )
    return issued.token, issued.record.id


async def work(client: Client, sql: str) -> dict[str, Any]:
    result = await client.call_tool("run_sql", {"sql": sql, "wait_s": 120})
    assert not result.is_error, result.content
    assert result.structured_content is not None
    return result.structured_content


def last_record(server: Running, principal: str, tool: str) -> AuditRecord:
    records = [r for r in tail(server.config.audit_path, 200, principal=principal) if r.tool == tool]
    return records[-1]


async def test_two_users_at_once_each_see_only_their_own_things(server: Running) -> None:
    alice_token, alice_token_id = issue(server, "alice")
    erin_token, erin_token_id = issue(server, "erin")
    async with mcp_client(server.url, alice_token) as alice, mcp_client(server.url, erin_token, mode="legacy") as erin:
        replies: dict[str, dict[str, Any]] = {}

        async def run(name: str, client: Client, sql: str) -> None:
            replies[name] = await work(client, sql)

        async with anyio.create_task_group() as group:
            group.start_soon(run, "alice", alice, "SELECT 'alice' AS who, count(*) AS n FROM tpch.nation")
            group.start_soon(run, "erin", erin, "SELECT 'erin' AS who, count(*) AS n FROM tpch.region")
        mine = replies["alice"]
        assert mine["rows"] == [["alice", 25]]
        assert replies["erin"]["rows"] == [["erin", 5]]

        # Lists show only one's own.
        erin_sessions = (await erin.call_tool("list_sessions", {})).structured_content
        assert erin_sessions is not None
        assert mine["session_id"] not in {s["session_id"] for s in erin_sessions["sessions"]}
        erin_jobs = (await erin.call_tool("list_jobs", {})).structured_content
        assert erin_jobs is not None
        assert mine["job_id"] not in {j["job_id"] for j in erin_jobs["jobs"]}

        # Every use of alice's ids by erin is "not found", and audited as erin's attempt.
        attempts = [
            ("get_job", {"job_id": mine["job_id"]}, "job_not_found"),
            ("cancel_job", {"job_id": mine["job_id"]}, "job_not_found"),
            ("fetch_rows", {"result_id": mine["result_id"]}, "result_not_found"),
            ("run_sql", {"sql": "SELECT 1", "session_id": mine["session_id"]}, "session_not_found"),
            ("close_session", {"session_id": mine["session_id"]}, "session_not_found"),
        ]
        for tool, arguments, error_class in attempts:
            result = await erin.call_tool(tool, arguments)
            assert result.is_error, tool
            text = result.content[0].text  # type: ignore[union-attr]
            assert error_class in text, text
            assert "alice" not in text
            record = last_record(server, "erin", tool)
            assert (record.outcome, record.error_class, record.auth, record.token_id, record.via) == (
                "error",
                error_class,
                "token",
                erin_token_id,
                "mcp",
            ), tool

        with pytest.raises(MCPError):
            await erin.read_resource(f"spark://results/{mine['result_id']}")
        record = last_record(server, "erin", f"resource:spark://results/{mine['result_id']}")
        assert (record.error_class, record.auth, record.token_id) == ("result_not_found", "token", erin_token_id)

        # ...while alice still has all of it.
        page = await alice.call_tool("fetch_rows", {"result_id": mine["result_id"]})
        assert not page.is_error
        job = await alice.call_tool("get_job", {"job_id": mine["job_id"]})
        assert not job.is_error
        record = last_record(server, "alice", "get_job")
        assert (record.principal, record.token_id, record.job_id) == ("alice", alice_token_id, mine["job_id"])

    text = server.config.audit_path.read_text()
    assert alice_token.split("_", 2)[2] not in text
    assert erin_token.split("_", 2)[2] not in text
