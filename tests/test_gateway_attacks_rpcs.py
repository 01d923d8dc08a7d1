"""Attacks on the gateway's RPCs besides the plans' content, and on its transport.

Real PySpark clients and raw gRPC calls (``pyspark.sql.connect.proto`` messages built by hand,
where PySpark cannot send them) through a real gateway to the session's real drivers. Each
test names what a user must not get: another principal's sessions and operations, a secret
through ``spark.conf``, a denied table's columns through a check cut short, a driver file
through an artifact name, or a call the gateway does not record once.
"""

from __future__ import annotations

import threading
import uuid
import zlib
from collections.abc import AsyncIterator
from contextlib import suppress
from typing import Any

import grpc
import pytest
from pyspark.sql.connect.proto import base_pb2
from pyspark.sql.connect.session import SparkSession

from spark_mcp.app import App
from spark_mcp.audit import tail
from spark_mcp.gateway.conf import REDACTED_VALUE
from spark_mcp.scope_gate import take_lease
from tests.gateway_support import (
    Gateway,
    connect,
    failure,
    off_loop,
    serving_gateway,
    status_of,
    tokens_for,
    wait_until,
)

pytestmark = [pytest.mark.anyio, pytest.mark.spark]

USERS = ("alice", "bob", "root")
METHOD = "/spark.connect.SparkConnectService/"
DENIED_REASON = "policy_denied: alice may not read spark_catalog.hr.salaries"


@pytest.fixture(scope="module")
async def gateway(app: App) -> AsyncIterator[Gateway]:
    async with serving_gateway(app, *USERS) as found:
        yield found


def _rpc_error(fn: Any) -> grpc.RpcError:
    exc = failure(fn)
    assert isinstance(exc, grpc.RpcError), exc
    return exc


def _answered(fn: Any) -> None:
    """Call ``fn``: Spark answers some calls about unknown operations with OK, some with an error."""
    with suppress(grpc.RpcError):
        fn()


def _session(spark: SparkSession) -> str:
    return str(spark.client._session_id)


# -- a check cut short -------------------------------------------------------------------


async def test_interrupts_sent_while_the_gateway_checks_cannot_make_it_quote_a_denied_table(gateway: Gateway) -> None:
    """When Spark cannot analyse a statement, the gateway asks Spark which tables it names
    (an EXPLAIN, run as an operation in the caller's own session) before it shows Spark's
    message. A caller interrupting its own session all the while used to cut those EXPLAINs
    short, and then got Spark's message: the denied table's columns ("did you mean `salary`")."""
    alice = await off_loop(lambda: gateway.client("alice"))
    assert await off_loop(lambda: alice.range(1).count()) == 1
    interrupt = base_pb2.InterruptRequest(
        session_id=_session(alice), interrupt_type=base_pb2.InterruptRequest.INTERRUPT_TYPE_ALL
    )
    stop = threading.Event()
    sent = [0]

    def interrupt_all_the_while(channel: grpc.Channel) -> None:
        call = channel.unary_unary(METHOD + "Interrupt")
        while not stop.is_set():
            call(interrupt.SerializeToString(), metadata=gateway.bearer("alice"))
            sent[0] += 1

    answers: list[str] = []
    with gateway.channel() as channel:
        spammers = [threading.Thread(target=interrupt_all_the_while, args=(channel,)) for _ in range(3)]
        for spammer in spammers:
            spammer.start()
        try:
            for _ in range(15):
                exc = await off_loop(lambda: failure(lambda: alice.sql("SELECT salry FROM hr.salaries").collect()))
                answers.append(str(exc))
        finally:
            stop.set()
            for spammer in spammers:
                await off_loop(lambda spammer=spammer: spammer.join(60))
    assert sent[0] > 15  # the interrupts did run alongside
    leaked = [a for a in answers if "`salary`" in a or DENIED_REASON not in a]
    assert leaked == [], leaked[:2]


# -- spark.conf --------------------------------------------------------------------------


