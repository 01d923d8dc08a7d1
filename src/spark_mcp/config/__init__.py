"""Configuration: ``spark-mcp.toml``, then ``SPARK_MCP_*`` environment, then CLI flags.

model.py        the frozen pydantic models, one per section
loading.py      reading the file and the environment, merging layers, reporting bad values
spark_conf.py   the Spark settings a config may set (an allowlist) and those spark-mcp manages
driver_env.py   the environment variables a profile may give its drivers (an allowlist)
"""

from spark_mcp.config.loading import bundled_policies, default_home, load_config
from spark_mcp.config.model import (
    DEFAULT_PROFILE,
    AuditConfig,
    Config,
    CredentialsConfig,
    DatasetConfig,
    DriverConfig,
    KubernetesConfig,
    LimitsConfig,
    PoolConfig,
    ProfileConfig,
    QuotasConfig,
    ResultsConfig,
    ServerConfig,
    parse_size,
)
from spark_mcp.config.spark_conf import MANAGED_KEYS

__all__ = [
    "DEFAULT_PROFILE",
    "MANAGED_KEYS",
    "AuditConfig",
    "Config",
    "CredentialsConfig",
    "DatasetConfig",
    "DriverConfig",
    "KubernetesConfig",
    "LimitsConfig",
    "PoolConfig",
    "ProfileConfig",
    "QuotasConfig",
    "ResultsConfig",
    "ServerConfig",
    "bundled_policies",
    "default_home",
    "load_config",
    "parse_size",
]
