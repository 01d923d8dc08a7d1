"""The driver sections: ``[driver]`` (with ``[driver.kubernetes]``), ``[profiles.NAME]`` and their
credentials, ``[pool]`` and ``[quotas]``: how drivers are started, shared, sized and kept."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from spark_mcp.config.base import FrozenModel, check_absolute, check_size
from spark_mcp.config.driver_env import check_env
from spark_mcp.config.spark_conf import check_spark_conf

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?"
_HOST = rf"(?:{_LABEL}(?:\.{_LABEL})*|\[[0-9A-Fa-f:.]+\])"  # a DNS name, an IPv4 address, or [IPv6]
_HOST_PORT = rf"{_HOST}:[0-9]{{1,5}}"
_MASTER = re.compile(rf"^spark://({_HOST_PORT})(,{_HOST_PORT})*$")
_MASTER_UI = re.compile(rf"^https?://{_HOST_PORT}/?$")
Backend = Literal["local", "standalone", "kubernetes"]
_K8S_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


class KubernetesConfig(FrozenModel):
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


class DriverConfig(FrozenModel):
    """How drivers are started, shared and kept; also the implicit ``default`` profile."""

    backend: Backend = Field(
        default="local",
        description="local: local[N] on this machine; standalone: client mode against driver.master; "
        "kubernetes: a pod per driver",
    )
    kubernetes: KubernetesConfig = KubernetesConfig()
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
    task_kill_timeout_s: float = Field(
        default=60,
        ge=0,
        le=3600,
        description="how long the Spark tasks of a cancelled or timed-out query get to stop; past it, a cluster "
        "executor is restarted by Spark, and a local driver by spark-mcp (its sessions end, saying why); 0: never",
    )
    java_home: str | None = None
    class_cache: bool = Field(
        default=True,
        description="map a shared archive of Spark's classes into local and standalone drivers (JVM class-data "
        "sharing): they start in about half the time; made by the first driver that stops, once per install",
    )
    class_cache_dir: Path | None = Field(
        default=None, description="the archive's folder (0700); default $XDG_CACHE_HOME or ~/.cache, spark-mcp/jvm"
    )
    analysis_plugin: bool = Field(
        default=True,
        description="load spark-mcp's analysis plugin into local and standalone drivers: the gateway reads a "
        "relation's plan and its schema in one analysis instead of two; compiled once per install into "
        "class_cache_dir",
    )
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
        return check_size(value)

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

    @field_validator("cluster_secret_file", "class_cache_dir")
    @classmethod
    def _secret_file(cls, value: Path | None) -> Path | None:
        return None if value is None else check_absolute(value)

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


class CredentialsConfig(FrozenModel):
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
        return None if value is None else check_absolute(value)

    @field_validator("files")
    @classmethod
    def _files(cls, value: tuple[Path, ...]) -> tuple[Path, ...]:
        names = [path.name for path in value]
        if len(set(names)) != len(names):
            raise ValueError("two credential files share a name; each is copied under its own name")
        return tuple(check_absolute(path) for path in value)

    @field_validator("secret_env")
    @classmethod
    def _secret_env(cls, value: dict[str, Path]) -> dict[str, Path]:
        check_env(dict.fromkeys(value, ""))
        return {name: check_absolute(path) for name, path in value.items()}

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


class ProfileConfig(FrozenModel):
    """``[profiles.NAME]``: what a driver of this profile is. Unset sizes come from ``[driver]``."""

    description: str | None = None
    engine: Literal["spark", "sail"] | None = Field(default=None, description="none: driver.engine")
    backend: Backend | None = Field(default=None, description="default: driver.backend")
    cores: int | None = Field(default=None, ge=1, le=256)
    memory: str | None = None
    spark_conf: dict[str, str] = Field(default_factory=dict, description="extra Spark settings (allowlisted)")
    env: dict[str, str] = Field(default_factory=dict, description="environment variables (allowlisted)")
    credentials: CredentialsConfig = CredentialsConfig()

    @field_validator("memory")
    @classmethod
    def _memory(cls, value: str | None) -> str | None:
        return None if value is None else check_size(value)

    @field_validator("spark_conf", mode="before")
    @classmethod
    def _spark_conf(cls, value: object) -> object:
        return check_spark_conf(value) if isinstance(value, dict) else value

    @field_validator("env", mode="before")
    @classmethod
    def _env(cls, value: object) -> object:
        return check_env(value) if isinstance(value, dict) else value


class PoolConfig(FrozenModel):
    """The warm pool: spare drivers, started and prepared, waiting for a new owner."""

    size: int = Field(default=0, ge=0, le=64, description="spare drivers per profile; 0 turns the pool off")
    profiles: tuple[str, ...] = Field(default=(), description="profiles that get spares (default: all)")
    replace_after_s: float = Field(
        default=5.0,
        ge=0,
        le=3600,
        description="how long after a spare is taken its replacement starts (so that a driver booting "
        "does not slow the first answers of the principal who took it); 0: at once",
    )


class QuotasConfig(FrozenModel):
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
        return None if value is None else check_size(value)
