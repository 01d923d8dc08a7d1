"""Query results as exact JSON values and as a compact text table within a character budget.

Pure: standard library plus pyarrow. ``to_json_rows`` feeds MCP structured content and must be
lossless; ``render_table`` feeds the model's context window and must be cheap and unambiguous:
NULL is never confused with the string "NULL", a cell never spans lines, and anything shortened
or dropped says so in a status line. ``len(text) <= max_chars`` holds for every input.
"""

from __future__ import annotations

import base64
import json
import math
import re
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, replace
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

JSONValue = None | bool | int | float | str | list["JSONValue"] | dict[str, "JSONValue"]

# Values are typed Any between Arrow and JSON because pyarrow is untyped; every public function
# returns JSONValue.
_Render = Callable[[Any], str]

_DISTINCT_MAX_ROWS = 100_000
_LOW_CARDINALITY = 20  # at or below this many distinct values, any scalar column gets top values
_TOP_VALUES = 5
_SUMMARY_CELL_CHARS = 60


@dataclass(frozen=True)
class ColumnInfo:
    name: str
    type: str  # Spark SQL type string


@dataclass(frozen=True)
class RenderedTable:
    text: str
    rows_shown: int
    elided_cells: int
    budget_hit: bool


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


# --- Spark type names -------------------------------------------------------------------------

_SIMPLE_SPARK_TYPES = {
    pa.int8(): "tinyint", pa.int16(): "smallint", pa.int32(): "int", pa.int64(): "bigint",
    pa.float32(): "float", pa.float64(): "double", pa.bool_(): "boolean", pa.null(): "void",
    pa.date32(): "date", pa.date64(): "date",
}  # fmt: skip


# Type families Spark never tells apart: list views, large and fixed-size variants are all arrays.
_LIST_TYPES = (pa.ListType, pa.LargeListType, pa.FixedSizeListType, pa.ListViewType, pa.LargeListViewType)
_STRING_TYPES = (pa.string(), pa.large_string(), pa.string_view())
_BINARY_TYPES = (pa.binary(), pa.large_binary(), pa.binary_view())


def _is_list(t: pa.DataType) -> bool:
    return isinstance(t, _LIST_TYPES)


def _is_string(t: pa.DataType) -> bool:
    return t in _STRING_TYPES


def _is_binary(t: pa.DataType) -> bool:
    return t in _BINARY_TYPES or pa.types.is_fixed_size_binary(t)


def _spark_type(field: pa.Field) -> str:
    if field.metadata and b"spark_type" in field.metadata:
        return str(field.metadata[b"spark_type"].decode())
    t = field.type
    if t in _SIMPLE_SPARK_TYPES:
        return _SIMPLE_SPARK_TYPES[t]
    if _is_string(t) or _is_binary(t):
        return "string" if _is_string(t) else "binary"
    if pa.types.is_timestamp(t):
        return "timestamp" if t.tz else "timestamp_ntz"
    if pa.types.is_decimal(t):
        return f"decimal({t.precision},{t.scale})"
    if pa.types.is_map(t):
        return f"map<{_spark_type(t.key_field)},{_spark_type(t.item_field)}>"
    if _is_list(t):
        return f"array<{_spark_type(t.value_field)}>"
    if pa.types.is_struct(t):
        return "struct<" + ",".join(f"{f.name}:{_spark_type(f)}" for f in t) + ">"
    return str(t)


def column_infos(schema: pa.Schema) -> list[ColumnInfo]:
    return [ColumnInfo(name=f.name, type=_spark_type(f)) for f in schema]


# --- exact JSON values ------------------------------------------------------------------------


def _float_json(v: float | None) -> JSONValue:
    if v is None or math.isfinite(v):
        return v
    return "NaN" if math.isnan(v) else ("Infinity" if v > 0 else "-Infinity")


def _fraction(frac: int, digits: int) -> str:
    return f".{frac:0{digits}d}".rstrip("0") if frac else ""


def _seconds(total: int, digits: int) -> str:
    sign, total = ("-", -total) if total < 0 else ("", total)
    whole, frac = divmod(total, 10**digits)
    return f"{sign}{whole}{_fraction(frac, digits)}"


