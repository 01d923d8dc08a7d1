"""Sail's plan text (DataFusion's) read into StatementFacts, and Sail's pre-analysis gate (no driver).

Every file in ``tests/fixtures/sail_explain`` was captured from pysail 0.7.2 by
``tests/fixtures/capture_sail_explain.py``; each one has an expectation here, so a new
fixture cannot go unchecked. Attack fixtures plant plan-like text through literals, aliases,
CTE and table names; a property test plants such text at random and checks it can only
ever make a verdict stricter.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from spark_mcp.spark.datafusion_plan import QUERY_NODES, SailContext, analyzed_plan, inspect_sail_explain
from spark_mcp.spark.sail_gate import check_plan, check_sql
from spark_mcp.statement import DangerKind, StatementFacts, StatementKind
from tests.fixtures.capture_explain import TPCH_QUERIES
from tests.fixtures.sail_tpch import TPCH_TABLES, qualify_tpch

FIXTURES = Path(__file__).parent / "fixtures" / "sail_explain"
K = StatementKind
D = DangerKind


def load(name: str) -> tuple[list[str], str]:
    """A fixture's ``-- `` header lines and its EXPLAIN output."""
    lines = (FIXTURES / f"{name}.txt").read_text(encoding="utf-8").split("\n")
    start = 0
    while start < len(lines) and lines[start].startswith("-- "):
        start += 1
    return [line[3:] for line in lines[:start]], "\n".join(lines[start:])


def context_of(header: list[str]) -> SailContext:
    """Plan fixtures carry their plan: its result sources are data the caller itself sent."""
    if header and header[0].startswith("plan: "):
        _, result_sources = check_plan(header[0][len("plan: ") :])
        return SailContext(local_relations=result_sources)
    return SailContext()


def facts_of(name: str) -> StatementFacts:
    header, text = load(name)
    return inspect_sail_explain(text, context_of(header))


@dataclass(frozen=True)
class Expect:
    kind: StatementKind
    reads: tuple[str, ...] = ()
    dangers: tuple[DangerKind, ...] = ()


def sc(*tables: str) -> tuple[str, ...]:
    """Tables of the session catalog: ``ns.t`` or ``t`` (namespace default)."""
    return tuple(f"spark_catalog.{t}" if "." in t else f"spark_catalog.default.{t}" for t in tables)


NATION, REGION, HR = "tpch.nation", "tpch.region", "hr.salaries"

