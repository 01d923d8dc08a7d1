"""The lexical gate: what is refused before Spark sees the SQL text (pure, no driver).

The cases mirror Spark 4.3's lexer as measured on a real driver: nested /* */ comments,
a backslash before a newline continuing a -- comment, Java upper-casing of keywords
(``ſELECT`` is ``SELECT``), and EXPLAIN refusing several statements while ``spark.sql()``
would run a script.
"""

from __future__ import annotations

import random

import pytest

from spark_mcp.spark.sqltext import GateResult, gate
from spark_mcp.statement import DangerKind

PASSES = [
    pytest.param("SELECT 1", "SELECT 1", id="a plain query passes unchanged"),
    pytest.param("SELECT 1;", "SELECT 1", id="a single trailing semicolon is removed"),
    pytest.param("  SELECT 1 ;;  \n", "SELECT 1", id="trailing semicolons and whitespace are removed"),
    pytest.param("SELECT 1; -- done\n", "SELECT 1", id="a comment after the trailing semicolon is removed"),
    pytest.param("SELECT 1 /* c */ ;  /* d */", "SELECT 1", id="bracketed comments after the end are removed"),
    pytest.param("SELECT 'a;b' AS s", "SELECT 'a;b' AS s", id="a semicolon inside a string is not a separator"),
    pytest.param('SELECT "a;b" AS s', 'SELECT "a;b" AS s', id="a semicolon inside a double-quoted string is text"),
    pytest.param("SELECT `a;b` FROM t", "SELECT `a;b` FROM t", id="a semicolon inside a quoted identifier is text"),
    pytest.param("SELECT '--not a comment; x'", "SELECT '--not a comment; x'", id="dashes inside a string are text"),
    pytest.param("SELECT 'it\\'s; fine'", "SELECT 'it\\'s; fine'", id="a backslash-escaped quote stays in the string"),
    pytest.param("SELECT 'it''s; fine'", "SELECT 'it''s; fine'", id="a doubled quote stays in the string"),
    pytest.param("SELECT r'C:\\dir\\'", "SELECT r'C:\\dir\\'", id="a raw string ends at its first quote"),
    pytest.param("SELECT `a``;b`", "SELECT `a``;b`", id="a doubled backquote stays in the identifier"),
    pytest.param("SELECT 1 -- a; b\n", "SELECT 1", id="a semicolon inside a line comment is ignored"),
    pytest.param("SELECT 1 /* a; b */ + 1", "SELECT 1 /* a; b */ + 1", id="a semicolon in a block comment is ignored"),
    pytest.param("SELECT 1 /* a /* b */ c */ + 1", None, id="nested block comments are one comment"),
    pytest.param("-- intro\nSELECT 1", "-- intro\nSELECT 1", id="a leading comment is kept"),
    pytest.param("SELECT /*+ BROADCAST(t) */ * FROM t;", "SELECT /*+ BROADCAST(t) */ * FROM t", id="hints pass"),
    pytest.param("SELECT a::INT FROM t", "SELECT a::INT FROM t", id="the :: cast is not a label"),
    pytest.param(
        "WITH c AS (SELECT 1 AS a) SELECT * FROM c", "WITH c AS (SELECT 1 AS a) SELECT * FROM c", id="CTEs pass"
    ),
    pytest.param("DECLARE x INT DEFAULT 1", "DECLARE x INT DEFAULT 1", id="a variable declaration is one statement"),
    pytest.param("SELECT 1 ;\u00a0", "SELECT 1", id="a no-break space after the semicolon is whitespace to Spark"),
    pytest.param("EXECUTED IMMEDIATELY", "EXECUTED IMMEDIATELY", id="words that only contain the keywords pass"),
    pytest.param("SELECT 'exec' || 'ute immediate'", None, id="EXECUTE split across strings is not the keyword"),
    pytest.param("SELECT $1, '$', '{'", None, id="a dollar sign without a brace passes"),
    pytest.param("FROM t |> WHERE a > 1 |> SELECT a", None, id="pipe syntax passes"),
    pytest.param("SELECT x'0A', X'FF'", None, id="binary literals pass"),
    pytest.param("SELECT 1 AS file://bucket/x--y", None, id="a URI identifier keeps its dashes"),
    pytest.param("SELECT * FROM t TIMESTAMP AS OF '2024-01-01'", None, id="time travel to a literal passes"),
    pytest.param(
        "SELECT * FROM t VERSION AS OF 3 WHERE a IN (SELECT 1)", None, id="a subquery after time travel passes"
    ),
    pytest.param(
        "SELECT * FROM t FOR SYSTEM_TIME AS OF current_timestamp() - INTERVAL 1 DAY AS x JOIN (SELECT 1) y ON true",
        None,
        id="time travel to an expression passes",
    ),
    pytest.param("SELECT CAST(ts AS TIMESTAMP) AS of FROM t", None, id="a column aliased 'of' is no time travel"),
]


