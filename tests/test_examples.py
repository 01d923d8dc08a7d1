"""The examples run as written: host configs start a working server, the agent session runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from mcp import Client, StdioServerParameters

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
HOST_CONFIGS = ["claude_desktop_config.json", "claude_code.mcp.json", "vscode.mcp.json"]


@pytest.fixture(scope="module")
def example_data() -> None:
    """The data examples/spark-mcp.toml declares, generated as the README says (serve checks it)."""
    if not (EXAMPLES / "data" / "tpch" / "lineitem.parquet").exists():
        tpchgen = Path(sys.executable).parent / "tpchgen-cli"
        subprocess.run(
            [str(tpchgen), "parquet", "-s", "0.01", "--output-dir", str(EXAMPLES / "data" / "tpch")],
            check=True,
            capture_output=True,
        )


def server_entry(name: str) -> dict:
    text = (EXAMPLES / name).read_text().replace("/absolute/path/to/spark-mcp", str(ROOT))
    data = json.loads(text)
    servers = data.get("mcpServers") or data["servers"]
    return servers["spark"]


@pytest.mark.parametrize("name", HOST_CONFIGS)
@pytest.mark.anyio
async def test_each_host_config_starts_a_working_server(name: str, tmp_path: Path, example_data: None) -> None:
    entry = server_entry(name)
    assert entry["command"] == "uv"
    env = {k: v for k, v in os.environ.items() if k in ("HOME", "PATH", "JAVA_HOME", "LANG", "UV_CACHE_DIR")}
    env.update({k: v for k, v in entry.get("env", {}).items() if k != "JAVA_HOME"})  # this machine's Java
    env["SPARK_MCP_HOME"] = str(tmp_path / "home")
    params = StdioServerParameters(command=entry["command"], args=entry["args"], env=env, cwd=str(tmp_path))
    async with Client(params) as client:
        tools = {t.name for t in (await client.list_tools()).tools}
        assert {"whoami", "run_sql", "run_plan", "explain", "fetch_rows", "cancel_job"} <= tools
        who = await client.call_tool("whoami", {})
        assert not who.is_error and "sql.read" in who.structured_content["actions"]


@pytest.mark.spark
def test_the_scripted_agent_session_runs_as_written() -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "agent_session.py")],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert "c_mktsegment | revenue | orders" in out
    assert "l_shipmode | total | rank" in out
    assert "cancelled" in out
    assert "policy_denied" in out
