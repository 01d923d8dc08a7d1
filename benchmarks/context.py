"""What spark-mcp costs an agent's context: the tool list every conversation carries, and replies.

Run by hand:  uv run python -m benchmarks.context

Measures the ``tools/list`` reply as a client receives it (compact JSON, as the SDK sends
it, and with ``json.dumps``'s default separators, as the issue that set the 25,000-character
budget counted it), tool by tool, then the reply economy (``benchmarks/preview_size.py``:
spark-mcp's compact text against the plain JSON dump peers return for the same rows).
No Spark driver is needed: listing tools starts none.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import anyio
from mcp import Client

from benchmarks import preview_size
from spark_mcp.config import bundled_policies, load_config
from spark_mcp.server import build_server

BUDGET = 25_000


async def tools_list() -> list[dict[str, Any]]:
    home = Path(tempfile.mkdtemp(prefix="spark-mcp-context-"))
    config = load_config(None, environ={}, overrides={"home": str(home), "policies": [str(bundled_policies())]})
    async with Client(build_server(config)) as client:
        listed = await client.list_tools()
    return [tool.model_dump(by_alias=True, mode="json", exclude_none=True) for tool in listed.tools]


def main() -> None:
    tools = anyio.run(tools_list)
    compact = len(json.dumps({"tools": tools}, separators=(",", ":")))
    spaced = len(json.dumps({"tools": tools}))
    print(f"tools/list: {len(tools)} tools, {compact:,} characters compact, {spaced:,} with default separators")
    print(f"budget {BUDGET:,}: {'met' if spaced <= BUDGET else 'NOT met'}\n")
    print("| tool | total | input schema | output schema | description |")
    print("|---|---|---|---|---|")
    for tool in sorted(tools, key=lambda t: -len(json.dumps(t))):
        print(
            f"| {tool['name']} | {len(json.dumps(tool)):,} | {len(json.dumps(tool.get('inputSchema'))):,} "
            f"| {len(json.dumps(tool.get('outputSchema'))):,} | {len(tool.get('description', '')):,} |"
        )
    print()
    preview_size.main()


if __name__ == "__main__":
    main()
