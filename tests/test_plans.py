"""Structured DataFrame plans against a real driver: every operation, parity with SQL, governance."""

from __future__ import annotations

from typing import Any

import pytest
from mcp import Client

from spark_mcp.app import App
from tests.helpers import ClientFactory, call, call_error

pytestmark = [pytest.mark.anyio, pytest.mark.spark, pytest.mark.any_era]

NATION = {"table": "tpch.nation"}


def plan(source: dict[str, Any], *operations: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"source": source, "operations": list(operations), **extra}


# (operation, the analyzed-plan node it must produce)
OPERATIONS = [
    pytest.param({"op": "select", "columns": ["n_name", "n_nationkey * 2 AS twice"]}, "Project [", id="select"),
    pytest.param({"op": "filter", "condition": "n_regionkey = 1"}, "Filter (n_regionkey", id="filter"),
    pytest.param(
        {"op": "with_column", "name": "lower_name", "expr": "lower(n_name)"}, "lower(n_name", id="with_column"
    ),
    pytest.param({"op": "drop", "columns": ["n_comment"]}, "Project [n_nationkey", id="drop"),
    pytest.param({"op": "rename", "mapping": {"n_name": "nation"}}, "AS nation", id="rename"),
    pytest.param(
        {"op": "group_by", "columns": ["n_regionkey"], "aggs": [{"fn": "count", "column": "*", "alias": "n"}]},
        "Aggregate [n_regionkey",
        id="group_by",
    ),
    pytest.param({"op": "order_by", "keys": [{"column": "n_name", "descending": True}]}, "Sort [n_name", id="order_by"),
    pytest.param({"op": "limit", "n": 3}, "GlobalLimit 3", id="limit"),
    pytest.param({"op": "distinct"}, "Deduplicate [n_nationkey", id="distinct"),
    pytest.param({"op": "distinct", "columns": ["n_regionkey"]}, "Deduplicate [n_regionkey", id="distinct on columns"),
    pytest.param({"op": "sample", "fraction": 0.5, "seed": 7}, "Sample 0.0, 0.5, false, 7", id="sample"),
    pytest.param(
        {"op": "window", "name": "r", "function": "rank()", "partition_by": ["n_regionkey"], "order_by": ["n_name"]},
        "Window [rank(n_name",
        id="window",
    ),
    pytest.param(
        {
            "op": "pivot",
            "group_by": ["n_regionkey"],
            "pivot_column": "n_nationkey",
            "values": [0, 1],
            "aggs": [{"fn": "count", "column": "*"}],
        },
        "pivotfirst",
        id="pivot",
    ),
    pytest.param(
        {"op": "join", "right": {"source": {"table": "tpch.region"}}, "condition": "n_regionkey = r_regionkey"},
        "Join Inner, (n_regionkey",
        id="join",
    ),
    pytest.param(
        {"op": "union", "other": {"source": {"table": "tpch.nation"}}},
        "Union",
        id="union",
    ),
]


@pytest.mark.parametrize(("operation", "node"), OPERATIONS)
async def test_each_operation_builds_the_expected_analyzed_plan(alice: Client, operation: dict, node: str) -> None:
    reply = await call(alice, "explain", plan=plan(NATION, operation), mode="extended")
    assert reply["decision"]["allowed"] is True, reply["decision"]
    assert reply["statement_kind"] == "query"
    assert "spark_catalog.tpch.nation" in reply["tables_read"]
    analyzed = reply["plan"].split("== Analyzed Logical Plan ==", 1)[1].split("== Optimized", 1)[0]
    assert node in analyzed, analyzed


