"""Query results as exact JSON values: lossless, for MCP structured content.

Decimals keep every digit (as strings), non-finite floats are spelled out, binaries are
base64, times and durations are ISO 8601, and a struct's duplicate field names are renamed
visibly instead of dropped.
"""

from __future__ import annotations

import base64
import math
from typing import TYPE_CHECKING

from spark_mcp.preview.schema import is_binary, is_list, is_string

if TYPE_CHECKING:
    # pyarrow (with numpy) is imported where it is used, not with this module: it loads with
    # pyspark, on the thread that prepares the first driver, not on the server's start-up path (issue 12).
    import pyarrow as pa

JSONValue = None | bool | int | float | str | list["JSONValue"] | dict[str, "JSONValue"]


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


def json_array(arr: pa.Array) -> list[JSONValue]:
    """Column-wise conversion: one pass per Arrow type, so nested data costs no per-cell Arrow calls."""
    import pyarrow as pa

    t = arr.type
    if pa.types.is_dictionary(t):
        return json_array(arr.dictionary_decode())
    if isinstance(t, pa.BaseExtensionType):
        return json_array(arr.storage)
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
    if is_binary(t):
        return [None if v is None else {"base64": base64.b64encode(v).decode()} for v in arr.to_pylist()]
    if pa.types.is_map(t):
        entries = arr.cast(pa.list_(pa.struct([t.key_field, t.item_field])))
        keys, values = (json_array(a) for a in entries.flatten().flatten())
        pairs: list[JSONValue] = [{"key": k, "value": v} for k, v in zip(keys, values, strict=True)]
        return _regroup(pairs, entries)
    if is_list(t):
        return _regroup(json_array(arr.flatten()), arr)
    if pa.types.is_struct(t):
        names = _unique_names([f.name for f in t])
        children = [json_array(c) for c in arr.flatten()]  # flatten() applies the struct's nulls
        valid = arr.is_valid().to_pylist()
        return [dict(zip(names, vals, strict=True)) if ok else None for ok, *vals in zip(valid, *children, strict=True)]
    if pa.types.is_integer(t) or pa.types.is_boolean(t) or is_string(t):
        return list(arr.to_pylist())
    return [None if v is None else str(v) for v in arr.to_pylist()]  # views, unions, ...: readable at least


def _regroup(flat: list[JSONValue], lists: pa.Array) -> list[JSONValue]:
    import pyarrow.compute as pc

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


def json_columns(table: pa.Table) -> list[list[JSONValue]]:
    return [[v for chunk in col.chunks for v in json_array(chunk)] for col in table.columns]


def to_json_rows(table: pa.Table) -> list[list[JSONValue]]:
    if table.num_columns == 0:
        return [[] for _ in range(table.num_rows)]
    return [list(row) for row in zip(*json_columns(table), strict=True)]
