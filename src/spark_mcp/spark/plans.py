"""Build a Spark Connect DataFrame from a structured plan (``spark_mcp.plans``).

Building only composes an unresolved plan on the client: nothing runs, and the caller
analyses the result before executing it. The one exception is a ``sql`` source, because
``spark.sql()`` runs commands at once: it is analysed first and must be a plain query.
Every operation is recorded with its path, so when Spark rejects the plan the failing
operation can be named (``operations[3] (join) > right > operations[0] (filter)``).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from spark_mcp.errors import PlanError, SparkError, SparkMcpError
from spark_mcp.plans import (
    Agg,
    Distinct,
    Drop,
    Filter,
    GroupBy,
    Join,
    Limit,
    Operation,
    OrderBy,
    Pivot,
    Plan,
    RangeSource,
    Rename,
    ResultSource,
    Sample,
    Select,
    SortKey,
    SqlSource,
    TableSource,
    Union,
    Window,
    WithColumn,
)
from spark_mcp.spark.analyze import analyze_sql
from spark_mcp.spark.catalog import parse_name, quote_name
from spark_mcp.spark.connect import ConnectSession
from spark_mcp.spark.errors import translate
from spark_mcp.statement import StatementKind

if TYPE_CHECKING:
    import pyarrow as pa

    # Annotations use the abstract DataFrame and Column, which pyspark's Connect API returns.
    # pyspark is imported where it is used, not with this module: it loads (with pandas and
    # numpy) off the server's start-up path, while the first driver boots (issue 12).
    from pyspark.sql import Column, DataFrame

    LoadResult = Callable[[str], pa.Table]

# The Connect functions and Window are imported inside the functions that use them, as
# ``pyspark.sql.connect``, explicitly: pyspark.sql.functions would pick the classic (JVM)
# implementation in a process that is not in pyspark's global "remote mode".

MAX_RESULT_SOURCE_ROWS = 100_000
_DIRECTION = re.compile(r"^(?P<expr>.+?)\s+(?P<dir>asc|desc)(?:\s+nulls\s+(?P<nulls>first|last))?\s*$", re.I | re.S)


@dataclass
class BuiltPlan:
    frame: DataFrame
    steps: list[tuple[str, DataFrame]] = field(default_factory=list)  # in build order, nested first


def build(session: ConnectSession, plan: Plan, *, load_result: LoadResult, tag: str) -> BuiltPlan:
    built = BuiltPlan(frame=None)  # type: ignore[arg-type]
    built.frame = _build(session, plan, "plan", built, load_result, tag)
    return built


def _build(session: ConnectSession, plan: Plan, path: str, built: BuiltPlan, load: LoadResult, tag: str) -> DataFrame:
    where = f"{path}.source"
    try:
        frame = _source(session, plan.source, where, load, tag)
    except SparkMcpError as exc:
        raise _located(where, exc) from None
    built.steps.append((where, frame))
    for index, operation in enumerate(plan.operations):
        where = f"{path}.operations[{index}] ({operation.op})"
        try:
            frame = _apply(session, frame, operation, where, built, load, tag)
        except PlanError:
            raise
        except Exception as exc:
            raise _located(where, translate(exc)) from None
        built.steps.append((where, frame))
    return frame


def _located(where: str, error: SparkMcpError) -> PlanError:
    if isinstance(error, PlanError):
        return error
    if isinstance(error, SparkError):
        return PlanError(where, error.message, error_class=error.error_class)
    return PlanError(where, error.message, error_class=error.code)


def _source(session: ConnectSession, source: Any, where: str, load: LoadResult, tag: str) -> DataFrame:
    spark = session.spark
    if isinstance(source, TableSource):
        return spark.table(quote_name(parse_name(source.table)))
    if isinstance(source, RangeSource):
        return spark.range(source.range.start, source.range.end, source.range.step)
    if isinstance(source, ResultSource):
        table = load(source.result_id)
        if table.num_rows > MAX_RESULT_SOURCE_ROWS:
            raise PlanError(
                where,
                f"result {source.result_id} has {table.num_rows:,} rows; a result source may have at most "
                f"{MAX_RESULT_SOURCE_ROWS:,}. Save the step as a temp view (save_as) and use a table source instead.",
            )
        return spark.createDataFrame(table.replace_schema_metadata(None))
    if isinstance(source, SqlSource):
        # spark.sql() runs commands the moment it is called: only a plain query may pass.
        analysis = analyze_sql(session, source.sql, tag=tag)
        if analysis.error is not None:
            raise analysis.error
        facts = analysis.facts
        if facts.kind is not StatementKind.QUERY or facts.dangers:
            what = ", ".join(d.kind.value for d in facts.dangers) or facts.kind.value
            raise PlanError(where, f"a sql source must be a plain query (this one is {what}); use run_sql for it")
        return spark.sql(analysis.statement)
    raise PlanError(where, f"unknown source {source!r}")


def _apply(
    session: ConnectSession,
    frame: DataFrame,
    op: Operation,
    where: str,
    built: BuiltPlan,
    load: LoadResult,
    tag: str,
) -> DataFrame:
    from pyspark.sql.connect import functions as F
    from pyspark.sql.connect.window import Window as SparkWindow

    if isinstance(op, Select):
        return frame.selectExpr(*op.columns)
    if isinstance(op, Filter):
        return frame.filter(F.expr(op.condition))
    if isinstance(op, WithColumn):
        return frame.withColumn(op.name, F.expr(op.expr))
    if isinstance(op, Drop):
        return frame.drop(*op.columns)
    if isinstance(op, Rename):
        return frame.withColumnsRenamed(dict(op.mapping))
    if isinstance(op, GroupBy):
        return frame.groupBy(*[F.expr(c) for c in op.columns]).agg(*[_agg(a) for a in op.aggs])
    if isinstance(op, OrderBy):
        return frame.orderBy(*[_sort_key(k) for k in op.keys])
    if isinstance(op, Limit):
        return frame.limit(op.n)
    if isinstance(op, Distinct):
        return frame.dropDuplicates(op.columns) if op.columns else frame.distinct()
    if isinstance(op, Sample):
        return frame.sample(withReplacement=op.with_replacement, fraction=op.fraction, seed=op.seed)
    if isinstance(op, Window):
        spec = SparkWindow.partitionBy(*[F.expr(c) for c in op.partition_by])
        if op.order_by:
            spec = spec.orderBy(*[_sort_key(k) for k in op.order_by])
        if op.rows_between is not None:
            low, high = op.rows_between
            spec = spec.rowsBetween(
                SparkWindow.unboundedPreceding if low is None else low,
                SparkWindow.unboundedFollowing if high is None else high,
            )
        return frame.withColumn(op.name, F.expr(op.function).over(spec))
    if isinstance(op, Pivot):
        grouped = frame.groupBy(*[F.expr(c) for c in op.group_by])
        pivoted = grouped.pivot(op.pivot_column, op.values) if op.values is not None else grouped.pivot(op.pivot_column)
        return pivoted.agg(*[_agg(a) for a in op.aggs])
    if isinstance(op, Join):
        right = _build(session, op.right, f"{where} > right", built, load, tag)
        left = frame.alias(op.left_alias) if op.left_alias else frame
        right = right.alias(op.right_alias) if op.right_alias else right
        if op.how == "cross":
            joined = left.crossJoin(right)
            return joined.filter(F.expr(op.condition)) if op.condition else joined
        on: Any = list(op.on) if op.on is not None else F.expr(op.condition or "true")
        return left.join(right, on=on, how=op.how)
    if isinstance(op, Union):
        other = _build(session, op.other, f"{where} > other", built, load, tag)
        combined = frame.unionByName(other) if op.by_name else frame.union(other)
        return combined.distinct() if op.distinct else combined
    raise PlanError(where, f"unknown operation {op!r}")


@functools.cache
def _aggregates() -> dict[str, Callable[[Column], Column]]:
    from pyspark.sql.connect import functions as F

    return {
        "sum": F.sum,
        "avg": F.avg,
        "min": F.min,
        "max": F.max,
        "count_distinct": F.count_distinct,
        "approx_count_distinct": F.approx_count_distinct,
        "stddev": F.stddev,
        "variance": F.variance,
        "first": F.first,
        "last": F.last,
        "collect_list": F.collect_list,
        "collect_set": F.collect_set,
    }


def _agg(agg: Agg) -> Column:
    from pyspark.sql.connect import functions as F

    if agg.expr is not None:
        column = F.expr(agg.expr)
    else:
        assert agg.fn is not None and agg.column is not None
        source = F.lit(1) if agg.column.strip() == "*" else F.expr(agg.column)
        if agg.fn == "count":
            column = F.count(source)
        elif agg.fn == "approx_percentile":
            column = F.percentile_approx(source, agg.percentile or 0.5)
        else:
            column = _aggregates()[agg.fn](source)
    return column.alias(agg.alias) if agg.alias else column


def _sort_key(key: SortKey | str) -> Column:
    from pyspark.sql.connect import functions as F

    if isinstance(key, str):
        match = _DIRECTION.match(key)
        if match is None:
            return F.expr(key).asc()
        key = SortKey(
            column=match["expr"],
            descending=match["dir"].lower() == "desc",
            nulls=match["nulls"].lower() if match["nulls"] else None,  # type: ignore[arg-type]
        )
    column = F.expr(key.column)
    if key.descending:
        return column.desc_nulls_first() if key.nulls == "first" else column.desc_nulls_last()
    return column.asc_nulls_last() if key.nulls == "last" else column.asc_nulls_first()


def locate_failure(built: BuiltPlan) -> PlanError | None:
    """The first step Spark cannot analyse, named by its path (one AnalyzePlan call per step)."""
    for where, frame in built.steps:
        try:
            _ = frame.schema
        except Exception as exc:
            return _located(where, translate(exc))
    return None
