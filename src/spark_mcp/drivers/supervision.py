"""Watching a driver's process, and the row the state database keeps for a driver.

Every driver the fleet starts or adopts is supervised: a thread waits for its process (or,
for an adopted one, its pid) to exit. One that dies while READY, unasked, is marked LOST and
reported; one that dies while starting is reported by its backend, with its log. The row is
what a restart, or ``spark-mcp drivers``, reads back.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import structlog

from spark_mcp.drivers.base import Driver, DriverState
from spark_mcp.drivers.process import wait_for_exit
from spark_mcp.state.drivers import DriverRow, ServerRef

log = structlog.get_logger(__name__)


def supervise(driver: Driver, on_lost: Callable[[Driver], None]) -> None:
    """Watch ``driver`` on a daemon thread; ``on_lost`` runs there if it dies while READY."""
    process, pid = driver.process, driver.pid
    if process is None and pid is None:
        return

    def watch() -> None:
        if process is not None:
            driver.exit_code = process.wait()
        elif pid is not None:
            wait_for_exit(pid)
        # One that dies while starting is reported by the backend, with its log.
        if driver.state is DriverState.READY:
            driver.state = DriverState.LOST
            log.error("driver.lost", driver_id=driver.id, owner=driver.owner, exit_code=driver.exit_code)
            on_lost(driver)

    threading.Thread(target=watch, name=f"supervise-{driver.id}", daemon=True).start()


def driver_row(driver: Driver, server: ServerRef) -> DriverRow:
    """The state database's record of ``driver``, owned by ``server``."""
    return DriverRow(
        id=driver.id,
        engine=driver.engine,
        backend=driver.backend,
        profile=driver.profile,
        owner=driver.owner,
        principal=driver.principal,
        lifetime=driver.lifetime.value,
        state=driver.state.value,
        host=driver.host,
        port=driver.port,
        pid=driver.pid,
        pid_start=driver.pid_start,
        memory_bytes=driver.memory_bytes,
        workdir=str(driver.workdir),
        log=str(driver.log_path),
        server_pid=server.pid,
        server_start=server.start,
        started_at=driver.started_at,
        ready_at=driver.ready_at,
        last_used=driver.last_used,
        spark_version=driver.spark_version,
    )
