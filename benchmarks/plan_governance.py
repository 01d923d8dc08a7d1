"""What governing a structured plan (``run_plan``) costs, next to what one explain of it costs.

Run by hand:  uv run python benchmarks/plan_governance.py [--repeat 40]

The server's own path (``Executor.analyze_plan``: build the DataFrame, have Spark analyse it,
read the plan, decide) for two plans on the same driver: a read with a limit, and a join of two
tables, grouped and sorted. Next to it, the two explains it could make, asked of the same
DataFrame through PySpark's own client on that driver: of the plan itself (what governance
cost before it explained under a limit of nothing), and of ``plan.limit(0)`` (what it asks
now: Spark analyses the plan alike and skips optimizing and planning it). Each measurement
goes first every other turn; medians after 5 warm-ups. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pyarrow as pa
import pyarrow.parquet as pq

from spark_mcp.app import App
from spark_mcp.config import load_config
from spark_mcp.plans import Plan
from spark_mcp.spark import plans as spark_plans

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: benchmarks/ is a package
from benchmarks.overhead import machine

WARMUP = 5
POLICY = """
[roles.bench]
actions = ["session.create", "sql.read", "catalog.read", "plan.run"]
read = ["*"]

[users]
default = ["bench"]
"""
PLANS = {
    "read with a limit": {"source": {"table": "bench.orders"}, "operations": [{"op": "limit", "n": 1}]},
    "join, group, sort": {
        "source": {"table": "bench.orders"},
        "operations": [
            {"op": "join", "right": {"source": {"table": "bench.customers"}}, "condition": "o_cust = c_id"},
            {"op": "group_by", "columns": ["c_segment"], "aggs": [{"fn": "avg", "column": "o_price", "alias": "avg"}]},
            {"op": "order_by", "keys": [{"column": "avg", "descending": True}]},
        ],
    },
}


def turns(repeat: int, sides: dict[str, Callable[[], object]]) -> dict[str, float]:
    times: dict[str, list[float]] = {name: [] for name in sides}
    names = list(sides)
    for turn in range(WARMUP + repeat):
        for name in names if turn % 2 == 0 else reversed(names):
            started = time.perf_counter()
            sides[name]()
            if turn >= WARMUP:
                times[name].append(time.perf_counter() - started)
    return {name: statistics.median(found) * 1000 for name, found in times.items()}


async def run(repeat: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="spark-mcp-plan-governance-"))
    rows = range(10_000)
    pq.write_table(
        pa.table({"o_cust": [i % 500 for i in rows], "o_price": [float(i) for i in rows]}), work / "orders.parquet"
    )
    pq.write_table(
        pa.table({"c_id": list(range(500)), "c_segment": [f"s{i % 5}" for i in range(500)]}), work / "customers.parquet"
    )
    (work / "policies").mkdir()
    (work / "policies" / "bench.toml").write_text(POLICY)
    config = load_config(
        None,
        environ={},
        overrides={
            "home": str(work / "home"),
            "policies": [str(work / "policies")],
            "datasets": [
                {"name": "bench.orders", "path": str(work / "orders.parquet")},
                {"name": "bench.customers", "path": str(work / "customers.parquet")},
            ],
        },
    )
    print(f"{machine()}; driver local[{config.driver.cores}]", flush=True)
    table: list[str] = []
    async with App.running(config) as app:
        principal = app.principal("bench")
        session = await app.executor.session(principal, None)
        for name, spec in PLANS.items():
            plan = Plan.model_validate(spec)
            frame: Any = spark_plans.build(session.connect, plan, load_result=_no_results, tag="bench").frame

            def measure(plan: Plan = plan, frame: Any = frame) -> dict[str, float]:
                def governed() -> None:
                    verdict, _ = anyio.from_thread.run(app.executor.analyze_plan, principal, session, plan)
                    assert verdict.allowed, verdict.refusal

                return turns(
                    repeat,
                    {
                        "governed": governed,
                        "plain": lambda: frame._explain_string(extended=True),
                        "nothing": lambda: frame.limit(0)._explain_string(extended=True),
                    },
                )

            medians = await anyio.to_thread.run_sync(measure)
            table.append(
                f"| {name} | {medians['governed']:.1f} ms | {medians['plain']:.1f} ms | {medians['nothing']:.1f} ms |"
            )
    print()
    print(
        "| plan | governed by `run_plan` (build, explain, verdict) | explain of the plan | explain of `plan.limit(0)` |"
    )
    print("|---|---|---|---|")
    print("\n".join(table))


def _no_results(result_id: str) -> pa.Table:
    raise AssertionError(f"no stored results in this benchmark ({result_id})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=40, help="measured turns per plan")
    anyio.run(run, parser.parse_args().repeat)
