"""At start: re-adopt the drivers a previous server left running, stop the orphans, forget the dead.

Each driver row of this home whose server is gone (or that a server let go at exit) is
looked at once:

- its process is gone: the row and the driver's secrets are removed;
- it is alive but cannot be shown to be ours (the pid's start time differs, so the pid was
  reused, or the command line lacks the driver's marker): it is not signalled, only forgotten;
- it is ours, and both it and this server are ``persistent``: it is re-adopted if its
  profile still exists, its token file is intact and a health call with that token
  succeeds; otherwise it is stopped;
- it is ours in any other case (``server`` lifetime, e.g. after a ``kill -9`` of its server
  on a system without a parent-death signal): it is an orphan, and it is stopped.

Rows whose server is alive belong to that server and are left alone, so two servers can
share a home without stopping each other's drivers.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import structlog

from spark_mcp.drivers.base import Driver, DriverState, Lifetime
from spark_mcp.drivers.files import read_token, remove_secrets, remove_workdir
from spark_mcp.drivers.fleet import Fleet
from spark_mcp.drivers.process import is_same_process, process_has_marker, process_start_time, terminate
from spark_mcp.errors import SparkMcpError
from spark_mcp.state.drivers import DriverRow, DriverStore, ServerRef

log = structlog.get_logger(__name__)

Probe = Callable[[Driver], Awaitable[None]]
_PROBE_TIMEOUT_S = 60.0


@dataclass
class Recovery:
    adopted: list[Driver] = field(default_factory=list)
    stopped: list[str] = field(default_factory=list)  # orphans, or drivers that failed verification
    forgotten: list[str] = field(default_factory=list)  # rows whose process was gone (or not ours)
    foreign: list[str] = field(default_factory=list)  # drivers of another live server, left alone


def this_server() -> ServerRef:
    pid = os.getpid()
    return ServerRef(pid, process_start_time(pid))


def server_alive(server: ServerRef | None) -> bool:
    return server is not None and is_same_process(server.pid, server.start)


def is_ours(row: DriverRow) -> bool:
    """The row's pid is alive, is the process that was started (start time), and is this driver."""
    return row.pid is not None and is_same_process(row.pid, row.pid_start) and process_has_marker(row.pid, row.marker)


async def recover(fleet: Fleet, store: DriverStore, probe: Probe) -> Recovery:
    report = Recovery()
    for row in store.all():
        if row.server is not None and row.server != fleet.server and server_alive(row.server):
            report.foreign.append(row.id)  # another live server's driver
            continue
        if not is_ours(row):
            store.delete(row.id)
            remove_secrets(Path(row.workdir))
            report.forgotten.append(row.id)
            continue
        adopted = await _try_adopt(fleet, row, probe) if _adoptable(fleet, row) else None
        if adopted is not None:
            report.adopted.append(adopted)
            continue
        await stop_row(row, timeout_s=fleet.config.driver.stop_timeout_s)
        store.delete(row.id)
        report.stopped.append(row.id)
    if report.adopted or report.stopped or report.forgotten:
        log.info(
            "drivers.recovered",
            adopted=[d.id for d in report.adopted],
            stopped=report.stopped,
            forgotten=report.forgotten,
        )
    return report


def _adoptable(fleet: Fleet, row: DriverRow) -> bool:
    if fleet.lifetime is not Lifetime.PERSISTENT or row.lifetime != Lifetime.PERSISTENT.value:
        return False
    if row.state != DriverState.READY.value or row.profile not in fleet.profiles:
        return False
    return row.owner is not None or row.profile in fleet.warm.profiles


async def _try_adopt(fleet: Fleet, row: DriverRow, probe: Probe) -> Driver | None:
    token = read_token(Path(row.workdir))
    if token is None:
        log.warning("driver.not_adopted", driver_id=row.id, why="its token file is missing or not private")
        return None
    driver = Driver(
        id=row.id,
        profile=row.profile,
        backend=row.backend,
        host=row.host,
        port=row.port,
        workdir=Path(row.workdir),
        log_path=Path(row.log),
        token=token,
        engine=row.engine,
        memory_bytes=row.memory_bytes,
        lifetime=Lifetime(row.lifetime),
        owner=row.owner,
        principal=row.principal,
        pid=row.pid,
        pid_start=row.pid_start,
        state=DriverState.READY,
        started_at=row.started_at,
        ready_at=row.ready_at,
        assigned_at=row.ready_at if row.owner else None,
        last_used=row.last_used,
        adopted=True,
        spark_version=row.spark_version,
    )
    try:
        with anyio.fail_after(_PROBE_TIMEOUT_S):
            await probe(driver)
    except (SparkMcpError, TimeoutError) as exc:
        log.warning("driver.not_adopted", driver_id=row.id, why=f"its health call failed: {exc}")
        return None
    fleet.adopt(driver)
    if driver.owner is None:
        fleet.warm.add(driver)
    log.info("driver.adopted", driver_id=driver.id, owner=driver.owner, pid=driver.pid)
    return driver


async def stop_row(row: DriverRow, *, timeout_s: float) -> bool:
    """Stop the process of a verified driver row and remove its folder; True once it is gone."""
    pid = row.pid
    stopped = True
    if pid is not None and is_ours(row):
        with contextlib.suppress(OSError):
            stopped = await anyio.to_thread.run_sync(lambda: terminate(pid, timeout_s=timeout_s))
    remove_workdir(Path(row.workdir))
    log.info("driver.orphan_stopped", driver_id=row.id, pid=pid, stopped=stopped)
    return stopped
