"""Notebooks pin their own PySpark, and use libraries built on it: other clients through the gateway.

A team's notebooks and IDEs do not upgrade in step with the server. Each release here runs
``tests/fixtures/other_client.py`` in a virtual environment of its own (made with uv under
``.cache/clients``, gitignored, and kept between runs), through a real gateway to a real
driver of this project's Spark. Whatever the release, the same work must come back as it
does with today's client, and the same refusals must hold: a denied table by name, by SQL
and in a join; its schema; a Python UDF; a write without write rights; a setting outside
the harmless list.

ibis, a dataframe library many analysts use over PySpark, runs ``tests/fixtures/ibis_client.py``
the same way, in an environment with this project's own PySpark release.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pyspark
import pytest

from spark_mcp.app import App
from spark_mcp.config import GatewayConfig
from spark_mcp.gateway import running_gateway
from tests.gateway_support import tokens_for
from tests.http_support import self_signed

pytestmark = [pytest.mark.anyio, pytest.mark.spark]

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "tests" / "fixtures" / "other_client.py"
# The last release of each line before this project's own (pyproject's pyspark pin), and
# what else it needs to import: 3.5 pins NumPy 1, which the newest pyarrow no longer takes.
RELEASES = {
    "3.5.7": ["pyspark[connect]==3.5.7", "pyarrow<19"],
    "4.0.4": ["pyspark-client==4.0.4"],
    "4.1.3": ["pyspark-client==4.1.3"],
    "4.2.0": ["pyspark-client==4.2.0"],
}
# ibis with this project's PySpark (pyspark-client has no release of it).
IBIS = "ibis-10.5.0"
ENVIRONMENTS = {**RELEASES, IBIS: ["ibis-framework[pyspark]==10.5.0", f"pyspark[connect]=={pyspark.__version__}"]}
IBIS_SCRIPT = REPO / "tests" / "fixtures" / "ibis_client.py"
DENIED = "alice may not read spark_catalog.hr.salaries: denied by role analyst (hr.*)"


def client_environment(release: str) -> Path:
    """The Python of a virtual environment holding PySpark ``release`` (or ibis), made once with uv."""
    name = release if release == IBIS else f"pyspark-{release}"
    folder = Path(os.environ.get("SPARK_MCP_CLIENTS_DIR", REPO / ".cache" / "clients")) / name
    python = folder / "bin" / "python"
    if python.exists():
        return python
    uv = os.environ.get("UV") or shutil.which("uv")
    assert uv, "uv is needed to make the other clients' environments (the README's prerequisites)"
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    subprocess.run([uv, "venv", "-q", "--python", sys.executable, str(partial)], check=True)
    # --no-cache: PySpark comes as a source distribution, and uv builds it again into a new cache
    # entry each time (about 1 GB), so a cached build is never reused here and only fills the disk.
    python_option = ["--python", str(partial / "bin" / "python")]
    subprocess.run([uv, "pip", "install", "-q", "--no-cache", *python_option, *ENVIRONMENTS[release]], check=True)
    partial.rename(folder)  # only a complete environment counts next time
    return python


@pytest.fixture(scope="module")
async def gateway(app: App, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[TlsGateway]:
    """The gateway as a team serves it: TLS (PySpark 3.5 sends a token over TLS only)."""
    cert, key = self_signed(tmp_path_factory.mktemp("tls"))
    server = app.config.server.model_copy(update={"tls_cert": cert, "tls_key": key})
    config = app.config.model_copy(update={"gateway": GatewayConfig(port=0), "server": server})
    async with running_gateway(config, lambda: app) as running:
        yield TlsGateway(running.port, cert, tokens_for(config, "alice", "cody"), app)


@dataclass
class TlsGateway:
    port: int
    cert: Path
    tokens: dict[str, str]
    app: App


async def run_client(python: Path, gateway: TlsGateway, user: str, *script: str) -> str:
    """What ``script`` (the notebook's work by default) printed, run as ``user`` through the gateway."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPARK_", "PYSPARK_", "GRPC_"))}
    env["SPARK_REMOTE"] = f"sc://127.0.0.1:{gateway.port}/;token={gateway.tokens[user]};use_ssl=true"
    env["GRPC_DEFAULT_SSL_ROOTS_FILE_PATH"] = str(gateway.cert)  # the client trusts the test's certificate
    with anyio.fail_after(300):
        done = await anyio.run_process([str(python), *(script or [str(SCRIPT)])], env=env, check=False)
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-3000:]
    return done.stdout.decode()


