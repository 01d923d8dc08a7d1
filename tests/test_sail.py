"""The Sail engine end to end: real Sail drivers, through the MCP client, governed like Spark.

The session-wide ``App`` starts a Sail driver per principal the first time one asks for
``create_session(engine="sail")`` (well under a second). Attacks that must be refused on
Spark are tried on Sail too; a raw PySpark client shows what the driver itself refuses.
"""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest
from mcp import Client

from spark_mcp.app import App
from spark_mcp.server import build_server
from tests.fixtures.capture_explain import TPCH_QUERIES
from tests.fixtures.sail_tpch import qualify_tpch
from tests.fleet_support import driver_rows
from tests.helpers import LOOPBACK, ClientFactory, call, call_error, listening_addresses, make_config

pytestmark = [pytest.mark.spark, pytest.mark.anyio, pytest.mark.any_era]


@pytest.fixture
async def sail(alice: Client) -> AsyncIterator[str]:
    """A Sail session of alice (the analyst: tpch and sales, never hr or secret_*)."""
    session = await call(alice, "create_session", engine="sail")
    assert session["engine"] == "sail"
    yield session["session_id"]
    await alice.call_tool("close_session", {"session_id": session["session_id"]})


async def test_an_analyst_queries_tpch_on_a_sail_session(alice: Client, sail: str) -> None:
    reply = await call(
        alice,
        "run_sql",
        sql="SELECT n_nationkey, n_name FROM tpch.nation ORDER BY n_nationkey LIMIT 2",
        session_id=sail,
    )
    assert reply["rows"] == [[0, "ALGERIA"], [1, "ARGENTINA"]]
    assert reply["statement_kind"] == "query"
    listed = await call(alice, "list_sessions")
    engines = {s["session_id"]: s["engine"] for s in listed["sessions"]}
    assert engines[sail] == "sail"


async def test_datasets_are_there_in_every_sail_session(alice: Client, sail: str) -> None:
    # Sail keeps its catalog per session: each new session registers the configured datasets.
    second = await call(alice, "create_session", engine="sail")
    try:
        for session_id in (sail, second["session_id"]):
            reply = await call(alice, "run_sql", sql="SELECT count(*) AS n FROM sales.orders", session_id=session_id)
            assert reply["rows"] == [[3]]
    finally:
        await call(alice, "close_session", session_id=second["session_id"])


REFUSED_ON_SAIL = [
    ("SELECT * FROM hr.salaries", 'roles.analyst.deny[1] "hr.*"', "a denied table"),
    ("SELECT * FROM tpch.secret_codes", 'roles.analyst.deny[0] "*.secret_*"', "a denied pattern"),
    ("SELECT n_name FROM tpch.nation WHERE n_name IN (SELECT name FROM hr.salaries)", "hr.*", "in a subquery"),
    ("WITH c AS (SELECT * FROM hr.salaries) SELECT * FROM c", "hr.*", "in a CTE"),
    ("SELECT * FROM tpch.nation, hr.salaries", "hr.*", "in a join"),
    ("SELECT name FROM hr.salaries UNION ALL SELECT n_name FROM tpch.nation", "hr.*", "in a union"),
    ("SELECT (SELECT max(salary) FROM hr.salaries) AS m", "hr.*", "in a scalar subquery"),
    ("SELECT * FROM text.`/etc/hostname`", "path-based access", "a path read"),
    ("SELECT * FROM parquet.`{data}/hr/salaries.parquet`", "path-based access", "a path read of a denied table's file"),
    ("SELECT * FROM csv . /* x */ `/etc/passwd`", "path-based access", "a path read with a comment"),
    ("SELECT * FROM IDENTIFIER('te' || 'xt.`/etc/passwd`')", "IDENTIFIER", "a name built by an expression"),
    ("INSERT INTO tpch.nation SELECT * FROM tpch.nation", "does not print the table", "an insert"),
    ("CREATE TABLE tpch.copy AS SELECT * FROM tpch.nation", "does not print the table", "CTAS"),
    ("DROP TABLE tpch.nation", "DropTable", "a drop"),
    ("CREATE TABLE tpch.loc (a INT) USING parquet LOCATION '/tmp'", "CreateTable", "a table at a location"),
    ("CREATE TEMP VIEW v AS SELECT * FROM hr.salaries", "CreateTemporaryView", "a temp view in SQL"),
    ("SET spark.sql.shuffle.partitions = 1", "configuration", "SET"),
    ("USE DATABASE hr", "configuration", "USE"),
    ("SHOW TABLES IN hr", "a listing", "SHOW TABLES"),
    ("DESCRIBE TABLE hr.salaries", "DescribeTable", "DESCRIBE in SQL"),
    ("SELECT 1 AS `x\nTableScan: tpch.nation`", "cannot be read", "an alias printing a plan line"),
    ("SELECT 'a\nCatalogCommand: ListCatalogs' AS s", "mixes a command", "a literal printing a command"),
    ("EXPLAIN SELECT * FROM hr.salaries", "could not analyse", "EXPLAIN inside EXPLAIN"),
    ("SELECT 1; DROP TABLE tpch.nation", "more than one statement", "two statements (the lexical gate)"),
    ("EXECUTE IMMEDIATE 'DROP TABLE tpch.nation'", "EXECUTE IMMEDIATE", "EXECUTE IMMEDIATE (the lexical gate)"),
]


