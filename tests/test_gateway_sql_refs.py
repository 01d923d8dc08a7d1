"""``spark.sql(text, df=...)`` through the gateway: Spark plans it by running its text over
the DataFrames as temp views, so the gateway proves the text a query (or judges the command)
with an EXPLAIN over the same views before anything plans it. Real PySpark clients, a real
gateway, the shared driver app."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from pyspark.sql.connect.dataframe import DataFrame as ConnectDataFrame
from pyspark.sql.connect.plan import SQL, SubqueryAlias
from pyspark.sql.connect.session import SparkSession

from spark_mcp.app import App
from spark_mcp.config import GatewayConfig
from spark_mcp.gateway import running_gateway
from spark_mcp.scope_gate import KeyedScopeGates
from tests.gateway_support import connect, in_thread, interrupt_when_running, off_loop, tokens_for, wait_until
from tests.test_gateway import denied

pytestmark = [pytest.mark.anyio, pytest.mark.spark]

HR_DENIED = "alice may not read spark_catalog.hr.salaries: denied by role analyst (hr.*)"


@dataclass
class Clients:
    sessions: dict[str, SparkSession]
    scopes: KeyedScopeGates  # each client session's scope gate

    def __getitem__(self, user: str) -> SparkSession:
        return self.sessions[user]


@pytest.fixture(scope="module")
async def clients(app: App) -> AsyncIterator[Clients]:
    config = app.config.model_copy(update={"gateway": GatewayConfig(port=0)})
    async with running_gateway(config, lambda: app) as server:
        tokens = tokens_for(config, "alice", "erin")
        sessions = {user: await off_loop(lambda user=user: connect(server.port, tokens[user])) for user in tokens}
        try:
            yield Clients(sessions, server.scopes)
        finally:
            for spark in sessions.values():
                await off_loop(spark.stop)


def _with_refs(spark: SparkSession, text: str, **frames: Any) -> ConnectDataFrame:
    """``spark.sql(text, df=...)`` built by hand, as a crafted client could: ``{name}`` in
    ``text`` stands for the alias given to ``frames[name]``; aliases not starting with ``_`` are
    used as they are, the others get PySpark's own kind of name."""
    names = {k: k if not k.startswith("_") else f"_pyspark_connect_temp_view_{uuid.uuid4().hex}" for k in frames}
    views = [SubqueryAlias(frame._plan, names[k]) for k, frame in frames.items()]
    return ConnectDataFrame(SQL(text.format(**names), views=views), spark)  # type: ignore[arg-type]


async def test_spark_sql_with_dataframe_arguments_answers_within_the_policy(clients: Clients) -> None:
    alice = clients["alice"]
    nation, region = alice.table("tpch.nation"), alice.table("tpch.region")

    def answers() -> list[int]:
        return [
            alice.sql("SELECT count(*) AS n FROM {df} WHERE n_regionkey = 1", df=nation).collect()[0].n,
            alice.sql("SELECT count(*) AS n FROM {a} x JOIN {b} y ON x.n_regionkey = y.r_regionkey", a=nation, b=region)
            .collect()[0]
            .n,
            alice.sql(
                "SELECT count(*) AS n FROM {df}", df=alice.sql("SELECT * FROM {t} WHERE n_regionkey = 0", t=nation)
            )
            .collect()[0]
            .n,
            alice.sql("SELECT * FROM {df}", df=nation).filter("n_regionkey = 2").count(),
            len(alice.sql("SELECT n_name FROM {df}", df=nation).toPandas()),
            # Relations Spark computes while planning, over one: the call inside is proven first.
            len(alice.sql("SELECT n_nationkey FROM {df}", df=nation).describe().collect()),
            len(alice.sql("SELECT n_name FROM {df}", df=nation)._show_string(n=3).splitlines()),
            # SQL parameters beside the DataFrames.
            alice.sql("SELECT count(*) AS n FROM {df} WHERE n_regionkey = :r", {"r": 3}, df=nation).collect()[0].n,
        ]

    assert await off_loop(answers) == [5, 25, 5, 5, 25, 5, 8, 5]
    # Spark drops the temp views it made for the DataFrames; the gateway's own EXPLAINs leave none either.
    names = await off_loop(lambda: [t.name for t in alice.catalog.listTables()])
    assert not [n for n in names if n.startswith("_pyspark_connect_temp_view_")], names


