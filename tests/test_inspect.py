"""Plan inspection over real EXPLAIN EXTENDED outputs (no driver needed).

Every file in ``tests/fixtures/explain`` was captured from Spark 4.3 by
``tests/fixtures/capture_explain.py`` (``synthetic_*`` files are hand-written for plans no
catalog shipped with pyspark can produce, and say so). Each one has an expectation here, so
a new fixture cannot go unchecked. Attack tests plant plan-like text through literals,
aliases and column names, and a property test checks that such text can only ever make a
verdict stricter.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from spark_mcp.identity import Principal
from spark_mcp.policy import decide_statement, policy_from_toml
from spark_mcp.spark.inspect import analysis_error, analyzed_section, classify, inspect_explain
from spark_mcp.spark.inspect.classify import read_plan
from spark_mcp.spark.sqltext import gate
from spark_mcp.statement import DangerKind, StatementFacts, StatementKind, TableName

FIXTURES = Path(__file__).parent / "fixtures" / "explain"
BUILTINS = frozenset((FIXTURES / "system_functions.list").read_text(encoding="utf-8").split())

K = StatementKind
D = DangerKind


def explain(name: str) -> str:
    """A fixture's EXPLAIN output, without its ``-- `` SQL header lines."""
    lines = (FIXTURES / f"{name}.txt").read_text(encoding="utf-8").split("\n")
    start = 0
    while start < len(lines) and lines[start].startswith("-- "):
        start += 1
    return "\n".join(lines[start:])


def facts_of(name: str) -> StatementFacts:
    return inspect_explain(explain(name), builtin_functions=BUILTINS)


def names(tables: frozenset[TableName]) -> set[str]:
    return {str(t) for t in tables}


@dataclass(frozen=True)
class Expect:
    kind: StatementKind
    reads: tuple[str, ...] = ()
    writes: tuple[str, ...] = ()
    dangers: tuple[DangerKind, ...] = ()
    views: tuple[str, ...] = ()
    temp_view: str | None = None


def sc(*tables: str) -> tuple[str, ...]:
    """Tables of the session catalog's default namespace, by short name."""
    return tuple(t if "." in t else f"spark_catalog.default.{t}" for t in tables)


PV = "spark_catalog.default.pv"
JT = "dj.app.jt"

