"""The configuration's shape: frozen pydantic models, one per section of ``spark-mcp.toml``.

Every layer (file, environment, flags) is validated by these models; ``loading`` merges the
layers and reports a bad value with where it came from.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

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
