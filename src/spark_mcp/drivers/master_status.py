"""A Spark standalone master's own account of its cluster: the JSON of its web UI (``/json/``).

The master answers with its workers (``state``, ``cores``, ``coresfree``, ``memory``,
``memoryfree`` in MiB) and its applications (``activeapps``: ``id``, ``name``, ``state``
``WAITING``/``RUNNING``, ``cores`` granted, ``memoryperexecutor``). A driver in client mode
starts even when the cluster has no room for its executors, and then waits for them
forever ("Initial job has not accepted any resources"); this status says at once whether
that is so. ``app_verdict`` is the pure reading; ``fetch_status`` the one HTTP call.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any

import structlog

log = structlog.get_logger(__name__)

_MAX_STATUS_BYTES = 4 * 1024**2  # a master with thousands of finished applications stays well below this

Status = Mapping[str, Any]
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def fetch_status(ui_url: str, *, timeout_s: float = 5.0) -> Status | None:
    """The master's status from ``<ui_url>/json/``, or None when it cannot be read (logged, not raised)."""
    try:
        # http(s) only (config validation); never through a proxy from the environment: the
        # master is on the cluster's own network.
        with _OPENER.open(f"{ui_url}/json/", timeout=timeout_s) as response:
            body = response.read(_MAX_STATUS_BYTES + 1)
        if len(body) > _MAX_STATUS_BYTES:
            raise ValueError("the status is larger than 4 MiB")
        status = json.loads(body)
        if not isinstance(status, dict):
            raise ValueError("the status is not a JSON object")
        return status
    except (OSError, ValueError, urllib.error.URLError) as exc:
        log.debug("master.status_unavailable", url=ui_url, error=str(exc))
        return None


def _alive_workers(status: Status) -> list[Mapping[str, Any]]:
    workers = status.get("workers")
    if not isinstance(workers, list):
        return []
    return [w for w in workers if isinstance(w, dict) and w.get("state") == "ALIVE"]


def _int(item: Mapping[str, Any], key: str) -> int:
    value = item.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def describe(status: Status) -> str:
    """One line about the cluster's room, e.g. ``2 alive workers, 0 of 2 cores and 1024 of 2048 MiB free``."""
    workers = _alive_workers(status)
    cores = sum(_int(w, "cores") for w in workers)
    free = sum(_int(w, "coresfree") for w in workers)
    memory = sum(_int(w, "memory") for w in workers)
    memory_free = sum(_int(w, "memoryfree") for w in workers)
    return (
        f"{len(workers)} alive worker{'s' if len(workers) != 1 else ''}, {free} of {cores} cores "
        f"and {memory_free} of {memory} MiB free"
    )


def find_app(status: Status, app_id: str) -> tuple[str, Mapping[str, Any]] | None:
    """``("active" | "completed", app)`` for the application ``app_id``, or None when the master does not list it."""
    for where in ("activeapps", "completedapps"):
        apps = status.get(where)
        if isinstance(apps, list):
            for app in apps:
                if isinstance(app, dict) and app.get("id") == app_id:
                    return where.removesuffix("apps"), app
    return None


def app_verdict(status: Status, app_id: str, *, executor_cores: int, executor_memory_mb: int) -> str | None:
    """Why application ``app_id`` cannot get an executor now, or None when it has or may still get one.

    The master schedules an application as soon as it registers, so one that is listed,
    holds no cores, and finds no alive worker with ``executor_cores`` cores and
    ``executor_memory_mb`` MiB free, will wait until someone else's work ends.
    """
    found = find_app(status, app_id)
    if found is None:
        return None  # not listed yet: keep waiting (the driver's own log said it registered)
    where, app = found
    if where == "completed":
        return f"the master ended application {app_id} (state {app.get('state', 'unknown')}) before it had executors"
    if _int(app, "cores") > 0:
        return None  # cores granted: its executors are starting
    workers = _alive_workers(status)
    if not workers:
        return "the cluster has no alive workers"
    room = [
        w for w in workers if _int(w, "coresfree") >= executor_cores and _int(w, "memoryfree") >= executor_memory_mb
    ]
    if room:
        return None  # the master will place an executor there
    ask = f"each executor asks {executor_cores} core{'s' if executor_cores != 1 else ''} and {executor_memory_mb} MiB"
    big_enough = [w for w in workers if _int(w, "cores") >= executor_cores and _int(w, "memory") >= executor_memory_mb]
    if not big_enough:
        return f"no worker of the cluster is big enough for one executor ({ask}; {describe(status)})"
    return f"the cluster has no free cores or memory for an executor ({ask}; {describe(status)})"
