"""N agents at once on one server: throughput, latency, errors, audit, CPU and memory.

Run by hand:  uv run python -m benchmarks.concurrency [--scale 0.1] [--agents 1,4,16] [--seconds 60]

Each agent is a real MCP client (in memory, its own MCP session) acting for the same user,
as the agents of one person on one server do, so they share one driver. For a bounded
time each runs a loop of what agents do: a 50-row preview of lineitem, TPC-H Q6, a page
of an earlier result, SELECT 1, describe_table and list_tables. Reported per agent count:
calls per second, p50 and p99 latency per kind, errors, the number of audit records
against the number of calls (exactly one each), and the CPU time and peak resident memory
of the server process and its driver.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import anyio
from mcp import Client
from tests.fixtures.capture_explain import TPCH_QUERIES

from benchmarks.overhead import TABLES, machine, tpch_data
from benchmarks.replies import first_text
from spark_mcp.app import App
from spark_mcp.config import load_config
from spark_mcp.server import build_server

USER = "agent"
_TICK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Round:
    """One round of ``agents`` agents at once: what the table row is made of."""

    agents: int
    calls: int
    throughput: float  # calls per second
    errors: list[str]
    audited: int  # audit records written for the user during the round
    latency: dict[str, tuple[float, float, int]]  # by kind: median and p99 seconds, and the number of calls
    cpu_server_s: float
    cpu_driver_s: float
    elapsed_s: float
    peak_rss_mb: dict[str, float]  # "server" and "driver"


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK  # utime + stime


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p * len(ordered)) - 1))]


async def agent(client: Client, until: float, latencies: dict[str, list[float]], errors: list[str]) -> int:
    calls = 0
    result_id: str | None = None
    mix: list[tuple[str, str, dict[str, object]]] = [
        ("preview", "run_sql", {"sql": "SELECT * FROM tpch.lineitem", "max_rows": 50}),
        ("tpch_q6", "run_sql", {"sql": TPCH_QUERIES[6].replace("lineitem", "tpch.lineitem")}),
        ("page", "fetch_rows", {}),
        ("select_1", "run_sql", {"sql": "SELECT 1"}),
        ("describe", "describe_table", {"table": "tpch.orders"}),
        ("list_tables", "list_tables", {"namespace": "tpch"}),
    ]
    while time.monotonic() < until:
        for kind, tool, arguments in mix:
            if kind == "page":
                if result_id is None:
                    continue
                arguments = {"result_id": result_id, "offset": 0, "limit": 50, "format": "json"}
            started = time.perf_counter()
            result = await client.call_tool(tool, arguments)
            latencies[kind].append(time.perf_counter() - started)
            calls += 1
            if result.is_error:
                errors.append(f"{kind}: {first_text(result)[:200]}")
            elif kind == "preview" and result.structured_content:
                result_id = result.structured_content.get("result_id")
            if time.monotonic() >= until:
                break
    return calls


def audit_records(path: Path) -> int:
    return sum(1 for line in path.read_text().splitlines() if json.loads(line)["principal"] == USER)


async def round_of(app: App, agents: int, seconds: float) -> Round:
    driver = app.drivers.current(USER)
    assert driver is not None and driver.pid is not None
    driver_pid = driver.pid  # set once when the driver starts; a local keeps the narrowing in sample_memory
    audit_before = audit_records(app.config.audit_path)
    cpu_before = cpu_seconds(os.getpid()), cpu_seconds(driver_pid)
    latencies: dict[str, list[float]] = defaultdict(list)
    errors: list[str] = []
    counts: list[int] = []
    peak = {"server": 0.0, "driver": 0.0}
    until = time.monotonic() + seconds

    async def sample_memory() -> None:
        while time.monotonic() < until:
            peak["server"] = max(peak["server"], rss_mb(os.getpid()))
            peak["driver"] = max(peak["driver"], rss_mb(driver_pid))
            await anyio.sleep(0.5)

    async def one(index: int) -> None:
        async with Client(build_server(app=app, user=USER)) as client:
            counts.append(await agent(client, until, latencies, errors))

    started = time.monotonic()
    async with anyio.create_task_group() as group:
        group.start_soon(sample_memory)
        for index in range(agents):
            group.start_soon(one, index)
    elapsed = time.monotonic() - started
    calls = sum(counts)
    return Round(
        agents=agents,
        calls=calls,
        throughput=calls / elapsed,
        errors=errors,
        audited=audit_records(app.config.audit_path) - audit_before,
        latency={k: (statistics.median(v), percentile(v, 0.99), len(v)) for k, v in sorted(latencies.items())},
        cpu_server_s=cpu_seconds(os.getpid()) - cpu_before[0],
        cpu_driver_s=cpu_seconds(driver_pid) - cpu_before[1],
        elapsed_s=elapsed,
        peak_rss_mb=dict(peak),
    )


async def run(scale: float, agent_counts: list[int], seconds: float) -> None:
    data = tpch_data(scale)
    home = Path(tempfile.mkdtemp(prefix="spark-mcp-concurrency-"))
    datasets = [{"name": f"tpch.{t}", "path": str(data / f"{t}.parquet")} for t in TABLES]
    config = load_config(None, environ={}, overrides={"home": str(home), "datasets": datasets})
    print(f"TPC-H scale {scale:g}, {seconds:g} s per round; {machine()}", flush=True)
    async with App.running(config) as app:
        async with Client(build_server(app=app, user=USER)) as warm:
            await warm.call_tool("run_sql", {"sql": "SELECT 1"})
        print(
            "| agents | calls/s | errors | audited/calls | preview p50 / p99 | Q6 p50 / p99 | "
            "select 1 p50 / p99 | server CPU | driver CPU | peak RSS server / driver |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|")
        for agents in agent_counts:
            r = await round_of(app, agents, seconds)

            def cell(kind: str, lat: dict[str, tuple[float, float, int]] = r.latency) -> str:
                if kind not in lat:
                    return "-"
                p50, p99, _ = lat[kind]
                return f"{p50 * 1000:,.0f} / {p99 * 1000:,.0f} ms"

            print(
                f"| {agents} | {r.throughput:.1f} | {len(r.errors)} | {r.audited}/{r.calls} "
                f"| {cell('preview')} | {cell('tpch_q6')} | {cell('select_1')} "
                f"| {r.cpu_server_s / r.elapsed_s:.0%} | {r.cpu_driver_s / r.elapsed_s:.0%} "
                f"| {r.peak_rss_mb['server']:,.0f} / {r.peak_rss_mb['driver']:,.0f} MB |",
                flush=True,
            )
            for error in r.errors[:5]:
                print(f"    error: {error}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=0.1)
    parser.add_argument("--agents", default="1,4,16")
    parser.add_argument("--seconds", type=float, default=60)
    options = parser.parse_args()
    anyio.run(run, options.scale, [int(a) for a in options.agents.split(",")], options.seconds)