async def test_settings_only_change_by_their_exact_harmless_name_and_storage_keys_are_redacted(
    gateway: Gateway,
) -> None:
    alice = await off_loop(lambda: gateway.client("alice"))
    for key in (" spark.sql.session.timeZone", "SPARK.SQL.SESSION.TIMEZONE", "spark.sql.session.timeZone\n"):
        exc = await off_loop(lambda key=key: failure(lambda: alice.conf.set(key, "UTC")))
        assert status_of(exc) is grpc.StatusCode.PERMISSION_DENIED and "needs sql.admin" in str(exc), exc
    exc = await off_loop(lambda: failure(lambda: alice.conf.unset("spark.sql.caseSensitive")))
    assert status_of(exc) is grpc.StatusCode.PERMISSION_DENIED
    await off_loop(lambda: alice.conf.set("spark.sql.session.timeZone", "Europe/Paris"))
    assert await off_loop(lambda: alice.conf.get("spark.sql.session.timeZone")) == "Europe/Paris"
    # A storage account's key in a driver's settings, where its name says neither secret nor
    # token (set here by an admin, as a profile's spark_conf would): read back, it is redacted.
    root = await off_loop(lambda: gateway.client("root"))
    azure = {
        "spark.hadoop.fs.azure.account.key.acct.dfs.core.windows.net": "c2VjcmV0IGtleSBieXRlcw==",
        "spark.hadoop.fs.azure.sas.box.acct.blob.core.windows.net": "sv=2024-01-01&sig=abcdef",
    }
    for key, value in azure.items():
        await off_loop(lambda key=key, value=value: root.conf.set(key, value))
        assert await off_loop(lambda key=key: root.conf.get(key)) == REDACTED_VALUE
    everything = await off_loop(lambda: root.conf.getAll)
    assert all(everything[key] == REDACTED_VALUE for key in azure)


# -- another principal's sessions and operations -----------------------------------------


