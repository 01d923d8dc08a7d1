"""Plans and DataFrames a client can put in ExecutePlan and AnalyzePlan beyond the issue's list:
each test is an attack that once got through the gateway (or a PySpark feature it wrongly
refused), tried with PySpark's own client through a real gateway to the shared drivers."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from pyspark.sql.connect import functions as F

from spark_mcp.app import App
from tests.gateway_support import Gateway, off_loop, serving_gateway
from tests.test_gateway import denied, failure

pytestmark = [pytest.mark.anyio, pytest.mark.spark]

HR_DENIED = (
    "policy_denied: alice may not read spark_catalog.hr.salaries: denied by role analyst (hr.*) "
    '[rule: roles.analyst.deny[1] "hr.*"]'
)


@pytest.fixture(scope="module")
async def clients(app: App) -> AsyncIterator[Gateway]:
    async with serving_gateway(app, "alice", "erin") as found:
        yield found


async def test_a_transpose_is_judged_on_its_input_which_spark_collects_while_planning(clients: Gateway) -> None:
    alice = await off_loop(lambda: clients.client("alice"))
    # Spark's analyzer runs the input of a transpose to name its columns: the plan it prints has
    # the rows as a local relation and no table left to judge. Its input is judged first.
    for attempt in (
        lambda: alice.table("hr.salaries").transpose().collect(),
        lambda: alice.table("hr.salaries").transpose().schema,
        lambda: alice.table("tpch.region").crossJoin(alice.table("hr.salaries").transpose()).collect(),
    ):
        assert HR_DENIED in await off_loop(lambda attempt=attempt: denied(attempt))
    rows = await off_loop(lambda: alice.table("tpch.region").select("r_name", "r_regionkey").transpose().collect())
    assert rows[0].key == "r_regionkey" and rows[0].EUROPE == 3


async def test_subqueries_over_dataframes_run_within_the_policy(clients: Gateway) -> None:
    alice = await off_loop(lambda: clients.client("alice"))
    region, nation = alice.table("tpch.region"), alice.table("tpch.nation")
    # df.scalar() and df.exists() send a plan with the subqueries' plans beside it by id
    # (with_relations without SQL): Spark plans it lazily, like a join, and so does the gateway.
    counted = region.select("r_name", nation.select(F.count("*")).scalar().alias("n"))
    assert await off_loop(lambda: {r.n for r in counted.collect()}) == {25}
    matched = region.where(nation.where(F.col("n_regionkey") == F.col("r_regionkey").outer()).exists())
    assert await off_loop(matched.count) == 5
    salaries = alice.table("hr.salaries")
    for attempt in (
        lambda: region.select(salaries.select(F.max("salary")).scalar()).collect(),
        lambda: region.where(salaries.where(F.col("salary") > F.col("r_regionkey").outer()).exists()).count(),
        lambda: region.select(salaries.select(F.max("salary")).scalar()).schema,
    ):
        assert HR_DENIED in await off_loop(lambda attempt=attempt: denied(attempt))


async def test_a_write_into_a_temp_view_name_cannot_reach_the_table_under_it(clients: Gateway) -> None:
    erin = await off_loop(lambda: clients.client("erin"))
    await off_loop(lambda: erin.sql("CREATE NAMESPACE IF NOT EXISTS staging"))
    await off_loop(lambda: erin.catalog.setCurrentDatabase("staging"))
    # erin may read tpch.region, never write it. A write resolves a temp view first, so
    # insertInto("v") writes into the files under v, while the name alone looks like
    # staging.v, a table she may create.
    await off_loop(lambda: erin.table("tpch.region").createOrReplaceTempView("rt1_regions"))
    text = await off_loop(lambda: denied(lambda: erin.range(1).write.insertInto("rt1_regions")))
    assert "'rt1_regions' names a view (or a temp view), not the table spark_catalog.staging.rt1_regions" in text
    assert await off_loop(lambda: erin.table("tpch.region").count()) == 5
    # A table of that name, written by its own name, is written as before.
    await off_loop(lambda: erin.range(2).write.mode("overwrite").saveAsTable("staging.rt1_written"))
    await off_loop(lambda: erin.range(1).write.insertInto("staging.rt1_written"))
    assert await off_loop(lambda: erin.table("staging.rt1_written").count()) == 3
    await off_loop(lambda: erin.sql("DROP TABLE staging.rt1_written"))


async def test_table_exists_tells_nothing_about_names_the_caller_may_not_read(clients: Gateway) -> None:
    alice = await off_loop(lambda: clients.client("alice"))
    # A denied name that does not exist is refused like one that does: the difference would
    # tell which tables exist where alice may not look.
    assert HR_DENIED in await off_loop(lambda: denied(lambda: alice.catalog.tableExists("hr.salaries")))
    text = await off_loop(lambda: denied(lambda: alice.catalog.tableExists("hr.no_such_table")))
    assert "alice may not read spark_catalog.hr.no_such_table: denied by role analyst (hr.*)" in text
    text = await off_loop(lambda: denied(lambda: alice.catalog.tableExists("tpch.secret_none")))
    assert "denied by role analyst (*.secret_*)" in text
    assert await off_loop(lambda: alice.catalog.tableExists("tpch.no_such_table")) is False
    assert await off_loop(lambda: alice.catalog.tableExists("tpch.nation")) is True


async def test_a_missing_table_where_the_caller_may_not_read_is_refused_like_one_that_exists(
    clients: Gateway,
) -> None:
    alice = await off_loop(lambda: clients.client("alice"))
    # Spark's "not found" for hr.no_such_table, against a denial for hr.salaries, would tell
    # alice which tables exist in hr: every qualified name a failed analysis writes is judged.
    for attempt in (
        lambda: alice.table("hr.no_such_table").collect(),
        lambda: alice.table("hr.no_such_table").schema,
        lambda: alice.sql("SELECT * FROM hr.no_such_table").collect(),
        lambda: alice.table("tpch.nation").join(alice.table("hr.no_such_table"), "n_nationkey").collect(),
    ):
        text = await off_loop(lambda attempt=attempt: denied(attempt))
        assert "alice may not read spark_catalog.hr.no_such_table: denied by role analyst (hr.*)" in text, text
        assert "TABLE_OR_VIEW_NOT_FOUND" not in text
    # Where alice may read, Spark's own error tells her what is wrong.
    for attempt in (
        lambda: alice.table("tpch.no_such_table").collect(),
        lambda: alice.sql("SELECT * FROM tpch.nope"),
        lambda: alice.sql("SELECT * FROM no_such_bare_table").collect(),  # in her current namespace
        lambda: alice.table("no_such_bare_table").collect(),
    ):
        exc = await off_loop(lambda attempt=attempt: failure(attempt))
        assert "TABLE_OR_VIEW_NOT_FOUND" in str(exc), exc


async def test_sql_with_a_named_parameter_first_is_a_query_not_a_script_label(clients: Gateway) -> None:
    alice = await off_loop(lambda: clients.client("alice"))
    rows = await off_loop(lambda: alice.sql("SELECT :x AS x", args={"x": 41}).collect())
    assert rows[0].x == 41
    text = await off_loop(lambda: denied(lambda: alice.sql("SELECT :t AS t, salary FROM hr.salaries", args={"t": 1})))
    assert HR_DENIED in text
