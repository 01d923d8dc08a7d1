"""How fast a principal is served by the driver fleet, measured through a real MCP client.

Run by hand:  uv run python benchmarks/fleet.py [--scale 0.1] [--repeat 5] [--rounds 3]

It generates TPC-H data with tpchgen-cli (8 tables, declared as datasets) and reports:

- dataset registration on a fresh driver: the landed way (one statement at a time, every
  schema inferred, the built-in list fetched), then the fleet's way the first time
  (concurrent) and for every later driver (concurrent, schemas and built-ins remembered);
- cold start: ``create_session`` + ``run_sql("select 1")`` for a new principal with no pool;
- server start to first answer with ``pool.size = 1`` (the spare is still starting);
- a new principal taking a warm driver (target: at most 0.5 s);
- a principal whose driver runs already (target: at most 0.2 s).

Spares and the sessions opened ahead for a principal are prepared in the background; like a
host's next call after an agent has read a reply, each measurement starts once they are ready.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
from mcp import Client

from spark_mcp.app import App
from spark_mcp.config import Config, load_config
from spark_mcp.drivers.local import DriverSpec, LocalBackend
from spark_mcp.drivers.profiles import resolve_profiles
from spark_mcp.server import build_server
from spark_mcp.spark.bootstrap import Preparer, quote_ident, quote_string
from spark_mcp.spark.connect import ConnectSession, open_session

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: benchmarks/ is a package
from benchmarks.replies import first_text

TABLES = ("customer", "lineitem", "nation", "orders", "part", "partsupp", "region", "supplier")


def landed_registration(session: ConnectSession, config: Config) -> None:
    """What the landed code did: two statements per dataset, one at a time, schemas inferred."""
    for dataset in config.datasets:
        namespace, table = dataset.name.split(".", 1)
        options = ", ".join(f"{quote_ident(k)} {quote_string(v)}" for k, v in {"path": dataset.path}.items())
        session.spark.sql(f"CREATE NAMESPACE IF NOT EXISTS {quote_ident(namespace)}")
        session.spark.sql(
            f"CREATE TABLE IF NOT EXISTS {quote_ident(namespace)}.{quote_ident(table)} "
            f"USING {dataset.format} OPTIONS ({options})"
        )
    session.spark.sql("SHOW SYSTEM FUNCTIONS").collect()


async def on_fresh_driver(config: Config, work: Callable[[ConnectSession], object]) -> float:
    """Seconds ``work`` takes as the first thing a newly started driver does (what it returns is dropped)."""
    backend = LocalBackend(config, dict(os.environ))
    driver = await backend.start(DriverSpec(resolve_profiles(config)["default"]))
    try:
        session = await anyio.to_thread.run_sync(lambda: open_session(driver, user_id="bench"))
        started = time.perf_counter()
        await anyio.to_thread.run_sync(work, session)
        elapsed = time.perf_counter() - started
        await anyio.to_thread.run_sync(session.close)
        return elapsed
    finally:
        await backend.stop(driver)


async def first_answer(app: App, user: str) -> float:
    """``create_session`` then ``run_sql("select 1")`` in that session, as a new MCP client."""
    async with Client(build_server(app=app, user=user)) as client:
        started = time.perf_counter()
        session = await client.call_tool("create_session", {})
        assert not session.is_error, first_text(session)
        assert session.structured_content is not None
        session_id = session.structured_content["session_id"]
        reply = await client.call_tool("run_sql", {"sql": "select 1", "session_id": session_id})
        assert not reply.is_error, first_text(reply)
        elapsed = time.perf_counter() - started
        await client.call_tool("close_session", {"session_id": session_id})  # stay within limits.max_sessions
        return elapsed


async def steady_state(app: App, user: str, repeat: int) -> tuple[list[float], list[float]]:
    """``create_session`` alone, and ``run_sql("select 1")`` in a session already used."""
    creates: list[float] = []
    selects: list[float] = []
    async with Client(build_server(app=app, user=user)) as client:
        await client.call_tool("run_sql", {"sql": "select 1"})
        for _ in range(repeat):
            started = time.perf_counter()
            created = await client.call_tool("create_session", {})
            creates.append(time.perf_counter() - started)
            assert not created.is_error and created.structured_content is not None
            await client.call_tool("close_session", {"session_id": created.structured_content["session_id"]})
            started = time.perf_counter()
            await client.call_tool("run_sql", {"sql": "select 1"})
            selects.append(time.perf_counter() - started)
    return creates, selects


async def wait_for_session_ahead(app: App, user: str) -> None:
    """The next session is opened and warmed in the background after each one; wait for it, as for a spare."""
    driver = app.drivers.current(user)
    assert driver is not None
    with anyio.fail_after(120):
        while not app.sessions.ready_ahead(driver, user):  # noqa: ASYNC110 - polls a background thread's work
            await anyio.sleep(0.05)


async def wait_for_spare(app: App, profile: str = "default") -> None:
    with anyio.fail_after(600):
        while not app.drivers.warm.ready(profile):  # noqa: ASYNC110 - polls another task's state, with a deadline
            await anyio.sleep(0.05)


def describe(times: list[float]) -> str:
    low, high = min(times) * 1000, max(times) * 1000
    return f"median {statistics.median(times) * 1000:.0f} ms (min {low:.0f}, max {high:.0f}, n={len(times)})"


def machine() -> str:
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3
    java = subprocess.run(["java", "-version"], capture_output=True, text=True).stderr.splitlines()[0]
    return f"{os.cpu_count()} cores, {memory:.0f} GiB, {java}, load average {os.getloadavg()[0]:.1f}"


def generate(scale: float) -> Path:
    work = Path(tempfile.mkdtemp(prefix="spark-mcp-fleet-bench-"))
    tpchgen = Path(sys.executable).parent / "tpchgen-cli"
    subprocess.run([str(tpchgen), "parquet", "-s", str(scale), "--output-dir", str(work / "tpch")], check=True)
    return work


async def main(work: Path, scale: float, repeat: int, rounds: int) -> None:
    datasets = [{"name": f"tpch.{t}", "path": str(work / "tpch" / f"{t}.parquet")} for t in TABLES]

    def config(name: str, **values: Any) -> Config:
        return load_config(None, environ={}, overrides={"home": str(work / name), "datasets": datasets, **values})

    print(f"TPC-H scale {scale}, {len(TABLES)} datasets, {repeat} repetitions; work in {work}")

    plain = config("registration")
    variants: dict[str, list[float]] = {"landed": [], "first": [], "later": []}
    for round_ in range(rounds):  # fresh drivers, the order turned each round: the machine's load drifts
        order = ["landed", "first", "later"]
        for name in order[round_ % 3 :] + order[: round_ % 3]:
            if name == "landed":
                variants[name].append(await on_fresh_driver(plain, lambda s: landed_registration(s, plain)))
            elif name == "first":
                variants[name].append(await on_fresh_driver(plain, Preparer(plain.datasets).prepare))
            else:
                learnt = Preparer(plain.datasets)
                await on_fresh_driver(plain, learnt.prepare)  # learns the schemas and built-ins (not timed)
                variants[name].append(await on_fresh_driver(plain, learnt.prepare))
    print(f"dataset registration, landed (serial, inferred):    {describe(variants['landed'])}")
    print(f"dataset registration, fleet, first driver:          {describe(variants['first'])}")
    print(f"dataset registration, fleet, later drivers:         {describe(variants['later'])}")

    async with App.running(config("cold")) as app:
        cold = await first_answer(app, "cold-user")
    print(f"cold start (no pool): new principal's first answer: {cold:.2f} s")

    started = time.perf_counter()
    async with App.running(config("warm", pool={"size": 1})) as app:
        await first_answer(app, "first-user")
        at_start = time.perf_counter() - started
        print(f"pool.size = 1, server start to first answer:        {at_start:.2f} s")
        warm: list[float] = []
        for index in range(repeat):
            await wait_for_spare(app)
            warm.append(await first_answer(app, f"user-{index}"))
        print(f"new principal, warm driver from the pool:           {describe(warm)} (target 0.5 s)")
        running = []
        for _ in range(max(2 * repeat, 10)):  # cheap to repeat, and close to its target: more turns
            await wait_for_session_ahead(app, "user-0")
            running.append(await first_answer(app, "user-0"))
        print(f"principal whose driver runs:                        {describe(running)} (target 0.2 s)")
        creates, selects = await steady_state(app, "user-0", max(repeat, 5))
        print(f"  of which create_session alone:                    {describe(creates)}")
        print(f"  for comparison, run_sql select 1 in a used session: {describe(selects)}")
        rss = [(d.id, d.pid) for d in app.drivers.drivers() if d.pid]
        total = sum(_rss_mb(pid) for _, pid in rss)
        print(f"drivers running at the end: {len(rss)}, resident memory {total:.0f} MB in all")
    print(f"machine after: load average {os.getloadavg()[0]:.1f}")


def _rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--scale", type=float, default=0.1)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3, help="fresh drivers per registration variant")
    options = parser.parse_args()
    print(f"machine: {machine()}")
    anyio.run(main, generate(options.scale), options.scale, options.repeat, options.rounds)
