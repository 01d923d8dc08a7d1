"""The standalone backend's pure parts: what a driver asks the cluster for, how the master's
status is read, its settings and command line, and what the quotas count.

The cluster itself is in ``test_standalone_cluster.py`` (a real master and workers).
"""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import pytest

from spark_mcp.app import preflight
from spark_mcp.config import Config, load_config
from spark_mcp.drivers.base import Lifetime
from spark_mcp.drivers.credentials import stage
from spark_mcp.drivers.executors import ExecutorAsk, executor_ask, spark_size
from spark_mcp.drivers.files import remove_secrets
from spark_mcp.drivers.local import DriverSpec, LocalBackend
from spark_mcp.drivers.master_status import app_verdict, describe
from spark_mcp.drivers.profiles import (
    check_credential_files,
    driver_memory_budget,
    machine_memory_bytes,
    resolve_profiles,
)
from spark_mcp.drivers.quotas import Admission, FleetUsage, QuotaLimits, admit
from spark_mcp.drivers.standalone import ClusterLog, StandaloneBackend
from spark_mcp.errors import ConfigError, QuotaExceeded
from tests.helpers import TESTS

MIB = 1024**2
GIB = 1024**3
MASTER = "spark://10.0.0.5:7077"


def config_with(tmp_path: Path, **values: Any) -> Config:
    return load_config(
        None, environ={}, overrides={"home": str(tmp_path), "policies": [str(TESTS / "policies")], **values}
    )


def standalone(tmp_path: Path, *, profiles: Any = None, quotas: Any = None, **driver: Any) -> Config:
    extra = {k: v for k, v in (("profiles", profiles), ("quotas", quotas)) if v is not None}
    return config_with(tmp_path, driver={"backend": "standalone", "master": MASTER, **driver}, **extra)


# -- what a driver asks the cluster for ---------------------------------------------------------

ASKS = [
    # (profile spark_conf, profile cores, expected ask, why)
    ({}, 2, ExecutorAsk(2, None, GIB, 2), "nothing set: the profile's cores bound it; each executor >= 1 core"),
    ({"spark.cores.max": "4"}, 2, ExecutorAsk(4, None, GIB, 4), "spark.cores.max wins over the profile's cores"),
    (
        {"spark.cores.max": "4", "spark.executor.cores": "2", "spark.executor.memory": "2g"},
        1,
        ExecutorAsk(4, 2, 2 * GIB, 2),
        "two executors of two cores",
    ),
    (
        {"spark.cores.max": "5", "spark.executor.cores": "2", "spark.executor.memory": "512m"},
        1,
        ExecutorAsk(5, 2, 512 * MIB, 3),
        "a remainder core may make one more (smaller) executor: count rounds up",
    ),
    (
        {"spark.executor.instances": "3", "spark.executor.cores": "2", "spark.executor.memory": "1g"},
        8,
        ExecutorAsk(6, 2, GIB, 3),
        "instances become spark.cores.max = 3 x 2, since the standalone scheduler ignores instances",
    ),
    ({"spark.executor.cores": "1", "spark.executor.memory": "768"}, 1, ExecutorAsk(1, 1, 768 * MIB, 1), "bare = MiB"),
]


@pytest.mark.parametrize(("conf", "cores", "expected", "why"), ASKS)
def test_what_a_standalone_driver_asks_the_cluster_for(
    conf: dict[str, str], cores: int, expected: ExecutorAsk, why: str
) -> None:
    assert executor_ask(conf, cores) == expected, why
    assert expected.settings == [("spark.cores.max", str(expected.cores_max))]


REFUSED_ASKS = [
    ({"spark.executor.instances": "2"}, "spark.executor.instances needs spark.executor.cores"),
    ({"spark.executor.instances": "2", "spark.executor.cores": "1", "spark.cores.max": "2"}, "not both"),
    ({"spark.cores.max": "2", "spark.executor.cores": "4"}, "would never get an executor"),
    ({"spark.cores.max": "0"}, "must be at least 1"),
    ({"spark.cores.max": "two"}, "must be a whole number"),
    ({"spark.executor.memory": "lots"}, "not a memory size"),
]


@pytest.mark.parametrize(("conf", "message"), REFUSED_ASKS)
def test_an_ask_that_cannot_work_is_refused_with_the_fix(conf: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        executor_ask(conf, 2)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("512m", 512 * MIB), ("2g", 2 * GIB), ("2G", 2 * GIB), ("1gb", GIB), ("1024", GIB), ("4096k", 4 * MIB)],
)
def test_spark_memory_strings(text: str, expected: int) -> None:
    assert spark_size(text) == expected