EXPECTED: dict[str, tuple[str, Expect]] = {
    # --- queries ---------------------------------------------------------------------------
    "query_simple": ("a query reads its table", Expect(K.QUERY, sc("t1"))),
    "query_temp_view": ("a temp view expands to its base table", Expect(K.QUERY, sc("t1"), views=("tv",))),
    "query_persistent_view": ("a view expands to its base table", Expect(K.QUERY, sc("t1"), views=(PV,))),
    "query_nested_view": (
        "views over views expand to every base table",
        Expect(K.QUERY, sc("t1", "secret"), views=(PV, "spark_catalog.default.pv_nested")),
    ),
    "query_temp_view_over_view": (
        "a temp view over a view expands twice",
        Expect(K.QUERY, sc("t1"), views=("tv_over_view", PV)),
    ),
    "query_global_temp_view": (
        "a global temp view expands to its base table",
        Expect(K.QUERY, sc("t2"), views=("global_temp.gv",)),
    ),
    "query_view_with_reflect": (
        "reflection inside a view is still found",
        Expect(K.QUERY, (), dangers=(D.REFLECTION,), views=("spark_catalog.default.pv_reflect",)),
    ),
    "query_v2_catalog": ("a v2 catalog table is read by its full name", Expect(K.QUERY, (JT,))),
    "query_jdbc_v1": ("a v1 JDBC table is read by its catalog name", Expect(K.QUERY, sc("t_jdbc1"))),
    "query_v2_read_options": (
        "read options that can redirect a JDBC read are path access",
        Expect(K.QUERY, (JT,), dangers=(D.PATH_ACCESS,)),
    ),
    "query_v1_read_options": ("any read options are path access", Expect(K.QUERY, sc("t1"), dangers=(D.PATH_ACCESS,))),
    "query_join_self": ("a self-join reads its table once", Expect(K.QUERY, sc("t1"))),
    "query_column_named_like_a_call": (
        "a column named like a call (ibis's CountStar(t)) is a header, not an unknown node",
        Expect(K.QUERY, sc("t1")),
    ),
    "query_cte": ("a CTE resolves to its base table", Expect(K.QUERY, sc("t1"))),
    "query_recursive_cte": ("a recursive CTE reads nothing", Expect(K.QUERY)),
    "query_subqueries": (
        "IN and EXISTS subqueries are read through",
        Expect(K.QUERY, sc("t1"), views=(PV, "tv")),
    ),
    "query_scalar_subquery": ("scalar subqueries are read through", Expect(K.QUERY, sc("t1", "secret"))),
    "query_set_operations": ("set operations read all sides", Expect(K.QUERY, sc("t1"), views=(PV, "tv"))),
    "query_window_qualify": ("window functions and QUALIFY pass", Expect(K.QUERY, sc("t1"))),
    "query_rollup": ("ROLLUP passes", Expect(K.QUERY, sc("t1"))),
    "query_cube": ("CUBE passes", Expect(K.QUERY, sc("t1"))),
    "query_grouping_sets": ("GROUPING SETS pass", Expect(K.QUERY, sc("t1"))),
    "query_pivot": ("PIVOT passes", Expect(K.QUERY, sc("t1"))),
    "query_unpivot": ("UNPIVOT passes", Expect(K.QUERY)),
    "query_lateral_view": ("LATERAL VIEW explode passes", Expect(K.QUERY, sc("t1"))),
    "query_lateral_subquery": ("a lateral subquery passes", Expect(K.QUERY, sc("t1"))),
    "query_values": ("VALUES in FROM passes", Expect(K.QUERY)),
    "query_values_bare": ("a bare VALUES statement passes", Expect(K.QUERY)),
    "query_tablesample": ("TABLESAMPLE passes", Expect(K.QUERY, sc("t1"))),
    "query_pipe": ("pipe syntax passes", Expect(K.QUERY, sc("t1"))),
    "query_identifier_clause": ("IDENTIFIER('t1') reads t1", Expect(K.QUERY, sc("t1"))),
    "query_higher_order": ("lambdas in higher-order functions pass", Expect(K.QUERY)),
    "query_functions": ("date, string, json, regexp and math functions pass", Expect(K.QUERY)),
    "query_aggregates": ("aggregates, WITHIN GROUP and IGNORE NULLS pass", Expect(K.QUERY, sc("t1"))),
    "query_order_limit_offset": ("ORDER BY, LIMIT and OFFSET pass", Expect(K.QUERY, sc("t1"))),
    "query_hints": ("hints, DISTRIBUTE BY and SORT BY pass", Expect(K.QUERY, sc("t1"))),
    "query_column_aliases": ("table column aliases pass", Expect(K.QUERY, sc("t1"))),
    "query_range": ("range() reads no table", Expect(K.QUERY)),
    "query_generators": ("table-valued generators pass", Expect(K.QUERY)),
    "query_json_tuple": ("json_tuple passes", Expect(K.QUERY)),
    "query_misc_builtins": ("current_user, uuid and friends pass", Expect(K.QUERY)),
    "query_variable": ("reading a session variable passes", Expect(K.QUERY)),
    "query_comment_and_semicolon_literal": ("literals with ; and -- pass", Expect(K.QUERY, sc("t1"))),
    "query_join_kinds": ("anti and full outer joins pass", Expect(K.QUERY, sc("t1", "t2", "secret"))),
    "query_natural_cross": ("natural and cross joins pass", Expect(K.QUERY, sc("t1", "t2", "secret"))),
    "query_in_values_and_case": ("CASE and IN lists pass", Expect(K.QUERY, sc("t1"))),
    "query_literal_with_line_break": (
        "a literal line break in a column name is no attack",
        Expect(K.QUERY, sc("t1")),
    ),
    "query_literal_looks_like_call": ("a literal such as 'total(' is no UDF call", Expect(K.QUERY, sc("t1"))),
    "query_wide_table_full_fields": ("a wide table passes once the field limit is raised", Expect(K.QUERY, sc("wide"))),
    "query_wide_table": (
        "a plan Spark truncated to 25 fields cannot be checked",
        Expect(K.UNKNOWN, dangers=(D.UNANALYSABLE,)),
    ),
    "query_truncated_select_list": (
        "a reflect call hidden past the 25th field is not waved through",
        Expect(K.UNKNOWN, dangers=(D.UNANALYSABLE,)),
    ),
    "query_stream": ("a streaming read is an unknown node", Expect(K.QUERY, dangers=(D.UNKNOWN_NODE,))),
    # --- the dangerous surface inside queries ------------------------------------------------
    "query_reflection": (
        "reflect, java_method and try_reflect are reflection",
        Expect(K.QUERY, dangers=(D.REFLECTION,)),
    ),
    "query_reflection_identifier": (
        "IDENTIFIER('reflect') is still reflection",
        Expect(K.QUERY, dangers=(D.REFLECTION,)),
    ),
    "query_reflection_qualified": (
        "system.builtin.java_method is still reflection",
        Expect(K.QUERY, dangers=(D.REFLECTION,)),
    ),
    "query_udf_persistent": (
        "a persistent SQL function is a UDF call",
        Expect(K.QUERY, sc("t1"), dangers=(D.UDF_CALL,)),
    ),
    "query_udf_temporary": ("a temporary function is a UDF call", Expect(K.QUERY, sc("t1"), dangers=(D.UDF_CALL,))),
    "query_udf_identifier": ("IDENTIFIER('f')(x) is a UDF call", Expect(K.QUERY, sc("t1"), dangers=(D.UDF_CALL,))),
    "query_udf_qualified_temporary": (
        "system.session.f is a UDF call",
        Expect(K.QUERY, sc("t1"), dangers=(D.UDF_CALL,)),
    ),
    "query_builtin_qualified": ("system.builtin.abs is a built-in", Expect(K.QUERY, sc("t1"))),
    "query_table_function_sql": ("a SQL table function is a UDF call", Expect(K.QUERY, dangers=(D.UDF_CALL,))),
    "query_path_text": ("text.`/etc/hostname` is path access", Expect(K.QUERY, dangers=(D.PATH_ACCESS,))),
    "query_path_csv": ("csv.`/etc/passwd` is path access", Expect(K.QUERY, dangers=(D.PATH_ACCESS,))),
    "query_script_transform": (
        "TRANSFORM USING a shell command is code execution",
        Expect(K.QUERY, sc("t1"), dangers=(D.COMMAND_EXECUTION,)),
    ),
    "query_protobuf_descriptor_path": (
        "a protobuf descriptor path that fails analysis is unanalysable",
        Expect(K.UNKNOWN, dangers=(D.UNANALYSABLE,)),
    ),
    # --- injection through literals, aliases and names ---------------------------------------
    "inject_literal_fake_project": (
        "a literal printing a fake node hides no reflection",
        Expect(K.QUERY, sc("t1"), dangers=(D.REFLECTION,)),
    ),
    "inject_literal_fake_relation": (
        "a literal printing a relation only adds a read",
        Expect(K.QUERY, sc("decoy")),
    ),
    "inject_literal_fake_root": (
        "a literal printing a second root makes the statement unknown",
        # The planted DropTable also reads as a command inside the query: stricter still.
        Expect(K.UNKNOWN, sc("t1"), dangers=(D.UNKNOWN_NODE, D.UNANALYSABLE)),
    ),
    "inject_alias_in_header": ("an alias printing a relation only adds a read", Expect(K.QUERY, sc("decoy"))),
    "inject_column_name_of_table": (
        "a column name printing a relation only adds a read",
        Expect(K.QUERY, sc("decoy", "odd_column")),
    ),
    "inject_fake_section_marker": (
        "a literal printing section headers makes the plan unreadable",
        Expect(K.UNKNOWN, dangers=(D.UNANALYSABLE,)),
    ),
    "inject_insert_hides_target": ("a literal cannot hide an insert's target", Expect(K.WRITE, sc("t1"), sc("t2"))),
    "inject_insert_partition_value": (
        "a partition value cannot hide an insert's target",
        Expect(K.WRITE, (), sc("tp")),
    ),
    "inject_temp_view_text": (
        "fake plan lines in a temp view's text change nothing",
        Expect(K.TEMP_VIEW, sc("secret"), temp_view="tv_inject"),
    ),
    "inject_global_view_as_local": (
        "a global temp view cannot pass for a local one",
        Expect(K.UNKNOWN, dangers=(D.UNANALYSABLE,)),
    ),
    "inject_delete_condition": (
        "a fake relation in a DELETE condition makes it unanalysable",
        Expect(K.WRITE, (JT,), (JT,), dangers=(D.UNANALYSABLE,)),
    ),
    # --- temp views --------------------------------------------------------------------------
    "temp_view_create": (
        "CREATE TEMP VIEW is a temp view reading its tables",
        Expect(K.TEMP_VIEW, sc("t1"), temp_view="tv2"),
    ),
    "temp_view_over_view": (
        "a temp view over a view reads the base tables",
        Expect(K.TEMP_VIEW, sc("t1", "secret"), views=(PV, "spark_catalog.default.pv_nested"), temp_view="tv3"),
    ),
    "temp_view_multiline": (
        "a temp view over several lines is a temp view",
        Expect(K.TEMP_VIEW, sc("t1"), temp_view="tv4"),
    ),
    "temp_view_drop": ("dropping a temp view is a temp view statement", Expect(K.TEMP_VIEW, temp_view="tv")),
    "temp_view_using_path": (
        "a temp view USING a data source is path access",
        Expect(K.ADMIN, dangers=(D.PATH_ACCESS,), temp_view="tvu"),
    ),
    "global_temp_view_create": (
        "a global temp view is DDL on global_temp",
        Expect(K.DDL, sc("t1"), ("spark_catalog.global_temp.gv2",)),
    ),
    "global_temp_view_drop": (
        "dropping a global temp view is DDL",
        Expect(K.DDL, writes=("spark_catalog.global_temp.gv",)),
    ),
    # --- writes ------------------------------------------------------------------------------
    "insert_values": ("INSERT VALUES writes its table", Expect(K.WRITE, (), sc("t1"))),
    "insert_overwrite_select": ("INSERT OVERWRITE reads and writes", Expect(K.WRITE, sc("t2"), sc("t1"))),
    "insert_static_partition": (
        "an insert through a view writes the table, not the view",
        Expect(K.WRITE, sc("t1"), sc("t2"), views=(PV,)),
    ),
    "insert_by_name": ("INSERT BY NAME writes its table", Expect(K.WRITE, (), sc("t1"))),
    "insert_with_cte": ("INSERT with a CTE reads the CTE's table", Expect(K.WRITE, sc("secret"), sc("t1"))),
    "insert_v2_append": ("a v2 append writes the v2 table", Expect(K.WRITE, (), (JT,))),
    "insert_v2_overwrite": ("a v2 overwrite reads and writes", Expect(K.WRITE, sc("t1"), (JT,))),
    "insert_jdbc_v1": ("an insert into a v1 JDBC table writes it", Expect(K.WRITE, (), sc("t_jdbc1"))),
    "delete_v1": ("DELETE reads and writes its table, reads the subquery", Expect(K.WRITE, sc("t1", "t2"), sc("t1"))),
    "delete_v2": ("a v2 DELETE writes its table", Expect(K.WRITE, (JT,), (JT,))),
    "synthetic_merge_v2": (
        "MERGE writes its target and only reads its source",
        Expect(K.WRITE, ("cat.app.target", "spark_catalog.default.source"), ("cat.app.target",)),
    ),
    "synthetic_update_v2": (
        "UPDATE writes its table and reads its subquery",
        Expect(K.WRITE, ("cat.app.target", "spark_catalog.default.source"), ("cat.app.target",)),
    ),
    "synthetic_replace_data_v2": (
        "a rewritten row-level DELETE writes its table",
        Expect(K.WRITE, ("cat.app.target",), ("cat.app.target",)),
    ),
    "truncate_v1": ("TRUNCATE writes its table", Expect(K.WRITE, (), sc("t1"))),
    "truncate_v2": ("a v2 TRUNCATE writes its table", Expect(K.WRITE, (), (JT,))),
    "load_data": ("LOAD DATA is a write from a path", Expect(K.WRITE, (), sc("t1"), dangers=(D.PATH_ACCESS,))),
    "insert_directory": (
        "INSERT OVERWRITE DIRECTORY is path access",
        Expect(K.ADMIN, sc("t1"), dangers=(D.PATH_ACCESS,)),
    ),
    "update_v2": ("an UPDATE Spark cannot plan is unanalysable", Expect(K.UNKNOWN, dangers=(D.UNANALYSABLE,))),
    # --- DDL ---------------------------------------------------------------------------------
    "create_table": ("CREATE TABLE writes the new table", Expect(K.DDL, (), sc("t_new"))),
    "create_table_default_provider": ("CREATE TABLE without USING is DDL", Expect(K.DDL, (), sc("t_new2"))),
    "create_table_properties": ("TBLPROPERTIES and COMMENT are no path", Expect(K.DDL, (), sc("t_props"))),
    "create_table_location": (
        "CREATE TABLE LOCATION is path access (seen in the parsed plan)",
        Expect(K.DDL, (), sc("t_loc"), dangers=(D.PATH_ACCESS,)),
    ),
    "create_table_path_option": (
        "CREATE TABLE OPTIONS (path) is path access",
        Expect(K.DDL, (), sc("t_opt"), dangers=(D.PATH_ACCESS,)),
    ),
    "create_table_jdbc_options": (
        "a JDBC table is an external source",
        Expect(K.DDL, (), sc("t_jdbc"), dangers=(D.PATH_ACCESS,)),
    ),
    "create_table_other_options": (
        "any table OPTIONS count as an external source",
        Expect(K.DDL, (), sc("t_o2"), dangers=(D.PATH_ACCESS,)),
    ),
    "create_table_as_select": (
        "CTAS reads through a view and writes the new table",
        Expect(K.DDL, sc("t1"), sc("t_ctas"), views=(PV,)),
    ),
    "create_table_as_select_location": (
        "CTAS with LOCATION is path access",
        Expect(K.DDL, (), sc("t_ctas2"), dangers=(D.PATH_ACCESS,)),
    ),
    "create_table_like": ("CREATE TABLE LIKE reads the source", Expect(K.DDL, sc("t1"), sc("t_like"))),
    "create_table_like_location": (
        "CREATE TABLE LIKE with LOCATION is path access",
        Expect(K.DDL, sc("t1"), sc("t_like2"), dangers=(D.PATH_ACCESS,)),
    ),
    "create_table_v2": ("a v2 CREATE TABLE writes the new table", Expect(K.DDL, (), ("dj.app.jt_new",))),
    "create_table_as_select_v2": ("a v2 CTAS reads and writes", Expect(K.DDL, sc("t1"), ("dj.app.jt_ctas",))),
    "replace_table_v1": ("REPLACE TABLE on a v1 table is unanalysable", Expect(K.UNKNOWN, dangers=(D.UNANALYSABLE,))),
    "create_view": ("CREATE VIEW is DDL on the view", Expect(K.DDL, sc("t1"), sc("pv_new"))),
    "create_view_multiline": ("a view over several lines is DDL", Expect(K.DDL, sc("t1"), sc("pv_new2"))),
    "alter_view_as": ("ALTER VIEW AS is DDL on the view", Expect(K.DDL, (), (PV,))),
    "alter_view_as_persistent_reads": (
        "ALTER VIEW AS of a view is DDL on it that reads its new query's tables",
        Expect(K.DDL, sc("secret"), (PV,)),
    ),
    "alter_view_as_temp": (
        "ALTER VIEW AS of a temp view is a temp view statement reading its query's tables",
        Expect(K.TEMP_VIEW, sc("secret"), temp_view="tv"),
    ),
    "alter_view_as_temp_over_view": (
        "a temp view altered to read a view reads the view's base tables",
        Expect(K.TEMP_VIEW, sc("t1", "secret"), views=(PV, "spark_catalog.default.pv_nested"), temp_view="tv"),
    ),
    "alter_view_as_global_temp": (
        "ALTER VIEW AS of a global temp view is DDL on global_temp",
        Expect(K.DDL, sc("t1"), ("spark_catalog.global_temp.gv",)),
    ),
    "alter_view_schema_binding_temp": (
        "ALTER VIEW WITH SCHEMA BINDING of a temp view is a temp view statement",
        Expect(K.TEMP_VIEW, temp_view="tv"),
    ),
    "drop_table": ("DROP TABLE writes the table", Expect(K.DDL, (), sc("t1"))),
    "drop_table_if_exists_missing": (
        "DROP TABLE IF EXISTS names the missing table",
        Expect(K.DDL, (), sc("no_such_table")),
    ),
    "drop_table_v2": ("a v2 DROP TABLE names the v2 table", Expect(K.DDL, (), (JT,))),
    "drop_view": ("DROP VIEW writes the view", Expect(K.DDL, (), (PV,))),
    "alter_table_rename": ("RENAME writes old and new names", Expect(K.DDL, (), sc("t1", "t1_renamed"))),
    "alter_table_rename_v2": (
        "a v2 RENAME writes old and every reading of the new name",
        Expect(K.DDL, (), (JT, "dj.app.jt2", "dj.dj.app.jt2")),
    ),
    "alter_table_add_columns": ("ADD COLUMNS is DDL", Expect(K.DDL, (), sc("t1"))),
    "alter_table_add_columns_v2": ("a v2 ADD COLUMNS is DDL", Expect(K.DDL, (), (JT,))),
    "alter_table_rename_column": ("RENAME COLUMN on v1 is unanalysable", Expect(K.UNKNOWN, dangers=(D.UNANALYSABLE,))),
    "alter_table_drop_column": ("DROP COLUMN on v1 is unanalysable", Expect(K.UNKNOWN, dangers=(D.UNANALYSABLE,))),
    "alter_table_alter_column": ("ALTER COLUMN is DDL", Expect(K.DDL, (), sc("t1"))),
    "alter_table_set_properties": ("SET TBLPROPERTIES is DDL", Expect(K.DDL, (), sc("t1"))),
    "alter_table_unset_properties": ("UNSET TBLPROPERTIES is DDL", Expect(K.DDL, (), sc("t1"))),
    "alter_view_set_properties": ("ALTER VIEW SET TBLPROPERTIES is DDL", Expect(K.DDL, (), (PV,))),
    "alter_table_set_location": (
        "ALTER TABLE SET LOCATION is path access",
        Expect(K.DDL, (), sc("t1"), dangers=(D.PATH_ACCESS,)),
    ),
    "alter_table_add_partition": ("ADD PARTITION is DDL", Expect(K.DDL, (), sc("t2"))),
    "alter_table_add_partition_location": (
        "ADD PARTITION LOCATION is path access",
        Expect(K.DDL, (), sc("t2"), dangers=(D.PATH_ACCESS,)),
    ),
    "alter_table_partition_set_location": (
        "a partition SET LOCATION is path access",
        Expect(K.DDL, (), sc("t2"), dangers=(D.PATH_ACCESS,)),
    ),
    "alter_table_drop_partition": ("DROP PARTITION is DDL", Expect(K.DDL, (), sc("t2"))),
    "alter_table_rename_partition": ("RENAME PARTITION is DDL", Expect(K.DDL, (), sc("t2"))),
    "comment_on_table": ("COMMENT ON TABLE is DDL", Expect(K.DDL, (), sc("t1"))),
    "comment_on_table_v2": ("a v2 COMMENT ON TABLE is DDL", Expect(K.DDL, (), (JT,))),
    "create_namespace": ("CREATE DATABASE writes the namespace", Expect(K.DDL, (), ("spark_catalog.db9.*",))),
    "create_namespace_location": (
        "CREATE DATABASE LOCATION is path access",
        Expect(K.DDL, (), ("spark_catalog.db10.*",), dangers=(D.PATH_ACCESS,)),
    ),
    "create_namespace_v2": ("a v2 CREATE NAMESPACE writes it", Expect(K.DDL, (), ("dj.app3.*",))),
    "drop_namespace": ("DROP DATABASE writes the namespace", Expect(K.DDL, (), ("spark_catalog.tpch.*",))),
    "drop_namespace_v2": ("a v2 DROP NAMESPACE writes it", Expect(K.DDL, (), ("dj.app.*",))),
    "alter_namespace_properties": ("ALTER DATABASE properties is DDL", Expect(K.DDL, (), ("spark_catalog.default.*",))),
    "alter_namespace_location": (
        "ALTER DATABASE SET LOCATION is path access",
        Expect(K.DDL, (), ("spark_catalog.default.*",), dangers=(D.PATH_ACCESS,)),
    ),
    "comment_on_namespace": ("COMMENT ON NAMESPACE is DDL", Expect(K.DDL, (), ("spark_catalog.default.*",))),
    # --- metadata and listings ---------------------------------------------------------------
    "describe_table": ("DESCRIBE reads the described table", Expect(K.METADATA, sc("t1"))),
    "describe_table_extended": ("DESCRIBE EXTENDED reads the table", Expect(K.METADATA, sc("t1"))),
    "describe_column": ("DESCRIBE of a column reads the table", Expect(K.METADATA, sc("t1"))),
    "describe_table_v2": ("a v2 DESCRIBE reads the v2 table", Expect(K.METADATA, (JT,))),
    "describe_view": ("DESCRIBE of a view reads the view", Expect(K.METADATA, (PV,))),
    "describe_temp_view": ("DESCRIBE of a temp view names it", Expect(K.METADATA, views=("tv",))),
    "describe_query": (
        "DESCRIBE QUERY is unknown: its query is not in the plan",
        Expect(K.UNKNOWN, dangers=(D.UNKNOWN_NODE,)),
    ),
    "describe_namespace": ("DESCRIBE NAMESPACE reads it", Expect(K.METADATA, ("spark_catalog.default.*",))),
    "describe_function": ("DESCRIBE FUNCTION is metadata", Expect(K.METADATA)),
    "describe_function_user": ("DESCRIBE of a user function is metadata", Expect(K.METADATA)),
    "show_columns": ("SHOW COLUMNS reads the table", Expect(K.METADATA, sc("t1"))),
    "show_create_table": ("SHOW CREATE TABLE reads the table", Expect(K.METADATA, sc("t1"))),
    "show_create_table_v2": ("a v2 SHOW CREATE TABLE reads it", Expect(K.METADATA, (JT,))),
    "show_tblproperties": ("SHOW TBLPROPERTIES reads the table", Expect(K.METADATA, sc("t1"))),
    "show_partitions": ("SHOW PARTITIONS reads the table", Expect(K.METADATA, sc("t2"))),
    "show_tables": (
        "SHOW TABLES is a listing",
        Expect(K.METADATA, ("spark_catalog.default.*",), dangers=(D.LISTING,)),
    ),
    "show_tables_in": (
        "SHOW TABLES IN a v2 namespace is a listing",
        Expect(K.METADATA, ("dj.app.*",), dangers=(D.LISTING,)),
    ),
    "show_table_extended": ("SHOW TABLE EXTENDED is a listing", Expect(K.METADATA, dangers=(D.LISTING,))),
    "show_views": ("SHOW VIEWS is a listing", Expect(K.METADATA, dangers=(D.LISTING,))),
    "show_namespaces": ("SHOW NAMESPACES reads the catalog", Expect(K.METADATA, ("spark_catalog.*.*",))),
    "show_namespaces_v2": ("SHOW NAMESPACES IN a v2 catalog reads it", Expect(K.METADATA, ("dj.*.*",))),
    "show_catalogs": ("SHOW CATALOGS is metadata", Expect(K.METADATA)),
    "show_current_namespace": ("SHOW CURRENT NAMESPACE is metadata", Expect(K.METADATA)),
    "show_functions": ("SHOW FUNCTIONS is metadata", Expect(K.METADATA)),
    "show_system_functions": ("SHOW SYSTEM FUNCTIONS is metadata", Expect(K.METADATA)),
    "show_collations": ("SHOW COLLATIONS is metadata", Expect(K.METADATA)),
    "show_procedures": ("SHOW PROCEDURES is metadata", Expect(K.METADATA, ("spark_catalog.default.*",))),
    "use_namespace": ("USE of the namespace every session starts in reads nothing", Expect(K.METADATA)),
    "use_namespace_v2": ("USE of a v2 namespace reads it", Expect(K.METADATA, ("dj.app.*",))),
    "use_database": ("USE DATABASE reads the namespace, as USE does", Expect(K.METADATA, ("spark_catalog.sales.*",))),
    "use_schema_unreadable": (
        "USE SCHEMA of a name Spark prints ambiguously is not read",
        Expect(K.METADATA, dangers=(D.UNANALYSABLE,)),
    ),
    "set_catalog": ("SET CATALOG is metadata", Expect(K.METADATA)),
    "explain_nested": ("a nested EXPLAIN is unknown", Expect(K.UNKNOWN, dangers=(D.UNKNOWN_NODE,))),
    # --- the dangerous surface as statements -------------------------------------------------
    "set_list": ("SET alone is configuration", Expect(K.ADMIN, dangers=(D.CONFIG,))),
    "set_list_verbose": ("SET -v is configuration", Expect(K.ADMIN, dangers=(D.CONFIG,))),
    "set_get": ("SET key is configuration", Expect(K.ADMIN, dangers=(D.CONFIG,))),
    "set_put": ("SET key=value is configuration", Expect(K.ADMIN, dangers=(D.CONFIG,))),
    "set_time_zone": ("SET TIME ZONE is configuration", Expect(K.ADMIN, dangers=(D.CONFIG,))),
    "set_path": ("SET PATH is configuration", Expect(K.ADMIN, dangers=(D.CONFIG,))),
    "reset_all": ("RESET is configuration", Expect(K.ADMIN, dangers=(D.CONFIG,))),
    "reset_key": ("RESET key is configuration", Expect(K.ADMIN, dangers=(D.CONFIG,))),
    "add_jar": ("ADD JAR is a resource", Expect(K.ADMIN, dangers=(D.RESOURCE,))),
    "add_file": ("ADD FILE is a resource", Expect(K.ADMIN, dangers=(D.RESOURCE,))),
    "add_archive": ("ADD ARCHIVE is a resource", Expect(K.ADMIN, dangers=(D.RESOURCE,))),
    "list_jars": ("LIST JARS is a resource", Expect(K.ADMIN, dangers=(D.RESOURCE,))),
    "list_files": ("LIST FILES is a resource", Expect(K.ADMIN, dangers=(D.RESOURCE,))),
    "list_archives": ("LIST ARCHIVES is a resource", Expect(K.ADMIN, dangers=(D.RESOURCE,))),
    "create_function_class": ("CREATE FUNCTION from a class", Expect(K.ADMIN, dangers=(D.FUNCTION_DEFINITION,))),
    "create_temp_function_class": (
        "a temporary function from a class",
        Expect(K.ADMIN, dangers=(D.FUNCTION_DEFINITION,)),
    ),
    "create_function_sql": ("a SQL function definition", Expect(K.ADMIN, dangers=(D.FUNCTION_DEFINITION,))),
    "create_temp_function_sql": ("a temporary SQL function", Expect(K.ADMIN, dangers=(D.FUNCTION_DEFINITION,))),
    "drop_function": ("DROP FUNCTION", Expect(K.ADMIN, dangers=(D.FUNCTION_DEFINITION,))),
    "drop_temp_function": ("DROP TEMPORARY FUNCTION", Expect(K.ADMIN, dangers=(D.FUNCTION_DEFINITION,))),
    "refresh_function": ("REFRESH FUNCTION", Expect(K.ADMIN, dangers=(D.FUNCTION_DEFINITION,))),
    "cache_table": ("CACHE TABLE reads and caches", Expect(K.ADMIN, sc("t1"), dangers=(D.CACHE,))),
    "cache_table_v2": ("CACHE of a v2 table", Expect(K.ADMIN, (JT,), dangers=(D.CACHE,))),
    "cache_table_as_select": (
        "CACHE TABLE AS SELECT reads through a view",
        Expect(K.ADMIN, sc("t1"), dangers=(D.CACHE,), views=(PV,), temp_view="c1"),
    ),
    "uncache_table": ("UNCACHE TABLE", Expect(K.ADMIN, sc("t1"), dangers=(D.CACHE,))),
    "clear_cache": ("CLEAR CACHE", Expect(K.ADMIN, dangers=(D.CACHE,))),
    "refresh_table": ("REFRESH TABLE", Expect(K.ADMIN, sc("t1"), dangers=(D.REFRESH,))),
    "refresh_table_v2": ("a v2 REFRESH TABLE", Expect(K.ADMIN, (JT,), dangers=(D.REFRESH,))),
    "refresh_path": ("REFRESH of a path", Expect(K.ADMIN, dangers=(D.REFRESH,))),
    "analyze_table": ("ANALYZE TABLE", Expect(K.ADMIN, sc("t1"), sc("t1"), dangers=(D.STATISTICS,))),
    "analyze_columns": ("ANALYZE FOR COLUMNS", Expect(K.ADMIN, sc("t1"), sc("t1"), dangers=(D.STATISTICS,))),
    "analyze_tables": ("ANALYZE TABLES", Expect(K.ADMIN, dangers=(D.STATISTICS,))),
    "analyze_table_v2": ("a v2 ANALYZE TABLE", Expect(K.ADMIN, (JT,), (JT,), dangers=(D.STATISTICS,))),
    "repair_table": ("MSCK REPAIR TABLE", Expect(K.ADMIN, (), sc("t2"), dangers=(D.REPAIR,))),
    "recover_partitions": ("RECOVER PARTITIONS", Expect(K.ADMIN, (), sc("t2"), dangers=(D.REPAIR,))),
    "declare_variable": ("DECLARE VARIABLE", Expect(K.ADMIN, dangers=(D.VARIABLE,))),
    "set_variable": ("SET VAR reads its query", Expect(K.ADMIN, sc("t1"), dangers=(D.VARIABLE,))),
    "drop_variable": ("DROP TEMPORARY VARIABLE", Expect(K.ADMIN, dangers=(D.VARIABLE,))),
    "execute_immediate_command": (
        "a CommandResult means a command already ran during analysis",
        Expect(K.ADMIN, dangers=(D.ANALYSIS_SIDE_EFFECT, D.LISTING)),
    ),
    "call_procedure": ("an unknown procedure is unanalysable", Expect(K.UNKNOWN, dangers=(D.UNANALYSABLE,))),
    # --- analysis errors ---------------------------------------------------------------------
    "error_table_not_found": ("a missing table is unanalysable", Expect(K.UNKNOWN, dangers=(D.UNANALYSABLE,))),
    "error_qualified_table_not_found": (
        # Found or not: "not found" for hr.nope, against a denial for hr.salaries, would tell
        # a principal who may not read hr which of its tables exist.
        "a failed analysis reads every qualified table the statement names, as written",
        Expect(K.UNKNOWN, ("spark_catalog.hr.nope", "cat.ns.deep.t 1"), dangers=(D.UNANALYSABLE,)),
    ),
    "error_column": (
        "a missing column is unanalysable, naming the table its message describes",
        Expect(K.UNKNOWN, sc("t1"), dangers=(D.UNANALYSABLE,)),
    ),
    "error_time_travel_subquery_leak": (
        "a time-travel subquery error is unanalysable",
        Expect(K.UNKNOWN, dangers=(D.UNANALYSABLE,)),
    ),
    "error_udf_class_without_hive": (
        "a class UDF without Hive is unanalysable",
        Expect(K.UNKNOWN, dangers=(D.UNANALYSABLE,)),
    ),
    "error_update_v1": ("UPDATE of a v1 table fails planning", Expect(K.UNKNOWN, dangers=(D.UNANALYSABLE,))),
    "error_merge_v1": ("MERGE into a v1 table fails planning", Expect(K.UNKNOWN, dangers=(D.UNANALYSABLE,))),
    "error_replace_table_v1": ("RTAS on a v1 table is unanalysable", Expect(K.UNKNOWN, dangers=(D.UNANALYSABLE,))),
    "insert_local_directory_hive_format": (
        "Hive-format directory inserts without Hive are unanalysable",
        Expect(K.UNKNOWN, sc("t1"), dangers=(D.UNANALYSABLE,)),
    ),
    # --- Hive support (captured in-process with enableHiveSupport) ----------------------------
    "hive_query_table": ("a Hive parquet table is read", Expect(K.QUERY, sc("ht"))),
    "hive_query_partitioned": ("a Hive text table is read", Expect(K.QUERY, sc("hp"))),
    "hive_udf_generic": ("a Hive generic UDF is a UDF call", Expect(K.QUERY, sc("ht"), dangers=(D.UDF_CALL,))),
    "hive_udf_simple": ("a Hive simple UDF is a UDF call", Expect(K.QUERY, sc("ht"), dangers=(D.UDF_CALL,))),
    "hive_udaf": ("a Hive UDAF is a UDF call", Expect(K.QUERY, sc("ht"), dangers=(D.UDF_CALL,))),
    "hive_udtf": ("a Hive UDTF is a UDF call", Expect(K.QUERY, dangers=(D.UDF_CALL,))),
    "hive_udf_persistent": ("a persistent Hive UDF is a UDF call", Expect(K.QUERY, sc("ht"), dangers=(D.UDF_CALL,))),
    "hive_insert": ("an insert into a Hive table writes it", Expect(K.WRITE, (), sc("ht"))),
    "hive_insert_overwrite_partition": ("InsertIntoHiveTable writes its table", Expect(K.WRITE, sc("ht"), sc("hp"))),
    "hive_create_table": ("a Hive CREATE TABLE is DDL", Expect(K.DDL, (), sc("hnew"))),
    "hive_create_table_location": (
        "a Hive external table LOCATION is path access",
        Expect(K.DDL, (), sc("hloc"), dangers=(D.PATH_ACCESS,)),
    ),
    "hive_create_table_serde": ("a Hive table with a SerDe class is DDL", Expect(K.DDL, (), sc("hserde"))),
    "hive_ctas": ("a Hive CTAS reads and writes", Expect(K.DDL, sc("ht"), sc("hctas"))),
    "hive_insert_local_directory": (
        "a Hive directory insert is path access",
        Expect(K.ADMIN, sc("ht"), dangers=(D.PATH_ACCESS,)),
    ),
    "hive_script_transform": (
        "a Hive TRANSFORM is code execution",
        Expect(K.QUERY, sc("ht"), dangers=(D.COMMAND_EXECUTION,)),
    ),
    "hive_alter_serde": ("ALTER TABLE SET SERDE is DDL", Expect(K.DDL, (), sc("ht"))),
    "hive_load_data": (
        "LOAD DATA into Hive is a write from a path",
        Expect(K.WRITE, (), sc("hp"), dangers=(D.PATH_ACCESS,)),
    ),
    "hive_show_create_table_serde": ("SHOW CREATE TABLE AS SERDE reads it", Expect(K.METADATA, sc("ht"))),
    "hive_describe": ("DESCRIBE FORMATTED reads it", Expect(K.METADATA, sc("ht"))),
    "hive_drop": ("a Hive DROP TABLE is DDL", Expect(K.DDL, (), sc("ht"))),
}

