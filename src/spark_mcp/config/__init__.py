"""Configuration: ``spark-mcp.toml``, then ``SPARK_MCP_*`` environment, then CLI flags.

model.py        the root ``Config``: every section, and the checks that sections agree
server.py       [server] and [gateway]: how the server and its Spark Connect endpoint are reached
auth.py         [auth] (oidc, proxy) and [console]: how callers and console users sign in
drivers.py      [driver], [profiles.NAME], [pool], [quotas]: how drivers start, are shared and kept
limits.py       [limits], [results], [audit], [[datasets]]: what work may use and what is kept
base.py         the frozen base model and the size and path checks the sections share
loading.py      reading the file and the environment, merging layers, reporting bad values
spark_conf.py   the Spark settings a config may set (an allowlist) and those spark-mcp manages
driver_env.py   the environment variables a profile may give its drivers (an allowlist)
"""

from spark_mcp.config.base import parse_size
from spark_mcp.config.drivers import (
    CredentialsConfig,
    DriverConfig,
    KubernetesConfig,
    PoolConfig,
    ProfileConfig,
    QuotasConfig,
    master_addresses,
)
from spark_mcp.config.limits import AuditConfig, DatasetConfig, LimitsConfig, ResultsConfig
from spark_mcp.config.loading import bundled_policies, default_home, load_config
from spark_mcp.config.model import DEFAULT_PROFILE, Config
from spark_mcp.config.server import GatewayConfig, ServerConfig
from spark_mcp.config.spark_conf import MANAGED_KEYS

__all__ = [
    "DEFAULT_PROFILE",
    "MANAGED_KEYS",
    "AuditConfig",
    "Config",
    "CredentialsConfig",
    "DatasetConfig",
    "DriverConfig",
    "GatewayConfig",
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
    "master_addresses",
    "parse_size",
]
