"""preview: exact JSON values, the compact text table and its budget, column summaries.

Pure and fast: tables are built in memory with pyarrow; no Spark.
"""

from __future__ import annotations

import datetime as dt
import json
import random
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pytest

from spark_mcp.preview import (
    ColumnInfo,
    ColumnSummary,
    JSONValue,
    RenderedTable,
    column_infos,
    render_summary,
    render_table,
    summarize,
    to_json_rows,
)

UTC = dt.UTC
KOLKATA = dt.timezone(dt.timedelta(hours=5, minutes=30))
NOON = dt.datetime(2024, 1, 31, 12, 0, 0, 123456)
P38 = Decimal("12345678901234567890.123456789012345678")  # 38 digits, scale 18


def one_column(arr: pa.Array, name: str = "c") -> pa.Table:
    return pa.Table.from_arrays([arr], names=[name])


def json_column(arr: pa.Array) -> list[JSONValue]:
    rows = to_json_rows(one_column(arr))
    json.dumps(rows, allow_nan=False)  # every output must be valid JSON
    return [row[0] for row in rows]


# --- to_json_rows -----------------------------------------------------------------------------

map_int_string = pa.map_(pa.int32(), pa.string())
struct_ba = pa.struct([("b", pa.string()), ("a", pa.int64())])

