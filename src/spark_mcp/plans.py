"""Structured DataFrame plans: JSON an agent writes instead of code.

A plan is a source plus a list of operations, each a small typed object. Expressions
are Spark SQL expression strings (``"l_extendedprice * (1 - l_discount)"``); they can
say anything SQL can, so the built DataFrame is analysed by Spark and governed exactly
like SQL before anything runs. Nothing here executes code: ``spark/plans.py`` turns a
validated plan into Spark Connect DataFrame calls.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from spark_mcp.errors import PlanError

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")

# How big a plan may be. A plan is a tree (a join's right side and a union's other side are
# plans of their own), so 200 operations per level would allow 200**depth operations: Spark
# would spend minutes analysing it, and the JSON alone could exhaust the server. The raw
# JSON is measured before it is validated, so a hostile one costs a walk, not a recursion.
MAX_PLAN_DEPTH = 16  # plans nested inside plans (join of a join of ...)
MAX_PLAN_OPERATIONS = 500  # operations in the whole tree
MAX_JSON_DEPTH = 100  # nesting of the JSON itself (a legitimate plan needs about 4 per plan level)
MAX_JSON_NODES = 100_000  # values in the JSON (objects, arrays, strings, numbers...)
_FORM = re.compile(r"[A-Z][A-Za-z]+")  # a union branch in a validation error's location (TableSource, ...)
_NOT_THIS_FORM = {"missing", "extra_forbidden"}  # how a branch the caller did not mean fails
_NO_FORM = "matches none of the forms the grammar lists"
Expr = Annotated[str, Field(min_length=1, max_length=10_000, description="a Spark SQL expression")]
ColumnName = Annotated[str, Field(min_length=1, max_length=256)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# -- sources -----------------------------------------------------------------------------


class TableSource(_Strict):
    table: str = Field(description="table, namespace.table or catalog.namespace.table, or a temp view")


class SqlSource(_Strict):
    sql: str = Field(min_length=1, max_length=200_000, description="a SELECT query (governed like run_sql)")


class RangeSource(_Strict):
    range: RangeSpec


class RangeSpec(_Strict):
    start: int = 0
    end: int
    step: int = Field(default=1, description="not 0")

    @field_validator("step")
    @classmethod
    def _step(cls, value: int) -> int:
        if value == 0:
            raise ValueError("step must not be 0")
        return value


class ResultSource(_Strict):
    result_id: str = Field(description="a stored result from run_sql / run_plan (at most 100,000 rows)")


Source = TableSource | SqlSource | RangeSource | ResultSource


# -- operations --------------------------------------------------------------------------


class Select(_Strict):
    op: Literal["select"]
    columns: list[Expr] = Field(min_length=1, description='columns or expressions, e.g. "a", "b * 2 AS c"')


class Filter(_Strict):
    op: Literal["filter"]
    condition: Expr


class WithColumn(_Strict):
    op: Literal["with_column"]
    name: ColumnName
    expr: Expr


class Drop(_Strict):
    op: Literal["drop"]
    columns: list[ColumnName] = Field(min_length=1)


class Rename(_Strict):
    op: Literal["rename"]
    mapping: dict[ColumnName, ColumnName] = Field(min_length=1, description="old name -> new name")


AggFunction = Literal[
    "count",
    "sum",
    "avg",
    "min",
    "max",
    "count_distinct",
    "approx_count_distinct",
    "approx_percentile",
    "stddev",
    "variance",
    "first",
    "last",
    "collect_list",
    "collect_set",
]


class Agg(_Strict):
    fn: AggFunction | None = Field(default=None, description="an aggregate function; or use expr")
    column: str | None = Field(default=None, description='the input column or expression ("*" for count)')
    expr: Expr | None = Field(default=None, description='a whole aggregate expression, e.g. "sum(a * b)"')
    alias: ColumnName | None = None
    percentile: float | None = Field(default=None, ge=0, le=1, description="for approx_percentile")

    @model_validator(mode="after")
    def _one_form(self) -> Agg:
        if (self.fn is None) == (self.expr is None):
            raise ValueError("give either fn (with column) or expr")
        if self.fn is not None and self.column is None:
            raise ValueError(f"{self.fn} needs a column")
        if self.fn == "approx_percentile" and self.percentile is None:
            raise ValueError("approx_percentile needs percentile (0..1)")
        return self


class GroupBy(_Strict):
    op: Literal["group_by"]
    columns: list[Expr] = Field(default=[], description="grouping columns; empty for a global aggregate")
    aggs: list[Agg] = Field(min_length=1)


class SortKey(_Strict):
    column: Expr
    descending: bool = False
    nulls: Literal["first", "last"] | None = None


class OrderBy(_Strict):
    op: Literal["order_by"]
    keys: list[SortKey | Expr] = Field(
        min_length=1, description='sort keys, e.g. "a" or {"column": "b", "descending": true}'
    )


class Limit(_Strict):
    op: Literal["limit"]
    n: int = Field(ge=0, le=10_000_000)


class Distinct(_Strict):
    op: Literal["distinct"]
    columns: list[ColumnName] | None = Field(default=None, description="deduplicate on these columns only")


class Sample(_Strict):
    op: Literal["sample"]
    fraction: float = Field(gt=0, le=1)
    seed: int | None = None
    with_replacement: bool = False


class Window(_Strict):
    op: Literal["window"]
    name: ColumnName = Field(description="the new column")
    function: Expr = Field(description='a window function, e.g. "rank()", "lag(x, 1)", "sum(amount)"')
    partition_by: list[Expr] = []
    order_by: list[SortKey | Expr] = []
    rows_between: tuple[int | None, int | None] | None = Field(
        default=None, description="frame in rows relative to the current row; null means unbounded"
    )


class Pivot(_Strict):
    op: Literal["pivot"]
    group_by: list[Expr] = Field(min_length=1)
    pivot_column: ColumnName
    values: list[str | int | float | bool] | None = Field(default=None, max_length=1000)
    aggs: list[Agg] = Field(min_length=1)


class Join(_Strict):
    op: Literal["join"]
    right: Plan
    on: list[ColumnName] | None = Field(default=None, description="columns with the same name on both sides")
    condition: Expr | None = Field(
        default=None, description="a join condition; refer to the sides' columns by name or via aliases set below"
    )
    how: Literal["inner", "left", "right", "full", "left_semi", "left_anti", "cross"] = "inner"
    left_alias: ColumnName | None = None
    right_alias: ColumnName | None = None

    @model_validator(mode="after")
    def _keys(self) -> Join:
        if self.how != "cross" and (self.on is None) == (self.condition is None):
            raise ValueError("a join needs either on (column names) or condition, not both")
        return self


class Union(_Strict):
    op: Literal["union"]
    other: Plan
    by_name: bool = Field(default=True, description="match columns by name (else by position)")
    distinct: bool = False


Operation = Annotated[
    Select
    | Filter
    | WithColumn
    | Drop
    | Rename
    | GroupBy
    | OrderBy
    | Limit
    | Distinct
    | Sample
    | Window
    | Pivot
    | Join
    | Union,
    Field(discriminator="op"),
]


class Plan(_Strict):
    """A DataFrame: a source, then operations applied in order."""

    source: Source
    operations: list[Operation] = Field(default=[], max_length=200)
    save_as: str | None = Field(
        default=None, description="also keep the result as a temp view of this name in the session"
    )

    @field_validator("save_as")
    @classmethod
    def _view_name(cls, value: str | None) -> str | None:
        if value is not None and not _IDENT.fullmatch(value):
            raise ValueError("save_as must be a plain name: letters, digits and _")
        return value

    def result_sources(self) -> list[str]:
        """The stored results this plan reads, nested plans (joins, unions) included."""
        found = [self.source.result_id] if isinstance(self.source, ResultSource) else []
        for operation in self.operations:
            if isinstance(operation, Join):
                found += operation.right.result_sources()
            elif isinstance(operation, Union):
                found += operation.other.result_sources()
        return list(dict.fromkeys(found))


PLAN_GRAMMAR = """\
plan = {"source": SOURCE, "operations": [OP, ...], "save_as"?: "view"}
SOURCE = {"table": "ns.t"} | {"sql": "SELECT ..."} | {"range": {"start"?, "end", "step"?}} | {"result_id": "res_..."}
OP = {"op": NAME, ...}; E = a Spark SQL expression string:
 select {columns: [E]} | filter {condition: E} | with_column {name, expr: E} | drop {columns}
 rename {mapping: {old: new}} | group_by {columns: [E], aggs: [AGG]} | order_by {keys: [E | KEY]}
 limit {n} | distinct {columns?} | sample {fraction, seed?, with_replacement?}
 pivot {group_by: [E], pivot_column, values?, aggs: [AGG]}
 window {name, function: E, partition_by: [E], order_by: [E | KEY], rows_between?: [lo, hi] (null: unbounded)}
 join {right: plan, on: [column] | condition: E, how?: inner|left|right|full|left_semi|left_anti|cross,
  left_alias?, right_alias?} | union {other: plan, by_name?: true, distinct?: false}
