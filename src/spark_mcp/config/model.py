"""The configuration's shape: frozen pydantic models, one per section of ``spark-mcp.toml``.

Every layer (file, environment, flags) is validated by these models; ``loading`` merges the
layers and reports a bad value with where it came from.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from spark_mcp.config.driver_env import check_env
from spark_mcp.config.spark_conf import check_spark_conf

_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_DATASET_NAME = re.compile(rf"^{_IDENT}\.{_IDENT}$")
_MEMORY = re.compile(r"^[1-9][0-9]*[kmgt]?$", re.IGNORECASE)
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?"
_HOST = rf"(?:{_LABEL}(?:\.{_LABEL})*|\[[0-9A-Fa-f:.]+\])"  # a DNS name, an IPv4 address, or [IPv6]
_HOST_PORT = rf"{_HOST}:[0-9]{{1,5}}"
_MASTER = re.compile(rf"^spark://({_HOST_PORT})(,{_HOST_PORT})*$")
_MASTER_UI = re.compile(rf"^https?://{_HOST_PORT}/?$")
Backend = Literal["local", "standalone"]


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


def parse_size(text: str) -> int:
    """Bytes in a JVM-style size (``512m``, ``2g``; a bare number is bytes)."""
    if not _MEMORY.fullmatch(text):
        raise ValueError(f"{text!r} is not a size such as 512m or 2g")
    units = {"k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
    unit = text[-1].lower()
    return int(text[:-1]) * units[unit] if unit in units else int(text)


def _size(value: str) -> str:
    parse_size(value)
    return value.lower()


class DriverConfig(_Model):
    """How drivers are started, shared and kept; also the implicit ``default`` profile."""

    backend: Backend = Field(
        default="local",
        description="local: local[N] on this machine; standalone: client mode against driver.master",
    )
    master: str | None = Field(
        default=None, description="the Spark standalone master, spark://host:7077 (several, comma-separated, for HA)"
    )
    master_ui: str | None = Field(
        default=None,
        description="the master's web UI, whose /json/ status tells at once that a cluster has no free cores; "
        "default http://<first master host>:8080",
    )
    cluster_address: str = Field(
        default="127.0.0.1",
        description="standalone: this machine's address on the cluster's private network, where executors "
        "reach the driver (spark.driver.host and bindAddress); loopback or a private address",
    )
    cluster_secret_file: Path | None = Field(
        default=None,
        description="standalone: a file (0600) holding the cluster's spark.authenticate secret; drivers then "
        "authenticate to the master, workers and executors",
    )
    catalog: Literal["in-memory", "hive"] = Field(
        default="in-memory",
        description="in-memory: tables created by users live as long as their driver (fast start); "
        "hive: a persistent Derby metastore and warehouse per user (about 10 s slower first DDL)",
    )
    cores: int = Field(
        default=2,
        ge=1,
        le=256,
        description="local: local[N] worker threads; standalone: the most cluster cores a driver takes "
        "(spark.cores.max), unless its profile sets spark.cores.max or spark.executor.instances",
    )
    memory: str = Field(default="1g", description="driver JVM heap, e.g. 1g, 512m")
    startup_timeout_s: float = Field(default=120, gt=0, le=1800)
    stop_timeout_s: float = Field(default=15, gt=0, le=300)
    java_home: str | None = None
    spark_conf: dict[str, str] = Field(default_factory=dict, description="extra Spark settings (allowlisted)")
    share: Literal["user", "session", "group"] = Field(
        default="user",
        description="user: a principal's sessions share its driver; session: a driver per session; "
        "group: the members of a role share one driver per profile",
    )
    lifetime: Literal["server", "persistent"] = Field(
        default="server",
        description="server: drivers stop with the server; persistent: they outlive a restart and are re-adopted",
    )

    @field_validator("memory")
    @classmethod
    def _memory(cls, value: str) -> str:
        return _size(value)

    @field_validator("spark_conf", mode="before")
    @classmethod
    def _spark_conf(cls, value: object) -> object:
        return check_spark_conf(value) if isinstance(value, dict) else value

    @field_validator("master")
    @classmethod
    def _master(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not _MASTER.fullmatch(value) or any(not 0 < port <= 65535 for _, port in master_addresses(value)):
            raise ValueError(
                "must be a Spark standalone master URL such as spark://host:7077 (or spark://h1:7077,h2:7077)"
            )
        return value

    @field_validator("master_ui")
    @classmethod
    def _master_ui(cls, value: str | None) -> str | None:
        if value is not None and not _MASTER_UI.fullmatch(value):
            raise ValueError("must be the master's web UI as http://host:port")
        return None if value is None else value.rstrip("/")

    @field_validator("cluster_secret_file")
    @classmethod
    def _secret_file(cls, value: Path | None) -> Path | None:
        return None if value is None else _absolute(value)

    @field_validator("cluster_address")
    @classmethod
    def _cluster_address(cls, value: str) -> str:
        try:
            address = ipaddress.ip_address(value)
        except ValueError:
            raise ValueError("must be an IP address of this machine (loopback or a private network)") from None
        # The driver's RPC and block manager listen there unauthenticated unless the cluster uses
        # spark.authenticate: never on a public address, nor on every address at once.
        if not (address.is_loopback or address.is_private) or address.is_unspecified or address.is_link_local:
            raise ValueError(
                f"{value} is not a loopback or private address; executors must reach the driver on a private network"
            )
        return value

    @property
    def master_ui_url(self) -> str | None:
        """Where the master's JSON status is: ``master_ui``, else port 8080 of the first master."""
        if self.master_ui:
            return self.master_ui
        if self.master is None:
            return None
        host, _ = master_addresses(self.master)[0]
        return f"http://[{host}]:8080" if ":" in host else f"http://{host}:8080"