JSON_CASES = [
    pytest.param(pa.array([1, -(2**63), None], pa.int64()), [1, -(2**63), None],
                 id="bigint stays an exact int"),
    pytest.param(pa.array([-128, 127], pa.int8()), [-128, 127], id="tinyint stays an int"),
    pytest.param(pa.array([True, False, None]), [True, False, None], id="boolean stays a bool"),
    pytest.param(pa.array(["alice", "", "NULL", "café 🎉", None]), ["alice", "", "NULL", "café 🎉", None],
                 id="strings stay strings, unicode and emoji included"),
    pytest.param(pa.array([Decimal("12.50"), Decimal("-3.00"), Decimal("0.00"), None], pa.decimal128(10, 2)),
                 ["12.50", "-3.00", "0.00", None], id="decimals are strings with their scale kept"),
    pytest.param(pa.array([P38, P38.copy_negate()], pa.decimal128(38, 18)), [str(P38), "-" + str(P38)],
                 id="decimal of precision 38 keeps every digit"),
    pytest.param(pa.array([Decimal(10**38 - 1)], pa.decimal128(38, 0)), ["9" * 38],
                 id="decimal 38 nines is not written in exponent form"),
    pytest.param(pa.array([Decimal("1.5")], pa.decimal256(50, 10)), ["1.5000000000"],
                 id="decimal256 works too"),
    pytest.param(pa.array([0.1, 1e300, -0.0, None]), [0.1, 1e300, -0.0, None],
                 id="finite doubles are numbers"),
    pytest.param(pa.array([float("nan"), float("inf"), float("-inf")]), ["NaN", "Infinity", "-Infinity"],
                 id="NaN and infinities become strings"),
    pytest.param(pa.array([0.1, float("nan"), None], pa.float32()), [0.1, "NaN", None],
                 id="float32 uses its shortest digits"),
    pytest.param(pa.array([dt.date(2024, 1, 31), None], pa.date32()), ["2024-01-31", None], id="date is ISO"),
    pytest.param(pa.array([NOON.replace(tzinfo=UTC)], pa.timestamp("us", tz="UTC")),
                 ["2024-01-31T12:00:00.123456+00:00"], id="timestamp in UTC keeps the +00:00 offset"),
    pytest.param(pa.array([NOON.replace(tzinfo=UTC)], pa.timestamp("us", tz="Asia/Kolkata")),
                 ["2024-01-31T17:30:00.123456+05:30"], id="timestamp in Asia Kolkata is shown at +05:30"),
    pytest.param(pa.array([NOON], pa.timestamp("us")), ["2024-01-31T12:00:00.123456"],
                 id="timestamp without zone has no offset"),
    pytest.param(pa.array([1_706_702_400_123_456_789], pa.timestamp("ns", tz="UTC")),
                 ["2024-01-31T12:00:00.123456789+00:00"], id="timestamp in nanoseconds keeps nanoseconds"),
    pytest.param(pa.array([12 * 3600 * 10**6, 1, None], pa.time64("us")),
                 ["12:00:00", "00:00:00.000001", None], id="time of day has a fraction only when needed"),
    pytest.param(pa.array([1], pa.time64("ns")), ["00:00:00.000000001"], id="time in nanoseconds is exact"),
    pytest.param(pa.array([0, 1_500_000, 90_061 * 10**6, -86_400 * 10**6], pa.duration("us")),
                 ["PT0S", "PT1.5S", "P1DT1H1M1S", "-P1D"], id="durations are ISO 8601"),
    pytest.param(pa.array([pa.MonthDayNano([14, 3, 500_000_000])], pa.month_day_nano_interval()),
                 ["P14M3DT0.5S"], id="calendar intervals are ISO-like"),
    pytest.param(pa.array([b"\x00\xff", b"", None]), [{"base64": "AP8="}, {"base64": ""}, None],
                 id="binary is a base64 object, never a bare string"),
    pytest.param(pa.array([b"ab"], pa.binary(2)), [{"base64": "YWI="}], id="fixed size binary is base64 too"),
    pytest.param(pa.array([[1, None], None, []], pa.list_(pa.int32())), [[1, None], None, []],
                 id="arrays keep nested nulls and tell a null array from an empty one"),
    pytest.param(pa.array([[[1], []], [None]], pa.list_(pa.list_(pa.int8()))), [[[1], []], [None]],
                 id="arrays of arrays nest"),
    pytest.param(pa.array([[Decimal("1.10")]], pa.large_list(pa.decimal128(5, 2))), [["1.10"]],
                 id="values inside arrays are converted like top level values"),
    pytest.param(pa.array([{"b": "x", "a": 1}, None, {"b": None, "a": None}], struct_ba),
                 [{"b": "x", "a": 1}, None, {"b": None, "a": None}],
                 id="structs are objects and keep field order"),
    pytest.param(pa.StructArray.from_arrays([pa.array([1]), pa.array([2])], names=["a", "a"]),
                 [{"a": 1, "a (2)": 2}], id="struct with duplicate field names keeps both values"),
    pytest.param(pa.array([[(1, "a"), (2, None)], None, []], map_int_string),
                 [[{"key": 1, "value": "a"}, {"key": 2, "value": None}], None, []],
                 id="maps with int keys are lists of key value pairs"),
    pytest.param(pa.array([[("k", [1, None])]], pa.map_(pa.string(), pa.list_(pa.int64()))),
                 [[{"key": "k", "value": [1, None]}]], id="map values nest"),
    pytest.param(pa.array(["a", "b", "a", None]).dictionary_encode(), ["a", "b", "a", None],
                 id="dictionary encoded strings are decoded"),
    pytest.param(pa.array([None, None], pa.null()), [None, None], id="a null typed column is all nulls"),
]  # fmt: skip


@pytest.mark.parametrize(("arr", "expected"), JSON_CASES)
def test_json_values_are_exact(arr: pa.Array, expected: list[JSONValue]) -> None:
    assert json_column(arr) == expected


def test_json_keeps_struct_field_order() -> None:
    [value] = json_column(pa.array([{"b": "x", "a": 1}], struct_ba))
    assert isinstance(value, dict)
    assert list(value) == ["b", "a"]


def test_json_of_sliced_nested_arrays_starts_at_the_slice() -> None:
    # Offsets of sliced lists and maps are the classic place to read the wrong elements.
    lists = pa.array([[1], [2, 3], None, [4]], pa.list_(pa.int64())).slice(1)
    maps = pa.array([[(1, "a")], None, [(2, "b"), (3, "c")]], map_int_string).slice(1)
    structs = pa.array([{"b": "x", "a": 1}, None, {"b": "y", "a": 2}], struct_ba).slice(1)
    assert json_column(lists) == [[2, 3], None, [4]]
    assert json_column(maps) == [None, [{"key": 2, "value": "b"}, {"key": 3, "value": "c"}]]
    assert json_column(structs) == [None, {"b": "y", "a": 2}]


