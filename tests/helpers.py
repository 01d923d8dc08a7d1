"""Helpers the test modules share: calling tools, test configs, and what a test looks for.

Fixtures stay in ``conftest.py``; anything a test module imports comes from here, so no
test module imports another.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

from mcp import Client
from mcp.types import CallToolResult

from spark_mcp.config import Config, load_config

TESTS = Path(__file__).resolve().parent
TPCH_TABLES = ("customer", "lineitem", "nation", "orders", "part", "partsupp", "region", "supplier")

# About 4e10 joined rows: minutes of work on two cores, so it is still running when we look.
LONG_QUERY = "SELECT count(*) FROM range(200000) a CROSS JOIN range(200000) b WHERE a.id + b.id < 0"

ClientFactory = Callable[[str], AbstractAsyncContextManager[Client]]


def make_config(home: Path, data_dir: Path, **overrides: Any) -> Config:
    """The tests' config: TPC-H, HR, a secret table and CSV sales from ``data_dir``; test policies."""
    datasets = [{"name": f"tpch.{t}", "path": str(data_dir / "tpch" / f"{t}.parquet")} for t in TPCH_TABLES]
    datasets += [
        {"name": "hr.salaries", "path": str(data_dir / "hr" / "salaries.parquet")},
        {"name": "tpch.secret_codes", "path": str(data_dir / "secret_codes.parquet")},
        {
            "name": "sales.orders",
            "path": str(data_dir / "sales" / "orders.csv"),
            "format": "csv",
            "options": {"header": "true", "inferSchema": "true"},
        },
    ]
    values: dict[str, Any] = {
        "home": str(home),
        "policies": [str(TESTS / "policies")],
        "datasets": datasets,
        "driver": {"cores": 2, "memory": "1g"},
        "limits": {"max_rows": 1000, "max_chars": 8000, "query_timeout_s": 120},
        "results": {"max_rows": 2_000_000},
    }
    for key, value in overrides.items():
        values[key] = (
            {**values[key], **value} if isinstance(value, dict) and isinstance(values.get(key), dict) else value
        )
    return load_config(None, environ={}, overrides=values)


def text_of(result: CallToolResult) -> str:
    """Every text block of a tool reply, joined: what the model reads."""
    return "\n".join(block.text for block in result.content if block.type == "text")


async def call(client: Client, tool: str, **arguments: object) -> dict:
    """A tool's structured reply; the test fails with the model's text if the tool failed."""
    result = await client.call_tool(tool, arguments)
    assert not result.is_error, text_of(result)
    assert result.structured_content is not None
    return result.structured_content


async def call_error(client: Client, tool: str, **arguments: object) -> str:
    """The error text the model reads, without the SDK's "Error executing tool X: " prefix."""
    result = await client.call_tool(tool, arguments)
    assert result.is_error, f"expected an error, got {result.structured_content}"
    return text_of(result).removeprefix(f"Error executing tool {tool}: ")


def driver_pids() -> dict[str, int]:
    """Every live spark-mcp driver on this machine, by driver id (from its command line)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        for arg in cmdline:
            if arg.startswith(b"spark.mcp.driver.id="):
                found[arg.split(b"=", 1)[1].decode()] = int(entry.name)
    return found
