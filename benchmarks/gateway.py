"""The Spark Connect gateway against the same driver reached directly, with PySpark's own client.

Run by hand:  uv run python benchmarks/gateway.py [--repeat 15] [--tiny-repeat 30] [--spark-conf K=V ...]
              [--event-loop auto|uvloop|asyncio] [--malloc tuned|system] [--analysis-plugin on|off]

The server process starts the app (one driver for the benchmark user) and serves the gateway
on a free loopback port, on the event loop ``serve`` would use (``--event-loop``, as
``[server] event_loop``; default ``auto``: uvloop), with its malloc tuned as ``serve`` tunes
it (``[server] tune_malloc``; ``--malloc system`` keeps glibc's defaults). The clients run in
a second process, as a notebook would (in one process they would contend for the GIL with the
gateway and bill it for the client's time): both are plain PySpark Spark Connect sessions,
one through the gateway (with an API token), one straight to the driver (with the driver's own
token, handed to the client process on its stdin). The two take turns on every repetition,
after warm-up runs, each going first every other turn. Reported: median and p95 of each side,
and the median over the turns of each turn's ratio and difference (the two ran back to back,
so drift in the machine's load and the JIT's warming cancels out):

- a 1,000,000-row ``toArrow()`` (three columns, one a string): the result flows through the
  gateway as bytes (target: at most 1.15 times the direct time), and the CPU the gateway's
  process spends per such read (warm-ups included; the direct reads between them cost it
  nothing);
- a tiny DataFrame query (``table(t).limit(1).toArrow()``): what the gateway adds (two calls,
  each with an API token check and an audit record; the client's schema call is answered by
  the gateway's own analysis, through the drivers' analysis plugin, or with
  ``--analysis-plugin off`` asked alongside the gateway's explain), next to the price of one
  analysis asked of the driver directly, and next to what the MCP path adds for governance to the same query: its
  analysis and verdict (``Executor.analyze``), timed inside real ``run_sql`` calls of the same
  query through an MCP client, one in every turn of the gateway's and the direct client's
  (so all three meet the driver and the machine in the same state), and, as before, in a
  loop of nothing but analyses once the clients are done (a figure that flatters the MCP
  path: back to back, the driver's caches and compiled code stay hot for that one thing);
- a DataFrame's schema (``df.schema``, one ``AnalyzePlan``): with the plugin, one analysis
  on the driver serves the client and governance;
- a join of a small table to itself, grouped and sorted (``toArrow()``): a plan with more for
  Spark to optimize and plan than a read, which the gateway's own analysis skips (the plugin
  only analyses; without it, the gateway explains the plan under a limit of nothing);
- ``spark.sql("SELECT 1").toArrow()``, which is two calls (the SQL command, then its relation),
  each governed (the relation reuses the command's verdict).

``--spark-conf`` sets a driver setting for both sides alike (from the allowlist of
``driver.spark_conf``), e.g. ``spark.sql.execution.arrow.maxRecordsPerBatch=10000``, Spark's
own default (spark-mcp's drivers start with 100,000: ``drivers.profiles.SPARK_DEFAULTS``).
"""

from __future__ import annotations

import argparse
import json
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
from anyio.streams.text import TextReceiveStream
from mcp import Client
from pyspark.sql import DataFrame
from pyspark.sql.connect.client.retries import DefaultPolicy
from pyspark.sql.connect.session import SparkSession

from spark_mcp import event_loop
from spark_mcp.allocator import tune_malloc
from spark_mcp.app import App
from spark_mcp.auth.settings import resource_url
from spark_mcp.config import load_config
from spark_mcp.gateway import running_gateway
from spark_mcp.gateway.routing import driver_for
from spark_mcp.governance import Verdict
from spark_mcp.server import build_server
from spark_mcp.state.db import StateDB, state_path
from spark_mcp.state.tokens import TokenStore

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: benchmarks/ is a package
from benchmarks.overhead import machine, stats

