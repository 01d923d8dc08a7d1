"""The tool list every conversation carries stays within its budget (issue 9: 25,000 characters).

No driver is needed: listing tools starts none. The figure is counted as the issue that set
the budget counted it, with ``json.dumps``'s default separators (the wire form is smaller).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mcp import Client

from spark_mcp.config import bundled_policies, load_config
from spark_mcp.server import build_server

pytestmark = pytest.mark.anyio

BUDGET = 25_000
TOOLS = {
    "whoami", "create_session", "list_sessions", "close_session", "run_sql", "run_plan", "explain",
    "get_job", "cancel_job", "list_jobs", "fetch_rows", "list_catalogs", "list_namespaces",
    "list_tables", "describe_table", "preview_table",
}  # fmt: skip


async def test_the_tool_list_fits_the_budget_without_dropping_a_tool_or_its_output_schema(tmp_path: Path) -> None:
    config = load_config(None, environ={}, overrides={"home": str(tmp_path), "policies": [str(bundled_policies())]})
    async with Client(build_server(config)) as client:
        listed = await client.list_tools()
    tools = [tool.model_dump(by_alias=True, mode="json", exclude_none=True) for tool in listed.tools]
    assert {tool["name"] for tool in tools} >= TOOLS
    assert all(tool.get("outputSchema", {}).get("type") == "object" for tool in tools)
    size = len(json.dumps({"tools": tools}))
    assert size <= BUDGET, f"tools/list is {size:,} characters; the budget is {BUDGET:,}"