def test_json_rows_are_row_major_across_chunks() -> None:
    table = pa.table(
        {"id": pa.chunked_array([[1, 2], [3]]), "name": pa.chunked_array([["a"], ["b", None]])},
    )
    assert to_json_rows(table) == [[1, "a"], [2, "b"], [3, None]]


def test_json_decimals_round_trip_exactly() -> None:
    rng = random.Random(7)
    values = [Decimal(rng.randrange(-(10**38) + 1, 10**38)).scaleb(-18) for _ in range(200)]
    rows = to_json_rows(one_column(pa.array(values, pa.decimal128(38, 18))))
    back = json.loads(json.dumps(rows, allow_nan=False))
    assert [Decimal(row[0]) for row in back] == values
    assert all(len(row[0].split(".")[1]) == 18 for row in back)


def test_json_of_empty_and_columnless_tables() -> None:
    assert to_json_rows(pa.table({"a": pa.array([], pa.int32())})) == []
    assert to_json_rows(pa.table({"a": [1, 2]}).drop_columns(["a"])) == [[], []]


# --- column_infos -----------------------------------------------------------------------------

INFO_CASES = [
    pytest.param(pa.field("c", pa.int8()), "tinyint", id="int8 is tinyint"),
    pytest.param(pa.field("c", pa.int16()), "smallint", id="int16 is smallint"),
    pytest.param(pa.field("c", pa.int32()), "int", id="int32 is int"),
    pytest.param(pa.field("c", pa.int64()), "bigint", id="int64 is bigint"),
    pytest.param(pa.field("c", pa.float32()), "float", id="float32 is float"),
    pytest.param(pa.field("c", pa.float64()), "double", id="float64 is double"),
    pytest.param(pa.field("c", pa.string()), "string", id="utf8 is string"),
    pytest.param(pa.field("c", pa.large_string()), "string", id="large utf8 is string"),
    pytest.param(pa.field("c", pa.binary()), "binary", id="binary is binary"),
    pytest.param(pa.field("c", pa.bool_()), "boolean", id="bool is boolean"),
    pytest.param(pa.field("c", pa.date32()), "date", id="date32 is date"),
    pytest.param(pa.field("c", pa.timestamp("us", tz="UTC")), "timestamp", id="zoned timestamp is timestamp"),
    pytest.param(pa.field("c", pa.timestamp("us")), "timestamp_ntz", id="timestamp without zone is ntz"),
    pytest.param(pa.field("c", pa.decimal128(10, 2)), "decimal(10,2)",
                 id="decimal keeps precision and scale"),
    pytest.param(pa.field("c", pa.list_(pa.string())), "array<string>", id="list is array"),
    pytest.param(pa.field("c", pa.struct([("a", pa.int32()), ("b", pa.list_(pa.float64()))])),
                 "struct<a:int,b:array<double>>", id="struct lists its fields"),
    pytest.param(pa.field("c", pa.map_(pa.string(), pa.int64())), "map<string,bigint>",
                 id="map names both types"),
    pytest.param(pa.field("c", pa.null()), "void", id="null is void"),
    pytest.param(pa.field("c", pa.uint32()), "uint32", id="other arrow types keep their arrow name"),
    pytest.param(pa.field("c", pa.string(), metadata={b"spark_type": b"varchar(10)"}), "varchar(10)",
                 id="spark_type metadata wins over the arrow type"),
    pytest.param(pa.field("c", pa.int32(), metadata={b"other": b"x"}), "int", id="other metadata is ignored"),
]  # fmt: skip


@pytest.mark.parametrize(("field", "expected"), INFO_CASES)
def test_column_infos_name_spark_types(field: pa.Field, expected: str) -> None:
    assert column_infos(pa.schema([field])) == [ColumnInfo("c", expected)]