USER = "bench"
ROWS = 1_000_000
BIG_WARMUP = 8  # the client's and the driver's JIT settle: both sides speed up for a while
MARK, BIG_READS, DONE, MCP_TURN = "MARK ", "big-reads", "done", "mcp-turn"
TINY_SQL = "SELECT * FROM bench.t LIMIT 1"  # the tiny query, as an agent asks it through MCP


def compare(
    name: str,
    gateway: Callable[[], object],
    direct: Callable[[], object],
    repeat: int,
    warmup: int,
    between: Callable[[], object] = lambda: None,
) -> str:
    """``between`` runs once in every turn, untimed, between the two sides."""
    for _ in range(warmup):
        gateway()
        direct()
    ours: list[float] = []
    theirs: list[float] = []
    for turn in range(repeat):
        between()
        # Each side goes first every other turn: what one leaves behind (garbage in the driver,
        # a cache) falls on both alike.
        for side in (gateway, direct) if turn % 2 == 0 else (direct, gateway):
            started = time.perf_counter()
            side()
            (ours if side is gateway else theirs).append(time.perf_counter() - started)
    (g50, g95), (d50, d95) = stats(ours), stats(theirs)
    # Both sides keep speeding up for a while (JIT) and the machine's load drifts: each turn's
    # pair ran back to back, so the ratio and the difference are taken per turn, then the median.
    ratio = statistics.median(g / d for g, d in zip(ours, theirs, strict=True))
    added = statistics.median(g - d for g, d in zip(ours, theirs, strict=True))
    progress = f"{name:<44} gateway {g50 * 1000:8.1f} ms  direct {d50 * 1000:8.1f} ms  ratio {ratio:5.2f}"
    print(progress, file=sys.stderr, flush=True)
    return (
        f"| {name} | {g50 * 1000:,.1f} ms | {d50 * 1000:,.1f} ms | {ratio:.2f} | +{added * 1000:,.1f} ms "
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
    through.client.set_retry_policies([DefaultPolicy(max_retries=3)])
    wide = "id", "id * 2 AS twice", "cast(id AS string) AS label"
    _mark(f"{BIG_READS} {repeat + BIG_WARMUP}")  # the server process counts its CPU from here...
    big = compare(
        f"{ROWS:,}-row toArrow()",
        lambda: _check(through.range(ROWS).selectExpr(*wide).toArrow()),
        lambda: _check(direct.range(ROWS).selectExpr(*wide).toArrow()),
        repeat,
        warmup=BIG_WARMUP,
    )
    _mark(DONE)  # ...to here, when it served nothing but those reads
    rows = [
        big,
        compare(
            "tiny query: table(t).limit(1).toArrow()",
            lambda: through.table("bench.t").limit(1).toArrow(),
            lambda: direct.table("bench.t").limit(1).toArrow(),
            tiny_repeat,
            warmup=3,
            between=_mcp_turn,
        ),
        compare(
            "a DataFrame's schema: table(t).limit(1).schema",
            lambda: through.table("bench.t").limit(1).schema,
            lambda: direct.table("bench.t").limit(1).schema,
            tiny_repeat,
            warmup=3,
        ),
        timed(
            "one analysis, asked directly (explain extended)",
            lambda: direct.table("bench.t").limit(1)._explain_string(extended=True),  # type: ignore[operator]
            tiny_repeat,
        ),
        compare(
            "join + aggregate + sort, toArrow()",
            lambda: _grouped(through).toArrow(),
            lambda: _grouped(direct).toArrow(),
            tiny_repeat,
            warmup=3,
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


def _grouped(spark: SparkSession) -> DataFrame:
    """A small table joined to itself, grouped and sorted: a plan with more to optimize than a read."""
    t = spark.table("bench.t")
    return t.join(t.withColumnRenamed("v", "w"), "k").groupBy("v").count().orderBy("v").limit(5)


def _mcp_turn() -> None:
    """Have the server run the same query through its MCP path once, and wait until it has."""
    _mark(MCP_TURN)
    if sys.stdin.readline() != "done\n":
        raise SystemExit("the server process went away")


def _mark(what: str) -> None:
    """Tell the server process where the client is (its stdout also carries the table rows)."""
    sys.stdout.write(f"{MARK}{what}\n")
    sys.stdout.flush()


def _check(table: pa.Table) -> pa.Table:
    assert table.num_rows == ROWS
    return table


async def run(repeat: int, tiny_repeat: int, spark_conf: list[str], plugin: bool, loop: str) -> None:
    home = Path(tempfile.mkdtemp(prefix="spark-mcp-gateway-bench-"))
    pq.write_table(pa.table({"k": list(range(100)), "v": [str(i) for i in range(100)]}), home / "t.parquet")
    config = load_config(
        None,
        environ={},
        overrides={
            "home": str(home / "home"),
            "datasets": [{"name": "bench.t", "path": str(home / "t.parquet")}],
            "gateway": {"port": 0},
            "driver": {
                "spark_conf": dict(setting.split("=", 1) for setting in spark_conf),
                "analysis_plugin": plugin,
            },
        },
    )
    store = TokenStore(StateDB(state_path(config.home)))
    token = store.create(USER, scopes=["spark:read", "spark:write"], resource=resource_url(config)).token
    print(
        f"{machine()}; gateway on {loop}, analysis plugin {'on' if plugin else 'off'}; "
        "PySpark clients in a process of their own, driver local[2]",
        flush=True,
    )
    async with App.running(config) as app, running_gateway(config, lambda: app) as gateway:
        driver = await driver_for(app, app.principal(USER))  # the very driver the gateway routes to
        job = {
            "gateway": f"sc://localhost:{gateway.port}/;token={token}",
            "direct": f"sc://{driver.host}:{driver.port}/;token={driver.token};user_id={USER}-direct",
            "repeat": repeat,
            "tiny_repeat": tiny_repeat,
        }
        async with Client(build_server(app=app, user=USER)) as mcp:
            governance = McpGovernance(app, mcp)
            # The event loop stays free to serve the gateway while the client process measures.
            rows = await measured_by_client(job, governance)
            rows.append(governance.row("MCP governance, in run_sql calls taking turns with them"))
            rows.append(await governance.back_to_back(tiny_repeat))
    print()
    print("| what | gateway median | direct median | ratio (per turn) | added (per turn) | gateway p95 | direct p95 |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        print(row)


async def measured_by_client(job: dict[str, object], governance: McpGovernance) -> list[str]:
    """Run the client process; its table rows, and the CPU this process (the gateway) spent per
    big read through it: the direct reads between them cost the gateway nothing. When the
    client asks for it, one ``run_sql`` of the tiny query goes through the MCP path."""
    table: list[str] = []
    pending, reads, started, spent = "", 0, 0.0, float("nan")
    async with await anyio.open_process([sys.executable, __file__, "--client"], stderr=None) as client:
        assert client.stdin is not None and client.stdout is not None
        await client.stdin.send(json.dumps(job).encode() + b"\n")
        async for text in TextReceiveStream(client.stdout):
            *lines, pending = (pending + text).split("\n")
            for line in lines:
                if line == MARK + MCP_TURN:
                    await governance.turn()
                    await client.stdin.send(b"done\n")
                elif line.startswith(MARK + BIG_READS):
                    reads, started = int(line.split()[-1]), time.process_time()
                elif line == MARK + DONE:
                    spent = (time.process_time() - started) / reads
                elif line:
                    table.append(line)
        code = await client.wait()
    if code != 0:
        raise SystemExit(f"the client process failed (exit code {code})")
    name = "gateway process CPU per 1M-row read"
    print(f"{name:<44} {spent * 1000:8.1f} ms", file=sys.stderr, flush=True)
    return [table[0], f"| {name} | {spent * 1000:,.1f} ms | | | | | |", *table[1:]]


class McpGovernance:
    """What the MCP path adds for governance to the tiny query: ``Executor.analyze`` (Spark's
    analysis and the verdict, as ``run_sql`` runs it before anything), timed where it runs."""

    def __init__(self, app: App, mcp: Client) -> None:
        self._app = app
        self._mcp = mcp
        self._times: list[float] = []
        analyze = app.executor.analyze

        async def timed(*args: Any, **kwargs: Any) -> Verdict:
            started = time.perf_counter()
            try:
                return await analyze(*args, **kwargs)
            finally:
                self._times.append(time.perf_counter() - started)

        app.executor.analyze = timed  # type: ignore[method-assign]  # a stopwatch, nothing more

    async def turn(self) -> None:
        """One real ``run_sql`` of the tiny query, through an MCP client."""
        result = await self._mcp.call_tool("run_sql", {"sql": TINY_SQL})
        if result.is_error:
            raise SystemExit(f"run_sql failed: {result.content}")

    def row(self, name: str) -> str:
        m50, m95 = stats(self._times)
        print(f"{name:<44} {m50 * 1000:8.1f} ms", file=sys.stderr, flush=True)
        return f"| {name} | {m50 * 1000:,.1f} ms | | | | {m95 * 1000:,.1f} ms | |"

    async def back_to_back(self, repeat: int) -> str:
        """The same analysis in a loop of nothing else, once the clients are done: the driver's
        caches and compiled code stay hot for it, so it is cheaper than in use."""
        principal = self._app.principal(USER)
        session = await self._app.executor.session(principal, None)
        for _ in range(3):
            await self._app.executor.analyze(principal, session, TINY_SQL)
        self._times.clear()
        for _ in range(repeat):
            verdict = await self._app.executor.analyze(principal, session, TINY_SQL)
            assert verdict.allowed, verdict.refusal
        return self.row("MCP governance, analyses back to back")


def client() -> None:
    """The client process: reads the job from stdin, writes the table rows to stdout."""
    job = json.loads(sys.stdin.readline())
    direct = SparkSession.builder.remote(job["direct"]).create()
    try:
        rows = measure(job["gateway"], direct, job["repeat"], job["tiny_repeat"])
    finally:
        direct.stop()
    sys.stdout.write("\n".join(rows) + "\n")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=15, help="repetitions of the 1M-row read")
    parser.add_argument("--tiny-repeat", type=int, default=30, help="repetitions of the tiny queries")
    parser.add_argument(
        "--spark-conf", action="append", default=[], metavar="KEY=VALUE", help="a driver setting (allowlisted)"
    )
    parser.add_argument(
        "--event-loop", choices=["auto", "uvloop", "asyncio"], default="auto", help="the server's loop, as serve's"
    )
    parser.add_argument(
        "--malloc", choices=["tuned", "system"], default="tuned", help="the server's malloc, as serve's tune_malloc"
    )
    parser.add_argument(
        "--analysis-plugin",
        choices=["on", "off"],
        default="on",
        help="the drivers' analysis plugin (driver.analysis_plugin): off, the gateway explains instead",
    )
    parser.add_argument("--client", action="store_true", help=argparse.SUPPRESS)  # the measuring process
    options = parser.parse_args()
    if options.client:
        client()
    else:
        choice = options.event_loop
        if options.malloc == "tuned" and not tune_malloc():
            raise SystemExit(
                "cannot tune this process's malloc (glibc only, and a MALLOC_* variable set in the environment "
                "leaves it alone): run with --malloc system"
            )
        name = event_loop.loop_name(choice)
        label = f"{name}, malloc {options.malloc}"
        plugin = options.analysis_plugin == "on"
        event_loop.run(choice, run, options.repeat, options.tiny_repeat, options.spark_conf, plugin, label)
