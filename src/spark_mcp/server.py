"""The MCP server: ``build_server()``, its lifespan, and the middleware around every call.

The middleware is where each request gets its principal (from the ``IdentitySource``, the
one place identity comes from: the launching user on stdio, the verified access token over
HTTP), where each tool call gets exactly one audit record, written before the reply is sent,
with how the caller authenticated and which API token it used (including calls that fail
argument validation, name an unknown tool, or are cancelled), and the one outbound boundary:
every reply, error and resource leaves through it with every registered secret (driver
tokens, profile credentials) and any API token replaced, whatever produced the text (Spark's
error messages, plan text, result rows, resources).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, Literal, NoReturn, Protocol

import anyio
import structlog
from mcp import MCPError
from mcp.server import MCPServer
from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.provider import TokenVerifier
from mcp.server.auth.settings import AuthSettings
from mcp.types import INTERNAL_ERROR

from spark_mcp import __version__
from spark_mcp.app import App
from spark_mcp.audit.calls import REFUSED_UNTIL_NOW, WITHHELD, emit_call
from spark_mcp.auth.claims import identity_of
from spark_mcp.auth.settings import token_is_read_only
from spark_mcp.calls import CallRecord, recording
from spark_mcp.config import Config
from spark_mcp.errors import AuditError
from spark_mcp.identity import Principal, acting_as, os_user, validate_principal_id
from spark_mcp.tools import catalog, plans, queries, resources, sessions
from spark_mcp.tools._base import ServerState
from spark_mcp.tools.schema import compact_schema

log = structlog.get_logger(__name__)

INSTRUCTIONS = """\
spark-mcp runs Apache Spark SQL for you on data your policy lets you read.
Start with `whoami` (what you may do), then `list_namespaces` / `list_tables` /
`describe_table` to find data, `preview_table` to see rows, and `run_sql` for one
statement at a time. Replies are bounded previews with a `result_id`: page with
`fetch_rows`; use `run_sql(summary=true)` to understand a large result without reading
it. Statements still running after `wait_s` return a `job_id`: poll `get_job`, stop
with `cancel_job`. Every statement is checked by Spark's analyzer and your policy before
it runs; a denial names the rule. You need no session_id: a default session is created
on first use (the first call can take a few seconds while a Spark driver starts).
"""


class IdentitySource(Protocol):
    def principal(self, app: App, ctx: Any) -> Principal: ...


class StaticIdentity:
    """stdio and in-memory: the caller is whoever launched the server (``--user``, else the OS user).

    Over HTTP with ``[auth] mode = "none"`` (loopback only) it is that same user, recorded
    with ``auth="none"``.
    """

    def __init__(self, user_id: str, *, auth: str = "stdio") -> None:
        self.user_id = user_id
        self.auth = auth

    def principal(self, app: App, ctx: Any) -> Principal:
        return app.principal(self.user_id, auth=self.auth)


class VerifiedIdentity:
    """HTTP: the principal a verifier vouched for, from the request's verified access token.

    Only ``get_access_token()`` counts: the token the SDK's bearer middleware (or the
    trusted-proxy middleware) verified for this very request. Tool arguments, request
    fields and other headers never name the caller. No verified token means a bug in the
    HTTP stack, and the call fails instead of running as anyone.
    """

    def principal(self, app: App, ctx: Any) -> Principal:
        token = get_access_token()
        identity = identity_of(token.subject, token.scopes, token.claims) if token is not None else None
        if identity is None:
            raise RuntimeError("an HTTP call reached the server without a verified identity")
        return app.principal(
            validate_principal_id(identity.principal),
            groups=identity.groups,
            auth=identity.auth,
            token_id=identity.token_id,
            read_only=token_is_read_only(app.config, identity.scopes),
        )


class AppRef:
    """The running ``App`` a server serves, once its lifespan has started it (else None)."""

    def __init__(self, app: App | None = None) -> None:
        self._apps: list[App] = [app] if app is not None else []

    def get(self) -> App | None:
        return self._apps[-1] if self._apps else None

    def push(self, app: App) -> None:
        self._apps.append(app)

    def pop(self, app: App) -> None:
        self._apps.remove(app)


class CallMiddleware:
    """Binds the principal and writes one audit record per tool call and resource read.

    It fails closed when the audit log cannot be written: a call whose record cannot be
    written gets a JSON-RPC error ``audit_error: ...`` instead of its reply, and while the log
    keeps failing, calls are refused before they run (each refusal tries to write its own
    record; once one is written, calls run again).
    """

    def __init__(self, app: Callable[[], App | None], identity: IdentitySource, *, via: str = "mcp") -> None:
        self._app = app
        self._identity = identity
        self._via = via

    async def __call__(self, ctx: Any, call_next: Any) -> Any:
        if ctx.method not in ("tools/call", "resources/read"):
            return await call_next(ctx)
        app = self._app()
        if app is None:  # the lifespan has not started: nothing to attribute the call to
            return await call_next(ctx)
        params = ctx.params if isinstance(ctx.params, dict) else {}
        tool = str(params.get("name")) if ctx.method == "tools/call" else f"resource:{params.get('uri')}"
        principal = self._identity.principal(app, ctx)
        record = CallRecord(tool=tool, request_id=uuid.uuid4().hex[:16], principal=principal.id)
        record.fields.update(auth=principal.auth, token_id=principal.token_id, via=self._via)
        try:
            if app.audit.failure is not None:
                emit_call(app.audit, record, "error", "audit_error", time.monotonic())
                self._withheld(REFUSED_UNTIL_NOW)
            return await self._audited(app, ctx, call_next, record, principal)
        except AuditError:
            self._withheld(WITHHELD)

    async def _audited(self, app: App, ctx: Any, call_next: Any, record: CallRecord, principal: Principal) -> Any:
        started = time.monotonic()
        outcome: Literal["ok", "error"] = "error"
        error_class: str | None = "cancelled"
        cancelled = False
        try:
            with acting_as(principal), recording(record):
                result = await call_next(ctx)
            is_error = bool(result.get("isError")) if isinstance(result, dict) else False
            outcome = "error" if is_error else "ok"
            error_class = record.fields.get("error_class") or ("invalid_input" if is_error else None)
            return app.redactor.scrub_json(result)
        except anyio.get_cancelled_exc_class():
            error_class, cancelled = "cancelled", True
            raise
        except MCPError as exc:  # a protocol or resource error: its message reaches the client
            error_class = record.fields.get("error_class") or type(exc).__name__
            scrubbed = app.redactor.scrub_json({"message": exc.error.message, "data": exc.error.data})
            raise MCPError(exc.error.code, scrubbed["message"], scrubbed["data"]) from None
        except Exception as exc:  # anything else reaches the client as a generic internal error
            error_class = record.fields.get("error_class") or type(exc).__name__
            raise
        finally:
            try:
                emit_call(app.audit, record, outcome, error_class, started)
            except AuditError:
                if not cancelled:  # replaces the reply with audit_error (``__call__``)
                    raise

    @staticmethod
    def _withheld(what: str) -> NoReturn:
        """A JSON-RPC error, not a tool result: the call produced nothing the client may have."""
        raise MCPError(INTERNAL_ERROR, f"audit_error: {what}")


def build_server(
    config: Config | None = None,
    *,
    app: App | None = None,
    user: str | None = None,
    on_stopped: Callable[[], None] | None = None,
    identity: IdentitySource | None = None,
    token_verifier: TokenVerifier | None = None,
    auth: AuthSettings | None = None,
    ref: AppRef | None = None,
) -> MCPServer:
    """The MCP server. With ``app``, it serves that running app (tests share one);
    otherwise its lifespan starts an app from ``config`` and stops it (and its drivers) at
    exit, then calls ``on_stopped``.

    ``identity`` says who calls (default: the stdio user); the HTTP layer passes a
    ``VerifiedIdentity`` with the ``token_verifier`` and ``auth`` settings that verify each
    request, and a ``ref`` through which it sees the running app (for readiness).
    """
    if app is None and config is None:
        raise ValueError("build_server needs a config or a running app")
    if identity is None:
        user_id = validate_principal_id(
            user or (app.config.user if app else config.user if config else None) or os_user()
        )
        identity = StaticIdentity(user_id)
    current = ref or AppRef()
    if app is not None and current.get() is not app:
        current.push(app)

    @asynccontextmanager
    async def lifespan(_: MCPServer) -> AsyncIterator[ServerState]:
        if app is not None:
            yield ServerState(app=app)
            return
        assert config is not None
        try:
            async with App.running(config) as running:
                current.push(running)
                try:
                    yield ServerState(app=running)
                finally:
                    current.pop(running)
        finally:
            if on_stopped is not None:
                on_stopped()

    server = MCPServer(
        "spark-mcp",
        title="Spark",
        version=__version__,
        instructions=INSTRUCTIONS,
        lifespan=lifespan,
        token_verifier=token_verifier,
        auth=auth,
        middleware=[CallMiddleware(current.get, identity)],
    )
    sessions.register(server)
    queries.register(server)
    catalog.register(server)
    plans.register(server)
    resources.register(server)
    compact_tool_schemas(server)
    return server


def compact_tool_schemas(server: MCPServer) -> None:
    """Rewrite every tool's input and output schema in its compact, equivalent form (``tools.schema``).

    The SDK reads these fields live when it lists tools ("reassigning them later takes
    effect", func_metadata.py); it validates arguments and results with the pydantic
    models, which stay as they are.
    """
    for tool in server._tool_manager.list_tools():  # the registered Tool objects (no public accessor)
        tool.parameters = compact_schema(tool.parameters)
        tool.fn_metadata.output_schema = compact_schema(tool.fn_metadata.output_schema, output=True)
        tool.__dict__.pop("output_schema", None)  # a cached_property over the field above
