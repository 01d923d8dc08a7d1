"""Shared fixtures: real TPC-H data, one running App with real Spark drivers, MCP clients.

One ``App`` serves the whole test session (each principal gets its own driver once);
every test talks to it through the SDK's in-memory ``Client``, in both protocol eras (those
marked ``any_era`` in the legacy one only with ``-m slow``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from mcp import Client

from spark_mcp.app import App
from spark_mcp.config import Config
from spark_mcp.server import build_server
from tests.helpers import ClientFactory, make_config


@pytest.hookimpl(tryfirst=True)  # before ``-m`` deselects: the markers added here must count
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A test that uses the running App (real drivers) must say so with ``@pytest.mark.spark``,
    so that ``pytest -m "not spark"`` never starts a driver.

    A test marked ``any_era`` checks something the MCP protocol era cannot change (Spark's
    answers, governance, drivers): its run in the legacy era joins the slow suites, which keeps
    the default run short; ``-m slow`` still runs it."""
    for item in items:
        callspec = getattr(item, "callspec", None)
        if item.get_closest_marker("any_era") and callspec is not None and callspec.params.get("mode") == "legacy":
            item.add_marker(pytest.mark.slow)
    unmarked = [
        item.nodeid
        for item in items
        if "app" in getattr(item, "fixturenames", ()) and item.get_closest_marker("spark") is None
    ]
    if unmarked:
        raise pytest.UsageError("tests that use real Spark drivers need @pytest.mark.spark: " + ", ".join(unmarked))


@pytest.fixture(scope="session")
def anyio_backend() -> tuple[str, dict[str, bool]]:
    """The loop ``serve`` runs on (``[server] event_loop`` "auto": uvloop), so tests run there too."""
    return "asyncio", {"use_uvloop": True}


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """TPC-H at scale 0.01 (tpchgen-cli), plus small HR, secret and CSV sales tables."""
    root = tmp_path_factory.mktemp("data")
    tpchgen = shutil.which("tpchgen-cli", path=str(Path(sys.executable).parent)) or "tpchgen-cli"
    subprocess.run(
        [tpchgen, "parquet", "-s", "0.01", "--output-dir", str(root / "tpch")], check=True, capture_output=True
    )
    (root / "hr").mkdir()
    pq.write_table(
        pa.table({"name": ["ann", "ben", "cy"], "salary": pa.array([120000, 95000, 180000], pa.int64())}),
        root / "hr" / "salaries.parquet",
    )
    pq.write_table(pa.table({"code": ["alpha", "omega"], "value": [1, 2]}), root / "secret_codes.parquet")
    (root / "sales").mkdir()
    (root / "sales" / "orders.csv").write_text(
        "order_id,region,amount,ordered_on\n1,north,10.50,2024-01-31\n2,south,-3.25,2024-02-29\n3,north,7.00,2024-03-01\n"
    )
    return root


@pytest.fixture(scope="session")
def config(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Config:
    return make_config(tmp_path_factory.mktemp("home"), data_dir)


@pytest.fixture(scope="session")
async def app(config: Config) -> AsyncIterator[App]:
    async with App.running(config, environ=dict(os.environ)) as running:
        yield running


@pytest.fixture(params=["auto", "legacy"])
def mode(request: pytest.FixtureRequest) -> str:
    """Both protocol eras: 2026-07-28 (auto) and 2025-11-25 (legacy)."""
    return str(request.param)


@pytest.fixture
def connect(app: App, mode: str) -> ClientFactory:
    """``async with connect("alice") as client``: an MCP client acting as that user."""

    @asynccontextmanager
    async def open_client(user: str) -> AsyncIterator[Client]:
        async with Client(build_server(app=app, user=user), mode=mode) as client:
            yield client

    return open_client


@pytest.fixture
async def alice(connect: ClientFactory) -> AsyncIterator[Client]:
    async with connect("alice") as client:
        yield client


@pytest.fixture
async def erin(connect: ClientFactory) -> AsyncIterator[Client]:
    async with connect("erin") as client:
        yield client


@pytest.fixture
async def root(connect: ClientFactory) -> AsyncIterator[Client]:
    async with connect("root") as client:
        yield client
