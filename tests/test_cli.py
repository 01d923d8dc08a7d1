"""The spark-mcp command line, run as a person runs it (subprocesses of the real console script)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from mcp import Client

from spark_mcp.app import App
from spark_mcp.audit import AuditLog, Redactor
from spark_mcp.errors import AuditError
from tests.helpers import TESTS, call, driver_pids, make_config

SPARK_MCP = str(Path(sys.executable).parent / "spark-mcp")


def run(*args: str, env: dict[str, str] | None = None, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SPARK_MCP, *args], capture_output=True, text=True, timeout=timeout, env=env or dict(os.environ), check=False
    )


def test_doctor_passes_on_a_machine_with_java_and_spark(tmp_path: Path) -> None:
    done = run("doctor", "--home", str(tmp_path / "home"))
    assert done.returncode == 0, done.stdout + done.stderr
    for check in ("python", "spark", "java", "state directory", "loopback ports", "policies", "analysis plugin"):
        assert f"✔ {check}" in done.stdout


def test_doctor_says_what_is_wrong_and_how_to_fix_it(tmp_path: Path) -> None:
    env = {**os.environ, "JAVA_HOME": str(tmp_path / "no-java")}
    done = run("doctor", "--home", str(tmp_path / "home"), env=env)
    assert done.returncode == 1
    assert "✘ java" in done.stdout and "fix:" in done.stdout


def test_policy_check_accepts_good_files_and_names_the_problem_in_bad_ones(tmp_path: Path) -> None:
    good = run("policy", "--policies", str(TESTS / "policies"), "check")
    assert good.returncode == 0 and "role analyst" in good.stdout
    bad = tmp_path / "bad.toml"
    bad.write_text('[roles.x]\nactions = ["sql.read", "sql.fly"]\n')
    done = run("policy", "--policies", str(bad), "check")
    assert done.returncode == 1
    assert str(bad) in done.stderr and "roles.x.actions[1]" in done.stderr


@pytest.mark.spark
def test_policy_explain_prints_the_decision_and_its_rule(tmp_path: Path, data_dir: Path) -> None:
    config = tmp_path / "spark-mcp.toml"
    config.write_text(
        f'home = "{tmp_path / "home"}"\npolicies = ["{TESTS / "policies"}"]\n'
        f'[[datasets]]\nname = "hr.salaries"\npath = "{data_dir / "hr" / "salaries.parquet"}"\n'
    )
    done = run("policy", "--config", str(config), "explain", "--user", "alice", "--sql", "SELECT * FROM HR.Salaries")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "reads:     spark_catalog.hr.salaries" in done.stdout
    assert "DENIED" in done.stdout and 'roles.analyst.deny[1] "hr.*"' in done.stdout


@pytest.mark.spark
@pytest.mark.anyio
async def test_drivers_list_and_stop_see_and_stop_what_the_server_started(tmp_path: Path, data_dir: Path) -> None:
    config = make_config(tmp_path / "home", data_dir, datasets=[])
    async with App.running(config) as app:
        session = await app.executor.create_session(app.principal("alice"))
        listed = run("drivers", "--home", str(config.home), "list", "--json")
        rows = json.loads(listed.stdout)
        assert [r["driver_id"] for r in rows] == [session.driver.id] and rows[0]["running"] is True
        stopped = run("drivers", "--home", str(config.home), "stop", session.driver.id)
        assert stopped.returncode == 0 and "stopped" in stopped.stdout
        assert session.driver.id not in driver_pids()
        assert run("drivers", "--home", str(config.home), "list").stdout.strip() == "no drivers"
        unknown = run("drivers", "--home", str(config.home), "stop", "drv-nope")
        assert unknown.returncode == 1 and "no driver drv-nope" in unknown.stdout


@pytest.mark.spark
@pytest.mark.anyio
async def test_audit_verify_and_tail(alice: Client, app: App, tmp_path: Path) -> None:
    await call(alice, "whoami")
    ok = run("audit", "--home", str(app.config.home), "verify")
    assert ok.returncode == 0 and "chain intact" in ok.stdout
    tail = run("audit", "--home", str(app.config.home), "tail", "-n", "1", "--user", "alice")
    assert json.loads(tail.stdout)["principal"] == "alice"
    copy = tmp_path / "audit.jsonl"
    shutil.copy(app.config.audit_path, copy)
    shutil.copy(Path(f"{app.config.audit_path}.head"), Path(f"{copy}.head"))
    lines = copy.read_text().splitlines()
    lines[0] = lines[0].replace('"principal":"', '"principal":"x', 1)
    copy.write_text("\n".join(lines) + "\n")
    tampered = run("audit", "--path", str(copy), "verify")
    assert tampered.returncode == 1 and "line 1" in tampered.stdout


def test_audit_verify_takes_the_path_the_logs_own_messages_suggest(tmp_path: Path) -> None:
    path = tmp_path / "audit" / "audit.jsonl"
    with AuditLog(path, Redactor()) as log:
        log.emit(request_id="r1", principal="alice", tool="whoami", outcome="ok", duration_ms=1)
    positional = run("audit", "verify", str(path))
    assert positional.returncode == 0, positional.stdout + positional.stderr
    assert f"{path}: 1 records, chain intact" in positional.stdout
    assert run("audit", "--path", str(path), "verify").returncode == 0  # the older form still works
    # A log whose head file is gone refuses to go on and names a command: that command must run.
    Path(f"{path}.head").unlink()
    with pytest.raises(AuditError) as refused:
        AuditLog(path, Redactor())
    suggested = re.search(r"`spark-mcp (audit verify [^`]+)`", str(refused.value))
    assert suggested is not None, refused.value
    done = run(*suggested.group(1).split())
    assert done.returncode == 1, done.stdout + done.stderr  # it ran, and found the problem
    assert "head file missing" in done.stdout
    clash = run("audit", "--path", str(tmp_path / "other.jsonl"), "verify", str(path))
    assert clash.returncode == 2 and "two different audit files" in clash.stderr


def test_call_runs_one_tool_and_prints_its_reply(tmp_path: Path) -> None:
    done = run("call", "whoami", "--home", str(tmp_path / "home"), "--user", "zoe")
    assert done.returncode == 0, done.stderr
    assert '"principal": "zoe"' in done.stdout


def test_a_bad_config_stops_serve_before_it_speaks(tmp_path: Path) -> None:
    config = tmp_path / "spark-mcp.toml"
    config.write_text('[driver]\nmemory = "lots"\n')
    done = run("serve", "--config", str(config))
    assert done.returncode == 1
    assert done.stdout == ""
    assert "driver.memory" in done.stderr and str(config) in done.stderr


def test_a_dataset_that_does_not_exist_stops_serve_at_start(tmp_path: Path) -> None:
    config = tmp_path / "spark-mcp.toml"
    config.write_text('[[datasets]]\nname = "tpch.gone"\npath = "nowhere/gone.parquet"\n')
    done = run("serve", "--config", str(config))
    assert done.returncode == 1 and done.stdout == ""
    assert f"{config}: datasets[0].path: {tmp_path / 'nowhere' / 'gone.parquet'} does not exist" in done.stderr