def master_addresses(master: str) -> list[tuple[str, int]]:
    """The (host, port) of each master in ``spark://h1:p1,h2:p2`` (an IPv6 host without its brackets)."""
    addresses = []
    for part in master.removeprefix("spark://").split(","):
        host, _, port = part.rpartition(":")
        addresses.append((host.strip("[]"), int(port)))
    return addresses


_PROFILE_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
DEFAULT_PROFILE = "default"


def _absolute(value: Path) -> Path:
    if not value.is_absolute():
        raise ValueError(f"{value} must be an absolute path")
    return value


class CredentialsConfig(_Model):
    """Secrets a profile's drivers get: copied into the driver's private folder, never in argv."""

    kerberos_principal: str | None = Field(default=None, description="sets spark.kerberos.principal")
    kerberos_keytab: Path | None = Field(
        default=None, description="copied 0600 into the driver's folder; spark.kerberos.keytab points at the copy"
    )
    files: tuple[Path, ...] = Field(
        default=(), description="copied 0600 into the driver's folder ({credentials} in env values)"
    )
    secret_env: dict[str, Path] = Field(
        default_factory=dict, description="NAME = file whose content becomes the variable's value"
    )

    @field_validator("kerberos_keytab")
    @classmethod
    def _keytab(cls, value: Path | None) -> Path | None:
        return None if value is None else _absolute(value)

    @field_validator("files")
    @classmethod
    def _files(cls, value: tuple[Path, ...]) -> tuple[Path, ...]:
        names = [path.name for path in value]
        if len(set(names)) != len(names):
            raise ValueError("two credential files share a name; each is copied under its own name")
        return tuple(_absolute(path) for path in value)

    @field_validator("secret_env")
    @classmethod
    def _secret_env(cls, value: dict[str, Path]) -> dict[str, Path]:
        check_env(dict.fromkeys(value, ""))
        return {name: _absolute(path) for name, path in value.items()}

    @field_validator("kerberos_principal")
    @classmethod
    def _principal(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[A-Za-z0-9._@/\-]{1,256}", value):
            raise ValueError("must be a Kerberos principal such as svc/host@REALM")
        return value

    @model_validator(mode="after")
    def _kerberos_pair(self) -> CredentialsConfig:
        if (self.kerberos_principal is None) != (self.kerberos_keytab is None):
            raise ValueError("kerberos_principal and kerberos_keytab go together")
        return self

    def paths(self) -> list[tuple[str, Path]]:
        """Every file this profile reads, with the key naming it (for checks and messages)."""
        found = [("kerberos_keytab", self.kerberos_keytab)] if self.kerberos_keytab else []
        found += [(f"files[{i}]", path) for i, path in enumerate(self.files)]
        found += [(f"secret_env.{name}", path) for name, path in self.secret_env.items()]
        return found


class ProfileConfig(_Model):
    """``[profiles.NAME]``: what a driver of this profile is. Unset sizes come from ``[driver]``."""

    description: str | None = None
    engine: Literal["spark"] = "spark"
    backend: Backend | None = Field(default=None, description="default: driver.backend")
    cores: int | None = Field(default=None, ge=1, le=256)
    memory: str | None = None
    spark_conf: dict[str, str] = Field(default_factory=dict, description="extra Spark settings (allowlisted)")
    env: dict[str, str] = Field(default_factory=dict, description="environment variables (allowlisted)")
    credentials: CredentialsConfig = CredentialsConfig()

    @field_validator("memory")
    @classmethod
    def _memory(cls, value: str | None) -> str | None:
        return None if value is None else _size(value)

    @field_validator("spark_conf", mode="before")
    @classmethod
    def _spark_conf(cls, value: object) -> object:
        return check_spark_conf(value) if isinstance(value, dict) else value

    @field_validator("env", mode="before")
    @classmethod
    def _env(cls, value: object) -> object:
        return check_env(value) if isinstance(value, dict) else value


class PoolConfig(_Model):
    """The warm pool: spare drivers, started and prepared, waiting for a new owner."""

    size: int = Field(default=0, ge=0, le=64, description="spare drivers per profile; 0 turns the pool off")
    profiles: tuple[str, ...] = Field(default=(), description="profiles that get spares (default: all)")


class QuotasConfig(_Model):
    """Server-wide driver quotas; each is enforced at driver start and reported by whoami."""

    max_drivers: int = Field(default=16, ge=1, le=1024, description="drivers at once, spares included")
    max_drivers_per_user: int = Field(default=4, ge=1, le=1024, description="drivers one owner holds at once")
    max_driver_memory: str | None = Field(
        default=None, description="sum of driver memory (heap + overhead); default 80% of the machine's memory"
    )
    driver_idle_timeout_s: float = Field(default=1800, ge=0, description="stop a driver unused this long; 0: never")
    driver_max_lifetime_s: float = Field(default=0, ge=0, description="stop a driver this old; 0: no limit")

    @field_validator("max_driver_memory")
    @classmethod
    def _memory(cls, value: str | None) -> str | None:
        return None if value is None else _size(value)


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
    pool: PoolConfig = PoolConfig()
    quotas: QuotasConfig = QuotasConfig()
    profiles: dict[str, ProfileConfig] = Field(default_factory=dict)
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

    @field_validator("profiles")
    @classmethod
    def _profile_names(cls, value: dict[str, ProfileConfig]) -> dict[str, ProfileConfig]:
        for name in value:
            if not _PROFILE_NAME.fullmatch(name):
                raise ValueError(f"profile name {name!r}: use up to 32 lower-case letters, digits, '_' or '-'")
        return value

    @model_validator(mode="after")
    def _fleet_coherent(self) -> Config:
        unknown = [name for name in self.pool.profiles if name not in self.profile_names]
        if unknown:
            raise ValueError(f"pool.profiles names {unknown}, which are not profiles ({list(self.profile_names)})")
        if self.driver.catalog == "hive" and self.pool.size > 0:
            raise ValueError(
                "pool.size > 0 needs driver.catalog = in-memory: a hive driver opens its owner's metastore "
                "when it starts, so it cannot wait unassigned"
            )
        standalone = [name for name in self.profile_names if self.backend_of(name) == "standalone"]
        if standalone and self.driver.master is None:
            raise ValueError(
                f'profile(s) {standalone} use the standalone backend, which needs driver.master = "spark://host:7077"'
            )
        if self.driver.catalog == "hive" and self.driver.share == "session":
            raise ValueError(
                "driver.share = session cannot use driver.catalog = hive: two drivers of one user would "
                "open the same Derby metastore, which admits one at a time"
            )
        return self

    @property
    def profile_names(self) -> tuple[str, ...]:
        """Every profile: ``default`` (from [driver], unless [profiles.default] redefines it), then the rest."""
        return (DEFAULT_PROFILE, *(name for name in self.profiles if name != DEFAULT_PROFILE))

    def backend_of(self, profile: str) -> str:
        spec = self.profiles.get(profile)
        return (spec.backend if spec is not None else None) or self.driver.backend

    @property
    def uses_standalone(self) -> bool:
        return any(self.backend_of(name) == "standalone" for name in self.profile_names)

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
