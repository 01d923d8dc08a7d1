"""The lexical gate: what must be refused before Spark sees the SQL text at all (pure).

Policy rules on Spark's analyzed plan (``inspect``), but a few statements act while they
are being analysed or are never analysed as one statement, so they are stopped here, on
the raw text, before ``EXPLAIN`` is sent:

- ``EXECUTE IMMEDIATE``: Spark runs the inner statement during analysis (measured: an
  ``EXPLAIN EXTENDED EXECUTE IMMEDIATE 'DROP TABLE t'`` dropped the table);
- several statements, or a SQL script (``BEGIN ... END``, ``IF``, ``WHILE``, labels,
  handlers): ``EXPLAIN`` rejects them, but ``spark.sql()`` would run a script;
- ``${...}`` variable substitution, which can read the driver's configuration and
  environment (its token included) if a driver ever runs with substitution on;
- a subquery in a time-travel clause (``TIMESTAMP AS OF (SELECT ...)``): Spark runs it
  while analysing, and the analysis error prints its result (measured: a secret value came
  back in ``INVALID_TIME_TRAVEL_TIMESTAMP_EXPR``), so EXPLAIN alone would leak any table.

The gate mimics Spark's lexer (``SqlBaseLexer.g4``) closely enough to find statement
boundaries: ``'...'``/``"..."`` strings with backslash escapes, ``R'raw'`` strings,
backquoted identifiers with doubled backquotes, ``--`` comments (a backslash before the
newline continues them), ``/* */`` comments that nest, ``/*+ hints */`` (lexed as code),
and URI identifiers (``file://b/x--y`` is one token). Keywords are matched after Java-style
upper-casing of each character, as Spark does (``ſELECT`` is ``SELECT`` to Spark).

Where Spark's exact behaviour is uncertain the gate is conservative: the checks are
repeated with every variant of the uncertain rules (comments nested or not, line-comment
continuation or not, URI identifiers or not) and any variant that finds a danger denies.
The gate never raises; anything it cannot read (an unterminated string or comment) is a
danger, so the text is never sent.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from spark_mcp.statement import Danger, DangerKind

# Spark's WS token, exactly: other "whitespace" (e.g. U+200B) is a token to Spark.
_SPARK_WS = frozenset(" \t\n\f\r\u000b\u00a0\u1680\u2028\u202f\u205f\u3000" + "".join(map(chr, range(0x2000, 0x200B))))
_URI_CHARS = frozenset("_/-.?=&#%")

# First words that can only start a SQL script (a compound statement), never a single
# statement that EXPLAIN could analyse.
_SCRIPT_STARTS = frozenset(
    {"BEGIN", "IF", "WHILE", "REPEAT", "LOOP", "FOR", "CASE", "LEAVE", "ITERATE", "SIGNAL", "RESIGNAL", "GET"}
    | {"OPEN", "FETCH", "CLOSE"}  # cursor statements exist only inside scripts
)
# After DECLARE these words make a handler, a condition or a cursor: scripting only.
_SCRIPT_DECLARES = frozenset({"HANDLER", "CONDITION", "CURSOR", "EXIT", "CONTINUE"})
# Statement-level labels (``lbl: BEGIN``) precede these.
_LABELLED = frozenset({"BEGIN", "WHILE", "REPEAT", "LOOP", "FOR"})
# A time-travel clause: TIMESTAMP/VERSION AS OF <expression>; a subquery (always in
# parentheses) starts with one of the query words; the clause ends at a clause keyword.
_TEMPORAL = frozenset({"TIMESTAMP", "SYSTEM_TIME", "VERSION", "SYSTEM_VERSION"})
_QUERY_WORDS = frozenset({"SELECT", "FROM", "WITH", "VALUES", "TABLE"})
_CLAUSE_WORDS = frozenset(
    {"WHERE", "GROUP", "HAVING", "ORDER", "LIMIT", "OFFSET", "JOIN", "INNER", "LEFT", "RIGHT", "FULL", "CROSS"}
    | {"NATURAL", "SEMI", "ANTI", "UNION", "EXCEPT", "INTERSECT", "MINUS", "WINDOW", "QUALIFY", "LATERAL"}
    | {"PIVOT", "UNPIVOT", "TABLESAMPLE", "ON", "USING", "AS", "WITH", "CLUSTER", "DISTRIBUTE", "SORT"}
)


@dataclass(frozen=True)
class GateResult:
    """The statement to send (trailing ';' and surrounding whitespace removed) and why not to."""

    sql: str
    dangers: tuple[Danger, ...]  # empty when the text may be sent to EXPLAIN


@dataclass(frozen=True)
class _Token:
    kind: str  # "word", "string", "ident" (backquoted), "punct"
    text: str  # the token as written, upper-cased for words
    start: int
    end: int


@dataclass(frozen=True)
class _Lexed:
    tokens: tuple[_Token, ...]
    problem: str | None  # why the text cannot be read (unterminated string, comment, ...)


def _fold(char: str) -> str:
    """Java's ``Character.toUpperCase`` for one character (what Spark's lexer compares)."""
    upper = char.upper()
    return upper if len(upper) == 1 else char


def _fold_text(text: str) -> str:
    return "".join(_fold(c) for c in text)


def _is_word_char(char: str) -> bool:
    # Spark's IDENTIFIER: UNICODE_LETTER (\p{L}) | DIGIT ([0-9] only) | '_'.
    return char.isalpha() or "0" <= char <= "9" or char == "_"


def _lex(text: str, *, nested_comments: bool, line_continuation: bool, uri_identifiers: bool) -> _Lexed:
    """Split ``text`` into significant tokens the way Spark's lexer would (one variant)."""
    tokens: list[_Token] = []
    n = len(text)
    i = 0
    while i < n:
        c = text[i]
        if c in _SPARK_WS:
            i += 1
            continue
        if c == "-" and text.startswith("--", i):
            i += 2
            while i < n and text[i] not in "\r\n":
                # '\\\n' keeps a line comment going onto the next line (SIMPLE_COMMENT).
                if line_continuation and text[i] == "\\" and i + 1 < n and text[i + 1] == "\n":
                    i += 2
                    continue
                i += 1
            continue
        if c == "/" and text.startswith("/*", i) and not text.startswith("/*+", i):
            depth = 1
            i += 2
            while i < n and depth:
                if text.startswith("*/", i):
                    depth -= 1
                    i += 2
                elif nested_comments and text.startswith("/*", i) and not text.startswith("/*+", i):
                    depth += 1
                    i += 2
                else:
                    i += 1
            if depth:
                return _Lexed(tuple(tokens), "an unterminated /* comment */")
            continue
        if c in "'\"":
            end = _string_end(text, i + 1, c, raw=False)
            if end < 0:
                return _Lexed(tuple(tokens), "an unterminated string literal")
            tokens.append(_Token("string", text[i:end], i, end))
            i = end
            continue
        if c == "`":
            end = _backquote_end(text, i + 1)
            if end < 0:
                return _Lexed(tuple(tokens), "an unterminated `quoted identifier`")
            tokens.append(_Token("ident", text[i:end], i, end))
            i = end
            continue
        if _is_word_char(c):
            j = i
            while j < n and _is_word_char(text[j]):
                j += 1
            word = _fold_text(text[i:j])
            if word == "R" and j < n and text[j] in "'\"":
                # R'...' / R"...": raw strings, no escapes (the longest token wins in ANTLR).
                end = _string_end(text, j + 1, text[j], raw=True)
                if end < 0:
                    return _Lexed(tuple(tokens), "an unterminated raw string literal")
                tokens.append(_Token("string", text[i:end], i, end))
                i = end
                continue
            if uri_identifiers and text.startswith("://", j) and all(ch.isalpha() for ch in text[i:j]):
                k = j + 3
                while k < n and (_is_word_char(text[k]) or text[k] in _URI_CHARS):
                    k += 1
                if k > j + 3:  # IDENTIFIER's URI form needs at least one character after '://'
                    tokens.append(_Token("word", _fold_text(text[i:k]), i, k))
                    i = k
                    continue
            tokens.append(_Token("word", word, i, j))
            i = j
            continue
        if c == ":" and text.startswith("::", i):
            tokens.append(_Token("punct", "::", i, i + 2))
            i += 2
            continue
        tokens.append(_Token("punct", c, i, i + 1))
        i += 1
    return _Lexed(tuple(tokens), None)


