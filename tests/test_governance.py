"""The attack suite: an analyst with read access to some tables tries everything else.

alice's role (tests/policies/roles.toml) reads ``tpch.*`` and ``sales.*``, denies
``*.secret_*`` and ``hr.*``, and has no write, DDL or admin action. Every attempt must be
denied before execution, with a reason; the controls show that real analysis still works.
"""

from __future__ import annotations

import anyio
import pytest
from mcp import Client

from spark_mcp.app import App
from tests.helpers import LONG_QUERY, ClientFactory, call, call_error

pytestmark = [pytest.mark.anyio, pytest.mark.spark, pytest.mark.any_era]

SALARIES_FILE = "__SALARIES__"  # replaced by the real path of the hr.salaries parquet file

READ_DENIED_TABLES = [
    "SELECT * FROM hr.salaries",
    "select * from HR.SALARIES",
    "SELECT * FROM `hr`.`salaries`",
    "SELECT * FROM spark_catalog.hr.salaries",
    "SELECT * FROM SPARK_CATALOG.`HR`.salaries",
    "TABLE hr.salaries",
    "FROM hr.salaries SELECT *",
    "FROM hr.salaries |> SELECT name",
    "SELECT * FROM IDENTIFIER('hr.salaries')",
    "SELECT * FROM tpch.secret_codes",
    "SELECT nme FROM hr.salaries",  # Spark's "did you mean" would list the denied table's columns
    "SELECT salary FROM hr.salaries WHERE no_such_column = 1",
    "SELECT * FROM tpch.nation WHERE n_nationkey IN (SELECT salary FROM hr.salaries)",
    "SELECT (SELECT max(salary) FROM hr.salaries) AS leak",
    "SELECT * FROM tpch.region WHERE EXISTS (SELECT 1 FROM hr.salaries WHERE salary > 100000)",
    "WITH x AS (SELECT * FROM hr.salaries) SELECT * FROM x",
    "WITH a AS (SELECT 1 AS k), b AS (SELECT * FROM a JOIN hr.salaries ON true) SELECT * FROM b",
    "SELECT n_name, s.salary FROM tpch.nation, LATERAL (SELECT salary FROM hr.salaries LIMIT 1) s",
    "SELECT r_name FROM tpch.region UNION ALL SELECT name FROM hr.salaries",
    "SELECT * FROM tpch.nation JOIN hr.salaries ON true",
    "SELECT count(*) FROM (SELECT * FROM (SELECT * FROM hr.salaries))",
    "SELECT * FROM tpch.region r WHERE NOT EXISTS (SELECT 1 FROM hr.salaries s WHERE s.name = r.r_name)",
    "SELECT * FROM tpch.nation WHERE n_nationkey = (SELECT max(salary) FROM hr.salaries WHERE name = n_name)",
    "CREATE TEMP VIEW leak AS SELECT * FROM hr.salaries",
    "CREATE OR REPLACE TEMPORARY VIEW leak2 AS SELECT * FROM tpch.secret_codes",
    "DESCRIBE TABLE hr.salaries",
    "SHOW CREATE TABLE hr.salaries",
    "SHOW COLUMNS IN hr.salaries",
]

WRITES = [
    "INSERT INTO tpch.nation SELECT * FROM tpch.nation",
    "INSERT OVERWRITE TABLE tpch.region SELECT 9, 'x', 'y'",
    "DELETE FROM tpch.nation WHERE true",
    "TRUNCATE TABLE tpch.nation",
    "DROP TABLE tpch.nation",
    "DROP TABLE IF EXISTS tpch.region",
    "ALTER TABLE tpch.nation RENAME TO tpch.nation2",
    "ALTER TABLE tpch.nation ADD COLUMNS (pwned INT)",
    "ALTER TABLE tpch.nation SET TBLPROPERTIES ('x' = 'y')",
    "CREATE TABLE default.copy AS SELECT * FROM tpch.nation",
    "CREATE TABLE default.empty (a INT) USING parquet",
    "CREATE VIEW default.v AS SELECT * FROM tpch.nation",
    "CREATE DATABASE pwned",
    "DROP DATABASE tpch CASCADE",
    "CREATE GLOBAL TEMPORARY VIEW g AS SELECT 1",
    "COMMENT ON TABLE tpch.nation IS 'x'",
]