TPCH_READS: dict[int, tuple[str, ...]] = {
    1: ("lineitem",),
    2: ("part", "supplier", "partsupp", "nation", "region"),
    3: ("customer", "orders", "lineitem"),
    4: ("orders", "lineitem"),
    5: ("customer", "orders", "lineitem", "supplier", "nation", "region"),
    6: ("lineitem",),
    7: ("supplier", "lineitem", "orders", "customer", "nation"),
    8: ("part", "supplier", "lineitem", "orders", "customer", "nation", "region"),
    9: ("part", "supplier", "lineitem", "partsupp", "orders", "nation"),
    10: ("customer", "orders", "lineitem", "nation"),
    11: ("partsupp", "supplier", "nation"),
    12: ("orders", "lineitem"),
    13: ("customer", "orders"),
    14: ("lineitem", "part"),
    15: ("supplier", "lineitem"),
    16: ("partsupp", "part", "supplier"),
    17: ("lineitem", "part"),
    18: ("customer", "orders", "lineitem"),
    19: ("lineitem", "part"),
    20: ("supplier", "nation", "partsupp", "part", "lineitem"),
    21: ("supplier", "lineitem", "orders", "nation"),
    22: ("customer", "orders"),
}


def check(facts: StatementFacts, expect: Expect) -> None:
    assert facts.kind is expect.kind, facts
    assert names(facts.reads) == set(expect.reads), facts
    assert names(facts.writes) == set(expect.writes), facts
    assert {d.kind for d in facts.dangers} == set(expect.dangers), facts
    assert facts.views == frozenset(expect.views), facts
    assert facts.temp_view == expect.temp_view, facts
    assert all(d.detail for d in facts.dangers)