def _iso_duration(v: int, digits: int) -> str:
    sign, v = ("-", -v) if v < 0 else ("", v)
    secs, frac = divmod(v, 10**digits)
    days, secs = divmod(secs, 86_400)
    hours, secs = divmod(secs, 3_600)
    minutes, secs = divmod(secs, 60)
    clock = "".join(f"{n}{u}" for n, u in ((hours, "H"), (minutes, "M")) if n)
    if secs or frac:
        clock += _seconds(secs * 10**digits + frac, digits) + "S"
    date = f"{days}D" if days else ""
    if not clock and not date:
        return "PT0S"
    return f"{sign}P{date}" + (f"T{clock}" if clock else "")


def _time_of_day(v: int, digits: int) -> str:
    secs, frac = divmod(v, 10**digits)
    return f"{secs // 3600:02d}:{secs // 60 % 60:02d}:{secs % 60:02d}{_fraction(frac, digits)}"


_UNIT_DIGITS = {"s": 0, "ms": 3, "us": 6, "ns": 9}


def _json_array(arr: pa.Array) -> list[JSONValue]:
    """Column-wise conversion: one pass per Arrow type, so nested data costs no per-cell Arrow calls."""
    t = arr.type
    if pa.types.is_dictionary(t):
        return _json_array(arr.dictionary_decode())
    if isinstance(t, pa.BaseExtensionType):
        return _json_array(arr.storage)
    if pa.types.is_null(t):
        return [None] * len(arr)
    if pa.types.is_floating(t):
        # Arrow's float-to-string cast is shortest round-trip for the source width, so float32 0.1
        # becomes 0.1 rather than 0.10000000149011612.
        if pa.types.is_float64(t):
            return [_float_json(v) for v in arr.to_pylist()]
        return [None if s is None else _float_json(float(s)) for s in arr.cast(pa.string()).to_pylist()]
    if pa.types.is_decimal(t):
        return [None if v is None else format(v, "f") for v in arr.to_pylist()]
    if pa.types.is_time(t) or pa.types.is_duration(t):
        fmt = _time_of_day if pa.types.is_time(t) else _iso_duration
        digits = _UNIT_DIGITS[t.unit]
        return [None if v is None else fmt(v, digits) for v in arr.cast(pa.int64()).to_pylist()]
    if pa.types.is_timestamp(t) or pa.types.is_date(t):
        try:
            return [None if v is None else v.isoformat() for v in arr.to_pylist()]
        except (ValueError, OverflowError):  # beyond Python's datetime range: Arrow still prints it
            return list(arr.cast(pa.string()).to_pylist())
    if pa.types.is_interval(t):
        return [None if v is None else f"P{v.months}M{v.days}DT{_seconds(v.nanoseconds, 9)}S" for v in arr.to_pylist()]
    if _is_binary(t):
        return [None if v is None else {"base64": base64.b64encode(v).decode()} for v in arr.to_pylist()]
    if pa.types.is_map(t):
        entries = arr.cast(pa.list_(pa.struct([t.key_field, t.item_field])))
        keys, values = (_json_array(a) for a in entries.flatten().flatten())
        pairs: list[JSONValue] = [{"key": k, "value": v} for k, v in zip(keys, values, strict=True)]
        return _regroup(pairs, entries)
    if _is_list(t):
        return _regroup(_json_array(arr.flatten()), arr)
    if pa.types.is_struct(t):
        names = _unique_names([f.name for f in t])
        children = [_json_array(c) for c in arr.flatten()]  # flatten() applies the struct's nulls
        valid = arr.is_valid().to_pylist()
        return [dict(zip(names, vals, strict=True)) if ok else None for ok, *vals in zip(valid, *children, strict=True)]
    if pa.types.is_integer(t) or pa.types.is_boolean(t) or _is_string(t):
        return list(arr.to_pylist())
    return [None if v is None else str(v) for v in arr.to_pylist()]  # views, unions, ...: readable at least


def _regroup(flat: list[JSONValue], lists: pa.Array) -> list[JSONValue]:
    out: list[JSONValue] = []
    pos = 0
    for n in pc.list_value_length(lists).to_pylist():
        out.append(None if n is None else flat[pos : pos + n])
        pos += n or 0
    return out


def _unique_names(names: list[str]) -> list[str]:
    # A JSON object cannot hold a struct's duplicate field names; keep every value, renamed visibly.
    seen: dict[str, int] = {}
    out = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name} ({seen[name]})")
    return out


