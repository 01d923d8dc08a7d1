"""Compact tool schemas mean exactly what pydantic's do (checked with a real JSON Schema validator)."""

from __future__ import annotations

from typing import Any, Literal

import jsonschema
import pytest
from pydantic import BaseModel, Field

from spark_mcp.tools.schema import compact_schema


class Inner(BaseModel):
    code: str
    detail: str | None = None


class Sample(BaseModel):
    title: str = Field(description="a property named title is data, not a keyword")
    count: int | None = Field(default=None, ge=0)
    mode: Literal["a", "b"] | None = None
    inner: Inner | None = None
    rows: list[list[Any]] = []
    tags: dict[str, int] = {}


SCHEMA = Sample.model_json_schema()
COMPACT = compact_schema(SCHEMA)

INSTANCES = [
    {"title": "x"},
    {"title": "x", "count": None, "mode": None, "inner": None},
    {"title": "x", "count": 3, "mode": "a", "inner": {"code": "c"}, "rows": [[1, "a"]], "tags": {"k": 1}},
    {"count": 3},  # title missing
    {"title": "x", "count": -1},  # below the minimum
    {"title": "x", "count": "3"},  # wrong type
    {"title": "x", "mode": "c"},  # not in the enum
    {"title": "x", "inner": {"detail": "d"}},  # inner code missing
    {"title": "x", "tags": {"k": "v"}},  # wrong value type
]


@pytest.mark.parametrize("instance", INSTANCES)
def test_the_compact_schema_accepts_and_refuses_exactly_what_the_original_does(instance: dict[str, Any]) -> None:
    original = jsonschema.Draft202012Validator(SCHEMA).is_valid(instance)
    compact = jsonschema.Draft202012Validator(COMPACT).is_valid(instance)
    assert compact == original


def test_titles_and_null_defaults_go_and_optional_scalars_become_type_lists() -> None:
    assert "title" not in COMPACT and "title" in COMPACT["properties"]  # the keyword, not the property
    assert all("title" not in prop for prop in COMPACT["properties"].values())
    assert COMPACT["properties"]["count"] == {"type": ["integer", "null"], "minimum": 0}
    assert "anyOf" in COMPACT["properties"]["mode"]  # an enum branch keeps anyOf: null is not among its values
    assert "anyOf" in COMPACT["properties"]["inner"]  # so does a $ref branch
    assert len(str(COMPACT)) < len(str(SCHEMA))


def test_anything_that_is_not_a_schema_passes_through() -> None:
    assert compact_schema(None) is None
    assert compact_schema(True) is True
    assert compact_schema({"enum": [None, "title"]}) == {"enum": [None, "title"]}