@pytest.mark.parametrize(("fixture", "expect"), [pytest.param(f, e, id=i) for f, (i, e) in EXPECTED.items()])
def test_captured_plan_is_classified(fixture: str, expect: Expect) -> None:
    check(facts_of(fixture), expect)


@pytest.mark.parametrize("number", sorted(TPCH_READS), ids=[f"TPC-H Q{n:02d} is a plain query" for n in TPCH_READS])
def test_tpch_query_reads_exactly_its_tables(number: int) -> None:
    facts = facts_of(f"tpch_q{number:02d}")
    check(facts, Expect(K.QUERY, tuple(f"spark_catalog.tpch.{t}" for t in TPCH_READS[number])))
    assert facts.functions  # sum, avg, count, ... are recognised as built-ins
    assert facts.functions <= BUILTINS


def test_every_fixture_has_an_expectation() -> None:
    fixtures = {p.stem for p in FIXTURES.glob("*.txt")}
    covered = set(EXPECTED) | {f"tpch_q{n:02d}" for n in TPCH_READS}
    assert fixtures == covered


# --- ALTER VIEW of a temp view (decided under a policy, no driver) ----------------------

ANALYST = policy_from_toml(
    """
[roles.analyst]
actions = ["sql.read", "catalog.read"]
read = ["default.*"]
deny = ["default.secret"]

[users]
alice = ["analyst"]
"""
)