@pytest.mark.parametrize(("sql", "says", "why"), REFUSED_ON_SAIL, ids=[c[2] for c in REFUSED_ON_SAIL])
async def test_governance_refuses_on_sail(
    alice: Client, sail: str, data_dir: Path, sql: str, says: str, why: str
) -> None:
    text = await call_error(alice, "run_sql", sql=sql.replace("{data}", str(data_dir)), session_id=sail)
    assert text.startswith("policy_denied"), text
    assert says in text, text


async def test_what_sail_cannot_analyse_is_refused_with_its_reason(alice: Client, sail: str) -> None:
    text = await call_error(
        alice, "run_sql", sql="SELECT reflect('java.lang.System', 'getenv', 'HOME')", session_id=sail
    )
    assert "reflect" in text  # Sail has no reflection at all: it does not analyse
    text = await call_error(alice, "run_sql", sql="SELECT * FROM tpch.nope", session_id=sail)
    assert "TABLE_OR_VIEW_NOT_FOUND" in text


async def test_nothing_refused_was_run(connect: ClientFactory, alice: Client, sail: str) -> None:
    for sql in ("DROP TABLE tpch.nation", "INSERT INTO tpch.nation SELECT * FROM tpch.nation"):
        await call_error(alice, "run_sql", sql=sql, session_id=sail)
    reply = await call(alice, "run_sql", sql="SELECT count(*) FROM tpch.nation", session_id=sail)
    assert reply["rows"] == [[25]]


async def test_an_admin_may_run_what_cannot_be_checked_on_sail(root: Client) -> None:
    session = (await call(root, "create_session", engine="sail"))["session_id"]
    try:
        await call(root, "run_sql", sql="USE DATABASE tpch", session_id=session)
        # Bare names now resolve in tpch: the reader asks the session where it is.
        explained = await call(root, "explain", sql="SELECT * FROM nation", session_id=session)
        assert explained["tables_read"] == ["spark_catalog.tpch.nation"]
        reply = await call(root, "run_sql", sql="SELECT count(*) FROM nation", session_id=session)
        assert reply["rows"] == [[25]]
    finally:
        await call(root, "close_session", session_id=session)


async def test_explain_on_sail_shows_datafusion_plans_and_the_decision(alice: Client, sail: str) -> None:
    reply = await call(
        alice, "explain", sql="SELECT n_name FROM tpch.nation WHERE n_regionkey = 1", session_id=sail, mode="extended"
    )
    assert reply["statement_kind"] == "query"
    assert reply["tables_read"] == ["spark_catalog.tpch.nation"]
    assert reply["decision"]["allowed"] is True
    assert "TableScan: tpch.nation" in reply["plan"]


