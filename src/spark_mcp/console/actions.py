"""The console's actions (POST): stop a driver, close a session, cancel a job, make or revoke a token.

Each one: the login and the form's CSRF token are checked (``Console.form``); one audit
record is opened (``Console.audited``, ``via = "console"``); the thing is looked up by
id and ``authz.may_act`` decides with governance's ``driver.admin`` decision; a thing
the viewer may not act on is "not found" with the very words an unknown id gets, and the
record keeps who tried, the rule, and the not-found class. Then the domain does it, and
the browser is sent back to the page with a note of what happened.
"""

from __future__ import annotations

import time

import anyio
from starlette.requests import Request
from starlette.responses import Response

from spark_mcp.auth.tokens import parse_duration
from spark_mcp.calls import CallRecord, note
from spark_mcp.console import source
from spark_mcp.console.authz import Kind, may_act
from spark_mcp.console.core import Console, Login, decision
from spark_mcp.console.pages import EXPIRY_CHOICES, tokens_of, tokens_page, write_allowed
from spark_mcp.errors import InvalidInput, JobNotFound, NotFound, PolicyDenied, SessionNotFound
from spark_mcp.state.tokens import IssuedToken, TokenStore


def authorize(login: Login, kind: Kind, owner: str | None, missing: NotFound, *, visible: bool = False) -> None:
    """Raise unless the viewer may act on this thing; note the verdict for the record.

    A thing the viewer may not act on is ``missing`` (not found), unless their own listing
    shows it (a driver shared by their role): then the denial itself, with its rule.
    """
    admin = login.admin
    if owner is not None and owner != login.id and kind is not Kind.TOKEN:
        admin = decision(login.app, login.principal, "driver.admin")  # asked inside the record: noted there
    verdict = may_act(login.id, kind, owner, admin)
    if owner is not None:
        note(decision="allowed" if verdict.allowed else "denied", reason=verdict.reason, rule=verdict.rule)
    if not verdict.allowed:
        if visible:
            raise PolicyDenied(
                f"this {kind.value} is shared with others, so only an admin (driver.admin) may stop it",
                rule=verdict.rule,
            )
        raise missing


async def stop_driver(console: Console, request: Request) -> Response:
    login = await console.require_login(request)
    await console.form(request, login)
    driver_id = request.path_params["driver_id"]
    async with console.audited(login.app, login.principal, "stop_driver", statement=f"stop driver {driver_id}"):
        view = source.find_driver(login.app, driver_id)
        visible = view is not None and source.shows_driver(login.app, view, login.id)
        missing = NotFound(_missing("driver", driver_id))
        authorize(login, Kind.DRIVER, view.owner_key if view else None, missing, visible=visible)
        await source.stop_driver(login.app, driver_id, f"stopped in the web console by {login.id}")
    login.session.flash(f"Driver {driver_id} is stopped.")
    return console.redirect("/")


async def close_session(console: Console, request: Request) -> Response:
    login = await console.require_login(request)
    await console.form(request, login)
    session_id = request.path_params["session_id"]
    async with console.audited(
        login.app, login.principal, "close_session", session_id=session_id, statement=f"close session {session_id}"
    ):
        view = source.find_session(login.app, session_id, None)
        missing = SessionNotFound(_missing("session", session_id))
        authorize(login, Kind.SESSION, view.principal if view else None, missing)
        assert view is not None
        if view.open:
            await source.close_session(login.app, view)
    login.session.flash(
        f"Session {session_id} is closed." if view.open else f"Session {session_id} was already {view.state}."
    )
    return console.redirect("/")


async def cancel_job(console: Console, request: Request) -> Response:
    login = await console.require_login(request)
    await console.form(request, login)
    job_id = request.path_params["job_id"]
    async with console.audited(
        login.app, login.principal, "cancel_job", job_id=job_id, statement=f"cancel job {job_id}"
    ) as record:
        view = source.find_job(login.app, job_id, None)
        authorize(login, Kind.JOB, view.principal if view else None, JobNotFound(_missing("job", job_id)))
        assert view is not None
        record.fields["session_id"] = view.session_id
        state = await source.cancel_job(login.app, view)
    said = f"Job {job_id} had already ended ({state})." if not view.running else f"Job {job_id} is being cancelled."
    login.session.flash(said)
    return console.redirect("/")