PARITY = [
    pytest.param(
        plan(
            {"table": "tpch.lineitem"},
            {"op": "filter", "condition": "l_shipdate <= date'1998-09-02'"},
            {
                "op": "group_by",
                "columns": ["l_returnflag", "l_linestatus"],
                "aggs": [
                    {"fn": "sum", "column": "l_quantity", "alias": "sum_qty"},
                    {"expr": "sum(l_extendedprice * (1 - l_discount))", "alias": "revenue"},
                    {"fn": "count", "column": "*", "alias": "n"},
                ],
            },
            {"op": "order_by", "keys": ["l_returnflag", "l_linestatus"]},
        ),
        """SELECT l_returnflag, l_linestatus, sum(l_quantity) AS sum_qty,
                  sum(l_extendedprice * (1 - l_discount)) AS revenue, count(*) AS n
           FROM tpch.lineitem WHERE l_shipdate <= date'1998-09-02'
           GROUP BY l_returnflag, l_linestatus ORDER BY l_returnflag, l_linestatus""",
        id="TPC-H Q1 shape",
    ),
    pytest.param(
        plan(
            {"table": "tpch.orders"},
            {
                "op": "join",
                "right": plan({"table": "tpch.customer"}, {"op": "select", "columns": ["c_custkey", "c_mktsegment"]}),
                "condition": "o_custkey = c_custkey",
            },
            {
                "op": "group_by",
                "columns": ["c_mktsegment"],
                "aggs": [{"fn": "avg", "column": "o_totalprice", "alias": "avg_price"}],
            },
            {"op": "order_by", "keys": [{"column": "avg_price", "descending": True}]},
        ),
        """SELECT c_mktsegment, avg(o_totalprice) AS avg_price FROM tpch.orders
           JOIN (SELECT c_custkey, c_mktsegment FROM tpch.customer) c ON o_custkey = c_custkey
           GROUP BY c_mktsegment ORDER BY avg_price DESC""",
        id="join then aggregate",
    ),
    pytest.param(
        plan(
            {"table": "tpch.nation"},
            {
                "op": "window",
                "name": "rnk",
                "function": "row_number()",
                "partition_by": ["n_regionkey"],
                "order_by": [{"column": "n_name", "descending": True}],
            },
            {"op": "filter", "condition": "rnk = 1"},
            {"op": "select", "columns": ["n_regionkey", "n_name"]},
            {"op": "order_by", "keys": ["n_regionkey"]},
        ),
        """SELECT n_regionkey, n_name FROM (
             SELECT *, row_number() OVER (PARTITION BY n_regionkey ORDER BY n_name DESC) AS rnk FROM tpch.nation)
           WHERE rnk = 1 ORDER BY n_regionkey""",
        id="window top-1 per group",
    ),
    pytest.param(
        plan(
            {"table": "tpch.orders"},
            {"op": "with_column", "name": "year", "expr": "year(o_orderdate)"},
            {
                "op": "pivot",
                "group_by": ["o_orderpriority"],
                "pivot_column": "year",
                "values": [1995, 1996],
                "aggs": [{"fn": "count", "column": "*"}],
            },
            {"op": "order_by", "keys": ["o_orderpriority"]},
        ),
        """SELECT * FROM (SELECT o_orderpriority, year(o_orderdate) AS year FROM tpch.orders)
           PIVOT (count(*) FOR year IN (1995, 1996)) ORDER BY o_orderpriority""",
        id="pivot",
    ),
    pytest.param(
        plan(
            {"range": {"start": 0, "end": 10}},
            {"op": "union", "other": plan({"range": {"start": 5, "end": 15}}), "distinct": True},
            {"op": "group_by", "aggs": [{"fn": "count_distinct", "column": "id", "alias": "n"}]},
        ),
        "SELECT count(DISTINCT id) AS n FROM (SELECT id FROM range(0, 10) UNION SELECT id FROM range(5, 15))",
        id="union of ranges",
    ),
    pytest.param(
        plan(
            {"sql": "SELECT n_name, n_regionkey FROM tpch.nation"},
            {"op": "rename", "mapping": {"n_name": "name"}},
            {"op": "drop", "columns": ["n_regionkey"]},
            {"op": "order_by", "keys": ["name DESC"]},
            {"op": "limit", "n": 2},
        ),
        "SELECT n_name AS name FROM tpch.nation ORDER BY name DESC LIMIT 2",
        id="sql source then rename, drop, order, limit",
    ),
]


@pytest.mark.parametrize(("structured", "sql"), PARITY)
async def test_plan_results_match_the_equivalent_sql(alice: Client, structured: dict, sql: str) -> None:
    from_plan = await call(alice, "run_plan", plan=structured, max_rows=200)
    from_sql = await call(alice, "run_sql", sql=sql, max_rows=200)
    assert from_plan["rows"] == from_sql["rows"]
    assert [c["type"] for c in from_plan["columns"]] == [c["type"] for c in from_sql["columns"]]


