"""Spark settings and environment from config: an allowlist, and spark-mcp's safety settings last in argv.

Every attempt to loosen a setting spark-mcp makes for safety is refused, from ``[driver]``
and from a profile alike; what may be set is an explicit list.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from spark_mcp.config import MANAGED_KEYS, Config, load_config
from spark_mcp.config.driver_env import env_problem
from spark_mcp.config.spark_conf import ALLOWED_KEYS, CONNECT_TUNING_KEYS, conf_problem
from spark_mcp.drivers.command_line import driver_argv, driver_env, managed_settings
from spark_mcp.drivers.credentials import StagedCredentials
from spark_mcp.drivers.local import DriverSpec
from spark_mcp.drivers.profiles import resolve_profiles
from spark_mcp.errors import ConfigError


def config_with(**values: Any) -> Config:
    return load_config(None, environ={}, overrides={"home": "/tmp/spark-mcp-conf-test", **values})


def refused(conf: dict[str, str]) -> list[str]:
    """The errors for ``conf`` set in [driver] and in a profile (both must refuse)."""
    errors = []
    for values in ({"driver": {"spark_conf": conf}}, {"profiles": {"p": {"spark_conf": conf}}}):
        with pytest.raises(ConfigError) as caught:
            config_with(**values)
        errors.append(str(caught.value))
    return errors


@pytest.mark.parametrize("key", sorted(MANAGED_KEYS))
def test_every_safety_setting_is_refused_from_driver_and_from_profiles(key: str) -> None:
    for error in refused({key: "anything"}):
        assert key in error and "managed by spark-mcp" in error


LOOSENING = [
    # (key, value, what the attempt would do)
    ("spark.ui.enabled", "true", "a web UI on the host's address"),
    ("spark.driver.extraJavaOptions", "-javaagent:/tmp/evil.jar", "code in the driver JVM"),
    ("spark.executor.extraJavaOptions", "-javaagent:/tmp/evil.jar", "code in executors"),
    ("spark.driver.extraClassPath", "/tmp/evil", "classes on the driver"),
    ("spark.sql.catalogImplementation", "hive", "another catalog"),
    ("spark.local.dir", "/tmp", "scratch files shared with others"),
    ("spark.sql.warehouse.dir", "/", "tables written anywhere"),
    ("spark.sql.extensions", "com.evil.Ext", "parser and analyzer rules"),
    ("spark.plugins", "com.evil.Plugin", "driver plugins"),
    ("spark.jars", "/tmp/evil.jar", "jars"),
    ("spark.jars.packages", "com.evil:evil:1.0", "downloaded jars"),
    ("spark.files", "/etc/shadow", "files shipped to executors"),
    ("spark.connect.grpc.binding.address", "0.0.0.0", "Spark Connect on every interface"),
    ("spark.connect.grpc.interceptor.classes", "com.evil.I", "code in the Connect server"),
    ("spark.connect.extensions.relation.classes", "com.evil.R", "Connect plugins"),
    ("spark.connect.authenticate.token", "x", "a known token"),
    ("spark.driver.bindAddress", "0.0.0.0", "RPC on every interface"),
    ("spark.blockManager.port", "7000", "a fixed port"),
    ("spark.sql.variable.substitute", "true", "${env:...} in SQL"),
    ("spark.sql.runSQLOnFiles", "true", "format.`/path` reads"),
    ("spark.sql.debug.maxToStringFields", "25", "columns hidden from plan inspection"),
    ("spark.sql.legacy.allowUntypedScalaUDF", "true", "legacy behaviour"),
    ("spark.sql.scripting.enabled", "true", "SQL scripts"),
    ("spark.sql.hive.metastore.jars", "/tmp/jars", "metastore jars"),
    ("spark.hadoop.javax.jdo.option.ConnectionURL", "jdbc:derby:/tmp/x", "another metastore"),
    ("spark.eventLog.enabled", "true", "event logs on disk"),
    ("spark.redaction.regex", "nothing", "secrets in Spark's own output"),
    ("spark.master", "spark://elsewhere:7077", "another cluster"),
    ("spark.submit.deployMode", "cluster", "another deploy mode"),
    ("spark.driver.memory", "100g", "around the memory quota"),
    ("spark.kerberos.keytab", "/etc/krb5.keytab", "another identity"),
    ("spark.mcp.driver.id", "drv-other", "another driver's marker"),
    ("spark.hadoop.fs.s3a.impl", "com.evil.FS", "a file system class"),
    ("spark.hadoop.fs.s3a.secret.key", "AKIA...", "a secret in argv"),
    ("spark.hadoop.fs.s3a.session.token", "tok", "a secret in argv"),
    ("spark.hadoop.fs.azure.account.key.x.blob.core.windows.net", "k", "a secret in argv"),
    (" spark.ui.enabled", "true", "a key with a leading space"),
    ("spark.ui.enabled ", "true", "a key with a trailing space"),
    ("Spark.ui.enabled", "true", "a key in another case"),
    ("spark.ui..enabled", "true", "an empty key part"),
    ("spark.ui.еnabled", "true", "a Cyrillic letter"),
    ("spark.sql.shuffle.partitions", "4\n--conf spark.ui.enabled=true", "a value with a newline"),
]


@pytest.mark.parametrize(("key", "value", "why"), LOOSENING, ids=[f"{k!r}" for k, _, _ in LOOSENING])
def test_settings_that_would_loosen_a_driver_are_refused(key: str, value: str, why: str) -> None:
    assert conf_problem(key, value) is not None, f"{key} would allow {why}"
    refused({key: value})


@pytest.mark.parametrize("key", sorted(ALLOWED_KEYS))
def test_tuning_settings_on_the_list_are_accepted(key: str) -> None:
    assert conf_problem(key, "4") is None
    assert config_with(profiles={"p": {"spark_conf": {key: "4"}}}).profiles["p"].spark_conf == {key: "4"}


@pytest.mark.parametrize("key", sorted(CONNECT_TUNING_KEYS))
def test_only_the_reattach_stream_bounds_of_spark_connect_are_accepted(key: str) -> None:
    assert config_with(driver={"spark_conf": {key: "1m"}}).driver.spark_conf == {key: "1m"}
    assert any("control characters" in e for e in refused({key: "1m\n--conf x=y"}))
    for error in refused({key.replace("senderMax", "other"): "1m"}):
        assert "managed by spark-mcp" in error


def test_object_store_connection_settings_are_accepted_but_not_their_secrets() -> None:
    assert conf_problem("spark.hadoop.fs.s3a.endpoint", "http://minio:9000") is None
    assert conf_problem("spark.hadoop.fs.s3a.path.style.access", "true") is None
    problem = conf_problem("spark.hadoop.fs.s3a.access.key", "AKIA")
    assert problem is not None and "credentials" in problem


def test_a_setting_not_on_the_list_is_refused_with_where_the_list_is() -> None:
    problem = conf_problem("spark.some.new.setting", "x")
    assert problem is not None and "spark_conf.py" in problem


def argv_for(config: Config, profile: str = "default") -> list[str]:
    spec = DriverSpec(resolve_profiles(config)[profile])
    return driver_argv(
        config, spec, driver_id="drv-test", port=4040, workdir=Path("/w"), credentials=StagedCredentials()
    )


def conf_pairs(argv: list[str]) -> list[tuple[str, str]]:
    return [tuple(argv[i + 1].split("=", 1)) for i, arg in enumerate(argv) if arg == "--conf"]  # type: ignore[misc]


def test_safety_settings_come_last_in_argv_after_everything_config_adds() -> None:
    config = config_with(
        driver={"spark_conf": {"spark.sql.shuffle.partitions": "8"}},
        profiles={"small": {"memory": "512m", "spark_conf": {"spark.sql.ansi.enabled": "false"}}},
    )
    pairs = conf_pairs(argv_for(config, "small"))
    safety = managed_settings(config, driver_id="drv-test", port=4040, workdir=Path("/w"), metastore_dir=None)
    assert pairs[-len(safety) :] == safety
    assert ("spark.sql.shuffle.partitions", "8") in pairs and ("spark.sql.ansi.enabled", "false") in pairs
    assert {key for key, _ in safety} <= MANAGED_KEYS
    last = dict(pairs)  # spark-submit keeps the last value of a key
    assert last["spark.ui.enabled"] == "false"
    assert last["spark.sql.variable.substitute"] == "false"
    assert last["spark.connect.grpc.binding.address"] == "127.0.0.1"


def test_a_profile_sets_cores_and_memory_and_inherits_the_rest_from_driver() -> None:
    config = config_with(driver={"cores": 1, "memory": "768m"}, profiles={"big": {"memory": "2g"}})
    argv = argv_for(config, "big")
    assert argv[argv.index("--driver-memory") + 1] == "2g"
    assert argv[argv.index("--master") + 1] == "local[1]"
    default = argv_for(config)
    assert default[default.index("--driver-memory") + 1] == "768m"


def test_kerberos_settings_come_from_credentials_and_point_at_the_private_copy(tmp_path: Path) -> None:
    keytab = tmp_path / "svc.keytab"
    keytab.write_bytes(b"\x05\x02binary")
    keytab.chmod(0o600)
    config = config_with(
        profiles={
            "kerb": {"credentials": {"kerberos_principal": "svc/host@EXAMPLE.COM", "kerberos_keytab": str(keytab)}}
        }
    )
    copy = tmp_path / "driver" / "credentials" / "kerberos-svc.keytab"
    spec = DriverSpec(resolve_profiles(config)["kerb"])
    argv = driver_argv(
        config, spec, driver_id="d", port=1, workdir=tmp_path / "driver", credentials=StagedCredentials(keytab=copy)
    )
    pairs = dict(conf_pairs(argv))
    assert pairs["spark.kerberos.principal"] == "svc/host@EXAMPLE.COM"
    assert pairs["spark.kerberos.keytab"] == str(copy)


@pytest.mark.parametrize(
    ("name", "allowed"),
    [
        ("AWS_REGION", True),
        ("GOOGLE_APPLICATION_CREDENTIALS", True),
        ("AZURE_TENANT_ID", True),
        ("HADOOP_CONF_DIR", True),
        ("KRB5_CONFIG", True),
        ("TZ", True),
        ("LC_ALL", True),
        ("JAVA_TOOL_OPTIONS", False),
        ("_JAVA_OPTIONS", False),
        ("JDK_JAVA_OPTIONS", False),
        ("LD_PRELOAD", False),
        ("LD_LIBRARY_PATH", False),
        ("SPARK_CONF_DIR", False),
        ("SPARK_SUBMIT_OPTS", False),
        ("SPARK_CONNECT_AUTHENTICATE_TOKEN", False),
        ("SPARK_HOME", False),
        ("CLASSPATH", False),
        ("PATH", False),
        ("PYTHONPATH", False),
        ("aws_region", False),
    ],
)
def test_driver_environment_is_an_allowlist(name: str, allowed: bool) -> None:
    assert (env_problem(name, "x") is None) is allowed
    if not allowed:
        with pytest.raises(ConfigError):
            config_with(profiles={"p": {"env": {name: "x"}}})


def test_the_token_stays_the_servers_whatever_a_profile_sets() -> None:
    config = config_with()
    staged = StagedCredentials(env={"AWS_REGION": "eu-west-1"})
    env = driver_env(config, {"SPARK_CONNECT_AUTHENTICATE_TOKEN": "stale", "SPARK_MCP_X": "1"}, "tok", staged)
    assert env["SPARK_CONNECT_AUTHENTICATE_TOKEN"] == "tok"
    assert env["AWS_REGION"] == "eu-west-1"
    assert "SPARK_MCP_X" not in env