@pytest.mark.parametrize(("sql", "cleaned"), PASSES)
def test_gate_passes_ordinary_sql(sql: str, cleaned: str | None) -> None:
    result = gate(sql)
    assert result.dangers == ()
    assert result.sql == (cleaned if cleaned is not None else sql)


DENIES = [
    # Several statements, scripts.
    pytest.param("select 1; select 2", DangerKind.SCRIPT, id="two statements are refused"),
    pytest.param("SELECT 1;DROP TABLE t", DangerKind.SCRIPT, id="a statement glued after a semicolon is refused"),
    pytest.param("SELECT 1; ; DROP TABLE t;", DangerKind.SCRIPT, id="empty statements do not hide a second one"),
    pytest.param(
        "SELECT 1 -- c \\\n; DROP TABLE t", DangerKind.SCRIPT, id="a continued line comment is no hiding place"
    ),
    pytest.param("SELECT 1 /* /* */ ; DROP TABLE t */", DangerKind.SCRIPT, id="an unnested reading of comments denies"),
    # Conservative on purpose: Spark nests comments (measured), but a semicolon that only
    # nesting hides is not worth the risk of the gate and Spark disagreeing.
    pytest.param("SELECT 1 /* a /* b; */ c; */", DangerKind.SCRIPT, id="a semicolon only nesting hides is refused"),
    pytest.param("SELECT 1 AS file://x--; DROP TABLE t", DangerKind.SCRIPT, id="a URI identifier hides no semicolon"),
    pytest.param(
        "SELECT 1 ;\u200b", DangerKind.SCRIPT, id="a zero-width space after a semicolon is a second statement"
    ),
    pytest.param("SELECT 1 /*+ ; */", DangerKind.SCRIPT, id="a semicolon inside a hint is code"),
    pytest.param("BEGIN SELECT 1; END", DangerKind.SCRIPT, id="a BEGIN END script is refused"),
    pytest.param("begin\n  select 1;\nend;", DangerKind.SCRIPT, id="a lower-case script is refused"),
    pytest.param("BEGIN SELECT 1 END", DangerKind.SCRIPT, id="a script without semicolons is refused"),
    pytest.param("lbl: BEGIN SELECT 1; END", DangerKind.SCRIPT, id="a labelled block is refused"),
    pytest.param("`lbl`: LOOP LEAVE lbl; END LOOP", DangerKind.SCRIPT, id="a quoted label is refused"),
    pytest.param("IF 1 = 1 THEN SELECT 1; END IF", DangerKind.SCRIPT, id="a top-level IF is refused"),
    pytest.param("WHILE true DO SELECT 1; END WHILE", DangerKind.SCRIPT, id="a WHILE loop is refused"),
    pytest.param("REPEAT SELECT 1; UNTIL true END REPEAT", DangerKind.SCRIPT, id="a REPEAT loop is refused"),
    pytest.param("FOR r AS SELECT 1 DO SELECT 2; END FOR", DangerKind.SCRIPT, id="a FOR loop is refused"),
    pytest.param("CASE WHEN true THEN SELECT 1; END CASE", DangerKind.SCRIPT, id="a CASE statement is refused"),
    pytest.param("DECLARE EXIT HANDLER FOR SQLEXCEPTION SELECT 1", DangerKind.SCRIPT, id="a handler is refused"),
    pytest.param("DECLARE c CURSOR FOR SELECT 1", DangerKind.SCRIPT, id="a cursor is refused"),
    pytest.param("/* lead */ BEGIN SELECT 1; END", DangerKind.SCRIPT, id="a comment before BEGIN does not hide it"),
    pytest.param("BEGİN SELECT 1; END", DangerKind.SCRIPT, id="dotted capital I does not hide BEGIN"),
    # EXECUTE IMMEDIATE in every form (analysing it runs it).
    pytest.param("EXECUTE IMMEDIATE 'DROP TABLE t'", DangerKind.EXECUTE_IMMEDIATE, id="EXECUTE IMMEDIATE is refused"),
    pytest.param("execute immediate 'x'", DangerKind.EXECUTE_IMMEDIATE, id="lower-case EXECUTE IMMEDIATE is refused"),
    pytest.param("ExEcUtE\n\tImMeDiAtE 'x'", DangerKind.EXECUTE_IMMEDIATE, id="mixed case across lines is refused"),
    pytest.param("EXECUTE/**/IMMEDIATE 'x'", DangerKind.EXECUTE_IMMEDIATE, id="a comment between the words is refused"),
    pytest.param(
        "EXECUTE -- x\n IMMEDIATE 'x'", DangerKind.EXECUTE_IMMEDIATE, id="a line comment between the words is refused"
    ),
    pytest.param("EXECUTE /* a /* b */ */ IMMEDIATE 'x'", DangerKind.EXECUTE_IMMEDIATE, id="nested comments too"),
    pytest.param(
        "EXECUTE ımmedıate 'x'", DangerKind.EXECUTE_IMMEDIATE, id="dotless i that Spark upper-cases is refused"
    ),
    pytest.param("SELECT 1 -- EXECUTE IMMEDIATE", DangerKind.EXECUTE_IMMEDIATE, id="even inside a comment"),
    pytest.param("SELECT 'execute', 'immediate'", DangerKind.EXECUTE_IMMEDIATE, id="even inside strings, on purpose"),
    pytest.param(
        "/* EXECUTE */ SELECT `IMMEDIATE`", DangerKind.EXECUTE_IMMEDIATE, id="even split over comment and name"
    ),
    # A time-travel subquery runs during analysis and its value comes back in the error.
    pytest.param(
        "SELECT * FROM t TIMESTAMP AS OF (SELECT max(s) FROM secret)",
        DangerKind.ANALYSIS_SIDE_EFFECT,
        id="a time-travel subquery is refused",
    ),
    pytest.param(
        "SELECT * FROM t FOR SYSTEM_TIME AS OF (FROM secret |> AGGREGATE max(s))",
        DangerKind.ANALYSIS_SIDE_EFFECT,
        id="a pipe subquery in SYSTEM_TIME AS OF is refused",
    ),
    pytest.param(
        "select * from t timestamp as of concat((with q as (select s from secret) select max(s) from q), '')",
        DangerKind.ANALYSIS_SIDE_EFFECT,
        id="a subquery nested in a time-travel expression is refused",
    ),
    pytest.param("SELECT * FROM t VERSION AS OF (VALUES (1))", DangerKind.ANALYSIS_SIDE_EFFECT, id="VERSION AS OF too"),
    pytest.param(
        "SELECT * FROM t TIMESTAMP AS OF '2024' || (SELECT max(s) FROM secret)",
        DangerKind.ANALYSIS_SIDE_EFFECT,
        id="a subquery after a || operator in time travel is refused",
    ),
    # Variable substitution.
    pytest.param(
        "SELECT '${env:SPARK_CONNECT_AUTHENTICATE_TOKEN}'", DangerKind.CONFIG, id="env substitution is refused"
    ),
    pytest.param("SELECT ${spark.sql.x}", DangerKind.CONFIG, id="conf substitution is refused"),
    pytest.param("SELECT 1 -- ${system:user.home}", DangerKind.CONFIG, id="substitution in a comment is refused too"),
    # Unreadable text.
    pytest.param("SELECT 'unterminated", DangerKind.UNANALYSABLE, id="an unterminated string is refused"),
    pytest.param("SELECT `unterminated", DangerKind.UNANALYSABLE, id="an unterminated identifier is refused"),
    pytest.param("SELECT 1 /* open", DangerKind.UNANALYSABLE, id="an unterminated comment is refused"),
    pytest.param("SELECT 1 /* a /* b */", DangerKind.UNANALYSABLE, id="a nested comment left open is refused"),
    pytest.param("SELECT 1 /*/**/", DangerKind.UNANALYSABLE, id="an open comment Spark also rejects is refused"),
    pytest.param("SELECT r'\\'; DROP'", DangerKind.UNANALYSABLE, id="a raw string does not escape its quote"),
    pytest.param("", DangerKind.UNANALYSABLE, id="an empty text is refused"),
    pytest.param(" ;; -- nothing\n", DangerKind.UNANALYSABLE, id="a text with no statement is refused"),
    pytest.param("-- c \\\nSELECT 1", DangerKind.UNANALYSABLE, id="a statement swallowed by a comment is empty"),
]


