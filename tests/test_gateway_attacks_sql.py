"""SQL text through the gateway beyond the issue's list: ``spark.sql(...)`` as a command and as a
relation, and SQL strings inside DataFrame plans. Each test is an attack that once got through
(or a statement wrongly refused), tried with PySpark's own client through a real gateway to the
shared drivers; the pure tests pin the plan reading behind each fix on Spark's own output."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from pyspark.errors import PySparkException
from pyspark.sql.connect import functions as F
from pyspark.sql.connect.session import SparkSession

from spark_mcp.app import App
from spark_mcp.spark.inspect import inspect_explain
from spark_mcp.statement import TableName
from tests.gateway_support import failure, off_loop, serving_gateway
from tests.test_gateway import denied

HR_DENIED = "alice may not read spark_catalog.hr.salaries: denied by role analyst (hr.*)"
NOPE_DENIED = "alice may not read spark_catalog.hr.nope: denied by role analyst (hr.*)"


@pytest.fixture(scope="module")
async def alice(app: App) -> AsyncIterator[SparkSession]:
    async with serving_gateway(app, "alice") as gateway:
        yield await off_loop(lambda: gateway.client("alice"))


def spark_error(fn: Callable[[], Any]) -> str:
    """Spark's own error (not a refusal), as the client shows it."""
    exc = failure(fn)
    assert isinstance(exc, PySparkException) and "policy_denied" not in str(exc), exc
    return str(exc)


@pytest.mark.anyio
@pytest.mark.spark
async def test_a_parameter_naming_a_denied_table_does_not_reveal_its_columns_in_spark_s_error(
    alice: SparkSession,
) -> None:
    # The text alone names no table (IDENTIFIER(:t)); Spark's error for the bound statement
    # said "Did you mean one of [`name`, `salary`]": the failing plan is read with its parameters.
    for attempt in (
        lambda: alice.sql("SELECT nope FROM IDENTIFIER(:t)", {"t": "hr.salaries"}).collect(),
        lambda: alice.sql("SELECT nope FROM IDENTIFIER(:t)", {"t": "hr.salaries"}).limit(1).collect(),
        lambda: alice.sql("SELECT nope FROM IDENTIFIER(?)", ["hr.salaries"]).collect(),
        lambda: alice.sql("SELECT nope FROM IDENTIFIER(:t)", {"t": "hr.salaries"}).schema,
    ):
        message = await off_loop(lambda attempt=attempt: denied(attempt))
        assert HR_DENIED in message and "salary" not in message.replace("salaries", "")
    # A table the caller may read keeps Spark's own help.
    message = await off_loop(
        lambda: spark_error(lambda: alice.sql("SELECT nope FROM IDENTIFIER(:t)", {"t": "tpch.region"}).collect())
    )
    assert "UNRESOLVED_COLUMN" in message and "r_name" in message


@pytest.mark.anyio
@pytest.mark.spark
async def test_a_missing_table_in_a_denied_namespace_is_refused_like_one_that_exists(alice: SparkSession) -> None:
    # "not found" for hr.nope against a denial for hr.salaries tells which tables exist: names
    # built by IDENTIFIER expressions and the tables of commands are reads too when analysis fails.
    sql = [
        "SELECT * FROM IDENTIFIER('hr.' || '{t}')",
        "SELECT (SELECT count(*) FROM IDENTIFIER(concat('hr.', '{t}')))",
        "SHOW CREATE TABLE hr.{t}",
        "SHOW COLUMNS IN hr.{t}",
        "SHOW COLUMNS FROM {t} IN hr",
        "SHOW TBLPROPERTIES hr.{t}",
        "SHOW PARTITIONS hr.{t}",
        "DESCRIBE hr.{t}",
        "DESCRIBE TABLE EXTENDED hr.{t} salary",
    ]
    for table, reason in (("salaries", HR_DENIED), ("nope", NOPE_DENIED)):
        for attempt in _naming(alice, table, sql):
            assert reason in await off_loop(lambda attempt=attempt: denied(attempt))
    # Where the caller may read, Spark's own "not found" still comes through.
    message = await off_loop(lambda: spark_error(lambda: alice.sql("SHOW CREATE TABLE tpch.nope").collect()))
    assert "TABLE_OR_VIEW_NOT_FOUND" in message


