"""One RPC being served: its principal, its driver, its one audit record, and its errors.

``CallRunner.call`` wraps every handler: it authenticates the call (refusing it with
``UNAUTHENTICATED`` before anything else happens), requires ``session.create`` (a Spark
Connect session is a session), routes it to the principal's driver, and writes exactly
one audit record when the call ends, with the same fields as a tool call plus ``via =
"gateway"``, before the final status reaches the client. The record is written on a worker
thread (it is fsync-ed), so one client's audit record never stalls another's result stream.
It fails closed like MCP calls: while the audit log cannot be written, every call is refused
with ``UNAVAILABLE`` before anything reaches a driver, and a call whose record cannot be
written ends with that status instead of its own (``audit_error`` in the status details).
A call refused for its credential is recorded too, as ``(unknown)`` (or the owner of a
genuine credential short of a scope), within a budget (``audit.refusals``).
``ReleaseExecute`` is checked like every call but not recorded: it only frees the server's
buffer of the caller's own operation, and PySpark sends one per result chunk (those, releases
of what the client has read, only pass ``authenticate`` and are answered by the service).
Errors become gRPC statuses in one place, with the text an agent would read
(``policy_denied: <reason> [rule: <rule>]``); an error the driver sent is passed on with its
details, every string in it scrubbed.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any, Literal, NoReturn

import anyio
import grpc
import grpc.aio
import structlog

from spark_mcp.app import App
from spark_mcp.audit.calls import REFUSED_UNTIL_NOW, WITHHELD, emit_call
from spark_mcp.audit.refusals import RefusalBudget
from spark_mcp.calls import CallRecord, recording
from spark_mcp.drivers import Driver
from spark_mcp.drivers.endings import ended_session
from spark_mcp.errors import (
    AuditError,
    DriverError,
    InvalidInput,
    LimitExceeded,
    NotFound,
    PolicyDenied,
    QueryCancelled,
    QueryTimedOut,
    SparkError,
    SparkMcpError,
)
from spark_mcp.gateway.identity import Forbidden, GatewayAuth, Metadata, Unauthenticated
from spark_mcp.gateway.routing import Upstream, Upstreams, driver_for, running_driver_for
from spark_mcp.gateway.sessions import OpenSessions, session_id_of
from spark_mcp.gateway.verdicts import VerdictCache
from spark_mcp.identity import Principal, acting_as
from spark_mcp.scope_gate import KeyedScopeGates, Lease, take_lease
from spark_mcp.spark.wire.responses import error_info, scrub_status, status_trailers

log = structlog.get_logger(__name__)

_STATUS: list[tuple[type[SparkMcpError], grpc.StatusCode]] = [
    (Unauthenticated, grpc.StatusCode.UNAUTHENTICATED),
    (Forbidden, grpc.StatusCode.PERMISSION_DENIED),
    (PolicyDenied, grpc.StatusCode.PERMISSION_DENIED),
    (InvalidInput, grpc.StatusCode.INVALID_ARGUMENT),
    (NotFound, grpc.StatusCode.NOT_FOUND),
    (LimitExceeded, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (DriverError, grpc.StatusCode.UNAVAILABLE),
    (QueryTimedOut, grpc.StatusCode.DEADLINE_EXCEEDED),
    (QueryCancelled, grpc.StatusCode.CANCELLED),
    (SparkError, grpc.StatusCode.INVALID_ARGUMENT),
]


def status_of(exc: SparkMcpError) -> tuple[grpc.StatusCode, str]:
    """The gRPC status and the text a client sees: what an agent reads for the same error."""
    code = next((status for kind, status in _STATUS if isinstance(exc, kind)), grpc.StatusCode.INTERNAL)
    if isinstance(exc, SparkError):
        return code, f"{exc.error_class}: {exc.message}"
    if isinstance(exc, PolicyDenied):
        return code, f"{exc.code}: {exc.message} [rule: {exc.rule}]"
    return code, f"{exc.code}: {exc.message}"


# Spark's answer to a call in a session the driver does not have: it was made on another driver.
SESSION_CHANGED = "INVALID_HANDLE.SESSION_CHANGED"


def error_class_of(exc: SparkMcpError) -> str:
    return exc.error_class if isinstance(exc, SparkError) else exc.code


def _audit_failure(what: str) -> tuple[grpc.StatusCode, str, tuple[tuple[str, str | bytes], ...]]:
    """The status of a call refused, or withheld, because the audit log cannot be written: the
    words an agent reads for the same (``audit.calls``), with the stable code in the trailers."""
    code, text = grpc.StatusCode.UNAVAILABLE, f"{AuditError.code}: {what}"
    return code, text, status_trailers(code.value[0], text, f"spark_mcp.{AuditError.code}")


@dataclass(frozen=True)
class Link:
    """The principal's driver and the channel to it."""

    driver: Driver
    upstream: Upstream