EXPECTED: dict[str, tuple[str, Expect]] = {
    # --- queries ---------------------------------------------------------------------------
    "query_bare_name": ("a bare name is in the current namespace", Expect(K.QUERY, sc("t1"))),
    "query_two_part_name": ("namespace.table is in the current catalog", Expect(K.QUERY, sc(NATION))),
    "query_three_part_name": ("a full name is read as written", Expect(K.QUERY, sc(NATION))),
    "query_temp_view": ("a temp view expands to its base table", Expect(K.QUERY, sc("t1"))),
    "query_temp_view_over_view": ("a temp view over a view expands twice", Expect(K.QUERY, sc(HR))),
    "query_persistent_view": ("a view expands to its base table", Expect(K.QUERY, sc("t1"))),
    "query_view_over_hr": ("a view over HR reads HR", Expect(K.QUERY, sc(HR))),
    "query_global_temp_view": ("a global temp view expands", Expect(K.QUERY, sc(HR))),
    "query_saved_frame_view": ("a saved DataFrame over a table reads the table", Expect(K.QUERY, sc(NATION))),
    "query_saved_local_view": (
        "a view over client data prints like a path read: refused",
        Expect(K.QUERY, dangers=(D.PATH_ACCESS,)),
    ),
    "query_system_table": (
        "Sail's system catalog is a catalog of its own",
        Expect(K.QUERY, ("system.session.sessions",)),
    ),
    "query_nested_namespace": ("a nested namespace is ambiguous", Expect(K.QUERY, dangers=(D.UNANALYSABLE,))),
    "query_dotted_table_name": ("a dot inside a name is ambiguous", Expect(K.QUERY, dangers=(D.UNANALYSABLE,))),
    "query_dotted_namespace": ("a dot inside a namespace is ambiguous", Expect(K.QUERY, dangers=(D.UNANALYSABLE,))),
    "query_newline_table_name": (
        "a table name with a line break is unreadable (and its pieces count as reads)",
        Expect(K.QUERY, sc(NATION, "tpch.new"), dangers=(D.UNANALYSABLE,)),
    ),
    "query_join_inner": ("an inner join reads both sides", Expect(K.QUERY, sc(NATION, REGION))),
    "query_join_left": ("a left join reads both sides", Expect(K.QUERY, sc(NATION, HR))),
    "query_join_semi": ("a semi join reads both sides", Expect(K.QUERY, sc(NATION, REGION))),
    "query_join_anti": ("an anti join reads both sides", Expect(K.QUERY, sc(NATION, REGION))),
    "query_join_cross": ("a cross join reads both sides", Expect(K.QUERY, sc(NATION, REGION))),
    "query_join_natural": ("a natural join reads both sides", Expect(K.QUERY, sc(NATION, REGION))),
    "query_join_full": ("a full join reads both sides", Expect(K.QUERY, sc(NATION, REGION))),
    "query_join_self": ("a self join reads its table", Expect(K.QUERY, sc(NATION))),
    "query_union": ("UNION reads both sides", Expect(K.QUERY, sc(NATION, HR))),
    "query_union_all": ("UNION ALL reads both sides", Expect(K.QUERY, sc(NATION, HR))),
    "query_except": ("EXCEPT reads both sides", Expect(K.QUERY, sc(NATION, HR))),
    "query_intersect": ("INTERSECT reads both sides", Expect(K.QUERY, sc(NATION, HR))),
    "query_in_subquery": ("an IN subquery is read", Expect(K.QUERY, sc(NATION, HR))),
    "query_exists_subquery": ("an EXISTS subquery is read", Expect(K.QUERY, sc(NATION, HR))),
    "query_scalar_subquery": ("a scalar subquery is read", Expect(K.QUERY, sc(REGION, HR))),
    "query_cte": ("a CTE expands to its table", Expect(K.QUERY, sc(HR))),
    "query_cte_shadows_table": ("a CTE named like a table reads what it selects", Expect(K.QUERY, sc(HR))),
    "query_window": ("a window query reads its table", Expect(K.QUERY, sc(NATION))),
    "query_rollup": ("ROLLUP reads its table", Expect(K.QUERY, sc(NATION))),
    "query_cube": ("CUBE reads its table", Expect(K.QUERY, sc(NATION))),
    "query_unpivot": ("UNPIVOT of literals reads nothing", Expect(K.QUERY)),
    "query_lateral_view": ("LATERAL VIEW reads its table", Expect(K.QUERY, sc(REGION))),
    "query_values": ("VALUES reads nothing", Expect(K.QUERY)),
    "query_values_bare": ("bare VALUES reads nothing", Expect(K.QUERY)),
    "query_tablesample": ("TABLESAMPLE reads its table", Expect(K.QUERY, sc(NATION))),
    "query_range_function": (
        "range() prints like a table named range: read as one (stricter)",
        Expect(K.QUERY, sc("range")),
    ),
    "query_order_limit_offset": ("ORDER/LIMIT/OFFSET read their table", Expect(K.QUERY, sc(NATION))),
    "query_hint": ("a hint is ignored", Expect(K.QUERY, sc(NATION))),
    "query_one_row": ("SELECT 1 reads nothing", Expect(K.QUERY)),
    "query_functions": ("built-in functions read nothing more", Expect(K.QUERY, sc(NATION))),
    "query_aggregates": ("aggregates read their table", Expect(K.QUERY, sc(HR))),
    "query_comment_and_semicolon_literal": ("a ';' literal is a literal", Expect(K.QUERY, sc(NATION))),
    # --- path reads --------------------------------------------------------------------------
    "path_parquet": ("parquet.`path` is path access", Expect(K.QUERY, dangers=(D.PATH_ACCESS,))),
    "path_text_alias": ("an aliased path read is path access", Expect(K.QUERY, dangers=(D.PATH_ACCESS,))),
    "path_csv_join": ("a path read in a join", Expect(K.QUERY, sc(NATION), (D.PATH_ACCESS,))),
    "path_in_subquery": ("a path read in a subquery", Expect(K.QUERY, sc(NATION), (D.PATH_ACCESS,))),
    "path_relative": ("csv.name reads a relative path", Expect(K.QUERY, dangers=(D.PATH_ACCESS,))),
    # --- attacks -------------------------------------------------------------------------------
    "inject_literal_fake_scan": (
        "a literal printing a TableScan line leaves junk after the name: unreadable",
        Expect(K.QUERY, sc(NATION), (D.UNANALYSABLE,)),
    ),
    "inject_alias_fake_root": (
        "an alias printing a TableScan root is unreadable",
        Expect(K.QUERY, (), (D.UNANALYSABLE,)),
    ),
    "inject_alias_fake_scan_clean": (
        "an alias printing an indented TableScan is unreadable",
        Expect(K.QUERY, (), (D.UNANALYSABLE,)),
    ),
    "inject_literal_fake_command": (
        "a literal printing a metadata command mixes nodes: unknown",
        Expect(K.UNKNOWN, sc(NATION), (D.UNKNOWN_NODE,)),
    ),
    "inject_literal_section_marker": ("a literal printing a section header", Expect(K.UNKNOWN, (), (D.UNANALYSABLE,))),
    "inject_struct_field_header": (
        "a struct field name in the schema header printing a command",
        Expect(K.UNKNOWN, (), (D.UNKNOWN_NODE,)),
    ),
    "inject_literal_reflect": ("reflect( in a literal is flagged (stricter)", Expect(K.QUERY, (), (D.REFLECTION,))),
    "inject_cte_name": (
        "a CTE name printing a TableScan adds that read",
        Expect(K.QUERY, sc(HR), (D.UNANALYSABLE,)),
    ),
    "inject_literal_unknown_node": ("a literal printing an unknown node", Expect(K.UNKNOWN, (), (D.UNKNOWN_NODE,))),
    "inject_literal_query_node": ("a literal printing a query node changes nothing", Expect(K.QUERY, sc(REGION))),
    "inject_literal_write_node": (
        "a literal printing a write node makes the query unknown",
        Expect(K.UNKNOWN, sc(REGION), (D.UNKNOWN_NODE,)),
    ),
    "inject_column_alias_in_values": ("a column alias only reaches the physical plan", Expect(K.QUERY)),
    "explain_nested": ("EXPLAIN inside EXPLAIN repeats the headers", Expect(K.UNKNOWN, (), (D.UNANALYSABLE,))),
    # --- writes and DDL: Sail does not print their objects ----------------------------------
    "insert_select": ("INSERT ... SELECT: target unknown", Expect(K.UNKNOWN, sc(NATION), (D.UNKNOWN_NODE,))),
    "insert_values": ("INSERT VALUES: target unknown", Expect(K.UNKNOWN, (), (D.UNKNOWN_NODE,))),
    "insert_overwrite": ("INSERT OVERWRITE: target unknown", Expect(K.UNKNOWN, sc(HR), (D.UNKNOWN_NODE,))),
    "insert_overwrite_directory": (
        "INSERT OVERWRITE DIRECTORY writes a path: unknown",
        Expect(K.UNKNOWN, sc(HR), (D.UNKNOWN_NODE,)),
    ),
    "ctas": ("CREATE TABLE AS SELECT: target unknown", Expect(K.UNKNOWN, sc(HR), (D.UNKNOWN_NODE,))),
    "create_table": ("CREATE TABLE: object unknown", Expect(K.UNKNOWN, (), (D.UNKNOWN_NODE,))),
    "create_table_location": ("CREATE TABLE LOCATION: unknown", Expect(K.UNKNOWN, (), (D.UNKNOWN_NODE,))),
    "create_table_options_path": ("CREATE TABLE OPTIONS(path): unknown", Expect(K.UNKNOWN, (), (D.UNKNOWN_NODE,))),
    "create_temp_view": ("CREATE TEMP VIEW: its query is not printed", Expect(K.UNKNOWN, (), (D.UNKNOWN_NODE,))),
    "create_temp_view_using": ("CREATE TEMP VIEW USING a path: unknown", Expect(K.UNKNOWN, (), (D.UNKNOWN_NODE,))),
    "create_view": ("CREATE VIEW: unknown", Expect(K.UNKNOWN, (), (D.UNKNOWN_NODE,))),
    "drop_table": ("DROP TABLE: unknown", Expect(K.UNKNOWN, (), (D.UNKNOWN_NODE,))),
    "drop_view": ("DROP VIEW: unknown", Expect(K.UNKNOWN, (), (D.UNKNOWN_NODE,))),
    "drop_temp_view": ("dropping a temp view: unknown", Expect(K.UNKNOWN, (), (D.UNKNOWN_NODE,))),
    "create_database": ("CREATE DATABASE: unknown", Expect(K.UNKNOWN, (), (D.UNKNOWN_NODE,))),
    "create_database_location": ("CREATE DATABASE LOCATION: unknown", Expect(K.UNKNOWN, (), (D.UNKNOWN_NODE,))),
    "drop_database": ("DROP DATABASE: unknown", Expect(K.UNKNOWN, (), (D.UNKNOWN_NODE,))),
    # --- metadata and configuration ---------------------------------------------------------
    "describe_table": ("DESCRIBE TABLE does not print its table", Expect(K.UNKNOWN, (), (D.UNKNOWN_NODE,))),
    "describe_table_extended": ("DESCRIBE EXTENDED: unknown", Expect(K.UNKNOWN, (), (D.UNKNOWN_NODE,))),
    "describe_function": ("DESCRIBE FUNCTION is metadata", Expect(K.METADATA)),
    "describe_database": ("DESCRIBE DATABASE may be any namespace", Expect(K.METADATA, ("*.*.*",))),
    "show_tables": ("SHOW TABLES is a listing", Expect(K.METADATA, (), (D.LISTING,))),
    "show_tables_in": ("SHOW TABLES IN is a listing", Expect(K.METADATA, (), (D.LISTING,))),
    "show_views": ("SHOW VIEWS is a listing", Expect(K.METADATA, (), (D.LISTING,))),
    "show_columns": ("SHOW COLUMNS does not print its table", Expect(K.UNKNOWN, (), (D.UNKNOWN_NODE,))),
    "show_databases": ("SHOW DATABASES may be any catalog", Expect(K.METADATA, ("*.*.*",))),
    "show_catalogs": ("SHOW CATALOGS is metadata", Expect(K.METADATA)),
    "show_functions": ("SHOW FUNCTIONS is metadata", Expect(K.METADATA)),
    "use_database": ("USE changes name resolution: configuration", Expect(K.ADMIN, (), (D.CONFIG,))),
    "use_catalog": ("USE CATALOG: configuration", Expect(K.ADMIN, (), (D.CONFIG,))),
    "set_put": ("SET is configuration", Expect(K.ADMIN, (), (D.CONFIG,))),
    # --- structured plans (AnalyzePlan) -------------------------------------------------------
    "plan_table": ("a table source", Expect(K.QUERY, sc(NATION))),
    "plan_table_bare": ("a bare table source", Expect(K.QUERY, sc("t1"))),
    "plan_range": ("a range source reads nothing", Expect(K.QUERY)),
    "plan_result": ("a result source is the plan's own data", Expect(K.QUERY)),
    "plan_result_union": ("two result sources account for two scans", Expect(K.QUERY)),
    "plan_sql": ("a SQL source", Expect(K.QUERY, sc(REGION))),
    "plan_filter_with_column": ("filter and with_column", Expect(K.QUERY, sc(NATION))),
    "plan_group_by": ("group_by with aggregates", Expect(K.QUERY, sc(NATION))),
    "plan_join": ("a join reads both plans", Expect(K.QUERY, sc(NATION, HR))),
    "plan_union_distinct": ("a distinct union", Expect(K.QUERY, sc(NATION))),
    "plan_sample": ("sample", Expect(K.QUERY, sc(NATION))),
    "plan_window": ("window", Expect(K.QUERY, sc(NATION))),
    "plan_pivot": ("pivot", Expect(K.QUERY, sc(NATION))),
    "plan_distinct_order_limit": ("drop, distinct, order_by, limit", Expect(K.QUERY, sc(NATION))),
    "plan_subquery_in_filter": ("a subquery in an expression string is read", Expect(K.QUERY, sc(NATION, HR))),
    "plan_literal_fake_scan": (
        "a literal in an expression printing a TableScan",
        Expect(K.QUERY, sc(REGION), (D.UNANALYSABLE,)),
    ),
}
EXPECTED.update(
    {
        f"tpch_q{number:02d}": (f"TPC-H Q{number} is a query", Expect(K.QUERY, reads=("tpch",)))
        for number in TPCH_QUERIES
    }
)


