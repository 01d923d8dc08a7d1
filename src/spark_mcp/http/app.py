"""``build_http_app(config)``: the one Starlette app behind ``spark-mcp serve --transport http``.

Routes: ``/mcp`` (the SDK's streamable HTTP, authenticated), the Protected Resource
Metadata at ``/.well-known/oauth-protected-resource/mcp`` (token and OIDC modes),
``/healthz`` and ``/readyz``, and the web console at ``/console`` (``[console] enabled``;
it signs people in with the same verifier as ``/mcp``, see ``spark_mcp.console``).
Layers, outermost first: Host/Origin guard (421/403), the request size limit (413), CORS
only when ``server.cors_origins`` names origins, then authentication: the SDK's bearer
middleware with our verifier (``tokens``, ``oidc``), or the trusted-proxy layer (``proxy``).

The SDK app is mounted, so its lifespan does not run by itself: this app's lifespan
enters ``session_manager.run()``, which starts the MCP server's lifespan (the ``App``
with its drivers) once, and stops it at shutdown.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from mcp.server import MCPServer
from mcp.server.auth.middleware.auth_context import AuthContextMiddleware
from mcp.server.auth.middleware.bearer_auth import RequireAuthMiddleware
from mcp.server.auth.provider import TokenVerifier
from mcp.server.auth.settings import AuthSettings
from mcp.server.transport_security import RequestBodyLimitMiddleware, TransportSecuritySettings
from pydantic import AnyHttpUrl
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.routing import Mount, Route
from starlette.types import ASGIApp

from spark_mcp.app import App
from spark_mcp.auth.oidc import OidcVerifier
from spark_mcp.auth.proxy import ProxyVerifier
from spark_mcp.auth.settings import MCP_PATH, base_url, resource_url
from spark_mcp.auth.tokens import ApiTokenVerifier
from spark_mcp.config.model import Config
from spark_mcp.console import build_console
from spark_mcp.console.app import SecurityHeaders
from spark_mcp.errors import ConfigError
from spark_mcp.http.guards import HostGuard, ProxyIdentity
from spark_mcp.http.health import Readiness, healthz, readyz_endpoint
from spark_mcp.identity import os_user, validate_principal_id
from spark_mcp.server import AppRef, IdentitySource, StaticIdentity, VerifiedIdentity, build_server
from spark_mcp.state.db import StateDB, state_path
from spark_mcp.state.tokens import TokenStore

_LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_exposure(config: Config) -> None:
    """Refuse to serve without authentication anywhere but loopback."""
    if config.auth.mode == "none" and not is_loopback(config.server.host):
        raise ConfigError(
            f"refusing to serve HTTP on {config.server.host} without authentication: anyone who can reach "
            "that address would act as the server's user. Set [auth] mode to tokens, oidc or proxy, "
            "or bind to 127.0.0.1"
        )


def check_tls_files(config: Config) -> None:
    for key, path in (("tls_cert", config.server.tls_cert), ("tls_key", config.server.tls_key)):
        if path is not None and not path.is_file():
            raise ConfigError(f"server.{key}: {path} does not exist or is not a file")


def allowed_hosts(config: Config) -> list[str]:
    """``server.allowed_hosts``, else the loopback names (on loopback) plus the public URL's host."""
    if config.server.allowed_hosts:
        return [h.lower() for h in config.server.allowed_hosts]
    hosts: list[str] = []
    if is_loopback(config.server.host):
        hosts += [f"{name}:*" for name in _LOOPBACK_NAMES]
    elif config.server.host not in ("0.0.0.0", "::"):
        hosts += [config.server.host.lower(), f"{config.server.host.lower()}:*"]
    if config.server.public_url:
        parts = urlsplit(config.server.public_url)
        hosts += [parts.netloc.lower(), f"{(parts.hostname or '').lower()}:*"]  # as clients send Host
    if not hosts:
        raise ConfigError(
            f"serving on {config.server.host} needs the names clients use: set server.public_url "
            '(e.g. "https://spark.example.com") or server.allowed_hosts'
        )
    return list(dict.fromkeys(hosts))


def allowed_origins(config: Config) -> list[str]:
    if config.server.allowed_origins:
        return [o.lower() for o in config.server.allowed_origins]
    # Browsers send the scheme they used: https when this server serves TLS itself.
    scheme = "https" if config.server.tls_cert else "http"
    origins = [f"{scheme}://{name}:*" for name in _LOOPBACK_NAMES] if is_loopback(config.server.host) else []
    if config.server.public_url:
        parts = urlsplit(config.server.public_url)
        origins.append(f"{parts.scheme}://{parts.netloc}".lower())
    return [*origins, *(o.lower() for o in config.server.cors_origins)]