def _json_columns(table: pa.Table) -> list[list[JSONValue]]:
    return [[v for chunk in col.chunks for v in _json_array(chunk)] for col in table.columns]


def to_json_rows(table: pa.Table) -> list[list[JSONValue]]:
    if table.num_columns == 0:
        return [[] for _ in range(table.num_rows)]
    return [list(row) for row in zip(*_json_columns(table), strict=True)]


# --- text cells -------------------------------------------------------------------------------

# Characters that would break a line or a cell, or hide from a reader, if left bare.
_UNSAFE = re.compile(r"[|\x00-\x1f\x7f-\x9f\u2028\u2029]")
_UNSAFE_IN_NAME = re.compile(r"[|:,{}\[\]\x00-\x1f\x7f-\x9f\u2028\u2029]")
_JSON_LEFTOVERS = re.compile(r"[\x7f-\x9f\u2028\u2029]")  # json.dumps keeps these raw


def _quote(s: str) -> str:
    return _JSON_LEFTOVERS.sub(lambda m: f"\\u{ord(m.group()):04x}", json.dumps(s, ensure_ascii=False))


def _bare_or_quoted(s: str, unsafe: re.Pattern[str] = _UNSAFE) -> str:
    ambiguous = (
        s in ("", "NULL")
        or s[0].isspace()
        or s[-1].isspace()
        or s[0] == '"'
        or "…(+" in s  # would look like our elision marker
        or unsafe.search(s) is not None
    )
    return _quote(s) if ambiguous else s


def _hex(v: dict[str, str]) -> str:
    return "0x" + base64.b64decode(v["base64"]).hex()


def _renderer(t: pa.DataType, nested: bool) -> _Render:
    """Text for one JSON value of Arrow type ``t``; inside nested values strings are always quoted."""
    render = _renderer_not_null(t, nested)
    return lambda v: "NULL" if v is None else render(v)


def _renderer_not_null(t: pa.DataType, nested: bool) -> _Render:
    if pa.types.is_dictionary(t):
        return _renderer(t.value_type, nested)
    if isinstance(t, pa.BaseExtensionType):
        return _renderer(t.storage_type, nested)
    if _is_string(t):
        return _quote if nested else _bare_or_quoted
    if pa.types.is_boolean(t):
        return lambda v: "true" if v else "false"
    if pa.types.is_floating(t):
        return lambda v: v if isinstance(v, str) else repr(v)
    if _is_binary(t):
        return _hex
    if pa.types.is_map(t):
        key, value = _renderer(t.key_type, True), _renderer(t.item_type, True)
        return lambda v: "{" + ", ".join(f"{key(e['key'])} -> {value(e['value'])}" for e in v) + "}"
    if _is_list(t):
        item = _renderer(t.value_type, True)
        return lambda v: "[" + ", ".join(item(x) for x in v) + "]"
    if pa.types.is_struct(t):
        fields = [(_bare_or_quoted(f.name, _UNSAFE_IN_NAME), _renderer(f.type, True)) for f in t]
        return lambda v: "{" + ", ".join(f"{n}: {r(x)}" for (n, r), x in zip(fields, v.values(), strict=True)) + "}"
    # Numbers, and what to_json_rows already spelled as strings (decimals, dates, durations, ...).
    return lambda v: _bare_or_quoted(v) if isinstance(v, str) else json.dumps(v, ensure_ascii=False)


def _elide(s: str, limit: int) -> str:
    if len(s) <= limit:
        return s
    keep = max(limit - len(f"…(+{len(s)} chars)"), 0)
    if keep == 0:  # no room for the count: a bare ellipsis still shows the cut
        return s[: max(limit - 1, 0)] + "…"[:limit]
    return s[:keep] + f"…(+{len(s) - keep} chars)"


# --- the table --------------------------------------------------------------------------------


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _status(shown: int, total: int, *, first_row: int, more_rows: bool, elided: int, hidden: int) -> str:
    span = f"rows {first_row + 1}-{first_row + shown}" if shown else "no rows"
    if shown < total:
        whole = _plural(total, "row") if first_row == 0 else f"{first_row + 1}-{first_row + total}"
        parts = [f"showing {shown if first_row == 0 else span} of {whole}: character budget reached"]
    elif (first_row or more_rows) and total:
        parts = [span]
    else:
        parts = [_plural(total, "row")]
    if more_rows:
        parts.append("more rows exist")
    if elided:
        parts.append(f"{_plural(elided, 'cell')} shortened")
    if hidden:
        parts.append(f"+{_plural(hidden, 'more column')}")
    return "(" + "; ".join(parts) + ")"