@pytest.mark.parametrize(
    ("fixture", "allowed", "reason", "rule"),
    [
        pytest.param(
            "alter_view_as_temp",
            False,
            "alice may not read spark_catalog.default.secret: denied by role analyst (default.secret)",
            'roles.analyst.deny[0] "default.secret"',
            id="a temp view altered to read a denied table names the table and the deny rule",
        ),
        pytest.param(
            "alter_view_as_temp_over_view",
            False,
            "alice may not read spark_catalog.default.secret: denied by role analyst (default.secret)",
            'roles.analyst.deny[0] "default.secret"',
            id="a denied table behind a view is named too",
        ),
        pytest.param(
            "alter_view_schema_binding_temp",
            True,
            "analyst may sql.read",
            "roles.analyst.actions",
            id="changing a temp view's schema binding needs sql.read only",
        ),
        pytest.param(
            "alter_view_as",
            False,
            "no role of alice grants sql.ddl",
            "default-deny",
            id="a persistent view stays DDL",
        ),
        pytest.param(
            "alter_view_as_global_temp",
            False,
            "no role of alice grants sql.ddl",
            "default-deny",
            id="a global temp view is DDL",
        ),
    ],
)
def test_alter_view_is_decided_on_what_it_does(fixture: str, allowed: bool, reason: str, rule: str) -> None:
    decision = decide_statement(ANALYST, Principal("alice", roles=ANALYST.roles_for("alice")), facts_of(fixture))
    assert decision.allowed is allowed
    assert decision.reason.startswith(reason), decision
    assert decision.rule == rule
    assert "could not analyse" not in decision.reason