@dataclass
class HttpService:
    """The built app and the parts tests and the CLI look at."""

    asgi: Starlette
    server: MCPServer
    ref: AppRef
    verifier: Any
    tokens: TokenStore | None
    resource: str
    console: SecurityHeaders | None = None


def build_http_app(config: Config, *, app: App | None = None, environ: Mapping[str, str] | None = None) -> HttpService:
    """The HTTP app for ``config``. With ``app`` it serves that running app (tests share one)."""
    check_exposure(config)
    check_tls_files(config)
    env = dict(os.environ if environ is None else environ)
    resource = resource_url(config)
    hosts, origins = allowed_hosts(config), allowed_origins(config)
    mode = config.auth.mode

    db: StateDB | None = None
    tokens: TokenStore | None = None
    verifier: Any = None
    bearer: TokenVerifier | None = None
    identity: IdentitySource = VerifiedIdentity()
    if mode == "tokens":
        db = StateDB(state_path(config.home))
        tokens = TokenStore(db)
        bearer = verifier = ApiTokenVerifier(tokens, resource)
    elif mode == "oidc":
        bearer = verifier = OidcVerifier(config.auth.oidc, resource)
    elif mode == "proxy":
        scopes = [*config.auth.scopes, *([config.auth.write_scope] if config.auth.write_scope else [])]
        verifier = ProxyVerifier(
            header=config.auth.proxy.header, trusted=config.auth.proxy.trusted_proxies, resource=resource, scopes=scopes
        )
    else:
        identity = StaticIdentity(validate_principal_id(config.user or os_user()), auth="none")

    settings: AuthSettings | None = None
    if bearer is not None:
        issuer = config.auth.oidc.issuer if mode == "oidc" and config.auth.oidc.issuer else base_url(config)
        settings = AuthSettings(
            issuer_url=AnyHttpUrl(issuer),
            resource_server_url=AnyHttpUrl(resource),
            required_scopes=list(config.auth.scopes),
            validate_token_resource=True,
        )
    ref = AppRef(app)
    server = build_server(
        config if app is None else None, app=app, identity=identity, token_verifier=bearer, auth=settings, ref=ref
    )
    mcp_app: ASGIApp = server.streamable_http_app(
        streamable_http_path=MCP_PATH,
        max_request_body_size=config.server.max_request_bytes,
        transport_security=TransportSecuritySettings(
            enable_dns_rebinding_protection=True, allowed_hosts=hosts, allowed_origins=origins
        ),
        host=config.server.host,
    )
    if isinstance(verifier, ProxyVerifier):
        # No bearer middleware in this mode: the proxy layer sets the user, then the same
        # SDK layers as for bearer tokens require it and expose it to get_access_token().
        mcp_app = ProxyIdentity(
            AuthContextMiddleware(RequireAuthMiddleware(mcp_app, list(config.auth.scopes), None)), verifier
        )

    readiness = Readiness(app=ref.get, db=db, environ=env)

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        try:
            async with server.session_manager.run():
                yield
        finally:
            if db is not None:
                db.close()

    middleware = [
        Middleware(HostGuard, hosts=hosts, origins=origins),
        Middleware(RequestBodyLimitMiddleware, max_body_size=config.server.max_request_bytes),
    ]
    if config.server.cors_origins:
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=list(config.server.cors_origins),
                allow_methods=["GET", "POST", "DELETE", "OPTIONS"],
                allow_headers=[
                    "Authorization",
                    "Content-Type",
                    "Mcp-Session-Id",
                    "MCP-Protocol-Version",
                    "Last-Event-ID",
                ],
                expose_headers=["Mcp-Session-Id", "WWW-Authenticate"],
            )
        )
    routes: list[Route | Mount] = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz_endpoint(readiness), methods=["GET"]),
    ]
    console = None
    if config.console.enabled:
        console = build_console(config, app=ref.get, verifier=verifier, tokens=tokens, resource=resource)
        routes.append(Mount("/console", app=console))
    routes.append(Mount("/", app=mcp_app))
    asgi = Starlette(routes=routes, middleware=middleware, lifespan=lifespan)
    return HttpService(
        asgi=asgi, server=server, ref=ref, verifier=verifier, tokens=tokens, resource=resource, console=console
    )