async def test_plans_run_on_sail(alice: Client, sail: str) -> None:
    plan = {
        "source": {"table": "tpch.nation"},
        "operations": [
            {"op": "filter", "condition": "n_regionkey = 1"},
            {"op": "group_by", "columns": ["n_regionkey"], "aggs": [{"fn": "count", "column": "*", "alias": "n"}]},
        ],
    }
    reply = await call(alice, "run_plan", plan=plan, session_id=sail)
    assert reply["rows"] == [[1, 5]]


async def test_a_result_source_runs_on_sail(alice: Client, sail: str) -> None:
    first = await call(alice, "run_sql", sql="SELECT n_nationkey, n_name FROM tpch.nation", session_id=sail)
    plan = {
        "source": {"result_id": first["result_id"]},
        "operations": [{"op": "filter", "condition": "n_nationkey < 2"}, {"op": "order_by", "keys": ["n_nationkey"]}],
    }
    reply = await call(alice, "run_plan", plan=plan, session_id=sail)
    assert reply["rows"] == [[0, "ALGERIA"], [1, "ARGENTINA"]]


PLANS_REFUSED = [
    ({"source": {"table": "hr.salaries"}}, "hr.*", "a denied table"),
    ({"source": {"table": "text./etc/hostname"}}, "path-based access", "a table source that is a path read"),
    (
        {
            "source": {"table": "tpch.nation"},
            "operations": [{"op": "filter", "condition": "n_name IN (SELECT name FROM hr.salaries)"}],
        },
        "hr.*",
        "a subquery in an expression",
    ),
    (
        {
            "source": {"table": "tpch.nation"},
            "operations": [{"op": "filter", "condition": "EXISTS (SELECT * FROM json.`/etc`)"}],
        },
        "path-based access",
        "a path read in an expression",
    ),
    ({"source": {"sql": "SELECT * FROM parquet.`/etc`"}}, "path_access", "a path read in a SQL source"),
]


@pytest.mark.parametrize(("plan", "says", "why"), PLANS_REFUSED, ids=[c[2] for c in PLANS_REFUSED])
async def test_plans_are_governed_on_sail(alice: Client, sail: str, plan: dict, says: str, why: str) -> None:
    text = await call_error(alice, "run_plan", plan=plan, session_id=sail)
    assert "policy_denied" in text or "plan_error" in text, text
    assert says in text, text


async def test_catalog_tools_work_on_sail_and_hide_what_may_not_be_read(alice: Client, sail: str) -> None:
    listed = await call(alice, "list_tables", namespace="tpch", session_id=sail)
    names = {t["name"] for t in listed["tables"]}
    assert "tpch.nation" in names and "tpch.secret_codes" not in names
    described = await call(alice, "describe_table", table="tpch.nation", session_id=sail)
    assert [c["name"] for c in described["columns"]][:2] == ["n_nationkey", "n_name"]
    text = await call_error(alice, "describe_table", table="hr.salaries", session_id=sail)
    assert "policy_denied" in text


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def test_cancel_job_stops_the_work_in_sail(alice: Client, sail: str, app: App) -> None:
    # About 20 s of work here (645 million joined rows), so it is still running when cancelled.
    slow = (
        "SELECT count(*), sum(a.l_quantity * b.l_quantity) FROM tpch.lineitem a "
        "JOIN tpch.lineitem b ON a.l_linenumber = b.l_linenumber"
    )
    driver = app.drivers.current("alice", "sail")
    assert driver is not None and driver.pid is not None
    job = await call(alice, "run_sql", sql=slow, session_id=sail, wait_s=2)
    assert job["state"] in ("queued", "running")
    cancelled = await call(alice, "cancel_job", job_id=job["job_id"])
    assert cancelled["state"] == "cancelled"
    # Stopped in Sail, not just abandoned: the driver goes idle long before the join could end.
    with anyio.fail_after(12):
        while True:
            before = cpu_seconds(driver.pid)
            await anyio.sleep(1)
            if cpu_seconds(driver.pid) - before < 0.05:
                break
    reply = await call(alice, "run_sql", sql="SELECT 1 AS one", session_id=sail)  # the driver is still there
    assert reply["rows"] == [[1]]


