"""Ask Spark what a statement or DataFrame touches, without running it.

SQL text first passes the lexical gate (some statements act while being analysed, so
they must never reach Spark); then the AnalyzePlan RPC explains it as a relation, in
``EXPLAIN EXTENDED``'s format, which ``inspect`` turns into ``StatementFacts`` (the
``EXPLAIN EXTENDED`` command itself is asked only when analysis fails: it prints the plan
Spark got as far as). A DataFrame is explained through the same RPC.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from spark_mcp.errors import SparkError
from spark_mcp.spark import sail
from spark_mcp.spark.connect import ConnectSession
from spark_mcp.spark.errors import translate
from spark_mcp.spark.inspect import analysis_error, analyzed_section, inspect_explain
from spark_mcp.spark.runner import command_result, query_frame
from spark_mcp.spark.sqltext import gate
from spark_mcp.statement import Danger, DangerKind, StatementFacts, StatementKind

if TYPE_CHECKING:
    # pyarrow (with numpy) is imported where it is used, not with this module: it loads with
    # pyspark, on the thread that prepares the first driver, not on the server's start-up path (issue 12).
    pass

ExplainMode = Literal["simple", "extended", "cost", "formatted"]


@dataclass(frozen=True)
class Analysis:
    statement: str  # what will run: the gated SQL text, or the plan as JSON
    facts: StatementFacts
    plan: str | None  # the analyzed logical plan, when Spark produced one
    error: SparkError | None  # Spark could not parse or analyse the statement


def unanalysable(statement: str, error: SparkError) -> Analysis:
    """The analysis of a statement Spark refused to analyse (its error is the only fact)."""
    facts = StatementFacts(
        kind=StatementKind.UNKNOWN,
        operation="(unanalysable)",
        dangers=(Danger(DangerKind.UNANALYSABLE, f"{error.error_class}: {error.message}"),),
        notes=(f"{error.error_class}: {error.message}",),
    )
    return Analysis(statement, facts, None, error)


def _from_explain(statement: str, text: str, session: ConnectSession) -> Analysis:
    return from_explain_text(statement, text, builtin_functions=session.driver.builtin_functions)


def from_explain_text(statement: str, text: str, *, builtin_functions: frozenset[str]) -> Analysis:
    """The analysis an ``EXPLAIN EXTENDED`` text (of SQL or of a plan) describes."""
    facts = inspect_explain(text, builtin_functions=builtin_functions)
    failure = analysis_error(text)
    error = SparkError(failure[1], error_class=failure[0]) if failure else None
    return Analysis(statement, facts, analyzed_section(text), error)


def analyze_sql(session: ConnectSession, sql: str, *, tag: str) -> Analysis:
    """Gate, then EXPLAIN EXTENDED under ``tag`` (so a deadline can interrupt it)."""
    if session.driver.engine == "sail":  # DataFusion's plan text: Sail's own gate and reader
        return Analysis(*sail.analyze_sql(session, sql, tag=tag))
    gated = gate(sql)
    if gated.dangers:
        facts = StatementFacts(kind=StatementKind.ADMIN, operation="(not analysed)", dangers=gated.dangers)
        return Analysis(gated.sql, facts, None, None)
    try:
        text = _analyze_relation(session, gated.sql)
    except SparkError:
        # Spark could not analyse it. EXPLAIN still prints the plan it got as far as (the
        # tables it names), which governance needs before it may show Spark's message.
        try:
            text = _explain(session, f"EXPLAIN EXTENDED {gated.sql}", tag=tag)
        except SparkError as error:
            return unanalysable(gated.sql, error)
    return _from_explain(gated.sql, text, session)


def _analyze_relation(session: ConnectSession, sql: str) -> str:
    """The ``EXPLAIN EXTENDED`` text of ``sql`` as a relation, through the AnalyzePlan RPC.

    Measured on one driver: 14 ms against 67 ms for the EXPLAIN command, which Spark runs as
    a job and answers with a table. Nothing runs either way: a command in a relation is
    planned, not executed (the gateway analyses clients' SQL relations the same way), and
    what acts while merely analysed (EXECUTE IMMEDIATE, a time-travel subquery) never passes
    the gate. Spark's analysis error is raised here, where EXPLAIN would print it.
    """
    return explain_frame_text(query_frame(session, sql), "extended")


def _explain(session: ConnectSession, command: str, *, tag: str) -> str:
    """The text an ``EXPLAIN`` command prints, in one round trip (its row comes back inline)."""
    import pyarrow as pa

    spark = session.spark
    spark.addTag(tag)
    try:
        result = command_result(session, command)
        table = result if isinstance(result, pa.Table) else result.toArrow()
        return str(table.column(0)[0].as_py())
    except Exception as exc:
        raise translate(exc) from None
    finally:
        spark.removeTag(tag)


def explain_sql_text(session: ConnectSession, sql: str, mode: ExplainMode, *, tag: str) -> str:
    """Spark's plan text in ``mode``; only for statements that already passed the gate."""
    keyword = {"simple": "", "extended": "EXTENDED ", "cost": "COST ", "formatted": "FORMATTED "}[mode]
    return _explain(session, f"EXPLAIN {keyword}{sql}", tag=tag)


def analyze_frame(session: ConnectSession, frame: Any, statement: str) -> Analysis:
    """The same facts for a DataFrame built from a structured plan (nothing runs).

    Explained as ``frame.limit(0)``, as the gateway explains a client's DataFrame
    (``wire.requests.nothing_of``): Spark analyses the plan exactly as it is (the analyzed
    plan, which inspection reads, is the same tree under two limit lines) and then optimizes
    a limit of nothing into an empty relation, skipping the optimization and planning of the
    rest. When that fails, the frame itself is explained, so the error is Spark's own about
    the plan, not about the limit."""
    if session.driver.engine == "sail":
        return Analysis(*sail.analyze_frame(session, frame, statement))
    failure: SparkError | None = None
    for explained in (frame.limit(0), frame):
        try:
            text = str(explained._explain_string(extended=True))
        except Exception as exc:
            error = translate(exc)
            if not isinstance(error, SparkError):
                raise error from None
            failure = error
            continue
        return _from_explain(statement, text, session)
    assert failure is not None
    return unanalysable(statement, failure)


def explain_frame_text(frame: Any, mode: ExplainMode) -> str:
    try:
        return str(frame._explain_string(mode=mode))
    except Exception as exc:
        raise translate(exc) from None


_STATISTICS = re.compile(r"Statistics\(sizeInBytes=([0-9.E+]+)\s*([KMGTPE]i)?B(?:,\s*rowCount=([0-9.E+]+))?")
_UNITS = {None: 1, "Ki": 1024, "Mi": 1024**2, "Gi": 1024**3, "Ti": 1024**4, "Pi": 1024**5, "Ei": 1024**6}


def cost_estimates(explain_text: str) -> tuple[float | None, int | None]:
    """Spark's size and row estimates for the whole plan, from ``EXPLAIN COST`` text.

    The first ``Statistics(...)`` of the optimized plan belongs to its root node.
    """
    optimized = explain_text.split("== Optimized Logical Plan ==", 1)[-1]
    match = _STATISTICS.search(optimized)
    if match is None:
        return None, None
    size = float(match.group(1)) * _UNITS[match.group(2)]
    rows = int(float(match.group(3))) if match.group(3) else None
    return size, rows