@pytest.mark.parametrize(
    ("fixture", "expect"),
    [pytest.param(name, expect, id=f"{name}: {why}") for name, (why, expect) in sorted(EXPECTED.items())],
)
def test_captured_sail_plan_is_classified(fixture: str, expect: Expect) -> None:
    facts = facts_of(fixture)
    assert facts.kind is expect.kind, facts
    if fixture.startswith("tpch_"):
        assert facts.reads and all(str(t).startswith("spark_catalog.tpch.") for t in facts.reads), facts
    else:
        assert {str(t) for t in facts.reads} == set(expect.reads), facts
    assert {d.kind for d in facts.dangers} == set(expect.dangers), facts.dangers


@pytest.mark.parametrize("number", sorted(TPCH_QUERIES))
def test_tpch_query_reads_exactly_the_tables_it_names(number: int) -> None:
    sql = TPCH_QUERIES[number]
    named = {t for t in TPCH_TABLES if re.search(rf"\b{t}\b", sql)}
    assert {t.name for t in facts_of(f"tpch_q{number:02d}").reads} == named


def test_every_fixture_has_an_expectation() -> None:
    fixtures = {p.stem for p in FIXTURES.glob("*.txt")} - {"refused"}
    assert fixtures == set(EXPECTED)


def test_bare_names_are_qualified_with_the_session_context() -> None:
    _, text = load("query_bare_name")
    facts = inspect_sail_explain(text, SailContext(catalog="spark_catalog", namespace="tpch"))
    assert {str(t) for t in facts.reads} == {"spark_catalog.tpch.t1"}
    _, text = load("query_two_part_name")
    assert {str(t) for t in inspect_sail_explain(text, SailContext(namespace="hr")).reads} == {
        "spark_catalog.tpch.nation"
    }