def _string_end(text: str, i: int, quote: str, *, raw: bool) -> int:
    """Index just past the closing quote, or -1. A backslash escapes any character."""
    n = len(text)
    while i < n:
        c = text[i]
        if c == quote:
            return i + 1
        if c == "\\" and not raw:
            i += 2
            continue
        i += 1
    return -1


def _backquote_end(text: str, i: int) -> int:
    n = len(text)
    while i < n:
        if text[i] == "`":
            if i + 1 < n and text[i + 1] == "`":  # `` is an escaped backquote
                i += 2
                continue
            return i + 1
        i += 1
    return -1


def _structure_dangers(lexed: _Lexed) -> list[Danger]:
    """Unreadable text, several statements, or a script, in one lexer variant."""
    if lexed.problem:
        return [Danger(DangerKind.UNANALYSABLE, f"the SQL text has {lexed.problem}; fix it and send it again")]
    tokens = lexed.tokens
    dangers: list[Danger] = []
    for index, token in enumerate(tokens):
        if token.kind == "punct" and token.text == ";":
            rest = tokens[index + 1 :]
            if any(not (t.kind == "punct" and t.text == ";") for t in rest):
                dangers.append(
                    Danger(
                        DangerKind.SCRIPT,
                        "the text holds more than one statement: send one statement per call",
                    )
                )
            break
    if _time_travel_subquery(tokens):
        dangers.append(
            Danger(
                DangerKind.ANALYSIS_SIDE_EFFECT,
                "a subquery in TIMESTAMP/VERSION AS OF runs while Spark analyses the statement (its result "
                "can leak through errors); use a literal timestamp or version",
            )
        )
    script = _script_start(tokens)
    if script:
        dangers.append(Danger(DangerKind.SCRIPT, f"SQL scripts ({script} ...) are not allowed: send single statements"))
    return dangers


