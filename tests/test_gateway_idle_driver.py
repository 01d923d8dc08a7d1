"""A notebook whose driver is no longer running: ending or asking about its work starts none.

A driver stops when idle, or when an admin stops it, while notebooks still hold sessions
on it. PySpark sends ``ReleaseSession`` at every ``spark.stop()``, ``ReleaseExecute`` after
each result and ``FetchErrorDetails`` after an error. Routed like any call, each would
start a whole driver (a quota slot, the seconds a start takes) only to end or ask about
what that new driver cannot have. They are answered by the gateway instead, audited, and
the next query starts the driver as it always did.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import grpc
import pytest
from pyspark.sql.connect.proto import base_pb2

from spark_mcp.app import App
from spark_mcp.audit import tail
from tests.gateway_support import Gateway, off_loop, serving_gateway

pytestmark = [pytest.mark.anyio, pytest.mark.spark]

METHOD = "/spark.connect.SparkConnectService/"


@pytest.fixture(scope="module")
async def gateway(app: App) -> AsyncIterator[Gateway]:
    async with serving_gateway(app, "stella") as found:
        yield found


def _requests(session_id: str) -> list[tuple[str, object, type]]:
    release_all = base_pb2.ReleaseExecuteRequest(session_id=session_id, operation_id=str(uuid.uuid4()))
    release_all.release_all.SetInParent()
    interrupt = base_pb2.InterruptRequest(
        session_id=session_id, interrupt_type=base_pb2.InterruptRequest.INTERRUPT_TYPE_ALL
    )
    status = base_pb2.GetStatusRequest(session_id=session_id)
    status.operation_status.SetInParent()
    return [
        ("ReleaseExecute", release_all, base_pb2.ReleaseExecuteResponse),
        ("Interrupt", interrupt, base_pb2.InterruptResponse),
        ("GetStatus", status, base_pb2.GetStatusResponse),
        (
            "FetchErrorDetails",
            base_pb2.FetchErrorDetailsRequest(session_id=session_id, error_id=str(uuid.uuid4())),
            base_pb2.FetchErrorDetailsResponse,
        ),
    ]


async def test_calls_that_end_or_ask_about_work_on_a_stopped_driver_start_none(gateway: Gateway) -> None:
    app = gateway.app
    stella = await off_loop(lambda: gateway.client("stella"))
    assert await off_loop(lambda: stella.range(3).count()) == 3
    driver = app.drivers.current("stella")
    assert driver is not None
    await app.drivers.stop(driver.id, reason="idle")
    assert app.drivers.current("stella") is None

    session_id = str(stella.client._session_id)
    with gateway.channel() as channel:
        for method, request, answer_type in _requests(session_id):
            call = channel.unary_unary(METHOD + method)
            raw = await off_loop(
                lambda call=call, request=request: call(request.SerializeToString(), metadata=gateway.bearer("stella"))
            )
            answer = answer_type.FromString(raw)
            assert answer.session_id == session_id, method  # PySpark checks it
            assert app.drivers.current("stella") is None, f"{method} started a driver"
        # Another caller's credential still gets nothing, driver or not.
        with pytest.raises(grpc.RpcError) as refused:
            await off_loop(lambda: channel.unary_unary(METHOD + "ReleaseSession")(b"", metadata=()))
        assert refused.value.code() is grpc.StatusCode.UNAUTHENTICATED

    # The notebook's own stop: answered, not an error, and no driver started for it.
    await off_loop(stella.stop)
    assert app.drivers.current("stella") is None
    released = [
        r
        for r in tail(app.config.audit_path, 50, principal="stella")
        if r.tool == "spark_connect.ReleaseSession" and r.session_id == session_id
    ]
    assert [(r.outcome, r.via) for r in released] == [("ok", "gateway")]
    assert released[0].statement == "ReleaseSession (no driver running: nothing to do)"

    # The next query starts the driver, as it always did.
    again = await off_loop(lambda: gateway.client("stella"))
    assert await off_loop(lambda: again.range(2).count()) == 2
    restarted = app.drivers.current("stella")
    assert restarted is not None and restarted.id != driver.id
