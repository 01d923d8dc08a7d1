"""A notebook whose driver is no longer running: ending or asking about its work starts none,
and its next query is told why the driver ended.

A driver stops when idle, or when an admin stops it, while notebooks still hold sessions
on it. PySpark sends ``ReleaseSession`` at every ``spark.stop()``, ``ReleaseExecute`` after
each result and ``FetchErrorDetails`` after an error. Routed like any call, each would
start a whole driver (a quota slot, the seconds a start takes) only to end or ask about
what that new driver cannot have. They are answered by the gateway instead, audited, and
the next query starts the driver as it always did.

A session lives on its driver: when the driver ends, the notebook's next call reaches a new
one, which answers ``INVALID_HANDLE.SESSION_CHANGED``. The gateway adds why the old one ended
(idle, lifetime, an admin, a crash), which Spark cannot know.
"""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from collections.abc import AsyncIterator

import anyio
import grpc
import pytest
from pyspark.errors import PySparkException
from pyspark.sql.connect.proto import base_pb2
from pyspark.sql.connect.session import SparkSession

from spark_mcp.app import App
from spark_mcp.audit import tail
from spark_mcp.drivers import Driver
from spark_mcp.drivers.reaper import plan_reaping
from spark_mcp.gateway.routing import route_for
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
        # Without a credential nothing is answered, driver or not.
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
    # The next query starts the driver, as it always did: the test below.


async def test_an_interrupt_sent_while_the_driver_starts_waits_for_it(gateway: Gateway) -> None:
    # The next query starts the driver, and waits for it (seconds); an interrupt sent meanwhile
    # is meant for it, so it waits too, instead of being told that nothing runs.
    app = gateway.app
    running = app.drivers.current("stella")
    if running is not None:
        await app.drivers.stop(running.id, reason="idle")
    route = route_for(app, app.principal("stella"))
    stella = await off_loop(lambda: gateway.client("stella"))
    session_id = str(stella.client._session_id)
    outcome: list[object] = []

    def query() -> None:
        try:
            outcome.append(stella.range(5).count())
        except Exception as exc:  # the interrupt may reach the query: either way is right here
            outcome.append(exc)

    worker = threading.Thread(target=query)
    worker.start()
    try:
        deadline = time.monotonic() + 30
        while not app.drivers.acquiring(route.owner, route.profile, "spark") and time.monotonic() < deadline:
            await anyio.sleep(0.01)
        assert app.drivers.acquiring(route.owner, route.profile, "spark"), "the driver never started"
        interrupt = base_pb2.InterruptRequest(
            session_id=session_id, interrupt_type=base_pb2.InterruptRequest.INTERRUPT_TYPE_ALL
        )
        with gateway.channel() as channel:
            call = channel.unary_unary(METHOD + "Interrupt")
            await off_loop(lambda: call(interrupt.SerializeToString(), metadata=gateway.bearer("stella")))
        assert app.drivers.current("stella") is not None, "answered before the driver was ready"
    finally:
        await off_loop(worker.join)
    assert outcome == [5] or isinstance(outcome[0], Exception), outcome  # run, or interrupted
    assert await off_loop(lambda: stella.range(2).count()) == 2
    records = [
        r
        for r in tail(app.config.audit_path, 50, principal="stella")
        if r.tool == "spark_connect.Interrupt" and r.session_id == session_id
    ]
    assert [r.statement for r in records] == ["interrupt INTERRUPT_TYPE_ALL"]


async def test_calls_answered_without_a_driver_open_no_session(gateway: Gateway) -> None:
    # Nothing holds a session on a driver that is not running: such calls, however many sessions
    # they name, never count toward gateway.max_sessions_per_user (nor fill it for later).
    app = gateway.app
    running = app.drivers.current("stella")
    if running is not None:
        await app.drivers.stop(running.id, reason="idle")
    many = app.config.gateway.max_sessions_per_user + 3
    with gateway.channel() as channel:
        call = channel.unary_unary(METHOD + "GetStatus")
        for _ in range(many):
            status = base_pb2.GetStatusRequest(session_id=str(uuid.uuid4()))
            status.operation_status.SetInParent()
            raw = await off_loop(
                lambda status=status: call(status.SerializeToString(), metadata=gateway.bearer("stella"))
            )
            assert base_pb2.GetStatusResponse.FromString(raw).session_id == status.session_id
    assert app.drivers.current("stella") is None
    stella = await off_loop(lambda: gateway.client("stella"))
    assert await off_loop(lambda: stella.range(2).count()) == 2  # a real session is still welcome


async def _ended_driver_error(gateway: Gateway, stella: SparkSession, driver: Driver) -> str:
    """What the notebook's next query says once ``driver`` ended; then a new session works."""
    with pytest.raises(PySparkException) as ended:
        await off_loop(lambda: stella.range(3).count())
    message = str(ended.value)
    # Spark's own error, which PySpark 4.3 would have replaced with "NO_ACTIVE_SESSION".
    assert "INVALID_HANDLE.SESSION_CHANGED" in message and "NO_ACTIVE_SESSION" not in message
    assert f"spark-mcp: this session was on Spark driver {driver.id}, which ended at " in message
    assert "create a new session" in message
    # PySpark closed that session; a new one works, on a new driver.
    again = await off_loop(lambda: gateway.client("stella"))
    assert await off_loop(lambda: again.range(2).count()) == 2
    replacement = gateway.app.drivers.current("stella")
    assert replacement is not None and replacement.id != driver.id
    return message


async def test_a_notebook_whose_driver_was_stopped_is_told_why(gateway: Gateway) -> None:
    app = gateway.app
    stella = await off_loop(lambda: gateway.client("stella"))
    await off_loop(lambda: stella.range(1).createOrReplaceTempView("mine"))
    driver = app.drivers.current("stella")
    assert driver is not None
    # Stopped as the idle reaper stops it, with the reaper's own words.
    (reaping,) = plan_reaping(
        [driver], now=driver.last_used + 7200, idle_timeout_s=3600, max_lifetime_s=0, busy=lambda _: False
    )
    await app.drivers.stop(driver.id, reason=reaping.reason)
    message = await _ended_driver_error(gateway, stella, driver)
    assert "(its driver was idle for more than quotas.driver_idle_timeout_s (3600 s))" in message
    records = [r for r in tail(app.config.audit_path, 20, principal="stella") if r.tool == "spark_connect.ExecutePlan"]
    assert "INVALID_HANDLE.SESSION_CHANGED" in [r.error_class for r in records]


async def test_a_notebook_whose_driver_died_is_told_so(gateway: Gateway) -> None:
    app = gateway.app
    stella = await off_loop(lambda: gateway.client("stella"))
    assert await off_loop(lambda: stella.range(3).count()) == 3
    driver = app.drivers.current("stella")
    assert driver is not None and driver.pid is not None
    os.kill(driver.pid, signal.SIGKILL)
    with anyio.fail_after(30):
        while app.drivers.get(driver.id) is not None:
            await anyio.sleep(0.05)
    message = await _ended_driver_error(gateway, stella, driver)
    assert "(it stopped unexpectedly, exit code -9)" in message
