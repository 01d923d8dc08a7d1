"""Column summaries: nulls, distinct values, extremes, mean and top values, as a text table."""

from __future__ import annotations

import json
import math
from contextlib import suppress
from dataclasses import dataclass
from typing import TYPE_CHECKING

from spark_mcp.preview.cells import bare_or_quoted, elide, plural, quote
from spark_mcp.preview.schema import is_string, spark_type
from spark_mcp.preview.values import JSONValue, json_array

if TYPE_CHECKING:
    # pyarrow (with numpy) is imported where it is used, not with this module: it loads with
    # pyspark, on the thread that prepares the first driver, not on the server's start-up path (issue 12).
    import pyarrow as pa

_DISTINCT_MAX_ROWS = 100_000
_LOW_CARDINALITY = 20  # at or below this many distinct values, any scalar column gets top values
_TOP_VALUES = 5
_SUMMARY_CELL_CHARS = 60


@dataclass(frozen=True)
class ColumnSummary:
    name: str
    type: str
    null_count: int
    distinct_count: int | None
    min: JSONValue
    max: JSONValue
    mean: float | None
    top_values: list[tuple[JSONValue, int]]


def _is_orderable(t: pa.DataType) -> bool:
    import pyarrow as pa

    return bool(
        pa.types.is_integer(t)
        or pa.types.is_floating(t)
        or pa.types.is_decimal(t)
        or is_string(t)
        or pa.types.is_boolean(t)
        or pa.types.is_temporal(t)
    ) and not pa.types.is_interval(t)


def _summarize_column(field: pa.Field, col: pa.ChunkedArray) -> ColumnSummary:
    import pyarrow as pa
    import pyarrow.compute as pc

    t = field.type.value_type if pa.types.is_dictionary(field.type) else field.type
    data = col.cast(t)
    rows, nulls = len(col), col.null_count
    name, type_name = field.name, spark_type(field)
    if not _is_orderable(t):  # nested, binary, null: counting nulls is all that is meaningful
        return ColumnSummary(name, type_name, nulls, 0 if pa.types.is_null(t) else None, None, None, None, [])

    distinct = None
    low: JSONValue = None
    high: JSONValue = None
    # Some kernels are missing for some types (min_max on durations, say): a summary then says less.
    with suppress(pa.ArrowNotImplementedError):
        if rows <= _DISTINCT_MAX_ROWS:
            distinct = pc.count_distinct(data, mode="only_valid").as_py()
        extremes = pc.min_max(data)
        low, high = json_array(pa.array([extremes["min"], extremes["max"]], type=t))
    mean = None
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t):
        # Arrow's decimal mean rounds to the column's scale; a float mean is what a reader wants.
        numbers = data.cast(pa.float64(), safe=False) if pa.types.is_decimal(t) else data
        value = pc.mean(numbers).as_py()
        mean = float(value) if value is not None and math.isfinite(value) else None
    top: list[tuple[JSONValue, int]] = []
    if is_string(t) or pa.types.is_boolean(t) or (distinct is not None and distinct <= _LOW_CARDINALITY):
        counts = pc.value_counts(data)
        counts = counts.filter(pc.is_valid(counts.field("values")))
        best = counts.take(pc.array_sort_indices(counts.field("counts"), order="descending")[:_TOP_VALUES])
        top = list(zip(json_array(best.field("values")), best.field("counts").to_pylist(), strict=True))
    return ColumnSummary(name, type_name, nulls, distinct, low, high, mean, top)


def summarize(table: pa.Table) -> list[ColumnSummary]:
    return [_summarize_column(f, c) for f, c in zip(table.schema, table.columns, strict=True)]


def _summary_value(v: JSONValue, type_name: str) -> str:
    # Only the type tells the string "1.00" from the decimal 1.00, so strings are quoted here.
    if v is None:
        return "-"
    if isinstance(v, str):
        return quote(v) if type_name.startswith(("string", "varchar", "char")) else bare_or_quoted(v)
    if isinstance(v, bool):
        return "true" if v else "false"
    return json.dumps(v, ensure_ascii=False)


def render_summary(summaries: list[ColumnSummary], *, row_count: int, max_chars: int) -> str:
    lines = ["column | type | nulls | distinct | min | max | mean | top values"]
    for s in summaries:
        # Counts of 1 tell a reader nothing (every value unique), so they are left out.
        top = ", ".join(f"{_summary_value(v, s.type)} ×{n}" for v, n in s.top_values if n > 1)
        cells = [
            bare_or_quoted(s.name),
            s.type,
            str(s.null_count),
            "-" if s.distinct_count is None else str(s.distinct_count),
            _summary_value(s.min, s.type),
            _summary_value(s.max, s.type),
            "-" if s.mean is None else f"{s.mean:.6g}",
            top or "-",
        ]
        lines.append(" | ".join(elide(c, _SUMMARY_CELL_CHARS) for c in cells))

    def status(shown: int) -> str:
        hidden = len(summaries) - shown
        more = f"; +{hidden} more: character budget reached" if hidden else ""
        return f"({plural(row_count, 'row')}, {plural(len(summaries), 'column')}{more})"

    used, shown = len(lines[0]), 0
    for line in lines[1:]:
        if used + 1 + len(line) > max_chars:
            break
        used, shown = used + 1 + len(line), shown + 1
    while shown and used + 1 + len(status(shown)) > max_chars:  # then make room for the status
        used, shown = used - 1 - len(lines[shown]), shown - 1
    text = "\n".join([*lines[: shown + 1], status(shown)])
    return text if len(text) <= max_chars else status(0)[: max(max_chars, 0)]