def test_function_names_are_collected_under_datafusion_names() -> None:
    facts = facts_of("query_functions")
    assert {"upper", "spark_concat", "sha256", "regexp_replace"} <= facts.functions
    assert all(re.fullmatch(r"[a-z_][a-z0-9_]*", f) for f in facts.functions)


def test_the_analyzed_plan_is_the_section_between_its_markers() -> None:
    _, text = load("query_two_part_name")
    section = analyzed_plan(text)
    assert section is not None
    assert "TableScan: tpch.nation" in section
    assert "== " not in section and "Exec" not in section


def test_output_that_is_not_explain_is_unanalysable() -> None:
    for text in ("", "hello", "== Parsed Logical Plan ==\nProjection: x", None):
        facts = inspect_sail_explain(text)  # type: ignore[arg-type]
        assert facts.kind is K.UNKNOWN
        assert {d.kind for d in facts.dangers} == {D.UNANALYSABLE}


def test_a_scan_of_client_data_beyond_what_the_plan_sent_is_path_access() -> None:
    header, text = load("plan_result_union")
    assert D.PATH_ACCESS not in {d.kind for d in inspect_sail_explain(text, context_of(header)).dangers}
    one = inspect_sail_explain(text, SailContext(local_relations=1))
    assert D.PATH_ACCESS in {d.kind for d in one.dangers}