@dataclass
class GatewayCall:
    """What a handler works with: the app, the verified caller, and the way to its driver."""

    app: App
    principal: Principal
    record: CallRecord
    link: Link | None  # None only in a call that starts no driver, when none is running
    deadline: float | None  # the client's deadline (time.monotonic()), when it set one
    verdicts: VerdictCache
    scopes: KeyedScopeGates
    checks: KeyedScopeGates  # the gateway's own operations in a client's session (``check``)
    sessions: OpenSessions  # how many sessions each caller has open
    moved_from: str | None = None  # the driver the call's session was on, when that one ended

    @property
    def has_driver(self) -> bool:
        return self.link is not None

    @property
    def driver(self) -> Driver:
        return self._link().driver

    @property
    def upstream(self) -> Upstream:
        return self._link().upstream

    def _link(self) -> Link:
        if self.link is None:
            # Only a handler that asked for no driver (``start_driver=False``) can get here, and
            # it checks ``has_driver`` first: this is the safe failure if one does not.
            raise DriverError("your Spark driver is not running; run a query to start it")
        return self.link

    @property
    def secrets(self) -> tuple[bytes, ...]:
        """What to mask in result bytes: the serving driver's own token (no other driver's can be
        in its results); text (errors, config, explain) is scrubbed of every registered secret."""
        return (self.driver.token.encode(),)

    def scrub(self, text: str) -> str:
        return self.app.redactor.scrub(text)

    def timeout(self, cap: float | None = None) -> float | None:
        """Seconds left for an upstream call: the client's deadline, within ``cap``."""
        left = None if self.deadline is None else max(self.deadline - time.monotonic(), 0.001)
        if cap is None:
            return left
        return cap if left is None else min(left, cap)

    def own_session(self, value: str, what: str = "session_id") -> str:
        """A session the caller may use: a UUID, and one of its sessions within its limit
        (``sessions.OpenSessions``; a driver creates a session for any new id)."""
        session_id = session_id_of(value, what)
        driver_id = None if self.link is None else self.link.driver.id
        self.moved_from = self.sessions.admit(self.principal.id, session_id, driver_id) or self.moved_from
        return session_id

    async def lease(self, session_id: str, *, exclusive: bool = False) -> Lease:
        """The session's scope gate (``scope_gate.py``): a plan holds it shared from its analysis
        until its answer is complete; what changes name resolution (USE, SET) holds it alone."""
        limit_s = self.app.governance.limits(self.principal).query_timeout_s
        gate = self.scopes.gate((self.principal.id, session_id))
        return await take_lease(gate, exclusive=exclusive, limit_s=limit_s, what=f"Spark session {session_id}")

    async def check(self, session_id: str, *, cutting: bool = False) -> Lease:
        """A lease on the session's check gate. The gateway runs some of its checks as operations
        in the caller's own session (``EXPLAIN``), which an interrupt or release of that session
        would cut short, and a check cut short cannot tell which tables a failing plan names. So
        each such check holds it shared, and what could cut one (``cutting``: an interrupt, a
        release) holds it alone: it waits for the checks under way, and new ones wait for it."""
        limit_s = self.app.governance.limits(self.principal).query_timeout_s
        gate = self.checks.gate((self.principal.id, session_id))
        return await take_lease(gate, exclusive=cutting, limit_s=limit_s, what=f"Spark session {session_id}")

    async def hold(self, session_id: str) -> SessionHold:
        """The session's lease for this call, taken shared (``SessionHold``)."""
        hold = SessionHold(self, session_id)
        await hold.take()
        return hold

    @contextmanager
    def governing(self) -> Iterator[None]:
        """Bind the caller and its record, so governance notes its verdicts for the audit."""
        with acting_as(self.principal), recording(self.record):
            yield


