"""Share levels, quotas and reapers against real drivers.

Two small apps: one with ``driver.share = "session"`` and no warm pool, one with
``driver.share = "group"``. Each quota is run into for real and refuses with its name and
what frees it; the reapers stop what they should and nothing else.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from spark_mcp.app import App
from spark_mcp.config import Config
from spark_mcp.drivers.base import Driver
from spark_mcp.drivers.process import is_same_process
from spark_mcp.server import build_server
from tests.fleet_support import driver_rows, wait_for
from tests.helpers import TESTS, call, call_error, make_config

pytestmark = [pytest.mark.anyio, pytest.mark.spark]

SMALL = {"small": {"memory": "512m"}, "roomy": {"memory": "512m"}}


def fleet_config(home: Path, data_dir: Path, *, driver: dict[str, Any], quotas: dict[str, Any]) -> Config:
    return make_config(
        home,
        data_dir,
        policies=[str(TESTS / "policies_fleet")],
        datasets=[{"name": "tpch.region", "path": str(data_dir / "tpch" / "region.parquet")}],
        driver={"cores": 1, "memory": "512m", **driver},
        profiles=SMALL,
        quotas=quotas,
    )


def client(app: App, user: str) -> Client:
    return Client(build_server(app=app, user=user), mode="auto")


def gone(driver: Driver) -> bool:
    return driver.pid is None or not is_same_process(driver.pid, driver.pid_start)


@pytest.fixture(scope="module")
async def session_app(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> AsyncIterator[App]:
    # Each driver counts 512 MiB heap + 384 MiB overhead = 896 MiB: two fit in 2 GiB, three do not.
    config = fleet_config(
        tmp_path_factory.mktemp("session-home"),
        data_dir,
        driver={"share": "session"},
        quotas={"max_drivers_per_user": 2, "max_driver_memory": "2g"},
    )
    async with App.running(config, environ=dict(os.environ)) as app:
        yield app


async def test_session_share_gives_each_session_its_own_driver_and_quotas_hold(session_app: App) -> None:
    async with client(session_app, "ann") as ann, client(session_app, "bob") as bob:
        first = await call(ann, "create_session")
        second = await call(ann, "create_session")
        assert first["driver_id"] != second["driver_id"]
        # pool.size = 0: nothing but the two drivers asked for runs.
        assert sorted(d.id for d in session_app.drivers.drivers()) == sorted([first["driver_id"], second["driver_id"]])
        assert session_app.drivers.warm.profiles == ()

        text = await call_error(ann, "create_session")
        assert text.startswith("quota_exceeded: quotas.max_drivers_per_user: user ann already has 2 driver(s)")
        assert "close_session" in text

        text = await call_error(bob, "create_session")
        assert text.startswith("quota_exceeded: quotas.max_driver_memory: this driver needs 896 MiB")
        assert "drivers already hold 1.8 GiB of the 2.0 GiB allowed" in text

        who = await call(ann, "whoami")
        assert who["quotas"]["your_drivers"] == 2 and who["quotas"]["max_drivers_per_user"] == 2
        assert who["quotas"]["driver_memory_used_bytes"] == 2 * 896 * 1024**2

        # Closing a session stops its driver, which frees room for bob.
        closed_driver = session_app.drivers.get(first["driver_id"])
        assert closed_driver is not None
        await call(ann, "close_session", session_id=first["session_id"])
        assert session_app.drivers.get(first["driver_id"]) is None and gone(closed_driver)
        assert first["driver_id"] not in {row.id for row in driver_rows(session_app.config.home)}
        theirs = await call(bob, "create_session")
        assert theirs["driver_id"] not in (first["driver_id"], second["driver_id"])


@pytest.fixture(scope="module")
async def group_app(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> AsyncIterator[App]:
    config = fleet_config(
        tmp_path_factory.mktemp("group-home"),
        data_dir,
        driver={"share": "group"},
        quotas={"max_drivers": 2, "driver_idle_timeout_s": 600, "driver_max_lifetime_s": 3600},
    )
    async with App.running(config, environ=dict(os.environ)) as app:
        yield app


async def test_group_share_members_of_a_role_share_a_driver_but_not_their_sessions(group_app: App) -> None:
    async with client(group_app, "ann") as ann, client(group_app, "bob") as bob, client(group_app, "erin") as erin:
        hers = await call(ann, "create_session")
        his = await call(bob, "create_session")
        assert hers["driver_id"] == his["driver_id"]
        driver = group_app.drivers.get(hers["driver_id"])
        assert driver is not None and driver.owner == "group:analyst" and driver.principal is None
        await call(ann, "run_sql", sql="CREATE TEMP VIEW mine AS SELECT 1 AS x", session_id=hers["session_id"])
        text = await call_error(bob, "run_sql", sql="SELECT * FROM mine", session_id=his["session_id"])
        assert "TABLE_OR_VIEW_NOT_FOUND" in text
        # Policy is still per principal: bob's session is his own.
        text = await call_error(ann, "list_tables", session_id=his["session_id"])
        assert "session_not_found" in text
        # The next session is opened ahead for each principal, and only ever handed to that principal.
        await wait_for(lambda: group_app.sessions.ready_ahead(driver, "ann"))
        await wait_for(lambda: group_app.sessions.ready_ahead(driver, "bob"))
        again = await call(bob, "create_session")
        taken = group_app.sessions.get("bob", again["session_id"]).connect
        theirs = group_app.sessions.get("ann", hers["session_id"]).connect
        assert taken.user_id == "bob" and taken.spark_session_id != theirs.spark_session_id
        await call(bob, "close_session", session_id=again["session_id"])
        # Another role gets another driver.
        engineers = await call(erin, "create_session")
        assert engineers["driver_id"] != hers["driver_id"]


async def test_max_drivers_refuses_until_the_idle_reaper_frees_one(group_app: App) -> None:
    async with client(group_app, "root") as root, client(group_app, "erin") as erin:
        text = await call_error(root, "create_session")
        assert text.startswith("quota_exceeded: quotas.max_drivers: all 2 drivers this server may run are in use")
        assert "quotas.driver_idle_timeout_s (600 s)" in text

        analysts = group_app.drivers.assigned("group:analyst", "small")
        engineers = group_app.drivers.assigned("group:engineer", "small")
        assert analysts is not None and engineers is not None
        [erins] = (await call(erin, "list_sessions"))["sessions"]
        # The engineers' driver was last used 700 s ago; the analysts' just now.
        engineers.last_used = time.time() - 700
        analysts.touch()
        assert await group_app.drivers.reap() == [engineers.id]
        assert gone(engineers) and not gone(analysts)
        text = await call_error(erin, "run_sql", sql="SELECT 1", session_id=erins["session_id"])
        assert "is expired: its driver was idle for more than quotas.driver_idle_timeout_s (600 s)" in text

        admins = await call(root, "create_session")
        assert admins["driver_id"] not in (analysts.id, engineers.id)


async def test_the_lifetime_reaper_waits_for_running_jobs_and_spares_young_drivers(group_app: App) -> None:
    analysts = group_app.drivers.assigned("group:analyst", "small")
    admins = group_app.drivers.assigned("group:admin", "small")
    assert analysts is not None and admins is not None
    async with client(group_app, "ann") as ann:
        job = await call(
            ann, "run_sql", sql="SELECT sum(a.id * b.id) FROM range(200000) a CROSS JOIN range(200000) b", wait_s=0
        )
        await wait_for(lambda: group_app.jobs.get("ann", job["job_id"]).state.value == "running")
        analysts.started_at = time.time() - 4000  # older than quotas.driver_max_lifetime_s (3600 s)
        assert await group_app.drivers.reap() == []  # busy: a job runs on it
        await call(ann, "cancel_job", job_id=job["job_id"])
        assert await group_app.drivers.reap() == [analysts.id]
    assert gone(analysts) and not gone(admins)
