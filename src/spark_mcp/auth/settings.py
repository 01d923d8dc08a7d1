"""What every verifier shares: this server's resource URL and the scopes it asks for."""

from __future__ import annotations

from spark_mcp.config.model import Config

MCP_PATH = "/mcp"


def base_url(config: Config) -> str:
    """Where clients reach this server: ``server.public_url``, else the bound address."""
    if config.server.public_url:
        return config.server.public_url
    scheme = "https" if config.server.tls_cert else "http"
    host = config.server.host
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"  # an IPv6 literal
    return f"{scheme}://{host}:{config.server.port}"


def resource_url(config: Config) -> str:
    """This server's OAuth resource identifier (RFC 8707/9728): ``[auth] resource_url``,
    else the MCP endpoint's public URL. Credentials issued for anything else are refused."""
    return config.auth.resource_url or base_url(config) + MCP_PATH


def token_is_read_only(config: Config, scopes: tuple[str, ...]) -> bool:
    """Without the write scope a credential is read-only (when a write scope is configured)."""
    write = config.auth.write_scope
    return write is not None and write not in scopes
