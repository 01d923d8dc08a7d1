"""Configuration: ``spark-mcp.toml``, then ``SPARK_MCP_*`` environment, then CLI flags.

Every layer is validated by the same frozen pydantic models; a bad value is rejected at
start with where it came from (file or variable), the key, and the reason. The
environment is passed in, never read from module globals, so tests never patch
``os.environ``.

Environment variables:

- ``SPARK_MCP_CONFIG``: the config file (default ``./spark-mcp.toml`` when present).
- ``SPARK_MCP_HOME``: state directory (drivers, logs, results, audit).
- ``SPARK_MCP_USER``: who the stdio caller is (default: the OS user).
- ``SPARK_MCP_POLICIES``: policy files or directories, ``:``-separated.
- ``SPARK_MCP_LOG_LEVEL``: ``debug``, ``info``, ``warning`` or ``error``.
- ``SPARK_MCP_<SECTION>__<KEY>``: any other key, e.g. ``SPARK_MCP_DRIVER__MEMORY=2g``.
"""

from __future__ import annotations

import os
import re
import sys
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from spark_mcp.errors import ConfigError

_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_DATASET_NAME = re.compile(rf"^{_IDENT}\.{_IDENT}$")
_MEMORY = re.compile(r"^[1-9][0-9]*[kmgt]?$", re.IGNORECASE)

# Spark settings a config may not override: they carry spark-mcp's security invariants.
RESERVED_SPARK_CONF = frozenset(
    {
        "spark.connect.grpc.binding.address",
        "spark.driver.bindAddress",
        "spark.driver.host",
        "spark.connect.grpc.binding.port",
        "spark.connect.authenticate.token",
        "spark.sql.variable.substitute",
        "spark.sql.runSQLOnFiles",
        "spark.sql.debug.maxToStringFields",
        "spark.master",
        "spark.driver.memory",
        "spark.sql.warehouse.dir",
        "spark.submit.deployMode",
        "spark.mcp.driver.id",
    }
)


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class DatasetConfig(_Model):
    """A dataset every driver registers as an external table when it starts."""

    name: str = Field(description="namespace.table")
    path: str = Field(description="file or directory (or URI) holding the data")
    format: Literal["parquet", "csv", "json", "orc"] = "parquet"
    options: dict[str, str] = Field(default_factory=dict, description="reader options, e.g. header")
    comment: str | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _DATASET_NAME.fullmatch(value):
            raise ValueError("must be namespace.table, each part letters, digits and '_'")
        return value.lower()

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        if "'" in value or "\n" in value:
            raise ValueError("must not contain quotes or newlines")
        return value

    @field_validator("options")
    @classmethod
    def _options(cls, value: dict[str, str]) -> dict[str, str]:
        for key, item in value.items():
            if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_.]*", key) or "'" in item:
                raise ValueError(f"option {key!r} must be a plain name with an unquoted value")
        return value

    @property
    def namespace(self) -> str:
        return self.name.split(".", 1)[0]

    @property
    def local_path(self) -> Path | None:
        """The path on this machine, or None for a remote URI (s3a://, hdfs://...)."""
        if "://" in self.path and not self.path.startswith("file:"):
            return None
        return Path(self.path.removeprefix("file://").removeprefix("file:"))