def test_column_infos_keep_order_and_duplicate_names() -> None:
    schema = pa.schema([pa.field("a", pa.int64()), pa.field("a", pa.string())])
    assert column_infos(schema) == [ColumnInfo("a", "bigint"), ColumnInfo("a", "string")]


# --- text cells -------------------------------------------------------------------------------


def cell_text(arr: pa.Array) -> list[str]:
    rendered = render_table(one_column(arr), max_chars=100_000)
    return rendered.text.split("\n")[1:-1]


CELL_CASES = [
    pytest.param(pa.array(["alice"]), "alice", id="an ordinary string is bare"),
    pytest.param(pa.array(["café 🎉"]), "café 🎉", id="unicode and emoji stay bare and unescaped"),
    pytest.param(pa.array([None], pa.string()), "NULL", id="sql null is NULL"),
    pytest.param(pa.array(["NULL"]), '"NULL"', id="the string NULL is quoted"),
    pytest.param(pa.array([""]), '""', id="the empty string is quoted"),
    pytest.param(pa.array([" x"]), '" x"', id="a leading space is quoted"),
    pytest.param(pa.array(["x "]), '"x "', id="a trailing space is quoted"),
    pytest.param(pa.array(["a|b"]), '"a|b"', id="a pipe is quoted"),
    pytest.param(pa.array(["line\nbreak"]), '"line\\nbreak"', id="a newline is escaped inside quotes"),
    pytest.param(pa.array(["tab\there"]), '"tab\\there"', id="a tab is escaped inside quotes"),
    pytest.param(pa.array(["bell\x07"]), '"bell\\u0007"', id="control characters are escaped"),
    pytest.param(pa.array(["a\u2028b\x85"]), '"a\\u2028b\\u0085"', id="unicode line separators are escaped"),
    pytest.param(pa.array(['"hi"']), '"\\"hi\\""', id="a string starting with a quote is quoted"),
    pytest.param(pa.array(["it's 3\" long"]), "it's 3\" long", id="quotes inside a string need nothing"),
    pytest.param(pa.array([Decimal("12.50")], pa.decimal128(10, 2)), "12.50", id="decimals are exact"),
    pytest.param(pa.array([0.1]), "0.1", id="doubles use the shortest repr"),
    pytest.param(pa.array([0.1], pa.float32()), "0.1", id="float32 uses the shortest repr too"),
    pytest.param(pa.array([float("nan")]), "NaN", id="NaN is NaN"),
    pytest.param(pa.array([float("-inf")]), "-Infinity", id="negative infinity is -Infinity"),
    pytest.param(pa.array([True]), "true", id="booleans are lowercase"),
    pytest.param(pa.array([-(2**63)], pa.int64()), str(-(2**63)), id="bigints are exact"),
    pytest.param(pa.array([dt.date(2024, 1, 31)]), "2024-01-31", id="dates are ISO"),
    pytest.param(pa.array([NOON.replace(tzinfo=UTC)], pa.timestamp("us", tz="Asia/Kolkata")),
                 "2024-01-31T17:30:00.123456+05:30", id="zoned timestamps keep the offset"),
    pytest.param(pa.array([NOON], pa.timestamp("us")), "2024-01-31T12:00:00.123456",
                 id="timestamps without zone have no offset"),
    pytest.param(pa.array([b"\x00\xff"]), "0x00ff", id="binary is hex"),
    pytest.param(pa.array([[1, None]], pa.list_(pa.int64())), "[1, NULL]", id="arrays are bracketed"),
    pytest.param(pa.array([["a", "NULL", None]]), '["a", "NULL", NULL]',
                 id="strings in arrays are always quoted"),
    pytest.param(pa.array([{"a": 1, "b": "x"}]), '{a: 1, b: "x"}', id="structs show field names"),
    pytest.param(pa.array([{"a:b": 1}]), '{"a:b": 1}', id="odd struct field names are quoted"),
    pytest.param(pa.array([[(1, "a"), (2, None)]], map_int_string), '{1 -> "a", 2 -> NULL}',
                 id="maps use arrows between key and value"),
    pytest.param(pa.array([[{"k": [(1, [Decimal("1.0")])]}]],
                           pa.list_(pa.struct([("k", pa.map_(pa.int8(), pa.list_(pa.decimal128(3, 1))))]))),
                 "[{k: {1 -> [1.0]}}]", id="nesting composes"),
]  # fmt: skip


