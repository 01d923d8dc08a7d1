"""The console and the fleet's shared drivers (``driver.share = "group"``), with one real driver.

nina and omar are both analysts, so under group share their sessions run on one driver
owned by the role. Each sees it (marked as shared) but only their own session on it;
stopping it would end the other's session too, so only an admin may: nina's attempt is
refused with the rule and audited; root (driver.admin) stops it, and the fleet ends the
sessions on it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from spark_mcp.app import App
from spark_mcp.audit import tail
from spark_mcp.config.model import ServerConfig
from tests.console_support import console_client
from tests.helpers import make_config
from tests.http_support import Running, mcp_client, serving

pytestmark = [pytest.mark.spark, pytest.mark.anyio]


async def mcp(server: Running, token: str, tool: str, **arguments: Any) -> dict[str, Any]:
    async with mcp_client(server.url, token) as client:
        result = await client.call_tool(tool, arguments)
    assert not result.is_error, result.content
    assert result.structured_content is not None
    return result.structured_content


async def test_a_driver_shared_by_a_role_is_listed_for_its_members_but_only_an_admin_stops_it(
    tmp_path: Path, data_dir: Path
) -> None:
    config = make_config(
        tmp_path / "home",
        data_dir,
        datasets=[{"name": "tpch.region", "path": str(data_dir / "tpch" / "region.parquet")}],
        driver={"share": "group", "cores": 1, "memory": "512m"},
    )
    config = config.model_copy(update={"server": ServerConfig(transport="http", host="127.0.0.1", port=0)})
    async with App.running(config, environ=dict(os.environ)) as app, serving(config, app=app) as server:
        store = server.service.tokens
        assert store is not None
        tokens = {
            user: store.create(user, scopes=["spark:read", "spark:write"], resource=server.service.resource).token
            for user in ("nina", "omar", "root")
        }
        hers = await mcp(server, tokens["nina"], "create_session")
        his = await mcp(server, tokens["omar"], "create_session")
        driver_id = hers["driver_id"]
        assert his["driver_id"] == driver_id
        driver = app.drivers.get(driver_id)
        assert driver is not None and driver.owner == "group:analyst"

        async with console_client(server.base) as nina:
            await nina.sign_in(tokens["nina"])
            page = (await nina.get("/")).text
            assert driver_id in page and "shared: role analyst" in page
            assert hers["session_id"] in page and his["session_id"] not in page  # her session, not his
            assert f"driver {driver_id}" not in page  # no Stop button for it
            refused = await nina.act(f"/drivers/{driver_id}/stop")
            assert refused.status_code == 403 and "only an admin" in refused.text
        assert app.drivers.get(driver_id) is not None
        attempt = next(r for r in tail(config.audit_path, 50, principal="nina") if r.tool == "console.stop_driver")
        assert (attempt.outcome, attempt.decision, attempt.error_class, attempt.rule) == (
            "error",
            "denied",
            "policy_denied",
            "default-deny",
        )

        async with console_client(server.base) as root:
            await root.sign_in(tokens["root"])
            page = (await root.get("/")).text
            assert "<td>role analyst</td>" in page
            stopped = await root.act(f"/drivers/{driver_id}/stop")
            assert stopped.status_code == 303
        assert app.drivers.get(driver_id) is None
        listed = await mcp(server, tokens["omar"], "list_sessions")
        assert all(s["state"] != "open" for s in listed["sessions"] if s["session_id"] == his["session_id"])
        done = next(r for r in tail(config.audit_path, 50, principal="root") if r.tool == "console.stop_driver")
        assert (done.outcome, done.rule) == ("ok", "roles.admin.actions")
