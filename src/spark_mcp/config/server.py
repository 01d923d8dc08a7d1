"""How the server is reached: ``[server]`` (stdio or HTTP, TLS, hosts and origins) and ``[gateway]``
(the Spark Connect endpoint)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from spark_mcp.config.base import FrozenModel

# The loop serve runs on: uvloop where installed (auto), insisted on, or asyncio's own.
EventLoop = Literal["auto", "uvloop", "asyncio"]


class ServerConfig(FrozenModel):
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
    event_loop: EventLoop = Field(
        default="auto", description="the event loop serve runs on: auto (uvloop when installed), uvloop or asyncio"
    )
    tune_malloc: bool = Field(
        default=True, description="keep large freed buffers (result chunks) for reuse instead of returning them (glibc)"
    )

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


class GatewayConfig(FrozenModel):
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
    max_sessions_per_user: int = Field(
        default=32,
        ge=1,
        le=10000,
        description="Spark Connect sessions one user may have open through the gateway (each holds driver memory)",
    )

    @field_validator("host")
    @classmethod
    def _host(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9.\-:\[\]]+", value):
            raise ValueError("must be a host name or an IP address")
        return value