@pytest.mark.parametrize(("arr", "expected"), CELL_CASES)
def test_cells_are_unambiguous(arr: pa.Array, expected: str) -> None:
    assert cell_text(arr) == [expected]


def test_every_string_reads_back_from_its_cell() -> None:
    # Property: a reader can always recover the exact string (or NULL) from a cell.
    rng = random.Random(42)
    alphabet = ["a", "Z", " ", "|", "\n", "\t", "\x00", "\x7f", '"', "\\", "é", "🎉", "\u2028", "N", "U", "L"]
    values: list[str | None] = ["NULL", "", None, " ", "|", '"']
    values += ["".join(rng.choices(alphabet, k=rng.randrange(0, 8))) for _ in range(500)]
    for value, cell in zip(values, cell_text(pa.array(values, pa.string())), strict=True):
        if cell == "NULL":
            assert value is None
        elif cell.startswith('"'):
            assert json.loads(cell) == value
        else:
            assert cell == value


def test_long_cells_are_shortened_with_a_visible_marker() -> None:
    table = pa.table({"id": [1, 2], "comment": ["x" * 1000, "short"], "blob": [b"\x01" * 500, b"\x02"]})
    rendered = render_table(table, max_chars=10_000, max_cell_chars=80)
    line = rendered.text.split("\n")[1]
    comment, blob = line.split(" | ")[1:]
    kept, marker = comment.split("…")
    assert marker == f"(+{1000 - len(kept)} chars)"
    assert len(comment) <= 80
    assert blob.startswith("0x0101")
    assert blob.endswith(f"(+{2 + 1000 - blob.index('…')} chars)")  # 2 + 1000 hex digits in all
    assert rendered.elided_cells == 2
    assert not rendered.budget_hit  # max_cell_chars, not max_chars, shortened them
    assert rendered.text.endswith("(2 rows; 2 cells shortened)")


# --- the table and its budget -----------------------------------------------------------------


def test_table_format_is_pipes_without_padding() -> None:
    table = pa.table(
        {
            "id": [1, 2],
            "name": ["alice", None],
            "amount": pa.array([Decimal("10.50"), Decimal("-3.00")], pa.decimal128(10, 2)),
        }
    )
    rendered = render_table(table, max_chars=1000)
    assert rendered.text == "id | name | amount\n1 | alice | 10.50\n2 | NULL | -3.00\n(2 rows)"
    assert (rendered.rows_shown, rendered.elided_cells, rendered.budget_hit) == (2, 0, False)


def test_duplicate_column_names_all_render_in_schema_order() -> None:
    table = pa.Table.from_arrays([pa.array([1]), pa.array(["x"]), pa.array([2])], names=["a", "b", "a"])
    assert render_table(table, max_chars=1000).text == "a | b | a\n1 | x | 2\n(1 row)"


def test_odd_column_names_are_quoted() -> None:
    table = pa.Table.from_arrays([pa.array([1]), pa.array([2])], names=["a|b", ""])
    assert render_table(table, max_chars=1000).text.split("\n")[0] == '"a|b" | ""'


def test_empty_table_shows_header_and_zero_rows() -> None:
    table = pa.table({"id": pa.array([], pa.int64()), "name": pa.array([], pa.string())})
    rendered = render_table(table, max_chars=1000)
    assert rendered.text == "id | name\n(0 rows)"
    assert (rendered.rows_shown, rendered.budget_hit) == (0, False)


def test_table_without_columns_still_reports_its_rows() -> None:
    table = pa.table({"a": [1, 2]}).drop_columns(["a"])
    assert render_table(table, max_chars=1000).text == "(2 rows)"


