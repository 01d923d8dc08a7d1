"""Spark type names for Arrow schemas, and the Arrow type families Spark never tells apart."""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa


@dataclass(frozen=True)
class ColumnInfo:
    name: str
    type: str  # Spark SQL type string


_SIMPLE_SPARK_TYPES = {
    pa.int8(): "tinyint", pa.int16(): "smallint", pa.int32(): "int", pa.int64(): "bigint",
    pa.float32(): "float", pa.float64(): "double", pa.bool_(): "boolean", pa.null(): "void",
    pa.date32(): "date", pa.date64(): "date",
}  # fmt: skip


# Type families Spark never tells apart: list views, large and fixed-size variants are all arrays.
_LIST_TYPES = (pa.ListType, pa.LargeListType, pa.FixedSizeListType, pa.ListViewType, pa.LargeListViewType)
_STRING_TYPES = (pa.string(), pa.large_string(), pa.string_view())
_BINARY_TYPES = (pa.binary(), pa.large_binary(), pa.binary_view())


def is_list(t: pa.DataType) -> bool:
    return isinstance(t, _LIST_TYPES)


def is_string(t: pa.DataType) -> bool:
    return t in _STRING_TYPES


def is_binary(t: pa.DataType) -> bool:
    return t in _BINARY_TYPES or pa.types.is_fixed_size_binary(t)


def spark_type(field: pa.Field) -> str:
    if field.metadata and b"spark_type" in field.metadata:
        return str(field.metadata[b"spark_type"].decode())
    t = field.type
    if t in _SIMPLE_SPARK_TYPES:
        return _SIMPLE_SPARK_TYPES[t]
    if is_string(t) or is_binary(t):
        return "string" if is_string(t) else "binary"
    if pa.types.is_timestamp(t):
        return "timestamp" if t.tz else "timestamp_ntz"
    if pa.types.is_decimal(t):
        return f"decimal({t.precision},{t.scale})"
    if pa.types.is_map(t):
        return f"map<{spark_type(t.key_field)},{spark_type(t.item_field)}>"
    if is_list(t):
        return f"array<{spark_type(t.value_field)}>"
    if pa.types.is_struct(t):
        return "struct<" + ",".join(f"{f.name}:{spark_type(f)}" for f in t) + ">"
    return str(t)


def column_infos(schema: pa.Schema) -> list[ColumnInfo]:
    return [ColumnInfo(name=f.name, type=spark_type(f)) for f in schema]