DANGEROUS = [
    "SELECT reflect('java.lang.System', 'getenv', 'SPARK_CONNECT_AUTHENTICATE_TOKEN')",
    "SELECT java_method('java.lang.System', 'getProperty', 'user.home')",
    "SELECT try_reflect('java.lang.System', 'getenv', 'HOME')",
    "SELECT ReFlEcT('java.lang.System', 'getenv', 'HOME')",
    "SELECT `reflect`('java.lang.System', 'getenv', 'HOME')",
    "SELECT n_name FROM tpch.nation WHERE reflect('java.lang.String', 'valueOf', n_nationkey) = '1'",
    "SELECT '${env:SPARK_CONNECT_AUTHENTICATE_TOKEN}' AS t",
    "SELECT '${system:user.home}' AS t",
    "SET spark.sql.variable.substitute=true",
    "SET",
    "SET -v",
    "SET spark.sql.warehouse.dir",
    "RESET",
    "RESET spark.sql.shuffle.partitions",
    "ADD JAR /tmp/evil.jar",
    "ADD FILE /etc/hostname",
    "ADD ARCHIVE /tmp/evil.zip",
    "LIST JARS",
    "LIST FILES",
    "CREATE TEMPORARY FUNCTION up AS 'org.apache.hadoop.hive.ql.udf.UDFUpper'",
    "CREATE FUNCTION default.up AS 'org.apache.hadoop.hive.ql.udf.UDFUpper'",
    "CREATE TEMPORARY FUNCTION sqlf() RETURNS INT RETURN (SELECT max(salary) FROM hr.salaries)",
    "EXECUTE IMMEDIATE 'SELECT * FROM hr.salaries'",
    "execute   immediate 'DROP TABLE tpch.nation'",
    "EXECUTE /* hide */ IMMEDIATE 'SELECT 1'",
    "SELECT 1; SELECT * FROM hr.salaries",
    "SELECT 1; DROP TABLE tpch.nation",
    "BEGIN SELECT * FROM hr.salaries; END",
    "BEGIN DECLARE x INT DEFAULT 1; SELECT x; END",
    "CACHE TABLE tpch.nation",
    "CACHE TABLE c1 AS SELECT * FROM hr.salaries",
    "CACHE LAZY TABLE tpch.region",
    "UNCACHE TABLE tpch.nation",
    "CLEAR CACHE",
    "REFRESH TABLE tpch.nation",
    "REFRESH '/tmp'",
    "ANALYZE TABLE tpch.nation COMPUTE STATISTICS",
    "ANALYZE TABLE tpch.nation COMPUTE STATISTICS FOR ALL COLUMNS",
    "MSCK REPAIR TABLE tpch.nation",
    "DECLARE VARIABLE v INT DEFAULT 1",
    "DECLARE OR REPLACE VARIABLE v2 STRING DEFAULT 'x'",
    "SHOW TABLES",
    "SHOW TABLES IN hr",
    "SHOW VIEWS",
    "SHOW TABLE EXTENDED IN tpch LIKE 'nation'",
    "CREATE TEMP VIEW p USING parquet OPTIONS (path '__SALARIES__')",
    "CREATE TEMPORARY TABLE p2 USING parquet OPTIONS (path '__SALARIES__')",
    "CREATE TABLE default.ext (a INT) USING parquet LOCATION '/tmp/spark-mcp-ext'",
    "CREATE TABLE default.ext2 USING parquet LOCATION '__SALARIES__'",
    "ALTER TABLE tpch.nation SET LOCATION '/tmp/elsewhere'",
    "INSERT OVERWRITE DIRECTORY '/tmp/spark-mcp-out' USING parquet SELECT * FROM tpch.nation",
    "LOAD DATA LOCAL INPATH '/etc/passwd' INTO TABLE tpch.nation",
]