STATUS_CASES = [
    pytest.param(3, False, 0, "(3 rows)", id="all rows shown says how many"),
    pytest.param(1, False, 0, "(1 row)", id="one row is singular"),
    pytest.param(0, False, 0, "(0 rows)", id="no rows says zero"),
    pytest.param(50, True, 0, "(rows 1-50; more rows exist)", id="more rows beyond the table are announced"),
    pytest.param(50, True, 50, "(rows 51-100; more rows exist)", id="a later page gives its row range"),
    pytest.param(50, False, 50, "(rows 51-100)", id="the last page gives its range and no more"),
    pytest.param(0, True, 0, "(0 rows; more rows exist)", id="an empty page with more rows says both"),
]  # fmt: skip


@pytest.mark.parametrize(("rows", "more_rows", "first_row", "status"), STATUS_CASES)
def test_status_line_wording(rows: int, more_rows: bool, first_row: int, status: str) -> None:
    table = pa.table({"n": pa.array(range(rows), pa.int64())})
    rendered = render_table(table, max_chars=10_000, more_rows=more_rows, first_row=first_row)
    assert rendered.text.split("\n")[-1] == status
    assert not rendered.budget_hit


def test_budget_drops_rows_and_says_so() -> None:
    table = lineitem_like(1000, seed=2)
    rendered = render_table(table, max_chars=2000)
    assert len(rendered.text) <= 2000
    assert 0 < rendered.rows_shown < 1000
    assert rendered.budget_hit
    assert rendered.text.split("\n")[-1] == (f"(showing {rendered.rows_shown} of 1000 rows: character budget reached)")
    assert len(rendered.text.split("\n")) == rendered.rows_shown + 2


def test_budget_on_a_later_page_names_the_rows_shown() -> None:
    table = pa.table({"n": pa.array(range(50), pa.int64())})
    rendered = render_table(table, max_chars=120, more_rows=True, first_row=50)
    assert len(rendered.text) <= 120
    assert rendered.rows_shown == 18
    assert rendered.text.split("\n")[-1] == (
        "(showing rows 51-68 of 51-100: character budget reached; more rows exist)"
    )


def test_budget_too_small_for_anything_says_so_briefly() -> None:
    rendered = render_table(pa.table({"n": range(50)}), max_chars=30)
    assert rendered == RenderedTable("(character budget too small)", 0, 0, True)


def test_budget_of_120_chars_still_shows_a_row() -> None:
    rendered = render_table(lineitem_like(50, seed=3), max_chars=120)
    assert len(rendered.text) <= 120
    assert rendered.rows_shown >= 1
    assert rendered.budget_hit
    assert "more columns" in rendered.text.split("\n")[-1]


def test_wide_table_caps_columns_and_says_how_many_are_hidden() -> None:
    table = pa.table({f"column_{i:03d}": pa.array(range(20), pa.int64()) for i in range(500)})
    rendered = render_table(table, max_chars=16_000)
    header, *_, status = rendered.text.split("\n")
    shown_columns = header.count(" | ") + 1
    assert len(rendered.text) <= 16_000
    assert shown_columns < 500
    assert f"+{500 - shown_columns} more columns" in status
    assert rendered.rows_shown >= 3
    assert rendered.budget_hit


def test_header_too_long_for_the_budget_is_shortened() -> None:
    table = pa.table({"a" * 300: [1], "b" * 300: [2]})
    rendered = render_table(table, max_chars=100)
    assert len(rendered.text) <= 100
    assert rendered.rows_shown == 1
    assert "…" in rendered.text.split("\n")[0]


