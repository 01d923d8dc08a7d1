"""Sail against the JVM driver, on this machine, through spark-mcp's own paths.

Run by hand:  uv run python benchmarks/engines.py [--scale 0.1] [--repeat 10]

For each engine it reports, in one Markdown table:

- driver start to ready: the backend's ``start()`` (spawn, readiness), median of a few;
- first answer after ``serve``: a real ``spark-mcp serve`` subprocess over stdio, from
  spawning it to the reply of the first ``run_sql SELECT 1`` (Python start-up, driver start,
  datasets, session, governance and the query itself): what a host waits for; median of 5;
- ``run_sql SELECT 1``: median round trip through an in-memory MCP client, governance included;
- TPC-H: each of the 22 queries (tables qualified, as Sail needs) through ``run_sql``,
  median of three runs, and their sum;
- resident memory of the driver when idle (after start and the first session), and after
  the TPC-H runs.

TPC-H data comes from tpchgen-cli. Nothing here is asserted: the figures go into the README.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import anyio
from mcp import Client, StdioServerParameters

from spark_mcp.app import App
from spark_mcp.config import Config, load_config
from spark_mcp.drivers.local import DriverSpec, LocalBackend
from spark_mcp.drivers.profiles import resolve_profiles
from spark_mcp.drivers.sail import SailBackend
from spark_mcp.server import build_server

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.fixtures.capture_explain import TPCH_QUERIES
from tests.fixtures.sail_tpch import TPCH_TABLES, qualify_tpch

from benchmarks.replies import first_text

SERVE_RUNS = 5  # a first answer is one sample of a noisy quantity: report the median of a few

POLICY = """
[roles.bench]
actions = ["session.create", "sql.read", "catalog.read", "plan.run"]
read = ["*"]
engines = ["spark", "sail"]

