"""The fleet: every driver this server runs, who owns each, and the rules for getting one.

A driver is keyed by its owner (``owners``: ``user:<principal>``, ``session:<id>`` or
``group:<role>`` by ``driver.share``) and its profile. Two principals never share a driver
unless ``group`` says so. A request for a driver takes,
in order: the owner's running driver; a ready spare of the profile from the warm pool
(``warm``); a spare of the profile that is starting, if no one else waits for it; or a new
driver, admitted by the quotas (``quotas``). Every driver is supervised: one that dies
unasked is marked LOST and its sessions are told (``supervision``). Every change is written
to the state database (``state.drivers``) so a restart or ``spark-mcp drivers`` can find it.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import itertools
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import anyio
import structlog

from spark_mcp.config import Config
from spark_mcp.drivers.base import Driver, DriverState, Lifetime
from spark_mcp.drivers.endings import DriverEndings
from spark_mcp.drivers.local import DriverSpec, OnLaunch
from spark_mcp.drivers.owners import holder_of, holder_words, quota_holder
from spark_mcp.drivers.process import terminate
from spark_mcp.drivers.profiles import Profile, available_memory_bytes
from spark_mcp.drivers.quotas import FleetUsage, QuotaLimits, admit
from spark_mcp.drivers.reaper import plan_reaping
from spark_mcp.drivers.stuck_tasks import StuckTaskWatch
from spark_mcp.drivers.supervision import driver_row, supervise
from spark_mcp.drivers.warm import WarmPool
from spark_mcp.errors import DriverError, DriverStartError, QuotaExceeded
from spark_mcp.state.drivers import DriverRow, DriverStore, ServerRef

log = structlog.get_logger(__name__)


class Backend(Protocol):
    name: str

    async def start(self, spec: DriverSpec, *, on_launch: OnLaunch | None = None) -> Driver: ...

    async def stop(self, driver: Driver) -> None: ...


@dataclass(frozen=True)
class FleetHooks:
    """What the fleet asks of the layers above it (which know Spark sessions and jobs)."""

    prepare: Callable[[Driver, bool], Awaitable[None]]  # a new driver (a spare?): datasets, built-ins
    retire: Callable[[Driver, str], Awaitable[None]]  # end the sessions on a driver about to stop
    on_lost: Callable[[Driver], None]  # a driver died unasked (called from a supervisor thread)
    open_sessions: Callable[[Driver], int]
    running_jobs: Callable[[Driver], int]


class Fleet:
    def __init__(
        self,
        config: Config,
        profiles: Mapping[str, Profile],
        backends: Mapping[str, Backend],
        store: DriverStore,
        *,
        server: ServerRef,
        memory_budget: int,
        hooks: FleetHooks,
    ) -> None:
        self.config = config
        self.profiles = dict(profiles)
        self.server = server
        # By backend name ("local", "kubernetes"), plus "sail": the engine that brings its own server.
        self._backends = dict(backends)
        self._store = store
        self._hooks = hooks
        self.limits = QuotaLimits(
            max_drivers=config.quotas.max_drivers,
            max_drivers_per_user=config.quotas.max_drivers_per_user,
            max_driver_memory=memory_budget,
            driver_idle_timeout_s=config.quotas.driver_idle_timeout_s,
        )
        self.lifetime = Lifetime(config.driver.lifetime)
        self._all: dict[str, Driver] = {}  # driver id -> driver, until it has stopped
        self._reserved: dict[int, tuple[int, str | None]] = {}  # admitted, not launched: ticket -> (memory, holder)
        self._tickets = itertools.count()
        self._guard = threading.Lock()
        self._owner_locks: dict[tuple[str, str], anyio.Lock] = {}
        self._admission = anyio.Lock()
        self._closed = False
        self.warm = WarmPool(self)
        self._stuck = StuckTaskWatch()
        self.endings = DriverEndings()  # why recent drivers ended, for the gateway's clients
        atexit.register(self._kill_all_now)

    # -- looking ---------------------------------------------------------------------------

    def drivers(self) -> list[Driver]:
        with self._guard:
            return sorted(self._all.values(), key=lambda d: d.started_at)

    def get(self, driver_id: str) -> Driver | None:
        with self._guard:
            return self._all.get(driver_id)

    def assigned(self, owner: str, profile: str, engine: str | None = None) -> Driver | None:
        with self._guard:
            found = [
                d
                for d in self._all.values()
                if d.owner == owner and d.profile == profile and d.usable and (engine is None or d.engine == engine)
            ]
        return found[0] if found else None

    def acquiring(self, owner: str, profile: str, engine: str) -> bool:
        """Whether ``acquire`` is finding or starting the owner's driver right now."""
        lock = self._owner_locks.get((owner, f"{profile}/{engine}"))
        return lock is not None and lock.locked()

    def backend_for(self, engine: str, backend: str) -> Backend:
        found = self._backends.get("sail" if engine == "sail" else backend)
        if found is None:
            raise DriverError(f"the {engine} engine on the {backend} backend is not available on this server")
        return found

    def current(self, principal: str, engine: str = "spark", *, profile: str | None = None) -> Driver | None:
        """A usable ``engine`` driver assigned for ``principal`` (its own, under ``user`` or ``session`` share)."""
        with self._guard:
            found = [
                d
                for d in self._all.values()
                if d.principal == principal
                and d.usable
                and d.engine == engine
                and (profile is None or d.profile == profile)
            ]
        return max(found, key=lambda d: d.assigned_at or 0) if found else None

    def held_by(self, holder: str) -> list[Driver]:
        """The drivers that count against ``holder``'s ``quotas.max_drivers_per_user``."""
        with self._guard:
            return [d for d in self._all.values() if d.owner is not None and quota_holder(d) == holder]

    def usage(self, holder: str | None = None) -> FleetUsage:
        with self._guard:
            live = [d for d in self._all.values() if d.state in (DriverState.STARTING, DriverState.READY)]
            reserved = list(self._reserved.values())
        mine = [d for d in live if holder is not None and d.owner is not None and quota_holder(d) == holder]
        mine_reserved = sum(1 for _, of in reserved if holder is not None and of == holder)
        unused = [d for d in mine if d.usable and not self._busy(d) and self._hooks.open_sessions(d) == 0]
        ready = self.warm.ready_ids()
        spares = sorted((d for d in live if d.id in ready), key=lambda d: d.started_at)
        return FleetUsage(
            drivers=len(live) + len(reserved),
            memory=sum(d.memory_bytes for d in live) + sum(memory for memory, _ in reserved),
            owner_drivers=len(mine) + mine_reserved,
            owner_unused=len(unused),
            spares=[d.memory_bytes for d in spares],
            spares_local=[self._local_memory(d) for d in spares],
        )

    def _local_memory(self, driver: Driver) -> int:
        """What ``driver`` holds on this machine (its executors, if any, are on a cluster)."""
        profile = self.profiles.get(driver.profile)
        return driver.memory_bytes if profile is None else min(driver.memory_bytes, profile.local_memory_bytes)

    def _busy(self, driver: Driver) -> bool:
        return self._hooks.running_jobs(driver) > 0

    # -- getting a driver ------------------------------------------------------------------

    async def acquire(
        self, owner: str, profile_name: str, *, principal: str | None, engine: str | None = None
    ) -> Driver:
        """The owner's ready driver of this profile (and ``engine``, else the profile's): its own,
        a spare, or a new one."""
        if self._closed:
            raise DriverError("the server is shutting down; no new drivers are started")
        profile = self.profiles[profile_name]
        if engine is not None and engine != profile.engine:
            profile = dataclasses.replace(profile, engine=engine)
        own_engine = profile.engine == self.profiles[profile_name].engine
        self.backend_for(profile.engine, profile.backend)  # fail before any lock or quota
        lock = self._owner_locks.setdefault((owner, f"{profile_name}/{profile.engine}"), anyio.Lock())
        async with lock:
            driver = self.assigned(owner, profile_name, profile.engine)
            if driver is not None:
                driver.touch()
                return driver
            spare = await self.warm.take(profile_name) if own_engine else None  # spares run the profile's engine
            if spare is not None:
                return self._assign(spare, owner, principal)
            driver = await self.start(profile, owner=owner, principal=principal)
            return self._assign(driver, owner, principal)

    def _assign(self, driver: Driver, owner: str, principal: str | None) -> Driver:
        with self._guard:
            if self._closed:
                raise DriverError("the server is shutting down")
            driver.owner, driver.principal = owner, principal
            driver.assigned_at = time.time()
            driver.touch()
        self.save(driver)
        log.info("driver.assigned", driver_id=driver.id, owner=owner, profile=driver.profile)
        return driver

    async def start(self, profile: Profile, *, owner: str | None, principal: str | None) -> Driver:
        """Admit (quotas), start, supervise and prepare a driver; it is not assigned yet.

        A spare (no owner) is admitted only if it fits without stopping anything.
        """
        holder = holder_of(owner, principal) if owner is not None else None
        ticket = await self._admit(profile, holder)
        launched: list[Driver] = []

        def on_launch(driver: Driver) -> None:
            with self._guard:
                self._reserved.pop(ticket, None)
                driver.owner, driver.principal = owner, principal  # counted against its owner from now on
                self._all[driver.id] = driver
            launched.append(driver)
            self.save(driver)
            self._supervise(driver)

        lifetime = Lifetime.SERVER if profile.engine == "sail" else self.lifetime  # see SailBackend.start
        spec = DriverSpec(profile, lifetime, self._metastore_dir(owner, principal, profile.name), principal)
        try:
            driver = await self.backend_for(profile.engine, profile.backend).start(spec, on_launch=on_launch)
            await self._hooks.prepare(driver, owner is None)
        except BaseException as exc:
            with self._guard:
                self._reserved.pop(ticket, None)
            with anyio.CancelScope(shield=True):
                for failed in launched:
                    await self._forget_stopped(failed)
            if isinstance(exc, Exception) and not isinstance(exc, DriverError):
                raise DriverStartError(f"the driver started but could not be prepared: {exc}") from exc
            raise
        self.save(driver)
        return driver

    async def _admit(self, profile: Profile, holder: str | None) -> int:
        """Check the quotas, stop what must give way, and reserve room; returns the reservation."""
        async with self._admission:
            usage = self.usage(holder)
            verdict = admit(
                self.limits,
                usage,
                memory=profile.memory_bytes,
                local_memory=profile.local_memory_bytes,
                available=available_memory_bytes(),
                owner=holder_words(holder),
            )
            if holder is None and (verdict.stop_spares or verdict.stop_own_unused):
                raise QuotaExceeded("no room for another spare without stopping one", quota="pool.size")
            if verdict.stop_own_unused and holder is not None:
                unused = [
                    d
                    for d in self.held_by(holder)
                    if d.usable and not self._busy(d) and self._hooks.open_sessions(d) == 0
                ]
                if unused:
                    await self.stop(unused[0].id, reason="making room for another driver of its owner")
            if verdict.stop_spares:
                ready = self.warm.ready_ids()
                spares = sorted((d for d in self.drivers() if d.id in ready), key=lambda d: d.started_at)
                for spare in spares[: verdict.stop_spares]:
                    if self.warm.claim(spare.id):
                        await self.stop(spare.id, reason="making room for a driver someone needs now")
            ticket = next(self._tickets)
            with self._guard:
                self._reserved[ticket] = (profile.memory_bytes, holder)
            return ticket

    def _metastore_dir(self, owner: str | None, principal: str | None, profile: str) -> Path | None:
        """The hive catalog's per-owner metastore (config forbids hive with spares and session share)."""
        if self.config.driver.catalog != "hive" or owner is None:
            return None
        kind, _, name = owner.partition(":")
        base = self.config.home / ("groups" if kind == "group" else "principals") / name
        return base if profile == "default" else base / "profiles" / profile

    # -- letting go ------------------------------------------------------------------------

    async def release(self, driver: Driver) -> None:
        """A session on ``driver`` ended: a session-share driver has no other use and stops."""
        if driver.owner is not None and driver.owner.startswith("session:") and self.get(driver.id) is not None:
            await self.stop(driver.id, reason="its session ended")

    async def stop(self, driver_id: str, *, reason: str = "stopped") -> Driver:
        """End the sessions on a driver, then stop it and forget it."""
        driver = self.get(driver_id)
        if driver is None:
            raise DriverError(f"no running driver {driver_id}")
        self.warm.claim(driver.id)  # a spare being stopped is no longer anyone's to take
        self.endings.note(driver.id, reason, owner=driver.owner, principal=driver.principal)
        if driver.state is DriverState.READY:
            driver.state = DriverState.STOPPING
            await self._hooks.retire(driver, reason)
        log.info("driver.stopping", driver_id=driver.id, reason=reason)
        await self._forget_stopped(driver)
        if driver.spare:
            self.warm.wake()
        return driver

    async def _forget_stopped(self, driver: Driver) -> None:
        if driver.state not in (DriverState.FAILED, DriverState.LOST):
            driver.state = DriverState.STOPPING
        try:
            backend = self.backend_for(driver.engine, driver.backend)
        except DriverError:
            # A leftover of a backend this configuration no longer runs (re-adopted after a
            # change): it is a process on this machine all the same, stopped the local way.
            backend = self._backends["local"]
        await backend.stop(driver)
        with self._guard:
            self._all.pop(driver.id, None)
        self._store.delete(driver.id)

    async def reap(self, now: float | None = None) -> list[str]:
        """Stop drivers past ``quotas.driver_max_lifetime_s`` or idle past ``driver_idle_timeout_s``."""
        plan = plan_reaping(
            self.drivers(),
            now=time.time() if now is None else now,
            idle_timeout_s=self.config.quotas.driver_idle_timeout_s,
            max_lifetime_s=self.config.quotas.driver_max_lifetime_s,
            busy=self._busy,
        )
        stopped = []
        for item in plan:
            with contextlib.suppress(DriverError):
                await self.stop(item.driver.id, reason=item.reason)
                stopped.append(item.driver.id)
        return stopped

    async def stop_stuck(self) -> list[str]:
        """Stop (and so restart) the drivers where Spark could not stop a cancelled query's tasks."""
        stuck = await anyio.to_thread.run_sync(self._stuck.scan, self.drivers())
        stopped = []
        for item in stuck:
            log.error("driver.stuck_tasks", driver_id=item.driver.id, owner=item.driver.owner, tasks=item.task_ids)
            with contextlib.suppress(DriverError):
                await self.stop(item.driver.id, reason=item.reason(self.config.driver.task_kill_timeout_s))
                stopped.append(item.driver.id)
        return stopped

    async def close(self) -> None:
        """The server exits: stop every driver (``server`` lifetime), or let them go (``persistent``)."""
        self._closed = True
        drivers = self.drivers()
        if self.lifetime is Lifetime.PERSISTENT:
            for driver in drivers:
                # Never prepared, or bound to this server (Sail): no next server could use it.
                if driver.state is not DriverState.READY or driver.lifetime is Lifetime.SERVER:
                    with anyio.CancelScope(shield=True), contextlib.suppress(DriverError):
                        await self._forget_stopped(driver)
            self.flush_last_used()
            self._store.release_server(self.server)
            log.info("drivers.left_running", count=sum(d.state is DriverState.READY for d in drivers))
            return
        if drivers:
            log.info("drivers.stopping_all", count=len(drivers))
        with anyio.CancelScope(shield=True):
            async with anyio.create_task_group() as group:
                for driver in drivers:
                    group.start_soon(self._stop_quietly, driver)

    async def _stop_quietly(self, driver: Driver) -> None:
        with contextlib.suppress(DriverError):
            await self._forget_stopped(driver)

    def _kill_all_now(self) -> None:
        """Last resort at interpreter exit, when no event loop is left to stop drivers politely."""
        if self.lifetime is Lifetime.PERSISTENT:
            return
        for driver in self.drivers():
            if driver.process is not None and driver.process.poll() is None:
                terminate(driver.process.pid, timeout_s=5, proc=driver.process)

    # -- supervision and state -------------------------------------------------------------

    def adopt(self, driver: Driver) -> None:
        """Take over a driver a previous server left running (verified by ``recovery``)."""
        with self._guard:
            self._all[driver.id] = driver
        self.save(driver)
        self._supervise(driver)

    def _supervise(self, driver: Driver) -> None:
        supervise(driver, self._lost)

    def _lost(self, driver: Driver) -> None:
        """``driver`` died unasked (called from its supervisor thread): forget it and say so."""
        with self._guard:
            self._all.pop(driver.id, None)
        code = driver.exit_code
        why = "it stopped unexpectedly" + (f", exit code {code}" if code is not None else "")
        self.endings.note(driver.id, why, owner=driver.owner, principal=driver.principal)
        with contextlib.suppress(Exception):
            self._store.delete(driver.id)
        self._hooks.on_lost(driver)
        self.warm.wake_threadsafe()

    def save(self, driver: Driver) -> None:
        self._store.put(self.row(driver))

    def row(self, driver: Driver) -> DriverRow:
        return driver_row(driver, self.server)

    def flush_last_used(self) -> None:
        self._store.touch_many({d.id: d.last_used for d in self.drivers()})
