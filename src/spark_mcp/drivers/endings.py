"""Why each recently ended driver ended, for the clients that come back to it.

An MCP session on a driver that stops is told why when it is closed (``sessions.retire``).
A Spark Connect client of the gateway holds its session on the driver itself, so it only
learns, at its next call, that the session is gone (Spark's ``INVALID_HANDLE.SESSION_CHANGED``).
The fleet notes here why each driver ended, stopped on purpose (idle, lifetime, stuck tasks,
the console) or lost, so that the gateway can add the reason to that error, and the console
can show people why the driver they had is gone (``recent``).

Kept in memory for the last ``KEPT`` drivers: a server restart forgets it, as the gateway
forgets which driver each client session was on.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

KEPT = 1000


@dataclass(frozen=True)
class Ending:
    driver_id: str
    reason: str  # as sessions are told: "its driver was idle for more than ..."
    at: float  # time.time()
    owner: str | None = None  # the driver's owner key (None: a spare of the warm pool)
    principal: str | None = None  # whose own driver it was (None: shared by a role, or a spare)

    @property
    def when(self) -> str:
        return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(self.at))


class DriverEndings:
    """The reasons, by driver id. Thread-safe: a lost driver is noted from its supervisor thread."""

    def __init__(self, *, kept: int = KEPT) -> None:
        self._kept = kept
        self._by_id: OrderedDict[str, Ending] = OrderedDict()
        self._lock = threading.Lock()

    def note(
        self,
        driver_id: str,
        reason: str,
        *,
        at: float | None = None,
        owner: str | None = None,
        principal: str | None = None,
    ) -> None:
        ending = Ending(driver_id, reason, time.time() if at is None else at, owner, principal)
        with self._lock:
            self._by_id.setdefault(driver_id, ending)  # the first reason is the cause; a later stop only tidies up
            while len(self._by_id) > self._kept:
                self._by_id.popitem(last=False)

    def get(self, driver_id: str) -> Ending | None:
        with self._lock:
            return self._by_id.get(driver_id)

    def recent(self, principal: str | None, limit: int) -> list[Ending]:
        """The last ``limit`` endings of ``principal``'s own drivers, newest first; with None,
        of every driver that had an owner (a spare of the warm pool served nobody)."""
        with self._lock:
            kept = list(self._by_id.values())
        mine = [e for e in kept if (e.principal == principal if principal is not None else e.owner is not None)]
        return sorted(mine, key=lambda e: e.at, reverse=True)[:limit]


def ended_session(driver_id: str, ending: Ending | None) -> str:
    """What a client whose session was on ``driver_id`` is told once that driver has ended."""
    what = f"ended at {ending.when} ({ending.reason})" if ending is not None else "is no longer running"
    return (
        f"spark-mcp: this session was on Spark driver {driver_id}, which {what}. Its temp views, cached data "
        "and settings went with it: create a new session (SparkSession.builder.remote(...).create()) to go on, "
        "on a new driver."
    )
