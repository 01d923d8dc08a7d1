"""The Sail backend's pure parts: its command line, environment, readiness checks (no driver)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from spark_mcp.config import DatasetConfig, load_config
from spark_mcp.drivers.sail import listener_owned_by, sail_argv, sail_env, spark_profile
from spark_mcp.spark.sail import session_setup


def test_the_listener_check_tells_our_socket_from_anyone_elses() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        assert listener_owned_by(os.getpid(), port) is True
        assert listener_owned_by(1, port) is False
    assert listener_owned_by(os.getpid(), port) is False  # closed: nobody listens


@pytest.mark.parametrize(
    ("client", "profile"),
    [("4.3.0", "4.2.0"), ("4.2.1", "4.2.0"), ("4.1.4", "4.1.0"), ("3.5.1", "3.5.0"), ("x", "4.2.0")],
)
def test_sail_emulates_the_newest_spark_it_knows_for_newer_clients(client: str, profile: str) -> None:
    assert spark_profile(client) == profile


def test_the_command_line_binds_loopback_and_carries_the_driver_marker(tmp_path: Path) -> None:
    argv = sail_argv(driver_id="drv-x", port=4321, workdir=tmp_path, profile="4.2.0")
    assert argv[argv.index("--ip") + 1] == "127.0.0.1"
    assert argv[argv.index("--port") + 1] == "4321"
    assert "spark.mcp.driver.id=drv-x" in argv
    assert argv[argv.index("-C") + 1] == str(tmp_path)


def test_the_environment_is_ours_not_inherited(tmp_path: Path) -> None:
    config = load_config(None, environ={}, overrides={"home": str(tmp_path), "limits": {"session_idle_timeout_s": 100}})
    inherited = {
        "PATH": "/usr/bin",
        "SAIL_MODE": "kubernetes-cluster",  # an operator's Sail settings must not change how drivers run
        "SAIL_CATALOG__LIST": "[]",
        "SPARK_MCP_USER": "mallory",
        "SPARK_CONNECT_AUTHENTICATE_TOKEN": "leaked",
    }
    env = sail_env(config, inherited, workdir=tmp_path)
    assert env["PATH"] == "/usr/bin"
    assert env["SAIL_MODE"] == "local"
    assert 'name="spark_catalog"' in env["SAIL_CATALOG__LIST"]
    assert "SPARK_MCP_USER" not in env and "SPARK_CONNECT_AUTHENTICATE_TOKEN" not in env
    assert int(env["SAIL_SPARK__SESSION_TIMEOUT_SECS"]) > 100  # Sail never drops a session spark-mcp still has
    assert env["TMPDIR"] == str(tmp_path / "tmp")


def test_a_new_sail_session_makes_each_namespace_once_before_its_tables() -> None:
    datasets = [
        DatasetConfig(name="tpch.orders", path="/data/orders.parquet"),
        DatasetConfig(name="tpch.lineitem", path="/data/lineitem.parquet"),
        DatasetConfig(name="hr.people", path="/data/people.csv", format="csv", options={"header": "true"}),
    ]
    assert session_setup(datasets) == (
        "CREATE NAMESPACE IF NOT EXISTS `tpch`",
        "CREATE NAMESPACE IF NOT EXISTS `hr`",
        "CREATE TABLE IF NOT EXISTS `tpch`.`orders` USING parquet LOCATION '/data/orders.parquet'",
        "CREATE TABLE IF NOT EXISTS `tpch`.`lineitem` USING parquet LOCATION '/data/lineitem.parquet'",
        "CREATE TABLE IF NOT EXISTS `hr`.`people` USING csv OPTIONS (`header` 'true') LOCATION '/data/people.csv'",
    )