class DriverConfig(_Model):
    """How drivers are started."""

    backend: Literal["local"] = "local"
    catalog: Literal["in-memory", "hive"] = Field(
        default="in-memory",
        description="in-memory: tables created by users live as long as their driver (fast start); "
        "hive: a persistent Derby metastore and warehouse per user (about 10 s slower first DDL)",
    )
    cores: int = Field(default=2, ge=1, le=256, description="local[N] worker threads")
    memory: str = Field(default="1g", description="driver JVM heap, e.g. 1g, 512m")
    startup_timeout_s: float = Field(default=120, gt=0, le=1800)
    stop_timeout_s: float = Field(default=15, gt=0, le=300)
    java_home: str | None = None
    spark_conf: dict[str, str] = Field(default_factory=dict, description="extra Spark settings")

    @field_validator("memory")
    @classmethod
    def _memory(cls, value: str) -> str:
        if not _MEMORY.fullmatch(value):
            raise ValueError("must be a size such as 512m or 2g")
        return value.lower()

    @field_validator("spark_conf")
    @classmethod
    def _spark_conf(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if key in RESERVED_SPARK_CONF or key.startswith("spark.connect.authenticate"):
                raise ValueError(f"{key} is managed by spark-mcp and cannot be set")
            if not re.fullmatch(r"spark\.[A-Za-z0-9_.\-]+", key):
                raise ValueError(f"{key!r} is not a Spark setting (spark.*)")
        return value


class LimitsConfig(_Model):
    """Server-wide limits; a role may lower (never raise) rows, timeouts and sessions."""

    default_max_rows: int = Field(default=50, ge=1)
    max_rows: int = Field(default=1000, ge=1, le=100_000, description="hard cap on rows in one reply")
    max_chars: int = Field(default=16_000, ge=500, le=1_000_000, description="cap on a reply's text")
    query_timeout_s: float = Field(default=300, gt=0)
    default_wait_s: float = Field(default=30, ge=0, le=3600)
    max_sessions: int = Field(default=8, ge=1)
    session_idle_timeout_s: float = Field(default=3600, gt=0)
    max_concurrent_jobs: int = Field(default=16, ge=1, le=256)

    @model_validator(mode="after")
    def _coherent(self) -> LimitsConfig:
        if self.default_max_rows > self.max_rows:
            raise ValueError("default_max_rows must not exceed max_rows")
        return self


class ResultsConfig(_Model):
    """The on-disk result store."""

    max_rows: int = Field(default=1_000_000, ge=1, description="rows kept per result")
    max_bytes: int = Field(default=256 * 1024 * 1024, ge=1024, description="bytes kept per result")
    ttl_s: float = Field(default=24 * 3600, gt=0, description="how long a result is kept")
    disk_budget_bytes: int = Field(default=2 * 1024**3, ge=1024, description="all results together")
    max_jobs_kept: int = Field(default=200, ge=1, description="finished jobs remembered per principal")


class AuditConfig(_Model):
    path: Path | None = Field(default=None, description="default: <home>/audit/audit.jsonl")


class ServerConfig(_Model):
    transport: Literal["stdio"] = "stdio"
    log_level: Literal["debug", "info", "warning", "error"] = "info"


class Config(_Model):
    """The whole configuration, after every layer has been applied."""

    home: Path
    user: str | None = None
    policies: tuple[Path, ...] = ()
    server: ServerConfig = ServerConfig()
    driver: DriverConfig = DriverConfig()
    limits: LimitsConfig = LimitsConfig()
    results: ResultsConfig = ResultsConfig()
    audit: AuditConfig = AuditConfig()
    datasets: tuple[DatasetConfig, ...] = ()
    source: Path | None = Field(default=None, description="the file this configuration was read from")

    @field_validator("datasets")
    @classmethod
    def _unique_datasets(cls, value: tuple[DatasetConfig, ...]) -> tuple[DatasetConfig, ...]:
        seen: set[str] = set()
        for dataset in value:
            if dataset.name in seen:
                raise ValueError(f"dataset {dataset.name} is declared twice")
            seen.add(dataset.name)
        return value

    @property
    def audit_path(self) -> Path:
        return self.audit.path or self.home / "audit" / "audit.jsonl"

    def missing_datasets(self) -> list[str]:
        """One line per dataset whose local path does not exist (remote ones are not checked)."""
        where = str(self.source) if self.source else "configuration"
        return [
            f"{where}: datasets[{index}].path: {dataset.local_path} does not exist (dataset {dataset.name})"
            for index, dataset in enumerate(self.datasets)
            if dataset.local_path is not None and not dataset.local_path.exists()
        ]


def default_home(environ: Mapping[str, str]) -> Path:
    """A per-user data directory."""
    if sys.platform == "darwin":
        return Path(environ.get("HOME", "~")).expanduser() / "Library" / "Application Support" / "spark-mcp"
    base = environ.get("XDG_DATA_HOME") or str(Path(environ.get("HOME", "~")).expanduser() / ".local" / "share")
    return Path(base) / "spark-mcp"


def bundled_policies() -> Path:
    """The policy directory shipped with spark-mcp: the checkout's, else the wheel's copy."""
    here = Path(__file__).resolve().parent
    checkout = here.parents[1] / "policies"
    if checkout.is_dir() and (here.parents[1] / "pyproject.toml").is_file():
        return checkout
    return here / "_bundled" / "policies"


_NAMED_ENV = {
    "SPARK_MCP_HOME": ("home",),
    "SPARK_MCP_USER": ("user",),
    "SPARK_MCP_LOG_LEVEL": ("server", "log_level"),
}


def _env_layer(environ: Mapping[str, str]) -> dict[str, Any]:
    layer: dict[str, Any] = {}
    for name, value in environ.items():
        if not name.startswith("SPARK_MCP_") or name == "SPARK_MCP_CONFIG":
            continue
        if name in _NAMED_ENV:
            path: tuple[str, ...] = _NAMED_ENV[name]
            parsed: Any = value
        elif name == "SPARK_MCP_POLICIES":
            path, parsed = ("policies",), [p for p in value.split(os.pathsep) if p]
        elif "__" in name:
            path = tuple(part.lower() for part in name[len("SPARK_MCP_") :].split("__"))
            parsed = _parse_scalar(value)
        else:
            continue
        _set(layer, path, parsed, source=name)
    return layer


def _parse_scalar(value: str) -> Any:
    """Environment values are TOML scalars when they parse as one, else plain strings."""
    try:
        return tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        return value


def _set(layer: dict[str, Any], path: tuple[str, ...], value: Any, *, source: str) -> None:
    node = layer
    for key in path[:-1]:
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{source}: {'.'.join(path)} conflicts with another setting")
        node = child
    node[path[-1]] = value


def _merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _describe(error: ValidationError, source: str) -> str:
    lines = []
    for item in error.errors():
        key = ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in item["loc"]).replace(".[", "[")
        lines.append(f"{source}: {key or '(top level)'}: {item['msg']}")
    return "invalid configuration:\n  " + "\n  ".join(lines)