async def test_another_principals_session_operation_and_error_ids_reach_nothing_of_theirs(gateway: Gateway) -> None:
    alice = await off_loop(lambda: gateway.client("alice"))
    await off_loop(lambda: alice.createDataFrame([(1,)], "who int").createOrReplaceTempView("rt_alices"))
    session, operation = _session(alice), str(uuid.uuid4())
    run = base_pb2.ExecutePlanRequest(session_id=session, operation_id=operation, tags=["rt-long"])
    run.plan.root.sql.query = (  # a relation: it runs (a SQL command of a query would not)
        "SELECT count(*) FROM range(200000) a CROSS JOIN range(200000) b WHERE a.id + b.id < 0"
    )
    run.request_options.add().reattach_options.reattachable = True
    ended: list[object] = []
    with gateway.channel() as channel:
        execute = channel.unary_stream(METHOD + "ExecutePlan")

        def long_query() -> None:
            try:
                ended.append(list(execute(run.SerializeToString(), metadata=gateway.bearer("alice"))))
            except grpc.RpcError as exc:
                ended.append(exc)

        worker = threading.Thread(target=long_query)
        worker.start()
        status = base_pb2.GetStatusRequest(session_id=session)
        status.operation_status.operation_ids.append(operation)
        get_status = channel.unary_unary(METHOD + "GetStatus")

        def running() -> bool:
            answer = base_pb2.GetStatusResponse.FromString(
                get_status(status.SerializeToString(), metadata=gateway.bearer("alice"))
            )
            return bool(answer.operation_statuses) and not ended

        await off_loop(lambda: wait_until(running, "alice's query never started"))
        # bob, naming alice's session, operation and tag, and claiming to be alice.
        bob = gateway.bearer("bob")
        interrupts = [
            base_pb2.InterruptRequest(
                session_id=session,
                interrupt_type=base_pb2.InterruptRequest.INTERRUPT_TYPE_OPERATION_ID,
                operation_id=operation,
            ),
            base_pb2.InterruptRequest(
                session_id=session, interrupt_type=base_pb2.InterruptRequest.INTERRUPT_TYPE_TAG, operation_tag="rt-long"
            ),
            base_pb2.InterruptRequest(session_id=session, interrupt_type=base_pb2.InterruptRequest.INTERRUPT_TYPE_ALL),
        ]
        interrupt = channel.unary_unary(METHOD + "Interrupt")
        for request in interrupts:
            request.user_context.user_id = "alice"
            answer = await off_loop(lambda request=request: interrupt(request.SerializeToString(), metadata=bob))
            assert not base_pb2.InterruptResponse.FromString(answer).interrupted_ids
        reattach = base_pb2.ReattachExecuteRequest(session_id=session, operation_id=operation)
        reattach.user_context.user_id = "alice"
        again = channel.unary_stream(METHOD + "ReattachExecute")
        await off_loop(lambda: _rpc_error(lambda: list(again(reattach.SerializeToString(), metadata=bob))))
        release = base_pb2.ReleaseExecuteRequest(session_id=session, operation_id=operation)
        release.release_all.SetInParent()
        release_execute = channel.unary_unary(METHOD + "ReleaseExecute")
        await off_loop(lambda: _answered(lambda: release_execute(release.SerializeToString(), metadata=bob)))
        # A clone bob makes of "alice's" session id is a clone of bob's own session by that id,
        # on bob's driver. Whether bob has one depends on what ran before: when his driver was
        # already running, the calls above made it there; when this call starts it, there is
        # none, and Spark says so. Either way nothing of alice's is reached.
        cloned = str(uuid.uuid4())
        clone = base_pb2.CloneSessionRequest(session_id=session, new_session_id=cloned)
        clone_session = channel.unary_unary(METHOD + "CloneSession")

        def clone_or_error() -> grpc.RpcError | None:
            try:
                clone_session(clone.SerializeToString(), metadata=bob)
            except grpc.RpcError as exc:
                return exc
            return None

        not_cloned = await off_loop(clone_or_error)
        if not_cloned is not None:
            assert "SESSION_NOT_FOUND" in (not_cloned.details() or ""), not_cloned
        else:
            bobs_clone = await off_loop(
                lambda: connect(gateway.port, gateway.tokens["bob"], extra=f";session_id={cloned}")
            )
            gateway.sessions.append(bobs_clone)
            exc = await off_loop(lambda: failure(lambda: bobs_clone.table("rt_alices").collect()))
            assert "TABLE_OR_VIEW_NOT_FOUND" in str(exc)
        close = channel.unary_unary(METHOD + "ReleaseSession")
        await off_loop(
            lambda: close(base_pb2.ReleaseSessionRequest(session_id=session).SerializeToString(), metadata=bob)
        )
        assert await off_loop(running)  # alice's query runs on, untouched
        assert await off_loop(lambda: alice.table("rt_alices").collect()[0].who) == 1
        mine = base_pb2.InterruptRequest(
            session_id=session, interrupt_type=base_pb2.InterruptRequest.INTERRUPT_TYPE_TAG
        )
        mine.operation_tag = "rt-long"
        answer = await off_loop(lambda: interrupt(mine.SerializeToString(), metadata=gateway.bearer("alice")))
        assert list(base_pb2.InterruptResponse.FromString(answer).interrupted_ids) == [operation]
        await off_loop(lambda: worker.join(120))
    assert ended and isinstance(ended[0], grpc.RpcError) and "OPERATION_CANCELED" in str(ended[0].details())


# -- the transport -----------------------------------------------------------------------


