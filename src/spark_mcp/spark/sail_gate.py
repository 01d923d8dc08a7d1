"""What must be refused before Sail sees a statement or plan at all (pure).

Spark drivers run with ``spark.sql.runSQLOnFiles=false``, so ``parquet.`/path``` never
reaches a file. Sail has no such switch: any **two-part name whose first part is one of its
data source formats** is a read of the second part as a path, and Sail reads the file while
*analysing* (to infer a schema). So ``EXPLAIN`` alone would open ``/etc/...`` or a socket,
and its errors tell whether a path exists and what it holds ("Not valid JSON at line 1").
The plan reader refuses such reads afterwards (``TableScan: ?table?``); this gate keeps
them from being analysed in the first place:

- a word or `quoted identifier` naming a format (``csv``, ``text``, ``json``, ``delta``,
  ``socket``, ...) that starts a name and is followed by ``.`` and a name is refused,
  comments in between included; so is a table alias or namespace that shares a format's
  name (rename or qualify it);
- ``IDENTIFIER(...)`` is refused: Sail evaluates its argument, so ``IDENTIFIER('te' ||
  'xt.`/etc/passwd`')`` builds a path read no text check can see.

The text is split into tokens by the Spark gate's lexer (``sqltext``), in every variant of
its uncertain rules (nested comments or not, ...): a danger found in any variant counts.
Sail's SQL lexer agrees with Spark's on what matters here (measured: nested ``/* */``
comments, ``--`` comments, backslash escapes, doubled backquotes).

DataFrame plans are checked string by string: a table source, an expression and a SQL
source can each name a path read.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterator

from spark_mcp.spark import sqltext
from spark_mcp.statement import Danger, DangerKind

# Sail 0.7's registered formats, and Spark's other short names for good measure: a name
# after one of these is a path (or a host:port, for socket) to Sail.
FORMATS = frozenset(
    {"arrow", "avro", "binaryfile", "console", "csv", "delta", "iceberg", "json", "noop", "parquet", "rate"}
    | {"socket", "text", "orc", "jdbc", "xml", "libsvm", "image", "kafka", "hive", "hudi", "python"}
)

_NAME_TOKENS = ("word", "ident")
_ANY_FORMAT = re.compile(r"(?i)(?<![A-Za-z0-9_])(?:" + "|".join(sorted(FORMATS)) + r")(?![A-Za-z0-9_])")


def _name_of(token: sqltext._Token) -> str:
    if token.kind == "ident":
        return token.text[1:-1].replace("``", "`").lower()
    return token.text.lower()


def _variants(text: str) -> Iterator[sqltext._Lexed]:
    for nested, continuation, uri in itertools.product((True, False), repeat=3):
        # The gate's lexer is private to sqltext on purpose (its tokens are no public API);
        # this module is its one other user and follows it variant for variant.
        yield sqltext._lex(text, nested_comments=nested, line_continuation=continuation, uri_identifiers=uri)


def check_sql(text: str) -> tuple[Danger, ...]:
    """Dangers in SQL text (a statement or an expression) that Sail must never analyse."""
    dangers: dict[Danger, None] = {}
    for lexed in _variants(text):
        if lexed.problem and _ANY_FORMAT.search(text):
            # Tokens after the problem are lost in this variant: be as strict as the raw text allows.
            # (The Spark gate refuses unreadable statements anyway; this covers plan strings.)
            dangers[Danger(DangerKind.PATH_ACCESS, f"the text has {lexed.problem} and names a data source format")] = (
                None
            )
        tokens = lexed.tokens
        for index, token in enumerate(tokens):
            if token.kind == "word" and token.text == "IDENTIFIER":
                following = tokens[index + 1] if index + 1 < len(tokens) else None
                if following is not None and following.kind == "punct" and following.text == "(":
                    dangers[
                        Danger(
                            DangerKind.UNANALYSABLE,
                            "IDENTIFIER(...) is refused on Sail: it can build any name, a path read included, "
                            "from an expression; write the name itself",
                        )
                    ] = None
            if token.kind not in _NAME_TOKENS or _name_of(token) not in FORMATS:
                continue
            if index > 0 and tokens[index - 1].kind == "punct" and tokens[index - 1].text == ".":
                continue  # a later part of a longer name (cat.csv.t): Sail reads paths from two-part names only
            if index + 2 >= len(tokens):
                continue
            dot, target = tokens[index + 1], tokens[index + 2]
            if dot.kind == "punct" and dot.text == "." and target.kind in _NAME_TOKENS:
                name = _name_of(token)
                dangers[
                    Danger(
                        DangerKind.PATH_ACCESS,
                        f"{name}.<name> reads a path on Sail ({name} is a data source format): it is refused even "
                        f"before analysis; if {name} is a table alias or namespace, rename or qualify it",
                    )
                ] = None
    return tuple(dangers)


def _strings(value: object) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _result_sources(value: object) -> int:
    if isinstance(value, dict):
        own = 1 if set(value) == {"result_id"} else 0
        return own + sum(_result_sources(item) for item in value.values())
    if isinstance(value, list):
        return sum(_result_sources(item) for item in value)
    return 0


def check_plan(plan_json: str) -> tuple[tuple[Danger, ...], int]:
    """Dangers in every string of a structured plan, and how many result sources it has.

    Result sources become client-sent data frames, which Sail prints like path reads; the
    plan reader accepts exactly that many.
    """
    try:
        plan = json.loads(plan_json)
    except ValueError:
        return (Danger(DangerKind.UNANALYSABLE, "the plan is not JSON"),), 0
    dangers: dict[Danger, None] = {}
    for text in _strings(plan):
        for danger in check_sql(text):
            dangers[danger] = None
    return tuple(dangers), _result_sources(plan)
