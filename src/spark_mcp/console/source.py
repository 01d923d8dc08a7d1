"""What the console reads from the running ``App``, and the few things it asks it to do.

This module is the console's only contact with drivers, sessions and jobs: the pages and
actions see plain views (``DriverView``...), so when the driver layer changes (profiles,
a fleet, state in SQLite) only this file changes with it.

"Everyone" means every principal this server knows of now: the owners of its drivers,
of its open sessions (each sits on its owner's driver) and of its unfinished jobs.
"""

from __future__ import annotations

from dataclasses import dataclass

from spark_mcp.app import App
from spark_mcp.drivers import Driver, DriverState
from spark_mcp.errors import NotFound
from spark_mcp.jobs import Job
from spark_mcp.sessions import Session

_STATEMENT_SHOWN = 160  # characters of a job's statement in a listing
DEFAULT_PROFILE = "default"  # drivers have no profiles yet: every driver runs the server's driver settings


@dataclass(frozen=True)
class DriverView:
    id: str
    principal: str
    state: str
    profile: str
    engine: str
    started_at: float
    memory: str  # what the driver may use, as configured (e.g. "1g"), or "-" when unbounded
    stoppable: bool


@dataclass(frozen=True)
class SessionView:
    id: str
    principal: str
    state: str
    default: bool
    driver_id: str
    engine: str
    created_at: float
    last_used: float
    open: bool


@dataclass(frozen=True)
class JobView:
    id: str
    principal: str
    session_id: str
    state: str
    statement: str  # shortened, with secrets redacted
    created_at: float
    elapsed_ms: int
    running: bool


# -- drivers -----------------------------------------------------------------------------


def drivers(app: App, principal: str | None) -> list[DriverView]:
    """The running drivers of ``principal`` (None: everyone's), oldest first."""
    return [_driver_view(app, d) for d in app.drivers.drivers() if principal is None or d.principal == principal]


def find_driver(app: App, driver_id: str) -> DriverView | None:
    driver = app.drivers.get(driver_id) if _plausible(driver_id) else None
    return _driver_view(app, driver) if driver is not None else None


async def stop_driver(app: App, driver_id: str) -> None:
    """Stop a driver and everything on it (its sessions report it when next used)."""
    driver = app.drivers.get(driver_id)
    if driver is None:
        raise NotFound(f"no driver {driver_id}")
    await app.drivers.stop(driver_id)
    app.sessions.on_driver_lost(driver)


def _driver_view(app: App, driver: Driver) -> DriverView:
    memory = app.config.driver.memory if driver.engine == "spark" else "-"
    return DriverView(
        id=driver.id,
        principal=driver.principal,
        state=driver.state.value,
        profile=DEFAULT_PROFILE,
        engine=driver.engine,
        started_at=driver.started_at,
        memory=memory,
        stoppable=driver.state in (DriverState.STARTING, DriverState.READY, DriverState.LOST),
    )


# -- sessions ----------------------------------------------------------------------------


def _principals(app: App) -> list[str]:
    known = [d.principal for d in app.drivers.drivers()] + [j.principal for j in app.jobs.running()]
    return sorted(set(known))


def sessions(app: App, principal: str | None) -> list[SessionView]:
    """The sessions of ``principal`` (None: everyone's), oldest first."""
    owners = [principal] if principal is not None else _principals(app)
    found = [_session_view(s) for owner in owners for s in app.sessions.list_for(owner)]
    return sorted(found, key=lambda s: s.created_at)


def find_session(app: App, session_id: str, principal: str | None) -> SessionView | None:
    """The session called ``session_id`` if ``principal`` owns it (None: whoever does)."""
    if not _plausible(session_id, "ses_"):
        return None
    owners = [principal] if principal is not None else _principals(app)
    for owner in owners:
        try:
            return _session_view(app.sessions.get(owner, session_id))
        except NotFound:
            continue
    return None


async def close_session(app: App, view: SessionView) -> None:
    await app.sessions.close(view.principal, view.id)


def _session_view(session: Session) -> SessionView:
    return SessionView(
        id=session.id,
        principal=session.principal,
        state=session.state.value,
        default=session.default,
        driver_id=session.driver.id,
        engine=session.driver.engine,
        created_at=session.created_at,
        last_used=session.last_used,
        open=session.state.value == "open",
    )


# -- jobs --------------------------------------------------------------------------------


def jobs(app: App, principal: str | None, limit: int) -> list[JobView]:
    """The most recent jobs of ``principal`` (None: everyone's), newest first."""
    owners = [principal] if principal is not None else _principals(app)
    found = [j for owner in owners for j in app.jobs.list_for(owner)]
    found.sort(key=lambda j: j.created_at, reverse=True)
    return [_job_view(app, j) for j in found[:limit]]


def find_job(app: App, job_id: str, principal: str | None) -> JobView | None:
    if not _plausible(job_id, "job_"):
        return None
    owners = [principal] if principal is not None else _principals(app)
    for owner in owners:
        try:
            return _job_view(app, app.jobs.get(owner, job_id))
        except NotFound:
            continue
    return None


async def cancel_job(app: App, view: JobView) -> str:
    """Ask the job to stop; returns its state when the console answers (the stop goes on)."""
    job = app.jobs.get(view.principal, view.id)
    if not job.state.terminal:
        app.jobs.stop_in_background(job)
    return job.state.value


def _job_view(app: App, job: Job) -> JobView:
    statement = app.redactor.redact(" ".join(job.statement.split()))
    if len(statement) > _STATEMENT_SHOWN:
        statement = statement[: _STATEMENT_SHOWN - 1] + "…"
    return JobView(
        id=job.id,
        principal=job.principal,
        session_id=job.session_id,
        state=job.state.value,
        statement=statement,
        created_at=job.created_at,
        elapsed_ms=job.elapsed_ms,
        running=not job.state.terminal,
    )


def _plausible(identifier: str, prefix: str = "") -> bool:
    """A cheap shape check before any lookup: ids are short and printable."""
    return 0 < len(identifier) <= 64 and identifier.isprintable() and identifier.startswith(prefix)