# Path reads in SQL: drivers run with spark.sql.runSQLOnFiles=false, so Spark itself no longer
# resolves them, and the policy denies any that would (path access needs sql.admin).
PATH_READS = [
    "SELECT * FROM text.`/etc/passwd`",
    "SELECT * FROM parquet.`__SALARIES__`",
    "SELECT * FROM `parquet`.`__SALARIES__`",
    "SELECT * FROM json.`file:///etc/hostname`",
    "SELECT * FROM binaryFile.`/etc/hostname`",
    "SELECT input_file_name(), * FROM parquet.`__SALARIES__`",
    "SELECT * FROM tpch.nation JOIN text.`/etc/passwd` ON true",
]

CONTROLS = [
    ("SELECT count(*) AS n FROM tpch.lineitem", None),
    ("SELECT n_name FROM tpch.nation WHERE n_regionkey IN (SELECT r_regionkey FROM tpch.region) LIMIT 1", None),
    ("WITH t AS (SELECT o_orderpriority, count(*) c FROM tpch.orders GROUP BY 1) SELECT * FROM t ORDER BY 1", None),
    ("SELECT o_orderkey, rank() OVER (PARTITION BY o_custkey ORDER BY o_totalprice DESC) r FROM tpch.orders", None),
    ("SELECT region, sum(amount) FROM sales.orders GROUP BY ROLLUP(region)", None),
    ("SELECT explode(array(1, 2)) AS x", None),
    ("SELECT * FROM range(3)", None),
    ("VALUES (1, 'a'), (2, 'b')", None),
    ("SELECT upper(n_name), length(n_comment), date_add(DATE'2024-01-01', 1) FROM tpch.nation LIMIT 2", None),
    ("SELECT 'EXECUTE IMMEDIATE is just text here' AS s", "refused"),  # the gate is conservative on purpose
    ("DESCRIBE TABLE tpch.nation", None),
    ("SHOW COLUMNS IN tpch.nation", None),
]


def fill(sql: str, app: App) -> str:
    salaries = next(d.path for d in app.config.datasets if d.name == "hr.salaries")
    return sql.replace(SALARIES_FILE, salaries)


@pytest.mark.parametrize("sql", READ_DENIED_TABLES)
async def test_reading_a_denied_table_is_refused_in_every_syntax(alice: Client, app: App, sql: str) -> None:
    text = await call_error(alice, "run_sql", sql=fill(sql, app))
    assert text.startswith("policy_denied:"), text
    assert "hr.salaries" in text or "secret_codes" in text, text


@pytest.mark.parametrize("sql", WRITES)
async def test_writes_and_ddl_are_refused_for_a_read_only_role(alice: Client, app: App, sql: str) -> None:
    text = await call_error(alice, "run_sql", sql=fill(sql, app))
    assert text.startswith("policy_denied:"), text
    assert any(a in text for a in ("sql.write", "sql.ddl", "sql.admin")), text


async def test_a_refused_command_was_only_analysed_never_run(alice: Client, root: Client) -> None:
    """Spark analyses a statement before governance decides; a command is planned by that
    analysis, not executed. After the refusals, the table and the session are as they were."""
    session = (await call(alice, "create_session"))["session_id"]
    try:
        for sql in (
            "CREATE TEMP VIEW gov_analysed_only AS SELECT * FROM hr.salaries",
            "DROP TABLE tpch.region",
            "TRUNCATE TABLE tpch.region",
            "CREATE TABLE default.gov_analysed_only (x INT)",
        ):
            text = await call_error(alice, "run_sql", session_id=session, sql=sql)
            assert text.startswith("policy_denied:"), text
        missing = await call_error(alice, "run_sql", session_id=session, sql="SELECT * FROM gov_analysed_only")
        assert "TABLE_OR_VIEW_NOT_FOUND" in missing, missing
        # alice may not read default.*, so she is refused found or not; root sees it is not there.
        missing = await call_error(root, "run_sql", sql="SELECT * FROM default.gov_analysed_only")
        assert "TABLE_OR_VIEW_NOT_FOUND" in missing, missing
        counted = await call(alice, "run_sql", session_id=session, sql="SELECT count(*) AS n FROM tpch.region")
        assert counted["rows"] == [[5]], counted
    finally:
        await call(alice, "close_session", session_id=session)  # alice's role allows three at once


