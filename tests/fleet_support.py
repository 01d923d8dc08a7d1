"""What the fleet tests share: the home's driver rows, live driver processes, polling, tool calls."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import anyio
from mcp import Client

from spark_mcp.drivers.process import pid_alive
from spark_mcp.state import StateDB
from spark_mcp.state.db import state_path
from spark_mcp.state.drivers import DriverRow, DriverStore


def driver_rows(home: Path) -> list[DriverRow]:
    """The drivers the state database of ``home`` records (what ``spark-mcp drivers list`` shows)."""
    path = state_path(home)
    if not path.exists():
        return []
    db = StateDB(path)
    try:
        return DriverStore(db).all()
    finally:
        db.close()


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


async def wait_for(condition: Callable[[], object], timeout_s: float = 240) -> None:
    """Poll ``condition`` until it holds, within a deadline (drivers take seconds to start)."""
    with anyio.fail_after(timeout_s):
        while not condition():
            await anyio.sleep(0.05)


def wait_gone(pid: int, timeout_s: float = 60) -> bool:
    """True once ``pid`` has exited (or is a zombie), within the deadline."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().split(") ")[-1]
        except OSError:
            state = ""
        if not pid_alive(pid) or state.startswith("Z"):
            return True
        time.sleep(0.1)
    return False


def server_env() -> dict[str, str]:
    """What a host passes a stdio server (plus HOME, PATH...): Java must be findable."""
    keep = ("HOME", "PATH", "JAVA_HOME", "LANG", "TMPDIR")
    return {k: v for k, v in os.environ.items() if k in keep}


async def call(client: Client, tool: str, **arguments: object) -> dict:
    result = await client.call_tool(tool, arguments)
    assert not result.is_error, result.content[0].text  # type: ignore[union-attr]
    assert result.structured_content is not None
    return result.structured_content


async def call_error(client: Client, tool: str, **arguments: object) -> str:
    """The error text the model reads, without the SDK's "Error executing tool X: " prefix."""
    result = await client.call_tool(tool, arguments)
    assert result.is_error, f"expected an error, got {result.structured_content}"
    return result.content[0].text.removeprefix(f"Error executing tool {tool}: ")  # type: ignore[union-attr]
