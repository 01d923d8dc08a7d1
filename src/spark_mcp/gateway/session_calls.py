"""The RPCs that only act on the caller's own session or operations.

``ArtifactStatus``, ``Interrupt``, ``ReleaseExecute``, ``ReleaseSession``,
``FetchErrorDetails``, ``GetStatus`` and ``CloneSession`` each name one of the caller's
sessions (within its limit) and are stamped with the caller's identity, so that on the
driver they reach only that principal's sessions and operations; then they are passed on,
and their answers scrubbed (an error's details lose the driver's JVM stack traces).

Those that only end or ask about what runs on the driver are answered here, as the driver
would answer for nothing, when the caller's driver is not running (stopped when idle, or
by an admin): PySpark sends a ``ReleaseSession`` at every ``spark.stop()``, and starting a
whole driver to release a session it cannot have would cost a quota slot and the seconds of
a start. A ``ReleaseExecute`` of the responses up to one the client has read is acknowledged
here once the caller is verified (``release_execute``).
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from pyspark.sql.connect.proto import base_pb2

from spark_mcp.errors import InvalidInput
from spark_mcp.gateway import forward
from spark_mcp.gateway.calls import CallRunner
from spark_mcp.gateway.sessions import session_id_of
from spark_mcp.spark.wire.requests import identify
from spark_mcp.spark.wire.responses import error_details, scrub_bytes

Context = Any  # grpc.aio.ServicerContext (untyped)
Handler = Callable[[bytes, Context], Awaitable[bytes]]
Decoder = Callable[[type[Any], bytes], Any]

# Request and answer types.
SESSION_CALLS: dict[str, tuple[type[Any], type[Any]]] = {
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

# Those answered here, for nothing, when the caller's driver is not running (see above).
_ANSWERED_WITHOUT_DRIVER = frozenset(
    {"Interrupt", "ReleaseExecute", "ReleaseSession", "FetchErrorDetails", "GetStatus"}
)


class SessionCalls:
    def __init__(self, runner: CallRunner, decode: Decoder) -> None:
        self._runner = runner
        self._decode = decode
        self._release_passed_on = self.handler("ReleaseExecute", passed_on=True)

    def handler(self, rpc: str, *, passed_on: bool = False) -> Handler:
        """The handler of ``rpc``; for ``ReleaseExecute``, ``release_execute`` unless ``passed_on``."""
        if rpc == "ReleaseExecute" and not passed_on:
            return self.release_execute
        request_type, answer_type = SESSION_CALLS[rpc]
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
                    answer = await forward.unary(call, rpc, request.SerializeToString())
                finally:
                    if lease is not None:
                        lease.release()
                if rpc == "FetchErrorDetails":
                    return error_details(answer, call.scrub)
                return scrub_bytes(answer_type, answer, call.scrub)
            raise AssertionError("unreachable")  # pragma: no cover

        handle.__name__ = rpc
        return handle

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
            return await self._release_passed_on(data, context)
        await self._runner.authenticate("ReleaseExecute", context)
        acknowledged = base_pb2.ReleaseExecuteResponse(session_id=request.session_id, operation_id=request.operation_id)
        return acknowledged.SerializeToString()  # type: ignore[no-any-return]


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
