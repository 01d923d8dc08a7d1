"""A second, non-Python client: the MCP Inspector CLI against the HTTP server with a token.

The Inspector (npm ``@modelcontextprotocol/inspector``) is installed by ``.ci/run`` into
``.cache/inspector`` (gitignored); when it is missing, the fixture installs it there with
npm, so the test never silently skips. Its HOME and config files stay in that folder.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import anyio
import pytest

from tests.http_support import http_config, serving

pytestmark = pytest.mark.anyio

REPO = Path(__file__).resolve().parents[1]
INSPECTOR_VERSION = "2.12.0"


@pytest.fixture(scope="session")
def inspector() -> Path:
    folder = Path(os.environ.get("SPARK_MCP_INSPECTOR_DIR", REPO / ".cache" / "inspector"))
    binary = folder / "node_modules" / ".bin" / "mcp-inspector"
    if not binary.exists():
        npm = shutil.which("npm")
        assert npm is not None, "the Inspector test needs Node.js and npm (bash .ci/run installs them)"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "package.json").write_text('{"name": "spark-mcp-inspector", "private": true}\n')
        subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", f"@modelcontextprotocol/inspector@{INSPECTOR_VERSION}"],
            cwd=folder,
            env={**_env(folder), "npm_config_cache": str(folder / "npm-cache")},
            check=True,
            capture_output=True,
            timeout=600,
        )
    return binary


def _env(folder: Path) -> dict[str, str]:
    home = folder / "home"
    home.mkdir(parents=True, exist_ok=True)
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "MCP_CATALOG_PATH": str(folder / "mcp.json"),
        "MCP_CLIENT_CONFIG_PATH": str(folder / "client.json"),
        "NO_COLOR": "1",
    }


async def run_inspector(binary: Path, url: str, *args: str) -> subprocess.CompletedProcess[bytes]:
    return await anyio.run_process(
        [str(binary), "--cli", "-q", "--format", "json", url, "--transport", "http", *args],
        env=_env(binary.parents[2]),
        check=False,
    )


@pytest.mark.parametrize("era", ["legacy", "modern"])
async def test_the_inspector_lists_and_calls_tools_with_a_bearer_token(
    inspector: Path, tmp_path: Path, era: str
) -> None:
    async with serving(http_config(tmp_path / "home")) as running:
        assert running.service.tokens is not None
        token = running.service.tokens.create("alice", scopes=["spark:read"], resource=running.service.resource).token
        header = ("--header", f"Authorization: Bearer {token}", "--protocol-era", era)

        listed = await run_inspector(inspector, running.url, *header, "--method", "tools/list")
        assert listed.returncode == 0, listed.stderr
        names = {tool["name"] for tool in json.loads(listed.stdout)["result"]["tools"]}
        assert {"whoami", "run_sql", "fetch_rows", "list_tables"} <= names

        called = await run_inspector(inspector, running.url, *header, "--method", "tools/call", "--tool-name", "whoami")
        assert called.returncode == 0, called.stderr
        assert json.loads(called.stdout)["result"]["structuredContent"]["principal"] == "alice"

        # Without a token the server answers 401, and the Inspector (non-interactive) gives up.
        refused = await run_inspector(inspector, running.url, "--method", "tools/list")
        assert refused.returncode == 3
        assert json.loads(refused.stderr)["error"]["code"] == "auth_required"
