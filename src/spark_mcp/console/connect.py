"""The Spark Connect page: the connection string for the viewer's own driver, and a fresh token for it.

``GET /connect`` shows, when the gateway is on, where the viewer's Spark Connect calls go
(``gateway.routing`` decides: their default profile's Spark driver, or their role's shared
one) and the connection string with the token as a placeholder: a page a GET renders
never carries a credential. ``POST /connect`` (API tokens only) makes a token through the
tokens page's own code path (``actions.issue_token``: CSRF, one audit record, never more
scopes nor a later expiry than the login's) and shows the full string with it once.

Under OIDC the token is the person's own access token from the identity provider; behind
a trusted proxy, and without authentication, the string carries none. Neither gets a
button: spark-mcp makes no credential there.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from spark_mcp.console import source
from spark_mcp.console.actions import issue_token
from spark_mcp.console.core import Console, ConsoleProblem, Login
from spark_mcp.console.pages import EXPIRY_CHOICES, tokens_of, write_allowed
from spark_mcp.gateway.connection import connection_string
from spark_mcp.gateway.routing import route_for
from spark_mcp.gateway.server import is_loopback

# What stands for the token on the page, by [auth] mode (None: the string carries no token).
# Valid token characters, so the string still parses; capitals, so nobody takes it for one.
PLACEHOLDERS = {"tokens": "YOUR_API_TOKEN", "oidc": "YOUR_OIDC_ACCESS_TOKEN"}


def gateway_port(console: Console) -> int | None:
    """The port the gateway listens on, or None while it is off (or not listening yet)."""
    configured = console.config.gateway.port
    if configured is None:
        return None
    return console.gateway_port if console.gateway_port is not None else (configured or None)


async def connect_page(console: Console, request: Request) -> Response:
    login = await console.require_login(request)
    return _page(console, login)


async def make_connect_token(console: Console, request: Request) -> Response:
    login = await console.require_login(request)
    form = await console.form(request, login)
    store = tokens_of(console, login)
    port = gateway_port(console)
    if port is None:
        raise ConsoleProblem(404, "The Spark Connect gateway is off on this server, so no token was made for it.")
    name = f"spark-connect {datetime.now(UTC):%Y-%m-%d %H:%M}"
    async with console.audited(login.app, login.principal, "create_token") as record:
        # The gateway's own checks, before a token is made that it would refuse (noted in the record).
        login.app.governance.require(login.principal, "session.create")
        route_for(login.app, login.principal)
        issued, capped = await issue_token(
            console,
            login,
            store,
            record,
            name=name,
            expires=form.get("expires"),
            write=form.get("write"),
            purpose=" for Spark Connect",
        )
    created = {"id": issued.record.id, "url": connection_string(console.config, issued.token, port=port)}
    return _page(console, login, created=created, capped=capped)


def _page(console: Console, login: Login, **context: Any) -> Response:
    mode = console.mode
    port = gateway_port(console)
    placeholder = PLACEHOLDERS.get(mode)
    url = connection_string(console.config, placeholder, port=port) if port is not None else None
    may_mint = mode == "tokens" and console.tokens is not None and login.session.auth == "token"
    context.setdefault("created", None)
    context.setdefault("capped", False)
    return console.page(
        "connect.html",
        login,
        title="Spark Connect",
        nav="connect",
        configured=console.config.gateway.port is not None,
        url=url,
        placeholder=placeholder,
        mode=mode,
        port=port,
        loopback=is_loopback(console.config.gateway.host),
        route=source.gateway_route(login.app, login.principal),
        may_mint=may_mint,
        expiry_choices=EXPIRY_CHOICES,
        can_write=write_allowed(console, login.session.scopes),
        write_scope=console.config.auth.write_scope,
        **context,
    )
