"""The configuration's root: ``Config``, which holds every section and checks that they agree.

Every layer (file, environment, flags) is validated by these models; ``loading`` merges the
layers and reports a bad value with where it came from. The sections live by job in ``server``,
``auth``, ``drivers`` and ``limits``; they are re-exported here so that code importing them from
``spark_mcp.config.model`` keeps working.
"""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import Field, field_validator, model_validator

from spark_mcp.config.auth import ASYMMETRIC_ALGORITHMS, AuthConfig, ConsoleConfig, OidcConfig, ProxyConfig
from spark_mcp.config.base import FrozenModel, parse_size
from spark_mcp.config.drivers import (
    Backend,
    CredentialsConfig,
    DriverConfig,
    KubernetesConfig,
    PoolConfig,
    ProfileConfig,
    QuotasConfig,
    master_addresses,
)
from spark_mcp.config.limits import AuditConfig, DatasetConfig, LimitsConfig, ResultsConfig
from spark_mcp.config.server import GatewayConfig, ServerConfig

__all__ = [
    "ASYMMETRIC_ALGORITHMS",
    "DEFAULT_PROFILE",
    "AuditConfig",
    "AuthConfig",
    "Backend",
    "Config",
    "ConsoleConfig",
    "CredentialsConfig",
    "DatasetConfig",
    "DriverConfig",
    "GatewayConfig",
    "KubernetesConfig",
    "LimitsConfig",
    "OidcConfig",
    "PoolConfig",
    "ProfileConfig",
    "ProxyConfig",
    "QuotasConfig",
    "ResultsConfig",
    "ServerConfig",
    "master_addresses",
    "parse_size",
]

_PROFILE_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
DEFAULT_PROFILE = "default"


class Config(FrozenModel):
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
