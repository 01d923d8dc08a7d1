"""Configuration: file, then environment, then flags; bad input named by file, key and reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from spark_mcp.config import bundled_policies, load_config
from spark_mcp.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "spark-mcp.toml"
    path.write_text(text)
    return path


def test_defaults_need_no_file(tmp_path: Path) -> None:
    config = load_config(None, environ={"HOME": str(tmp_path)})
    assert config.home == (tmp_path / ".local" / "share" / "spark-mcp").resolve()
    assert config.driver.cores == 2 and config.driver.catalog == "in-memory"
    assert config.policies == (bundled_policies(),)
    assert config.audit_path == config.home / "audit" / "audit.jsonl"


def test_datasets_in_the_documented_shape_are_accepted(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[[datasets]]
name = "tpch.lineitem"
path = "/data/tpch/lineitem.parquet"
format = "parquet"

[[datasets]]
name = "Sales.Orders"
path = "data/orders.csv"
format = "csv"
options = { header = "true" }
""",
    )
    config = load_config(path, environ={})
    first, second = config.datasets
    assert (first.name, first.format, first.namespace) == ("tpch.lineitem", "parquet", "tpch")
    assert second.name == "sales.orders"
    assert second.path == str(tmp_path / "data" / "orders.csv")  # relative to the config file
    assert second.options == {"header": "true"}


@pytest.mark.parametrize(
    ("text", "key", "reason"),
    [
        ('[[datasets]]\nname = "lineitem"\npath = "/x"', "datasets[0].name", "namespace.table"),
        ('[[datasets]]\nname = "a.b"\npath = "/x"\nformat = "xlsx"', "datasets[0].format", "parquet"),
        ('[[datasets]]\nname = "a.b"', "datasets[0].path", "Field required"),
        ('[[datasets]]\nname = "a.b"\npath = "/x"\n[[datasets]]\nname = "a.b"\npath = "/y"', "datasets", "twice"),
        ('[driver]\nmemory = "lots"', "driver.memory", "512m"),
        ("[driver]\ncores = 0", "driver.cores", "greater than or equal to 1"),
        (
            '[driver]\nspark_conf = { "spark.sql.variable.substitute" = "true" }',
            "driver.spark_conf",
            "managed by spark-mcp",
        ),
        ('[driver]\nspark_conf = { "spark.connect.authenticate.token" = "x" }', "driver.spark_conf", "managed"),
        ("[limits]\nmax_rows = 0", "limits.max_rows", "greater than or equal to 1"),
        ("[limits]\ndefault_max_rows = 5000\nmax_rows = 100", "limits", "must not exceed"),
        ("[nonsense]\nx = 1", "nonsense", "Extra inputs are not permitted"),
        ('[server]\ntransport = "carrier-pigeon"', "server.transport", "stdio"),
        ('[server]\nevent_loop = "trio"', "server.event_loop", "uvloop"),
    ],
)
def test_a_bad_config_names_the_file_the_key_and_the_reason(tmp_path: Path, text: str, key: str, reason: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as error:
        load_config(path, environ={})
    message = str(error.value)
    assert str(path) in message and key in message and reason in message


def test_a_file_that_is_not_toml_is_rejected_with_its_name(tmp_path: Path) -> None:
    path = write(tmp_path, "this is = = not toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(path, environ={})


def test_a_missing_config_file_is_reported(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.toml", environ={})


def test_environment_overrides_the_file_and_flags_override_the_environment(tmp_path: Path) -> None:
    path = write(tmp_path, '[driver]\nmemory = "2g"\ncores = 3\n')
    environ = {
        "SPARK_MCP_DRIVER__MEMORY": "3g",
        "SPARK_MCP_USER": "alice",
        "SPARK_MCP_HOME": str(tmp_path / "state"),
        "SPARK_MCP_LIMITS__MAX_ROWS": "500",
    }
    config = load_config(path, environ=environ, overrides={"user": "bob"})
    assert config.driver.memory == "3g" and config.driver.cores == 3
    assert config.limits.max_rows == 500
    assert config.home == (tmp_path / "state").resolve()
    assert config.user == "bob"


def test_the_config_file_can_come_from_the_environment(tmp_path: Path) -> None:
    path = write(tmp_path, "[driver]\ncores = 4\n")
    config = load_config(None, environ={"SPARK_MCP_CONFIG": str(path)})
    assert config.driver.cores == 4


def test_a_bad_environment_value_names_the_setting(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as error:
        load_config(None, environ={"SPARK_MCP_DRIVER__CORES": "many", "HOME": str(tmp_path)})
    assert "driver.cores" in str(error.value)


def test_policies_can_be_listed_in_the_environment(tmp_path: Path) -> None:
    config = load_config(None, environ={"SPARK_MCP_POLICIES": f"{tmp_path}/a:{tmp_path}/b", "HOME": str(tmp_path)})
    assert config.policies == ((tmp_path / "a").resolve(), (tmp_path / "b").resolve())
