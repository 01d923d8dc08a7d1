"""Query results for an LLM: exact JSON values and compact text within a character budget.

Pure: standard library plus pyarrow. ``to_json_rows`` feeds MCP structured content and must be
lossless; ``render_table`` feeds the model's context window and must be cheap and unambiguous:
NULL is never confused with the string "NULL", a cell never spans lines, and anything shortened
or dropped says so in a status line. ``len(text) <= max_chars`` holds for every input.

schema.py    Spark type names for Arrow schemas (``column_infos``)
values.py    exact JSON values (``to_json_rows``)
cells.py     one value as a text cell: quoting, NULL, elision
table.py     the text table within a budget (``render_table``)
summary.py   column summaries (``summarize``, ``render_summary``)
"""

from spark_mcp.preview.schema import ColumnInfo, column_infos
from spark_mcp.preview.summary import ColumnSummary, render_summary, summarize
from spark_mcp.preview.table import RenderedTable, render_table
from spark_mcp.preview.values import JSONValue, to_json_rows

__all__ = [
    "ColumnInfo",
    "ColumnSummary",
    "JSONValue",
    "RenderedTable",
    "column_infos",
    "render_summary",
    "render_table",
    "summarize",
    "to_json_rows",
]