class SessionHold:
    """A call's lease on its session's scope gate: shared, until the call turns out to change
    what names mean in the session (``alone``: released, then taken alone). The caller judges
    again whatever it judged before holding it alone."""

    def __init__(self, call: GatewayCall, session_id: str) -> None:
        self._call = call
        self._session_id = session_id
        self._lease: Lease | None = None
        self.is_alone = False

    async def take(self, *, alone: bool = False) -> None:
        self._lease = await self._call.lease(self._session_id, exclusive=alone)
        self.is_alone = alone

    async def alone(self) -> None:
        if not self.is_alone:
            self.release()
            await self.take(alone=True)

    def release(self) -> None:
        if self._lease is not None:
            self._lease.release()
            self._lease = None


class Withheld:
    """A driver's answer that may be asked for before the caller may have it: started by
    ``ask`` (or by ``release`` when nobody asked earlier), handed out only by ``release``
    once the verdict allows it, and otherwise dropped unread by ``discard``."""

    def __init__(self, fetch: Callable[[], Awaitable[bytes]]) -> None:
        self._fetch = fetch
        self._asked: asyncio.Task[bytes] | None = None

    def ask(self) -> None:
        if self._asked is None:
            self._asked = asyncio.ensure_future(self._fetch())

    async def release(self) -> bytes:
        if self._asked is None:
            return await self._fetch()
        return await self._asked

    def discard(self) -> None:
        asked = self._asked
        if asked is None:
            return
        if not asked.done():
            asked.cancel()
        # Read what it ended with, so that a dropped answer's error is not logged as unhandled.
        asked.add_done_callback(lambda task: task.cancelled() or task.exception())


class UpstreamError(Exception):
    """The driver answered with an error: passed on to the client, scrubbed."""

    def __init__(self, error: grpc.aio.AioRpcError) -> None:
        super().__init__(error.details())
        self.error = error


