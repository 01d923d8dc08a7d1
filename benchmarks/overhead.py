"""spark-mcp against direct Spark Connect, on equal terms, through a real MCP client.

Run by hand:  uv run python -m benchmarks.overhead [--scale 0.1] [--repeat 15] [--queries 1,3,5,6,10,12,14,19]

Both sides use the same driver: the server starts it (TPC-H registered as catalog tables,
as the datasets config does), then a second, plain PySpark Spark Connect session is opened
on that very driver. The two sides take turns on every repetition, after warm-up runs, so
caches favour neither. Reported: median and p95 of each side and their ratios, for a tiny
query, the 50-row preview of the biggest table, a 10,000-row result read in pages, and the
chosen TPC-H queries (data from tpchgen-cli, generated once per scale under /tmp).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
from mcp import Client
from tests.fixtures.capture_explain import TPCH_QUERIES

from benchmarks.replies import first_text
from spark_mcp.app import App
from spark_mcp.config import load_config
from spark_mcp.server import build_server
from spark_mcp.spark.connect import open_session

TABLES = ("customer", "lineitem", "nation", "orders", "part", "partsupp", "region", "supplier")
USER = "bench"


def tpch_data(scale: float) -> Path:
    """TPC-H Parquet at ``scale``, generated once and kept for later runs."""
    root = Path(tempfile.gettempdir()) / "spark-mcp-bench-data" / f"sf{scale:g}"
    if not (root / "lineitem.parquet").exists():
        root.mkdir(parents=True, exist_ok=True)
        tpchgen = Path(sys.executable).parent / "tpchgen-cli"
        subprocess.run([str(tpchgen), "parquet", "-s", str(scale), "--output-dir", str(root)], check=True)
    return root


def machine() -> str:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in line
        ),
        platform.processor(),
    )
    memory = int(next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines() if "MemTotal" in line))
    return f"{os.cpu_count()} cores ({cpu}), {memory / 1024**2:.0f} GiB, Python {platform.python_version()}"


def stats(times: list[float]) -> tuple[float, float]:
    ordered = sorted(times)
    return statistics.median(ordered), ordered[max(0, round(0.95 * len(ordered)) - 1)]


class Bench:
    def __init__(self, client: Client, spark: object, repeat: int) -> None:
        self.client = client
        self.spark = spark
        self.repeat = repeat
        self.rows: list[tuple[str, float, float, float, float]] = []

    async def mcp(self, tool: str, arguments: dict[str, object]) -> dict[str, Any]:
        result = await self.client.call_tool(tool, arguments)
        assert not result.is_error, first_text(result)
        assert isinstance(result.structured_content, dict)  # every tool replies with a JSON object
        return result.structured_content

    async def compare(
        self, name: str, ours: Callable[[], Awaitable[object]], direct: Callable[[], object], *, warmup: int = 2
    ) -> None:
        for _ in range(warmup):
            await ours()
            await anyio.to_thread.run_sync(direct)
        mine: list[float] = []
        theirs: list[float] = []
        for _ in range(self.repeat):
            started = time.perf_counter()
            await ours()
            mine.append(time.perf_counter() - started)
            started = time.perf_counter()
            await anyio.to_thread.run_sync(direct)
            theirs.append(time.perf_counter() - started)
        (m50, m95), (d50, d95) = stats(mine), stats(theirs)
        self.rows.append((name, m50, d50, m95, d95))
        print(
            f"{name:<34} spark-mcp {m50 * 1000:8.1f} ms  direct {d50 * 1000:8.1f} ms  ratio {m50 / d50:5.2f}",
            flush=True,
        )

    def table(self) -> str:
        lines = [
            "| what | spark-mcp median | direct median | ratio | spark-mcp p95 | direct p95 | ratio p95 |",
            "|---|---|---|---|---|---|---|",
        ]
        for name, m50, d50, m95, d95 in self.rows:
            lines.append(
                f"| {name} | {m50 * 1000:,.0f} ms | {d50 * 1000:,.0f} ms | {m50 / d50:.2f} "
                f"| {m95 * 1000:,.0f} ms | {d95 * 1000:,.0f} ms | {m95 / d95:.2f} |"
            )
        return "\n".join(lines)


async def run(scale: float, repeat: int, queries: list[int]) -> None:
    data = tpch_data(scale)
    home = Path(tempfile.mkdtemp(prefix="spark-mcp-overhead-"))
    datasets = [{"name": f"tpch.{t}", "path": str(data / f"{t}.parquet")} for t in TABLES]
    # A page of 1,000 lineitem rows is ~250k characters: raise the reply budget so the paged read
    # measures the machinery, not the budget (which would cut each page at ~40 rows by design).
    limits = {"max_chars": 1_000_000}
    config = load_config(None, environ={}, overrides={"home": str(home), "datasets": datasets, "limits": limits})
    print(f"TPC-H scale {scale:g}, {repeat} repetitions; {machine()}", flush=True)
    async with App.running(config) as app, Client(build_server(app=app, user=USER)) as client:
        await client.call_tool("run_sql", {"sql": "USE tpch"})  # the default session; TPC-H names bare tables
        driver = app.drivers.current(USER)
        assert driver is not None
        direct_session = open_session(driver, user_id=f"{USER}-direct")
        direct = direct_session.spark
        direct.sql("USE tpch")
        bench = Bench(client, direct, repeat)

        await bench.compare(
            "SELECT 1",
            lambda: bench.mcp("run_sql", {"sql": "SELECT 1"}),
            lambda: direct.sql("SELECT 1").toArrow(),
        )
        await bench.compare(
            "50-row preview of lineitem",
            lambda: bench.mcp("run_sql", {"sql": "SELECT * FROM lineitem", "max_rows": 50}),
            lambda: direct.sql("SELECT * FROM lineitem").limit(51).toArrow(),
        )

        async def paged() -> None:
            first = await bench.mcp("run_sql", {"sql": "SELECT * FROM lineitem LIMIT 10000", "max_rows": 50})
            offset: int | None = 0
            while offset is not None:
                page = await bench.mcp(
                    "fetch_rows", {"result_id": first["result_id"], "offset": offset, "limit": 1000, "format": "json"}
                )
                offset = page["next_offset"]

        await bench.compare(
            "10,000 rows read in pages of 1,000",
            paged,
            lambda: direct.sql("SELECT * FROM lineitem LIMIT 10000").toArrow(),
            warmup=1,
        )
        ours_total = theirs_total = 0.0
        for number in queries:
            sql = TPCH_QUERIES[number]

            # Named functions, not lambdas: mypy cannot infer a lambda's type when a default binds the loop variable.
            def ours(sql: str = sql) -> Awaitable[dict[str, Any]]:
                return bench.mcp("run_sql", {"sql": sql, "max_rows": 100})

            def theirs(sql: str = sql) -> object:
                return direct.sql(sql).toArrow()

            await bench.compare(f"TPC-H Q{number}", ours, theirs, warmup=1)
            ours_total += bench.rows[-1][1]
            theirs_total += bench.rows[-1][2]
        direct_session.close()
        print()
        print(bench.table())
        if queries:
            print(
                f"\nTPC-H sum of medians: spark-mcp {ours_total:.2f} s, direct {theirs_total:.2f} s, "
                f"ratio {ours_total / theirs_total:.3f}"
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=0.1)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--queries", default="1,3,5,6,10,12,14,19", help="TPC-H query numbers, comma-separated")
    options = parser.parse_args()
    chosen = [int(q) for q in options.queries.split(",") if q.strip()]
    anyio.run(run, options.scale, options.repeat, chosen)