# Statements Spark itself cannot analyse on these tables are refused with Spark's reason,
# before anything runs (only sql.admin may send what cannot be checked).
UNANALYSABLE = [
    ("UPDATE tpch.nation SET n_name = 'x'", "PLANNING_ERROR"),
    (
        "MERGE INTO tpch.nation t USING tpch.nation s ON t.n_nationkey = s.n_nationkey WHEN MATCHED THEN DELETE",
        "PLANNING_ERROR",
    ),
    ("INSERT OVERWRITE LOCAL DIRECTORY '/tmp/spark-mcp-out2' SELECT * FROM tpch.nation", "hive"),
    ("SELECT 1 +", "PARSE_SYNTAX_ERROR"),
]


@pytest.mark.parametrize(("sql", "why"), UNANALYSABLE)
async def test_statements_spark_cannot_analyse_are_refused_with_its_reason(alice: Client, sql: str, why: str) -> None:
    text = await call_error(alice, "run_sql", sql=sql)
    assert why.lower() in text.lower(), text
    assert not text.startswith("internal_error")


@pytest.mark.parametrize("sql", DANGEROUS)
async def test_the_dangerous_surface_is_refused_without_sql_admin(alice: Client, app: App, sql: str) -> None:
    text = await call_error(alice, "run_sql", sql=fill(sql, app))
    assert text.startswith("policy_denied:"), text
    assert "sql.admin" in text or "list_tables" in text, text


@pytest.mark.parametrize("sql", PATH_READS)
async def test_path_reads_are_refused_before_anything_is_read(alice: Client, app: App, sql: str) -> None:
    text = await call_error(alice, "run_sql", sql=fill(sql, app))
    assert text.startswith(("policy_denied:", "TABLE_OR_VIEW_NOT_FOUND:")), text


async def test_nothing_the_attacks_tried_took_effect(alice: Client, root: Client) -> None:
    nation = await call(alice, "run_sql", sql="SELECT count(*) FROM tpch.nation")
    assert nation["rows"] == [[25]]
    columns = await call(alice, "describe_table", table="tpch.nation")
    assert "pwned" not in [c["name"] for c in columns["columns"]]
    namespaces = await call(root, "list_namespaces")
    assert "pwned" not in namespaces["namespaces"]
    substitution = await call(root, "run_sql", sql="SET spark.sql.variable.substitute")
    assert substitution["rows"] == [["spark.sql.variable.substitute", "false"]]


@pytest.mark.parametrize(("sql", "expect"), CONTROLS)
async def test_legitimate_analysis_still_works(alice: Client, sql: str, expect: str | None) -> None:
    result = await alice.call_tool("run_sql", {"sql": sql})
    if expect == "refused":
        assert result.is_error
        return
    assert not result.is_error, result.content[0].text
    assert result.structured_content["state"] == "succeeded"


async def test_temp_views_work_and_are_checked_on_their_base_tables(connect: ClientFactory) -> None:
    async with connect("alice") as alice:
        session = (await call(alice, "create_session"))["session_id"]
        try:
            await call(alice, "run_sql", session_id=session, sql="CREATE TEMP VIEW big AS SELECT * FROM tpch.orders")
            reply = await call(alice, "run_sql", session_id=session, sql="SELECT count(*) FROM big")
            assert reply["rows"][0][0] > 0
            await call(alice, "run_sql", session_id=session, sql="USE tpch")
            unqualified = await call(alice, "run_sql", session_id=session, sql="SELECT count(*) FROM nation")
            assert unqualified["rows"] == [[25]]
            # After USE, an unqualified name still resolves through Spark, so hr stays out of reach.
            text = await call_error(alice, "run_sql", session_id=session, sql="SELECT * FROM secret_codes")
            assert "policy_denied" in text
        finally:
            await call(alice, "close_session", session_id=session)


