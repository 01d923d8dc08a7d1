"""The gateway's gRPC server: bound beside ``serve`` (stdio or HTTP), in the same event loop.

``running_gateway(config, app)`` starts a ``grpc.aio`` server on ``[gateway] host:port``
and stops it on exit; ``app`` returns the running ``App`` (the one the MCP server serves),
or None while it is starting, when calls are answered ``UNAVAILABLE`` (clients retry).

Exposure follows the HTTP transport's rule, stricter: anywhere but loopback the gateway
needs TLS (``[server] tls_cert``/``tls_key``, ``--tls-cert/--tls-key``) *and*
authentication (``[auth] mode`` other than ``none``), since the client sends its token in
every call. The PySpark client itself sends a token over plain gRPC only to ``localhost``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import grpc
import grpc.aio
import structlog

from spark_mcp.app import App
from spark_mcp.config import Config
from spark_mcp.errors import ConfigError
from spark_mcp.gateway.calls import CallRunner
from spark_mcp.gateway.identity import GatewayAuth
from spark_mcp.gateway.routing import Upstreams
from spark_mcp.gateway.service import SparkConnectGateway
from spark_mcp.gateway.sessions import OpenSessions
from spark_mcp.scope_gate import KeyedScopeGates
from spark_mcp.spark.wire.messages import allow_deep_messages

log = structlog.get_logger(__name__)

_STOP_GRACE_S = 5.0


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_gateway(config: Config) -> None:
    """Refuse a gateway reachable from the network without TLS and authentication."""
    gateway = config.gateway
    if gateway.port is None:
        return
    if not is_loopback(gateway.host):
        if config.auth.mode == "none":
            raise ConfigError(
                f"refusing to serve the Spark Connect gateway on {gateway.host} without authentication: set "
                "[auth] mode to tokens, oidc or proxy, or bind [gateway] host to 127.0.0.1"
            )
        if config.server.tls_cert is None:
            raise ConfigError(
                f"refusing to serve the Spark Connect gateway on {gateway.host} without TLS: tokens would cross "
                "the network in clear text. Set [server] tls_cert and tls_key (--tls-cert/--tls-key), or bind "
                "[gateway] host to 127.0.0.1"
            )
    for key, path in (("tls_cert", config.server.tls_cert), ("tls_key", config.server.tls_key)):
        if path is not None and not path.is_file():
            raise ConfigError(f"server.{key}: {path} does not exist or is not a file")


@dataclass(frozen=True)
class GatewayServer:
    host: str
    port: int  # the bound port (the real one when [gateway] port = 0)
    tls: bool
    scopes: KeyedScopeGates  # each client session's scope gate, by (principal, session id)


@asynccontextmanager
async def running_gateway(config: Config, app: Callable[[], App | None]) -> AsyncIterator[GatewayServer]:
    check_gateway(config)
    gateway = config.gateway
    if gateway.port is None:
        raise ConfigError("[gateway] port is not set: there is no gateway to run")
    if not allow_deep_messages():
        log.warning("gateway.shallow_protobuf", hint="plans nested deeper than 100 levels will be refused")
    auth = GatewayAuth(config)
    upstreams = Upstreams(max_message_bytes=gateway.max_message_bytes)
    sessions = OpenSessions(limit=gateway.max_sessions_per_user, idle_s=config.limits.session_idle_timeout_s)
    runner = CallRunner(app, auth, upstreams, sessions)
    service = SparkConnectGateway(runner, gateway)
    server = grpc.aio.server(
        options=[
            ("grpc.max_send_message_length", gateway.max_message_bytes),
            ("grpc.max_receive_message_length", gateway.max_message_bytes),
            ("grpc.so_reuseport", 0),  # a second server on the same port must fail, not share it
        ]
    )
    server.add_generic_rpc_handlers((service.handler(),))
    host = f"[{gateway.host}]" if ":" in gateway.host and not gateway.host.startswith("[") else gateway.host
    address = f"{host}:{gateway.port}"
    tls = config.server.tls_cert is not None and config.server.tls_key is not None
    try:
        if tls:
            assert config.server.tls_cert is not None and config.server.tls_key is not None
            credentials = grpc.ssl_server_credentials(
                [(config.server.tls_key.read_bytes(), config.server.tls_cert.read_bytes())]
            )
            port = server.add_secure_port(address, credentials)
        else:
            port = server.add_insecure_port(address)
    except RuntimeError as exc:
        auth.close()
        raise ConfigError(f"cannot bind the Spark Connect gateway to {address}: {exc}") from None
    await server.start()
    log.info("gateway.serving", address=f"{host}:{port}", tls=tls, auth=auth.mode)
    try:
        yield GatewayServer(host=gateway.host, port=port, tls=tls, scopes=runner.scopes)
    finally:
        await server.stop(_STOP_GRACE_S)
        await upstreams.close()
        auth.close()
        log.info("gateway.stopped")