async def test_an_analysis_can_be_built_step_by_step_with_save_as(alice: Client) -> None:
    session = (await call(alice, "create_session"))["session_id"]
    try:
        first = plan(
            {"table": "tpch.orders"},
            {"op": "filter", "condition": "o_orderstatus = 'F'"},
            save_as="finished_orders",
        )
        reply = await call(alice, "run_plan", plan=first, session_id=session, max_rows=1)
        assert any("finished_orders" in n for n in reply["notes"])
        second = plan(
            {"table": "finished_orders"},
            {"op": "group_by", "aggs": [{"fn": "count", "column": "*", "alias": "n"}]},
        )
        counted = await call(alice, "run_plan", plan=second, session_id=session)
        direct = await call(alice, "run_sql", sql="SELECT count(*) FROM tpch.orders WHERE o_orderstatus = 'F'")
        assert counted["rows"] == direct["rows"]
    finally:
        await call(alice, "close_session", session_id=session)


async def test_a_stored_result_can_be_the_source_of_a_plan(alice: Client) -> None:
    first = await call(alice, "run_sql", sql="SELECT id, id % 3 AS bucket FROM range(30)")
    reply = await call(
        alice,
        "run_plan",
        plan=plan(
            {"result_id": first["result_id"]},
            {"op": "group_by", "columns": ["bucket"], "aggs": [{"fn": "sum", "column": "id", "alias": "total"}]},
            {"op": "order_by", "keys": ["bucket"]},
        ),
    )
    assert reply["rows"] == [[0, 135], [1, 145], [2, 155]]


async def test_errors_name_the_operation_that_failed(alice: Client) -> None:
    text = await call_error(
        alice,
        "run_plan",
        plan=plan(
            NATION,
            {"op": "filter", "condition": "n_regionkey = 1"},
            {"op": "select", "columns": ["no_such_column"]},
        ),
    )
    assert text.startswith("plan_error:")
    assert "operations[1] (select)" in text
    assert "UNRESOLVED_COLUMN" in text


async def test_errors_inside_a_joined_plan_name_the_nested_path(alice: Client) -> None:
    text = await call_error(
        alice,
        "run_plan",
        plan=plan(
            NATION,
            {
                "op": "join",
                "right": plan({"table": "tpch.region"}, {"op": "filter", "condition": "bogus_col > 1"}),
                "on": ["n_regionkey"],
            },
        ),
    )
    assert "operations[0] (join) > right" in text and "operations[0] (filter)" in text


async def test_a_malformed_plan_is_rejected_by_its_schema(alice: Client) -> None:
    result = await alice.call_tool("run_plan", {"plan": {"source": {"table": "t"}, "operations": [{"op": "explode"}]}})
    assert result.is_error
    assert "op" in result.content[0].text


ATTACKS = [
    pytest.param(plan({"table": "hr.salaries"}), "hr.salaries", id="a denied table as source"),
    pytest.param(plan({"table": "tpch.secret_codes"}), "secret_codes", id="a secret_ table as source"),
    pytest.param(
        plan(NATION, {"op": "filter", "condition": "n_nationkey IN (SELECT salary FROM hr.salaries)"}),
        "hr.salaries",
        id="a subquery on a denied table inside a filter",
    ),
    pytest.param(
        plan(NATION, {"op": "with_column", "name": "x", "expr": "(SELECT max(salary) FROM hr.salaries)"}),
        "hr.salaries",
        id="a scalar subquery inside an expression",
    ),
    pytest.param(
        plan(NATION, {"op": "select", "columns": ["reflect('java.lang.System', 'getenv', 'HOME') AS h"]}),
        "sql.admin",
        id="reflection in a select expression",
    ),
    pytest.param(
        plan(
            NATION,
            {
                "op": "group_by",
                "columns": ["java_method('java.lang.String', 'valueOf', n_regionkey)"],
                "aggs": [{"fn": "count", "column": "*"}],
            },
        ),
        "sql.admin",
        id="reflection as a grouping key",
    ),
    pytest.param(
        plan(NATION, {"op": "join", "right": plan({"table": "hr.salaries"}), "how": "cross"}),
        "hr.salaries",
        id="a denied table joined in",
    ),
    pytest.param(
        plan(
            NATION,
            {"op": "union", "other": plan({"sql": "SELECT salary, name, 1, 'x' FROM hr.salaries"}), "by_name": False},
        ),
        "hr.salaries",
        id="a denied table unioned in through a sql source",
    ),
    pytest.param(plan({"table": "parquet.`/etc`"}), "", id="a path-based source"),
    pytest.param(plan({"sql": "SELECT * FROM text.`/etc/passwd`"}), "", id="a path read in a sql source"),
    pytest.param(plan({"sql": "DROP TABLE tpch.nation"}), "", id="a command in a sql source"),
    pytest.param(plan({"sql": "SET spark.sql.variable.substitute=true"}), "", id="SET in a sql source"),
    pytest.param(
        plan({"sql": "EXECUTE IMMEDIATE 'DROP TABLE tpch.nation'"}), "", id="EXECUTE IMMEDIATE in a sql source"
    ),
    pytest.param(
        plan(NATION, {"op": "window", "name": "w", "function": "reflect('java.lang.System', 'getenv', 'HOME')"}),
        "",
        id="reflection as a window function",
    ),
]