async def test_altering_a_temp_view_to_read_a_denied_table_names_the_table_and_the_rule(
    connect: ClientFactory,
) -> None:
    # Once refused as "text Spark could not analyse": ALTER VIEW of a temp view is a statement of
    # the caller's own session, decided on the tables its new query reads.
    async with connect("alice") as alice:
        session = (await call(alice, "create_session"))["session_id"]
        try:
            await call(alice, "run_sql", session_id=session, sql="CREATE TEMP VIEW v AS SELECT * FROM tpch.nation")
            text = await call_error(
                alice, "run_sql", session_id=session, sql="ALTER VIEW v AS SELECT * FROM hr.salaries"
            )
            assert text.startswith(
                "policy_denied: alice may not read spark_catalog.hr.salaries: denied by role analyst (hr.*)"
            ), text
            assert 'rule: roles.analyst.deny[1] "hr.*"' in text, text
            unchanged = await call(alice, "run_sql", session_id=session, sql="SELECT count(*) FROM v")
            assert unchanged["rows"] == [[25]]
            # Altering it to read what alice may read is allowed, and takes effect.
            await call(alice, "run_sql", session_id=session, sql="ALTER VIEW v AS SELECT r_name FROM tpch.region")
            altered = await call(alice, "run_sql", session_id=session, sql="SELECT count(*) FROM v")
            assert altered["rows"] == [[5]]
        finally:
            await call(alice, "close_session", session_id=session)


async def test_a_denial_names_the_rule_that_made_it(alice: Client) -> None:
    text = await call_error(alice, "run_sql", sql="SELECT * FROM hr.salaries")
    assert 'rule: roles.analyst.deny[1] "hr.*"' in text


async def test_an_engineer_writes_staging_but_not_tpch(erin: Client) -> None:
    await call(erin, "run_sql", sql="CREATE NAMESPACE IF NOT EXISTS staging")
    await call(erin, "run_sql", sql="CREATE TABLE staging.nations USING parquet AS SELECT * FROM tpch.nation")
    await call(erin, "run_sql", sql="INSERT INTO staging.nations SELECT * FROM tpch.nation")
    reply = await call(erin, "run_sql", sql="SELECT count(*) FROM staging.nations")
    assert reply["rows"] == [[50]]
    text = await call_error(erin, "run_sql", sql="INSERT INTO tpch.nation SELECT * FROM staging.nations")
    assert text.startswith("policy_denied:") and "tpch.nation" in text
    text = await call_error(erin, "run_sql", sql="CREATE TABLE staging.leak AS SELECT * FROM hr.salaries")
    assert text.startswith("policy_denied:") and "hr.salaries" in text
    await call(erin, "run_sql", sql="DROP TABLE staging.nations")


async def test_admin_may_use_the_dangerous_surface(root: Client) -> None:
    reply = await call(root, "run_sql", sql="SELECT java_method('java.lang.Math', 'max', 2, 3) AS m")
    assert reply["rows"] == [["3"]]


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT reflect('java.lang.System', 'getenv', 'SPARK_CONNECT_AUTHENTICATE_TOKEN') AS t",
        "SELECT '${env:SPARK_CONNECT_AUTHENTICATE_TOKEN}' AS t",
        "SELECT * FROM text.`/proc/self/environ`",
        "SET -v",
        # Errors quote the value that failed: the token would be in Spark's message itself.
        "SELECT raise_error(java_method('java.lang.System', 'getenv', 'SPARK_CONNECT_AUTHENTICATE_TOKEN'))",
        "SELECT CAST(java_method('java.lang.System', 'getenv', 'SPARK_CONNECT_AUTHENTICATE_TOKEN') AS INT)",
        "SELECT assert_true(false, java_method('java.lang.System', 'getenv', 'SPARK_CONNECT_AUTHENTICATE_TOKEN'))",
    ],
)
async def test_the_driver_token_never_reaches_a_tool_reply_even_for_admin(root: Client, app: App, sql: str) -> None:
    result = await root.call_tool("run_sql", {"sql": sql, "max_rows": 1000})
    tokens = [d.token for d in app.drivers.drivers()]
    assert tokens
    everything = " ".join(c.text for c in result.content if c.type == "text") + str(result.structured_content)
    if not result.is_error and result.structured_content.get("result_id"):
        rid = result.structured_content["result_id"]
        everything += (await root.read_resource(f"spark://results/{rid}")).contents[0].text
        everything += (await root.read_resource(f"spark://results/{rid}.csv")).contents[0].text
    for token in tokens:
        assert token not in everything