async def create_token(console: Console, request: Request) -> Response:
    login = await console.require_login(request)
    form = await console.form(request, login)
    store = tokens_of(console, login)
    name = str(form.get("name") or "").strip()
    async with console.audited(login.app, login.principal, "create_token") as record:
        issued, capped = await issue_token(
            console, login, store, record, name=name or None, expires=form.get("expires"), write=form.get("write")
        )
    return await tokens_page(console, login, store, created=issued, capped=capped)


async def issue_token(
    console: Console,
    login: Login,
    store: TokenStore,
    record: CallRecord,
    *,
    name: str | None,
    expires: object,
    write: object,
    purpose: str = "",
) -> tuple[IssuedToken, bool]:
    """Make an API token for the viewer inside an audited action; also whether its expiry was capped.

    The one way the console makes tokens (the tokens page, the Spark Connect page): the
    token carries ``[auth] scopes``, plus the write scope only when asked for (``write``
    is the checkbox, ``"on"``) *and* the login's own token has it, and it never outlives
    the token that made it. ``expires`` is one of ``EXPIRY_CHOICES``.
    """
    wants_write = write == "on"
    if not isinstance(expires, str) or expires not in dict(EXPIRY_CHOICES):
        raise InvalidInput("choose when the token expires from the list")
    if wants_write and not write_allowed(console, login.session.scopes):
        raise InvalidInput("the token you signed in with cannot make changes, so neither can a token made with it")
    scopes = [*console.config.auth.scopes]
    if wants_write and console.config.auth.write_scope:
        scopes.append(console.config.auth.write_scope)
    seconds = parse_duration(expires)
    expires_at = None if seconds is None else time.time() + seconds
    # A token made here never outlives the token that made it: a stolen short-lived
    # token must not mint a long-lived one.
    capped = False
    parent_id = login.session.token_id
    parent = await anyio.to_thread.run_sync(lambda: store.get(parent_id)) if parent_id else None
    if parent is not None and parent.expires_at is not None and (expires_at is None or expires_at > parent.expires_at):
        expires_at, capped = parent.expires_at, True
    issued = await anyio.to_thread.run_sync(
        lambda: store.create(login.id, scopes=scopes, resource=console.resource, expires_at=expires_at, name=name)
    )
    record.fields["statement"] = (
        f"create token {issued.record.id}{purpose} ({' '.join(issued.record.scopes)}, "
        f"expires {'never' if expires_at is None else int(expires_at)})"
    )
    return issued, capped


async def revoke_token(console: Console, request: Request) -> Response:
    login = await console.require_login(request)
    await console.form(request, login)
    store = tokens_of(console, login)
    token_id = request.path_params["token_id"]
    async with console.audited(login.app, login.principal, "revoke_token", statement=f"revoke token {token_id}"):
        try:
            owner: str | None = (await anyio.to_thread.run_sync(lambda: store.get(token_id))).principal
        except NotFound:
            owner = None
        authorize(login, Kind.TOKEN, owner, NotFound(_missing("token", token_id)))
        await anyio.to_thread.run_sync(lambda: store.revoke(token_id))
    if token_id == login.session.token_id:
        # That was this login's own credential: the login ends with it.
        console.logins.end(login.cookie)
        return console.redirect("/login?ended=revoked")
    login.session.flash(f"Token {token_id} is revoked: it is refused from now on.")
    return console.redirect("/tokens")


def _missing(kind: str, identifier: str) -> str:
    """The same words whether the id is unknown or someone else's."""
    shown = identifier if len(identifier) <= 64 and identifier.isprintable() else "(that id)"
    return f"There is no {kind} {shown} among those you can see. The list shows them."
