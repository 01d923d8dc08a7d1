"""How many Spark Connect sessions each caller has open through the gateway.

A client names its session: any new UUID makes the driver create one, and a session holds
its state (settings, temp views, cached relations, artifacts) in the driver's memory until it
is released or Spark drops it as idle. Without a count, one caller with a loop could fill a
driver's memory, and a driver shared by a group or a team serves the others too. So each
caller may have at most ``[gateway] max_sessions_per_user`` sessions; a session counts from
its first call until the client releases it (``spark.stop()``) or it has been idle for
``limits.session_idle_timeout_s`` (Spark's own default drops idle sessions after the same hour).

The count lives in the gateway process: a restart forgets it, as the drivers it started
forget their sessions with it.
"""

from __future__ import annotations

import time
import uuid
from collections import OrderedDict
from collections.abc import Callable

from spark_mcp.errors import InvalidInput, LimitExceeded


def session_id_of(value: str, what: str = "session_id") -> str:
    """Spark Connect session ids are UUIDs; anything else is refused before it goes anywhere."""
    try:
        uuid.UUID(value)
    except (ValueError, TypeError):
        raise InvalidInput(f"{what} must be a UUID, e.g. {uuid.uuid4()}") from None
    return value


class OpenSessions:
    """Sessions by caller, the least recently used first. Used on the event loop only."""

    def __init__(self, *, limit: int, idle_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._limit = limit
        self._idle_s = idle_s
        self._clock = clock
        self._seen: dict[str, OrderedDict[str, float]] = {}

    def admit(self, principal_id: str, session_id: str) -> None:
        """Count a call in ``session_id``; refuse a new session beyond the caller's limit."""
        now = self._clock()
        seen = self._seen.setdefault(principal_id, OrderedDict())
        if session_id in seen:
            seen[session_id] = now
            seen.move_to_end(session_id)
            return
        while seen and now - next(iter(seen.values())) > self._idle_s:
            seen.popitem(last=False)
        if len(seen) >= self._limit:
            raise LimitExceeded(
                f"gateway.max_sessions_per_user: you have {len(seen)} Spark Connect sessions open through the "
                f"gateway, the most allowed: stop one you no longer use (spark.stop()), or wait until one has "
                f"been idle for {self._idle_s / 60:g} min"
            )
        seen[session_id] = now

    def forget(self, principal_id: str, session_id: str) -> None:
        """The client released the session."""
        seen = self._seen.get(principal_id)
        if seen is not None:
            seen.pop(session_id, None)
            if not seen:
                del self._seen[principal_id]