@pytest.mark.parametrize(("sql", "kind"), DENIES)
def test_gate_denies_before_analysis(sql: str, kind: DangerKind) -> None:
    result = gate(sql)
    assert kind in {d.kind for d in result.dangers}, result
    assert all(d.detail for d in result.dangers)


def test_gate_messages_say_what_to_do() -> None:
    details = " ".join(d.detail for d in gate("select 1; select 2").dangers)
    assert "one statement" in details
    assert "EXECUTE IMMEDIATE" in gate("EXECUTE IMMEDIATE 'x'").dangers[0].detail
    assert "'${'" in gate("SELECT '${x}'").dangers[0].detail


def test_gate_refuses_a_non_string_without_raising() -> None:
    result = gate(None)  # type: ignore[arg-type]
    assert result.sql == ""
    assert result.dangers[0].kind is DangerKind.UNANALYSABLE


def test_gate_returns_the_text_it_refused_trimmed() -> None:
    result = gate("  select 1; select 2  ")
    assert result.sql == "select 1; select 2"


FRAGMENTS = [
    "'",
    '"',
    "`",
    "``",
    "\\",
    "\n",
    "\r",
    "\r\n",
    " ",
    "\t",
    "\u00a0",
    "\u200b",
    "-",
    "--",
    "/",
    "*",
    "/*",
    "*/",
    "/*+",
    ";",
    ";;",
    ":",
    "::",
    "R",
    "r'",
    'R"',
    "${",
    "$",
    "{",
    "}",
    "EXECUTE",
    "IMMEDIATE",
    "BEGIN",
    "END",
    "SELECT",
    "1",
    "a",
    "ı",
    "ſ",
    "é",
    "file://",
    "x-y",
    "(",
    ")",
    "#",
    "\x00",
    "\udcff",
]


def test_gate_never_raises_on_random_text() -> None:
    rng = random.Random(20_240_611)
    for _ in range(4000):
        text = "".join(rng.choice(FRAGMENTS) for _ in range(rng.randint(0, 24)))
        result = gate(text)
        assert isinstance(result, GateResult)
        assert isinstance(result.sql, str)
        if not result.dangers:
            # What passes is one statement: gating it again changes nothing.
            assert result.sql
            assert gate(result.sql) == GateResult(result.sql, ())
            assert result.sql in text
        if "${" in text:
            assert DangerKind.CONFIG in {d.kind for d in result.dangers}


def test_gate_handles_long_text() -> None:
    sql = "SELECT " + ", ".join(f"'v{i};'" for i in range(20_000)) + " FROM t;"
    result = gate(sql)
    assert result.dangers == ()
    assert result.sql == sql[:-1]