AGG = {fn, column ("*" for count), alias?, percentile?} | {expr: E, alias?}; fn: count sum avg min max
 count_distinct approx_count_distinct approx_percentile stddev variance first last collect_list collect_set
KEY = {column: E, descending?: false, nulls?: first|last}"""


def check_json_size(data: object) -> None:
    """Refuse JSON nested deeper than ``MAX_JSON_DEPTH`` or with more than ``MAX_JSON_NODES`` values.

    Iterative, so that no input can make it recurse.
    """
    stack: list[tuple[object, int]] = [(data, 1)]
    nodes = 0
    while stack:
        value, depth = stack.pop()
        nodes += 1
        if depth > MAX_JSON_DEPTH:
            raise PlanError("plan", f"the JSON is nested more than {MAX_JSON_DEPTH} levels deep; simplify the plan")
        if nodes > MAX_JSON_NODES:
            raise PlanError("plan", f"the JSON has more than {MAX_JSON_NODES:,} values; simplify the plan")
        if isinstance(value, dict):
            stack.extend((item, depth + 1) for item in value.values())
        elif isinstance(value, list | tuple):
            stack.extend((item, depth + 1) for item in value)


def check_plan_size(plan: Plan) -> None:
    """Refuse plans nested deeper than ``MAX_PLAN_DEPTH`` or with more than ``MAX_PLAN_OPERATIONS`` operations."""
    operations = 0
    stack: list[tuple[Plan, int, str]] = [(plan, 1, "plan")]
    while stack:
        current, depth, where = stack.pop()
        if depth > MAX_PLAN_DEPTH:
            raise PlanError(
                where,
                f"plans are nested more than {MAX_PLAN_DEPTH} deep (joins and unions of plans); "
                "save intermediate steps with save_as and read them with a table source",
            )
        operations += len(current.operations)
        if operations > MAX_PLAN_OPERATIONS:
            raise PlanError(
                "plan",
                f"the plan has more than {MAX_PLAN_OPERATIONS} operations in all (nested plans included); "
                "split it into steps with save_as",
            )
        for index, operation in enumerate(current.operations):
            if isinstance(operation, Join):
                stack.append((operation.right, depth + 1, f"{where}.operations[{index}].right"))
            elif isinstance(operation, Union):
                stack.append((operation.other, depth + 1, f"{where}.operations[{index}].other"))


def parse_plan(data: object) -> Plan:
    """A plan from JSON the caller sent; ``PlanError`` naming where it is wrong (at most three places),
    or saying which size limit it passes (``MAX_PLAN_DEPTH``, ``MAX_PLAN_OPERATIONS``, ``MAX_JSON_*``).
    """
    check_json_size(data)
    try:
        plan = Plan.model_validate(data)
    except ValidationError as exc:
        problems: dict[str, str] = {}
        for error in exc.errors():
            where, message = "plan", error["msg"]
            for part in error["loc"]:
                if isinstance(part, str) and _FORM.fullmatch(part):  # a branch of a union (a source's forms)
                    if error["type"] in _NOT_THIS_FORM:
                        message = _NO_FORM
                        break
                    continue  # the form the caller meant, wrong inside: say what is wrong there
                where += f"[{part}]" if isinstance(part, int) else f".{part}"
            problems.setdefault(where, message)
        # A union none of whose forms fit says so only when no form says more precisely what is wrong.
        problems = {
            where: why
            for where, why in problems.items()
            if why != _NO_FORM or not any(other.startswith((f"{where}.", f"{where}[")) for other in problems)
        }
        (first, message), *others = list(problems.items())
        also = "; ".join(f"{where}: {why}" for where, why in others[:2])
        also = f"; also {also}" + (f" (and {len(others) - 2} more)" if len(others) > 2 else "") if also else ""
        raise PlanError(first, f"{message}{also}. The grammar is in run_plan's description") from None
    check_plan_size(plan)
    return plan


Join.model_rebuild()
Union.model_rebuild()
RangeSource.model_rebuild()
Plan.model_rebuild()