async def test_odd_credentials_and_malformed_requests_are_refused_and_the_gateway_serves_on(gateway: Gateway) -> None:
    alice = await off_loop(lambda: gateway.client("alice"))
    assert await off_loop(lambda: alice.range(1).count()) == 1
    session = _session(alice)
    read_all = base_pb2.ConfigRequest(session_id=session)
    read_all.operation.get_all.SetInParent()
    token = gateway.tokens["alice"]
    with gateway.channel() as channel:
        config = channel.unary_unary(METHOD + "Config")
        for metadata in (
            (("authorization", f"Bearer {token}"), ("authorization", f"Bearer {token}")),
            (("x-authorization", f"Bearer {token}"), ("x-api-key", token)),
            (("authorization", f"Basic {token}"),),
            (("authorization", token),),
            (("authorization", f"Bearer {token}x"),),
        ):
            exc = await off_loop(
                lambda metadata=metadata: _rpc_error(lambda: config(read_all.SerializeToString(), metadata=metadata))
            )
            assert exc.code() is grpc.StatusCode.UNAUTHENTICATED, metadata
        # A genuine token without the scope the server requires: refused, and audited as its owner's.
        no_scope = tokens_for(gateway.app.config, "alice", scopes=["spark:write"])["alice"]
        exc = await off_loop(
            lambda: _rpc_error(
                lambda: config(read_all.SerializeToString(), metadata=(("authorization", f"Bearer {no_scope}"),))
            )
        )
        assert exc.code() is grpc.StatusCode.PERMISSION_DENIED and "lacks the scope" in (exc.details() or "")
        refusals = [r for r in tail(gateway.app.config.audit_path, 50) if r.outcome == "error" and r.via == "gateway"]
        assert [(r.principal, r.error_class) for r in refusals if r.tool == "spark_connect.Config"][-6:] == [
            *[("(unknown)", "unauthenticated")] * 5,
            ("alice", "insufficient_scope"),
        ]
        for data in (
            b"\xff\xff\xff\xff",
            read_all.SerializeToString()[:-3],
            b"\x0b\x0c",  # a group: no part of Spark Connect
            base_pb2.ConfigRequest(session_id="../../etc").SerializeToString(),
            base_pb2.ConfigRequest().SerializeToString(),
        ):
            exc = await off_loop(lambda data=data: _rpc_error(lambda: config(data, metadata=gateway.bearer("alice"))))
            assert exc.code() is grpc.StatusCode.INVALID_ARGUMENT, data
        for method in ("/grpc.health.v1.Health/Check", "/spark.connect.Other/Config", METHOD + "Shutdown"):
            call = channel.unary_unary(method)
            exc = await off_loop(lambda call=call: _rpc_error(lambda: call(b"", metadata=gateway.bearer("alice"))))
            assert exc.code() is grpc.StatusCode.UNIMPLEMENTED, method
    assert await off_loop(lambda: alice.range(2).count()) == 2


async def test_artifact_names_that_climb_out_or_ship_code_are_refused(gateway: Gateway) -> None:
    alice = await off_loop(lambda: gateway.client("alice"))
    assert await off_loop(lambda: alice.range(1).count()) == 1
    session = _session(alice)

    def single(name: str, data: bytes = b"rows") -> base_pb2.AddArtifactsRequest:
        request = base_pb2.AddArtifactsRequest(session_id=session)
        artifact = request.batch.artifacts.add()
        artifact.name, artifact.data.data, artifact.data.crc = name, data, zlib.crc32(data)
        return request

    block = "cache/" + "ab" * 32
    begun = base_pb2.AddArtifactsRequest(session_id=session)
    begun.begin_chunk.name, begun.begin_chunk.total_bytes, begun.begin_chunk.num_chunks = block, 2, 2
    begun.begin_chunk.initial_chunk.data, begun.begin_chunk.initial_chunk.crc = b"x", zlib.crc32(b"x")
    elsewhere = base_pb2.AddArtifactsRequest(session_id=str(uuid.uuid4()))
    elsewhere.chunk.data, elsewhere.chunk.crc = b"y", zlib.crc32(b"y")
    cases: list[tuple[list[base_pb2.AddArtifactsRequest], grpc.StatusCode]] = [
        ([single(f"{block}/../../jars/x.jar")], grpc.StatusCode.INVALID_ARGUMENT),
        ([single("cache/../jars/x.jar")], grpc.StatusCode.INVALID_ARGUMENT),
        ([single("pyfiles/../../etc/passwd")], grpc.StatusCode.INVALID_ARGUMENT),
        ([single("/etc/passwd")], grpc.StatusCode.INVALID_ARGUMENT),
        ([single("forward_to_fs//tmp/rt-copied")], grpc.StatusCode.INVALID_ARGUMENT),
        ([single("forward_to_fs/tmp/rt-copied")], grpc.StatusCode.PERMISSION_DENIED),
        ([single("CACHE/" + "ab" * 32)], grpc.StatusCode.PERMISSION_DENIED),
        ([single("jars/x.jar")], grpc.StatusCode.PERMISSION_DENIED),
        ([single("classes/A.class")], grpc.StatusCode.PERMISSION_DENIED),
        ([single("files/notes.txt")], grpc.StatusCode.PERMISSION_DENIED),
        ([single("archives/a.zip")], grpc.StatusCode.PERMISSION_DENIED),
        ([begun, single("jars/x.jar")], grpc.StatusCode.PERMISSION_DENIED),  # a jar inside a data block's upload
        ([begun, elsewhere], grpc.StatusCode.INVALID_ARGUMENT),  # one upload, two sessions
    ]
    with gateway.channel() as channel:
        upload = channel.stream_unary(METHOD + "AddArtifacts")
        for requests, code in cases:
            exc = await off_loop(
                lambda requests=requests: _rpc_error(
                    lambda: upload(iter([r.SerializeToString() for r in requests]), metadata=gateway.bearer("alice"))
                )
            )
            assert exc.code() is code, (requests[-1], exc.details())
        answer = await off_loop(
            lambda: upload(iter([single(block).SerializeToString()]), metadata=gateway.bearer("alice"))
        )
        assert base_pb2.AddArtifactsResponse.FromString(answer).artifacts[0].name == block  # data passes