ARROW_TYPES: list[tuple[pa.DataType, Any]] = [
    (pa.int64(), lambda r: r.randrange(-(10**12), 10**12)),
    (pa.float64(), lambda r: r.choice([r.random() * 1e6, float("nan"), float("inf"), 0.1])),
    (pa.string(), lambda r: "".join(r.choices("ab |\n\"é🎉", k=r.randrange(0, r.choice([5, 200]))))),
    (pa.decimal128(38, 10), lambda r: Decimal(r.randrange(-(10**20), 10**20)).scaleb(-10)),
    (pa.date32(), lambda r: dt.date(2000, 1, 1) + dt.timedelta(days=r.randrange(10_000))),
    (pa.timestamp("us", tz="Asia/Kolkata"), lambda r: NOON.replace(tzinfo=UTC) + dt.timedelta(r.random())),
    (pa.binary(), lambda r: r.randbytes(r.randrange(0, 100))),
    (pa.list_(pa.int32()), lambda r: [r.choice([None, 1, 22]) for _ in range(r.randrange(0, 30))]),
    (pa.struct([("a", pa.int8()), ("b", pa.string())]), lambda r: {"a": 1, "b": "x|y" * r.randrange(0, 20)}),
    (pa.map_(pa.int16(), pa.string()), lambda r: [(i, "v") for i in range(r.randrange(0, 10))]),
]  # fmt: skip


def random_table(rng: random.Random) -> pa.Table:
    columns: list[pa.Array] = []
    names: list[str] = []
    for _ in range(rng.choice([1, 2, 5, 12, 60])):
        arrow_type, make = rng.choice(ARROW_TYPES)
        rows = None if not columns else len(columns[0])
        rows = rng.randrange(0, 40) if rows is None else rows
        columns.append(pa.array([None if rng.random() < 0.1 else make(rng) for _ in range(rows)], arrow_type))
        names.append(rng.choice(["id", "x", "a very long column name " * rng.randrange(1, 6), "dup", "a|b"]))
    return pa.Table.from_arrays(columns, names=names)


def test_text_never_exceeds_max_chars_and_json_is_always_valid() -> None:
    # Property over generated tables and budgets, seeded so a failure reproduces.
    rng = random.Random(20240131)
    for _ in range(400):
        table = random_table(rng)
        max_chars = rng.choice([0, 1, 10, 40, 120, 300, 1000, 5000])
        rendered = render_table(
            table,
            max_chars=max_chars,
            max_cell_chars=rng.choice([1, 5, 20, 80]),
            more_rows=rng.random() < 0.3,
            first_row=rng.choice([0, 50, 123_456]),
        )
        assert len(rendered.text) <= max_chars, (max_chars, rendered.text)
        json.dumps(to_json_rows(table), allow_nan=False)
        assert 0 <= rendered.rows_shown <= table.num_rows
        assert rendered.budget_hit or rendered.rows_shown == table.num_rows
        if max_chars >= 300:
            # Header, one line per row, status: no cell ever spans lines.
            assert len(rendered.text.split("\n")) == rendered.rows_shown + 2
            if table.num_rows:
                assert rendered.rows_shown >= 1


# --- summaries --------------------------------------------------------------------------------


def test_summarize_mixed_columns() -> None:
    table = pa.table(
        {
            "id": pa.array([1, 2, 3, None], pa.int64()),
            "flag": pa.array(["A", "N", "A", "A"]),
            "price": pa.array([Decimal("1.50"), Decimal("2.50"), None, Decimal("2.50")], pa.decimal128(15, 2)),
            "ratio": pa.array([0.5, float("nan"), 1.5, None]),
            "day": pa.array([dt.date(2024, 1, 2), dt.date(2024, 1, 1), None, None]),
            "ok": pa.array([True, False, True, None]),
            "tags": pa.array([["a"], None, [], ["b"]], pa.list_(pa.string())),
            "blob": pa.array([b"x", None, b"y", b"z"]),
            "m": pa.array([[(1, "a")], None, None, []], map_int_string),
            "nothing": pa.array([None] * 4, pa.null()),
        }
    )
    by_name = {s.name: s for s in summarize(table)}
    assert by_name["id"] == ColumnSummary("id", "bigint", 1, 3, 1, 3, 2.0, [(1, 1), (2, 1), (3, 1)])
    assert by_name["flag"] == ColumnSummary("flag", "string", 0, 2, "A", "N", None, [("A", 3), ("N", 1)])
    assert by_name["price"] == ColumnSummary(
        "price", "decimal(15,2)", 1, 2, "1.50", "2.50", by_name["price"].mean, [("2.50", 2), ("1.50", 1)]
    )
    assert by_name["price"].mean == pytest.approx(6.5 / 3)  # not rounded to the decimal's scale
    assert by_name["ratio"].mean is None  # NaN has no mean worth reporting
    assert (by_name["ratio"].min, by_name["ratio"].max) == (0.5, 1.5)
    assert (by_name["day"].min, by_name["day"].max) == ("2024-01-01", "2024-01-02")
    assert by_name["ok"].top_values == [(True, 2), (False, 1)]
    for name in ("tags", "blob", "m"):
        summary = by_name[name]
        assert (summary.distinct_count, summary.min, summary.max, summary.top_values) == (
            None,
            None,
            None,
            [],
        )
    assert [by_name[n].null_count for n in ("tags", "blob", "m", "nothing")] == [1, 1, 2, 4]
    json.dumps([s.min for s in by_name.values()] + [s.max for s in by_name.values()], allow_nan=False)


