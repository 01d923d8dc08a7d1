"""The Spark Connect gateway, end to end: PySpark's own client, through a real gateway, to real drivers.

The gateway serves the session's shared ``App`` (each principal's driver is the one its
MCP calls use). Every client call runs on a worker thread: the gateway shares the test's
event loop.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import anyio
import grpc
import pytest
from pyspark.sql.connect.dataframe import DataFrame as ConnectDataFrame
from pyspark.sql.connect.functions import udf
from pyspark.sql.connect.plan import SQL
from pyspark.sql.connect.proto import base_pb2, relations_pb2
from pyspark.sql.types import LongType

from spark_mcp.app import App
from spark_mcp.audit import tail
from spark_mcp.config import GatewayConfig
from spark_mcp.gateway import connection_string, running_gateway
from spark_mcp.gateway.analysis import Analyst
from spark_mcp.spark.connect import open_session
from tests.gateway_support import (
    Gateway,
    connect,
    failure,
    in_thread,
    interrupt_when_running,
    off_loop,
    serving_gateway,
    status_of,
    token_store,
    tokens_for,
    wait_until,
)
from tests.helpers import LONG_QUERY, make_config

pytestmark = [pytest.mark.anyio, pytest.mark.spark]

USERS = ("alice", "bob", "erin", "root", "cody", "carol")
PERMISSION_DENIED = grpc.StatusCode.PERMISSION_DENIED


@pytest.fixture(scope="module")
async def gateway(app: App) -> AsyncIterator[Gateway]:
    async with serving_gateway(app, *USERS) as found:
        yield found


def denied(fn: Callable[[], Any]) -> str:
    """The text of a PERMISSION_DENIED refusal (the test fails on anything else)."""
    exc = failure(fn)
    assert status_of(exc) is PERMISSION_DENIED, exc
    return str(exc)


# -- authentication ----------------------------------------------------------------------


async def test_calls_without_a_valid_token_are_refused_as_unauthenticated(gateway: Gateway) -> None:
    store = token_store(gateway.app.config)
    now = time.time()
    expired = store.create(
        "alice", scopes=["spark:read"], resource=_resource(gateway), expires_at=now - 60, now=now - 120
    ).token
    revoked = tokens_for(gateway.app.config, "alice")["alice"]
    live = await off_loop(lambda: connect(gateway.port, revoked))
    # (Not spark.version: a cached_property, whose lock Python 3.11 shares between instances,
    # so a client blocked on it here would stall the server's own sessions in this process.)
    assert await off_loop(lambda: live.range(2).count()) == 2  # the token works...
    store.revoke(revoked.split("_")[1])
    for token in (None, "smcp_000000000000_" + "x" * 43, "not-a-token", expired, revoked):
        spark = await off_loop(lambda token=token: connect(gateway.port, token))
        exc = await off_loop(lambda spark=spark: failure(lambda: spark.range(1).collect()))
        assert status_of(exc) is grpc.StatusCode.UNAUTHENTICATED, (token, exc)
        await off_loop(spark.client.close)
    # ...and the session that used it is refused on its very next call.
    exc = await off_loop(lambda: failure(lambda: live.range(1).collect()))
    assert status_of(exc) is grpc.StatusCode.UNAUTHENTICATED
    await off_loop(live.client.close)
    # Every refusal is audited (within a budget), naming no one, and no secret is written.
    refused = [r for r in tail(gateway.app.config.audit_path, 200, principal="(unknown)") if r.via == "gateway"]
    assert len(refused) >= 6  # at least one per credential tried (the client may retry)
    assert all(r.outcome == "error" and r.error_class == "unauthenticated" for r in refused)
    assert all(r.tool.startswith("spark_connect.") and (r.statement or "").startswith("refused: ") for r in refused)
    logged = gateway.app.config.audit_path.read_text()
    assert not [token for token in (expired, revoked) if token.split("_", 2)[2] in logged]  # the whole secret


async def test_a_principal_without_sessions_is_refused(gateway: Gateway) -> None:
    carol = await off_loop(lambda: gateway.client("carol"))
    text = await off_loop(lambda: denied(lambda: carol.range(1).collect()))
    assert "no role of carol grants session.create" in text


# -- isolation ---------------------------------------------------------------------------


async def test_two_users_land_on_two_drivers_and_cannot_see_each_others_temp_views(gateway: Gateway) -> None:
    alice = await off_loop(lambda: gateway.client("alice"))
    bob = await off_loop(lambda: gateway.client("bob"))
    await off_loop(lambda: alice.createDataFrame([(1,)], "who int").createOrReplaceTempView("gw_mine"))
    await off_loop(lambda: bob.createDataFrame([(2,)], "who int").createOrReplaceTempView("gw_mine"))
    assert await off_loop(lambda: alice.table("gw_mine").collect()[0].who) == 1
    assert await off_loop(lambda: bob.table("gw_mine").collect()[0].who) == 2
    drivers = gateway.app.drivers
    assert drivers.current("alice") is not None and drivers.current("bob") is not None
    assert drivers.current("alice") is not drivers.current("bob")
    # bob naming alice's own session, and alice claiming to be bob: neither reaches the other.
    session = alice.client._session_id
    intruder = await off_loop(lambda: gateway.client("bob", extra=f";session_id={session}"))
    exc = await off_loop(lambda: failure(lambda: intruder.table("gw_only_alice").collect()))
    await off_loop(lambda: alice.createDataFrame([(3,)], "who int").createOrReplaceTempView("gw_only_alice"))
    exc = await off_loop(lambda: failure(lambda: intruder.table("gw_only_alice").collect()))
    assert "TABLE_OR_VIEW_NOT_FOUND" in str(exc)
    spoof = await off_loop(lambda: gateway.client("alice", extra=";user_id=bob"))
    await off_loop(lambda: spoof.createDataFrame([(4,)], "who int").createOrReplaceTempView("gw_spoofed"))
    bobs_own = await off_loop(lambda: gateway.client("bob", extra=f";session_id={spoof.client._session_id}"))
    exc = await off_loop(lambda: failure(lambda: bobs_own.table("gw_spoofed").collect()))
    assert "TABLE_OR_VIEW_NOT_FOUND" in str(exc)


# -- tables ------------------------------------------------------------------------------


async def test_a_denied_table_is_refused_through_table_sql_and_a_join(gateway: Gateway) -> None:
    alice = await off_loop(lambda: gateway.client("alice"))
    reason = (
        "alice may not read spark_catalog.hr.salaries: denied by role analyst (hr.*) "
        '[rule: roles.analyst.deny[1] "hr.*"]'
    )
    attempts = [
        lambda: alice.table("hr.salaries").collect(),
        lambda: alice.sql("SELECT * FROM hr.salaries"),
        lambda: alice.table("tpch.nation").crossJoin(alice.table("hr.salaries")).limit(1).collect(),
        lambda: alice.sql("SELECT n_name FROM tpch.nation WHERE n_nationkey IN (SELECT salary FROM hr.salaries)"),
        lambda: alice.table("hr.salaries").schema,
        lambda: alice.table("hr.salaries").explain(),
        lambda: alice.table("hr.salaries").show(),
        lambda: alice.table("hr.salaries").drop("name").describe().collect(),
        lambda: alice.sql("CREATE OR REPLACE TEMP VIEW gw_leak AS SELECT * FROM hr.salaries"),
        lambda: alice.table("hr.salaries").createOrReplaceTempView("gw_leak2"),
        lambda: alice.catalog.listColumns("hr.salaries"),
        lambda: alice.catalog.tableExists("hr.salaries"),
        lambda: alice.catalog.isCached("hr.salaries"),
        # Names built while Spark analyses, hidden columns, and the other analyses and actions.
        lambda: alice.sql("SELECT * FROM identifier(:t)", args={"t": "hr.salaries"}).collect(),
        lambda: alice.sql("SELECT _metadata.file_path FROM hr.salaries").collect(),
        lambda: alice.sql("SELECT * FROM tpch.region, LATERAL (SELECT salary FROM hr.salaries LIMIT 1)").collect(),
        lambda: alice.table("tpch.region").sameSemantics(alice.table("hr.salaries")),
        lambda: alice.table("hr.salaries").semanticHash(),
        lambda: alice.table("hr.salaries").inputFiles(),
        lambda: alice.table("hr.salaries").persist(),
        lambda: alice.table("hr.salaries").tail(1),
        lambda: list(alice.table("hr.salaries").toLocalIterator()),
        # Rows kept in the session under an id, which later plans name without naming the table.
        lambda: alice.table("hr.salaries").localCheckpoint(),
        lambda: alice.table("tpch.nation").crossJoin(alice.table("hr.salaries")).localCheckpoint(eager=False),
    ]
    for attempt in attempts:
        assert f"policy_denied: {reason}" in await off_loop(lambda attempt=attempt: denied(attempt))
    # Nor by making its namespace the current one first.
    assert "may not read anything in spark_catalog.hr" in await off_loop(
        lambda: denied(lambda: alice.catalog.setCurrentDatabase("hr"))
    )
    assert await off_loop(lambda: alice.table("tpch.nation").count()) == 25
    assert await off_loop(lambda: alice.sql("SELECT count(*) AS n FROM tpch.region").collect()[0].n) == 5


async def test_a_view_of_a_denied_table_is_denied_too(gateway: Gateway) -> None:
    alice = await off_loop(lambda: gateway.client("alice"))
    assert await off_loop(lambda: alice.range(1).count()) == 1  # alice's driver is up
    driver = gateway.app.drivers.current("alice")
    assert driver is not None
    # Setup behind governance's back: a persistent view in alice's own catalog over a table she
    # may not read (made before her policy was narrowed, say). Reading it is reading hr.salaries.
    setup = await off_loop(lambda: open_session(driver, user_id="gw-test-setup"))
    try:
        await off_loop(lambda: setup.spark.sql("CREATE OR REPLACE VIEW default.gw_pay AS SELECT * FROM hr.salaries"))
    finally:
        await off_loop(setup.close)
    for attempt in (
        lambda: alice.table("default.gw_pay").collect(),
        lambda: alice.sql("SELECT count(*) FROM default.gw_pay").collect(),
        lambda: alice.catalog.getTable("default.gw_pay"),
    ):
        text = await off_loop(lambda attempt=attempt: denied(attempt))
        assert "may not read spark_catalog.hr.salaries" in text, text
    text = await off_loop(lambda: denied(lambda: alice.catalog.listTables("default")))
    assert "no role of alice may read anything in spark_catalog.default" in text


async def test_spark_says_why_a_plan_is_wrong_unless_it_would_quote_a_denied_table(gateway: Gateway) -> None:
    alice = await off_loop(lambda: gateway.client("alice"))
    exc = await off_loop(lambda: failure(lambda: alice.table("tpch.nation").select("n_nme").collect()))
    assert "UNRESOLVED_COLUMN" in str(exc) and "n_name" in str(exc)  # Spark's own, helpful error
    text = await off_loop(lambda: denied(lambda: alice.table("hr.salaries").select("salry").collect()))
    assert "salary" not in text.replace("hr.salaries", "")  # the column name Spark would suggest is withheld


async def test_listings_show_only_what_the_caller_may_read(gateway: Gateway) -> None:
    alice = await off_loop(lambda: gateway.client("alice"))
    tables = await off_loop(lambda: {t.name for t in alice.catalog.listTables("tpch")})
    assert "nation" in tables and "secret_codes" not in tables
    assert "hr" not in await off_loop(lambda: {d.name for d in alice.catalog.listDatabases()})
    text = await off_loop(lambda: denied(lambda: alice.catalog.listTables("hr")))
    assert "alice may not read anything in spark_catalog.hr" in text
    await off_loop(lambda: alice.range(1).createOrReplaceTempView("gw_listed"))
    assert "gw_listed" in await off_loop(lambda: {t.name for t in alice.catalog.listTables()})
    # SQL's listings (what BI tools browse with) are filtered the same way.
    shown = await off_loop(lambda: {(r.namespace, r.tableName) for r in alice.sql("SHOW TABLES IN tpch").collect()})
    assert ("tpch", "nation") in shown and ("", "gw_listed") in shown
    assert ("tpch", "secret_codes") not in shown  # tpch.* is readable, *.secret_* is not
    assert await off_loop(lambda: alice.sql("SHOW TABLES IN tpch LIKE 'secret*'").collect()) == []
    namespaces = await off_loop(lambda: {r.namespace for r in alice.sql("SHOW SCHEMAS").collect()})
    assert "tpch" in namespaces and "hr" not in namespaces
    assert await off_loop(lambda: alice.sql("SHOW NAMESPACES LIKE 'hr'").collect()) == []
    assert ("", "gw_listed") in await off_loop(
        lambda: {(r.namespace, r.viewName) for r in alice.sql("SHOW VIEWS IN tpch").collect()}
    )
    # Spark sends the rows with its answer; the client's own plans over them see only those.
    assert await off_loop(lambda: alice.sql("SHOW TABLES IN tpch").filter("tableName LIKE 'secret%'").count()) == 0
    for statement, words in [
        ("SHOW TABLES IN hr", "alice may not read anything in spark_catalog.hr"),
        ("SHOW VIEWS IN hr", "alice may not read anything in spark_catalog.hr"),
        # The extended form prints each table's schema: not a listing, refused as before.
        ("SHOW TABLE EXTENDED IN tpch LIKE '*'", "plain SHOW TABLES and spark.catalog.listTables()"),
    ]:
        text = await off_loop(lambda statement=statement: denied(lambda: alice.sql(statement).collect()))
        assert words in text, (statement, text)
    listed = [
        r for r in tail(gateway.app.config.audit_path, 40, principal="alice") if r.statement == "SHOW TABLES IN tpch"
    ]
    assert listed and {(r.decision, r.kind) for r in listed} == {("allowed", "metadata")}


async def test_a_listing_inside_a_plan_counts_and_shows_only_what_the_caller_may_read(gateway: Gateway) -> None:
    from pyspark.sql.connect.dataframe import DataFrame
    from pyspark.sql.connect.plan import CacheTable, ListDatabases, ListTables

    alice = await off_loop(lambda: gateway.client("alice"))
    # What a JVM client sends for spark.catalog().listTables("tpch").count() or .show(): the
    # catalog call inside another relation. Its rows are filtered before anything counts them.
    tables = DataFrame(ListTables("tpch"), alice)
    assert await off_loop(lambda: tables.filter("isTemporary = false").count()) == 8  # not tpch.secret_codes
    names = await off_loop(lambda: {r.name for r in tables.filter(tables["isTemporary"] == False).collect()})  # noqa: E712
    assert "nation" in names and "secret_codes" not in names
    databases = await off_loop(lambda: {r.name for r in DataFrame(ListDatabases(), alice).limit(100).collect()})
    assert "tpch" in databases and "hr" not in databases
    text = await off_loop(lambda: denied(lambda: DataFrame(ListTables("hr"), alice).count()))
    assert "alice may not read anything in spark_catalog.hr" in text
    # A catalog call that changes something stays refused inside a plan.
    text = await off_loop(lambda: denied(lambda: DataFrame(CacheTable("tpch.nation"), alice).limit(1).collect()))
    assert "a catalog call inside a plan" in text


async def test_the_dangerous_surface_is_refused(gateway: Gateway, data_dir: Any) -> None:
    alice = await off_loop(lambda: gateway.client("alice"))
    path = str(data_dir / "secret_codes.parquet")
    for attempt, words in [
        (lambda: alice.read.parquet(path).collect(), "path-based access"),
        (lambda: alice.sql("SET spark.sql.caseSensitive = true"), "configuration"),
        (lambda: alice.sql("SELECT java_method('java.lang.System', 'getenv', 'HOME')"), "reflection"),
        (lambda: alice.sql("EXECUTE IMMEDIATE 'SELECT 1'"), "EXECUTE IMMEDIATE"),
        (lambda: alice.sql("SELECT 1; SELECT 2"), "needs sql.admin"),
        (lambda: alice.conf.set("spark.sql.caseSensitive", "true"), "sets spark.sql.caseSensitive"),
        (lambda: alice.range(3).write.parquet(str(data_dir / "gw_out")), "path-based access"),
        (lambda: alice.table("tpch.nation").checkpoint(), "a reliable checkpoint (it writes the rows"),
    ]:
        text = await off_loop(lambda attempt=attempt: denied(attempt))
        assert words in text, text
    # A file copied to the driver's file system (an artifact upload, answered by gRPC itself).
    source = data_dir / "gw_copy_source.txt"
    source.write_text("not for the driver")
    upload = await off_loop(lambda: failure(lambda: alice.copyFromLocalToFs(str(source), str(data_dir / "gw_copied"))))
    assert isinstance(upload, grpc.RpcError) and upload.code() is PERMISSION_DENIED
    assert "grants sql.admin" in str(upload.details())
    assert not (data_dir / "gw_copied").exists()
    await off_loop(lambda: alice.conf.set("spark.sql.session.timeZone", "UTC"))  # a harmless setting
    assert await off_loop(lambda: alice.conf.get("spark.sql.session.timeZone")) == "UTC"


async def test_a_command_hidden_below_a_query_is_refused(gateway: Gateway) -> None:
    erin = await off_loop(lambda: gateway.client("erin"))
    await off_loop(lambda: erin.sql("CREATE NAMESPACE IF NOT EXISTS staging"))
    await off_loop(lambda: erin.sql("CREATE TABLE IF NOT EXISTS staging.gw_victim (a INT) USING parquet"))
    # erin may drop staging tables with SQL; a DROP planted below a limit is not SQL she ran.
    hidden = ConnectDataFrame(SQL("DROP TABLE staging.gw_victim"), erin).limit(1)
    text = await off_loop(lambda: denied(hidden.collect))
    assert "a command (DropTable) inside a query" in text
    assert await off_loop(lambda: erin.catalog.tableExists("staging.gw_victim"))


async def test_no_reply_carries_a_driver_token(gateway: Gateway) -> None:
    root = await off_loop(lambda: gateway.client("root"))
    secret = "SPARK_CONNECT_AUTHENTICATE_TOKEN"
    row = await off_loop(
        lambda: root.sql(f"SELECT java_method('java.lang.System', 'getenv', '{secret}') AS t").collect()
    )
    token = gateway.app.drivers.current("root")  # the driver the gateway started or found for root
    assert token is not None
    assert token.token not in str(row) and "*" * len(token.token) == row[0].t
    exc = await off_loop(
        lambda: failure(
            lambda: root.sql(f"SELECT cast(java_method('java.lang.System', 'getenv', '{secret}') AS INT)").collect()
        )
    )
    assert token.token not in str(exc)
    values = await off_loop(lambda: root.conf.getAll)
    assert all(token.token not in str(v) for v in values.values())


# -- writes ------------------------------------------------------------------------------


async def test_writes_follow_the_write_rules(gateway: Gateway) -> None:
    erin = await off_loop(lambda: gateway.client("erin"))
    alice = await off_loop(lambda: gateway.client("alice"))
    await off_loop(lambda: erin.sql("CREATE NAMESPACE IF NOT EXISTS staging"))
    await off_loop(lambda: erin.table("tpch.nation").write.mode("overwrite").saveAsTable("staging.gw_nations"))
    await off_loop(lambda: erin.table("tpch.nation").write.insertInto("staging.gw_nations"))
    assert await off_loop(lambda: erin.table("staging.gw_nations").count()) == 50
    await off_loop(lambda: erin.range(3).writeTo("staging.gw_v2").using("parquet").create())
    text = await off_loop(lambda: denied(lambda: erin.range(3).write.insertInto("tpch.nation")))
    assert "no role of erin may write spark_catalog.tpch.nation" in text
    text = await off_loop(lambda: denied(lambda: erin.table("hr.salaries").write.saveAsTable("staging.gw_leak")))
    assert "may not read spark_catalog.hr.salaries" in text
    text = await off_loop(lambda: denied(lambda: alice.range(1).write.saveAsTable("staging.gw_alice")))
    assert "no role of alice grants sql.ddl" in text
    text = await off_loop(
        lambda: denied(lambda: erin.range(1).write.option("path", "/tmp/gw-elsewhere").saveAsTable("staging.gw_ext"))
    )
    assert "points at a path" in text
    # The catalog's createTable is a CREATE TABLE: the same rights, the same refusals.
    schema = await off_loop(lambda: erin.table("tpch.region").schema)
    await off_loop(lambda: erin.catalog.createTable("staging.gw_created", schema=schema))
    await off_loop(lambda: erin.table("tpch.region").write.insertInto("staging.gw_created"))
    assert await off_loop(lambda: erin.table("staging.gw_created").count()) == 5
    for attempt, words in [
        (lambda: erin.catalog.createTable("tpch.gw_created", schema=schema), "no role of erin may write"),
        (lambda: alice.catalog.createTable("staging.gw_alice", schema=schema), "no role of alice grants sql.ddl"),
        (lambda: erin.catalog.createTable("staging.gw_ext", path="/tmp/gw-elsewhere"), "a table over the files"),
        (lambda: erin.catalog.createTable("staging.gw_ext", schema=schema, path="/tmp/gw-x"), "a table over the files"),
        (lambda: erin.catalog.createTable("staging.gw_ext", source="jdbc", schema=schema), "the jdbc data source"),
        (lambda: erin.catalog.createTable("staging.gw_ext", schema=schema, location="/tmp/x"), "points at a path"),
    ]:
        text = await off_loop(lambda attempt=attempt: denied(attempt))
        assert words in text, text
    assert await off_loop(lambda: erin.catalog.tableExists("staging.gw_ext")) is False
    await off_loop(lambda: erin.sql("DROP TABLE staging.gw_nations"))
    await off_loop(lambda: erin.sql("DROP TABLE staging.gw_v2"))
    await off_loop(lambda: erin.sql("DROP TABLE staging.gw_created"))


# -- code --------------------------------------------------------------------------------


async def test_code_is_refused_by_default_and_runs_for_a_role_with_code_run(gateway: Gateway, tmp_path: Any) -> None:
    plus = udf(lambda x: x + 1, LongType())
    module = tmp_path / "gw_helper.py"
    module.write_text("VALUE = 41\n")
    alice = await off_loop(lambda: gateway.client("alice"))
    for attempt in (
        lambda: alice.range(3).select(plus("id")).collect(),
        lambda: alice.range(3).mapInArrow(lambda batches: batches, "id long").collect(),
        lambda: alice.udf.register("gw_plus", plus),
        lambda: alice.addArtifact(str(module), pyfile=True),
    ):
        text = await off_loop(lambda attempt=attempt: denied(attempt))
        assert "code.run" in text, text
    cody = await off_loop(lambda: gateway.client("cody"))
    assert await off_loop(lambda: [r[0] for r in cody.range(3).select(plus("id")).collect()]) == [1, 2, 3]
    await off_loop(lambda: cody.addArtifact(str(module), pyfile=True))
    # code.run opens code, not tables: cody's UDF over a denied table is still refused.
    text = await off_loop(lambda: denied(lambda: cody.table("hr.salaries").select(plus("salary")).collect()))
    assert "may not read spark_catalog.hr.salaries" in text


# -- long work ---------------------------------------------------------------------------


async def test_an_interrupt_stops_a_running_query(gateway: Gateway) -> None:
    alice = await off_loop(lambda: gateway.client("alice"))
    outcome: list[BaseException | object] = []

    def run() -> None:
        try:
            outcome.append(alice.sql(LONG_QUERY).collect())
        except Exception as exc:
            outcome.append(exc)

    worker = threading.Thread(target=run)
    worker.start()

    def interrupt_when_running() -> list[str]:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            interrupted = alice.interruptAll()
            if interrupted:
                return interrupted
            time.sleep(0.2)  # polling for the query to show up, within the deadline
        raise AssertionError("the query never showed up as running")

    assert await off_loop(interrupt_when_running)
    await off_loop(lambda: worker.join(120))
    assert outcome and isinstance(outcome[0], Exception)
    assert "OPERATION_CANCELED" in str(outcome[0]) or "cancel" in str(outcome[0]).lower()


async def test_a_use_sent_while_a_query_runs_waits_for_it_in_that_session(gateway: Gateway) -> None:
    # A query is judged on the names Spark resolved when it was analysed. A USE that ran
    # between that analysis and the query's execution would have it read other tables than
    # the ones judged; so the USE waits until the query's answer is complete.
    alice = await off_loop(lambda: gateway.client("alice"))
    gate = gateway.scopes.gate(("alice", alice.client._session_id))
    ended: list[str] = []
    # One ExecutePlan (no SQL command first), running until it is interrupted.
    endless = alice.range(200_000).alias("a").crossJoin(alice.range(200_000).alias("b")).where("a.id + b.id < 0")
    query = in_thread(ended, "query", endless.collect)
    await off_loop(lambda: wait_until(lambda: not gate.idle, "the query never held its session's gate"))
    use = in_thread(ended, "use", lambda: alice.sql("USE tpch"))
    await off_loop(lambda: wait_until(lambda: gate.waiting_exclusive == 1, "the USE never waited for the gate"))
    assert ended == []  # the USE waits while the query is judged and runs
    assert await off_loop(lambda: interrupt_when_running(alice, ended)) == []  # it ran, and the USE still waited
    await off_loop(lambda: query.join(120))
    await off_loop(lambda: use.join(120))
    assert "use ran" in ended, ended
    assert any(e.startswith("query failed") and "cancel" in e.lower() for e in ended), ended
    assert await off_loop(lambda: alice.catalog.currentDatabase()) == "tpch"


async def test_pyspark_asking_twice_about_a_query_costs_one_analysis(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    # PySpark asks about most queries twice: a DataFrame's schema, then its rows; and
    # spark.sql's command, then the relation Spark answers it with, which PySpark renumbers.
    # The second question reuses the first verdict, unless the session changed in between.
    explained: list[str] = []
    analyse = Analyst.explain

    async def counted(self: Analyst, relation: relations_pb2.Relation, statement: str) -> Any:
        explained.append(statement)  # a spy: the real analysis runs
        return await analyse(self, relation, statement)

    monkeypatch.setattr(Analyst, "explain", counted)
    alice = await off_loop(lambda: gateway.client("alice"))
    await off_loop(lambda: alice.sql("USE tpch"))
    query = "SELECT n_name FROM nation WHERE n_nationkey = 1"
    explained.clear()
    frame = await off_loop(lambda: alice.sql(query))
    assert (await off_loop(frame.toArrow)).to_pylist() == [{"n_name": "ARGENTINA"}]
    assert explained == [query]
    region = alice.table("tpch.region").limit(1)
    assert (await off_loop(region.toArrow)).num_rows == 1
    assert len(explained) == 2
    # A command forgets the session's verdicts: the same relation is judged again, on what
    # its names now mean (a temp view shadows the table).
    shadow = await off_loop(lambda: alice.createDataFrame([(1, "SHADOW")], "n_nationkey int, n_name string"))
    await off_loop(lambda: shadow.createOrReplaceTempView("nation"))
    explained.clear()
    assert (await off_loop(frame.toArrow)).to_pylist() == [{"n_name": "SHADOW"}]
    assert explained == [query]
    # A relation is matched without its plan id only when it is nothing but SQL text.
    explained.clear()
    await off_loop(lambda: alice.table("tpch.region").limit(1).toArrow())
    await off_loop(lambda: alice.table("tpch.region").limit(1).toArrow())
    assert len(explained) == 2


# -- the protocol itself -----------------------------------------------------------------


async def test_a_deep_plan_is_read_and_a_compressed_one_cannot_smuggle_a_table(gateway: Gateway) -> None:
    alice = await off_loop(lambda: gateway.client("alice"))

    def deep() -> int:
        frame = alice.range(5)
        for _ in range(150):
            frame = frame.withColumn("id", frame.id + 1)
        return int(frame.agg({"id": "max"}).collect()[0][0])

    assert await off_loop(deep) == 154
    import zstandard

    relation = relations_pb2.Relation()
    relation.read.named_table.unparsed_identifier = "hr.salaries"
    request = base_pb2.ExecutePlanRequest(session_id=str(alice.client._session_id), operation_id=_uuid())
    request.user_context.user_id = "alice"
    packed = request.plan.compressed_operation
    packed.data = zstandard.compress(relation.SerializeToString())
    packed.op_type = base_pb2.Plan.CompressedOperation.OP_TYPE_RELATION
    packed.compression_codec = base_pb2.COMPRESSION_CODEC_ZSTD
    with _raw_channel(gateway) as channel:
        call = channel.unary_stream("/spark.connect.SparkConnectService/ExecutePlan")
        with pytest.raises(grpc.RpcError) as refused:
            await off_loop(lambda: list(call(request.SerializeToString(), metadata=_bearer(gateway, "alice"))))
        assert refused.value.code() is PERMISSION_DENIED
        assert "hr.salaries" in (refused.value.details() or "")
        unknown = channel.unary_unary("/spark.connect.SparkConnectService/NotARealMethod")
        with pytest.raises(grpc.RpcError) as missing:
            await off_loop(lambda: unknown(b"", metadata=_bearer(gateway, "alice")))
        assert missing.value.code() is grpc.StatusCode.UNIMPLEMENTED


async def test_every_call_is_audited_once_with_how_the_caller_authenticated(gateway: Gateway) -> None:
    bob = await off_loop(lambda: gateway.client("bob"))
    await off_loop(lambda: denied(lambda: bob.table("hr.salaries").collect()))

    def refusals() -> list[Any]:
        records[:] = [r for r in tail(gateway.app.config.audit_path, 50, principal="bob") if r.via == "gateway"]
        return [r for r in records if r.tool == "spark_connect.ExecutePlan" and r.decision == "denied"]

    # The record is written as the call ends, which may be a moment after the client has its answer.
    records: list[Any] = []
    deadline = time.monotonic() + 30
    while not refusals() and time.monotonic() < deadline:
        await anyio.sleep(0.05)
    refusal = refusals()[-1]
    assert refusal.auth == "token" and refusal.token_id
    assert refusal.rule == 'roles.analyst.deny[1] "hr.*"' and refusal.error_class == "policy_denied"
    assert "spark_catalog.hr.salaries" in refusal.tables
    assert len({r.request_id for r in records}) == len(records)


def _resource(gateway: Gateway) -> str:
    from spark_mcp.auth.settings import resource_url

    return resource_url(gateway.app.config)


def _uuid() -> str:
    import uuid

    return str(uuid.uuid4())


def _bearer(gateway: Gateway, user: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {gateway.tokens[user]}"),)


@contextmanager
def _raw_channel(gateway: Gateway) -> Iterator[grpc.Channel]:
    channel = grpc.insecure_channel(f"localhost:{gateway.port}")
    try:
        yield channel
    finally:
        channel.close()


async def test_a_read_result_is_released_on_the_driver_once_the_client_says_so(gateway: Gateway) -> None:
    """Releases of responses a client has read are acknowledged by the gateway (PySpark sends
    one per chunk); the release of the whole operation reaches the driver, which then has
    nothing left to reattach to."""
    alice = await off_loop(lambda: gateway.client("alice"))
    session_id, operation_id = str(alice.client._session_id), _uuid()
    request = base_pb2.ExecutePlanRequest(session_id=session_id, operation_id=operation_id)
    request.user_context.user_id = "alice"
    request.plan.root.range.end, request.plan.root.range.step = 10, 1
    request.request_options.add().reattach_options.reattachable = True
    method = "/spark.connect.SparkConnectService/"
    with _raw_channel(gateway) as channel:
        bearer = _bearer(gateway, "alice")
        run, release = channel.unary_stream(method + "ExecutePlan"), channel.unary_unary(method + "ReleaseExecute")
        responses = [
            base_pb2.ExecutePlanResponse.FromString(r)
            for r in await off_loop(lambda: list(run(request.SerializeToString(), metadata=bearer)))
        ]
        assert responses[-1].HasField("result_complete")

        def released(**which: Any) -> base_pb2.ReleaseExecuteResponse:
            ask = base_pb2.ReleaseExecuteRequest(session_id=session_id, operation_id=operation_id, **which)
            ask.user_context.user_id = "alice"
            return base_pb2.ReleaseExecuteResponse.FromString(release(ask.SerializeToString(), metadata=bearer))

        until = base_pb2.ReleaseExecuteRequest.ReleaseUntil(response_id=responses[0].response_id)
        assert (await off_loop(lambda: released(release_until=until))).operation_id == operation_id
        ask = base_pb2.ReleaseExecuteRequest(session_id=session_id, operation_id=operation_id, release_until=until)
        nobody = (("authorization", "Bearer smcp_x"),)
        with pytest.raises(grpc.RpcError) as anonymous:  # answered by the gateway, but never to just anyone
            await off_loop(lambda: release(ask.SerializeToString(), metadata=nobody))
        assert anonymous.value.code() is grpc.StatusCode.UNAUTHENTICATED
        reattach = base_pb2.ReattachExecuteRequest(session_id=session_id, operation_id=operation_id)
        reattach.user_context.user_id = "alice"
        again = channel.unary_stream(method + "ReattachExecute")
        before = await off_loop(lambda: list(again(reattach.SerializeToString(), metadata=bearer)))
        assert before  # still on the driver: the client has not released it all
        await off_loop(lambda: released(release_all=base_pb2.ReleaseExecuteRequest.ReleaseAll()))
        with pytest.raises(grpc.RpcError) as gone:
            await off_loop(lambda: list(again(reattach.SerializeToString(), metadata=bearer)))
        assert "OPERATION" in (gone.value.details() or ""), gone.value.details()
        # Someone else's token releases nothing of alice's: bob's call is stamped as bob's.
        ask = base_pb2.ReleaseExecuteRequest(session_id=session_id, operation_id=operation_id)
        ask.release_all.SetInParent()
        with pytest.raises(grpc.RpcError) as foreign:
            await off_loop(lambda: release(ask.SerializeToString(), metadata=_bearer(gateway, "bob")))
        assert foreign.value.code() is not grpc.StatusCode.OK


# -- long results and TLS ------------------------------------------------------------------


async def test_a_long_result_that_needs_reattaching_comes_through_whole(tmp_path: Any, data_dir: Any) -> None:
    # A driver that ends every result stream after 1 MiB, as Spark's own tests do to exercise
    # reattachment: the client must reattach (through the gateway) to read the rest.
    config = make_config(
        tmp_path / "home",
        data_dir,
        driver={"spark_conf": {"spark.connect.execute.reattachable.senderMaxStreamSize": "1m"}},
        gateway={"port": 0},
    )
    async with App.running(config, environ=dict(os.environ)) as small, running_gateway(config, lambda: small) as server:
        token = tokens_for(config, "alice")["alice"]
        alice = await off_loop(lambda: connect(server.port, token))
        try:
            table = await off_loop(lambda: alice.range(2_000_000).selectExpr("id", "id * 2 AS twice").toArrow())
        finally:
            await off_loop(alice.stop)
    assert table.num_rows == 2_000_000
    assert table.column("twice").to_pylist()[-1] == 3_999_998
    records = tail(config.audit_path, 500, principal="alice")
    reattached = [r for r in records if r.tool == "spark_connect.ReattachExecute"]
    assert reattached and all(r.outcome == "ok" and r.via == "gateway" for r in reattached)


async def test_the_gateway_serves_tls_to_a_client_that_trusts_its_certificate(
    gateway: Gateway, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    cert, key = _self_signed(tmp_path, "localhost")
    server = gateway.app.config.server.model_copy(update={"tls_cert": cert, "tls_key": key})
    config = gateway.app.config.model_copy(update={"gateway": GatewayConfig(port=0), "server": server})
    # gRPC reads its default roots from here when the first TLS channel is made.
    monkeypatch.setenv("GRPC_DEFAULT_SSL_ROOTS_FILE_PATH", str(cert))
    # Under TLS the server's resource URL is https://...: tokens are made for that resource.
    token = tokens_for(config, "alice")["alice"]
    async with running_gateway(config, lambda: gateway.app) as tls:
        assert tls.tls
        assert connection_string(config, token, port=tls.port).endswith(";use_ssl=true")
        alice = await off_loop(lambda: connect(tls.port, token, extra=";use_ssl=true"))
        try:
            assert await off_loop(lambda: alice.table("tpch.region").count()) == 5
            text = await off_loop(lambda: denied(lambda: alice.table("hr.salaries").collect()))
            assert "hr.salaries" in text
        finally:
            await off_loop(alice.stop)
        # The same port refuses a plain-text client.
        plain = await off_loop(lambda: connect(tls.port, None))
        exc = await off_loop(lambda: failure(lambda: plain.range(1).collect()))
        assert status_of(exc) is grpc.StatusCode.UNAVAILABLE
        await off_loop(plain.client.close)


def _self_signed(folder: Any, host: str) -> tuple[Any, Any]:
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "gateway.pem", folder / "gateway.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    key_path.chmod(0o600)
    return cert_path, key_path