def refused(step: dict[str, Any], reason: str) -> bool:
    """A policy refusal with ``reason``: gRPC's PERMISSION_DENIED, which PySpark 3.5's errors do
    not report (they keep the gateway's message, with its error class)."""
    status = step.get("status")
    message = step.get("message", "")
    return (
        status in ("StatusCode.PERMISSION_DENIED", "None")
        and "(spark_mcp.policy_denied)" in message
        and reason in message
    )


@pytest.mark.parametrize("release", RELEASES)
async def test_an_older_client_works_and_is_governed_the_same(gateway: TlsGateway, release: str) -> None:
    python = await anyio.to_thread.run_sync(client_environment, release)
    out: dict[str, Any] = json.loads(await run_client(python, gateway, "alice"))
    worked = {name: step["value"] for name, step in out.items() if name != "connect_warnings" and "value" in step}
    assert worked == {
        "client": release,
        "server": pyspark.__version__,
        "table_count": 25,
        "dataframe": [[1, 5]],
        "sql": 5,
        "schema": ["r_regionkey", "r_name", "r_comment"],
        "pandas": 5,
        "temp_view": None,
        "temp_view_read": 5,
        "conf_read": worked.get("conf_read") or "a time zone",
        "still_works": 5,
    }, out
    # PySpark's own warnings (pandas or Python versions) may come; none may be the gateway's.
    # PySpark 3.5 sets its connection string on every session it starts: refused as a setting
    # outside the harmless list, it warned at every connect.
    assert not [w for w in out["connect_warnings"] if "spark_mcp" in w], out["connect_warnings"]
    for name in ("denied_table", "denied_sql", "denied_join", "denied_schema"):
        assert refused(out[name], DENIED), (name, out[name])
    assert refused(out["python_udf"], "a Python UDF"), out["python_udf"]
    assert refused(out["python_udf"], "which needs code.run"), out["python_udf"]
    assert refused(out["write"], "no role of alice grants sql.ddl"), out["write"]
    assert refused(out["conf_denied"], "sets spark.sql.warehouse.dir"), out["conf_denied"]
    assert gateway.tokens["alice"] not in gateway.app.config.audit_path.read_text()


async def test_ibis_works_for_a_role_that_may_send_code_and_is_governed_the_same(gateway: TlsGateway) -> None:
    python = await anyio.to_thread.run_sync(client_environment, IBIS)
    out: dict[str, Any] = json.loads(await run_client(python, gateway, "cody", str(IBIS_SCRIPT)))
    worked = {name: step["value"] for name, step in out.items() if "value" in step}
    assert worked == {
        "ibis": "10.5.0",
        "databases": ["sales", "tpch"],  # hr and the namespace cody reads nothing in are not listed
        "tables": ["customer", "lineitem", "nation", "orders", "part", "partsupp", "region", "supplier"],
        "schema": ["n_nationkey", "n_name", "n_regionkey", "n_comment"],
        "head": 3,
        "count": 25,  # SELECT COUNT(*) AS `CountStar(nation)`: a header the checker once took for a node
        "grouped": [5, 5, 5, 5, 5],
        "join": 5,
        "window": 5,
        "sql": 3,
        "memtable": 6,
        "temp_view": 5,
        "current_database": "default",  # USE DATABASE tpch, then back: both once refused
    }, out
    denied = "cody may not read spark_catalog.hr"
    assert denied in out["denied_table"]["message"] and denied in out["denied_sql"]["message"], out

    # ibis registers Python UDFs (unwrap_json_str...) before every query: code, for which an
    # analyst without code.run is refused, with that reason.
    out = json.loads(await run_client(python, gateway, "alice", str(IBIS_SCRIPT)))
    assert "(spark_mcp.policy_denied)" in out["count"]["message"], out["count"]
    assert "a Python UDF unwrap_json" in out["count"]["message"] and "code.run" in out["count"]["message"]
