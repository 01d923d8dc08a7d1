"""Driver quotas as one pure decision: may a new driver start, and what must stop first?

The rules, in order:

1. ``quotas.max_drivers_per_user``: the owner (a user, a session, or a group under the
   ``group`` share level) holds fewer drivers than this. If it is at the limit but one of
   its drivers has no open session and no running job, that driver is stopped to make
   room; otherwise the request is refused.
2. ``quotas.max_drivers``: fewer drivers than this run in total, spares included. Spares
   (warm, unassigned drivers) are stopped to make room before anyone is refused.
3. ``quotas.max_driver_memory``: the memory of all drivers (heap plus overhead) stays
   within this sum; again spares give way first.
4. The machine: the memory the kernel says is available (plus what stopped spares give
   back) must hold the new driver, or it would be killed or make others swap.

A refusal names the quota (its config key) and what frees it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from spark_mcp.errors import QuotaExceeded


@dataclass(frozen=True)
class QuotaLimits:
    max_drivers: int
    max_drivers_per_user: int
    max_driver_memory: int  # bytes
    driver_idle_timeout_s: float


@dataclass(frozen=True)
class FleetUsage:
    drivers: int  # running or starting, spares included
    memory: int  # bytes those drivers count for
    owner_drivers: int  # drivers the requesting owner holds
    owner_unused: int  # of those, drivers with no open session and no running job
    spares: Sequence[int] = ()  # memory of each spare that may be stopped, in the order to stop them


@dataclass(frozen=True)
class Admission:
    stop_own_unused: bool = False  # stop one of the owner's unused drivers first
    stop_spares: int = 0  # stop this many spares (from the front of ``FleetUsage.spares``) first


def gib(value: int) -> str:
    return f"{value / 1024**3:.1f} GiB" if value >= 1024**3 else f"{value / 1024**2:.0f} MiB"


def admit(limits: QuotaLimits, usage: FleetUsage, *, memory: int, available: int | None, owner: str) -> Admission:
    """How a driver needing ``memory`` bytes may start for ``owner``; ``QuotaExceeded`` when it may not."""
    stop_own = False
    drivers, held = usage.drivers, usage.memory
    if usage.owner_drivers >= limits.max_drivers_per_user:
        if usage.owner_unused == 0:
            raise QuotaExceeded(
                f"quotas.max_drivers_per_user: {owner} already has {usage.owner_drivers} driver(s), the most "
                f"one owner may hold is {limits.max_drivers_per_user}. Close the sessions on one of them "
                "(close_session; list_sessions shows each session's driver and profile): a driver left with "
                "no session is stopped to make room.",
                quota="quotas.max_drivers_per_user",
            )
        stop_own = True
        drivers -= 1  # the stopped driver's memory is unknown here; the fleet frees it before starting
    freeing = _idle_words(limits)
    spares = list(usage.spares)
    stop_spares = 0
    while drivers + 1 > limits.max_drivers and stop_spares < len(spares):
        drivers, held, stop_spares = drivers - 1, held - spares[stop_spares], stop_spares + 1
    if drivers + 1 > limits.max_drivers:
        raise QuotaExceeded(
            f"quotas.max_drivers: all {limits.max_drivers} drivers this server may run are in use. One frees up "
            f"when {freeing}, or when an operator stops one (spark-mcp drivers stop ID). Try again later.",
            quota="quotas.max_drivers",
        )
    while held + memory > limits.max_driver_memory and stop_spares < len(spares):
        drivers, held, stop_spares = drivers - 1, held - spares[stop_spares], stop_spares + 1
    if held + memory > limits.max_driver_memory:
        raise QuotaExceeded(
            f"quotas.max_driver_memory: this driver needs {gib(memory)} but drivers already hold {gib(held)} "
            f"of the {gib(limits.max_driver_memory)} allowed. Memory frees up when {freeing}; a profile with "
            "less memory may fit now.",
            quota="quotas.max_driver_memory",
        )
    if available is not None:
        while available + sum(spares[:stop_spares]) < memory and stop_spares < len(spares):
            stop_spares += 1
        returned = sum(spares[:stop_spares])
        if available + returned < memory:
            raise QuotaExceeded(
                f"machine memory: this driver needs {gib(memory)} but the machine has only "
                f"{gib(available + returned)} available. Memory frees up when {freeing}; a profile with less "
                "memory may fit now.",
                quota="machine memory",
            )
    return Admission(stop_own_unused=stop_own, stop_spares=stop_spares)


def _idle_words(limits: QuotaLimits) -> str:
    if limits.driver_idle_timeout_s > 0:
        return (
            f"a driver's sessions close and it has been idle for quotas.driver_idle_timeout_s "
            f"({limits.driver_idle_timeout_s:g} s)"
        )
    return "a driver's sessions close (quotas.driver_idle_timeout_s is 0, so idle drivers are kept)"