def render_table(
    table: pa.Table,
    *,
    max_chars: int,
    max_cell_chars: int = 80,
    more_rows: bool = False,
    first_row: int = 0,
) -> RenderedTable:
    total = table.num_rows
    if table.num_columns == 0:
        text = _status(total, total, first_row=first_row, more_rows=more_rows, elided=0, hidden=0)
        return RenderedTable(text[: max(max_chars, 0)], total, 0, len(text) > max_chars)
    # Every line costs at least two characters, so rows past this point can never be shown:
    # they are not converted at all.
    head = table.slice(0, min(total, max(max_chars, 0) // 2 + 1))
    columns = _json_columns(head)
    renderers = [_renderer(f.type, nested=False) for f in table.schema]
    rendered: dict[tuple[int, int], str] = {}

    def cell(row: int, col: int) -> str:
        if (row, col) not in rendered:
            rendered[row, col] = renderers[col](columns[col][row])
        return rendered[row, col]

    layout = _Layout(
        names=[_bare_or_quoted(f.name) for f in table.schema],
        cell=cell,
        rows=head.num_rows,
        total=total,
        max_chars=max_chars,
        more_rows=more_rows,
        first_row=first_row,
    )
    # Cells are narrowed (80, 40, 20, ...) only when not even the header and one row fit:
    # one shortened row tells a reader more than none.
    widest = limit = max(max_cell_chars, 1)
    while True:
        result = layout.attempt(limit)
        if result is not None:
            return result if limit == widest else replace(result, budget_hit=True)
        if limit == 1:
            break
        limit //= 2
    # A budget too small for any header: the status alone, or failing that a short apology.
    text = _status(0, total, first_row=first_row, more_rows=more_rows, elided=0, hidden=table.num_columns)
    text = text if len(text) <= max_chars else "(character budget too small)"
    return RenderedTable(text[: max(max_chars, 0)], 0, 0, True)


@dataclass(frozen=True)
class _Layout:
    names: list[str]
    cell: Callable[[int, int], str]
    rows: int  # rows converted (the rest cannot fit)
    total: int  # rows in the table
    max_chars: int
    more_rows: bool
    first_row: int

    def _columns_shown(self, limit: int) -> int:
        # A wide table shows the columns whose header and first row fit in a quarter of the
        # budget, which leaves room for a few rows; the status line counts the hidden ones.
        shown, width = 0, 0
        for col, name in enumerate(self.names):
            first = len(_elide(self.cell(0, col), limit)) if self.rows else 0
            width += max(len(_elide(name, limit)), first) + 3
            if shown and width > self.max_chars // 4:
                break
            shown += 1
        return shown

    def attempt(self, limit: int) -> RenderedTable | None:
        """The table with cells cut at ``limit``; None if not even the header and a row fit."""
        cols = self._columns_shown(limit)
        lines = [" | ".join(_elide(n, limit) for n in self.names[:cols])]
        elided = [0]  # elided[i]: cells shortened within the first i rows
        used = len(lines[0])
        for row in range(self.rows):
            cells = [self.cell(row, col) for col in range(cols)]
            line = " | ".join(_elide(c, limit) for c in cells)
            if used + 1 + len(line) > self.max_chars:
                break
            lines.append(line)
            used += 1 + len(line)
            elided.append(elided[-1] + sum(len(c) > limit for c in cells))

        # The status line grows with the counts it reports, so step back rows until it fits too.
        hidden = len(self.names) - cols
        for shown in range(len(lines) - 1, -1, -1):
            status = _status(
                shown,
                self.total,
                first_row=self.first_row,
                more_rows=self.more_rows,
                elided=elided[shown],
                hidden=hidden,
            )
            text = "\n".join([*lines[: shown + 1], status])
            if len(text) <= self.max_chars and (shown or not self.rows):
                return RenderedTable(text, shown, elided[shown], shown < self.total or hidden > 0)
        return None


# --- column summaries -------------------------------------------------------------------------


def _is_orderable(t: pa.DataType) -> bool:
    return bool(
        pa.types.is_integer(t)
        or pa.types.is_floating(t)
        or pa.types.is_decimal(t)
        or _is_string(t)
        or pa.types.is_boolean(t)
        or pa.types.is_temporal(t)
    ) and not pa.types.is_interval(t)


def _summarize_column(field: pa.Field, col: pa.ChunkedArray) -> ColumnSummary:
    t = field.type.value_type if pa.types.is_dictionary(field.type) else field.type
    data = col.cast(t)
    rows, nulls = len(col), col.null_count
    name, spark_type = field.name, _spark_type(field)
    if not _is_orderable(t):  # nested, binary, null: counting nulls is all that is meaningful
        return ColumnSummary(name, spark_type, nulls, 0 if pa.types.is_null(t) else None, None, None, None, [])

    distinct = None
    low: JSONValue = None
    high: JSONValue = None
    # Some kernels are missing for some types (min_max on durations, say): a summary then says less.
    with suppress(pa.ArrowNotImplementedError):
        if rows <= _DISTINCT_MAX_ROWS:
            distinct = pc.count_distinct(data, mode="only_valid").as_py()
        extremes = pc.min_max(data)
        low, high = _json_array(pa.array([extremes["min"], extremes["max"]], type=t))
    mean = None
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t):
        # Arrow's decimal mean rounds to the column's scale; a float mean is what a reader wants.
        numbers = data.cast(pa.float64(), safe=False) if pa.types.is_decimal(t) else data
        value = pc.mean(numbers).as_py()
        mean = float(value) if value is not None and math.isfinite(value) else None
    top: list[tuple[JSONValue, int]] = []
    if _is_string(t) or pa.types.is_boolean(t) or (distinct is not None and distinct <= _LOW_CARDINALITY):
        counts = pc.value_counts(data)
        counts = counts.filter(pc.is_valid(counts.field("values")))
        best = counts.take(pc.array_sort_indices(counts.field("counts"), order="descending")[:_TOP_VALUES])
        top = list(zip(_json_array(best.field("values")), best.field("counts").to_pylist(), strict=True))
    return ColumnSummary(name, spark_type, nulls, distinct, low, high, mean, top)


def summarize(table: pa.Table) -> list[ColumnSummary]:
    return [_summarize_column(f, c) for f, c in zip(table.schema, table.columns, strict=True)]


def _summary_value(v: JSONValue, spark_type: str) -> str:
    # Only the type tells the string "1.00" from the decimal 1.00, so strings are quoted here.
    if v is None:
        return "-"
    if isinstance(v, str):
        return _quote(v) if spark_type.startswith(("string", "varchar", "char")) else _bare_or_quoted(v)
    if isinstance(v, bool):
        return "true" if v else "false"
    return json.dumps(v, ensure_ascii=False)


def render_summary(summaries: list[ColumnSummary], *, row_count: int, max_chars: int) -> str:
    lines = ["column | type | nulls | distinct | min | max | mean | top values"]
    for s in summaries:
        # Counts of 1 tell a reader nothing (every value unique), so they are left out.
        top = ", ".join(f"{_summary_value(v, s.type)} ×{n}" for v, n in s.top_values if n > 1)
        cells = [
            _bare_or_quoted(s.name),
            s.type,
            str(s.null_count),
            "-" if s.distinct_count is None else str(s.distinct_count),
            _summary_value(s.min, s.type),
            _summary_value(s.max, s.type),
            "-" if s.mean is None else f"{s.mean:.6g}",
            top or "-",
        ]
        lines.append(" | ".join(_elide(c, _SUMMARY_CELL_CHARS) for c in cells))

    def status(shown: int) -> str:
        hidden = len(summaries) - shown
        more = f"; +{hidden} more: character budget reached" if hidden else ""
        return f"({_plural(row_count, 'row')}, {_plural(len(summaries), 'column')}{more})"

    used, shown = len(lines[0]), 0
    for line in lines[1:]:
        if used + 1 + len(line) > max_chars:
            break
        used, shown = used + 1 + len(line), shown + 1
    while shown and used + 1 + len(status(shown)) > max_chars:  # then make room for the status
        used, shown = used - 1 - len(lines[shown]), shown - 1
    text = "\n".join([*lines[: shown + 1], status(shown)])
    return text if len(text) <= max_chars else status(0)[: max(max_chars, 0)]
