"""The console's shared machinery: who is asking, checked forms, pages, and audited actions.

``Console`` holds what lives as long as the server: the logins (``WebSessions``), the
pre-login CSRF key, the OIDC client, the templates. Every request goes through
``login_of``: the cookie must name a live login *and* the credential behind it must
still be good (an API token not revoked or expired, the trusted proxy still vouching for
the same person), or the login ends there. Every POST goes through ``form``: its
``Origin`` must be this console's, its CSRF token the login's own. Every state change
goes through ``audited``: one audit record, ``via = "console"``, written before the
answer, failing closed like MCP calls (``server.CallMiddleware``).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

import anyio
import structlog
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse

from spark_mcp.app import App
from spark_mcp.audit.calls import emit_call
from spark_mcp.audit.refusals import RefusalBudget
from spark_mcp.auth.proxy import ProxyVerifier
from spark_mcp.auth.settings import base_url, token_is_read_only
from spark_mcp.calls import CallRecord, recording
from spark_mcp.config.model import Config
from spark_mcp.console import csrf
from spark_mcp.console.oidc import OidcSignIn
from spark_mcp.console.render import Templates
from spark_mcp.console.websession import CookiePolicy, WebSession, WebSessions
from spark_mcp.errors import AuditError, PolicyDenied, SparkMcpError
from spark_mcp.identity import Principal, acting_as
from spark_mcp.policy import Decision
from spark_mcp.state.tokens import TokenStore

log = structlog.get_logger(__name__)

VIA = "console"
_MAX_FIELDS = 16
_MAX_STATEMENT = 300  # an identity provider's error text comes from the browser's query string


class ConsoleProblem(Exception):
    """A request the console answers with an error page: ``status`` and a message for people."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class LoginRequired(Exception):
    """No live login: the answer is the login page."""

    def __init__(self, why: str | None = None) -> None:
        super().__init__(why or "")
        self.why = why


@dataclass(frozen=True)
class Login:
    """A request's verified viewer: their login, principal, and what the policy grants them here."""

    cookie: str
    session: WebSession
    app: App
    principal: Principal
    admin: Decision  # driver.admin: everyone's drivers, sessions and jobs
    audit_all: bool  # audit.read: everyone's audit records

    @property
    def id(self) -> str:
        return self.principal.id

    @property
    def everyone(self) -> bool:
        return self.admin.allowed


def decision(app: App, principal: Principal, action: str) -> Decision:
    """Governance's decision on ``action`` (``require`` raises on a denial; keep its reason and rule)."""
    try:
        return app.governance.require(principal, action)
    except PolicyDenied as exc:
        return Decision(False, exc.message, exc.rule)


def served_over_tls(config: Config) -> bool:
    """Browsers reach the console over TLS: served directly, or behind a TLS proxy (public_url)."""
    return config.server.tls_cert is not None or base_url(config).startswith("https://")


