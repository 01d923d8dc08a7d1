"""Statements that change how a session resolves names run alone in that session.

A statement is judged on the names Spark resolved when it was analysed, and runs later.
``USE hr`` sent between the two, in the same session, would make ``SELECT * FROM orders``
analysed as ``sales.orders`` run as ``hr.orders``: judged on one table, reading another.
So every statement that reads through names holds a shared lease on its session's gate
from its analysis until its job ends, and a statement that changes name resolution
(``USE``, ``SET CATALOG``, ``SET``/``RESET``) takes the lease alone: it waits for the
statements already admitted, and statements that come after it wait for it (it is not
starved by a stream of readers), and it is analysed again once it has the gate.

Leases are not tied to a thread: a lease taken while analysing is released by the job
that ran the statement, on one of the job threads.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable

from spark_mcp.statement import StatementFacts

# Analyzed-plan roots whose effect is to change how later statements resolve names.
SCOPE_CHANGERS = frozenset(
    {
        "SetCatalogAndNamespace",
        "SetCatalogCommand",
        "SetNamespaceCommand",
        "SetCommand",
        "ResetCommand",
        "SetPathCommand",
    }
)


def changes_scope(facts: StatementFacts) -> bool:
    return facts.operation in SCOPE_CHANGERS


class ScopeGate:
    """A readers-writer gate with writer preference; its leases may be released from any thread.

    Taking a lease never blocks (``try_*``): the async caller polls, so a cancelled caller
    can never end up holding a lease it does not know about.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._shared = 0
        self._exclusive = False
        self._exclusive_waiting = 0

    def try_shared(self) -> bool:
        with self._lock:
            if self._exclusive or self._exclusive_waiting:
                return False
            self._shared += 1
            return True

    def release_shared(self) -> None:
        with self._lock:
            self._shared -= 1

    def want_exclusive(self, wanted: bool) -> None:
        """Announce (or withdraw) a waiting exclusive statement: new shared leases wait behind it."""
        with self._lock:
            self._exclusive_waiting += 1 if wanted else -1

    def try_exclusive(self) -> bool:
        with self._lock:
            if self._exclusive or self._shared:
                return False
            self._exclusive = True
            return True

    def release_exclusive(self) -> None:
        with self._lock:
            self._exclusive = False


class Lease:
    """One statement's hold on a gate; ``release`` is idempotent, so every exit path may call it."""

    def __init__(self, release: Callable[[], None]) -> None:
        self._release: Callable[[], None] | None = release
        self._lock = threading.Lock()

    def release(self) -> None:
        with self._lock:
            release, self._release = self._release, None
        if release is not None:
            release()


class ScopeGates:
    """The gate of each live session (sessions are keys, so a closed and dropped one frees its gate)."""

    def __init__(self) -> None:
        self._gates: weakref.WeakKeyDictionary[object, ScopeGate] = weakref.WeakKeyDictionary()
        self._guard = threading.Lock()

    def gate(self, session: object) -> ScopeGate:
        with self._guard:
            gate = self._gates.get(session)
            if gate is None:
                gate = self._gates[session] = ScopeGate()
            return gate
