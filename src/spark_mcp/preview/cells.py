"""Text cells for the model's context: a cell never spans lines and NULL is never "NULL".

A string that could be misread (empty, "NULL", padded, quoted, holding a separator, a
control character or our elision marker) is printed as a JSON string; anything shortened
says by how much.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from spark_mcp.preview.schema import is_binary, is_list, is_string

if TYPE_CHECKING:
    # pyarrow (with numpy) is imported where it is used, not with this module: it loads with
    # pyspark, on the thread that prepares the first driver, not on the server's start-up path (issue 12).
    import pyarrow as pa

# A renderer takes one value as ``to_json_rows`` made it; typed Any because its shape follows
# the Arrow type, which the type checker cannot see (pyarrow is untyped).
_Render = Callable[[Any], str]

# Characters that would break a line or a cell, or hide from a reader, if left bare.
_UNSAFE = re.compile(r"[|\x00-\x1f\x7f-\x9f\u2028\u2029]")
_UNSAFE_IN_NAME = re.compile(r"[|:,{}\[\]\x00-\x1f\x7f-\x9f\u2028\u2029]")
_JSON_LEFTOVERS = re.compile(r"[\x7f-\x9f\u2028\u2029]")  # json.dumps keeps these raw


def quote(s: str) -> str:
    return _JSON_LEFTOVERS.sub(lambda m: f"\\u{ord(m.group()):04x}", json.dumps(s, ensure_ascii=False))


def bare_or_quoted(s: str, unsafe: re.Pattern[str] = _UNSAFE) -> str:
    ambiguous = (
        s in ("", "NULL")
        or s[0].isspace()
        or s[-1].isspace()
        or s[0] == '"'
        or "…(+" in s  # would look like our elision marker
        or unsafe.search(s) is not None
    )
    return quote(s) if ambiguous else s


def _hex(v: dict[str, str]) -> str:
    return "0x" + base64.b64decode(v["base64"]).hex()


def renderer(t: pa.DataType, nested: bool) -> _Render:
    """Text for one JSON value of Arrow type ``t``; inside nested values strings are always quoted."""
    render = _renderer_not_null(t, nested)
    return lambda v: "NULL" if v is None else render(v)


def _renderer_not_null(t: pa.DataType, nested: bool) -> _Render:
    import pyarrow as pa

    if pa.types.is_dictionary(t):
        return renderer(t.value_type, nested)
    if isinstance(t, pa.BaseExtensionType):
        return renderer(t.storage_type, nested)
    if is_string(t):
        return quote if nested else bare_or_quoted
    if pa.types.is_boolean(t):
        return lambda v: "true" if v else "false"
    if pa.types.is_floating(t):
        return lambda v: v if isinstance(v, str) else repr(v)
    if is_binary(t):
        return _hex
    if pa.types.is_map(t):
        key, value = renderer(t.key_type, True), renderer(t.item_type, True)
        return lambda v: "{" + ", ".join(f"{key(e['key'])} -> {value(e['value'])}" for e in v) + "}"
    if is_list(t):
        item = renderer(t.value_type, True)
        return lambda v: "[" + ", ".join(item(x) for x in v) + "]"
    if pa.types.is_struct(t):
        fields = [(bare_or_quoted(f.name, _UNSAFE_IN_NAME), renderer(f.type, True)) for f in t]
        return lambda v: "{" + ", ".join(f"{n}: {r(x)}" for (n, r), x in zip(fields, v.values(), strict=True)) + "}"
    # Numbers, and what to_json_rows already spelled as strings (decimals, dates, durations, ...).
    return lambda v: bare_or_quoted(v) if isinstance(v, str) else json.dumps(v, ensure_ascii=False)


def elide(s: str, limit: int) -> str:
    if len(s) <= limit:
        return s
    keep = max(limit - len(f"…(+{len(s)} chars)"), 0)
    if keep == 0:  # no room for the count: a bare ellipsis still shows the cut
        return s[: max(limit - 1, 0)] + "…"[:limit]
    return s[:keep] + f"…(+{len(s) - keep} chars)"


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"
