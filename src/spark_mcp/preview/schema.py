"""Spark type names for Arrow schemas, and the Arrow type families Spark never tells apart."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    # pyarrow (with numpy) is imported where it is used, not with this module: it loads with
    # pyspark, on the thread that prepares the first driver, not on the server's start-up path (issue 12).
    import pyarrow as pa


@dataclass(frozen=True)
class ColumnInfo:
    name: str
    type: str  # Spark SQL type string


@dataclass(frozen=True)
class _Families:
    """Arrow types by what Spark calls them: built on first use, as pyarrow is imported then."""

    simple: dict[pa.DataType, str]
    # Type families Spark never tells apart: list views, large and fixed-size variants are all arrays.
    lists: tuple[type[pa.DataType], ...]
    strings: tuple[pa.DataType, ...]
    binaries: tuple[pa.DataType, ...]


@functools.cache
def _families() -> _Families:
    import pyarrow as pa

    return _Families(
        simple={
            pa.int8(): "tinyint", pa.int16(): "smallint", pa.int32(): "int", pa.int64(): "bigint",
            pa.float32(): "float", pa.float64(): "double", pa.bool_(): "boolean", pa.null(): "void",
            pa.date32(): "date", pa.date64(): "date",
        },
        lists=(pa.ListType, pa.LargeListType, pa.FixedSizeListType, pa.ListViewType, pa.LargeListViewType),
        strings=(pa.string(), pa.large_string(), pa.string_view()),
        binaries=(pa.binary(), pa.large_binary(), pa.binary_view()),
    )  # fmt: skip


def is_list(t: pa.DataType) -> bool:
    return isinstance(t, _families().lists)


def is_string(t: pa.DataType) -> bool:
    return t in _families().strings


def is_binary(t: pa.DataType) -> bool:
    import pyarrow as pa

    return t in _families().binaries or pa.types.is_fixed_size_binary(t)


def spark_type(field: pa.Field) -> str:
    import pyarrow as pa

    if field.metadata and b"spark_type" in field.metadata:
        return str(field.metadata[b"spark_type"].decode())
    t = field.type
    simple = _families().simple
    if t in simple:
        return simple[t]
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
