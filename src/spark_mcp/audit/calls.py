"""A call's one audit record, written the same way by every front door (MCP, gateway, console).

``emit_call`` turns the ``CallRecord`` a call filled in (``spark_mcp.calls``) into its
record: the facts the call noted, its outcome, its error class (only when it failed) and
its duration. A record that cannot be written is always an ``AuditError``, logged here,
whatever went wrong underneath (a bug is still a call that cannot be recorded: fail
closed). Each front door decides what its caller then sees; while the log is failing
(``AuditLog.failure``) they all refuse calls before they run, with the words below.
"""

from __future__ import annotations

import time
from typing import Literal

import structlog

from spark_mcp.audit.record import AuditRecord
from spark_mcp.audit.writer import AuditLog
from spark_mcp.calls import CallRecord
from spark_mcp.errors import AuditError

log = structlog.get_logger(__name__)

# What a caller reads, after "audit_error: ", when its call was refused or its answer withheld.
REFUSED_UNTIL_NOW = "this call did not run: the audit log could not be written until now; it can be again: retry"
WITHHELD = (
    "the audit log cannot be written, so calls do not run and their replies are withheld; "
    "the server's operator must make it writable (the server's log says why)"
)

# What a call notes for its caller, not for the record: the record's error class is the
# one the front door picks (``error_class``), and ``error_code`` is the reply's business.
_NOT_RECORDED = frozenset({"error_class", "error_code"})


def emit_call(
    audit: AuditLog,
    record: CallRecord,
    outcome: Literal["ok", "error"],
    error_class: str | None,
    started: float,
) -> AuditRecord:
    """Write ``record`` as the call's audit record; ``started`` is its ``time.monotonic()`` start.

    Raises ``AuditError`` (after logging why) if it cannot be written.
    """
    fields = {k: v for k, v in record.fields.items() if k not in _NOT_RECORDED}
    failing = audit.failure is not None  # the log failed before: its first failure was logged in full
    try:
        return audit.emit(
            request_id=record.request_id,
            principal=record.principal,
            tool=record.tool,
            outcome=outcome,
            error_class=error_class if outcome == "error" else None,
            duration_ms=int((time.monotonic() - started) * 1000),
            **fields,
        )
    except AuditError as exc:
        if failing and audit.failure is not None:
            # Every call is refused while the log fails, and each refusal tries to record itself:
            # one traceback says why, then a line per call, until a record is written again.
            log.warning("audit.still_failing", tool=record.tool, why=str(exc))
        else:
            log.exception("audit.write_failed", tool=record.tool)
        raise
    except Exception as exc:  # a bug, but still a call that cannot be recorded: fail closed
        log.exception("audit.write_failed", tool=record.tool)
        raise AuditError(f"cannot write the audit record: {type(exc).__name__}") from exc
