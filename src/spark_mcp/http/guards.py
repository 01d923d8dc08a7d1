"""ASGI layers in front of every route: Host/Origin checks, and the trusted-proxy identity.

``HostGuard`` refuses a request whose ``Host`` is not one this server answers to (421),
or whose ``Origin`` is not allowed (403), before anything else reads it: a web page an
attacker serves under a rebound DNS name can reach a loopback server, but not with the
right ``Host``. The MCP transport checks the same settings again on ``/mcp``; this layer
also covers the routes the SDK does not own. Health probes are exempt, since
orchestrators probe by pod address, and they reveal nothing.

``ProxyIdentity`` (``[auth] mode = "proxy"``) turns a trusted proxy's header into the same
authenticated user the SDK's bearer middleware would set, so everything after it (scope
checks, MCP session binding, ``get_access_token()``) works the same way.
"""

from __future__ import annotations

from collections.abc import Sequence

from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from starlette.authentication import AuthCredentials
from starlette.datastructures import Headers
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from spark_mcp.auth.proxy import ProxyVerifier

HEALTH_PATHS = frozenset({"/healthz", "/readyz"})


def _allowed(value: str, allowed: Sequence[str]) -> bool:
    """Exact match, or ``base:*`` for any port of ``base`` (the SDK's rule)."""
    for item in allowed:
        if value == item:
            return True
        if item.endswith(":*") and value.startswith(item[:-1]) and value[len(item) - 1 :].isdigit():
            return True
    return False


class HostGuard:
    def __init__(self, app: ASGIApp, *, hosts: Sequence[str], origins: Sequence[str]) -> None:
        self.app = app
        self.hosts = tuple(hosts)
        self.origins = tuple(origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in HEALTH_PATHS:
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        host = headers.get("host", "").lower()
        if not host or not _allowed(host, self.hosts):
            await PlainTextResponse("Invalid Host header", status_code=421)(scope, receive, send)
            return
        origin = headers.get("origin")
        if origin is not None and not _allowed(origin.lower(), self.origins):
            await PlainTextResponse("Invalid Origin header", status_code=403)(scope, receive, send)
            return
        await self.app(scope, receive, send)


class ProxyIdentity:
    """Set the request's user from the proxy header, only for a trusted peer address."""

    def __init__(self, app: ASGIApp, verifier: ProxyVerifier) -> None:
        self.app = app
        self.verifier = verifier

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            # Whatever an earlier layer set, only this verdict counts.
            scope.pop("user", None)
            scope.pop("auth", None)
            client = scope.get("client")
            peer = client[0] if client else None
            values = Headers(scope=scope).getlist(self.verifier.header)
            token = self.verifier.verify_request(peer, values)
            if token is not None:
                scope["user"] = AuthenticatedUser(token)
                scope["auth"] = AuthCredentials(token.scopes)
        await self.app(scope, receive, send)