class Console:
    def __init__(
        self,
        config: Config,
        *,
        app: Callable[[], App | None],
        verifier: Any,
        tokens: TokenStore | None,
        resource: str,
        static_name: str,
    ) -> None:
        self.config = config
        self.mode = config.auth.mode
        self._app = app
        self.verifier = verifier
        self.tokens = tokens
        self.resource = resource
        self.cookies = CookiePolicy(secure=served_over_tls(config))
        self.logins = WebSessions(idle_s=config.console.session_idle_s, max_s=config.console.session_max_s)
        self.login_csrf = csrf.LoginCsrf()
        self.refusals = RefusalBudget()
        public = urlsplit(base_url(config))
        self.base = public.path.rstrip("/") + "/console"
        self.public_origin = f"{public.scheme}://{public.netloc}".lower()
        self.oidc: OidcSignIn | None = None
        if self.mode == "oidc" and config.console.oidc_client_id:
            self.oidc = OidcSignIn(config, resource, base_url(config) + "/console/oidc/callback")
        self.templates = Templates(base=self.base, static_url=f"{self.base}/static/{static_name}")
        # The Spark Connect gateway's bound port, told by the server once it listens
        # (``http.serve.gateway_beside``); needed when ``[gateway] port = 0`` binds any free one.
        self.gateway_port: int | None = None

    # -- who is asking ---------------------------------------------------------------------

    def running_app(self) -> App:
        app = self._app()
        if app is None:
            raise ConsoleProblem(503, "The server is still starting. Reload in a moment.")
        return app

    async def login_of(self, request: Request) -> Login | None:
        cookie = request.cookies.get(self.cookies.session_name)
        session = self.logins.get(cookie)
        if session is None or cookie is None:
            return None
        why = await self._credential_problem(session, request)
        if why is not None:
            self.logins.end(cookie)
            log.info("console.login_ended", principal=session.principal, why=why)
            return None
        app = self.running_app()
        principal = app.principal(
            session.principal,
            groups=session.groups,
            auth=session.auth,
            token_id=session.token_id,
            read_only=token_is_read_only(self.config, session.scopes),
        )
        admin = decision(app, principal, "driver.admin")
        audit_all = decision(app, principal, "audit.read").allowed
        return Login(cookie, session, app, principal, admin, audit_all)

    async def require_login(self, request: Request) -> Login:
        login = await self.login_of(request)
        if login is None:
            raise LoginRequired()
        return login

    async def _credential_problem(self, session: WebSession, request: Request) -> str | None:
        """Why the credential behind a login no longer holds, or None while it does."""
        if session.auth == "token":
            if self.tokens is None or session.token_id is None:
                return "API tokens are not in use"
            store, token_id = self.tokens, session.token_id
            try:
                record = await anyio.to_thread.run_sync(lambda: store.get(token_id))
            except SparkMcpError:
                return "its token no longer exists"
            state = record.state(time.time())
            if state != "active" or record.principal != session.principal:
                return f"its token is {state}"
            return None
        if session.auth == "proxy":
            identity = self.proxy_identity(request)
            return None if identity == session.principal else "the proxy no longer vouches for it"
        return None  # oidc and none: the login's own expiry is the bound

    def proxy_identity(self, request: Request) -> str | None:
        if not isinstance(self.verifier, ProxyVerifier):
            return None
        peer = request.client.host if request.client else None
        token = self.verifier.verify_request(peer, request.headers.getlist(self.verifier.header))
        return token.subject if token is not None else None

    # -- forms -----------------------------------------------------------------------------

    def origin_allowed(self, request: Request) -> bool:
        own = {f"{request.url.scheme}://{request.headers.get('host', '')}".lower(), self.public_origin}
        return csrf.same_origin(request.headers.get("origin"), own)

    async def read_form(self, request: Request) -> FormData:
        if not self.origin_allowed(request):
            raise ConsoleProblem(403, "This form was sent from another site, so it was refused.")
        try:
            return await request.form(max_files=0, max_fields=_MAX_FIELDS, max_part_size=64 * 1024)
        except Exception:
            raise ConsoleProblem(400, "The form could not be read. Go back and try again.") from None

    async def form(self, request: Request, login: Login) -> FormData:
        """The POSTed form of a logged-in page, once its origin and CSRF token check out."""
        form = await self.read_form(request)
        if not csrf.matches(login.session.csrf, form.get(csrf.FIELD)):
            log.warning("console.csrf_refused", principal=login.id, path=request.url.path)
            raise ConsoleProblem(403, "This form has expired or did not come from this console. Reload and retry.")
        return form

    # -- answers ---------------------------------------------------------------------------

    def url(self, path: str = "/") -> str:
        return self.base + path

    def redirect(self, path: str = "/") -> RedirectResponse:
        return RedirectResponse(self.url(path), status_code=303)

    def page(
        self,
        template: str,
        login: Login | None,
        *,
        status: int = 200,
        headers: Mapping[str, str] | None = None,
        **context: Any,
    ) -> HTMLResponse:
        viewer = None
        if login is not None:
            viewer = {
                "id": login.id,
                "roles": login.principal.roles,
                "auth": login.session.auth,
                "everyone": login.everyone,
                "audit_all": login.audit_all,
                "read_only": login.principal.read_only,
                "tokens": self.tokens is not None and login.session.auth == "token",
                "token_id": login.session.token_id,
            }
            context.setdefault("csrf", login.session.csrf)
            context.setdefault("flashes", login.session.take_flashes())
        html = self.templates.render(template, viewer=viewer, **context)
        return HTMLResponse(html, status_code=status, headers=dict(headers or {}))

    # -- audited actions -------------------------------------------------------------------

    @asynccontextmanager
    async def audited(self, app: App, principal: Principal, tool: str, **fields: Any) -> AsyncIterator[CallRecord]:
        """One audit record for the action inside, with ``via = "console"``, written before the answer.

        Fails closed: while the audit log cannot be written, actions are refused before
        they run; an action whose record cannot be written gets an error page, not its result.
        """
        record = CallRecord(tool=f"console.{tool}", request_id=uuid.uuid4().hex[:16], principal=principal.id)
        record.fields.update(auth=principal.auth, token_id=principal.token_id, via=VIA, **fields)
        started = time.monotonic()
        if app.audit.failure is not None:
            self._emit(app, record, "error", "audit_error", started)
            raise ConsoleProblem(503, "Nothing was done: the audit log could not be written until now. Retry.")
        outcome: Literal["ok", "error"] = "error"
        error_class: str | None = "cancelled"
        try:
            with acting_as(principal), recording(record):
                yield record
            outcome, error_class = "ok", None
        except SparkMcpError as exc:
            error_class = record.fields.get("error_class") or exc.code
            raise
        except ConsoleProblem as exc:
            error_class = record.fields.get("error_class") or f"http_{exc.status}"
            raise
        except Exception as exc:
            error_class = type(exc).__name__
            raise
        finally:
            self._emit(app, record, outcome, error_class, started)

    def record_refused_sign_in(
        self,
        app: App,
        *,
        auth: str,
        why: str,
        error_class: str,
        principal: str | None = None,
        token_id: str | None = None,
    ) -> None:
        """One audit record for a sign-in that was refused, as for a refused MCP call: who it
        claimed to be is unknown unless a genuine credential lacked a scope. The page says no
        either way, so a record that cannot be written withholds nothing: it is logged. Past
        the budget (``refusals``), a refusal is only logged."""
        record = self.refusals.record(
            "console.login",
            claimed=principal,
            statement=f"sign in to the console ({auth}): refused: {why}"[:_MAX_STATEMENT],
            auth=auth,
            token_id=token_id,
            via=VIA,
        )
        if record is None:
            log.warning("console.refused_sign_in_unrecorded", auth=auth, why="more refusals than the budget")
            return
        try:
            emit_call(app.audit, record, "error", error_class, time.monotonic())
        except AuditError as exc:
            log.warning("console.refused_sign_in_unrecorded", auth=auth, error=str(exc))

    @staticmethod
    def _emit(
        app: App, record: CallRecord, outcome: Literal["ok", "error"], error_class: str | None, started: float
    ) -> None:
        try:
            emit_call(app.audit, record, outcome, error_class, started)
        except AuditError as exc:
            raise ConsoleProblem(
                503, "The audit log cannot be written, so this answer is withheld. Tell the server's operator."
            ) from exc
