"""Hostile input: every tool's arguments, fuzzed with hypothesis, through the real MCP client
against the real App (the session-wide app of conftest.py, with real Spark drivers).

Whatever arrives (wrong types, huge numbers, huge SQL, unicode and control characters,
deeply nested plans, odd ids and names), the server must:

- answer before a deadline (``anyio.fail_after``), never hang;
- answer a failure with an error the agent can act on: a coded error (``invalid_input: ...``,
  ``TABLE_OR_VIEW_NOT_FOUND: ...``) or the SDK's validation report naming the argument; never
  ``internal_error``, the SDK's bare reply to a crash, a Python traceback or a JVM stack;
- write exactly one audit record for the call;
- keep working: a control call right after it succeeds, and a statement runs at the end.

The CI run is small and derandomized (the same examples every run, no example database),
sized for a slow 2-core machine; ``-m slow`` runs many more, with fresh random examples.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcp import Client, MCPError

from spark_mcp.app import App
from spark_mcp.audit import verify
from spark_mcp.plans import MAX_JSON_DEPTH, MAX_PLAN_DEPTH
from tests.helpers import (
    STACK_TRACE,
    VALIDATION_ERROR,
    AuditCursor,
    ClientFactory,
    actionable_error,
    call,
    call_error,
    nested_joins,
    text_of,
)

pytestmark = [pytest.mark.anyio, pytest.mark.spark]

FUZZER = "mallory"  # role "fuzzed" (tests/policies): an analyst whose statements get 20 s
# Past the role's 20 s statement deadline and a driver start on a busy machine: a call still
# unanswered then is hung.
CALL_DEADLINE_S = 150

# One client is deliberately shared by every example of a test (an agent hammering one
# connection), so the function-scoped fixture is not reset between examples.
_SHARED = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large]
CI = settings(max_examples=6, deadline=None, derandomize=True, database=None, suppress_health_check=_SHARED)
SLOW = settings(max_examples=150, deadline=None, database=None, suppress_health_check=_SHARED)

# -- what a hostile client sends ---------------------------------------------------------

NASTY_PIECES = [
    "\x00", "\x07", "\x1b[31m", "\r", "\n", "\t", "\u202e", "\ufeff", "\u200b", "\u0301", "\ud800", "\udfff",
    "'", '"', "`", "\\", "%", "_", "*", "$", "{", "}", ";", "--", "/*", "*/", "${env:HOME}", "é", "日本", "🙂",
]  # fmt: skip
# Text made of pieces that break naive code: control characters, lone surrogates, bidi
# overrides, quotes and comment markers, placeholders; plus any code point at all.
nasty = st.lists(st.sampled_from(NASTY_PIECES) | st.characters(exclude_categories=()), max_size=30).map("".join)
# The in-memory client cannot encode a lone surrogate in an object key (its own error, before
# anything is sent): keys get everything else.
key = nasty.map(lambda text: "".join(c for c in text if not 0xD800 <= ord(c) <= 0xDFFF))
huge = st.builds(lambda piece, n: (piece or "x") * n, st.text(max_size=6), st.integers(2_000, 40_000))
ints = st.one_of(
    st.integers(-5, 300),
    st.integers(-(2**70), 2**70),
    st.sampled_from([0, -1, 100_000, 100_001, 2**31, 2**63, 2**64]),
)
floats = st.one_of(
    st.floats(0, 3),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([3600, 3600.001, -0.0, 1e-300, 1e308]),
)
wrong = st.one_of(
    st.none(),
    st.booleans(),
    ints,
    floats,
    nasty,
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=3),
)
json_junk = st.recursive(
    st.none() | st.booleans() | ints | floats | nasty,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(key, inner, max_size=4),
    max_leaves=20,
)

SQL = [
    "SELECT 1",
    "SELECT r_name FROM tpch.region",
    "SELECT * FROM hr.salaries",
    "SELECT * FROM tpch.secret_codes",
    "SHOW TABLES",
    "SET spark.sql.ansi.enabled=false",
    "SELECT 1; SELECT 2",
    "EXECUTE IMMEDIATE 'SELECT 1'",
    "SELECT ${env:HOME}",
    "SELECT reflect('java.lang.System', 'getenv', 'HOME')",
    "SELECT * FROM parquet.`/etc`",
    "DROP TABLE tpch.region",
    "INSERT INTO tpch.region VALUES (9, 'x', 'y')",
    "CREATE TEMP VIEW v AS SELECT * FROM tpch.nation",
    "BEGIN SELECT 1; END",
    "",
    " ",
    "--",
    "/*",
    "SELECT * FROM range(10)",
]
sql = st.one_of(
    st.sampled_from(SQL),
    nasty,
    huge,
    st.builds(lambda t: "SELECT '" + t.replace("\\", "\\\\").replace("'", "\\'") + "' AS v", nasty),
    st.builds(lambda n: "SELECT " + "(" * n + "1" + ")" * n, st.integers(1, 300)),
    st.builds(lambda a, b: f"{a} {b}", st.sampled_from(SQL), nasty),
)

PREFIXES = ["ses_", "job_", "res_"]
ODD_IDS = ["", " ", "\x00", "../../etc/passwd", "res_../../x", "ses_/..", "job_%00", "res_" + "0" * 16, "ses_" * 30]
ids = st.one_of(
    nasty,
    st.sampled_from(ODD_IDS),
    st.builds(lambda prefix, rest: prefix + rest, st.sampled_from(PREFIXES), nasty),
    st.builds(lambda prefix, n: prefix + "0" * n, st.sampled_from(PREFIXES), st.integers(0, 5_000)),
)

NAMES = [
    "tpch.region", "TPCH.REGION", "`tpch`.`region`", "spark_catalog.tpch.region", "hr.salaries",
    "tpch.secret_codes", "`a``b`.c", "a.b.c.d", "*", "%", "(((", "\\", ".", "..", "`", "``", "a..b",
    " tpch.region ", "tpch.region;DROP TABLE x", "tpch.`region` x", "global_temp.v", "system.builtin",
    "information_schema.tables", "spark_catalog", "tpch",
]  # fmt: skip
names = st.one_of(
    st.sampled_from(NAMES),
    nasty,
    st.text(st.sampled_from("`.` *%"), max_size=20),
    st.builds(lambda n: "a" * n, st.integers(200, 5_000)),
)

exprs = st.one_of(
    st.sampled_from(["1", "id", "id * 2", "r_name", "rand()", "reflect('java.lang.System', 'getenv', 'HOME')"]),
    st.sampled_from(["(SELECT max(salary) FROM hr.salaries)", "current_user()", "java_method('a', 'b')"]),
    nasty,
)
sources = st.one_of(
    st.fixed_dictionaries({"table": names}),
    st.fixed_dictionaries({"sql": sql}),
    st.fixed_dictionaries(
        {"range": st.fixed_dictionaries({"end": st.integers(-5, 10)}, optional={"step": st.integers(-2, 2)})}
    ),
    st.fixed_dictionaries({"result_id": ids}),
    json_junk,
)
aggs = st.fixed_dictionaries(
    {}, optional={"fn": st.sampled_from(["count", "sum", "approx_percentile", "nope"]), "column": exprs, "expr": exprs}
)
operations = st.one_of(
    st.fixed_dictionaries({"op": st.just("select"), "columns": st.lists(exprs, max_size=3)}),
    st.fixed_dictionaries({"op": st.just("filter"), "condition": exprs}),
    st.fixed_dictionaries({"op": st.just("with_column"), "name": nasty, "expr": exprs}),
    st.fixed_dictionaries({"op": st.just("rename"), "mapping": st.dictionaries(key, nasty, max_size=2)}),
    st.fixed_dictionaries({"op": st.just("group_by"), "columns": st.lists(exprs, max_size=2), "aggs": st.lists(aggs)}),
    st.fixed_dictionaries({"op": st.just("limit"), "n": ints}),
    st.fixed_dictionaries({"op": st.just("sample"), "fraction": floats}),
    st.fixed_dictionaries({"op": st.just("order_by"), "keys": st.lists(exprs | json_junk, max_size=2)}),
    st.fixed_dictionaries({"op": nasty}),
    json_junk,
)


def with_nested(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    nested = st.one_of(
        operations,
        st.fixed_dictionaries(
            {"op": st.just("join"), "right": inner},
            optional={"on": st.lists(nasty, max_size=2), "condition": exprs, "how": st.sampled_from(["cross", "x"])},
        ),
        st.fixed_dictionaries({"op": st.just("union"), "other": inner}),
    )
    return st.fixed_dictionaries({"source": sources, "operations": st.lists(nested, max_size=3)})


def nested_json(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {"source": {"range": {"end": 1}}}
    for _ in range(depth):
        value = {"source": value}
    return value


plans = st.one_of(
    st.recursive(
        st.fixed_dictionaries({"source": sources}, optional={"operations": st.lists(operations, max_size=4)}),
        with_nested,
        max_leaves=5,
    ),
    st.integers(1, MAX_PLAN_DEPTH + 20).map(nested_joins),
    # Deeper than the server allows, but within what the in-memory client can serialise (about
    # 250 levels); deeper JSON still is sent over stdio by test_bounds.py.
    st.integers(MAX_JSON_DEPTH - 5, 200).map(nested_json),
    json_junk,
)


def enum(*values: str) -> st.SearchStrategy[str]:
    return st.sampled_from(values) | nasty


bools = st.booleans()

session_ids = st.none() | ids  # mostly the default session, so the call gets past session lookup

# Every tool and its arguments, each filled in as a hostile agent would but with the right
# JSON type; ``REQUIRED`` names the ones the tool needs. test_every_tool_is_fuzzed keeps this
# in step with the server's tools.
TOOLS: dict[str, dict[str, st.SearchStrategy[Any]]] = {
    "whoami": {},
    "create_session": {"engine": enum("spark", "sail", "SPARK")},
    "list_sessions": {},
    "close_session": {"session_id": ids},
    "run_sql": {"sql": sql, "session_id": session_ids, "max_rows": ints, "wait_s": floats, "summary": bools},
    "run_plan": {"plan": plans, "session_id": session_ids, "max_rows": ints, "wait_s": floats, "summary": bools},
    "explain": {
        "sql": sql,
        "plan": plans,
        "session_id": session_ids,
        "mode": enum("simple", "extended", "cost", "formatted"),
    },
    "get_job": {"job_id": ids, "wait_s": floats, "max_rows": ints, "summary": bools},
    "cancel_job": {"job_id": ids},
    "list_jobs": {"limit": ints},
    "fetch_rows": {
        "result_id": ids,
        "offset": ints,
        "limit": ints,
        "format": enum("table", "json", "csv"),
        "wait_s": floats,
    },
    "list_catalogs": {"session_id": session_ids},
    "list_namespaces": {"catalog": names, "session_id": session_ids},
    "list_tables": {"namespace": names, "pattern": names, "session_id": session_ids},
    "describe_table": {"table": names, "session_id": session_ids},
    "preview_table": {"table": names, "limit": ints, "session_id": session_ids},
}
REQUIRED = {
    "close_session": {"session_id"},
    "run_sql": {"sql"},
    "run_plan": {"plan"},
    "get_job": {"job_id"},
    "cancel_job": {"job_id"},
    "fetch_rows": {"result_id"},
    "describe_table": {"table"},
    "preview_table": {"table"},
}


def arguments_for(tool: str) -> st.SearchStrategy[dict[str, Any]]:
    """Arguments for ``tool``: hostile values of the right JSON type (two draws in three, so
    most calls get past argument validation into the server), or any subset of its
    arguments with values of any type; both with arguments it does not have.
    """
    params, required = TOOLS[tool], REQUIRED.get(tool, set())
    typed = st.fixed_dictionaries(
        {name: params[name] for name in required},
        optional={name: strategy for name, strategy in params.items() if name not in required},
    )
    anything = st.fixed_dictionaries({}, optional={name: strategy | wrong for name, strategy in params.items()})
    extra = st.dictionaries(key | st.sampled_from(["user", "principal", "_meta"]), json_junk, max_size=2)
    return st.builds(lambda given, more: {**more, **given}, st.one_of(typed, typed, anything), extra)


# -- the checks --------------------------------------------------------------------------


@pytest.fixture
async def fuzzed(connect: ClientFactory, app: App) -> AsyncIterator[tuple[Client, AuditCursor]]:
    async with connect(FUZZER) as client:
        await call(client, "run_sql", sql="SELECT 1")  # the driver is up before the first example
        yield client, AuditCursor(app.config.audit_path, FUZZER)
        # After all of it, a statement still runs.
        with anyio.fail_after(CALL_DEADLINE_S):
            after = await call(client, "run_sql", sql="SELECT count(*) AS n FROM tpch.nation")
        assert after["rows"] == [[25]]


async def fuzz_once(client: Client, audit: AuditCursor, tool: str, arguments: dict[str, Any]) -> None:
    audit.new()  # start from here
    with anyio.fail_after(CALL_DEADLINE_S):
        result = await client.call_tool(tool, arguments)
    records = audit.new()
    assert [r["tool"] for r in records] == [tool], "exactly one audit record per call"
    assert records[0]["outcome"] == ("error" if result.is_error else "ok")
    if result.is_error:
        said = actionable_error(tool, result)
        validation = VALIDATION_ERROR.match(said)
        if validation is not None:  # the report names an argument of this tool
            assert validation["argument"].split(".")[0] in TOOLS[tool], said
    else:
        assert not STACK_TRACE.search(text_of(result))
        assert result.structured_content is not None
    with anyio.fail_after(CALL_DEADLINE_S):
        control = await client.call_tool("whoami", {})
    assert not control.is_error, text_of(control)
    assert [r["tool"] for r in audit.new()] == ["whoami"]


async def test_every_tool_is_fuzzed(alice: Client) -> None:
    listed = {tool.name for tool in (await alice.list_tools()).tools}
    assert listed == set(TOOLS)


def fuzz_test(tool: str, profile: Any) -> Any:
    """A test that sends ``tool`` hostile arguments (hypothesis draws them before the coroutine
    runs: a draw inside it could raise hypothesis' StopTest, a BaseException that ends the
    anyio runner the session-wide app lives on)."""

    @profile
    @given(arguments=arguments_for(tool))
    async def test(fuzzed: tuple[Client, AuditCursor], arguments: dict[str, Any]) -> None:
        await fuzz_once(*fuzzed, tool, arguments)

    return test


for _tool in TOOLS:
    globals()[f"test_hostile_arguments_to_{_tool}_get_an_error_the_agent_can_act_on"] = fuzz_test(_tool, CI)
    globals()[f"test_hostile_arguments_to_{_tool}_at_length"] = pytest.mark.slow(fuzz_test(_tool, SLOW))


tool_names = st.one_of(nasty, st.sampled_from(["", " ", "run_sql ", "RUN_SQL", "run-sql", "../whoami", "a" * 300]))


@CI
@given(name=tool_names, arguments=st.dictionaries(key, json_junk, max_size=3))
async def test_unknown_tools_are_named_and_audited(
    fuzzed: tuple[Client, AuditCursor], name: str, arguments: dict[str, Any]
) -> None:
    client, audit = fuzzed
    audit.new()
    with anyio.fail_after(CALL_DEADLINE_S):
        result = await client.call_tool(name, arguments)
    assert len(audit.new()) == 1
    if name not in TOOLS:
        assert actionable_error(name, result).startswith("Unknown tool: ")


uris = st.one_of(
    st.builds(lambda rest: "spark://results/" + rest, ids | nasty),
    st.builds(lambda rest, suffix: "spark://results/" + rest + suffix, ids, st.sampled_from([".csv", ".arrow", ".x"])),
    st.sampled_from(["spark://results/", "spark://results", "spark://other/x", "file:///etc/passwd", "spark://"]),
)


@CI
@given(uri=uris)
async def test_odd_resource_uris_are_refused_by_name_and_audited(fuzzed: tuple[Client, AuditCursor], uri: str) -> None:
    client, audit = fuzzed
    audit.new()
    with anyio.fail_after(CALL_DEADLINE_S), pytest.raises(MCPError) as refused:
        await client.read_resource(uri)
    message = refused.value.error.message
    assert message and not STACK_TRACE.search(message)
    assert len(audit.new()) == 1


# -- what the fuzzing found, kept as plain regressions -----------------------------------


async def test_strings_spark_holds_as_bytes_that_are_not_utf8_come_back_readable(alice: Client) -> None:
    # Spark's strings are bytes: invalid UTF-8 answered every reader with internal_error.
    sql = "SELECT cast(unhex('FF41') AS STRING) AS s, cast(unhex('EDA080') AS STRING) AS t"
    reply = await call(alice, "run_sql", sql=sql)
    assert reply["rows"] == [["\ufffdA", "\ufffd\ufffd\ufffd"]]
    page = await call(alice, "fetch_rows", result_id=reply["result_id"], format="csv")
    assert page["text"].splitlines()[1] == '"\ufffdA","\ufffd\ufffd\ufffd"'
    whole = json.loads((await alice.read_resource(f"spark://results/{reply['result_id']}")).contents[0].text)
    assert whole["rows"] == reply["rows"]


async def test_a_lone_surrogate_in_an_argument_is_answered_and_audited(alice: Client, app: App) -> None:
    # Python's JSON decoder accepts "\ud800" (spark-mcp call, the in-memory transport): the
    # record could not be hashed, so the call ran unaudited and answered "Internal server error".
    audit = AuditCursor(app.config.audit_path, "alice")
    for tool, arguments in (("describe_table", {"table": "tpch.\ud800"}), ("close_session", {"session_id": "\ud800"})):
        result = await alice.call_tool(tool, arguments)
        assert actionable_error(tool, result).startswith(("invalid_input:", "session_not_found:"))
        records = audit.new()
        assert [r["tool"] for r in records] == [tool]
    assert verify(app.config.audit_path).ok


async def test_a_driver_token_in_a_spark_error_reaches_no_log(
    root: Client, app: App, capfd: pytest.CaptureFixture[str]
) -> None:
    # pyspark logged every Spark error itself, through a handler of its own that skipped redaction.
    sql = "SELECT cast(java_method('java.lang.System', 'getenv', 'SPARK_CONNECT_AUTHENTICATE_TOKEN') AS INT)"
    said = await call_error(root, "run_sql", sql=sql)
    assert said.startswith("CAST_INVALID_INPUT:") and "[REDACTED]" in said
    driver = app.drivers.current("root")
    assert driver is not None
    out, err = capfd.readouterr()
    assert driver.token not in out + err
