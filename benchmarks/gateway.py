"""The Spark Connect gateway against the same driver reached directly, with PySpark's own client.

Run by hand:  uv run python benchmarks/gateway.py [--repeat 7] [--tiny-repeat 30]

The server process starts the app (one driver for the benchmark user) and serves the gateway
on a free loopback port. The clients run in a second process, as a notebook would (in one
process they would contend for the GIL with the gateway and bill it for the client's time):
both are plain PySpark Spark Connect sessions, one through the gateway (with an API token),
one straight to the driver (with the driver's own token, handed to the client process on its
stdin). The two take turns on every repetition, after warm-up runs. Reported, median and p95
of each side:

- a 1,000,000-row ``toArrow()`` (three columns, one a string): the result flows through the
  gateway as bytes (target: at most 1.15 times the direct time);
- a tiny DataFrame query (``table(t).limit(1).toArrow()``): what the gateway adds (an API
  token check, one analysis on the driver, the audit record), next to the price of that one
  analysis asked of the driver directly, which is what the MCP path pays for governance too;
- ``spark.sql("SELECT 1").toArrow()``, which is two calls (the SQL command, then its relation),
  each governed.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import anyio
import pyarrow as pa
import pyarrow.parquet as pq
from pyspark.sql.connect.client.retries import DefaultPolicy
from pyspark.sql.connect.session import SparkSession

from spark_mcp.app import App
from spark_mcp.auth.settings import resource_url
from spark_mcp.config import load_config
from spark_mcp.gateway import running_gateway
from spark_mcp.gateway.routing import driver_for
from spark_mcp.state.db import StateDB, state_path
from spark_mcp.state.tokens import TokenStore

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: benchmarks/ is a package
from benchmarks.overhead import machine, stats

USER = "bench"
ROWS = 1_000_000


def compare(name: str, gateway: Callable[[], object], direct: Callable[[], object], repeat: int, warmup: int) -> str:
    for _ in range(warmup):
        gateway()
        direct()
    ours: list[float] = []
    theirs: list[float] = []
    for _ in range(repeat):
        started = time.perf_counter()
        gateway()
        ours.append(time.perf_counter() - started)
        started = time.perf_counter()
        direct()
        theirs.append(time.perf_counter() - started)
    (g50, g95), (d50, d95) = stats(ours), stats(theirs)
    progress = f"{name:<44} gateway {g50 * 1000:8.1f} ms  direct {d50 * 1000:8.1f} ms  ratio {g50 / d50:5.2f}"
    print(progress, file=sys.stderr, flush=True)
    return (
        f"| {name} | {g50 * 1000:,.1f} ms | {d50 * 1000:,.1f} ms | {g50 / d50:.2f} | +{(g50 - d50) * 1000:,.1f} ms "
        f"| {g95 * 1000:,.1f} ms | {d95 * 1000:,.1f} ms |"
    )


def timed(name: str, work: Callable[[], object], repeat: int) -> str:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    m50, m95 = stats(times)
    print(f"{name:<44} {m50 * 1000:8.1f} ms", file=sys.stderr, flush=True)
    return f"| {name} | | {m50 * 1000:,.1f} ms | | | | {m95 * 1000:,.1f} ms |"


def measure(url: str, direct: SparkSession, repeat: int, tiny_repeat: int) -> list[str]:
    through = SparkSession.builder.remote(url).create()
    through.client.set_retry_policies([DefaultPolicy(max_retries=3)])  # type: ignore[arg-type]
    wide = "id", "id * 2 AS twice", "cast(id AS string) AS label"
    rows = [
        compare(
            f"{ROWS:,}-row toArrow()",
            lambda: _check(through.range(ROWS).selectExpr(*wide).toArrow()),
            lambda: _check(direct.range(ROWS).selectExpr(*wide).toArrow()),
            repeat,
            warmup=2,
        ),
        compare(
            "tiny query: table(t).limit(1).toArrow()",
            lambda: through.table("bench.t").limit(1).toArrow(),
            lambda: direct.table("bench.t").limit(1).toArrow(),
            tiny_repeat,
            warmup=3,
        ),
        timed(
            "one analysis, asked directly (explain extended)",
            lambda: direct.table("bench.t").limit(1)._explain_string(extended=True),
            tiny_repeat,
        ),
        compare(
            'spark.sql("SELECT 1").toArrow() (two calls)',
            lambda: through.sql("SELECT 1").toArrow(),
            lambda: direct.sql("SELECT 1").toArrow(),
            tiny_repeat,
            warmup=3,
        ),
    ]
    through.stop()
    return rows


def _check(table: pa.Table) -> pa.Table:
    assert table.num_rows == ROWS
    return table


async def run(repeat: int, tiny_repeat: int) -> None:
    home = Path(tempfile.mkdtemp(prefix="spark-mcp-gateway-bench-"))
    pq.write_table(pa.table({"k": list(range(100)), "v": [str(i) for i in range(100)]}), home / "t.parquet")
    config = load_config(
        None,
        environ={},
        overrides={
            "home": str(home / "home"),
            "datasets": [{"name": "bench.t", "path": str(home / "t.parquet")}],
            "gateway": {"port": 0},
        },
    )
    store = TokenStore(StateDB(state_path(config.home)))
    token = store.create(USER, scopes=["spark:read", "spark:write"], resource=resource_url(config)).token
    print(f"{machine()}; PySpark clients in a process of their own, driver local[2]", flush=True)
    async with App.running(config) as app, running_gateway(config, lambda: app) as gateway:
        driver = await driver_for(app, app.principal(USER))  # the very driver the gateway routes to
        job = {
            "gateway": f"sc://localhost:{gateway.port}/;token={token}",
            "direct": f"sc://{driver.host}:{driver.port}/;token={driver.token};user_id={USER}-direct",
            "repeat": repeat,
            "tiny_repeat": tiny_repeat,
        }
        # The event loop stays free to serve the gateway while the client process measures.
        done = await anyio.run_process(
            [sys.executable, __file__, "--client"], input=json.dumps(job).encode(), stderr=None
        )
    rows = done.stdout.decode().splitlines()
    print()
    print("| what | gateway median | direct median | ratio | added | gateway p95 | direct p95 |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        print(row)


def client() -> None:
    """The client process: reads the job from stdin, writes the table rows to stdout."""
    job = json.loads(sys.stdin.read())
    direct = SparkSession.builder.remote(job["direct"]).create()
    try:
        rows = measure(job["gateway"], direct, job["repeat"], job["tiny_repeat"])
    finally:
        direct.stop()
    sys.stdout.write("\n".join(rows) + "\n")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=7, help="repetitions of the 1M-row read")
    parser.add_argument("--tiny-repeat", type=int, default=30, help="repetitions of the tiny queries")
    parser.add_argument("--client", action="store_true", help=argparse.SUPPRESS)  # the measuring process
    options = parser.parse_args()
    if options.client:
        client()
    else:
        anyio.run(run, options.repeat, options.tiny_repeat)
