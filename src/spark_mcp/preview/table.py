"""The compact text table: query results within a character budget, honest about what it left out.

``len(text) <= max_chars`` holds for every input. Rows that cannot fit are never converted;
cells are narrowed only when not even the header and one row fit; columns that do not fit
are counted in the status line, and so are shortened cells and rows not shown.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from spark_mcp.preview.cells import bare_or_quoted, elide, plural, renderer
from spark_mcp.preview.values import json_columns

if TYPE_CHECKING:
    # pyarrow (with numpy) is imported where it is used, not with this module: it loads with
    # pyspark, on the thread that prepares the first driver, not on the server's start-up path (issue 12).
    import pyarrow as pa


@dataclass(frozen=True)
class RenderedTable:
    text: str
    rows_shown: int
    elided_cells: int
    budget_hit: bool


def _status(shown: int, total: int, *, first_row: int, more_rows: bool, elided: int, hidden: int) -> str:
    span = f"rows {first_row + 1}-{first_row + shown}" if shown else "no rows"
    if shown < total:
        whole = plural(total, "row") if first_row == 0 else f"{first_row + 1}-{first_row + total}"
        parts = [f"showing {shown if first_row == 0 else span} of {whole}: character budget reached"]
    elif (first_row or more_rows) and total:
        parts = [span]
    else:
        parts = [plural(total, "row")]
    if more_rows:
        parts.append("more rows exist")
    if elided:
        parts.append(f"{plural(elided, 'cell')} shortened")
    if hidden:
        parts.append(f"+{plural(hidden, 'more column')}")
    return "(" + "; ".join(parts) + ")"


def render_table(
    table: pa.Table,
    *,
    max_chars: int,
    max_cell_chars: int = 80,
    more_rows: bool = False,
    first_row: int = 0,
) -> RenderedTable:
    total = table.num_rows
    if table.num_columns == 0:
        text = _status(total, total, first_row=first_row, more_rows=more_rows, elided=0, hidden=0)
        return RenderedTable(text[: max(max_chars, 0)], total, 0, len(text) > max_chars)
    # Every line costs at least two characters, so rows past this point can never be shown:
    # they are not converted at all.
    head = table.slice(0, min(total, max(max_chars, 0) // 2 + 1))
    columns = json_columns(head)
    renderers = [renderer(f.type, nested=False) for f in table.schema]
    rendered: dict[tuple[int, int], str] = {}

    def cell(row: int, col: int) -> str:
        if (row, col) not in rendered:
            rendered[row, col] = renderers[col](columns[col][row])
        return rendered[row, col]

    layout = _Layout(
        names=[bare_or_quoted(f.name) for f in table.schema],
        cell=cell,
        rows=head.num_rows,
        total=total,
        max_chars=max_chars,
        more_rows=more_rows,
        first_row=first_row,
    )
    # Cells are narrowed (80, 40, 20, ...) only when not even the header and one row fit:
    # one shortened row tells a reader more than none.
    widest = limit = max(max_cell_chars, 1)
    while True:
        result = layout.attempt(limit)
        if result is not None:
            return result if limit == widest else replace(result, budget_hit=True)
        if limit == 1:
            break
        limit //= 2
    # A budget too small for any header: the status alone, or failing that a short apology.
    text = _status(0, total, first_row=first_row, more_rows=more_rows, elided=0, hidden=table.num_columns)
    text = text if len(text) <= max_chars else "(character budget too small)"
    return RenderedTable(text[: max(max_chars, 0)], 0, 0, True)


@dataclass(frozen=True)
class _Layout:
    names: list[str]
    cell: Callable[[int, int], str]
    rows: int  # rows converted (the rest cannot fit)
    total: int  # rows in the table
    max_chars: int
    more_rows: bool
    first_row: int

    def _columns_shown(self, limit: int) -> int:
        # A wide table shows the columns whose header and first row fit in a quarter of the
        # budget, which leaves room for a few rows; the status line counts the hidden ones.
        shown, width = 0, 0
        for col, name in enumerate(self.names):
            first = len(elide(self.cell(0, col), limit)) if self.rows else 0
            width += max(len(elide(name, limit)), first) + 3
            if shown and width > self.max_chars // 4:
                break
            shown += 1
        return shown

    def attempt(self, limit: int) -> RenderedTable | None:
        """The table with cells cut at ``limit``; None if not even the header and a row fit."""
        cols = self._columns_shown(limit)
        lines = [" | ".join(elide(n, limit) for n in self.names[:cols])]
        elided = [0]  # elided[i]: cells shortened within the first i rows
        used = len(lines[0])
        for row in range(self.rows):
            cells = [self.cell(row, col) for col in range(cols)]
            line = " | ".join(elide(c, limit) for c in cells)
            if used + 1 + len(line) > self.max_chars:
                break
            lines.append(line)
            used += 1 + len(line)
            elided.append(elided[-1] + sum(len(c) > limit for c in cells))

        # The status line grows with the counts it reports, so step back rows until it fits too.
        hidden = len(self.names) - cols
        for shown in range(len(lines) - 1, -1, -1):
            status = _status(
                shown,
                self.total,
                first_row=self.first_row,
                more_rows=self.more_rows,
                elided=elided[shown],
                hidden=hidden,
            )
            text = "\n".join([*lines[: shown + 1], status])
            if len(text) <= self.max_chars and (shown or not self.rows):
                return RenderedTable(text, shown, elided[shown], shown < self.total or hidden > 0)
        return None
