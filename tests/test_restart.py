"""A server killed with ``kill -9`` and started again, as a host runs it: ``spark-mcp serve`` over stdio.

With ``driver.lifetime = "persistent"`` the next server re-adopts the same driver process
and rejoins the session (its temp view is still there), reports the job that was running as
lost, and still serves stored results. A server with ``server`` lifetime stops such a
driver as an orphan. Either way no JVM of the home is left running. A state database that
is corrupt or from a newer spark-mcp stops ``serve`` with a clear error before it speaks.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

from spark_mcp.drivers.base import Driver
from spark_mcp.drivers.files import read_token
from spark_mcp.drivers.process import is_same_process
from spark_mcp.drivers.recovery import is_ours
from spark_mcp.spark.connect import open_session
from spark_mcp.state import StateDB
from spark_mcp.state.db import state_path
from spark_mcp.state.drivers import DriverRow
from spark_mcp.state.sessions import SessionStore
from tests.fleet_support import driver_rows, wait_gone
from tests.helpers import TESTS, driver_pids, server_env

SPARK_MCP = str(Path(sys.executable).parent / "spark-mcp")
LONG_QUERY = "SELECT sum(a.id * b.id) AS s FROM range(300000) a CROSS JOIN range(300000) b"


def write_config(home: Path, data_dir: Path, lifetime: str) -> Path:
    path = home.parent / f"spark-mcp-{lifetime}.toml"
    path.write_text(
        f'home = "{home}"\npolicies = ["{TESTS / "policies"}"]\n\n'
        f'[driver]\ncores = 1\nmemory = "512m"\nlifetime = "{lifetime}"\n\n'
        f'[[datasets]]\nname = "tpch.region"\npath = "{data_dir / "tpch" / "region.parquet"}"\n'
    )
    return path


class StdioServer:
    """``spark-mcp serve`` as a subprocess, spoken to in JSON-RPC lines (so it can be killed at will)."""

    def __init__(self, config: Path, log: Path, user: str = "alice") -> None:
        self.log = log.open("a")
        self.process = subprocess.Popen(
            [SPARK_MCP, "serve", "--config", str(config), "--user", user],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            env=server_env(),
        )
        self._next = 0
        init = self.request(
            "initialize",
            {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "test", "version": "0"}},
        )
        assert init["result"]["serverInfo"]["name"] == "spark-mcp"
        self._send({"jsonrpc": "2.0", "method": "notifications/initialized"})

    def _send(self, message: dict[str, Any]) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(message) + "\n")
        self.process.stdin.flush()

    def request(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        self._next += 1
        self._send({"jsonrpc": "2.0", "id": self._next, "method": method, "params": params})
        assert self.process.stdout is not None
        while True:
            line = self.process.stdout.readline()
            assert line, "the server closed stdout"
            message = json.loads(line)
            if message.get("id") == self._next:
                return dict(message)

    def tool(self, name: str, **arguments: Any) -> dict[str, Any]:
        result = self.request("tools/call", {"name": name, "arguments": arguments})["result"]
        assert not result.get("isError"), result["content"][0]["text"]
        return dict(result["structuredContent"])

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self._finish(timeout_s=30)

    def close(self) -> None:
        """Close stdin, as a host does when it is done: the server exits by itself."""
        self._finish(timeout_s=120)

    def _finish(self, timeout_s: float) -> None:
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe is not None:
                pipe.close()
        self.process.wait(timeout=timeout_s)
        self.log.close()


async def start(config: Path, log: Path) -> StdioServer:
    with anyio.fail_after(300):
        return await anyio.to_thread.run_sync(StdioServer, config, log)


async def tool(server: StdioServer, name: str, **arguments: Any) -> dict[str, Any]:
    with anyio.fail_after(300):
        return await anyio.to_thread.run_sync(lambda: server.tool(name, **arguments))


def release_in_spark(home: Path, row: DriverRow, session_id: str) -> None:
    db = StateDB(state_path(home))
    try:
        saved = next(s for s in SessionStore(db).all() if s.id == session_id)
    finally:
        db.close()
    token = read_token(Path(row.workdir))
    assert token is not None
    driver = Driver(
        id=row.id,
        profile=row.profile,
        backend=row.backend,
        host=row.host,
        port=row.port,
        workdir=Path(row.workdir),
        log_path=Path(row.log),
        token=token,
    )
    session = open_session(
        driver,
        user_id=saved.principal,
        session_id=saved.spark_session_id,
        server_side_session_id=saved.server_side_session_id,
    )
    session.spark.client.release_session()
    session.abandon()


def drivers_list(home: Path) -> list[dict[str, Any]]:
    done = subprocess.run(
        [SPARK_MCP, "drivers", "--home", str(home), "list", "--json"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return list(json.loads(done.stdout))


@pytest.mark.anyio
@pytest.mark.spark
async def test_persistent_drivers_and_sessions_survive_kill_9_and_a_server_lifetime_start_stops_them(
    tmp_path: Path, data_dir: Path
) -> None:
    home = tmp_path / "home"
    persistent = write_config(home, data_dir, "persistent")
    log = tmp_path / "server.log"

    first = await start(persistent, log)
    view = await tool(first, "run_sql", sql="CREATE TEMP VIEW kept AS SELECT 42 AS answer")
    session_id = view["session_id"]
    doomed = (await tool(first, "create_session"))["session_id"]
    seven = await tool(first, "run_sql", sql="SELECT 7 AS seven")
    running = await tool(first, "run_sql", sql=LONG_QUERY, wait_s=0)
    assert running["state"] in ("queued", "running")
    [row] = driver_rows(home)
    assert row.pid is not None and is_ours(row)
    [listed] = drivers_list(home)
    assert listed["server_alive"] is True and listed["server_pid"] == first.process.pid and listed["running"]

    first.kill()
    assert is_same_process(row.pid, row.pid_start), "a persistent driver outlives its server"
    [listed] = drivers_list(home)
    assert listed["server_alive"] is False and listed["running"] is True
    # While no server runs, another client (with the driver's token) ends one of the sessions in Spark.
    await anyio.to_thread.run_sync(release_in_spark, home, row, doomed)

    second = await start(persistent, log)
    [adopted] = driver_rows(home)
    assert (adopted.id, adopted.pid) == (row.id, row.pid)
    assert adopted.server_pid == second.process.pid
    sessions = {s["session_id"]: s for s in (await tool(second, "list_sessions"))["sessions"]}
    assert (sessions[session_id]["state"], sessions[session_id]["driver_id"]) == ("open", row.id)
    assert sessions[doomed]["state"] == "lost" and "Spark no longer has it" in sessions[doomed]["note"]
    kept = await tool(second, "run_sql", sql="SELECT answer FROM kept", session_id=session_id)
    assert kept["rows"] == [[42]]
    lost = await tool(second, "get_job", job_id=running["job_id"], wait_s=0)
    assert lost["state"] == "lost" and lost["error"]["code"] == "job_lost"
    assert "stopped before it finished" in lost["error"]["message"]
    page = await tool(second, "fetch_rows", result_id=seven["result_id"], format="json")
    assert page["rows"] == [[7]]

    second.kill()
    assert is_same_process(row.pid, row.pid_start)

    # A server with "server" lifetime adopts nothing: the driver is an orphan and is stopped.
    third = await start(write_config(home, data_dir, "server"), log)
    assert not is_same_process(row.pid, row.pid_start)
    assert driver_rows(home) == []
    sessions = (await tool(third, "list_sessions"))["sessions"]
    assert [(s["session_id"], s["state"]) for s in sessions] == [(session_id, "lost")]  # doomed was reported
    assert "could not re-adopt its driver" in sessions[0]["note"]
    await anyio.to_thread.run_sync(third.close)
    assert row.id not in driver_pids()
    assert "driver.orphan_stopped" in log.read_text()


@pytest.mark.anyio
@pytest.mark.spark
async def test_after_kill_9_in_server_lifetime_the_next_server_cleans_up_and_says_the_session_is_lost(
    tmp_path: Path, data_dir: Path
) -> None:
    home = tmp_path / "home"
    config = write_config(home, data_dir, "server")
    log = tmp_path / "server.log"
    first = await start(config, log)
    reply = await tool(first, "run_sql", sql="SELECT 1 AS one")
    [row] = driver_rows(home)
    first.kill()
    assert row.pid is not None and wait_gone(row.pid), "the parent-death signal stops a server-lifetime driver"
    [listed] = drivers_list(home)
    assert listed["running"] is False and listed["server_alive"] is False

    second = await start(config, log)
    assert driver_rows(home) == []
    assert not (home / "drivers" / row.id / "token").exists()
    sessions = (await tool(second, "list_sessions"))["sessions"]
    assert [(s["session_id"], s["state"]) for s in sessions] == [(reply["session_id"], "lost")]
    again = await tool(second, "run_sql", sql="SELECT 2 AS two")
    assert again["rows"] == [[2]]
    await anyio.to_thread.run_sync(second.close)
    assert {r.id for r in driver_rows(home)} == set()


def serve_once(tmp_path: Path) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "spark-mcp.toml"
    config.write_text(f'home = "{tmp_path / "home"}"\npolicies = ["{TESTS / "policies"}"]\n')
    return subprocess.run(
        [SPARK_MCP, "serve", "--config", str(config)],
        input="",
        capture_output=True,
        text=True,
        timeout=120,
        env={**server_env(), "SPARK_MCP_LOG_LEVEL": "error"},
    )


def test_a_corrupt_state_database_stops_serve_with_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "home").mkdir(mode=0o700)
    (tmp_path / "home" / "state.db").write_bytes(b"SQLite format 3\x00" + os.urandom(4096))
    done = serve_once(tmp_path)
    assert done.returncode == 1 and done.stdout == ""
    assert "state_error" in done.stderr and "cannot be read" in done.stderr and "move the file aside" in done.stderr
    assert "Traceback" not in done.stderr
    listed = subprocess.run(
        [SPARK_MCP, "drivers", "--home", str(tmp_path / "home"), "list"], capture_output=True, text=True, timeout=60
    )
    assert listed.returncode == 1 and "state_error" in listed.stderr


def test_a_state_database_from_a_newer_spark_mcp_stops_serve_with_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "home").mkdir(mode=0o700)
    with sqlite3.connect(tmp_path / "home" / "state.db") as conn:
        conn.execute("CREATE TABLE schema_versions (component TEXT PRIMARY KEY, version INTEGER NOT NULL)")
        conn.execute("INSERT INTO schema_versions VALUES ('drivers', 99)")
    done = serve_once(tmp_path)
    assert done.returncode == 1 and done.stdout == ""
    assert "state_error" in done.stderr and "written by a newer spark-mcp" in done.stderr
    assert "Traceback" not in done.stderr