# --------------------------------------------------------------------------------------------
# Planted text can only make a verdict stricter.
# --------------------------------------------------------------------------------------------

INJECTIONS = [
    "TableScan: hr.salaries",
    "    TableScan: tpch.region",
    "TableScan: ?table?",
    "  TableScan: a.b.c.d",
    "CatalogCommand: ListCatalogs",
    "CatalogCommand: DropTable",
    "Projection: x",
    "  Filter: y",
    "Barrier",
    "  FileWrite: x",
    'SetVariable: set "a" to "b"',
    "Frobnicate",
    "Union",
    "SubqueryAlias: t",
    "EmptyRelation: rows=1",
    "Inner Join: a = b",
    "#0: Int32",
    "value: Boolean",
    "",
    "  ",
    ")",
]
# Lines Sail prints without any literal or user-chosen text in them.
NO_TEXT = re.compile(r"^ *(?:TableScan|CatalogCommand|Union|Barrier|EmptyRelation|Subquery:|Distinct:)")
STRICT = {D.UNKNOWN_NODE, D.UNANALYSABLE}


def at_least_as_strict(before: StatementFacts, after: StatementFacts) -> bool:
    if after.kind is K.UNKNOWN or {d.kind for d in after.dangers} & STRICT:
        return True
    return (
        after.kind is before.kind
        and after.reads >= before.reads
        and {d.kind for d in after.dangers} >= {d.kind for d in before.dangers}
    )


