"""The configuration's shape: frozen pydantic models, one per section of ``spark-mcp.toml``.

Every layer (file, environment, flags) is validated by these models; ``loading`` merges the
layers and reports a bad value with where it came from.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

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


_K8S_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


class KubernetesConfig(_Model):
    """Drivers as pods (``driver.backend = "kubernetes"``): see ``drivers/kubernetes.py``."""

    kubeconfig: str | None = Field(default=None, description="a kubeconfig file; none: in-cluster credentials")
    namespace: str = Field(default="spark-mcp-{tenant}", description="the driver namespace of a tenant")
    tenants: dict[str, str] = Field(default_factory=dict, description="principal -> tenant")
    default_tenant: str = "default"
    image: str = Field(default="apache/spark:4.1.1", description="a Spark image with the Connect jar, Spark = client")
    spark_home: str = "/opt/spark"
    run_as_user: int = Field(default=185, ge=1, description="the image's non-root user (185 in apache/spark)")
    executor_instances: int = Field(default=0, ge=0, le=1000, description="0: local[N] in the pod; more: pods")
    executor_cores: int = Field(default=1, ge=1, le=256)
    executor_memory: str = "1g"
    service_account: str = Field(default="spark-mcp-driver", description="used only when executors are pods")
    credentials_secret: str | None = Field(default=None, description="a Secret mounted into the driver pod only")
    server_namespace: str = Field(default="spark-mcp", description="where spark-mcp runs (NetworkPolicy)")
    server_labels: dict[str, str] = Field(default_factory=lambda: {"app.kubernetes.io/name": "spark-mcp"})
    scratch_size: str = Field(default="10Gi", description="emptyDir for /tmp and spark.local.dir")
    image_pull_secrets: tuple[str, ...] = ()

    @field_validator("default_tenant", "service_account", "server_namespace")
    @classmethod
    def _dns_name(cls, value: str) -> str:
        if not _K8S_NAME.fullmatch(value):
            raise ValueError("must be a Kubernetes name (lower-case letters, digits and '-', at most 63)")
        return value

    @field_validator("tenants")
    @classmethod
    def _tenant_names(cls, value: dict[str, str]) -> dict[str, str]:
        for tenant in value.values():
            if not _K8S_NAME.fullmatch(tenant):
                raise ValueError(f"tenant {tenant!r} must be a Kubernetes name part (a-z, 0-9, '-')")
        return value


class DriverConfig(_Model):
    """How drivers are started."""

    backend: Literal["local", "kubernetes"] = "local"
    kubernetes: KubernetesConfig = KubernetesConfig()
    engine: Literal["spark", "sail"] = Field(
        default="spark",
        description="the engine of a session created without one: spark (a JVM driver) or sail (pysail, "
        "Rust; no authentication of its own, loopback only)",
    )
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