async def test_the_driver_token_in_an_error_is_replaced_and_the_error_still_reads(root: Client, app: App) -> None:
    sql = "SELECT raise_error(java_method('java.lang.System', 'getenv', 'SPARK_CONNECT_AUTHENTICATE_TOKEN'))"
    text = await call_error(root, "run_sql", sql=sql)
    token = app.drivers.current("root")
    assert token is not None and token.token not in text
    assert "[REDACTED]" in text  # the agent learns a secret was there, not what it was


async def test_the_driver_token_never_reaches_a_job_record_or_a_resource_error(root: Client, app: App) -> None:
    sql = "SELECT raise_error(java_method('java.lang.System', 'getenv', 'SPARK_CONNECT_AUTHENTICATE_TOKEN'))"
    failed = await root.call_tool("run_sql", {"sql": sql, "wait_s": 0})
    job_id = failed.structured_content["job_id"] if not failed.is_error else None
    replies = [failed]
    if job_id:
        replies.append(await root.call_tool("get_job", {"job_id": job_id, "wait_s": 30}))
    replies.append(await root.call_tool("list_jobs", {}))
    driver = app.drivers.current("root")
    assert driver is not None
    for reply in replies:
        everything = " ".join(c.text for c in reply.content if c.type == "text") + str(reply.structured_content)
        assert driver.token not in everything


async def test_explain_of_a_broken_statement_over_a_denied_table_reveals_none_of_its_columns(alice: Client) -> None:
    # Spark would answer "did you mean one of the following? [name, salary]": the denied table's columns.
    for sql in ("SELECT nme FROM hr.salaries", "SELECT code2 FROM tpch.secret_codes"):
        result = await alice.call_tool("explain", {"sql": sql, "mode": "extended"})
        assert not result.is_error, result.content[0].text
        reply = result.structured_content
        assert reply["decision"]["allowed"] is False
        assert reply["decision"]["rule"] in ('roles.analyst.deny[1] "hr.*"', 'roles.analyst.deny[0] "*.secret_*"')
        assert reply["error"] is None and reply["plan"] is None
        everything = result.content[0].text + str(reply)
        for column in ("salary", "`name`", "'name'", "value", "did you mean"):
            assert column not in everything.lower(), everything


async def test_explain_of_a_broken_statement_over_readable_tables_shows_sparks_reason(alice: Client) -> None:
    reply = await call(alice, "explain", sql="SELECT n_nme FROM tpch.nation")
    assert reply["decision"]["allowed"] is False and reply["decision"]["rule"] == "unanalysable"
    assert reply["error"]["error_class"] == "UNRESOLVED_COLUMN.WITH_SUGGESTION"
    assert "n_name" in reply["error"]["message"]  # a readable table's columns are fine to suggest


async def test_explain_and_run_sql_give_the_same_verdict_on_a_broken_statement(alice: Client) -> None:
    sql = "SELECT secrt FROM tpch.secret_codes"
    explained = await call(alice, "explain", sql=sql)
    refused = await call_error(alice, "run_sql", sql=sql)
    assert refused.startswith("policy_denied:")
    assert f"[rule: {explained['decision']['rule']}]" in refused


async def test_use_waits_for_the_statements_its_session_is_running(connect: ClientFactory) -> None:
    # A statement is judged on the names Spark resolved when it was analysed. Were USE to run
    # while it is still running, "orders" judged as sales.orders could be read as hr.orders.
    async with connect("alice") as alice:
        session = (await call(alice, "create_session"))["session_id"]
        try:
            long = await call(alice, "run_sql", session_id=session, sql=LONG_QUERY, wait_s=0)
            switched = anyio.Event()

            async def use_sales() -> None:
                await call(alice, "run_sql", session_id=session, sql="USE sales")
                switched.set()

            async with anyio.create_task_group() as group:
                group.start_soon(use_sales)
                # Nothing will set it while the long statement runs: give it a fair chance to, then look.
                with anyio.move_on_after(3):
                    await switched.wait()
                assert not switched.is_set(), "USE ran while another statement of its session was running"
                await call(alice, "cancel_job", job_id=long["job_id"])
                with anyio.fail_after(60):
                    await switched.wait()
            orders = await call(alice, "run_sql", session_id=session, sql="SELECT count(*) FROM orders")
            assert orders["rows"] == [[3]]  # sales.orders, resolved after the switch
        finally:
            await call(alice, "close_session", session_id=session)