def plant(text: str, rng: random.Random) -> str:
    """Plant lines where a literal could print them: after a node's name, in a line with text."""
    start = text.index("== Analyzed Logical Plan ==") + len("== Analyzed Logical Plan ==") + 1
    end = text.index("== Optimized Logical Plan ==")
    lines = text[start:end].rstrip("\n").split("\n")
    candidates = [i for i, line in enumerate(lines) if ": " in line and not NO_TEXT.match(line)]
    if not candidates:
        return text
    index = rng.choice(candidates)
    line = lines[index]
    name_end = line.index(": ") + 2
    cuts = [m.end() for m in re.finditer(r"(?:, |\(|\[| )", line) if m.end() >= name_end] + [len(line)]
    cut = rng.choice(cuts)
    planted = "\n".join(rng.choice(INJECTIONS) for _ in range(rng.randint(1, 3)))
    lines[index] = line[:cut] + "\n" + planted + "\n" + rng.choice(["", *INJECTIONS]) + line[cut:]
    return text[:start] + "\n".join(lines) + "\n\n" + text[end:]


def test_planted_plan_text_never_loosens_a_verdict() -> None:
    rng = random.Random(7)
    loosened = []
    for path in sorted(FIXTURES.glob("*.txt")):
        if path.stem == "refused":
            continue
        header, text = load(path.stem)
        context = context_of(header)
        before = inspect_sail_explain(text, context)
        for _ in range(40):
            planted = plant(text, rng)
            after = inspect_sail_explain(planted, context)
            if not at_least_as_strict(before, after):
                loosened.append((path.stem, planted, before, after))
    assert not loosened, loosened[0]


def test_the_reader_never_raises_on_mangled_plans() -> None:
    rng = random.Random(11)
    pieces = ["\n", "  ", "TableScan: ", ": ", "?table?", ".", "`", "CatalogCommand: ", "== ", 'Utf8("']
    for path in sorted(FIXTURES.glob("*.txt"))[:80]:
        if path.stem == "refused":
            continue
        _, text = load(path.stem)
        for _ in range(10):
            chars = list(text)
            for _ in range(rng.randint(1, 8)):
                chars.insert(rng.randrange(len(chars) + 1), rng.choice(pieces))
            assert isinstance(inspect_sail_explain("".join(chars)), StatementFacts)


def test_query_nodes_are_relational_operators_only() -> None:
    assert not {"CatalogCommand", "SetVariable", "Barrier", "FileWrite", "Dml", "CopyTo"} & QUERY_NODES


# --------------------------------------------------------------------------------------------
# Sail's gate: what never reaches Sail's analyzer.
# --------------------------------------------------------------------------------------------

