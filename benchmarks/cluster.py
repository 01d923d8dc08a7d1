"""The standalone backend against the local one, through spark-mcp's own paths.

Run by hand:  uv run python benchmarks/cluster.py [--repeat 5]

It starts a Spark standalone master and two workers on loopback (1 core, 1g each, from
pyspark's jars: ``tests/cluster_support.py``), TPC-H at scale 0.01, and for each backend a
fresh server (in-memory MCP client) and reports, in one Markdown table:

- first answer: ``create_session`` plus ``run_sql SELECT 1`` for a new principal (a cold
  driver; on the cluster, until an executor has registered with it);
- ``SELECT 1``: median round trip on the running driver (answered by the driver alone);
- a TPC-H aggregate over ``lineitem`` (Q1's shape): median, run as tasks (on the cluster, by
  the workers' executors).

On one two-core machine the cluster shares the cores with its driver, so these figures say
what the backend costs, not what a cluster gains. Nothing here is asserted.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
from mcp import Client

from spark_mcp.app import App
from spark_mcp.config import Config, load_config
from spark_mcp.server import build_server

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.cluster_support import StandaloneCluster
from tests.helpers import TESTS

Q1 = (
    "SELECT l_returnflag, l_linestatus, sum(l_quantity) AS qty, avg(l_extendedprice) AS price, count(*) AS n "
    "FROM tpch.lineitem WHERE l_shipdate <= date '1998-09-02' GROUP BY l_returnflag, l_linestatus "
    "ORDER BY l_returnflag, l_linestatus"
)


def config_for(work: Path, data: Path, backend: str, cluster: StandaloneCluster) -> Config:
    driver: dict[str, Any] = {"cores": 1, "memory": "512m", "startup_timeout_s": 300}
    if backend == "standalone":
        driver |= {
            "backend": "standalone",
            "master": cluster.master_url,
            "master_ui": cluster.ui_url,
            "spark_conf": {"spark.executor.cores": "1", "spark.executor.memory": "512m"},
        }
    return load_config(
        None,
        environ={},
        overrides={
            "home": str(work / backend),
            "policies": [str(TESTS / "policies")],
            "datasets": [{"name": "tpch.lineitem", "path": str(data / "lineitem.parquet")}],
            "driver": driver,
        },
    )


async def call(client: Client, tool: str, **arguments: object) -> None:
    result = await client.call_tool(tool, arguments)
    if result.is_error:
        raise RuntimeError(result.content[0].text)  # type: ignore[union-attr]


async def measure(config: Config, repeat: int) -> dict[str, float]:
    async with (
        App.running(config, environ=dict(os.environ)) as app,
        Client(build_server(app=app, user="alice"), mode="auto") as client,
    ):
        start = time.perf_counter()
        await call(client, "create_session")
        await call(client, "run_sql", sql="SELECT 1")
        first = time.perf_counter() - start
        timings: dict[str, list[float]] = {"select1": [], "q1": []}
        for _ in range(repeat):
            for name, sql in (("select1", "SELECT 1"), ("q1", Q1)):
                start = time.perf_counter()
                await call(client, "run_sql", sql=sql)
                timings[name].append(time.perf_counter() - start)
    return {"first": first, **{name: statistics.median(values) for name, values in timings.items()}}


def main(repeat: int) -> None:
    with tempfile.TemporaryDirectory(prefix="spark-mcp-bench-") as tmp:
        work = Path(tmp)
        tpchgen = shutil.which("tpchgen-cli", path=str(Path(sys.executable).parent)) or "tpchgen-cli"
        subprocess.run([tpchgen, "parquet", "-s", "0.01", "--output-dir", str(work / "tpch")], check=True)
        (work / "cluster").mkdir()
        cluster = StandaloneCluster.start(work / "cluster", workers=2)
        try:
            results = {
                backend: anyio.run(measure, config_for(work, work / "tpch", backend, cluster), repeat)
                for backend in ("local", "standalone")
            }
        finally:
            cluster.stop()
    print(f"| backend | first answer (cold driver) | SELECT 1 (median of {repeat}) | TPC-H Q1 shape, SF 0.01 |")
    print("|---|---|---|---|")
    for backend, r in results.items():
        print(f"| {backend} | {r['first']:.1f} s | {r['select1'] * 1000:.0f} ms | {r['q1'] * 1000:.0f} ms |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    main(parser.parse_args().repeat)
