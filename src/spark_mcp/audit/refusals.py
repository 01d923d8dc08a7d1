"""How many refusals for a credential the audit log records (a console sign-in, a gateway
call): anyone can cause one, so a flood of them from people who hold no credential must not
grow the log (or its fsyncs) without bound.

At most ``per_window`` refusals are recorded in each window of ``window_s`` seconds; the rest
are only logged (stderr). The first refusal recorded after a window in which some were not
says how many were left out, so the log shows that a flood happened and how large it was.
Their principal is ``UNKNOWN_PRINCIPAL`` unless a genuine credential lacked a scope.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable

from spark_mcp.calls import CallRecord
from spark_mcp.identity import is_principal_id

PER_WINDOW = 30
WINDOW_S = 60.0
# No user name can be this (``identity.validate_principal_id``): never mistaken for, or shown
# to, a real user.
UNKNOWN_PRINCIPAL = "(unknown)"


def refused_principal(claimed: str | None) -> str:
    """The principal a refusal is recorded as: the owner a genuine credential names when that
    is a valid user name, else ``UNKNOWN_PRINCIPAL`` (an identity provider's subject can be
    any text, and a refused caller must not write an arbitrary name into the log)."""
    return claimed if claimed is not None and is_principal_id(claimed) else UNKNOWN_PRINCIPAL


def left_out_note(count: int) -> str:
    """What the first refusal recorded after a flood adds to its statement."""
    return f" ({count} more refusals before this one were not recorded)" if count else ""


class RefusalBudget:
    def __init__(
        self, per_window: int = PER_WINDOW, window_s: float = WINDOW_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._per_window = per_window
        self._window_s = window_s
        self._clock = clock
        self._lock = threading.Lock()
        self._window_started: float | None = None
        self._recorded = 0  # in the current window
        self._left_out = 0  # since the last refusal recorded

    def admit(self) -> tuple[bool, int]:
        """Whether to record this refusal, and how many were left out before it (when it is)."""
        with self._lock:
            now = self._clock()
            if self._window_started is None or now - self._window_started >= self._window_s:
                self._window_started, self._recorded = now, 0
            if self._recorded >= self._per_window:
                self._left_out += 1
                return False, 0
            self._recorded += 1
            left_out, self._left_out = self._left_out, 0
            return True, left_out

    def record(self, tool: str, *, claimed: str | None, statement: str, **fields: object) -> CallRecord | None:
        """The audit record of one refusal (its principal from ``refused_principal``, its
        statement saying how many were left out before it), or None past the budget."""
        admitted, left_out = self.admit()
        if not admitted:
            return None
        record = CallRecord(tool=tool, request_id=uuid.uuid4().hex[:16], principal=refused_principal(claimed))
        record.fields.update(fields, statement=statement + left_out_note(left_out))
        return record