def _read_file(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None


def load_config(
    path: Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """Load and validate the configuration: file, then environment, then ``overrides`` (flags)."""
    env = dict(os.environ if environ is None else environ)
    if path is None and env.get("SPARK_MCP_CONFIG"):
        path = Path(env["SPARK_MCP_CONFIG"])
    if path is None and Path("spark-mcp.toml").is_file():
        path = Path("spark-mcp.toml")

    file_layer = _read_file(path) if path is not None else {}
    source = str(path) if path is not None else "configuration"
    if path is not None:
        # Relative paths in a file are relative to that file, not to the working directory.
        file_layer = _anchor_paths(file_layer, path.resolve().parent)

    try:
        env_layer = _env_layer(env)
    except ConfigError:
        raise
    data = _merge(_merge(file_layer, env_layer), dict(overrides or {}))
    data.setdefault("home", str(default_home(env)))
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, source)) from None
    home = config.home.expanduser().resolve()
    policies = tuple(p.expanduser().resolve() for p in config.policies) or (bundled_policies(),)
    config_file = path.resolve() if path is not None else None
    return config.model_copy(update={"home": home, "policies": policies, "source": config_file})


def _anchor_paths(layer: dict[str, Any], base: Path) -> dict[str, Any]:
    anchored = dict(layer)

    def anchor(value: Any) -> Any:
        if isinstance(value, str) and "://" not in value and not Path(value).expanduser().is_absolute():
            return str(base / value)
        return value

    if "home" in anchored:
        anchored["home"] = anchor(anchored["home"])
    if isinstance(anchored.get("policies"), list):
        anchored["policies"] = [anchor(p) for p in anchored["policies"]]
    if isinstance(anchored.get("datasets"), list):
        anchored["datasets"] = [
            {**d, "path": anchor(d["path"])} if isinstance(d, dict) and "path" in d else d for d in anchored["datasets"]
        ]
    audit = anchored.get("audit")
    if isinstance(audit, dict) and "path" in audit:
        anchored["audit"] = {**audit, "path": anchor(audit["path"])}
    return anchored