# -- configuration ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("driver", "message"),
    [
        ({"backend": "standalone"}, 'needs driver.master = "spark://host:7077"'),
        ({"backend": "standalone", "master": "local[2]"}, "Spark standalone master URL"),
        ({"backend": "standalone", "master": "spark://host"}, "Spark standalone master URL"),
        ({"backend": "standalone", "master": "spark://host:99999"}, "Spark standalone master URL"),
        ({"backend": "standalone", "master": "spark://a:7077;rm -rf /"}, "Spark standalone master URL"),
        ({"backend": "yarn"}, "driver.backend"),
        ({"master_ui": "file:///etc/passwd"}, "http://host:port"),
        ({"cluster_address": "8.8.8.8"}, "not a loopback or private address"),
        ({"cluster_address": "0.0.0.0"}, "not a loopback or private address"),
        ({"cluster_address": "my-host"}, "must be an IP address"),
    ],
)
def test_standalone_settings_that_cannot_work_are_refused_at_load(
    tmp_path: Path, driver: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match="invalid configuration") as error:
        config_with(tmp_path, driver=driver)
    assert message in str(error.value)


def test_a_profile_may_use_the_standalone_backend_while_the_driver_section_stays_local(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"profile\(s\) \['cluster'\] use the standalone backend"):
        config_with(tmp_path, profiles={"cluster": {"backend": "standalone"}})
    config = config_with(
        tmp_path,
        driver={"master": "spark://[fd00::5]:7077,10.0.0.6:7077", "cluster_address": "10.0.0.9"},
        profiles={"cluster": {"backend": "standalone", "spark_conf": {"spark.executor.memory": "2g"}}},
    )
    profiles = resolve_profiles(config)
    assert (profiles["default"].backend, profiles["cluster"].backend) == ("local", "standalone")
    assert profiles["default"].executors is None
    assert config.driver.master_ui_url == "http://[fd00::5]:8080"  # the first master's web UI, by default


def test_an_unworkable_ask_names_the_profile_at_start(tmp_path: Path) -> None:
    config = standalone(tmp_path, profiles={"wide": {"spark_conf": {"spark.executor.instances": "4"}}})
    with pytest.raises(ConfigError, match=r"profiles.wide.spark_conf: spark.executor.instances needs"):
        resolve_profiles(config)


def test_the_memory_quota_counts_the_executors_and_the_machine_check_only_the_driver(tmp_path: Path) -> None:
    config = standalone(
        tmp_path, memory="1g", cores=4, spark_conf={"spark.executor.cores": "2", "spark.executor.memory": "3g"}
    )
    profile = resolve_profiles(config)["default"]
    assert profile.local_memory_bytes == GIB + 384 * MIB
    assert profile.memory_bytes == GIB + 384 * MIB + 2 * 3 * GIB  # two executors of 3g on the cluster
    limits = QuotaLimits(max_drivers=4, max_drivers_per_user=2, max_driver_memory=16 * GIB, driver_idle_timeout_s=0)
    # 2 GiB free here is plenty for the driver itself, though it counts 7.4 GiB against the quota...
    fits = admit(
        limits,
        FleetUsage(0, 0, 0, 0),
        memory=profile.memory_bytes,
        local_memory=profile.local_memory_bytes,
        available=2 * GIB,
        owner="user ann",
    )
    assert fits == Admission()
    # ...and a third such driver is past the 16 GiB the quota allows.
    with pytest.raises(QuotaExceeded, match=r"quotas\.max_driver_memory: this driver needs 7\.4 GiB"):
        admit(
            limits,
            FleetUsage(2, 2 * profile.memory_bytes, 0, 0),
            memory=profile.memory_bytes,
            local_memory=profile.local_memory_bytes,
            available=2 * GIB,
            owner="user ann",
        )


