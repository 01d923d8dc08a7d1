"""Ask a Sail driver what a statement or DataFrame touches, without running it.

The same steps as ``analyze`` takes on Spark, with Sail's own pieces: the lexical gate,
then Sail's pre-analysis gate (``sail_gate``: path reads and ``IDENTIFIER``), then
``EXPLAIN EXTENDED`` (or the AnalyzePlan RPC for a DataFrame), read by
``datafusion_plan``. Sail prints bare table names as written, so the session's current
catalog and namespace are read first to qualify them.

The functions return the fields of ``analyze.Analysis`` as a tuple, so that ``analyze``
keeps one line per engine and this module does not import it back.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from spark_mcp.config import DatasetConfig
from spark_mcp.errors import SparkError
from spark_mcp.spark.bootstrap import quote_ident, quote_string
from spark_mcp.spark.connect import ConnectSession
from spark_mcp.spark.datafusion_plan import SailContext, analyzed_plan, inspect_sail_explain
from spark_mcp.spark.errors import translate
from spark_mcp.spark.sail_gate import check_plan, check_sql
from spark_mcp.spark.sqltext import gate
from spark_mcp.statement import Danger, DangerKind, StatementFacts, StatementKind

# statement, facts, analyzed plan, Spark's error: the fields of ``analyze.Analysis``.
AnalysisFields = tuple[str, StatementFacts, str | None, SparkError | None]


def _refused(statement: str, dangers: tuple[Danger, ...]) -> AnalysisFields:
    return statement, StatementFacts(kind=StatementKind.ADMIN, operation="(not analysed)", dangers=dangers), None, None


def _unanalysable(statement: str, error: SparkError) -> AnalysisFields:
    facts = StatementFacts(
        kind=StatementKind.UNKNOWN,
        operation="(unanalysable)",
        dangers=(Danger(DangerKind.UNANALYSABLE, f"{error.error_class}: {error.message}"),),
        notes=(f"{error.error_class}: {error.message}",),
    )
    return statement, facts, None, error


def context(session: ConnectSession, *, local_relations: int = 0) -> SailContext:
    """The session's current catalog and namespace (bare names in Sail's plans are relative to them)."""
    row = session.spark.sql("SELECT current_catalog(), current_database()").collect()[0]
    return SailContext(catalog=str(row[0]), namespace=str(row[1]), local_relations=local_relations)


def analyze_sql(session: ConnectSession, sql: str, *, tag: str) -> AnalysisFields:
    """Gate, Sail's gate, then EXPLAIN EXTENDED under ``tag`` (so a deadline can interrupt it)."""
    gated = gate(sql)
    if gated.dangers:
        return _refused(gated.sql, gated.dangers)
    sail_dangers = check_sql(gated.sql)
    if sail_dangers:
        return _refused(gated.sql, sail_dangers)
    spark = session.spark
    spark.addTag(tag)
    try:
        where = context(session)
        text = str(spark.sql(f"EXPLAIN EXTENDED {gated.sql}").collect()[0][0])
    except Exception as exc:
        error = translate(exc)
        if isinstance(error, SparkError):
            return _unanalysable(gated.sql, error)
        raise error from None
    finally:
        spark.removeTag(tag)
    return gated.sql, inspect_sail_explain(text, where), analyzed_plan(text), None


def analyze_frame(session: ConnectSession, frame: Any, statement: str) -> AnalysisFields:
    """The same facts for a DataFrame built from a structured plan (``statement``: the plan's JSON)."""
    dangers, result_sources = check_plan(statement)
    if dangers:
        return _refused(statement, dangers)
    try:
        where = context(session, local_relations=result_sources)
        text = str(frame._explain_string(extended=True))
    except Exception as exc:
        error = translate(exc)
        if isinstance(error, SparkError):
            return _unanalysable(statement, error)
        raise error from None
    return statement, inspect_sail_explain(text, where), analyzed_plan(text), None


def session_setup(datasets: Sequence[DatasetConfig]) -> tuple[str, ...]:
    """The DDL that registers the datasets in a new Sail session (its catalog is per session):
    each namespace once, then the tables (``run_session_setup`` runs the tables at once).

    Sail reads a table's files from ``LOCATION``; a ``path`` option alone gives a table
    without columns.
    """
    namespaces = [f"CREATE NAMESPACE IF NOT EXISTS {quote_ident(d.name.split('.', 1)[0])}" for d in datasets]
    tables: list[str] = []
    for dataset in datasets:
        namespace, table = dataset.name.split(".", 1)
        options = ", ".join(f"{quote_ident(k)} {quote_string(v)}" for k, v in dataset.options.items())
        comment = f" COMMENT {quote_string(dataset.comment)}" if dataset.comment else ""
        tables.append(
            f"CREATE TABLE IF NOT EXISTS {quote_ident(namespace)}.{quote_ident(table)} USING {dataset.format}"
            + (f" OPTIONS ({options})" if options else "")
            + f" LOCATION {quote_string(dataset.path)}{comment}"
        )
    return (*dict.fromkeys(namespaces), *tables)
