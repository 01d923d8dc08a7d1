"""What the fleet tests share beyond ``tests.helpers``: the home's driver rows, waiting for a pid to go."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import anyio

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


async def wait_for(condition: Callable[[], object], timeout_s: float = 240) -> None:
    """Poll ``condition`` until it is true, failing the test past the deadline."""
    with anyio.fail_after(timeout_s):
        while not condition():
            await anyio.sleep(0.1)


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
