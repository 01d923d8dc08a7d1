"""The warm pool, profiles with credentials, and a driver killed mid-query, against real drivers.

One app serves this module: ``pool.size = 1`` for the ``small`` profile, whose drivers get
a credential file and a secret environment variable. Principals arrive one after another
and take spares; the tests follow that story in order.
"""

from __future__ import annotations

import os
import signal
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from mcp import Client

from spark_mcp.app import App
from spark_mcp.drivers.base import Driver
from spark_mcp.server import build_server
from tests.fleet_support import driver_rows, wait_for
from tests.helpers import TESTS, call, call_error, make_config

pytestmark = [pytest.mark.anyio, pytest.mark.spark]

SECRET = "s3cr3t-value-that-must-never-show"


@pytest.fixture(scope="module")
async def pool_app(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> AsyncIterator[App]:
    secrets_dir = tmp_path_factory.mktemp("secrets")
    secret_file = secrets_dir / "aws_secret"
    secret_file.write_text(SECRET + "\n")
    secret_file.chmod(0o600)
    key_file = secrets_dir / "service.json"
    key_file.write_text('{"private_key": "-----BEGIN KEY-----\\nSERVICEKEYMATERIAL\\n-----END KEY-----"}')
    key_file.chmod(0o600)
    config = make_config(
        tmp_path_factory.mktemp("pool-home"),
        data_dir,
        policies=[str(TESTS / "policies_fleet")],
        datasets=[{"name": f"tpch.{t}", "path": str(data_dir / "tpch" / f"{t}.parquet")} for t in ("nation", "region")],
        driver={"cores": 1, "memory": "512m"},
        pool={"size": 1, "profiles": ["small"], "replace_after_s": REPLACE_AFTER_S},
        profiles={
            "small": {
                "memory": "512m",
                "env": {"GOOGLE_APPLICATION_CREDENTIALS": "{credentials}/service.json"},
                "credentials": {"files": [str(key_file)], "secret_env": {"AWS_SECRET_ACCESS_KEY": str(secret_file)}},
            },
            "roomy": {"memory": "768m"},
        },
    )
    async with App.running(config, environ=dict(os.environ)) as app:
        yield app


def client(app: App, user: str) -> Client:
    return Client(build_server(app=app, user=user), mode="auto")


# Long enough that the check right after the take cannot race the replacement on a loaded machine.
REPLACE_AFTER_S = 15.0


def spare_ids(app: App) -> list[str]:
    return [d.id for d in app.drivers.warm.ready("small")]


async def test_a_new_principal_takes_a_warm_driver_and_a_replacement_starts(pool_app: App) -> None:
    await wait_for(lambda: spare_ids(pool_app))
    first_spare = spare_ids(pool_app)[0]
    async with client(pool_app, "ann") as ann:
        session = await call(ann, "create_session")
        assert session["driver_id"] == first_spare and session["profile"] == "small"
        # The replacement waits, so that no driver boots while ann waits for her first answers.
        assert pool_app.drivers.warm.starting("small") == 0 and spare_ids(pool_app) == []
        # Its datasets were registered while it waited.
        counted = await call(
            ann, "run_sql", sql="SELECT count(*) AS n FROM tpch.nation", session_id=session["session_id"]
        )
        assert counted["rows"] == [[25]]
        await wait_for(lambda: spare_ids(pool_app) and spare_ids(pool_app) != [first_spare])
        replacement = spare_ids(pool_app)[0]
        assert replacement != first_spare
        # The same principal's sessions share its driver ("user" share level)...
        again = await call(ann, "create_session")
        assert again["driver_id"] == first_spare
    # ...and another principal gets a driver of its own: the replacement spare.
    async with client(pool_app, "root") as root:
        theirs = await call(root, "create_session")
        assert theirs["driver_id"] == replacement != first_spare
    owners = {row.id: row.owner for row in driver_rows(pool_app.config.home)}
    assert owners[first_spare] == "user:ann" and owners[replacement] == "user:root"


async def test_whoami_lists_profiles_and_quotas_and_a_profile_outside_the_role_is_denied(pool_app: App) -> None:
    async with client(pool_app, "ann") as ann:
        who = await call(ann, "whoami")
        assert [(p["name"], p["memory"], p["default"]) for p in who["profiles"]] == [
            ("small", "512m", True),
            ("roomy", "768m", False),
        ]
        quotas = who["quotas"]
        assert quotas["share"] == "user" and quotas["max_drivers"] == 16 and quotas["your_drivers"] == 1
        assert quotas["max_driver_memory_bytes"] > 0 and quotas["drivers_running"] >= 2
        listed = await call(ann, "list_sessions")
        assert {(s["profile"], s["driver_id"]) for s in listed["sessions"]} == {
            ("small", who_driver(pool_app, "ann").id)
        }
    async with client(pool_app, "erin") as erin:
        text = await call_error(erin, "create_session", profile="roomy")
        assert text.startswith("policy_denied: erin may not use profile 'roomy'")
        assert "[rule: roles.engineer.profiles]" in text
        text = await call_error(erin, "create_session", profile="../etc")
        assert "pattern" in text or "validation" in text.lower()


def who_driver(app: App, principal: str) -> Driver:
    driver = app.drivers.current(principal)
    assert driver is not None
    return driver


async def test_profile_credentials_reach_the_driver_privately_and_never_a_reply(pool_app: App) -> None:
    driver = who_driver(pool_app, "root")
    assert driver.pid is not None
    copy = driver.workdir / "credentials" / "service.json"
    assert stat.S_IMODE(copy.stat().st_mode) == 0o600
    assert stat.S_IMODE((driver.workdir / "credentials").stat().st_mode) == 0o700
    environ = Path(f"/proc/{driver.pid}/environ").read_bytes()
    assert f"AWS_SECRET_ACCESS_KEY={SECRET}".encode() in environ
    assert f"GOOGLE_APPLICATION_CREDENTIALS={copy}".encode() in environ
    assert SECRET.encode() not in Path(f"/proc/{driver.pid}/cmdline").read_bytes()
    async with client(pool_app, "root") as root:
        # An admin may call Java; the reply still never carries the profile's secrets.
        reply = await call(
            root,
            "run_sql",
            sql="SELECT java_method('java.lang.System', 'getenv', 'AWS_SECRET_ACCESS_KEY') AS s, "
            "'SERVICEKEYMATERIAL' AS k",
        )
        assert reply["rows"] == [["[REDACTED]", "[REDACTED]"]]
    assert SECRET not in pool_app.config.audit_path.read_text()


async def test_a_driver_killed_mid_query_gives_a_clear_error_and_the_next_call_gets_a_new_driver(pool_app: App) -> None:
    async with client(pool_app, "ann") as ann:
        started = await call(
            ann,
            "run_sql",
            sql="SELECT sum(a.id * b.id) AS s FROM range(200000) a CROSS JOIN range(200000) b",
            wait_s=0,
        )
        assert started["state"] in ("queued", "running")
        job = pool_app.jobs.get("ann", started["job_id"])
        await wait_for(lambda: job.progress.stages > 0)
        driver = who_driver(pool_app, "ann")
        assert driver.pid is not None
        os.kill(driver.pid, signal.SIGKILL)
        failed = await call(ann, "get_job", job_id=started["job_id"], wait_s=120)
        assert failed["state"] == "failed"
        assert failed["error"]["code"] == "driver_lost", failed["error"]
        assert f"driver {driver.id} stopped unexpectedly" in failed["error"]["message"]
        assert "temp views and settings are gone" in failed["error"]["message"]
        again = await call(ann, "run_sql", sql="SELECT 2 AS two")
        assert again["rows"] == [[2]]
        assert who_driver(pool_app, "ann").id != driver.id
    assert driver.id not in {row.id for row in driver_rows(pool_app.config.home)}
