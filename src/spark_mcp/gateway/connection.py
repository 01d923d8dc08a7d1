"""The connection string a user pastes into ``SparkSession.builder.remote(...)``.

For the console (and anyone else): ``connection_string(config, token)`` names this
server's gateway (its public host when ``[server] public_url`` is set, else the bound host,
with loopback spelled ``localhost`` because the PySpark client sends a token over plain
gRPC only to that name), the user's own token, and ``use_ssl=true`` when the gateway
serves TLS.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from spark_mcp.config import Config
from spark_mcp.errors import ConfigError, InvalidInput
from spark_mcp.gateway.server import is_loopback

_TOKEN = re.compile(r"[A-Za-z0-9._~+/=-]{1,8192}")


def gateway_host(config: Config) -> str:
    if config.server.public_url:
        host = urlsplit(config.server.public_url).hostname
        if host:
            return host
    host = config.gateway.host
    if is_loopback(host) or host in ("0.0.0.0", "::"):
        return "localhost"
    return host if ":" not in host or host.startswith("[") else f"[{host}]"


def connection_string(config: Config, token: str | None, *, port: int | None = None) -> str:
    """``sc://HOST:PORT/;token=TOKEN[;use_ssl=true]`` for this server's gateway.

    ``port`` is the bound port when ``[gateway] port`` is 0; ``token`` is the user's API
    token or JWT (never a driver's), or None where the gateway takes none (``[auth] mode``
    ``none``; ``proxy``, where the proxy in front names the caller).
    """
    bound = port if port is not None else config.gateway.port
    if not bound:
        raise ConfigError("the Spark Connect gateway is off: set [gateway] port (e.g. 15002)")
    parts = [f"sc://{gateway_host(config)}:{bound}/"]
    if token is not None:
        if not _TOKEN.fullmatch(token) or "/" in token:
            raise InvalidInput("that is not a token a connection string can carry")
        parts.append(f"token={token}")
    if config.server.tls_cert is not None:
        parts.append("use_ssl=true")
    return ";".join(parts)