@pytest.mark.anyio
@pytest.mark.spark
async def test_show_columns_from_a_table_in_a_namespace_answers_within_the_policy(alice: SparkSession) -> None:
    # It prints the namespace before the table; that was read as an unreadable target, refused
    # for everyone but sql.admin.
    names = await off_loop(lambda: [r.col_name for r in alice.sql("SHOW COLUMNS FROM nation IN tpch").collect()])
    assert names == ["n_nationkey", "n_name", "n_regionkey", "n_comment"]
    assert HR_DENIED in await off_loop(lambda: denied(lambda: alice.sql("SHOW COLUMNS FROM salaries IN hr").collect()))


def _naming(alice: SparkSession, table: str, sql: list[str]) -> list[Callable[[], Any]]:
    """Calls that name ``hr.<table>``: each text, a parameter, and SQL strings in DataFrames."""
    attempts: list[Callable[[], Any]] = [lambda text=text: alice.sql(text.format(t=table)).collect() for text in sql]
    return [
        *attempts,
        lambda: alice.sql("SELECT * FROM IDENTIFIER(:t)", {"t": f"hr.{table}"}).limit(1).collect(),
        lambda: alice.range(1).filter(f"EXISTS (SELECT 1 FROM IDENTIFIER('hr.' || '{table}'))").collect(),
        lambda: alice.range(1).select(F.expr(f"(SELECT count(*) FROM IDENTIFIER('hr.' || '{table}'))")).collect(),
    ]


# -- the plan reading behind the fixes, on Spark 4's own output (pure) ---------------------

_NOT_FOUND = (
    "org.apache.spark.sql.AnalysisException: [TABLE_OR_VIEW_NOT_FOUND] The table or view `hr`.`nope` cannot be "
    "found. SQLSTATE: 42P01; line 1 pos 31;\n"
)
_FAILED = [
    (
        "== Parsed Logical Plan ==\n'Project [*]\n+- 'PlanWithUnresolvedIdentifier concat(hr., nope), "
        "org.apache.spark.sql.catalyst.parser.AstBuilder$$Lambda$4313/0x00007fc5ed4dd210@5c7c548d\n\n"
        "== Analyzed Logical Plan ==\n" + _NOT_FOUND + "'Project [*]\n+- 'UnresolvedRelation [hr, nope], [], false\n"
    ),
    (
        "== Parsed Logical Plan ==\n'ShowCreateTable false, [createtab_stmt#289]\n"
        "+- 'UnresolvedTableOrView [hr, nope], SHOW CREATE TABLE, false, Ddl\n\n== Analyzed Logical Plan ==\n"
        + _NOT_FOUND
        + "'ShowCreateTable false, [createtab_stmt#289]\n+- 'UnresolvedTableOrView [hr, nope], SHOW CREATE TABLE, "
        "false, Ddl\n"
    ),
    (
        "== Parsed Logical Plan ==\n'ShowPartitions [partition#362]\n+- 'UnresolvedTable [hr, nope], "
        "SHOW PARTITIONS, false\n\n== Analyzed Logical Plan ==\n" + _NOT_FOUND + "'ShowPartitions [partition#362]\n"
        "+- 'UnresolvedTable [hr, nope], SHOW PARTITIONS, false\n"
    ),
]


@pytest.mark.parametrize("explain", _FAILED)
def test_a_failed_analysis_reads_the_tables_its_partial_plan_and_commands_name(explain: str) -> None:
    assert TableName.of("spark_catalog", "hr", "nope") in inspect_explain(explain).reads


def test_show_columns_in_a_namespace_reads_its_table() -> None:
    line = "ShowColumnsCommand tpch, `spark_catalog`.`tpch`.`nation`, [col_name#276]"
    explain = (
        "== Parsed Logical Plan ==\n'ShowColumns List(tpch), [col_name#276]\n+- 'UnresolvedTableOrView "
        "[tpch, nation], SHOW COLUMNS, true, Ddl\n\n== Analyzed Logical Plan ==\ncol_name: string\n" + line + "\n"
        "+- ResolvedTable V2SessionCatalog(spark_catalog), tpch.nation, V1Table(tpch.nation), [n_nationkey#281L, "
        "n_name#282, n_regionkey#283L, n_comment#284]\n\n== Optimized Logical Plan ==\n" + line + "\n\n"
        "== Physical Plan ==\nExecute ShowColumnsCommand\n   +- " + line + "\n"
    )
    facts = inspect_explain(explain)
    assert facts.reads == {TableName.of("spark_catalog", "tpch", "nation")} and not facts.dangers, facts
