"""Configuration: ``spark-mcp.toml``, then ``SPARK_MCP_*`` environment, then CLI flags.

Every layer is validated by the same frozen pydantic models; a bad value is rejected at
start with where it came from (file or variable), the key, and the reason. The
environment is passed in, never read from module globals, so tests never patch
``os.environ``.

Environment variables:

- ``SPARK_MCP_CONFIG``: the config file (default ``./spark-mcp.toml`` when present).
- ``SPARK_MCP_HOME``: state directory (drivers, logs, results, audit).
- ``SPARK_MCP_USER``: who the stdio caller is (default: the OS user).
- ``SPARK_MCP_POLICIES``: policy files or directories, ``:``-separated.
- ``SPARK_MCP_LOG_LEVEL``: ``debug``, ``info``, ``warning`` or ``error``.
- ``SPARK_MCP_<SECTION>__<KEY>``: any other key, e.g. ``SPARK_MCP_DRIVER__MEMORY=2g``.
"""

from __future__ import annotations

import os
import sys
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from spark_mcp.config.model import Config
from spark_mcp.errors import ConfigError


def default_home(environ: Mapping[str, str]) -> Path:
    """A per-user data directory."""
    if sys.platform == "darwin":
        return Path(environ.get("HOME", "~")).expanduser() / "Library" / "Application Support" / "spark-mcp"
    base = environ.get("XDG_DATA_HOME") or str(Path(environ.get("HOME", "~")).expanduser() / ".local" / "share")
    return Path(base) / "spark-mcp"


def bundled_policies() -> Path:
    """The policy directory shipped with spark-mcp: the checkout's, else the wheel's copy."""
    package = Path(__file__).resolve().parents[1]  # src/spark_mcp
    checkout = package.parents[1] / "policies"
    if checkout.is_dir() and (package.parents[1] / "pyproject.toml").is_file():
        return checkout
    return package / "_bundled" / "policies"


_NAMED_ENV = {
    "SPARK_MCP_HOME": ("home",),
    "SPARK_MCP_USER": ("user",),
    "SPARK_MCP_LOG_LEVEL": ("server", "log_level"),
}


def _env_layer(environ: Mapping[str, str]) -> dict[str, Any]:
    layer: dict[str, Any] = {}
    for name, value in environ.items():
        if not name.startswith("SPARK_MCP_") or name == "SPARK_MCP_CONFIG":
            continue
        if name in _NAMED_ENV:
            path: tuple[str, ...] = _NAMED_ENV[name]
            parsed: Any = value
        elif name == "SPARK_MCP_POLICIES":
            path, parsed = ("policies",), [p for p in value.split(os.pathsep) if p]
        elif "__" in name:
            path = tuple(part.lower() for part in name[len("SPARK_MCP_") :].split("__"))
            parsed = _parse_scalar(value)
        else:
            continue
        _set(layer, path, parsed, source=name)
    return layer


def _parse_scalar(value: str) -> Any:
    """Environment values are TOML scalars when they parse as one, else plain strings."""
    try:
        return tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        return value


def _set(layer: dict[str, Any], path: tuple[str, ...], value: Any, *, source: str) -> None:
    node = layer
    for key in path[:-1]:
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{source}: {'.'.join(path)} conflicts with another setting")
        node = child
    node[path[-1]] = value


def _merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _describe(error: ValidationError, source: str) -> str:
    lines = []
    for item in error.errors():
        key = ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in item["loc"]).replace(".[", "[")
        lines.append(f"{source}: {key or '(top level)'}: {item['msg']}")
    return "invalid configuration:\n  " + "\n  ".join(lines)


def _read_file(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None


def load_config(
    path: Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """Load and validate the configuration: file, then environment, then ``overrides`` (flags)."""
    env = dict(os.environ if environ is None else environ)
    if path is None and env.get("SPARK_MCP_CONFIG"):
        path = Path(env["SPARK_MCP_CONFIG"])
    if path is None and Path("spark-mcp.toml").is_file():
        path = Path("spark-mcp.toml")

    file_layer = _read_file(path) if path is not None else {}
    source = str(path) if path is not None else "configuration"
    if path is not None:
        # Relative paths in a file are relative to that file, not to the working directory.
        file_layer = _anchor_paths(file_layer, path.resolve().parent)

    try:
        env_layer = _env_layer(env)
    except ConfigError:
        raise
    data = _merge(_merge(file_layer, env_layer), dict(overrides or {}))
    data.setdefault("home", str(default_home(env)))
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, source)) from None
    home = config.home.expanduser().resolve()
    policies = tuple(p.expanduser().resolve() for p in config.policies) or (bundled_policies(),)
    config_file = path.resolve() if path is not None else None
    return config.model_copy(update={"home": home, "policies": policies, "source": config_file})


def _anchor_paths(layer: dict[str, Any], base: Path) -> dict[str, Any]:
    anchored = dict(layer)

    def anchor(value: Any) -> Any:
        if isinstance(value, str) and "://" not in value and not Path(value).expanduser().is_absolute():
            return str(base / value)
        return value

    if "home" in anchored:
        anchored["home"] = anchor(anchored["home"])
    if isinstance(anchored.get("policies"), list):
        anchored["policies"] = [anchor(p) for p in anchored["policies"]]
    if isinstance(anchored.get("datasets"), list):
        anchored["datasets"] = [
            {**d, "path": anchor(d["path"])} if isinstance(d, dict) and "path" in d else d for d in anchored["datasets"]
        ]
    server = anchored.get("server")
    if isinstance(server, dict):
        anchored["server"] = {k: anchor(v) if k in ("tls_cert", "tls_key") else v for k, v in server.items()}
    audit = anchored.get("audit")
    if isinstance(audit, dict) and "path" in audit:
        anchored["audit"] = {**audit, "path": anchor(audit["path"])}
    return anchored