async def test_all_22_tpch_queries_run_on_sail_for_an_analyst(alice: Client, sail: str) -> None:
    failed = {}
    for number, sql in sorted(TPCH_QUERIES.items()):
        result = await alice.call_tool("run_sql", {"sql": qualify_tpch(sql), "session_id": sail, "max_rows": 5})
        if result.is_error or result.structured_content["statement_kind"] != "query":
            failed[number] = result.content[0].text[:200]
    assert not failed, failed


async def test_an_engineer_may_not_use_sail_and_the_denial_names_the_rule(erin: Client) -> None:
    text = await call_error(erin, "create_session", engine="sail")
    assert text.startswith("policy_denied")
    assert "sail engine" in text and "default-deny" in text


async def test_a_sail_driver_listens_on_loopback_only_and_is_recorded_in_the_state_database(
    alice: Client, sail: str, app: App
) -> None:
    driver = app.drivers.current("alice", "sail")
    assert driver is not None and driver.pid is not None and driver.engine == "sail"
    addresses = listening_addresses(driver.pid)
    assert addresses and set(addresses) <= LOOPBACK, addresses
    rows = {row.id: row for row in driver_rows(app.config.home)}
    assert rows[driver.id].engine == "sail" and rows[driver.id].pid == driver.pid
    assert rows[driver.id].lifetime == "server"  # Sail drivers never outlive their server
    assert (driver.workdir.stat().st_mode & 0o777) == 0o700
    assert f"spark.mcp.driver.id={driver.id}".encode() in Path(f"/proc/{driver.pid}/cmdline").read_bytes()


async def test_a_sail_driver_cannot_run_python_code_a_client_ships(alice: Client, sail: str, app: App) -> None:
    """Sail has no authentication: any local process can connect (the README says so). What it
    cannot do is make the driver run Python: the launcher left PySpark out of Sail's reach."""
    from pyspark.sql import SparkSession
    from pyspark.sql.functions import udf

    driver = app.drivers.current("alice", "sail")
    assert driver is not None
    spark = SparkSession.builder.remote(f"sc://localhost:{driver.port}/;user_id=intruder").create()
    try:
        assert spark.sql("SELECT 1").collect()[0][0] == 1  # no authentication: it answers anyone local
        plus_one = udf(lambda x: x + 1, "int")
        with pytest.raises(Exception, match="pyspark"):
            spark.range(1).select(plus_one("id")).collect()
    finally:
        spark.stop()


async def test_a_sail_driver_that_dies_is_noticed_and_replaced(alice: Client, app: App) -> None:
    session = (await call(alice, "create_session", engine="sail"))["session_id"]
    driver = app.drivers.current("alice", "sail")
    assert driver is not None and driver.pid is not None
    os.kill(driver.pid, signal.SIGKILL)
    with anyio.fail_after(30):
        while driver.usable:
            await anyio.sleep(0.05)
    text = await call_error(alice, "run_sql", sql="SELECT 1", session_id=session)
    assert "session_closed" in text
    replacement = await call(alice, "create_session", engine="sail")
    try:
        reply = await call(alice, "run_sql", sql="SELECT 1 AS one", session_id=replacement["session_id"])
        assert reply["rows"] == [[1]]
        assert app.drivers.current("alice", "sail") is not driver
    finally:
        await call(alice, "close_session", session_id=replacement["session_id"])


async def test_sail_can_be_the_default_engine(tmp_path: Path, data_dir: Path) -> None:
    config = make_config(tmp_path / "home", data_dir, driver={"engine": "sail"})
    async with (
        App.running(config, environ=dict(os.environ)) as app,
        Client(build_server(app=app, user="alice")) as alice,
    ):
        reply = await call(alice, "run_sql", sql="SELECT count(*) FROM tpch.region")
        assert reply["rows"] == [[5]]
        listed = await call(alice, "list_sessions")
        assert [s["engine"] for s in listed["sessions"]] == ["sail"]
        assert app.drivers.current("alice", "spark") is None  # no JVM was started
        async with Client(build_server(app=app, user="erin")) as erin:
            text = await call_error(erin, "run_sql", sql="SELECT 1")
            assert "sail engine" in text  # the default engine is checked like a named one


