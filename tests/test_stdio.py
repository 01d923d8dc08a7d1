"""`spark-mcp serve` as a host runs it: a subprocess speaking MCP over stdio.

These tests start their own server processes (and so their own drivers), exactly as
Claude Desktop or VS Code would, and check that no driver outlives its server, whether
the host closes stdin, sends SIGTERM, or kills the server outright.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import anyio
import pytest
from mcp import Client, StdioServerParameters

from spark_mcp.drivers.process import pid_alive
from spark_mcp.drivers.recovery import is_ours
from tests.fleet_support import driver_rows
from tests.helpers import SPARK_MCP, server_env, write_config

pytestmark = [pytest.mark.anyio, pytest.mark.spark]


def wait_gone(pid: int, timeout_s: float = 60) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not pid_alive(pid) or Path(f"/proc/{pid}/stat").read_text().split(") ")[-1].startswith("Z"):
            return True
        time.sleep(0.1)
    return False


async def test_a_host_session_over_stdio_and_no_driver_outlives_the_server(tmp_path: Path, data_dir: Path) -> None:
    home = tmp_path / "home"
    config = write_config(home, data_dir)
    params = StdioServerParameters(
        command=SPARK_MCP, args=["serve", "--config", str(config), "--user", "alice"], env=server_env()
    )
    async with Client(params) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        assert {"whoami", "run_sql", "list_tables", "describe_table", "preview_table", "run_plan", "fetch_rows"} <= set(
            tools
        )
        assert tools["list_tables"].annotations.read_only_hint is True
        assert tools["run_sql"].annotations.read_only_hint is False
        assert tools["run_sql"].output_schema is not None
        who = await client.call_tool("whoami", {})
        assert who.structured_content["principal"] == "alice"
        reply = await client.call_tool("run_sql", {"sql": "SELECT count(*) AS n FROM tpch.orders"})
        assert not reply.is_error, reply.content[0].text
        assert reply.structured_content["rows"] == [[15000]]
        records = [r for r in driver_rows(home) if is_ours(r)]
        assert len(records) == 1
        driver_pid = records[0].pid
    assert wait_gone(driver_pid), "the driver outlived the server after the host closed stdin"
    assert driver_rows(home) == []


def rpc(process: subprocess.Popen[str], message: dict) -> None:
    assert process.stdin is not None
    process.stdin.write(json.dumps(message) + "\n")
    process.stdin.flush()


def read_reply(process: subprocess.Popen[str], request_id: int, lines: list[str]) -> dict:
    assert process.stdout is not None
    while True:
        line = process.stdout.readline()
        assert line, "the server closed stdout"
        lines.append(line)
        message = json.loads(line)  # every line on stdout must be a JSON-RPC message
        if message.get("id") == request_id:
            return message


@contextmanager
def start_raw_server(home: Path, data_dir: Path) -> Iterator[subprocess.Popen[str]]:
    config = write_config(home, data_dir)
    with subprocess.Popen(
        [SPARK_MCP, "serve", "--config", str(config), "--user", "alice"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=server_env(),
    ) as process:
        try:
            yield process
        finally:
            process.kill()


def handshake_and_query(process: subprocess.Popen[str], lines: list[str]) -> dict:
    rpc(
        process,
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "raw", "version": "0"},
            },
        },
    )
    init = read_reply(process, 1, lines)
    assert init["result"]["serverInfo"]["name"] == "spark-mcp"
    rpc(process, {"jsonrpc": "2.0", "method": "notifications/initialized"})
    rpc(
        process,
        {
            "jsonrpc": "2.0",
            "id": 2,
            "method": "tools/call",
            "params": {"name": "run_sql", "arguments": {"sql": "SELECT r_name FROM tpch.region ORDER BY 1"}},
        },
    )
    return read_reply(process, 2, lines)


async def test_stdout_carries_only_protocol_and_sigterm_stops_the_drivers(tmp_path: Path, data_dir: Path) -> None:
    home = tmp_path / "home"
    lines: list[str] = []
    with start_raw_server(home, data_dir) as process:
        with anyio.fail_after(240):
            reply = await anyio.to_thread.run_sync(handshake_and_query, process, lines)
        assert reply["result"]["structuredContent"]["rows"][0] == ["AFRICA"]
        assert all(json.loads(line)["jsonrpc"] == "2.0" for line in lines)
        driver_pid = next(r.pid for r in driver_rows(home) if is_ours(r))
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) is not None
        assert wait_gone(driver_pid), "the driver outlived a SIGTERM-ed server"
        stderr = process.stderr.read() if process.stderr else ""
        assert "driver.stopped" in stderr  # logs went to stderr, not stdout
        assert "event_loop='uvloop'" in stderr  # served on uvloop (the default, auto)


async def test_a_killed_server_takes_its_drivers_with_it(tmp_path: Path, data_dir: Path) -> None:
    home = tmp_path / "home"
    with start_raw_server(home, data_dir) as process:
        with anyio.fail_after(240):
            await anyio.to_thread.run_sync(handshake_and_query, process, [])
        driver_pid = next(r.pid for r in driver_rows(home) if is_ours(r))
        process.kill()  # SIGKILL: no cleanup code runs in the server
        process.wait(timeout=30)
        assert wait_gone(driver_pid), "the parent-death signal should have stopped the driver"
