"""The warm pool: ``pool.size`` spare drivers per profile, started and prepared, owned by no one.

A spare is a driver of a profile with its datasets registered and its built-ins learnt,
waiting. A new owner takes one at once (``take``), and a replacement starts in the
background ``pool.replace_after_s`` later: a JVM booting takes both cores of a small machine
for seconds, and would otherwise slow the very first answers of the principal who just took
the spare (measured with this pause and the one before a next session is opened ahead:
create_session + select 1 for a new principal, 631 ms without them, 253 ms with them).
Spares are sound to share out because nothing in a spare belongs to anyone
yet: the driver process is the same for every principal, and its credentials come from
its profile. Under the ``group`` share level a role's credentials are its profiles'
credentials (a role names the profiles it may use), so a group takes spares the same way.

Spares never push anyone out: one starts only when it fits the quotas without stopping
anything, and a driver someone needs now may stop a spare to make room. A profile whose
spare failed to start is retried after a pause, not in a loop.
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from typing import TYPE_CHECKING

import anyio
import anyio.from_thread
import anyio.lowlevel
import structlog

from spark_mcp.drivers.base import Driver
from spark_mcp.errors import QuotaExceeded, SparkMcpError

if TYPE_CHECKING:
    from spark_mcp.drivers.fleet import Fleet

log = structlog.get_logger(__name__)

_RETRY_AFTER_FAILURE_S = 60.0
_RETRY_WHEN_FULL_S = 10.0
_CHECK_EVERY_S = 5.0


class WarmPool:
    def __init__(self, fleet: Fleet) -> None:
        self._fleet = fleet
        config = fleet.config
        self.size = config.pool.size
        self.replace_after_s = config.pool.replace_after_s
        self.profiles = (tuple(config.pool.profiles) or tuple(fleet.profiles)) if self.size else ()
        self._ready: dict[str, set[str]] = {name: set() for name in fleet.profiles}  # profile -> spare ids
        self._starting: Counter[str] = Counter()
        self._waiting: Counter[str] = Counter()
        self._not_before: dict[str, float] = {}  # profile -> monotonic time of the next try
        self._changed = anyio.Event()
        self._wake = anyio.Event()
        self._token: anyio.lowlevel.EventLoopToken | None = None

    def ready_ids(self) -> set[str]:
        return {driver_id for ids in self._ready.values() for driver_id in ids}

    def ready(self, profile: str) -> list[Driver]:
        ids = self._ready.setdefault(profile, set())
        drivers = {driver_id: self._fleet.get(driver_id) for driver_id in ids}
        ids.difference_update(i for i, d in drivers.items() if d is None or not d.usable)  # died meanwhile
        return sorted((d for d in drivers.values() if d is not None and d.usable), key=lambda d: d.started_at)

    def starting(self, profile: str) -> int:
        return self._starting[profile]

    def claim(self, driver_id: str) -> bool:
        """Take a spare out of the pool (to assign or stop it); False if it was not there."""
        for ids in self._ready.values():
            if driver_id in ids:
                ids.discard(driver_id)
                self.wake()
                return True
        return False

    def add(self, driver: Driver) -> None:
        """A prepared, unassigned driver joins the pool (a new spare, or one re-adopted)."""
        self._ready.setdefault(driver.profile, set()).add(driver.id)
        self._signal()

    async def take(self, profile: str) -> Driver | None:
        """A ready spare of ``profile``, waiting for one that is starting if no one else waits for it."""
        while True:
            for driver in self.ready(profile):
                if self.claim(driver.id):
                    log.info("pool.taken", driver_id=driver.id, profile=profile)
                    later = time.monotonic() + self.replace_after_s
                    self._not_before[profile] = max(self._not_before.get(profile, 0.0), later)
                    return driver
            if self._starting[profile] <= self._waiting[profile]:
                return None
            self._waiting[profile] += 1
            try:
                changed = self._changed
                with anyio.move_on_after(self._fleet.config.driver.startup_timeout_s):
                    await changed.wait()
            finally:
                self._waiting[profile] -= 1

    # -- keeping it full -------------------------------------------------------------------

    def wake(self) -> None:
        self._wake.set()

    def wake_threadsafe(self) -> None:
        """``wake`` from a supervisor thread."""
        if self._token is None:
            return
        with contextlib.suppress(RuntimeError):  # the event loop is gone: nobody to wake
            anyio.from_thread.run_sync(self.wake, token=self._token)

    def _signal(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    async def run(self) -> None:
        """Keep every pooled profile at ``pool.size`` spares until cancelled."""
        self._token = anyio.lowlevel.current_token()
        if not self.profiles:
            return
        async with anyio.create_task_group() as group:
            while True:
                for profile in self.profiles:
                    for _ in range(self._missing(profile)):
                        self._starting[profile] += 1
                        group.start_soon(self._start_spare, profile)
                with anyio.move_on_after(self._next_check()):
                    await self._wake.wait()
                self._wake = anyio.Event()

    def _next_check(self) -> float:
        """Seconds until the next look: at the latest when a deferred replacement is due."""
        now = time.monotonic()
        due = [at - now for at in self._not_before.values() if at > now]
        return min([_CHECK_EVERY_S, *due]) + 0.01

    def _missing(self, profile: str) -> int:
        if time.monotonic() < self._not_before.get(profile, 0.0):
            return 0
        have = len(self.ready(profile)) + self._starting[profile]
        return max(0, self.size - have)

    async def _start_spare(self, profile: str) -> None:
        try:
            driver = await self._fleet.start(self._fleet.profiles[profile], owner=None, principal=None)
        except QuotaExceeded as exc:
            log.info("pool.no_room", profile=profile, quota=exc.quota)
            self._not_before[profile] = time.monotonic() + _RETRY_WHEN_FULL_S
        except SparkMcpError as exc:
            log.error("pool.spare_failed", profile=profile, error=str(exc))
            self._not_before[profile] = time.monotonic() + _RETRY_AFTER_FAILURE_S
        else:
            self._not_before.pop(profile, None)
            self.add(driver)
            log.info("pool.spare_ready", driver_id=driver.id, profile=profile)
        finally:
            self._starting[profile] -= 1
            self._signal()