@pytest.mark.parametrize(("structured", "named"), ATTACKS)
async def test_governance_attacks_through_plans_are_denied_before_execution(
    alice: Client, structured: dict, named: str
) -> None:
    text = await call_error(alice, "run_plan", plan=structured)
    assert text.startswith(("policy_denied:", "plan_error:", "PATH_NOT_FOUND", "TABLE_OR_VIEW_NOT_FOUND")), text
    assert named in text


async def test_the_commands_attempted_through_plans_did_not_run(alice: Client) -> None:
    reply = await call(alice, "run_sql", sql="SELECT count(*) FROM tpch.nation")
    assert reply["rows"] == [[25]]


async def test_another_principals_result_cannot_be_a_source(connect: ClientFactory, alice: Client) -> None:
    first = await call(alice, "run_sql", sql="SELECT 1 AS x")
    async with connect("bob") as bob:
        text = await call_error(bob, "run_plan", plan=plan({"result_id": first["result_id"]}))
        assert "result_not_found" in text or "not found" in text


async def test_explain_gives_kind_tables_decision_and_cost_estimates(alice: Client) -> None:
    reply = await call(
        alice, "explain", sql="SELECT o_orderpriority, count(*) FROM tpch.orders GROUP BY 1", mode="cost"
    )
    assert reply["statement_kind"] == "query"
    assert reply["tables_read"] == ["spark_catalog.tpch.orders"]
    assert "count" in reply["functions"]
    assert reply["decision"]["allowed"] is True
    assert reply["estimated_bytes"] > 0
    assert "Statistics(" in reply["plan"]


async def test_explain_of_a_denied_statement_withholds_the_plan_and_runs_nothing(alice: Client) -> None:
    reply = await call(alice, "explain", sql="DROP TABLE tpch.nation")
    assert reply["decision"]["allowed"] is False
    assert reply["plan"] is None
    assert reply["statement_kind"] == "ddl"
    assert reply["tables_written"] == ["spark_catalog.tpch.nation"]
    still_there = await call(alice, "run_sql", sql="SELECT count(*) FROM tpch.nation")
    assert still_there["rows"] == [[25]]


async def test_explain_of_a_plan_reports_the_policy_decision(alice: Client) -> None:
    reply = await call(alice, "explain", plan=plan({"table": "hr.salaries"}))
    assert reply["decision"]["allowed"] is False
    assert "hr.salaries" in reply["decision"]["reason"]


async def test_explain_needs_exactly_one_of_sql_or_plan(alice: Client) -> None:
    assert "invalid_input" in await call_error(alice, "explain")
    assert "invalid_input" in await call_error(alice, "explain", sql="SELECT 1", plan=plan(NATION))


async def test_plans_need_the_plan_run_action(connect: ClientFactory, app: App) -> None:
    async with connect("carol") as carol:  # catalog_only: no plan.run
        text = await call_error(carol, "run_plan", plan=plan(NATION))
        assert "policy_denied" in text
