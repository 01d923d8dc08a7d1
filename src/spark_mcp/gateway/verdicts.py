"""Reusing a verdict for the very same plan, a moment later, in the same session.

PySpark asks twice about most DataFrame actions: ``toArrow()`` first analyses the plan for
its schema (``AnalyzePlan``), then runs it (``ExecutePlan``); ``spark.sql("SELECT ...")``
answers with the query's relation, which the client then analyses and runs. Without this,
the gateway would have Spark analyse each of those byte-identical plans again.

A verdict is reused only when all of these hold, and never for a denial:

- the same principal (with the same roles and credential scope), the same session, and a
  byte-identical relation (``govern.reusable_form``: but for the plan id of one that is
  nothing but ``spark.sql(...)``, which PySpark renumbers);
- within ``TTL_S`` seconds;
- nothing changed the session through the gateway since (a command, a config change, an
  artifact, the session's release): each of those forgets the session's verdicts.

What it cannot see is a change to the catalog made elsewhere (another session redefining a
view); the window that opens is the same in kind as the one between any analysis and
Spark's own, at execution, only a few seconds wider at most.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from spark_mcp.governance import Verdict
from spark_mcp.identity import Principal

TTL_S = 5.0
MAX_ENTRIES = 2048

Key = tuple[str, tuple[str, ...], bool, str, str]


class VerdictCache:
    def __init__(self, *, ttl_s: float = TTL_S, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl_s = ttl_s
        self._clock = clock
        self._entries: OrderedDict[Key, tuple[float, Verdict]] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def key(principal: Principal, session_id: str, plan: bytes) -> Key:
        digest = hashlib.sha256(plan).hexdigest()
        return (principal.id, principal.roles, principal.read_only, session_id, digest)

    def get(self, key: Key) -> Verdict | None:
        with self._lock:
            found = self._entries.get(key)
            if found is None:
                return None
            at, verdict = found
            if self._clock() - at > self._ttl_s:
                del self._entries[key]
                return None
            return verdict

    def put(self, key: Key, verdict: Verdict) -> None:
        if not verdict.allowed:
            return
        with self._lock:
            self._entries[key] = (self._clock(), verdict)
            self._entries.move_to_end(key)
            while len(self._entries) > MAX_ENTRIES:
                self._entries.popitem(last=False)

    def forget(self, principal_id: str, session_id: str) -> None:
        """The session changed: none of its verdicts may be reused."""
        with self._lock:
            for key in [k for k in self._entries if k[0] == principal_id and k[3] == session_id]:
                del self._entries[key]