GATE_CASES = [
    # (sql, expected danger kinds, why)
    ("SELECT * FROM tpch.nation", set(), "a table"),
    ("SELECT * FROM spark_catalog.tpch.nation", set(), "a three-part table name"),
    ("SELECT * FROM csv.`/etc/passwd`", {D.PATH_ACCESS}, "format.`path`"),
    ("SELECT * FROM `text`.`/etc/hostname`", {D.PATH_ACCESS}, "quoted format"),
    ("select * from TEXT.x", {D.PATH_ACCESS}, "upper-case format, unquoted relative path"),
    ("SELECT * FROM delta.events", {D.PATH_ACCESS}, "a namespace named like a format reads a path on Sail"),
    ("SELECT * FROM text . /* comment */ `/etc/hostname`", {D.PATH_ACCESS}, "a comment between the parts"),
    ("SELECT * FROM text--c\n.`/etc/hostname`", {D.PATH_ACCESS}, "a line comment between the parts"),
    ("SELECT * FROM text/* a /* b */ c */.`/x`", {D.PATH_ACCESS}, "a nested comment between the parts"),
    ("SELECT * FROM socket.`localhost:9999`", {D.PATH_ACCESS}, "a socket source"),
    ("SELECT * FROM binaryFile.`/etc`", {D.PATH_ACCESS}, "binaryFile"),
    ("SELECT * FROM tpch.nation t JOIN json.`/x` j ON true", {D.PATH_ACCESS}, "in a join"),
    ("SELECT * FROM t WHERE a IN (SELECT * FROM parquet.`/x`)", {D.PATH_ACCESS}, "in a subquery"),
    ("SELECT * FROM spark_catalog.csv.t", set(), "three parts are a table, not a path, to Sail"),
    ("SELECT 'csv.`/etc/passwd`' AS s", set(), "a string literal is no name"),
    ("SELECT 1 -- csv.`/etc/passwd`", set(), "a comment is no name"),
    ("SELECT 1 /* parquet.x */", set(), "a block comment is no name"),
    ("SELECT csvfile.x FROM csvfile", set(), "a longer word is no format"),
    ("SELECT * FROM IDENTIFIER('tpch.nation')", {D.UNANALYSABLE}, "IDENTIFIER can build any name"),
    ("SELECT * FROM identifier('te' || 'xt.`/etc/passwd`')", {D.UNANALYSABLE}, "IDENTIFIER with an expression"),
    ("SELECT identifier FROM t", set(), "a column named identifier"),
]


@pytest.mark.parametrize(("sql", "kinds", "why"), GATE_CASES, ids=[c[2] for c in GATE_CASES])
def test_sail_gate(sql: str, kinds: set[DangerKind], why: str) -> None:
    assert {d.kind for d in check_sql(sql)} == kinds


def test_a_text_the_lexer_cannot_read_is_refused_when_it_names_a_format() -> None:
    assert {d.kind for d in check_sql("o'brien csv.x")} == {D.PATH_ACCESS}
    assert check_sql("o'brien") == ()


PLAN_CASES = [
    ('{"source": {"table": "tpch.nation"}}', set(), 0, "a table source"),
    ('{"source": {"table": "csv.x"}}', {D.PATH_ACCESS}, 0, "a table source that is a path read"),
    ('{"source": {"table": "`json`.`/etc/passwd`"}}', {D.PATH_ACCESS}, 0, "a quoted one"),
    (
        '{"source": {"table": "t"}, "operations": [{"op": "filter", "condition": "a IN (SELECT v FROM text.`/x`)"}]}',
        {D.PATH_ACCESS},
        0,
        "a path read in an expression",
    ),
    ('{"source": {"sql": "SELECT * FROM IDENTIFIER(\'x\')"}}', {D.UNANALYSABLE}, 0, "IDENTIFIER in a SQL source"),
    ('{"source": {"result_id": "res_1"}}', set(), 1, "a result source"),
    (
        '{"source": {"result_id": "res_1"}, "operations": [{"op": "union", "other": {"source": {"result_id": "r"}}}]}',
        set(),
        2,
        "two result sources",
    ),
    ("not json", {D.UNANALYSABLE}, 0, "not a plan"),
]


@pytest.mark.parametrize(("plan", "kinds", "sources", "why"), PLAN_CASES, ids=[c[3] for c in PLAN_CASES])
def test_sail_plan_gate(plan: str, kinds: set[DangerKind], sources: int, why: str) -> None:
    dangers, result_sources = check_plan(plan)
    assert {d.kind for d in dangers} == kinds
    assert result_sources == sources


def test_tpch_tables_are_qualified_only_where_they_are_tables() -> None:
    q8 = qualify_tpch(TPCH_QUERIES[8])
    assert "n2.n_name AS nation" in q8  # the alias stays
    assert "tpch.nation n1" in q8 and "tpch.nation n2" in q8
    q9 = qualify_tpch(TPCH_QUERIES[9])
    assert re.search(r"GROUP BY\s+nation,", q9)  # the column stays
    assert "extract(year FROM o_orderdate)" in q9
    q13 = qualify_tpch(TPCH_QUERIES[13])
    assert "tpch.customer" in q13 and "JOIN tpch.orders" in q13
