"""A driver's start with and without the shared class archive (``drivers.class_cache``).

Run by hand:  uv run python benchmarks/driver_start.py [--repeat 3]

First it makes an archive in a folder of its own, as a server would: one driver records the
classes it loads while it answers the queries below, stops, and the dump runs (its time is
reported). Then it starts drivers through the local backend (``start()``: spawn to ready), in
turns with the archive and without it (``driver.class_cache = false``), and on each, through
PySpark's own client, times the first ``SELECT 1`` and a first Parquet aggregate (a read, a
filter, a grouping: the classes a first real query needs). Medians over ``--repeat`` turns;
each side goes first every other turn. Nothing here is asserted: the figures go into the README.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import anyio
import pyarrow as pa
import pyarrow.parquet as pq

from spark_mcp.config import Config, load_config
from spark_mcp.drivers.base import Driver
from spark_mcp.drivers.local import DriverSpec, LocalBackend
from spark_mcp.drivers.profiles import resolve_profiles
from spark_mcp.spark.connect import open_session

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: benchmarks/ is a package
from benchmarks.overhead import machine

Timings = tuple[float, float, float]  # ready, first SELECT 1, first aggregate


def settings(work: Path, *, cached: bool) -> Config:
    driver = {"class_cache": cached, "class_cache_dir": str(work / "cache")}
    return load_config(None, environ={}, overrides={"home": str(work / "home"), "driver": driver})


async def one_driver(config: Config, table: Path) -> Timings:
    backend = LocalBackend(config, os.environ)
    started = time.perf_counter()
    driver = await backend.start(DriverSpec(profile=resolve_profiles(config)["default"], principal="bench"))
    ready = time.perf_counter() - started
    try:
        first, aggregate = await anyio.to_thread.run_sync(lambda: _queries(driver, table))
    finally:
        await backend.stop(driver)
    return ready, first, aggregate


def _queries(driver: Driver, table: Path) -> tuple[float, float]:
    session = open_session(driver, user_id="bench")
    try:
        started = time.perf_counter()
        session.spark.sql("SELECT 1").collect()
        first = time.perf_counter() - started
        started = time.perf_counter()
        session.spark.read.parquet(str(table)).where("k > 3").groupBy("v").count().toArrow()
        return first, time.perf_counter() - started
    finally:
        session.close()


async def run(repeat: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="spark-mcp-driver-start-"))
    table = work / "t.parquet"
    pq.write_table(pa.table({"k": list(range(1000)), "v": [str(i % 10) for i in range(1000)]}), table)
    cached, plain = settings(work, cached=True), settings(work, cached=False)
    print(f"{machine()}; driver local[{cached.driver.cores}], {cached.driver.memory}", flush=True)

    await one_driver(cached, table)  # records its classes; the dump starts when it stops
    started = time.perf_counter()
    while not list((work / "cache").glob("*.jsa")):
        if list((work / "cache").glob("*.failed")):
            raise SystemExit(f"the dump failed: see {next((work / 'cache').glob('*.dump.log'))}")
        await anyio.sleep(0.5)
    made = time.perf_counter() - started
    size = next((work / "cache").glob("*.jsa")).stat().st_size

    with_archive: list[Timings] = []
    without: list[Timings] = []
    for turn in range(repeat):
        for config in (cached, plain) if turn % 2 == 0 else (plain, cached):
            (with_archive if config is cached else without).append(await one_driver(config, table))

    print()
    print(f"archive made in {made:.0f} s after the recording driver stopped ({size / 2**20:.0f} MiB)")
    print()
    print("| what | without the archive | with it |")
    print("|---|---|---|")
    for index, what in enumerate(("start to ready", "first `SELECT 1`", "first Parquet aggregate")):
        plain_s = statistics.median(t[index] for t in without)
        cached_s = statistics.median(t[index] for t in with_archive)
        print(f"| {what} | {plain_s:.2f} s | {cached_s:.2f} s |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="turns, each a driver with and one without")
    anyio.run(run, parser.parse_args().repeat)
