"""The record of the tool call being served, which becomes its one audit record.

The MCP middleware opens a ``CallRecord`` per call; domain code below it adds what it
learns (statement, kind, tables, decision, rows...) with ``note()``, without knowing
about MCP or the audit file. Outside a call, ``note()`` does nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any


@dataclass
class CallRecord:
    tool: str
    request_id: str
    principal: str
    fields: dict[str, Any] = field(default_factory=dict)


_current: ContextVar[CallRecord | None] = ContextVar("spark_mcp_call", default=None)


def note(**fields: Any) -> None:
    """Add facts about the current call to its audit record (later values win)."""
    record = _current.get()
    if record is not None:
        record.fields.update({k: v for k, v in fields.items() if v is not None})


@contextmanager
def recording(record: CallRecord) -> Iterator[CallRecord]:
    token = _current.set(record)
    try:
        yield record
    finally:
        _current.reset(token)
