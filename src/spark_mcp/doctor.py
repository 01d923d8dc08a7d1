"""``spark-mcp doctor``: is this machine ready to run drivers, and if not, what to do."""

from __future__ import annotations

import os
import stat
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from spark_mcp.config import Config
from spark_mcp.errors import SparkMcpError

if TYPE_CHECKING:
    from spark_mcp.drivers.environment import JavaCheck


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str | None = None


def run_checks(config: Config, environ: Mapping[str, str], *, start_driver: bool = False) -> list[Check]:
    from spark_mcp.drivers.environment import check_java

    found = check_java(config.driver.java_home, environ)  # runs `java -version`: once
    java = _java(found)
    checks = [_python(), _spark(), java, _state_dir(config.home), _port(), _policies(config)]
    checks += _datasets(config)
    if java.ok and found.executable is not None:
        checks.append(_class_archive(config, environ, found.executable))
        checks.append(_analysis_plugin(config, environ, found.executable))
    if config.uses_standalone:
        checks.append(_master(config))
    if start_driver and all(c.ok for c in checks):
        checks.append(_driver(config, environ))
    return checks


def _python() -> Check:
    return Check("python", True, f"Python {'.'.join(map(str, sys.version_info[:3]))}")


def _spark() -> Check:
    try:
        from spark_mcp.drivers.environment import spark_home, spark_version
    except ImportError as exc:  # pragma: no cover - pyspark is a dependency
        return Check("spark", False, f"pyspark cannot be imported: {exc}", "run `uv sync`")
    home = spark_home()
    submit = home / "bin" / "spark-submit"
    jars = list((home / "jars").glob("spark-connect_*.jar"))
    if not submit.is_file() or not os.access(submit, os.X_OK):
        return Check(
            "spark",
            False,
            f"{submit} is missing or not executable",
            "reinstall pyspark: `uv sync --reinstall-package pyspark`",
        )
    if not jars:
        return Check("spark", False, f"no spark-connect jar in {home / 'jars'}", "install pyspark[connect] 4.x")
    return Check("spark", True, f"pyspark {spark_version()} at {home} (Spark Connect jar present)")


def _java(java: JavaCheck) -> Check:
    from spark_mcp.drivers.environment import MIN_JAVA

    if java.problem:
        return Check(
            "java",
            False,
            java.problem,
            f"install a JDK/JRE {MIN_JAVA}+ (Debian/Ubuntu: apt install openjdk-17-jre-headless; "
            "macOS: brew install openjdk@17) and put it on PATH, or set JAVA_HOME or driver.java_home",
        )
    return Check("java", True, f"Java {java.version} at {java.executable}")


def _class_archive(config: Config, environ: Mapping[str, str], java: Path) -> Check:
    from spark_mcp.drivers.class_cache import ClassCache

    return Check("class archive", True, ClassCache.for_config(config, environ).status(java))


def _analysis_plugin(config: Config, environ: Mapping[str, str], java: Path) -> Check:
    from spark_mcp.drivers.analysis_plugin import AnalysisPluginJar

    return Check("analysis plugin", True, AnalysisPluginJar.for_config(config, environ).status(java))


def _state_dir(home: Path) -> Check:
    try:
        home.mkdir(parents=True, exist_ok=True, mode=0o700)
        with tempfile.NamedTemporaryFile(dir=home, prefix=".doctor-"):
            pass
    except OSError as exc:
        return Check(
            "state directory",
            False,
            f"{home} is not writable: {exc.strerror}",
            "set SPARK_MCP_HOME or --home to a writable folder",
        )
    mode = stat.S_IMODE(home.stat().st_mode)
    if mode & 0o077:
        return Check(
            "state directory",
            False,
            f"{home} is accessible to other users (mode {mode:o}); it holds results and the audit log",
            f"chmod 700 {home}",
        )
    usage = os.statvfs(home)
    free_gb = usage.f_bavail * usage.f_frsize / 1024**3
    if free_gb < 1:
        return Check(
            "state directory", False, f"{home}: only {free_gb:.2f} GB free", "free disk space or move SPARK_MCP_HOME"
        )
    return Check("state directory", True, f"{home} (private, {free_gb:.0f} GB free)")


def _port() -> Check:
    from spark_mcp.drivers.process import free_loopback_port

    try:
        port = free_loopback_port()
    except OSError as exc:
        return Check(
            "loopback ports", False, f"cannot bind 127.0.0.1: {exc}", "check the loopback interface and firewall"
        )
    return Check("loopback ports", True, f"127.0.0.1 can bind (e.g. port {port})")


def _policies(config: Config) -> Check:
    from spark_mcp.policy import load_policies

    try:
        policy = load_policies(config.policies)
    except SparkMcpError as exc:
        return Check("policies", False, str(exc), "fix the file named above; `spark-mcp policy check` re-validates")
    where = ", ".join(str(p) for p in config.policies)
    return Check("policies", True, f"{len(policy.roles)} roles from {where}")


def _datasets(config: Config) -> list[Check]:
    missing = config.missing_datasets()
    if missing:
        return [Check("datasets", False, "; ".join(missing), "fix the path in the [[datasets]] entry")]
    return [Check("datasets", True, f"{len(config.datasets)} declared, every local path exists")]


def _master(config: Config) -> Check:
    """The standalone backend's master accepts connections; its web UI's status, when readable, says how full it is."""
    from spark_mcp.drivers.master_status import describe, fetch_status
    from spark_mcp.drivers.standalone import check_reachable

    master = config.driver.master
    assert master is not None  # config validation: the standalone backend needs one
    problem = check_reachable(master)
    if problem is not None:
        return Check(
            "spark master",
            False,
            f"{master} is not reachable ({problem})",
            "start the master, or fix driver.master; this machine must reach its port",
        )
    ui = config.driver.master_ui_url
    status = fetch_status(ui) if ui else None
    if status is None:
        return Check(
            "spark master",
            True,
            f"{master} accepts connections; its status at {ui}/json/ cannot be read, so a cluster without free "
            "cores shows only when driver.startup_timeout_s passes (set driver.master_ui to its web UI)",
        )
    return Check("spark master", True, f"{master} is {status.get('status', 'up')}: {describe(status)}")


def _driver(config: Config, environ: Mapping[str, str]) -> Check:
    import anyio

    from spark_mcp.app import App

    async def probe() -> str:
        async with App.running(config, environ=environ) as app:
            principal = app.principal("doctor")
            session = await app.sessions.create(principal.id, profile="default", max_sessions=1)
            return f"driver {session.driver.id} started and answered (Spark {session.driver.spark_version})"

    try:
        return Check("driver", True, anyio.run(probe))
    except SparkMcpError as exc:
        return Check("driver", False, str(exc), "see the driver log quoted above")
