"""How many Spark Connect sessions each caller has open through the gateway.

A client names its session: any new UUID makes the driver create one, and a session holds
its state (settings, temp views, cached relations, artifacts) in the driver's memory until it
is released or Spark drops it as idle. Without a count, one caller with a loop could fill a
driver's memory, and a driver shared by a group or a team serves the others too. So each
caller may have at most ``[gateway] max_sessions_per_user`` sessions; a session counts from
its first call until the client releases it (``spark.stop()``) or it has been idle for
``limits.session_idle_timeout_s`` (Spark's own default drops idle sessions after the same hour).

Each session also remembers the driver it was on. A driver that stops (idle, lifetime, an
admin) takes the session with it, and the client's next call reaches a new driver, which
answers ``INVALID_HANDLE.SESSION_CHANGED``: the gateway adds why the old one ended
(``moved_from``, then the fleet's ``endings``), which Spark cannot know.

The count lives in the gateway process: a restart forgets it, as the drivers it started
forget their sessions with it.
"""

from __future__ import annotations

import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from spark_mcp.errors import InvalidInput, LimitExceeded


def session_id_of(value: str, what: str = "session_id") -> str:
    """Spark Connect session ids are UUIDs; anything else is refused before it goes anywhere."""
    try:
        uuid.UUID(value)
    except (ValueError, TypeError):
        raise InvalidInput(f"{what} must be a UUID, e.g. {uuid.uuid4()}") from None
    return value


@dataclass
class _Seen:
    last_used: float
    driver_id: str | None  # the driver its last call reached
    moved_from: str | None = None  # the driver it was on before, once a call reached another


class OpenSessions:
    """Sessions by caller, the least recently used first. Used on the event loop only."""

    def __init__(self, *, limit: int, idle_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._limit = limit
        self._idle_s = idle_s
        self._clock = clock
        self._seen: dict[str, OrderedDict[str, _Seen]] = {}

    def admit(self, principal_id: str, session_id: str, driver_id: str | None = None) -> str | None:
        """Count a call in ``session_id`` on ``driver_id`` (None: a call that reaches no driver);
        refuse a new session beyond the caller's limit. Returns the driver the session was on
        before it reached this one, if it did (``moved_from``), else None."""
        now = self._clock()
        seen = self._seen.setdefault(principal_id, OrderedDict())
        found = seen.get(session_id)
        if found is not None:
            found.last_used = now
            if driver_id is not None and found.driver_id is not None and driver_id != found.driver_id:
                found.moved_from = found.driver_id
            found.driver_id = driver_id or found.driver_id
            seen.move_to_end(session_id)
            return found.moved_from
        while seen and now - next(iter(seen.values())).last_used > self._idle_s:
            seen.popitem(last=False)
        if len(seen) >= self._limit:
            raise LimitExceeded(
                f"gateway.max_sessions_per_user: you have {len(seen)} Spark Connect sessions open through the "
                f"gateway, the most allowed: stop one you no longer use (spark.stop()), or wait until one has "
                f"been idle for {self._idle_s / 60:g} min"
            )
        seen[session_id] = _Seen(now, driver_id)
        return None

    def forget(self, principal_id: str, session_id: str) -> None:
        """The client released the session."""
        seen = self._seen.get(principal_id)
        if seen is not None:
            seen.pop(session_id, None)
            if not seen:
                del self._seen[principal_id]
