"""Latency and memory of spark-mcp on this machine, measured through a real MCP client.

Run by hand:  uv run python benchmarks/latency.py [--scale 0.1] [--repeat 20]

It generates TPC-H data with tpchgen-cli, starts the server in-process on a fresh home,
and reports: driver cold start, first call (driver + datasets), the governance check
(EXPLAIN + policy) per statement, run_sql round trips for small and TPC-H queries,
paging a million-row result, and the driver's resident memory.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
from mcp import Client

from spark_mcp.app import App
from spark_mcp.config import load_config
from spark_mcp.server import build_server

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: benchmarks/ is a package
from benchmarks.replies import first_text

TABLES = ("customer", "lineitem", "nation", "orders", "part", "partsupp", "region", "supplier")
Q1 = """SELECT l_returnflag, l_linestatus, sum(l_quantity), sum(l_extendedprice * (1 - l_discount)),
  avg(l_discount), count(*) FROM tpch.lineitem WHERE l_shipdate <= date '1998-12-01' - interval '90' day
  GROUP BY l_returnflag, l_linestatus ORDER BY l_returnflag, l_linestatus"""
Q3 = """SELECT l_orderkey, sum(l_extendedprice * (1 - l_discount)) AS revenue, o_orderdate, o_shippriority
  FROM tpch.customer, tpch.orders, tpch.lineitem
  WHERE c_mktsegment = 'BUILDING' AND c_custkey = o_custkey AND l_orderkey = o_orderkey
    AND o_orderdate < date '1995-03-15' AND l_shipdate > date '1995-03-15'
  GROUP BY l_orderkey, o_orderdate, o_shippriority ORDER BY revenue DESC, o_orderdate LIMIT 10"""


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def timed(client: Client, tool: str, arguments: dict[str, Any], repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        result = await client.call_tool(tool, arguments)
        times.append(time.perf_counter() - started)
        assert not result.is_error, first_text(result)
    return times


def summary(times: list[float]) -> str:
    return f"median {ms(statistics.median(times))}, p90 {ms(sorted(times)[int(len(times) * 0.9) - 1])}"


async def main(scale: float, repeat: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="spark-mcp-bench-"))
    tpchgen = Path(sys.executable).parent / "tpchgen-cli"
    await anyio.run_process(
        [str(tpchgen), "parquet", "-s", str(scale), "--output-dir", str(work / "tpch")], stdout=None, stderr=None
    )
    datasets = [{"name": f"tpch.{t}", "path": str(work / "tpch" / f"{t}.parquet")} for t in TABLES]
    config = load_config(None, environ={}, overrides={"home": str(work / "home"), "datasets": datasets})
    print(f"TPC-H scale {scale}, {repeat} repetitions, results in {work}")
    async with App.running(config) as app:
        started = time.perf_counter()
        session = await app.executor.create_session(app.principal("bench"))
        first = time.perf_counter() - started
        driver = session.driver
        assert driver.ready_at is not None
        print(f"driver cold start to ready:          {driver.ready_at - driver.started_at:.1f} s")
        print(f"first session (start + datasets):    {first:.1f} s")
        await app.sessions.close("bench", session.id)

        async with Client(build_server(app=app, user="bench")) as client:
            await client.call_tool("run_sql", {"sql": "SELECT 1"})  # warm the default session
            for label, tool, arguments in (
                ("explain (governance check only):", "explain", {"sql": Q1}),
                ("run_sql SELECT 1:", "run_sql", {"sql": "SELECT 1"}),
                ("run_sql TPC-H Q1:", "run_sql", {"sql": Q1}),
                ("run_sql TPC-H Q3:", "run_sql", {"sql": Q3}),
            ):
                print(f"{label:<37}{summary(await timed(client, tool, arguments, repeat))}")
            lineitem = {"sql": "SELECT * FROM tpch.lineitem", "max_rows": 50}
            print(f"run_sql lineitem preview (50 rows):  {summary(await timed(client, 'run_sql', lineitem, 3))}")
            started = time.perf_counter()
            big = await client.call_tool(
                "run_sql", {"sql": "SELECT id, concat('row-', id) AS label FROM range(1000000)", "max_rows": 5}
            )
            print(f"a 1,000,000-row result, stored:      {ms(time.perf_counter() - started)}")
            result_id = big.structured_content["result_id"]
            pages = [
                {"result_id": result_id, "offset": o, "limit": 100, "format": "json"} for o in (0, 500_000, 999_900)
            ]
            page_times = [t for p in pages for t in await timed(client, "fetch_rows", p, max(1, repeat // 3))]
            print(f"fetch_rows 100 rows anywhere in it:  {summary(page_times)}")
            current = app.drivers.current("bench")
            if current is not None and current.pid is not None:
                print(f"driver resident memory after this:   {rss_mb(current.pid):.0f} MB")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--scale", type=float, default=0.1)
    parser.add_argument("--repeat", type=int, default=20)
    options = parser.parse_args()
    anyio.run(main, options.scale, options.repeat)
