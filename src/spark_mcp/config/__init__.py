"""Configuration: ``spark-mcp.toml``, then ``SPARK_MCP_*`` environment, then CLI flags.

model.py     the frozen pydantic models, one per section
loading.py   reading the file and the environment, merging layers, reporting bad values
"""

from spark_mcp.config.loading import bundled_policies, default_home, load_config
from spark_mcp.config.model import (
    RESERVED_SPARK_CONF,
    AuditConfig,
    Config,
    DatasetConfig,
    DriverConfig,
    GatewayConfig,
    LimitsConfig,
    ResultsConfig,
    ServerConfig,
)

__all__ = [
    "RESERVED_SPARK_CONF",
    "AuditConfig",
    "Config",
    "DatasetConfig",
    "DriverConfig",
    "GatewayConfig",
    "LimitsConfig",
    "ResultsConfig",
    "ServerConfig",
    "bundled_policies",
    "default_home",
    "load_config",
]