# --- analysis errors ---------------------------------------------------------------------

ERRORS = [
    pytest.param(
        "error_table_not_found", "TABLE_OR_VIEW_NOT_FOUND", "The table or view `no_such_table`", id="missing table"
    ),
    pytest.param("error_column", "UNRESOLVED_COLUMN.WITH_SUGGESTION", "A column, variable", id="missing column"),
    pytest.param("error_udf_class_without_hive", "NO_HANDLER_FOR_UDAF", "No handler for UDAF", id="class UDF"),
    pytest.param("call_procedure", "UNRESOLVED_ROUTINE", "Cannot resolve routine", id="unknown procedure"),
    pytest.param("error_update_v1", "PLANNING_ERROR", "Spark could not plan the statement", id="planning failure"),
]


@pytest.mark.parametrize(("fixture", "error_class", "message"), ERRORS)
def test_analysis_error_surfaces_spark_error_class(fixture: str, error_class: str, message: str) -> None:
    text = explain(fixture)
    error = analysis_error(text)
    assert error is not None
    assert error[0] == error_class
    assert error[1].startswith(message)
    assert "SQLSTATE" not in error[1]
    facts = inspect_explain(text, builtin_functions=BUILTINS)
    assert facts.kind is K.UNKNOWN
    assert facts.notes and facts.notes[0].startswith(f"{error_class}: ")


def test_a_time_travel_subquery_leaks_through_analysis_which_is_why_the_gate_refuses_it() -> None:
    # Captured with a row 'top-secret-value' in `secret`: EXPLAIN alone printed it.
    error = analysis_error(explain("error_time_travel_subquery_leak"))
    assert error is not None
    assert error[0] == "INVALID_TIME_TRAVEL_TIMESTAMP_EXPR.INPUT"
    assert "top-secret-value" in error[1]
    sql = "SELECT * FROM t1 TIMESTAMP AS OF (SELECT max(s) FROM secret)"
    assert D.ANALYSIS_SIDE_EFFECT in {d.kind for d in gate(sql).dangers}


def test_analysis_error_is_none_for_an_analysed_plan() -> None:
    assert analysis_error(explain("query_simple")) is None
    # A failure in physical planning comes after analysis: the analyzed plan is good.
    assert analysis_error(explain("delete_v1")) is None


def test_output_that_is_not_explain_is_unanalysable() -> None:
    for text in ("", "garbage", "== Physical Plan ==\nProject [1]", "\x00\n== Parsed Logical Plan =="):
        facts = inspect_explain(text, builtin_functions=BUILTINS)
        assert facts.kind is K.UNKNOWN
        assert {d.kind for d in facts.dangers} == {D.UNANALYSABLE}
        assert analysis_error(text) is not None
    assert inspect_explain(None).kind is K.UNKNOWN  # type: ignore[arg-type]


def test_a_plan_spark_cut_short_is_unanalysable() -> None:
    text = explain("query_simple")
    cut = text[: text.index("+- Relation")] + "... 1086 more characters"
    facts = inspect_explain(cut, builtin_functions=BUILTINS)
    assert {d.kind for d in facts.dangers} == {D.UNANALYSABLE}
    assert "maxPlanStringLength" in facts.dangers[0].detail


def test_truncated_fields_name_the_setting_to_raise() -> None:
    facts = facts_of("query_truncated_select_list")
    assert "spark.sql.debug.maxToStringFields" in facts.dangers[0].detail


# --- the analyzed section ----------------------------------------------------------------


def test_analyzed_section_drops_the_schema_header() -> None:
    section = analyzed_section(explain("query_simple"))
    assert section is not None
    assert section.startswith("Project [")
    assert "== " not in section


def test_analyzed_section_keeps_a_plan_without_header() -> None:
    section = analyzed_section(explain("drop_table"))
    assert section is not None
    assert section.startswith("DropTable false, false\n+- ResolvedIdentifier")


