"""The console's pages (GET): overview (drivers, sessions, jobs), audit records, API tokens.

Pages only read. Each shows the viewer's own things, or everyone's when the policy
grants it (``authz``): ``driver.admin`` for drivers, sessions and jobs, ``audit.read``
for audit records. There are no pages for one thing by id, so an id cannot be probed
with a GET: every action on an id is a POST (``actions``), checked and audited.
"""

from __future__ import annotations

import time

import anyio
from starlette.requests import Request
from starlette.responses import Response

from spark_mcp.console import audit_view, source
from spark_mcp.console.core import Console, ConsoleProblem, Login
from spark_mcp.state.tokens import IssuedToken, TokenStore

JOBS_SHOWN = 50
ENDED_SHOWN = 5  # drivers that ended lately, and why
EXPIRY_CHOICES = (("1d", "1 day"), ("7d", "7 days"), ("30d", "30 days"), ("90d", "90 days"), ("never", "never"))


async def overview(console: Console, request: Request) -> Response:
    login = await console.require_login(request)
    scope = None if login.everyone else login.id
    return console.page(
        "overview.html",
        login,
        title="Drivers, sessions and jobs",
        nav="overview",
        drivers=source.drivers(login.app, scope),
        ended=source.ended_drivers(login.app, scope, ENDED_SHOWN),
        sessions=source.sessions(login.app, scope),
        jobs=source.jobs(login.app, scope, JOBS_SHOWN),
        now=time.time(),
    )


async def audit(console: Console, request: Request) -> Response:
    login = await console.require_login(request)
    path = login.app.config.audit_path
    principal = None if login.audit_all else login.id
    found = await anyio.to_thread.run_sync(lambda: audit_view.recent(path, principal=principal))
    return console.page(
        "audit.html",
        login,
        title="Audit records",
        nav="audit",
        found=found,
        limit=audit_view.SHOWN,
        scan=audit_view.SCAN,
    )


async def tokens(console: Console, request: Request) -> Response:
    login = await console.require_login(request)
    return await tokens_page(console, login, tokens_of(console, login))


def tokens_of(console: Console, login: Login) -> TokenStore:
    """The token store, when this login may make and revoke API tokens (signed in with one)."""
    if console.tokens is None or login.session.auth != "token":
        raise ConsoleProblem(404, f"API tokens are not used on this server: it authenticates through {console.mode}.")
    return console.tokens


async def tokens_page(
    console: Console, login: Login, store: TokenStore, *, created: IssuedToken | None = None, capped: bool = False
) -> Response:
    """The tokens page: the viewer's tokens, newest first, and ``created`` (shown once) after a POST."""
    records = await anyio.to_thread.run_sync(lambda: store.list(login.id))
    now = time.time()
    return console.page(
        "tokens.html",
        login,
        title="API tokens",
        nav="tokens",
        tokens=[(r, r.state(now)) for r in reversed(records)],
        expiry_choices=EXPIRY_CHOICES,
        can_write=write_allowed(console, login.session.scopes),
        write_scope=console.config.auth.write_scope,
        created=created,
        capped=capped,
    )


def write_allowed(console: Console, scopes: tuple[str, ...]) -> bool:
    """Whether tokens made from this login may carry the write scope: only if the login's does."""
    write = console.config.auth.write_scope
    return write is not None and write in scopes
