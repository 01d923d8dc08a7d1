"""The facts being gathered while one plan is read; frozen into ``StatementFacts`` at the end."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from spark_mcp.statement import Danger, DangerKind, StatementFacts, StatementKind, TableName


@dataclass
class Facts:
    """Reads, writes, calls, dangers, views and notes found so far (each added once)."""

    reads: set[TableName] = field(default_factory=set)
    writes: set[TableName] = field(default_factory=set)
    functions: set[str] = field(default_factory=set)
    dangers: list[Danger] = field(default_factory=list)
    views: set[str] = field(default_factory=set)
    notes: list[str] = field(default_factory=list)

    def danger(self, kind: DangerKind, detail: str) -> None:
        item = Danger(kind, detail)
        if item not in self.dangers:
            self.dangers.append(item)

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def freeze(self, kind: StatementKind, operation: str, temp_view: str | None) -> StatementFacts:
        return StatementFacts(
            kind=kind,
            operation=operation,
            reads=frozenset(self.reads),
            writes=frozenset(self.writes),
            functions=frozenset(self.functions),
            dangers=tuple(self.dangers),
            views=frozenset(self.views),
            temp_view=temp_view,
            notes=tuple(self.notes),
        )


def unknown(operation: str, detail: str, notes: Iterable[str] = ()) -> StatementFacts:
    """A statement the reader does not know: denied for every role but admin."""
    return StatementFacts(
        kind=StatementKind.UNKNOWN,
        operation=operation,
        dangers=(Danger(DangerKind.UNKNOWN_NODE, detail),),
        notes=tuple(notes),
    )


def unanalysable(operation: str, detail: str, notes: Iterable[str] = ()) -> StatementFacts:
    """Output the reader cannot trust or read: denied for every role but admin."""
    return StatementFacts(
        kind=StatementKind.UNKNOWN,
        operation=operation,
        dangers=(Danger(DangerKind.UNANALYSABLE, detail),),
        notes=tuple(notes) or (detail,),
    )
