"""``build_console(...)``: the console's Starlette app, mounted at ``/console`` next to ``/mcp``.

Routes (relative to ``/console``):

    GET  /                          drivers, sessions and recent jobs
    GET  /audit                     recent audit records
    GET  /tokens                    API tokens (mode tokens)
    GET  /connect                   Spark Connect: the connection string for one's own driver
    GET  /login                     sign-in page
    POST /login                     sign in (API token; proxy or none: confirm)
    POST /login/oidc                sign in at the OIDC issuer (PKCE)
    GET  /oidc/callback             the issuer's answer
    POST /logout                    sign out
    POST /drivers/{id}/stop         stop a driver
    POST /sessions/{id}/close       close a session
    POST /jobs/{id}/cancel          cancel a job
    POST /tokens                    make an API token (shown once)
    POST /tokens/{id}/revoke        revoke an API token
    POST /connect                   make an API token for Spark Connect (its string shown once)
    GET  /static/console.<hash>.css the stylesheet

Every answer carries a strict Content-Security-Policy (no script at all, styles from
this server only, forms post only here, no framing), ``no-store`` caching, and a
referrer only within this origin, so an OIDC code in a URL never leaves it (a stricter
``no-referrer`` would make browsers send ``Origin: null`` with the console's own forms).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from starlette.applications import Starlette
from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from spark_mcp.app import App
from spark_mcp.config.model import Config
from spark_mcp.console import actions, connect, login, pages
from spark_mcp.console.core import Console, ConsoleProblem, LoginRequired
from spark_mcp.console.render import css_endpoint, stylesheet
from spark_mcp.errors import ConfigError, InvalidInput, NotFound, PolicyDenied, SparkMcpError
from spark_mcp.state.tokens import TokenStore

log = structlog.get_logger(__name__)

Handler = Callable[[Console, Request], Awaitable[Response]]

_STATUS = ((NotFound, 404), (InvalidInput, 400), (PolicyDenied, 403))
_SECURITY_HEADERS = {
    "content-security-policy": login.csp(),
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "cross-origin-opener-policy": "same-origin",
    "cache-control": "no-store",
}


def _endpoint(console: Console, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """A route's endpoint: the handler, with the console's answers for the ways it can fail."""

    async def endpoint(request: Request) -> Response:
        try:
            return await handler(console, request)
        except LoginRequired:
            return console.redirect("/login")
        except ConsoleProblem as problem:
            return await _problem(console, request, problem.status, problem.message)
        except SparkMcpError as exc:
            status = next((code for kind, code in _STATUS if isinstance(exc, kind)), 500)
            if status == 500:
                log.warning("console.action_failed", code=exc.code, error=exc.message)
            return await _problem(console, request, status, exc.message)

    return endpoint


async def _problem(console: Console, request: Request, status: int, message: str) -> Response:
    try:
        viewer = await console.login_of(request)
    except ConsoleProblem:
        viewer = None
    return console.page("problem.html", viewer, status=status, title="Not done", nav="", message=message)


class SecurityHeaders:
    """Adds the console's security headers to every answer that does not set its own."""

    def __init__(self, app: ASGIApp, console: Console) -> None:
        self.app = app
        self.console = console  # for the HTTP layer and tests: the logins, the OIDC client

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in _SECURITY_HEADERS.items():
                    if name not in headers:
                        headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)


def build_console(
    config: Config,
    *,
    app: Callable[[], App | None],
    verifier: Any,
    tokens: TokenStore | None,
    resource: str,
) -> SecurityHeaders:
    """The console for ``config``, serving the running app ``app()`` returns."""
    from spark_mcp.http.app import is_loopback

    if config.auth.mode == "none" and not is_loopback(config.server.host):
        raise ConfigError("the console, like /mcp, is served without authentication only on loopback")
    css, css_name = stylesheet()
    console = Console(
        config,
        app=app,
        verifier=verifier,
        tokens=tokens,
        resource=resource,
        static_name=css_name,
    )

    def get(path: str, handler: Handler) -> Route:
        return Route(path, _endpoint(console, handler), methods=["GET"])

    def post(path: str, handler: Handler) -> Route:
        return Route(path, _endpoint(console, handler), methods=["POST"])

    routes = [
        get("/", pages.overview),
        get("/audit", pages.audit),
        get("/tokens", pages.tokens),
        get("/connect", connect.connect_page),
        get("/login", login.login_page),
        post("/login", login.login),
        post("/login/oidc", login.oidc_start),
        get("/oidc/callback", login.oidc_callback),
        post("/logout", login.logout),
        post("/drivers/{driver_id}/stop", actions.stop_driver),
        post("/sessions/{session_id}/close", actions.close_session),
        post("/jobs/{job_id}/cancel", actions.cancel_job),
        post("/tokens", actions.create_token),
        post("/tokens/{token_id}/revoke", actions.revoke_token),
        post("/connect", connect.make_connect_token),
        Route(f"/static/{css_name}", css_endpoint(css), methods=["GET"]),
    ]
    return SecurityHeaders(Starlette(routes=routes), console)