def test_analyzed_section_is_the_error_when_analysis_failed() -> None:
    section = analyzed_section(explain("error_table_not_found"))
    assert section is not None
    assert section.startswith("org.apache.spark.sql.AnalysisException: [TABLE_OR_VIEW_NOT_FOUND]")


def test_analyzed_section_is_none_when_the_sections_are_ambiguous() -> None:
    assert analyzed_section(explain("inject_fake_section_marker")) is None
    assert analyzed_section("garbage") is None


# --- unknown nodes (hand-edited real plans) ------------------------------------------------


def analyzed_replaced(fixture: str, old: str, new: str) -> str:
    """The fixture with ``old`` replaced in the analyzed section only."""
    text = explain(fixture)
    start = text.index("== Analyzed Logical Plan ==")
    end = text.index("== Optimized Logical Plan ==")
    assert old in text[start:end]
    return text[:start] + text[start:end].replace(old, new) + text[end:]


def test_an_unknown_root_node_makes_the_statement_unknown() -> None:
    text = analyzed_replaced("drop_table", "DropTable false", "FrobnicateTable false")
    facts = inspect_explain(text, builtin_functions=BUILTINS)
    assert facts.kind is K.UNKNOWN
    assert facts.operation == "FrobnicateTable"
    assert D.UNKNOWN_NODE in {d.kind for d in facts.dangers}


def test_an_unknown_node_below_a_query_is_an_unknown_node_danger() -> None:
    text = analyzed_replaced("query_simple", "+- SubqueryAlias spark_catalog", "+- MysteryNode spark_catalog")
    facts = inspect_explain(text, builtin_functions=BUILTINS)
    assert D.UNKNOWN_NODE in {d.kind for d in facts.dangers}
    assert "MysteryNode" in " ".join(d.detail for d in facts.dangers)


def test_an_unknown_root_above_a_schema_header_is_unknown() -> None:
    text = analyzed_replaced("query_simple", "Project [a#", "Frobnicate [a#")
    facts = inspect_explain(text, builtin_functions=BUILTINS)
    assert facts.kind is K.UNKNOWN


# --- catalogs printed without their name ---------------------------------------------------


def test_a_v2_catalog_name_comes_from_the_statement_as_written() -> None:
    facts = facts_of("drop_table_v2")
    assert names(facts.writes) == {JT}
    assert any("as written in the statement" in note for note in facts.notes)


def test_a_v2_table_named_relative_to_the_current_catalog_is_unanalysable() -> None:
    # After USE dj.app, DROP TABLE jt: the plan says JDBCTableCatalog@..., app.jt, and the
    # statement never names the catalog, so which catalog it is cannot be known.
    text = explain("drop_table_v2").replace("'UnresolvedIdentifier [dj, app, jt]", "'UnresolvedIdentifier [jt]")
    facts = inspect_explain(text, builtin_functions=BUILTINS)
    assert facts.writes == frozenset()
    assert D.UNANALYSABLE in {d.kind for d in facts.dangers}


def test_two_different_catalog_names_for_one_table_are_unanalysable() -> None:
    text = explain("drop_table_v2").replace(
        "+- 'UnresolvedIdentifier [dj, app, jt], true", "+- 'UnresolvedIdentifier [dj, app, jt], true [other, app, jt]"
    )
    text = text.replace("[other, app, jt]", "'UnresolvedIdentifier [other, app, jt]")
    facts = inspect_explain(text, builtin_functions=BUILTINS)
    assert D.UNANALYSABLE in {d.kind for d in facts.dangers}


# --- functions ---------------------------------------------------------------------------


def test_builtin_functions_are_reported() -> None:
    facts = facts_of("query_functions")
    assert {"from_json", "regexp_extract", "date_add", "concat_ws", "to_timestamp", "round"} <= facts.functions
    assert facts.functions <= BUILTINS
    assert "reflect" in facts_of("query_reflection").functions


def test_without_the_builtin_list_only_qualified_calls_are_judged() -> None:
    unqualified = inspect_explain(explain("query_udf_temporary"))
    assert D.UDF_CALL not in {d.kind for d in unqualified.dangers}
    assert any("built-in function list" in note for note in unqualified.notes)
    qualified = inspect_explain(explain("query_udf_persistent"))
    assert D.UDF_CALL in {d.kind for d in qualified.dangers}


def test_a_hive_udf_is_found_in_the_analyzed_plan_alone() -> None:
    text = explain("hive_udf_generic")
    text = text.replace("'hive_abs('a)", "'abs('a)")  # even if the parsed plan looked harmless
    facts = inspect_explain(text, builtin_functions=BUILTINS)
    assert D.UDF_CALL in {d.kind for d in facts.dangers}


# --- more attacks ------------------------------------------------------------------------


def test_a_fake_child_before_a_merge_target_adds_writes_only() -> None:
    # A literal in the MERGE condition prints a depth-1 line before the real target: the
    # real target must still be written, and the source still read (not written).
    text = analyzed_replaced(
        "synthetic_merge_v2",
        "MergeIntoTable (id#10 = a#20)",
        "MergeIntoTable (id#10 = x\n:- RelationV2[d#1] cat.app.decoy\n)",
    )
    facts = inspect_explain(text, builtin_functions=BUILTINS)
    assert {"cat.app.target", "cat.app.decoy"} <= names(facts.writes)
    assert "spark_catalog.default.source" not in names(facts.writes)


def test_a_planted_unindented_node_above_a_command_makes_it_unknown() -> None:
    # The root line is the real command; a literal plants an unindented query node under it.
    text = analyzed_replaced(
        "insert_values",
        "InsertIntoHadoopFsRelationCommand file:",
        "InsertIntoHadoopFsRelationCommand x\nProject [1]\nfile:",
    )
    facts = inspect_explain(text, builtin_functions=BUILTINS)
    assert facts.kind is K.UNKNOWN


def test_a_planted_local_temp_view_marker_cannot_hide_a_persistent_view() -> None:
    text = analyzed_replaced(
        "create_view",
        "SELECT a FROM t1, false",
        "SELECT 'x, false, false, LocalTempView, UNSUPPORTED, true' a FROM t1, false",
    )
    facts = inspect_explain(text, builtin_functions=BUILTINS)
    assert facts.kind is K.UNKNOWN
    assert facts.temp_view is None


def test_an_insert_into_files_without_a_table_is_path_access() -> None:
    text = analyzed_replaced("insert_values", "Append, `spark_catalog`.`default`.`t1`, ", "Append, ")
    facts = inspect_explain(text, builtin_functions=BUILTINS)
    assert D.PATH_ACCESS in {d.kind for d in facts.dangers}


INJECTIONS = [
    "+- Project [1]",
    ":- Project [1]",
    "   +- OneRowRelation",
    "+- Relation spark_catalog.default.decoy[d#1] parquet",
    "Relation spark_catalog.default.decoy[d#1] parquet",
    "+- RelationV2[d#1] dj.app.decoy",
    ":- SubqueryAlias spark_catalog.default.decoy",
    "+- View (`spark_catalog`.`default`.`decoy`, [d#1])",
    "Project [1]",
    "OneRowRelation",
    "DropTable false, false",
    "SetCommand",
    "CreateViewCommand `x`, SELECT 1, false, false, LocalTempView, UNSUPPORTED, true",
    ", LocalTempView, UNSUPPORTED, true",
    "`spark_catalog`.`default`.`decoy`",
    "x: int",
    "a#1, b#2]",
    "]",
    ")",
    "",
    "+- ",
    "FrobnicateCommand",
    "ResolvedIdentifier V2SessionCatalog(spark_catalog), default.decoy",
]

STRICT_DANGERS = {D.UNKNOWN_NODE, D.UNANALYSABLE}


