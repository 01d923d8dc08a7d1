"""``spark-mcp call``: call one tool in-process and print the reply."""

from __future__ import annotations

import argparse
import json
from typing import Any

import anyio

from spark_mcp.cli.common import config_from
from spark_mcp.cli.output import err, out
from spark_mcp.config import Config
from spark_mcp.logs import configure_logging


def cmd_call(args: argparse.Namespace) -> int:
    config = config_from(args)
    configure_logging(config.server.log_level)
    try:
        arguments = json.loads(args.args) if args.args else {}
    except json.JSONDecodeError as exc:
        err(f"--args is not JSON: {exc}")
        return 2
    return anyio.run(_call, config, args.tool, arguments)


async def _call(config: Config, tool: str, arguments: dict[str, Any]) -> int:
    from mcp import Client

    from spark_mcp.server import build_server

    async with Client(build_server(config)) as client:
        result = await client.call_tool(tool, arguments)
    for item in result.content:
        if getattr(item, "type", None) == "text":
            out(item.text)  # type: ignore[union-attr]
    if result.structured_content is not None:
        out(json.dumps(result.structured_content, indent=2))
    return 1 if result.is_error else 0
