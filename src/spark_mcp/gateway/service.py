"""The twelve RPCs of ``SparkConnectService``, each handled on purpose.

Requests arrive and responses leave as bytes (no (de)serialiser on either side): a request
is decoded here only after its nesting is checked (``spark.wire.messages``), and result
bytes flow back untouched but for masked secrets, never decoded. Every request is stamped
with the caller's own identity before it is passed on (``identify``), so each principal
only ever reaches its own sessions and operations on its own driver.

=================  ==========================================================================
ExecutePlan        a relation, SQL command or other command, governed (``govern``,
                   ``commands``, ``catalog``) before it is passed on; listings filtered
AnalyzePlan        every plan in it governed like a plan to run; the answer scrubbed
Config             reads answered with secrets redacted; changes only to harmless keys
                   without ``sql.admin`` (``conf``)
AddArtifacts       each artifact checked as it streams in: data passes, code needs
                   ``code.run`` (``artifacts``)
ArtifactStatus,    about the caller's own session or operations (its identity is stamped
Interrupt,         on them); passed on, answers scrubbed; a ``ReleaseExecute`` of the
ReattachExecute,   responses up to one the client has read is acknowledged here
ReleaseExecute,    (``release_execute``)
ReleaseSession,
FetchErrorDetails,
GetStatus,
CloneSession
=================  ==========================================================================

``FetchErrorDetails`` answers lose the driver's JVM stack traces, as every error spark-mcp
shows does. Any other method of this service, or any other service, is answered ``UNIMPLEMENTED`` by
gRPC itself: nothing is forwarded that is not listed here.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import grpc
import grpc.aio
import structlog
from pyspark.sql.connect.proto import base_pb2, relations_pb2

from spark_mcp.calls import note
from spark_mcp.config import GatewayConfig
from spark_mcp.errors import InvalidInput
from spark_mcp.gateway import artifacts, conf
from spark_mcp.gateway.calls import CallRunner, GatewayCall, UpstreamError, Withheld
from spark_mcp.gateway.catalog import RowFilter, govern_catalog
from spark_mcp.gateway.commands import govern_command
from spark_mcp.gateway.govern import Governor
from spark_mcp.gateway.sessions import session_id_of
from spark_mcp.scope_gate import changes_scope
from spark_mcp.spark.analyze import Analysis
from spark_mcp.spark.wire.messages import M, decode, open_plan
from spark_mcp.spark.wire.requests import identify, interrupt_request
from spark_mcp.spark.wire.responses import error_details, filter_rows, mask, scrub_bytes
from spark_mcp.statement import Danger, DangerKind, StatementFacts, StatementKind

SERVICE_NAME = "spark.connect.SparkConnectService"
_INTERRUPT_S = 30.0  # for the interrupt of an operation whose client went away
Context = Any  # grpc.aio.ServicerContext (untyped)
log = structlog.get_logger(__name__)

# The RPCs that only act on the caller's own session or operations: request and answer types.
_SESSION_CALLS: dict[str, tuple[type[Any], type[Any]]] = {
    "ArtifactStatus": (base_pb2.ArtifactStatusesRequest, base_pb2.ArtifactStatusesResponse),
    "Interrupt": (base_pb2.InterruptRequest, base_pb2.InterruptResponse),
    "ReleaseExecute": (base_pb2.ReleaseExecuteRequest, base_pb2.ReleaseExecuteResponse),
    "ReleaseSession": (base_pb2.ReleaseSessionRequest, base_pb2.ReleaseSessionResponse),
    "FetchErrorDetails": (base_pb2.FetchErrorDetailsRequest, base_pb2.FetchErrorDetailsResponse),
    "GetStatus": (base_pb2.GetStatusRequest, base_pb2.GetStatusResponse),
    "CloneSession": (base_pb2.CloneSessionRequest, base_pb2.CloneSessionResponse),
}

# Those that could cut short an operation the gateway runs in the session for its checks.
_CUTTING = frozenset({"Interrupt", "ReleaseExecute", "ReleaseSession"})

# Those that only end or ask about what runs on the driver. When the caller's driver is not
# running (stopped when idle, or by an admin), nothing is there to end or ask about: they are
# answered here, as the driver would answer for nothing, and start no driver. PySpark sends a
# ReleaseSession at every ``spark.stop()``; starting a whole driver to release a session it
# cannot have would cost a quota slot and the seconds of a start.
_ANSWERED_WITHOUT_DRIVER = frozenset(
    {"Interrupt", "ReleaseExecute", "ReleaseSession", "FetchErrorDetails", "GetStatus"}
)


class SparkConnectGateway:
    def __init__(self, runner: CallRunner, config: GatewayConfig) -> None:
        self._runner = runner
        self._config = config
        self._release_passed_on = self._session_call("ReleaseExecute")
        self._interrupts: set[asyncio.Task[None]] = set()

    def handler(self) -> grpc.GenericRpcHandler:
        unary, stream = grpc.unary_unary_rpc_method_handler, grpc.unary_stream_rpc_method_handler
        methods: dict[str, grpc.RpcMethodHandler] = {
            "ExecutePlan": stream(self.execute_plan),
            "AnalyzePlan": unary(self.analyze_plan),
            "Config": unary(self.config),
            "AddArtifacts": grpc.stream_unary_rpc_method_handler(self.add_artifacts),
            "ReattachExecute": stream(self.reattach_execute),
        }
        for name in _SESSION_CALLS:
            methods[name] = unary(self.release_execute if name == "ReleaseExecute" else self._session_call(name))
        return grpc.method_handlers_generic_handler(SERVICE_NAME, methods)

    # -- helpers ------------------------------------------------------------------------

    def _decode(self, cls: type[M], data: bytes) -> M:
        return decode(cls, data, max_depth=self._config.max_plan_depth)

    def _open(self, plan: base_pb2.Plan) -> Any:
        return open_plan(plan, max_bytes=self._config.max_message_bytes, max_depth=self._config.max_plan_depth)

    def _relation(self, plan: base_pb2.Plan) -> relations_pb2.Relation:
        opened = self._open(plan)
        if not isinstance(opened, relations_pb2.Relation):
            raise InvalidInput("an analysis takes a relation (a DataFrame), not a command")
        return opened

    @staticmethod
    async def _unary(call: GatewayCall, method: str, payload: bytes) -> bytes:
        upstream = call.upstream
        try:
            response: bytes = await upstream.unary(method)(payload, metadata=upstream.metadata, timeout=call.timeout())
        except grpc.aio.AioRpcError as exc:
            raise UpstreamError(exc) from None
        return response

    @staticmethod
    async def _stream(call: GatewayCall, method: str, payload: bytes) -> AsyncIterator[bytes]:
        """The driver's answers as they come, secrets masked: never decoded."""
        upstream = call.upstream
        answers = upstream.stream(method)(payload, metadata=upstream.metadata, timeout=call.timeout())
        secrets = call.secrets
        try:
            async for chunk in answers:
                yield mask(chunk, secrets)
        except grpc.aio.AioRpcError as exc:
            raise UpstreamError(exc) from None
        finally:
            answers.cancel()  # the client went away or failed: stop reading (no-op when done)

    # -- ExecutePlan --------------------------------------------------------------------

    async def execute_plan(self, data: bytes, context: Context) -> AsyncIterator[bytes]:
        async with self._runner.call("ExecutePlan", context) as call:
            request = self._decode(base_pb2.ExecutePlanRequest, data)
            session_id = call.own_session(request.session_id)
            listing: RowFilter | None = None
            # Held from the analysis until the answer is complete, so that a USE or SET sent
            # meanwhile in the same session cannot make Spark run what was judged on other names.
            hold = await call.hold(session_id)
            governor = Governor(call, session_id, alone=hold.alone)
            try:
                with call.governing():
                    note(session_id=session_id)
                    opened = self._open(request.plan)
                    if isinstance(opened, relations_pb2.Relation):
                        if opened.WhichOneof("rel_type") == "catalog":
                            listing = await govern_catalog(governor, opened.catalog)
                        else:
                            governor.enforce(await governor.relation(opened))
                    else:
                        verdict = await govern_command(governor, opened)
                        if verdict is not None and changes_scope(verdict.facts) and not hold.is_alone:
                            # It runs alone in its session, judged again once it is.
                            await hold.alone()
                            verdict = await govern_command(governor, opened)
                        if verdict is not None:
                            governor.enforce(verdict)
                        else:
                            note(decision="allowed", kind=StatementKind.METADATA.value)
                        listing = governor.listing
                identify(request, call.principal.id)
                if listing is None:
                    if _reattachable(request):
                        async for chunk in self._stream(call, "ExecutePlan", request.SerializeToString()):
                            yield chunk
                        return
                    async for chunk in self._unattached(call, request):
                        yield chunk
                    return
                async for chunk in self._listing(call, request, listing):
                    yield chunk
            finally:
                hold.release()
                if governor.changes_session:
                    call.verdicts.forget(call.principal.id, session_id)

    async def _unattached(self, call: GatewayCall, request: base_pb2.ExecutePlanRequest) -> AsyncIterator[bytes]:
        """A stream no one can reattach to: when its client goes away before the end, the
        operation is interrupted. Spark would run it on, keeping every answer nobody reads
        (a big one took its driver down)."""
        if not request.operation_id:
            request.operation_id = str(uuid.uuid4())  # Spark would make one up: ours can be named
        complete = False
        try:
            async for chunk in self._stream(call, "ExecutePlan", request.SerializeToString()):
                yield chunk
            complete = True
        finally:
            if not complete:
                stop = interrupt_request(
                    session_id=request.session_id, operation_id=request.operation_id, user_id=call.principal.id
                )
                task = asyncio.ensure_future(self._interrupt(call, stop))  # the handler is being cancelled
                self._interrupts.add(task)
                task.add_done_callback(self._interrupts.discard)

    @staticmethod
    async def _interrupt(call: GatewayCall, request: bytes) -> None:
        upstream = call.upstream
        try:
            await upstream.unary("Interrupt")(request, metadata=upstream.metadata, timeout=_INTERRUPT_S)
        except grpc.aio.AioRpcError as exc:
            log.warning("gateway.interrupt_failed", driver_id=call.driver.id, code=exc.code().name)
        except Exception as exc:  # best effort: the channel may be closing with the server
            log.warning("gateway.interrupt_failed", driver_id=call.driver.id, error=type(exc).__name__)

    async def _listing(
        self, call: GatewayCall, request: base_pb2.ExecutePlanRequest, keep: RowFilter
    ) -> AsyncIterator[bytes]:
        """A catalog listing, filtered. It is run without reattachment, so that no one can
        reattach to the operation and read the rows before they were filtered."""
        reattachable = _reattachable(request)
        kept = [o for o in request.request_options if not o.HasField("reattach_options")]
        del request.request_options[:]
        request.request_options.extend(kept)
        answers = [chunk async for chunk in self._stream(call, "ExecutePlan", request.SerializeToString())]
        last: base_pb2.ExecutePlanResponse | None = None
        for chunk in filter_rows(answers, keep):
            yield chunk
            last = base_pb2.ExecutePlanResponse.FromString(chunk)
        if reattachable:
            # The client expects a reattachable stream to end with ResultComplete.
            done = base_pb2.ExecutePlanResponse(
                session_id=request.session_id,
                server_side_session_id=last.server_side_session_id if last else "",
                operation_id=request.operation_id,
                response_id=str(uuid.uuid4()),
            )
            done.result_complete.SetInParent()
            yield done.SerializeToString()

    async def reattach_execute(self, data: bytes, context: Context) -> AsyncIterator[bytes]:
        async with self._runner.call("ReattachExecute", context) as call:
            request = self._decode(base_pb2.ReattachExecuteRequest, data)
            call.own_session(request.session_id)
            call.record.fields.update(
                session_id=request.session_id, statement=f"reattach to operation {request.operation_id}"
            )
            identify(request, call.principal.id)
            async for chunk in self._stream(call, "ReattachExecute", request.SerializeToString()):
                yield chunk

    # -- AnalyzePlan --------------------------------------------------------------------

    async def analyze_plan(self, data: bytes, context: Context) -> bytes:
        async with self._runner.call("AnalyzePlan", context) as call:
            request = self._decode(base_pb2.AnalyzePlanRequest, data)
            session_id = call.own_session(request.session_id)
            hold = await call.hold(session_id)  # the answer (a schema) must be of what was judged
            identify(request, call.principal.id)  # as sent to the driver: it changes no plan in it
            answer = Withheld(lambda: self._unary(call, "AnalyzePlan", request.SerializeToString()))
            governor = Governor(call, session_id, alone=hold.alone)
            try:
                with call.governing():
                    note(session_id=session_id, statement=f"analyze: {request.WhichOneof('analyze')}")
                    verdict = await governor.analyze_request(request, self._relation, alongside=answer.ask)
                    if verdict is not None:
                        governor.enforce(verdict)
                found = await answer.release()
            finally:
                answer.discard()
                hold.release()
                if governor.changes_session:
                    call.verdicts.forget(call.principal.id, session_id)
            return scrub_bytes(base_pb2.AnalyzePlanResponse, found, call.scrub)
        raise AssertionError("unreachable")  # pragma: no cover - the call aborts or returns

    # -- Config -------------------------------------------------------------------------

    async def config(self, data: bytes, context: Context) -> bytes:
        async with self._runner.call("Config", context) as call:
            request = self._decode(base_pb2.ConfigRequest, data)
            session_id = call.own_session(request.session_id)
            statement = conf.describe(request.operation)
            dropped = conf.drop_client_keys(request.operation)
            keys = conf.keys_set(request.operation)
            with call.governing():
                note(session_id=session_id, statement=statement)
                if dropped and not keys:
                    # Passed on emptied: the driver answers with the session's own ids and changes nothing.
                    note(
                        decision="allowed",
                        kind=StatementKind.SETTING.value,
                        reason="the client's own connection string, not passed on",
                    )
                refused = conf.not_settable(keys)
                if keys:
                    call.verdicts.forget(call.principal.id, session_id)  # e.g. ANSI mode changes analysis
                if refused:
                    danger = Danger(DangerKind.CONFIG, f"sets {', '.join(refused)[:300]}")
                    facts = StatementFacts(StatementKind.ADMIN, "Config", dangers=(danger,))
                    governor = Governor(call, session_id)
                    governor.enforce(governor.judge(Analysis(statement, facts, None, None)))
                elif keys:
                    note(decision="allowed", kind=StatementKind.SETTING.value, reason="harmless settings")
            identify(request, call.principal.id)
            # A change of settings (the time zone, ANSI mode) changes how statements analyse: alone.
            lease = await call.lease(session_id, exclusive=True) if keys else None
            try:
                answer = await self._unary(call, "Config", request.SerializeToString())
            finally:
                if lease is not None:
                    lease.release()
            return conf.redact_response(answer, call.scrub)
        raise AssertionError("unreachable")  # pragma: no cover

    # -- AddArtifacts -------------------------------------------------------------------

    async def add_artifacts(self, requests: AsyncIterator[bytes], context: Context) -> bytes:
        async with self._runner.call("AddArtifacts", context) as call:
            upstream = call.upstream
            upload = upstream.client_stream("AddArtifacts")(metadata=upstream.metadata, timeout=call.timeout())
            names: list[str] = []
            try:
                session: str | None = None
                async for data in requests:
                    request = self._decode(base_pb2.AddArtifactsRequest, data)
                    if session is None:
                        session = call.own_session(request.session_id)
                        call.verdicts.forget(call.principal.id, session)
                    elif request.session_id != session:
                        raise InvalidInput("one upload stream belongs to one session")
                    for name in artifacts.names_in(request):
                        names.append(name)
                        statement = f"addArtifacts: {', '.join(names)[:2000]}"
                        call.record.fields.update(session_id=session, statement=statement)
                        action = artifacts.action_for(name)
                        if action is not None:
                            with call.governing():
                                call.app.governance.require(call.principal, action)
                    identify(request, call.principal.id)
                    await upload.write(request.SerializeToString())
                await upload.done_writing()
                answer: bytes = await upload
            except grpc.aio.AioRpcError as exc:
                raise UpstreamError(exc) from None
            except BaseException:
                upload.cancel()
                raise
            call.record.fields.update(decision="allowed")
            return scrub_bytes(base_pb2.AddArtifactsResponse, answer, call.scrub)
        raise AssertionError("unreachable")  # pragma: no cover

    # -- the calls about one's own session ----------------------------------------------

    async def release_execute(self, data: bytes, context: Context) -> bytes:
        """A release of the responses up to one the client has read is acknowledged here, once
        the caller is verified, and not passed on. PySpark sends one per result chunk: passed on
        (with a route and a record each), they cost a large result as much as its data did.
        The driver needs none of them: it drops what it sent beyond its retry buffer by itself
        (``observerRetryBufferSize``), and ``release_all``, passed on as the other calls about
        one's own operations are, frees the rest when the client is done."""
        try:
            request = self._decode(base_pb2.ReleaseExecuteRequest, data)
            session_id_of(request.session_id)
        except InvalidInput:
            request = None  # the full path refuses it, in its own words
        if request is None or request.WhichOneof("release") != "release_until":
            answer: bytes = await self._release_passed_on(data, context)
            return answer
        await self._runner.authenticate("ReleaseExecute", context)
        acknowledged = base_pb2.ReleaseExecuteResponse(session_id=request.session_id, operation_id=request.operation_id)
        return acknowledged.SerializeToString()  # type: ignore[no-any-return]

    def _session_call(self, rpc: str) -> Any:
        request_type, answer_type = _SESSION_CALLS[rpc]

        audited = rpc != "ReleaseExecute"
        start_driver = rpc not in _ANSWERED_WITHOUT_DRIVER

        async def handle(data: bytes, context: Context) -> bytes:
            async with self._runner.call(rpc, context, audited=audited, start_driver=start_driver) as call:
                request = self._decode(request_type, data)
                if rpc == "ReleaseSession" or not call.has_driver:
                    # Never refused for the number of sessions, nor counted: it ends one, or it is
                    # answered for a driver that is not running, where no session can be.
                    session_id_of(request.session_id)
                else:
                    call.own_session(request.session_id)
                if rpc == "CloneSession":
                    # A new session: named by the client, or made up here (Spark would make one up unseen).
                    if not request.HasField("new_session_id"):
                        request.new_session_id = str(uuid.uuid4())
                    call.own_session(request.new_session_id, "new_session_id")
                call.record.fields.update(session_id=request.session_id, statement=_about(rpc, request))
                if rpc == "ReleaseSession":
                    call.verdicts.forget(call.principal.id, request.session_id)
                    call.sessions.forget(call.principal.id, request.session_id)
                if not call.has_driver:
                    call.record.fields.update(statement=f"{_about(rpc, request)} (no driver running: nothing to do)")
                    return _answer_for_nothing(answer_type, request)
                identify(request, call.principal.id)
                # One that could cut short the gateway's own checks in the session waits for them.
                lease = await call.check(request.session_id, cutting=True) if rpc in _CUTTING else None
                try:
                    answer = await self._unary(call, rpc, request.SerializeToString())
                finally:
                    if lease is not None:
                        lease.release()
                if rpc == "FetchErrorDetails":
                    return error_details(answer, call.scrub)
                return scrub_bytes(answer_type, answer, call.scrub)
            raise AssertionError("unreachable")  # pragma: no cover

        handle.__name__ = rpc
        return handle


def _reattachable(request: base_pb2.ExecutePlanRequest) -> bool:
    options = request.request_options
    return any(o.HasField("reattach_options") and o.reattach_options.reattachable for o in options)


def _answer_for_nothing(answer_type: type[Any], request: Any) -> bytes:
    """The answer to a call about a session on a driver that is not running: nothing was
    interrupted, released or found. It names the caller's session, as PySpark checks."""
    answer = answer_type(session_id=request.session_id)
    if answer_type is base_pb2.ReleaseExecuteResponse:
        answer.operation_id = request.operation_id
    return answer.SerializeToString()  # type: ignore[no-any-return]


def _about(rpc: str, request: Any) -> str:
    if rpc == "Interrupt":
        kind = request.WhichOneof("interrupt")
        which = base_pb2.InterruptRequest.InterruptType.Name(request.interrupt_type)
        return f"interrupt {which} {getattr(request, kind) if kind else ''}".strip()
    if rpc in ("ReleaseExecute",):
        return f"release operation {request.operation_id}"
    if rpc == "FetchErrorDetails":
        return f"error details {request.error_id}"
    if rpc == "ArtifactStatus":
        return f"artifact status: {', '.join(request.names)[:500]}"
    return rpc
