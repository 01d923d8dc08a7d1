"""Profiles: who may use which, what they resolve to, and how their credentials reach one driver only."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import pytest

from spark_mcp.app import preflight
from spark_mcp.config import Config, load_config
from spark_mcp.drivers.credentials import secret_values, stage
from spark_mcp.drivers.profiles import (
    SPARK_DEFAULTS,
    check_credential_files,
    driver_memory_budget,
    machine_memory_bytes,
    resolve_profiles,
)
from spark_mcp.errors import ConfigError, DriverStartError
from spark_mcp.identity import Principal
from spark_mcp.policy import policy_from_toml
from spark_mcp.policy.profiles import allowed_profiles, decide_profile, unknown_profiles
from tests.helpers import TESTS

POLICY = policy_from_toml(
    """
[roles.analyst]
actions = ["session.create"]
profiles = ["small", "large"]

[roles.etl]
actions = ["session.create"]
profiles = ["large", "kerb"]

[roles.legacy]
actions = ["session.create"]

[roles.locked]
actions = ["session.create"]
profiles = []

[users]
ann = ["analyst"]
eve = ["etl", "analyst"]
leo = ["legacy"]
lok = ["locked"]
two = ["locked", "legacy"]
"""
)


def member(user: str) -> Principal:
    """A principal with the roles the policy gives it, as the server resolves it."""
    return Principal(user, roles=POLICY.roles_for(user))


DECISIONS = [
    # (principal, requested, allowed, profile, role, rule)
    ("ann", None, True, "small", "analyst", "roles.analyst.profiles[0]"),
    ("ann", "large", True, "large", "analyst", "roles.analyst.profiles[1]"),
    ("ann", "kerb", False, None, None, "roles.analyst.profiles"),
    ("eve", None, True, "large", "etl", "roles.etl.profiles[0]"),
    ("eve", "small", True, "small", "analyst", "roles.analyst.profiles[0]"),
    ("eve", "default", False, None, None, "roles.etl.profiles, roles.analyst.profiles"),
    ("leo", None, True, "default", "legacy", "roles.legacy (no profiles listed)"),
    ("leo", "small", False, None, None, "default-deny"),
    ("lok", None, False, None, None, "roles.locked.profiles"),
    ("two", None, True, "default", "legacy", "roles.legacy (no profiles listed)"),
    ("nobody", None, False, None, None, "default-deny"),
]


@pytest.mark.parametrize(("user", "requested", "allowed", "profile", "role", "rule"), DECISIONS)
def test_which_profile_a_principal_gets_and_the_rule_that_says_so(
    user: str, requested: str | None, allowed: bool, profile: str | None, role: str | None, rule: str
) -> None:
    decision = decide_profile(POLICY, member(user), requested)
    assert (decision.allowed, decision.profile, decision.role, decision.rule) == (allowed, profile, role, rule)
    if not allowed and requested:
        assert repr(requested) in decision.reason


def test_a_principals_profiles_are_the_union_of_its_roles_default_first() -> None:
    assert [p for p, _, _ in allowed_profiles(POLICY, member("eve"))] == ["large", "kerb", "small"]


def test_a_role_naming_a_profile_the_config_lacks_is_reported() -> None:
    problems = unknown_profiles(POLICY, ["default", "small", "large"])
    assert problems == [
        "<string>: roles.etl.profiles names 'kerb', which is not a profile in the configuration "
        "(profiles: default, large, small)"
    ]


def config_with(home: Path, **values: Any) -> Config:
    return load_config(None, environ={}, overrides={"home": str(home), **values})


def test_profiles_inherit_from_driver_and_default_is_the_driver_section(tmp_path: Path) -> None:
    config = config_with(
        tmp_path,
        driver={"cores": 1, "memory": "768m", "spark_conf": {"spark.sql.shuffle.partitions": "8"}},
        profiles={"large": {"memory": "4g", "spark_conf": {"spark.sql.shuffle.partitions": "64"}}},
    )
    profiles = resolve_profiles(config)
    assert list(profiles) == ["default", "large"]
    assert (profiles["default"].cores, profiles["default"].memory) == (1, "768m")
    assert (profiles["large"].cores, profiles["large"].memory) == (1, "4g")
    assert profiles["large"].spark_conf == {**SPARK_DEFAULTS, "spark.sql.shuffle.partitions": "64"}
    assert profiles["large"].memory_bytes == 4 * 1024**3 + int(4 * 1024**3 * 0.1)
    assert profiles["default"].memory_bytes == 768 * 1024**2 + 384 * 1024**2


@pytest.mark.parametrize(
    ("driver_conf", "profile_conf", "expected"),
    [
        ({}, {}, "100000"),  # spark-mcp's default: fewer, larger result chunks
        ({"spark.sql.execution.arrow.maxRecordsPerBatch": "10000"}, {}, "10000"),  # [driver] wins
        ({}, {"spark.sql.execution.arrow.maxRecordsPerBatch": "5000"}, "5000"),  # the profile wins
        (
            {"spark.sql.execution.arrow.maxRecordsPerBatch": "10000"},
            {"spark.sql.execution.arrow.maxRecordsPerBatch": "5000"},
            "5000",
        ),
    ],
)
def test_spark_defaults_give_way_to_config(
    tmp_path: Path, driver_conf: dict[str, str], profile_conf: dict[str, str], expected: str
) -> None:
    config = config_with(tmp_path, driver={"spark_conf": driver_conf}, profiles={"p": {"spark_conf": profile_conf}})
    assert resolve_profiles(config)["p"].spark_conf["spark.sql.execution.arrow.maxRecordsPerBatch"] == expected


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"pool": {"size": 1}, "driver": {"catalog": "hive"}}, "pool.size > 0 needs driver.catalog = in-memory"),
        ({"driver": {"share": "session", "catalog": "hive"}}, "Derby metastore"),
        ({"pool": {"size": 1, "profiles": ["nope"]}}, "pool.profiles names ['nope']"),
        ({"profiles": {"Big": {}}}, "profile name 'Big'"),
        ({"driver": {"share": "everyone"}}, "driver.share"),
        ({"driver": {"lifetime": "forever"}}, "driver.lifetime"),
        ({"quotas": {"max_driver_memory": "lots"}}, "quotas.max_driver_memory"),
        ({"profiles": {"p": {"credentials": {"files": ["relative.json"]}}}}, "must be an absolute path"),
        ({"profiles": {"p": {"credentials": {"kerberos_principal": "svc@X"}}}}, "go together"),
        ({"profiles": {"p": {"credentials": {"secret_env": {"LD_PRELOAD": "/x"}}}}}, "LD_PRELOAD may not be set"),
    ],
)
def test_fleet_settings_that_cannot_work_are_refused_at_load(
    tmp_path: Path, values: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match="invalid configuration") as error:
        config_with(tmp_path, **values)
    assert message in str(error.value)


def test_a_memory_quota_above_the_machines_memory_is_refused(tmp_path: Path) -> None:
    machine = machine_memory_bytes()
    assert machine is not None
    too_much = f"{machine // 1024**3 + 64}g"
    with pytest.raises(ConfigError, match=r"quotas.max_driver_memory = .* is more than this machine's memory"):
        driver_memory_budget(config_with(tmp_path, quotas={"max_driver_memory": too_much}))
    assert driver_memory_budget(config_with(tmp_path)) == int(machine * 0.8)


def private_file(path: Path, content: str | bytes, mode: int = 0o600) -> Path:
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    path.chmod(mode)
    return path


def test_credential_files_must_exist_and_be_private(tmp_path: Path) -> None:
    loose = private_file(tmp_path / "loose.json", "{}", mode=0o644)
    config = config_with(tmp_path, profiles={"p": {"credentials": {"files": [str(loose), str(tmp_path / "gone")]}}})
    with pytest.raises(ConfigError) as error:
        check_credential_files(config)
    assert f"profiles.p.credentials.files[0]: {loose} can be read by other users (mode 644): chmod 600" in str(
        error.value
    )
    assert "profiles.p.credentials.files[1]" in str(error.value)


KEY_FILE = {
    "type": "service_account",
    "client_email": "svc@project.iam.example.com",
    "private_key_id": "0123456789abcdef0123456789abcdef",
    "private_key": (
        "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n"
        "BKcwggSjAgEAAoIBAQC7\n-----END PRIVATE KEY-----\n"
    ),
}


def test_credentials_are_copied_privately_into_the_drivers_folder_and_never_in_argv(tmp_path: Path) -> None:
    key = private_file(tmp_path / "gcs.json", json.dumps(KEY_FILE))
    secret = private_file(tmp_path / "aws_secret", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n")
    config = config_with(
        tmp_path / "home",
        profiles={
            "cloud": {
                "env": {"GOOGLE_APPLICATION_CREDENTIALS": "{credentials}/gcs.json", "AWS_REGION": "eu-west-1"},
                "credentials": {"files": [str(key)], "secret_env": {"AWS_SECRET_ACCESS_KEY": str(secret)}},
            }
        },
    )
    check_credential_files(config)
    profile = resolve_profiles(config)["cloud"]
    workdir = tmp_path / "driver"
    workdir.mkdir(mode=0o700)
    staged = stage(profile, workdir)
    assert staged.folder == workdir / "credentials"
    assert stat.S_IMODE(staged.folder.stat().st_mode) == 0o700
    copy = staged.folder / "gcs.json"
    assert stat.S_IMODE(copy.stat().st_mode) == 0o600 and json.loads(copy.read_text()) == KEY_FILE
    assert staged.env == {
        "GOOGLE_APPLICATION_CREDENTIALS": str(copy),
        "AWS_REGION": "eu-west-1",
        "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    }


def test_secret_values_cover_secret_env_and_key_material_but_not_plain_fields(tmp_path: Path) -> None:
    key = private_file(tmp_path / "gcs.json", json.dumps(KEY_FILE))
    pem = private_file(tmp_path / "client.pem", "-----BEGIN KEY-----\nAAAABBBBCCCCDDDD\n-----END KEY-----\n")
    secret = private_file(tmp_path / "aws_secret", "wJalrXUtnFEMI/K7MDENG\n")
    config = config_with(
        tmp_path,
        profiles={
            "p": {"credentials": {"files": [str(key), str(pem)], "secret_env": {"AWS_SECRET_ACCESS_KEY": str(secret)}}}
        },
    )
    values = secret_values(resolve_profiles(config)["p"])
    assert "wJalrXUtnFEMI/K7MDENG" in values
    assert "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC" in values  # one line of the private key
    assert KEY_FILE["private_key_id"] in values
    assert "AAAABBBBCCCCDDDD" in values
    assert KEY_FILE["client_email"] not in values and "service_account" not in values


def test_a_credential_file_gone_at_driver_start_is_a_clear_start_error(tmp_path: Path) -> None:
    key = private_file(tmp_path / "gcs.json", "{}")
    config = config_with(tmp_path, profiles={"p": {"credentials": {"files": [str(key)]}}})
    key.unlink()
    with pytest.raises(DriverStartError, match=r"profile p: a credential file could not be read"):
        stage(resolve_profiles(config)["p"], tmp_path)


def test_preflight_refuses_a_policy_that_names_an_unknown_profile(tmp_path: Path) -> None:
    policy = tmp_path / "p.toml"
    policy.write_text('[roles.r]\nactions = ["session.create"]\nprofiles = ["gpu"]\n[users]\ndefault = ["r"]\n')
    with pytest.raises(ConfigError, match=r"roles.r.profiles names 'gpu'"):
        preflight(config_with(tmp_path / "home", policies=[str(policy)]))
    assert preflight(config_with(tmp_path / "home2", policies=[str(TESTS / "policies")])).profiles
