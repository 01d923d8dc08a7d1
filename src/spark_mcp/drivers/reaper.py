"""Which drivers the reapers stop, and why: a pure function over the fleet's drivers.

- ``quotas.driver_max_lifetime_s`` (when not 0): a driver, spare or assigned, that has run
  longer than this is stopped (a spare is then replaced). A long-lived JVM accumulates
  memory and state; a fresh one is cheap with a warm pool.
- ``quotas.driver_idle_timeout_s`` (when not 0): an assigned driver nobody has used for this
  long is stopped; its sessions end, and the next call gets a new driver (from the pool
  when there is one). Spares are never idle-reaped: waiting is their job.
- Neither reaper stops a driver while a job runs on it; it is looked at again next round.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from spark_mcp.drivers.base import Driver, DriverState


@dataclass(frozen=True)
class Reaping:
    driver: Driver
    reason: str


def plan_reaping(
    drivers: Iterable[Driver],
    *,
    now: float,
    idle_timeout_s: float,
    max_lifetime_s: float,
    busy: Callable[[Driver], bool],
) -> list[Reaping]:
    """The drivers to stop at ``now``, each with the reason its sessions will be told."""
    plan: list[Reaping] = []
    for driver in drivers:
        if driver.state is not DriverState.READY or busy(driver):
            continue
        if max_lifetime_s > 0 and now - driver.started_at > max_lifetime_s:
            plan.append(Reaping(driver, f"its driver reached quotas.driver_max_lifetime_s ({max_lifetime_s:g} s)"))
        elif idle_timeout_s > 0 and not driver.spare and now - driver.last_used > idle_timeout_s:
            plan.append(
                Reaping(
                    driver, f"its driver was idle for more than quotas.driver_idle_timeout_s ({idle_timeout_s:g} s)"
                )
            )
    return plan
