"""Compact JSON schemas for ``tools/list``: the same meaning in fewer characters.

Tool definitions are sent to the model in every conversation, so every character of them
is paid for again and again. Pydantic's schemas spend many on what a model does not need:
a ``title`` for every property (a re-cased copy of its name), ``anyOf`` with a
``{"type": "null"}`` branch for every optional value, and ``"default": null``. This
rewrites those into equivalent, shorter forms and changes nothing a validator would see:

- ``title`` keywords go (a property *named* ``title`` stays);
- ``{"anyOf": [{"type": T, ...}, {"type": "null"}]}`` becomes ``{"type": [T, "null"], ...}``
  when the non-null branch is a plain typed schema (a ``$ref``, ``enum`` or ``const`` branch
  keeps ``anyOf``: null would not be among its values);
- ``"default": null`` goes (``required`` already says what may be left out).

An output schema (``output=True``) also loses every ``description``, ``default`` and
``required``: they say nothing about a result that is already there (the server writes every
field it has), and the reply's text explains it.
"""

from __future__ import annotations

from typing import Any

_SUBSCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
_SUBSCHEMA_MAPS = ("properties", "$defs", "patternProperties")
_SUBSCHEMAS = ("items", "additionalProperties", "not", "contains")
_OUTPUT_ONLY = ("description", "required")  # dropped from output schemas


def compact_schema(schema: Any, *, output: bool = False) -> Any:
    """``schema`` rewritten as described above; anything that is not a schema object is returned as is."""
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "title" or (key == "default" and (value is None or output)) or (key in _OUTPUT_ONLY and output):
            continue
        if key in _SUBSCHEMA_LISTS and isinstance(value, list):
            out[key] = [compact_schema(item, output=output) for item in value]
        elif key in _SUBSCHEMA_MAPS and isinstance(value, dict):
            out[key] = {name: compact_schema(item, output=output) for name, item in value.items()}
        elif key in _SUBSCHEMAS:
            out[key] = compact_schema(value, output=output)
        else:
            out[key] = value
    return _merge_nullable(out)


def _merge_nullable(schema: dict[str, Any]) -> dict[str, Any]:
    branches = schema.get("anyOf")
    if not isinstance(branches, list) or len(branches) != 2 or {"type": "null"} not in branches:
        return schema
    other = branches[0] if branches[1] == {"type": "null"} else branches[1]
    kind = other.get("type") if isinstance(other, dict) else None
    if not isinstance(kind, str) or "$ref" in other or "enum" in other or "const" in other:
        return schema  # an enum would have to list null too: leave it as pydantic wrote it
    if any(key in schema for key in other):  # a keyword on both levels: merging could change the meaning
        return schema
    merged = {key: value for key, value in schema.items() if key != "anyOf"}
    merged.update(other)
    merged["type"] = [kind, "null"]
    return merged