class CallRunner:
    """Authenticates, routes, audits and translates errors for every RPC."""

    def __init__(
        self, app: Callable[[], App | None], auth: GatewayAuth, upstreams: Upstreams, sessions: OpenSessions
    ) -> None:
        self._app = app
        self._auth = auth
        self._upstreams = upstreams
        self.sessions = sessions
        self.verdicts = VerdictCache()
        self.scopes = KeyedScopeGates()
        self.checks = KeyedScopeGates()
        self.refusals = RefusalBudget()

    @asynccontextmanager
    async def call(
        self,
        rpc: str,
        context: grpc.aio.ServicerContext[Any, Any],
        *,
        audited: bool = True,
        start_driver: bool = True,
    ) -> AsyncIterator[GatewayCall]:
        """The call, routed to the principal's driver, which is started when it is not running;
        with ``start_driver=False`` it is not, and the call has no driver (``has_driver``)."""
        app, principal = await self.authenticate(rpc, context)
        record = CallRecord(tool=f"spark_connect.{rpc}", request_id=uuid.uuid4().hex[:16], principal=principal.id)
        record.fields.update(auth=principal.auth, token_id=principal.token_id, via="gateway")
        if app.audit.failure is not None:
            await self._refuse_unrecordable(app, record, context)
        started = time.monotonic()
        remaining = context.time_remaining()
        outcome: Literal["ok", "error"] = "error"
        error_class: str | None = "cancelled"
        failure: tuple[grpc.StatusCode, str, tuple[tuple[str, str | bytes], ...]] | None = None
        recorded = True
        call: GatewayCall | None = None
        try:
            with acting_as(principal), recording(record):
                app.governance.require(principal, "session.create")
                driver = await (driver_for if start_driver else running_driver_for)(app, principal)
            link = None if driver is None else Link(driver, await self._upstreams.to(driver))
            call = GatewayCall(
                app=app,
                principal=principal,
                record=record,
                link=link,
                deadline=None if remaining is None else started + remaining,
                verdicts=self.verdicts,
                scopes=self.scopes,
                checks=self.checks,
                sessions=self.sessions,
            )
            yield call
            outcome, error_class = "ok", None
        except SparkMcpError as exc:
            error_class = record.fields.get("error_class") or error_class_of(exc)
            code, text = status_of(exc)
            text = app.redactor.scrub(text)
            failure = (code, text, status_trailers(code.value[0], text, f"spark_mcp.{exc.code}"))
        except UpstreamError as exc:
            found, _ = error_info(exc.error.trailing_metadata() or ())
            error_class = found or exc.error.code().name
            details = exc.error.details() or ""
            gone = error_class == SESSION_CHANGED
            if gone and call is not None and call.moved_from is not None:
                details = f"{details} {ended_session(call.moved_from, app.drivers.endings.get(call.moved_from))}"
            # The session is gone, and its error with it: PySpark (4.3) would ask for the error's
            # details in the session it has just closed and show "NO_ACTIVE_SESSION" instead.
            text, trailers = scrub_status(
                details, exc.error.trailing_metadata() or (), app.redactor.scrub, fetchable=not gone
            )
            failure = (exc.error.code(), text, trailers)
        except grpc.aio.AbortError:
            raise
        except Exception as exc:
            log.exception("gateway.crashed", rpc=rpc)
            error_class = "internal_error"
            failure = (
                grpc.StatusCode.INTERNAL,
                f"internal_error: {type(exc).__name__} in {rpc}; the server logged the details",
                (),
            )
        finally:
            if audited or outcome == "error":
                try:
                    await self._record(app, record, outcome, error_class, started)
                except AuditError:
                    # Logged where it was written. A call ending in an exception (cancelled, or
                    # already aborted) keeps it; one that finished has its status withheld below.
                    recorded = False
        if not recorded:
            failure = _audit_failure(WITHHELD)
        if failure is not None:
            code, text, trailers = failure
            await context.abort(code, text, trailers)

    async def authenticate(self, rpc: str, context: grpc.aio.ServicerContext[Any, Any]) -> tuple[App, Principal]:
        """The app and the verified caller, or the call refused with ``UNAUTHENTICATED`` (or
        ``PERMISSION_DENIED`` for a credential without the gateway's scopes)."""
        app = self._app()
        if app is None:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "spark-mcp is starting: retry in a moment")
            raise AssertionError("abort returned")  # pragma: no cover - abort always raises
        metadata = Metadata(tuple(context.invocation_metadata() or ()), context.peer())
        try:
            return app, await self._auth.principal(app, metadata)
        except (Unauthenticated, Forbidden) as exc:
            log.info("gateway.refused", rpc=rpc, peer=metadata.peer, why=exc.code)
            await self._record_refusal(app, rpc, exc)
            code, text = status_of(exc)
            await context.abort(code, text, status_trailers(code.value[0], text, f"spark_mcp.{exc.code}"))
            raise AssertionError("abort returned") from None  # pragma: no cover

    async def _record_refusal(self, app: App, rpc: str, exc: Unauthenticated | Forbidden) -> None:
        """One audit record for a call refused for its credential, within the budget of such
        records (``audit.refusals``: anyone can cause one). The call is refused either way, so
        a record that cannot be written withholds nothing: it is logged."""
        owner = exc.principal if isinstance(exc, Forbidden) else None  # a genuine credential, short of a scope
        record = self.refusals.record(
            f"spark_connect.{rpc}", claimed=owner, statement=f"refused: {exc.message}", via="gateway"
        )
        if record is None:
            return
        try:
            await self._record(app, record, "error", exc.code, time.monotonic())
        except AuditError as error:
            log.warning("gateway.refusal_unrecorded", rpc=rpc, error=str(error))

    async def _refuse_unrecordable(
        self, app: App, record: CallRecord, context: grpc.aio.ServicerContext[Any, Any]
    ) -> NoReturn:
        """Fail closed while the audit log cannot be written, as MCP calls do: refuse the call before
        anything reaches a driver. The refusal is itself recorded when it can be; once one is, the
        log works again and the next call runs."""
        try:
            await self._record(app, record, "error", AuditError.code, time.monotonic())
            code, text, trailers = _audit_failure(REFUSED_UNTIL_NOW)
        except AuditError:
            code, text, trailers = _audit_failure(WITHHELD)
        log.info("gateway.refused", tool=record.tool, principal=record.principal, why=AuditError.code)
        await context.abort(code, text, trailers)
        raise AssertionError("abort returned")  # pragma: no cover - abort always raises

    async def _record(
        self, app: App, record: CallRecord, outcome: Literal["ok", "error"], error_class: str | None, started: float
    ) -> None:
        """Write the call's record off the event loop, exactly once: a cancellation arriving while
        the worker thread writes it waits for that write instead of writing the record again."""
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(emit_call, app.audit, record, outcome, error_class, started)
