"""The twelve RPCs of ``SparkConnectService``, each handled on purpose.

Requests arrive and responses leave as bytes (no (de)serialiser on either side): a request
is decoded here only after its nesting is checked (``spark.wire.messages``), and result
bytes flow back untouched but for masked secrets, never decoded. Every request is stamped
with the caller's own identity before it is passed on (``identify``), so each principal
only ever reaches its own sessions and operations on its own driver.

=================  ==========================================================================
ExecutePlan        a relation, SQL command or other command, governed (``govern``,
                   ``commands``, ``catalog``) before it is passed on; listings filtered,
                   and a listing inside a plan replaced by its filtered rows
AnalyzePlan        every plan in it governed like a plan to run; the answer scrubbed
Config             reads answered with secrets redacted; changes only to harmless keys
                   without ``sql.admin`` (``conf``)
AddArtifacts       each artifact checked as it streams in: data passes, code needs
                   ``code.run`` (``artifacts``)
ReattachExecute    of the caller's own operation (its identity is stamped on it); passed on
ArtifactStatus,    about the caller's own session or operations (``session_calls``): passed
Interrupt,         on, answers scrubbed; answered here when the driver is not running, and
ReleaseExecute,    a ``ReleaseExecute`` of the responses up to one the client has read is
ReleaseSession,    acknowledged here
FetchErrorDetails,
GetStatus,
CloneSession
=================  ==========================================================================

Any other method of this service, or any other service, is answered ``UNIMPLEMENTED`` by
gRPC itself: nothing is forwarded that is not listed here.
"""

from __future__ import annotations

import asyncio
import functools
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
from spark_mcp.gateway import artifacts, conf, forward
from spark_mcp.gateway.calls import CallRunner, GatewayCall, UpstreamError, Withheld
from spark_mcp.gateway.catalog import RowFilter, govern_catalog, inline_listings
from spark_mcp.gateway.commands import govern_command
from spark_mcp.gateway.govern import Governor
from spark_mcp.gateway.session_calls import SESSION_CALLS, SessionCalls
from spark_mcp.scope_gate import changes_scope
from spark_mcp.spark.analyze import Analysis
from spark_mcp.spark.wire.messages import M, decode, open_plan
from spark_mcp.spark.wire.requests import execute_request, identify, interrupt_request
from spark_mcp.spark.wire.responses import filter_rows, scrub_bytes
from spark_mcp.statement import Danger, DangerKind, StatementFacts, StatementKind

SERVICE_NAME = "spark.connect.SparkConnectService"
_INTERRUPT_S = 30.0  # for the interrupt of an operation whose client went away
Context = Any  # grpc.aio.ServicerContext (untyped)
log = structlog.get_logger(__name__)


class SparkConnectGateway:
    def __init__(self, runner: CallRunner, config: GatewayConfig) -> None:
        self._runner = runner
        self._config = config
        self._session_calls = SessionCalls(runner, self._decode)
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
        for name in SESSION_CALLS:
            methods[name] = unary(self._session_calls.handler(name))
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
                            fetch = functools.partial(self._fetch, call, session_id)
                            if await inline_listings(governor, opened, fetch) and request.plan.HasField(
                                "compressed_operation"
                            ):
                                request.plan.root.CopyFrom(opened)  # a compressed plan was opened into a copy
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
                        async for chunk in forward.stream(call, "ExecutePlan", request.SerializeToString()):
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

    @staticmethod
    async def _fetch(call: GatewayCall, session_id: str, relation: relations_pb2.Relation) -> list[bytes]:
        """``relation``'s answers, run in the caller's session as the gateway's own operation."""
        payload = execute_request(
            relation, session_id=session_id, user_id=call.principal.id, operation_id=str(uuid.uuid4())
        )
        return [chunk async for chunk in forward.stream(call, "ExecutePlan", payload)]

    async def _unattached(self, call: GatewayCall, request: base_pb2.ExecutePlanRequest) -> AsyncIterator[bytes]:
        """A stream no one can reattach to: when its client goes away before the end, the
        operation is interrupted. Spark would run it on, keeping every answer nobody reads
        (a big one took its driver down)."""
        if not request.operation_id:
            request.operation_id = str(uuid.uuid4())  # Spark would make one up: ours can be named
        complete = False
        try:
            async for chunk in forward.stream(call, "ExecutePlan", request.SerializeToString()):
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
        answers = [chunk async for chunk in forward.stream(call, "ExecutePlan", request.SerializeToString())]
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
            async for chunk in forward.stream(call, "ReattachExecute", request.SerializeToString()):
                yield chunk

    # -- AnalyzePlan --------------------------------------------------------------------

    async def analyze_plan(self, data: bytes, context: Context) -> bytes:
        async with self._runner.call("AnalyzePlan", context) as call:
            request = self._decode(base_pb2.AnalyzePlanRequest, data)
            session_id = call.own_session(request.session_id)
            hold = await call.hold(session_id)  # the answer (a schema) must be of what was judged
            identify(request, call.principal.id)  # as sent to the driver: it changes no plan in it
            answer = Withheld(lambda: forward.unary(call, "AnalyzePlan", request.SerializeToString()))
            governor = Governor(call, session_id, alone=hold.alone)
            try:
                with call.governing():
                    note(session_id=session_id, statement=f"analyze: {request.WhichOneof('analyze')}")
                    verdict = await governor.analyze_request(request, self._relation, alongside=answer.ask)
                    if verdict is not None:
                        governor.enforce(verdict)
                found = governor.analyst.schema_answer
                if found is not None:
                    log.debug("gateway.schema_from_analysis", session_id=session_id)  # one analysis, not two
                else:
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
                answer = await forward.unary(call, "Config", request.SerializeToString())
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


def _reattachable(request: base_pb2.ExecutePlanRequest) -> bool:
    options = request.request_options
    return any(o.HasField("reattach_options") and o.reattach_options.reattachable for o in options)
