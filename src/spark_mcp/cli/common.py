"""What every command shares: the configuration, from the file, the environment and the flags."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from spark_mcp.config import Config, load_config


def config_from(args: argparse.Namespace) -> Config:
    """The config file, then the ``SPARK_MCP_*`` environment, then the flags this command was given."""
    overrides: dict[str, Any] = {}
    if getattr(args, "home", None):
        overrides["home"] = args.home
    if getattr(args, "user", None):
        overrides["user"] = args.user
    if getattr(args, "log_level", None):
        overrides["server"] = {"log_level": args.log_level}
    if getattr(args, "policies", None):
        overrides["policies"] = args.policies
    server = {
        key: value
        for key in ("transport", "host", "port", "tls_cert", "tls_key")
        if (value := getattr(args, key, None)) is not None
    }
    if server:
        overrides["server"] = {**overrides.get("server", {}), **server}
    gateway = {
        key: value
        for key, attr in (("port", "gateway_port"), ("host", "gateway_host"))
        if (value := getattr(args, attr, None)) is not None
    }
    if gateway:
        overrides["gateway"] = gateway
    return load_config(Path(args.config) if args.config else None, overrides=overrides)
