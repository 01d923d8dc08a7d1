"""The configuration's shape: frozen pydantic models, one per section of ``spark-mcp.toml``.

Every layer (file, environment, flags) is validated by these models; ``loading`` merges the
layers and reports a bad value with where it came from.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

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
Backend = Literal["local", "standalone", "kubernetes"]


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
    max_jobs_per_driver: int = Field(
        default=4, ge=1, le=256, description="jobs one driver runs at once; the others wait, state queued"
    )

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
    """How the server is reached: stdio (one user), or streamable HTTP (a team)."""

    transport: Literal["stdio", "http"] = "stdio"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    host: str = Field(default="127.0.0.1", description="HTTP: the address to bind")
    port: int = Field(default=8000, ge=0, le=65535, description="HTTP: the port to bind (0: any free port)")
    public_url: str | None = Field(
        default=None, description="HTTP: the URL clients use (e.g. https://spark.example.com), when behind a proxy"
    )
    tls_cert: Path | None = Field(default=None, description="HTTP: PEM certificate chain; with tls_key, serve HTTPS")
    tls_key: Path | None = Field(default=None, description="HTTP: PEM private key of tls_cert")
    allowed_hosts: tuple[str, ...] = Field(
        default=(), description="HTTP: Host header values accepted (host or host:port, host:* for any port)"
    )
    allowed_origins: tuple[str, ...] = Field(
        default=(), description="HTTP: Origin header values accepted (scheme://host[:port], :* for any port)"
    )
    max_request_bytes: int = Field(default=1024 * 1024, ge=1024, le=256 * 1024 * 1024)
    cors_origins: tuple[str, ...] = Field(default=(), description="HTTP: origins allowed by CORS (none: no CORS)")

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not re.fullmatch(r"https?://[^\s/?#]+(/[^\s?#]*)?", value):
            raise ValueError("must be an http(s) URL without query or fragment, e.g. https://spark.example.com")
        return value.rstrip("/")

    @field_validator("allowed_hosts")
    @classmethod
    def _hosts(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for host in value:
            if not re.fullmatch(r"[A-Za-z0-9.\-\[\]:]+(:\*)?", host):
                raise ValueError(f"{host!r} is not a host or host:port")
        return value

    @field_validator("allowed_origins", "cors_origins")
    @classmethod
    def _origins(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for origin in value:
            if not re.fullmatch(r"https?://[A-Za-z0-9.\-\[\]:]+(:\*)?", origin):
                raise ValueError(f"{origin!r} is not an origin (scheme://host[:port])")
        return value

    @model_validator(mode="after")
    def _tls_pair(self) -> ServerConfig:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together: set both, or neither")
        return self


class GatewayConfig(_Model):
    """``[gateway]``: the Spark Connect endpoint for IDEs and notebooks (off until a port is set).

    TLS comes from ``[server] tls_cert`` and ``tls_key``; the verifiers from ``[auth]``.
    """

    port: int | None = Field(
        default=None, ge=0, le=65535, description="the gRPC port, e.g. 15002 (0: any free port); unset: no gateway"
    )
    host: str = Field(default="127.0.0.1", description="the address to bind; anything but loopback needs TLS and auth")
    max_message_bytes: int = Field(
        default=128 * 1024 * 1024,
        ge=1024 * 1024,
        le=1024 * 1024 * 1024,
        description="the largest gRPC message either way (a plan with local data, an Arrow batch)",
    )
    max_plan_depth: int = Field(
        default=1024, ge=32, le=4096, description="the deepest nesting of a plan's messages the gateway reads"
    )

    @field_validator("host")
    @classmethod
    def _host(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9.\-:\[\]]+", value):
            raise ValueError("must be a host name or an IP address")
        return value


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
    auth: AuthConfig = Field(default_factory=lambda: AuthConfig())
    console: ConsoleConfig = Field(default_factory=lambda: ConsoleConfig())
    pool: PoolConfig = PoolConfig()
    quotas: QuotasConfig = QuotasConfig()
    profiles: dict[str, ProfileConfig] = Field(default_factory=dict)
    gateway: GatewayConfig = GatewayConfig()
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
        kubernetes = self.driver.backend == "kubernetes" or any(
            p.backend == "kubernetes" for p in self.profiles.values()
        )
        if kubernetes and (self.pool.size > 0 or self.driver.share == "group"):
            raise ValueError(
                "the kubernetes backend starts each driver in its principal's tenant namespace: "
                "set pool.size = 0 and driver.share = user or session"
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


# --- authentication (HTTP transport) ---------------------------------------------------------

# Signature algorithms an OIDC issuer may use: asymmetric only. "none" and the HS* family are
# refused, since a JWKS publishes public keys and an HMAC "key" taken from it would let
# anyone who can read the JWKS sign tokens.
ASYMMETRIC_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
_SCOPE = re.compile(r"^[\x21\x23-\x5b\x5d-\x7e]{1,64}$")  # RFC 6749 scope-token characters


def _scope_list(value: tuple[str, ...]) -> tuple[str, ...]:
    for scope in value:
        if not _SCOPE.fullmatch(scope):
            raise ValueError(f"{scope!r} is not a scope (printable, no spaces, quotes or backslashes)")
    return value


class OidcConfig(_Model):
    """``[auth.oidc]``: JWTs from an OpenID Connect issuer, checked against its JWKS."""

    issuer: str | None = Field(default=None, description="the issuer URL, exactly as tokens carry it in iss")
    audience: str | None = Field(default=None, description="required aud (default: the resource URL)")
    jwks_url: str | None = Field(default=None, description="default: from the issuer's discovery document")
    principal_claim: str = Field(default="sub", description="the claim naming the principal")
    groups_claim: str | None = Field(default=None, description="a claim listing groups that name policy roles")
    clock_skew_s: float = Field(default=30, ge=0, le=300)
    algorithms: tuple[str, ...] = ("RS256", "ES256")
    jwks_cache_s: float = Field(default=300, gt=0, le=86400, description="how long fetched keys are trusted")
    jwks_min_refetch_s: float = Field(
        default=30, ge=0, le=3600, description="an unknown kid refetches the JWKS at most this often"
    )

    @field_validator("issuer", "jwks_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"https?://[^\s]+", value):
            raise ValueError("must be an http(s) URL")
        return value

    @field_validator("algorithms")
    @classmethod
    def _algorithms(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("name at least one algorithm")
        for name in value:
            if name not in ASYMMETRIC_ALGORITHMS:
                allowed = ", ".join(sorted(ASYMMETRIC_ALGORITHMS))
                raise ValueError(f"{name!r} is not allowed: use asymmetric algorithms only ({allowed})")
        return value

    @field_validator("principal_claim", "groups_claim")
    @classmethod
    def _claim(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[A-Za-z0-9_:./\-]{1,128}", value):
            raise ValueError("must be a claim name")
        return value


class ProxyConfig(_Model):
    """``[auth.proxy]``: identity from a header set by an authenticating proxy."""

    header: str = Field(default="X-Forwarded-User", description="the header carrying the principal id")
    trusted_proxies: tuple[str, ...] = Field(
        default=(), description="addresses (CIDRs) of the proxies allowed to set the header"
    )

    @field_validator("header")
    @classmethod
    def _header(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9-]{1,64}", value):
            raise ValueError("must be an HTTP header name")
        if value.lower() in ("authorization", "host", "cookie", "content-type", "content-length"):
            raise ValueError(f"{value} cannot carry an identity")
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _cidrs(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        import ipaddress

        for cidr in value:
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError:
                raise ValueError(f"{cidr!r} is not an address or CIDR (e.g. 10.0.0.5/32)") from None
        return value


class AuthConfig(_Model):
    """``[auth]``: how HTTP callers prove who they are (stdio trusts the launching user)."""

    mode: Literal["tokens", "oidc", "proxy", "none"] = Field(
        default="tokens",
        description="tokens: spark-mcp's own API tokens; oidc: JWTs from an issuer; proxy: a trusted "
        "proxy's header; none: no authentication (loopback only, every caller is `user`)",
    )
    scopes: tuple[str, ...] = Field(default=("spark:read",), description="scopes every token must carry")
    write_scope: str | None = Field(
        default="spark:write", description="the scope that allows changes; a token without it is read-only"
    )
    resource_url: str | None = Field(default=None, description="this server's resource URL (default: <public>/mcp)")
    oidc: OidcConfig = OidcConfig()
    proxy: ProxyConfig = ProxyConfig()

    @field_validator("scopes")
    @classmethod
    def _scopes(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("name at least one scope: a token with no scope would then reach everything")
        return _scope_list(value)

    @field_validator("write_scope")
    @classmethod
    def _write_scope(cls, value: str | None) -> str | None:
        if not value:
            return None  # "": no write scope, the policy alone decides
        _scope_list((value,))
        return value

    @field_validator("resource_url")
    @classmethod
    def _resource(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"https?://[^\s?#]+", value):
            raise ValueError("must be an http(s) URL without query or fragment")
        return value

    @model_validator(mode="after")
    def _mode_needs(self) -> AuthConfig:
        if self.mode == "oidc" and not self.oidc.issuer:
            raise ValueError("mode oidc needs [auth.oidc] issuer")
        if self.mode == "proxy" and not self.proxy.trusted_proxies:
            raise ValueError("mode proxy needs [auth.proxy] trusted_proxies: the addresses of your proxies")
        return self


class ConsoleConfig(_Model):
    """``[console]``: the web console at ``/console``, served with the HTTP transport."""

    enabled: bool = Field(default=True, description="serve the console at /console (HTTP transport only)")
    session_idle_s: float = Field(default=3600, ge=60, le=7 * 86400, description="a console login ends when idle")
    session_max_s: float = Field(default=12 * 3600, ge=60, le=30 * 86400, description="and after this, whatever")
    oidc_client_id: str | None = Field(
        default=None, description="mode oidc: the console's client id at the issuer (none: no OIDC sign-in)"
    )
    oidc_client_secret: SecretStr | None = Field(
        default=None, description="a confidential client's secret (set it from the environment, not a file)"
    )
    oidc_scopes: tuple[str, ...] = Field(default=("openid", "profile"), description="scopes the sign-in asks for")

    @field_validator("oidc_client_id")
    @classmethod
    def _client_id(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[\x21-\x7e]{1,255}", value):
            raise ValueError("must be 1-255 printable characters without spaces")
        return value

    @field_validator("oidc_scopes")
    @classmethod
    def _oidc_scopes(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if "openid" not in value:
            raise ValueError('must include "openid" (it is what makes the issuer send an ID token)')
        return _scope_list(value)


Config.model_rebuild()  # Config names AuthConfig and ConsoleConfig, defined after it