def _script_start(tokens: tuple[_Token, ...]) -> str | None:
    if not tokens:
        return None
    first = tokens[0]
    if first.kind == "word" and first.text in _SCRIPT_STARTS:
        return first.text
    if first.kind == "word" and first.text == "DECLARE":
        words = {t.text for t in tokens[1:6] if t.kind == "word"}
        if words & _SCRIPT_DECLARES:
            return "DECLARE " + sorted(words & _SCRIPT_DECLARES)[0]
    if len(tokens) >= 2 and first.kind in ("word", "ident") and tokens[1].kind == "punct" and tokens[1].text == ":":
        following = tokens[2].text if len(tokens) > 2 and tokens[2].kind == "word" else ""
        if following in _LABELLED:
            return f"label: {following}"
        # ``SELECT :x`` is a query with a named parameter: a label only ever precedes the
        # words in _LABELLED, and a query word cannot start any other script statement.
        return None if first.kind == "word" and first.text in _QUERY_WORDS else "label:"
    return None


def _time_travel_subquery(tokens: tuple[_Token, ...]) -> bool:
    """A query word inside parentheses within the expression of a ``... AS OF`` clause."""
    for index in range(len(tokens) - 2):
        words = [t.text if t.kind == "word" else "" for t in tokens[index : index + 3]]
        if words[0] not in _TEMPORAL or words[1:] != ["AS", "OF"]:
            continue
        depth = 0
        for token in tokens[index + 3 :]:
            if token.kind == "punct" and token.text == "(":
                depth += 1
            elif token.kind == "punct" and token.text == ")":
                depth -= 1
                if depth < 0:
                    break
            elif depth == 0 and (
                # Not '|': it may be the || operator, and the expression goes on after it.
                (token.kind == "punct" and token.text in ",;") or (token.kind == "word" and token.text in _CLAUSE_WORDS)
            ):
                break
            elif depth > 0 and token.kind == "word" and token.text in _QUERY_WORDS:
                return True
    return False


def _execute_immediate(text: str) -> bool:
    """The words EXECUTE then IMMEDIATE anywhere, even in comments or strings (on purpose)."""
    folded = _fold_text(text)
    seen_execute = False
    word: list[str] = []
    for c in itertools.chain(folded, " "):
        if _is_word_char(c):
            word.append(c)
            continue
        if word:
            current = "".join(word)
            word.clear()
            if current == "EXECUTE":
                seen_execute = True
            elif current == "IMMEDIATE" and seen_execute:
                return True
    return False


def _cleaned(text: str, lexed: _Lexed) -> str:
    """The statement from its first to its last significant token, trailing ';'s removed."""
    significant = [t for t in lexed.tokens if not (t.kind == "punct" and t.text == ";")]
    if not significant:
        return ""
    start = 0
    while start < len(text) and text[start] in _SPARK_WS:
        start += 1
    end = max(t.end for t in significant)
    return text[start:end]


def gate(sql: str) -> GateResult:
    """Decide whether ``sql`` may be sent to ``EXPLAIN``; never raises."""
    if not isinstance(sql, str):
        return GateResult("", (Danger(DangerKind.UNANALYSABLE, "the statement must be text"),))
    dangers: list[Danger] = []
    if "${" in sql:
        dangers.append(
            Danger(
                DangerKind.CONFIG,
                "'${' is refused anywhere in the text: variable substitution can read the driver's "
                "configuration and environment; remove it (write the value itself)",
            )
        )
    if _execute_immediate(sql):
        dangers.append(
            Danger(
                DangerKind.EXECUTE_IMMEDIATE,
                "EXECUTE IMMEDIATE runs its statement while Spark analyses it, so it is refused "
                "before analysis (even in comments or strings); run the statement itself",
            )
        )
    primary = _lex(sql, nested_comments=True, line_continuation=True, uri_identifiers=True)
    for nested, continuation, uri in itertools.product((True, False), repeat=3):
        lexed = primary if (nested, continuation, uri) == (True, True, True) else None
        if lexed is None:
            lexed = _lex(sql, nested_comments=nested, line_continuation=continuation, uri_identifiers=uri)
        dangers.extend(_structure_dangers(lexed))
    cleaned = _cleaned(sql, primary) if primary.problem is None else sql.strip()
    if primary.problem is None and not cleaned:
        dangers.append(Danger(DangerKind.UNANALYSABLE, "the statement is empty: send one SQL statement"))
    return GateResult(cleaned, _unique(dangers))


def _unique(dangers: list[Danger]) -> tuple[Danger, ...]:
    seen: dict[Danger, None] = {}
    for danger in dangers:
        seen.setdefault(danger, None)
    return tuple(seen)