async def test_a_client_gone_mid_stream_or_out_of_time_is_recorded_once_and_the_gateway_serves_on(
    gateway: Gateway,
) -> None:
    alice = await off_loop(lambda: gateway.client("alice"))
    assert await off_loop(lambda: alice.range(1).count()) == 1
    session = _session(alice)

    def cancelled() -> set[str]:
        # By request id: alice's last records are a sliding window over a whole suite's calls,
        # so a count of them can lose an old record as new ones come in.
        records = tail(gateway.app.config.audit_path, 500, principal="alice")
        return {r.request_id for r in records if r.tool == "spark_connect.ExecutePlan" and r.error_class == "cancelled"}

    before = await off_loop(cancelled)
    with gateway.channel() as channel:
        execute = channel.unary_stream(METHOD + "ExecutePlan")
        big = base_pb2.ExecutePlanRequest(session_id=session, operation_id=str(uuid.uuid4()))
        big.plan.root.range.end, big.plan.root.range.step = 5_000_000, 1
        answers = execute(big.SerializeToString(), metadata=gateway.bearer("alice"))
        assert await off_loop(lambda: next(answers))
        answers.cancel()  # the client goes away after its first chunk
        # A deadline that passes while the call waits for its turn in the session (a USE holds it).
        gate = gateway.scopes.gate(("alice", session))
        use = await take_lease(gate, exclusive=True, limit_s=120, what="the test's USE")
        try:
            slow = base_pb2.ExecutePlanRequest(session_id=session, operation_id=str(uuid.uuid4()))
            slow.plan.root.read.named_table.unparsed_identifier = "tpch.nation"
            late = execute(slow.SerializeToString(), metadata=gateway.bearer("alice"), timeout=1.0)
            exc = await off_loop(lambda: _rpc_error(lambda: list(late)))
            assert exc.code() is grpc.StatusCode.DEADLINE_EXCEEDED
        finally:
            use.release()
    await off_loop(lambda: wait_until(lambda: len(cancelled() - before) >= 2, "the calls were not recorded"))
    assert await off_loop(lambda: alice.range(3).count()) == 3
    assert len(await off_loop(cancelled) - before) == 2  # once each


async def test_a_stream_no_one_can_reattach_to_is_interrupted_when_its_client_goes_away(gateway: Gateway) -> None:
    # Spark itself runs such an operation on after its client cancelled, keeping every answer
    # nobody will read: 500M rows took a 1 GB driver down. The gateway interrupts it.
    alice = await off_loop(lambda: gateway.client("alice"))
    assert await off_loop(lambda: alice.range(1).count()) == 1
    session = _session(alice)
    state = base_pb2.GetStatusResponse.OperationStatus.OperationState
    with gateway.channel() as channel:
        execute = channel.unary_stream(METHOD + "ExecutePlan")
        get_status = channel.unary_unary(METHOD + "GetStatus")

        def running() -> int:
            status = base_pb2.GetStatusRequest(session_id=session)
            status.operation_status.SetInParent()  # no ids: every operation of the session
            answer = get_status(status.SerializeToString(), metadata=gateway.bearer("alice"), timeout=30)
            found = base_pb2.GetStatusResponse.FromString(answer).operation_statuses
            return sum(s.state in (state.OPERATION_STATE_RUNNING, state.OPERATION_STATE_TERMINATING) for s in found)

        for operation_id in (str(uuid.uuid4()), ""):  # named by the client, or left to the gateway
            endless = base_pb2.ExecutePlanRequest(session_id=session, operation_id=operation_id)
            endless.plan.root.range.end, endless.plan.root.range.step = 10**12, 1
            answers = execute(endless.SerializeToString(), metadata=gateway.bearer("alice"))
            assert await off_loop(lambda answers=answers: next(answers))
            assert await off_loop(running) == 1
            answers.cancel()
            await off_loop(
                lambda: wait_until(lambda: running() == 0, "the operation ran on after its client went away", 60)
            )
    assert await off_loop(lambda: alice.range(3).count()) == 3


