"""Splitting ``EXPLAIN EXTENDED`` output into its sections, and Spark's analysis errors.

Spark prints four sections: the parsed, analyzed, optimized and physical plans. The four
section markers must each appear exactly once, else a literal or a name printed one and
which is real cannot be told; plans Spark cut short (``... N more fields``, ``... N more
characters``) cannot be checked either, because the cut part is simply not printed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from spark_mcp.spark.inspect.tree import root_index

PARSED = "== Parsed Logical Plan =="
ANALYZED = "== Analyzed Logical Plan =="
OPTIMIZED = "== Optimized Logical Plan =="
PHYSICAL = "== Physical Plan =="
_PLANNING_ERROR = "Error occurred during query planning"

_TRUNCATED_FIELDS = re.compile(r"\.\.\. \d+ more fields")
_TRUNCATED_TEXT = re.compile(r"\.\.\. \d+ more characters")
_ERROR_LINE = re.compile(r"^(?P<exception>[A-Za-z_][\w.$]*(?:Exception|Error))(?::\s?(?P<message>.*))?$")
_ERROR_CLASS = re.compile(r"^\[(?P<cls>[A-Z0-9_.]+)\]\s*(?P<rest>.*)$")
_SQLSTATE = re.compile(r"\s*SQLSTATE:.*$")
_REPEATED_HEADERS = "the plan text repeats its section headers (a literal or name contains them)"


@dataclass(frozen=True)
class Sections:
    parsed: str
    analyzed: str  # the analyzed section as printed (schema header included)
    problem: str | None  # why the output cannot be trusted, if it cannot


def split_sections(text: str) -> Sections | None:
    """Split EXPLAIN EXTENDED output; None when it is not that output at all."""
    counts = {marker: text.count(marker) for marker in (PARSED, ANALYZED, OPTIMIZED, PHYSICAL)}
    if not counts[PARSED] or not counts[ANALYZED]:
        return None
    problem = None
    if any(count > 1 for count in counts.values()):
        # A literal or name printed the markers of a plan section: which one is real
        # cannot be told from the text, so nothing in it can be trusted.
        problem = _REPEATED_HEADERS
    elif not text.lstrip().startswith(PARSED):
        problem = "the plan text does not start with the parsed plan"
    parsed_start = text.index(PARSED) + len(PARSED)
    analyzed_at = text.index(ANALYZED)
    parsed = text[parsed_start:analyzed_at].strip("\n")
    rest = text[analyzed_at + len(ANALYZED) :]
    ends = [rest.find(marker) for marker in (OPTIMIZED, PHYSICAL)]
    end = min((e for e in ends if e >= 0), default=len(rest))
    analyzed = rest[:end].strip("\n")
    if _TRUNCATED_TEXT.search(text):
        problem = problem or (
            "Spark truncated the plan text (spark.sql.maxPlanStringLength); the driver's limit must be raised"
        )
    elif _TRUNCATED_FIELDS.search(parsed) or _TRUNCATED_FIELDS.search(analyzed):
        problem = problem or (
            "Spark left fields out of the plan text ('... N more fields'): what they hide cannot be "
            "checked; raise spark.sql.debug.maxToStringFields on the driver, or select fewer columns"
        )
    if not analyzed.strip():
        problem = problem or "the analyzed plan is empty"
    return Sections(parsed, analyzed, problem)


def error_of(analyzed: str) -> tuple[str, str] | None:
    """(ERROR_CLASS, message) when the analyzed section is Spark's analysis error."""
    first = analyzed.lstrip("\n").split("\n", 1)[0].strip()
    match = _ERROR_LINE.match(first)
    if not match:
        return None
    message = (match.group("message") or "").strip()
    cls = match.group("exception").rsplit(".", 1)[-1]
    inner = _ERROR_CLASS.match(message)
    if inner:
        cls, message = inner.group("cls"), inner.group("rest")
    message = _SQLSTATE.sub("", message).rstrip(" ;")
    return cls, message


def analysis_error(explain_text: str) -> tuple[str, str] | None:
    """(ERROR_CLASS, first line of the message) when Spark could not analyse the statement.

    ``PLANNING_ERROR`` and ``UNRECOGNISED_EXPLAIN_OUTPUT`` are spark-mcp's own names for an
    output without an analyzed plan at all; everything else is Spark's error class.
    """
    text = explain_text if isinstance(explain_text, str) else ""
    stripped = text.strip()
    if stripped.startswith(_PLANNING_ERROR):
        detail = stripped[len(_PLANNING_ERROR) :].lstrip(": ").split("\n", 1)[0].strip()
        # Seen for UPDATE and MERGE on file-based tables: Spark gives no detail here.
        return "PLANNING_ERROR", detail or (
            "Spark could not plan the statement and gave no reason; UPDATE, MERGE and DELETE need a "
            "table format that supports them (e.g. Delta or Iceberg), plain Parquet/CSV tables do not"
        )
    sections = split_sections(text)
    if sections is None:
        first = stripped.split("\n", 1)[0][:200]
        return "UNRECOGNISED_EXPLAIN_OUTPUT", first or "empty EXPLAIN output"
    return error_of(sections.analyzed)


def analyzed_section(explain_text: str) -> str | None:
    """The analyzed logical plan (or Spark's analysis error), without the schema header line."""
    text = explain_text if isinstance(explain_text, str) else ""
    sections = split_sections(text)
    if sections is None or sections.problem == _REPEATED_HEADERS:
        return None
    if error_of(sections.analyzed):
        return sections.analyzed
    lines = sections.analyzed.split("\n")
    return "\n".join(lines[root_index(lines) :])