def test_with_a_cluster_the_memory_quota_may_exceed_this_machine(tmp_path: Path) -> None:
    machine = machine_memory_bytes()
    assert machine is not None
    big = f"{machine // GIB + 64}g"
    on_a_cluster = standalone(tmp_path, quotas={"max_driver_memory": big})
    assert driver_memory_budget(on_a_cluster) == (machine // GIB + 64) * GIB
    with pytest.raises(ConfigError, match="more than this machine's memory"):
        driver_memory_budget(config_with(tmp_path, quotas={"max_driver_memory": big}))


# -- the command line ------------------------------------------------------------------------------


def conf_of(argv: list[str]) -> list[tuple[str, str]]:
    return [tuple(argv[i + 1].split("=", 1)) for i, arg in enumerate(argv) if arg == "--conf"]  # type: ignore[misc]


def test_the_command_line_names_the_master_and_the_ask_and_keeps_the_safety_settings_last(tmp_path: Path) -> None:
    config = standalone(
        tmp_path,
        cluster_address="10.0.0.9",
        spark_conf={"spark.executor.instances": "2", "spark.executor.cores": "1", "spark.sql.shuffle.partitions": "8"},
    )
    profile = resolve_profiles(config)["default"]
    workdir = tmp_path / "drv"
    workdir.mkdir(mode=0o700)
    spec = DriverSpec(profile, Lifetime.SERVER)
    environ = {"SPARK_CONNECT_AUTHENTICATE_TOKEN": "tok-never-in-argv"}
    argv = StandaloneBackend(config, environ).argv(
        spec, driver_id="drv-1", port=15002, workdir=workdir, credentials=stage(profile, workdir)
    )
    assert argv[argv.index("--master") + 1] == MASTER
    conf = conf_of(argv)
    keys = [key for key, _ in conf]
    # The profile's own settings, then the ask, then the managed settings (spark-submit keeps the last of a key).
    assert keys.index("spark.sql.shuffle.partitions") < keys.index("spark.cores.max") < keys.index("spark.ui.enabled")
    assert ("spark.cores.max", "2") in conf and keys[-1] == "spark.mcp.driver.id"
    settings = dict(conf)
    assert settings["spark.driver.host"] == settings["spark.driver.bindAddress"] == "10.0.0.9"
    assert settings["spark.connect.grpc.binding.address"] == "127.0.0.1"  # clients: loopback only, always
    assert settings["spark.ui.enabled"] == "false" and settings["spark.sql.runSQLOnFiles"] == "false"
    assert not any("tok-never-in-argv" in arg for arg in argv)

    local = LocalBackend(config, environ).argv(
        spec, driver_id="drv-1", port=15002, workdir=workdir, credentials=stage(profile, workdir)
    )
    assert local[local.index("--master") + 1] == "local[2]" and "spark.cores.max=2" not in local


# -- the master's status and the driver's log ------------------------------------------------------


def worker(cores: int, free: int, memory: int = 1024, memory_free: int = 1024, state: str = "ALIVE") -> dict[str, Any]:
    return {"state": state, "cores": cores, "coresfree": free, "memory": memory, "memoryfree": memory_free}


def status(apps: list[dict[str, Any]], workers: list[dict[str, Any]], done: list[dict[str, Any]] = ()) -> dict:  # type: ignore[assignment]
    return {"status": "ALIVE", "workers": workers, "activeapps": apps, "completedapps": list(done)}


WAITING = {"id": "app-1", "name": "spark-mcp-drv-1", "state": "WAITING", "cores": 0}
RUNNING = {"id": "app-1", "name": "spark-mcp-drv-1", "state": "RUNNING", "cores": 1}
VERDICTS = [
    # (status, expected verdict (a fragment) or None, why)
    (status([RUNNING], [worker(1, 0)]), None, "cores granted: its executor is starting"),
    (status([], [worker(1, 0)]), None, "not listed yet: keep waiting"),
    (status([WAITING], [worker(1, 0), worker(1, 1)]), None, "a worker has room: the master will place it"),
    (status([WAITING], [worker(1, 0), worker(1, 0)]), "no free cores or memory", "every core taken"),
    (status([WAITING], [worker(2, 2, 1024, 256)]), "no free cores or memory", "cores but not memory"),
    (status([WAITING], [worker(1, 1, state="DEAD")]), "no alive workers", "dead workers do not count"),
    (status([WAITING], []), "no alive workers", "no workers at all"),
    (status([WAITING], [worker(1, 1, 256, 256)]), "no worker of the cluster is big enough", "too big for any"),
    (status([], [worker(1, 1)], [{**RUNNING, "state": "KILLED"}]), "ended application app-1 (state KILLED)", "killed"),
    ({"unexpected": True}, None, "an odd status is no reason to fail: the deadline still holds"),
]


@pytest.mark.parametrize(("state", "expected", "why"), VERDICTS)
def test_why_an_application_gets_no_executor(state: dict[str, Any], expected: str | None, why: str) -> None:
    verdict = app_verdict(state, "app-1", executor_cores=1, executor_memory_mb=512)
    if expected is None:
        assert verdict is None, why
    else:
        assert verdict is not None and expected in verdict, why


def test_the_clusters_room_in_one_line() -> None:
    state = status([], [worker(1, 0, 1024, 512), worker(2, 1, 2048, 2048), worker(4, 4, state="DEAD")])
    assert describe(state) == "2 alive workers, 1 of 3 cores and 2560 of 3072 MiB free"


def test_what_the_drivers_log_says_about_its_cluster() -> None:
    seen = ClusterLog()
    for line in [
        "26/11/27 13:50:13 INFO StandaloneSchedulerBackend: Connected to Spark cluster with app ID app-20261127-0000",
        "26/11/27 13:50:13 INFO StandaloneSchedulerBackend: Granted executor ID app-20261127-0000/0 on hostPort "
        "127.0.0.1:46477 with 1 core(s), 512.0 MiB RAM",
        "26/11/27 13:50:20 INFO StandaloneSchedulerBackend: Executor app-20261127-0000/0 removed: Command exited with "
        "code 1",
    ]:
        seen.feed(line)
    assert (seen.app_id, seen.granted, seen.registered) == ("app-20261127-0000", 1, 0)
    assert seen.last_removed == "Command exited with code 1"
    seen.feed(
        "26/11/27 13:50:24 INFO StandaloneSchedulerBackend$StandaloneDriverEndpoint: Registered executor "
        "NettyRpcEndpointRef(spark-client://Executor) (127.0.0.1:51050) with ID 0, ResourceProfileId 0"
    )
    assert seen.registered == 1


# -- the cluster's secret ------------------------------------------------------------------------


def private(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


def test_the_cluster_secret_reaches_the_driver_in_a_private_file_and_never_argv(tmp_path: Path) -> None:
    secret = "Xq9-cluster_secret.value~42"
    config = standalone(tmp_path / "home", cluster_secret_file=str(private(tmp_path / "secret", secret + "\n")))
    check_credential_files(config)
    profile = resolve_profiles(config)["default"]
    workdir = tmp_path / "drv"
    workdir.mkdir(mode=0o700)
    backend = StandaloneBackend(config, {})
    options = backend.stage_files(workdir)
    properties = workdir / "credentials" / "cluster.properties"
    assert options == ["--properties-file", str(properties)]
    assert properties.read_text() == f"spark.authenticate.secret={secret}\n"
    assert stat.S_IMODE(properties.stat().st_mode) == 0o600
    assert stat.S_IMODE(properties.parent.stat().st_mode) == 0o700
    argv = backend.argv(
        DriverSpec(profile),
        driver_id="drv-1",
        port=15002,
        workdir=workdir,
        credentials=stage(profile, workdir),
        options=options,
    )
    assert not any(secret in arg for arg in argv)
    assert argv[1:3] == ["--properties-file", str(properties)]  # spark-submit's own option, before --class
    settings = dict(conf_of(argv))
    assert settings["spark.authenticate"] == settings["spark.network.crypto.enabled"] == "true"
    # Stopping (or failing) removes the credentials folder with the secret in it.
    remove_secrets(workdir)
    assert not properties.exists()


def test_without_a_secret_there_is_no_authentication_setting_and_no_properties_file(tmp_path: Path) -> None:
    config = standalone(tmp_path / "home")
    profile = resolve_profiles(config)["default"]
    backend = StandaloneBackend(config, {})
    assert backend.stage_files(tmp_path) == []
    argv = backend.argv(
        DriverSpec(profile), driver_id="drv-1", port=15002, workdir=tmp_path, credentials=stage(profile, tmp_path)
    )
    assert "--properties-file" not in argv and "spark.authenticate" not in dict(conf_of(argv))


@pytest.mark.parametrize(
    ("content", "mode", "message"),
    [
        ("short\n", 0o600, "8 to 1024 printable ASCII"),
        ("two words secret\n", 0o600, "without spaces"),
        ("back\\slash-secret\n", 0o600, "without spaces or '\\'"),
        ("good-secret-value\n", 0o644, "can be read by other users (mode 644): chmod 600"),
    ],
)
def test_a_cluster_secret_that_cannot_be_used_safely_stops_the_server_at_start(
    tmp_path: Path, content: str, mode: int, message: str
) -> None:
    config = standalone(tmp_path / "home", cluster_secret_file=str(private(tmp_path / "secret", content, mode)))
    with pytest.raises(ConfigError, match=r"driver\.cluster_secret_file") as error:
        preflight(config)
    assert message in str(error.value)


def test_the_cluster_secret_file_must_be_an_absolute_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="must be an absolute path"):
        standalone(tmp_path, cluster_secret_file="secret")