async def test_a_denied_table_is_refused_through_the_dataframe_the_text_or_a_nested_call(
    clients: Clients,
) -> None:
    alice = clients["alice"]
    nation, salaries = alice.table("tpch.nation"), alice.table("hr.salaries")
    for attempt in [
        lambda: alice.sql("SELECT * FROM {df}", df=salaries).collect(),
        lambda: alice.sql("SELECT * FROM {df} JOIN hr.salaries", df=nation).collect(),
        lambda: alice.sql("SELECT * FROM {df}", df=alice.sql("SELECT * FROM {t}", t=salaries)).collect(),
        lambda: alice.sql("SELECT * FROM {df}", df=salaries.select("name")).schema,
        # As a relation the client analyses or runs, and inside a bigger plan.
        lambda: _with_refs(alice, "SELECT * FROM {_df}", _df=salaries).collect(),
        lambda: _with_refs(alice, "SELECT * FROM {_df}", _df=salaries).limit(1).collect(),
        lambda: _with_refs(alice, "SELECT * FROM {_df}", _df=salaries).schema,
    ]:
        assert HR_DENIED in await off_loop(lambda attempt=attempt: denied(attempt))


async def test_a_command_with_dataframe_arguments_follows_the_write_rules_and_never_runs_early(
    clients: Clients,
) -> None:
    erin, alice = clients["erin"], clients["alice"]
    await off_loop(lambda: erin.sql("CREATE NAMESPACE IF NOT EXISTS staging"))
    await off_loop(
        lambda: erin.sql(
            "CREATE TABLE staging.gw_refs USING parquet AS SELECT n_nationkey, n_name FROM {df} WHERE n_regionkey = 0",
            df=erin.table("tpch.nation"),
        )
    )
    await off_loop(
        lambda: erin.sql(
            "INSERT INTO staging.gw_refs SELECT n_nationkey, n_name FROM {df}", df=erin.table("tpch.nation")
        )
    )

    def count() -> int:
        return int(erin.table("staging.gw_refs").count())

    assert await off_loop(count) == 30
    insert = "INSERT INTO staging.gw_refs SELECT n_nationkey, n_name FROM {_df}"
    for who, attempt, words in [
        (
            alice,  # on a driver of her own, where she may read tpch.nation but not write it
            lambda: alice.sql("INSERT INTO tpch.nation SELECT * FROM {df}", df=alice.table("tpch.nation")),
            "no role of alice",
        ),
        (
            erin,
            lambda: erin.sql("INSERT INTO staging.gw_refs SELECT 1, name FROM {df}", df=erin.table("hr.salaries")),
            "may not read spark_catalog.hr.salaries",
        ),
        # Planned anywhere but as a SQL command, Spark would run it while planning: refused, even for erin.
        (erin, lambda: _with_refs(erin, insert, _df=erin.table("tpch.nation")).collect(), "as a relation to analyse"),
        (erin, lambda: _with_refs(erin, insert, _df=erin.table("tpch.nation")).limit(1).collect(), "inside a plan"),
        (erin, lambda: _with_refs(erin, insert, _df=erin.table("tpch.nation")).schema, "as a relation to analyse"),
        # Aliases PySpark would not make could replace, then drop, a temp view of the session's own.
        (
            erin,
            lambda: _with_refs(erin, "SELECT * FROM {mine}", mine=erin.table("tpch.nation")).collect(),
            "not in the shape PySpark sends",
        ),
    ]:
        text = await off_loop(lambda attempt=attempt: denied(attempt))
        assert words in text, (who, text)
    assert await off_loop(count) == 30  # nothing refused ran, not even while it was analysed
    assert await off_loop(lambda: alice.table("tpch.nation").count()) == 25
    await off_loop(lambda: erin.sql("DROP TABLE staging.gw_refs"))


async def test_a_call_holds_its_session_alone_while_its_temp_views_come_and_go(clients: Clients) -> None:
    # Spark replaces and drops temp views while it plans spark.sql(text, df=...): a query
    # judged meanwhile in the same session could run on other names than it was judged on.
    # So the call waits for the session to itself, here behind a query that runs until stopped.
    alice = clients["alice"]
    gate = clients.scopes.gate(("alice", alice.client._session_id))
    ended: list[str] = []
    endless = alice.range(200_000).alias("a").crossJoin(alice.range(200_000).alias("b")).where("a.id + b.id < 0")
    query = in_thread(ended, "query", endless.collect)
    await off_loop(lambda: wait_until(lambda: not gate.idle, "the query never held its session's gate"))
    nation = alice.table("tpch.nation")
    refs = in_thread(ended, "refs", lambda: alice.sql("SELECT count(*) FROM {df}", df=nation).collect())
    await off_loop(lambda: wait_until(lambda: gate.waiting_exclusive == 1, "the call never waited for the gate"))
    assert await off_loop(lambda: interrupt_when_running(alice, ended)) == []  # it waited all along
    await off_loop(lambda: query.join(120))
    await off_loop(lambda: refs.join(120))
    assert "refs ran" in ended and any(e.startswith("query failed") for e in ended), ended
