"""One driver per principal and engine: started on demand, supervised, stopped at exit.

Isolation between principals is a driver per principal (Spark Connect has no identity of
its own); the sessions of one principal multiplex on its driver. A supervisor thread per
driver waits on the process: a driver that dies unasked is marked LOST, its sessions
report it, and the next request for that principal starts a new driver.
"""

from __future__ import annotations

import atexit
import contextlib
import threading
from collections.abc import Awaitable, Callable, Mapping
from typing import Protocol

import anyio
import structlog

from spark_mcp.drivers.base import Driver, DriverState
from spark_mcp.drivers.process import terminate
from spark_mcp.errors import DriverError, DriverStartError

log = structlog.get_logger(__name__)


class Backend(Protocol):
    name: str

    async def start(self, principal: str) -> Driver: ...

    async def stop(self, driver: Driver) -> None: ...


OnReady = Callable[[Driver], Awaitable[None]]
OnLost = Callable[[Driver], None]


class DriverPool:
    def __init__(
        self,
        backend: Backend,
        *,
        on_ready: OnReady | None = None,
        on_lost: OnLost | None = None,
        engines: Mapping[str, Backend] | None = None,
    ) -> None:
        # ``backend`` starts Spark drivers; ``engines`` adds others by engine name ("sail").
        self._backends: dict[str, Backend] = {"spark": backend, **(engines or {})}
        self._on_ready = on_ready
        self._on_lost = on_lost
        self._drivers: dict[tuple[str, str], Driver] = {}  # (principal, engine) -> its current driver
        self._all: dict[str, Driver] = {}  # driver id -> driver, while not stopped
        self._locks: dict[tuple[str, str], anyio.Lock] = {}
        self._guard = threading.Lock()
        self._closed = False
        atexit.register(self._kill_all_now)

    def drivers(self) -> list[Driver]:
        with self._guard:
            return sorted(self._all.values(), key=lambda d: d.started_at)

    def get(self, driver_id: str) -> Driver | None:
        with self._guard:
            return self._all.get(driver_id)

    def current(self, principal: str, engine: str = "spark") -> Driver | None:
        with self._guard:
            driver = self._drivers.get((principal, engine))
        return driver if driver is not None and driver.usable else None

    async def acquire(self, principal: str, engine: str = "spark") -> Driver:
        """The principal's ready driver of ``engine``, starting (and preparing) one when there is none."""
        if self._closed:
            raise DriverError("the server is shutting down; no new drivers are started")
        backend = self._backends.get(engine)
        if backend is None:
            raise DriverError(f"the {engine} engine is not available on this server")
        lock = self._locks.setdefault((principal, engine), anyio.Lock())
        async with lock:
            driver = self.current(principal, engine)
            if driver is not None:
                return driver
            driver = await backend.start(principal)
            with self._guard:
                self._all[driver.id] = driver
            self._supervise(driver)
            if self._on_ready is not None:
                try:
                    await self._on_ready(driver)
                except BaseException as exc:
                    await self.stop(driver.id)
                    if isinstance(exc, DriverError):
                        raise
                    if isinstance(exc, Exception):
                        raise DriverStartError(f"the driver started but could not be prepared: {exc}") from exc
                    raise
            with self._guard:
                if self._closed:
                    raise DriverError("the server is shutting down")
                self._drivers[(principal, engine)] = driver
            return driver

    def _supervise(self, driver: Driver) -> None:
        process = driver.process
        if process is None:
            return

        def watch() -> None:
            code = process.wait()
            driver.exit_code = code
            if driver.state in (DriverState.STARTING, DriverState.READY):
                driver.state = DriverState.LOST
                log.error("driver.lost", driver_id=driver.id, principal=driver.principal, exit_code=code)
                with self._guard:
                    if self._drivers.get((driver.principal, driver.engine)) is driver:
                        del self._drivers[(driver.principal, driver.engine)]
                if self._on_lost is not None:
                    self._on_lost(driver)

        threading.Thread(target=watch, name=f"supervise-{driver.id}", daemon=True).start()

    async def stop(self, driver_id: str) -> Driver:
        with self._guard:
            driver = self._all.get(driver_id)
        if driver is None:
            raise DriverError(f"no running driver {driver_id}")
        with self._guard:
            if self._drivers.get((driver.principal, driver.engine)) is driver:
                del self._drivers[(driver.principal, driver.engine)]
        driver.state = DriverState.STOPPING
        await self._backends[driver.engine].stop(driver)
        with self._guard:
            self._all.pop(driver_id, None)
        return driver

    async def stop_all(self) -> None:
        """Stop every driver; called when the server exits. No JVM is left behind."""
        self._closed = True
        drivers = self.drivers()
        if drivers:
            log.info("drivers.stopping_all", count=len(drivers))
        with anyio.CancelScope(shield=True):
            async with anyio.create_task_group() as group:
                for driver in drivers:
                    group.start_soon(self._stop_quietly, driver.id)

    async def _stop_quietly(self, driver_id: str) -> None:
        with contextlib.suppress(DriverError):
            await self.stop(driver_id)

    def _kill_all_now(self) -> None:
        """Last resort at interpreter exit, when no event loop is left to stop drivers politely."""
        for driver in self.drivers():
            if driver.process is not None and driver.process.poll() is None:
                terminate(driver.process.pid, timeout_s=5, proc=driver.process)