def test_summarize_an_empty_table() -> None:
    [summary] = summarize(pa.table({"x": pa.array([], pa.float64())}))
    assert summary == ColumnSummary("x", "double", 0, 0, None, None, None, [])


def test_render_summary_is_one_line_per_column() -> None:
    table = pa.table({"id": [1, 2, 2], "name": ["a", "b|c", "b|c"]})
    text = render_summary(summarize(table), row_count=3, max_chars=1000)
    assert text == (
        "column | type | nulls | distinct | min | max | mean | top values\n"
        "id | bigint | 0 | 2 | 1 | 2 | 1.66667 | 2 ×2\n"
        'name | string | 0 | 2 | "a" | "b|c" | - | "b|c" ×2\n'
        "(3 rows, 2 columns)"
    )


@pytest.mark.parametrize("max_chars", [0, 10, 80, 200, 1000], ids=lambda n: f"within {n} chars")
def test_render_summary_stays_within_budget(max_chars: int) -> None:
    summaries = summarize(lineitem_like(50, seed=4))
    text = render_summary(summaries, row_count=50, max_chars=max_chars)
    assert len(text) <= max_chars
    if max_chars >= 200:
        assert "character budget reached" in text.split("\n")[-1]


# --- helpers ----------------------------------------------------------------------------------


def lineitem_like(rows: int, *, seed: int) -> pa.Table:
    """A TPC-H lineitem-shaped table; shared with benchmarks/preview_size.py in spirit."""
    rng = random.Random(seed)
    money = pa.decimal128(15, 2)
    day = dt.date(1995, 1, 1)

    def cents(lo: int, hi: int) -> list[Decimal]:
        return [Decimal(rng.randrange(lo, hi)).scaleb(-2) for _ in range(rows)]

    return pa.table(
        {
            "l_orderkey": pa.array([rng.randrange(1, 6_000_000) for _ in range(rows)], pa.int64()),
            "l_partkey": pa.array([rng.randrange(1, 200_000) for _ in range(rows)], pa.int64()),
            "l_suppkey": pa.array([rng.randrange(1, 10_000) for _ in range(rows)], pa.int64()),
            "l_linenumber": pa.array([rng.randrange(1, 8) for _ in range(rows)], pa.int32()),
            "l_quantity": pa.array(cents(100, 5100), money),
            "l_extendedprice": pa.array(cents(90_000, 10_000_000), money),
            "l_discount": pa.array(cents(0, 11), money),
            "l_tax": pa.array(cents(0, 9), money),
            "l_returnflag": [rng.choice("ANR") for _ in range(rows)],
            "l_linestatus": [rng.choice("FO") for _ in range(rows)],
            "l_shipdate": [day + dt.timedelta(days=rng.randrange(2500)) for _ in range(rows)],
            "l_shipinstruct": [rng.choice(["DELIVER IN PERSON", "NONE", "TAKE BACK RETURN"]) for _ in range(rows)],
            "l_shipmode": [rng.choice(["AIR", "MAIL", "SHIP", "TRUCK"]) for _ in range(rows)],
            "l_comment": ["".join(rng.choices("abcdefghij klmnop", k=44)) for _ in range(rows)],
        }
    )