[users]
default = ["bench"]
"""


@dataclass(frozen=True)
class InProcess:
    """What one engine measures through an in-memory MCP client."""

    idle_mb: float
    select1_ms: float
    tpch: dict[int, float | str]  # by query number: median seconds, or the start of the error
    after_mb: float


@dataclass(frozen=True)
class Figures:
    """Everything measured for one engine."""

    ready_s: float
    serve_s: float
    in_process: InProcess


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def machine() -> str:
    lines = Path("/proc/cpuinfo").read_text().splitlines()
    cpu = next((line.split(":", 1)[1].strip() for line in lines if "model name" in line), "unknown CPU")
    memory = next(
        int(line.split()[1]) / 1024**2 for line in Path("/proc/meminfo").read_text().splitlines() if "MemTotal" in line
    )
    java = subprocess.run(["java", "-version"], capture_output=True, text=True, check=False).stderr.split("\n")[0]
    return (
        f"{cpu}, {os.cpu_count()} cores, {memory:.0f} GiB, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}, pyspark {version('pyspark')}, pysail {version('pysail')}, {java}"
    )


def make_config(work: Path, engine: str, datasets: list[dict[str, str]]) -> Config:
    return load_config(
        None,
        environ={},
        overrides={
            "home": str(work / f"home-{engine}"),
            "policies": [str(work / "policies")],
            "datasets": datasets,
            "driver": {"engine": engine},
            "limits": {"max_rows": 1000, "query_timeout_s": 600},
        },
    )


async def start_to_ready(config: Config, engine: str, times: int) -> float:
    backend = SailBackend(config, os.environ) if engine == "sail" else LocalBackend(config, os.environ)
    took = []
    for _ in range(times):
        driver = await backend.start(DriverSpec(profile=resolve_profiles(config)["default"], principal="bench"))
        assert driver.ready_at is not None
        took.append(driver.ready_at - driver.started_at)
        await backend.stop(driver)
    return statistics.median(took)


async def first_answer_after_serve(work: Path, engine: str, datasets: list[dict[str, str]]) -> float:
    home = work / f"serve-{engine}"
    lines = [f'home = "{home}"', f'policies = ["{work / "policies"}"]', "", "[driver]", f'engine = "{engine}"', ""]
    for dataset in datasets:
        lines += ["[[datasets]]", f'name = "{dataset["name"]}"', f'path = "{dataset["path"]}"', ""]
    config = work / f"serve-{engine}.toml"
    config.write_text("\n".join(lines))
    env = {k: v for k, v in os.environ.items() if k in ("HOME", "PATH", "JAVA_HOME", "LANG", "TMPDIR")}
    command = str(Path(sys.executable).parent / "spark-mcp")
    params = StdioServerParameters(command=command, args=["serve", "--config", str(config), "--user", "bench"], env=env)
    started = time.perf_counter()
    async with Client(params) as client:
        reply = await client.call_tool("run_sql", {"sql": "SELECT 1 AS one"})
        took = time.perf_counter() - started
        assert not reply.is_error, first_text(reply)
    return took


async def in_process(config: Config, repeat: int) -> InProcess:
    async with App.running(config) as app, Client(build_server(app=app, user="bench")) as client:
        first = await client.call_tool("run_sql", {"sql": "SELECT 1"})
        assert not first.is_error, first_text(first)
        driver = app.drivers.current("bench", config.driver.engine)
        assert driver is not None and driver.pid is not None
        idle_mb = rss_mb(driver.pid)
        select1 = []
        for _ in range(repeat):
            started = time.perf_counter()
            await client.call_tool("run_sql", {"sql": "SELECT 1"})
            select1.append(time.perf_counter() - started)
        select1_ms = statistics.median(select1) * 1000
        tpch: dict[int, float | str] = {}
        for number, sql in sorted(TPCH_QUERIES.items()):
            runs = []
            for _ in range(3):
                started = time.perf_counter()
                result = await client.call_tool("run_sql", {"sql": qualify_tpch(sql), "max_rows": 5, "wait_s": 600})
                runs.append(time.perf_counter() - started)
                if result.is_error:
                    tpch[number] = first_text(result)[:80]
                    break
            else:
                tpch[number] = statistics.median(runs)
        after_mb = rss_mb(driver.pid)
    return InProcess(idle_mb=idle_mb, select1_ms=select1_ms, tpch=tpch, after_mb=after_mb)


async def measure(work: Path, scale: float, repeat: int) -> None:
    datasets = [{"name": f"tpch.{t}", "path": str(work / "tpch" / f"{t}.parquet")} for t in TPCH_TABLES]
    print(f"machine: {machine()}")
    print(f"TPC-H scale {scale}; {repeat} repetitions of SELECT 1; median of 3 runs per TPC-H query\n")
    results: dict[str, Figures] = {}
    for engine in ("sail", "spark"):
        config = make_config(work, engine, datasets)
        results[engine] = Figures(
            ready_s=await start_to_ready(config, engine, 3 if engine == "sail" else 2),
            serve_s=statistics.median(
                [await first_answer_after_serve(work, engine, datasets) for _ in range(SERVE_RUNS)]
            ),
            in_process=await in_process(config, repeat),
        )
    report(results)


def main(scale: float, repeat: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="spark-mcp-engines-"))
    try:
        tpchgen = shutil.which("tpchgen-cli", path=str(Path(sys.executable).parent)) or "tpchgen-cli"
        subprocess.run([tpchgen, "parquet", "-s", str(scale), "--output-dir", str(work / "tpch")], check=True)
        (work / "policies").mkdir()
        (work / "policies" / "bench.toml").write_text(POLICY)
        anyio.run(measure, work, scale, repeat)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def report(results: dict[str, Figures]) -> None:
    sail, spark = results["sail"], results["spark"]

    def total(figures: Figures) -> str:
        times = [t for t in figures.in_process.tpch.values() if isinstance(t, float)]
        failed = len(TPCH_QUERIES) - len(times)
        return f"{sum(times):.2f} s" + (f" ({failed} failed)" if failed else "")

    print("| what | Sail | Spark (JVM) |")
    print("|---|---|---|")
    print(f"| driver start to ready | {sail.ready_s:.2f} s | {spark.ready_s:.2f} s |")
    serve = f"first answer after `serve` (stdio, median of {SERVE_RUNS})"
    print(f"| {serve} | {sail.serve_s:.2f} s | {spark.serve_s:.2f} s |")
    sail_run, spark_run = sail.in_process, spark.in_process
    print(f"| `run_sql SELECT 1` (median) | {sail_run.select1_ms:.0f} ms | {spark_run.select1_ms:.0f} ms |")
    print(f"| TPC-H, 22 queries (sum of medians) | {total(sail)} | {total(spark)} |")
    print(f"| driver memory, idle | {sail_run.idle_mb:.0f} MB | {spark_run.idle_mb:.0f} MB |")
    print(f"| driver memory after TPC-H | {sail_run.after_mb:.0f} MB | {spark_run.after_mb:.0f} MB |")
    print()
    print("| TPC-H | Sail | Spark |")
    print("|---|---|---|")
    for number in sorted(TPCH_QUERIES):
        print(f"| Q{number} | {cell(sail, number)} | {cell(spark, number)} |")


def cell(figures: Figures, number: int) -> str:
    value = figures.in_process.tpch[number]
    return f"{value * 1000:.0f} ms" if isinstance(value, float) else f"failed: {value}"


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--scale", type=float, default=0.1)
    parser.add_argument("--repeat", type=int, default=10)
    options = parser.parse_args()
    main(options.scale, options.repeat)