# What Sail itself runs, as an admin (so governance lets everything through): the README's
# table of SQL features on Sail comes from this list.
SAIL_SQL_FEATURES = [
    (
        "window functions",
        "SELECT n_name, rank() OVER (PARTITION BY n_regionkey ORDER BY n_name) FROM tpch.nation",
        True,
    ),
    ("GROUPING SETS", "SELECT n_regionkey, count(*) FROM tpch.nation GROUP BY GROUPING SETS ((n_regionkey), ())", True),
    ("CUBE / ROLLUP", "SELECT n_regionkey, count(*) FROM tpch.nation GROUP BY CUBE(n_regionkey)", True),
    ("UNPIVOT", "SELECT * FROM (SELECT 1 a, 2 b) UNPIVOT (v FOR k IN (a, b))", True),
    ("LATERAL VIEW explode", "SELECT * FROM tpch.region LATERAL VIEW explode(array(1, 2)) e AS x", True),
    ("higher-order functions", "SELECT transform(array(1, 2), x -> x + 1), filter(array(1, 2), x -> x > 1)", True),
    ("JSON functions", "SELECT get_json_object('{\"a\":1}', '$.a'), to_json(named_struct('a', 1))", True),
    ("maps and structs", "SELECT map('a', 1)['a'], named_struct('x', 1).x", True),
    (
        "dates and intervals",
        "SELECT DATE'2024-01-31' + INTERVAL 1 MONTH, date_trunc('month', TIMESTAMP'2024-02-29 10:00')",
        True,
    ),
    (
        "approximate aggregates",
        "SELECT approx_count_distinct(n_name), percentile_approx(n_nationkey, 0.5) FROM tpch.nation",
        True,
    ),
    ("EXCEPT ALL", "SELECT n_regionkey FROM tpch.nation EXCEPT ALL SELECT 1", True),
    ("DECIMAL(38,9)", "SELECT CAST('12345678901234567890.123456789' AS DECIMAL(38,9)) AS d", True),
    ("QUALIFY", "SELECT n_name, rank() OVER (ORDER BY n_name) r FROM tpch.nation QUALIFY r = 1", False),
    (
        "PIVOT in SQL",
        "SELECT * FROM (SELECT n_regionkey k, 1 v FROM tpch.nation) PIVOT (sum(v) FOR k IN (0, 1))",
        False,
    ),
    (
        "recursive CTE",
        "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 3) SELECT * FROM r",
        False,
    ),
    ("pipe syntax", "FROM tpch.nation |> WHERE n_regionkey = 1", False),
    ("time travel on Parquet", "SELECT * FROM tpch.nation VERSION AS OF 1", False),
    ("SHOW CREATE TABLE", "SHOW CREATE TABLE tpch.nation", False),
    ("CACHE TABLE", "CACHE TABLE tpch.nation", False),
    ("ANALYZE TABLE", "ANALYZE TABLE tpch.nation COMPUTE STATISTICS", False),
    ("ALTER TABLE RENAME", "ALTER TABLE tpch.nation RENAME TO tpch.n2", False),
    ("DELETE on Parquet", "DELETE FROM tpch.nation WHERE 1 = 0", False),
    ("reflect()", "SELECT reflect('java.lang.System', 'getenv', 'HOME')", False),
    ("TRANSFORM ... USING", "SELECT TRANSFORM(n_name) USING 'cat' AS (x) FROM tpch.nation", False),
]


@pytest.fixture
async def root_sail(root: Client) -> AsyncIterator[str]:
    session = (await call(root, "create_session", engine="sail"))["session_id"]
    yield session
    await root.call_tool("close_session", {"session_id": session})


@pytest.mark.parametrize(("what", "sql", "works"), SAIL_SQL_FEATURES, ids=[f[0] for f in SAIL_SQL_FEATURES])
async def test_sql_features_on_sail(root: Client, root_sail: str, what: str, sql: str, works: bool) -> None:
    result = await root.call_tool("run_sql", {"sql": sql, "session_id": root_sail, "max_rows": 5})
    assert result.is_error is not works, result.content[0].text
    if not works:
        assert "policy_denied" not in result.content[0].text  # Sail refuses it, not spark-mcp