def at_least_as_strict(before: StatementFacts, after: StatementFacts) -> bool:
    """Planted text may add reads, writes or dangers, or make the statement unknown; nothing else."""
    if after.kind is K.UNKNOWN or {d.kind for d in after.dangers} & STRICT_DANGERS:
        return True
    return (
        after.kind is before.kind
        and after.reads >= before.reads
        and after.writes >= before.writes
        and {d.kind for d in after.dangers} >= {d.kind for d in before.dangers}
        and after.temp_view == before.temp_view
    )


# Lines that print only names Spark resolved (validated or admin-made), never a literal.
NAME_ONLY = re.compile(
    r"^(?:(?:   |:  )*(?:\+- |:- ))?(?:Relation|RelationV2|HiveTableRelation|View|SubqueryAlias|CTERelationRef|"
    r"Resolved\w+|LocalRelation|OneRowRelation)\b"
)


PARSED_INJECTIONS = [
    "'UnresolvedRelation [t9], [], false",
    "'UnresolvedIdentifier [other, app, jt], false",
    "'UnresolvedIdentifier [jt], false",
    "'abs('a)",
    "unresolvedtablespec(None, optionlist(), None, None, None, None, false)",
    "+- 'Project [*]",
]


def plant(text: str, rng: random.Random, *, section: str = "Analyzed") -> str:
    """Plant lines the way a literal with line breaks would: in a line that can print a
    literal, at a token boundary after the node's name (no literal precedes a node name)."""
    marker = f"== {section} Logical Plan =="
    start = text.index(marker) + len(marker) + 1
    end = text.index("== Optimized Logical Plan ==" if section == "Analyzed" else "== Analyzed Logical Plan ==")
    lines = text[start:end].rstrip("\n").split("\n")
    candidates = [i for i, line in enumerate(lines) if not NAME_ONLY.match(line)]
    if not candidates:
        return text
    index = rng.choice(candidates)
    line = lines[index]
    name_end = line.find(" ", len(line) - len(line.lstrip(" :+-")))
    if name_end < 0:
        return text
    cuts = [m.end() for m in re.finditer(r"(?:, |\[|\(| )", line) if m.end() > name_end] + [len(line)]
    cut = rng.choice(cuts)
    pool = INJECTIONS if section == "Analyzed" else INJECTIONS + PARSED_INJECTIONS
    planted = "\n".join(rng.choice(pool) for _ in range(rng.randint(1, 3)))
    tail = rng.choice(["", rng.choice(pool)])
    lines[index] = line[:cut] + "\n" + planted + "\n" + tail + line[cut:]
    return text[:start] + "\n".join(lines) + "\n\n" + text[end:]


def analysed_fixtures() -> list[str]:
    return sorted(p.stem for p in FIXTURES.glob("*.txt") if "== Optimized Logical Plan ==" in explain(p.stem))


def test_planted_plan_text_never_loosens_a_verdict() -> None:
    rng = random.Random(7)
    loosened = []
    for fixture in analysed_fixtures():
        text = explain(fixture)
        before = inspect_explain(text, builtin_functions=BUILTINS)
        for _ in range(40):
            planted = plant(text, rng)
            after = inspect_explain(planted, builtin_functions=BUILTINS)
            if not at_least_as_strict(before, after):
                loosened.append((fixture, planted, before, after))
    assert not loosened, loosened[0]


def test_text_planted_in_the_parsed_plan_never_loosens_a_verdict() -> None:
    # The parsed plan prints literals too; UDF calls, table options, table specs and
    # catalog names are read from it.
    rng = random.Random(8)
    loosened = []
    for fixture in analysed_fixtures():
        text = explain(fixture)
        before = inspect_explain(text, builtin_functions=BUILTINS)
        for _ in range(20):
            planted = plant(text, rng, section="Parsed")
            after = inspect_explain(planted, builtin_functions=BUILTINS)
            if not at_least_as_strict(before, after):
                loosened.append((fixture, planted, before, after))
    assert not loosened, loosened[0]


def test_spark_internal_write_option_is_no_read_option() -> None:
    facts = facts_of("insert_overwrite_select")  # 'UnresolvedRelation [t1], [__required_write_privileges__=...]
    assert D.PATH_ACCESS not in {d.kind for d in facts.dangers}


# Mangling inserts arbitrary pieces anywhere, beyond what a literal can do: it can break the
# prefix of a real relation line, say, which turns the plan into another well-formed plan that
# simply reads less. No reader can tell the two apart, so "never looser" is asserted for
# planted text above (what literals can do), and here what must hold for any input at all.
MANGLE_PIECES = [
    "\n", "+- ", ":  ", "`", "``", "[", "]", "(", ")", "#1", ", ", "'", "@1f", ".", "\n   ", "\\",
    "Relation ", "RelationV2[", "View (", "== ", "Some(", "V2SessionCatalog(", "CommandResult",
    "\n+- ResolvedNamespace ", "== Analyzed Logical Plan ==",
]  # fmt: skip
SECTION_MARKERS = (
    "== Parsed Logical Plan ==",
    "== Analyzed Logical Plan ==",
    "== Optimized Logical Plan ==",
    "== Physical Plan ==",
)


def mangle(text: str, rng: random.Random, *, start: int = 0, pieces: list[str] = MANGLE_PIECES) -> str:
    chars = list(text)
    for _ in range(rng.randint(1, 8)):
        chars.insert(rng.randrange(start, len(chars) + 1), rng.choice(pieces))
    return "".join(chars)


def read(text: str) -> StatementFacts:
    """The reader without inspect_explain's safety net: a reader bug raises here."""
    return read_plan(text, frozenset(f.lower() for f in BUILTINS))


def test_the_reader_itself_never_raises_on_mangled_plans_and_answers_in_form() -> None:
    rng = random.Random(11)
    for fixture in analysed_fixtures():
        text = explain(fixture)
        for _ in range(20):
            mangled = mangle(text, rng)
            facts = read(mangled)
            assert facts.operation, mangled
            assert all(d.detail for d in facts.dangers), mangled
            assert all(all(t.parts) for t in facts.reads | facts.writes), mangled
            # A statement the reader could not place is never silent: policy needs a danger to
            # ask for sql.admin, and an agent needs the detail to know why.
            if facts.kind is K.UNKNOWN:
                assert facts.dangers, mangled
            # Section headers that are missing or repeated make the whole output untrusted.
            if any(mangled.count(m) > 1 for m in SECTION_MARKERS) or not all(m in mangled for m in SECTION_MARKERS[:2]):
                assert facts.kind is K.UNKNOWN and {d.kind for d in facts.dangers} == {D.UNANALYSABLE}, mangled


def test_text_after_the_analyzed_plan_never_changes_a_verdict() -> None:
    # Facts come from the parsed and analyzed plans only: a reader that strayed into the
    # optimized or physical plan would change its verdict here.
    rng = random.Random(12)
    pieces = [p for p in MANGLE_PIECES if p not in SECTION_MARKERS]
    for fixture in analysed_fixtures():
        text = explain(fixture)
        before = read(text)
        start = text.index(SECTION_MARKERS[2]) + len(SECTION_MARKERS[2])
        for _ in range(10):
            mangled = mangle(text, rng, start=start, pieces=pieces)
            assert read(mangled) == before, mangled


def test_a_reader_bug_is_an_unanalysable_verdict_not_a_crash(monkeypatch: pytest.MonkeyPatch) -> None:
    # A fault no real plan produces on demand (the fuzzing above finds none): the reader is
    # replaced by one that fails, to show that the safety net denies instead of crashing.
    def broken(text: str, builtins: frozenset[str]) -> StatementFacts:
        raise IndexError("a reader bug")

    monkeypatch.setattr(classify, "read_plan", broken)
    facts = inspect_explain(explain("query_simple"), builtin_functions=BUILTINS)
    assert facts.kind is K.UNKNOWN
    assert [d.kind for d in facts.dangers] == [D.UNANALYSABLE]
    assert "IndexError" in facts.dangers[0].detail


def test_functions_field_never_holds_noise_from_literals() -> None:
    facts = facts_of("query_literal_looks_like_call")
    assert "total" not in facts.functions
    assert re.fullmatch(r"[a-z_0-9]+", "".join(sorted(facts.functions)).replace(" ", "")) is not None