async def test_error_details_come_through_without_the_drivers_jvm_stack(gateway: Gateway) -> None:
    # The driver's stack trace names its classes, files and line numbers, and spark-mcp never
    # shows one (an agent's errors are the class and the first line); the rest comes through.
    alice = await off_loop(lambda: gateway.client("alice"))
    await off_loop(lambda: alice.conf.set("spark.sql.ansi.enabled", "true"))
    exc = await off_loop(lambda: failure(lambda: alice.sql("SELECT 1 / 0 AS boom").collect()))
    assert "DIVIDE_BY_ZERO" in str(exc), exc
    stack = getattr(exc, "getStackTrace", lambda: None)() or ""
    assert "\tat " not in stack and ".java:" not in stack, stack  # PySpark keeps the error's class name
    assert "\tat " not in str(exc) and ".java:" not in str(exc)


async def test_a_caller_cannot_open_sessions_without_end(app: App) -> None:
    # Any new session id makes the driver create a session, which holds driver memory until it
    # is released or idle for an hour: a loop could fill a driver another user shares.
    async with serving_gateway(app, "alice", "bob", max_sessions_per_user=3) as gateway:
        opened = [await off_loop(lambda: gateway.client("alice")) for _ in range(3)]
        for spark in opened:
            assert await off_loop(lambda spark=spark: spark.range(2).count()) == 2
        fourth = await off_loop(lambda: gateway.client("alice"))
        exc = await off_loop(lambda: failure(lambda: fourth.range(1).count()))
        assert status_of(exc) is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert (
            "gateway.max_sessions_per_user: you have 3 Spark Connect sessions open through the gateway, the most "
            "allowed: stop one you no longer use (spark.stop()), or wait until one has been idle for 60 min"
        ) in str(exc)
        # Made-up session ids on every kind of call count the same; a clone is a new session too.
        version = base_pb2.AnalyzePlanRequest(session_id=str(uuid.uuid4()))
        version.spark_version.SetInParent()
        clone = base_pb2.CloneSessionRequest(session_id=opened[0].client._session_id)
        with gateway.channel() as channel:
            for method, request in (
                ("AnalyzePlan", version),
                ("Config", base_pb2.ConfigRequest(session_id=str(uuid.uuid4()))),
                ("GetStatus", base_pb2.GetStatusRequest(session_id=str(uuid.uuid4()))),
                ("CloneSession", clone),
            ):
                call = channel.unary_unary(METHOD + method)
                refused = await off_loop(
                    lambda call=call, request=request: _rpc_error(
                        lambda: call(request.SerializeToString(), metadata=gateway.bearer("alice"))
                    )
                )
                assert refused.code() is grpc.StatusCode.RESOURCE_EXHAUSTED, (method, refused.details())
        # Another user has sessions of their own; the open ones work on; a stopped one makes room.
        assert await off_loop(lambda: gateway.client("bob").range(1).count()) == 1
        assert await off_loop(lambda: opened[0].range(3).count()) == 3
        await off_loop(opened[1].stop)
        assert await off_loop(lambda: fourth.range(1).count()) == 1
        exc = await off_loop(lambda: failure(lambda: gateway.client("alice").range(1).count()))
        assert status_of(exc) is grpc.StatusCode.RESOURCE_EXHAUSTED
        records = tail(app.config.audit_path, 40)
        assert any(r.principal == "alice" and r.error_class == "limit_exceeded" for r in records)
