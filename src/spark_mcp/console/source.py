"""What the console reads from the running ``App``, and the few things it asks it to do.

This module is the console's only contact with drivers, sessions and jobs: the pages and
actions see plain views (``DriverView``...), so when the driver layer changes only this
file changes with it.

Drivers come from the fleet. Each has an owner: ``user:<p>`` (its principal's own),
``session:<id>`` (one session of its principal), ``group:<role>`` (shared by everyone
holding a role; no single principal), or none (a spare in the warm pool). A principal's
drivers are those assigned for them, plus the shared ones their open sessions run on
(shown, but stopping one is for ``driver.admin`` alone, as it ends other people's
sessions too). Spares belong to nobody: only ``driver.admin`` sees them.

"Everyone" means every principal this server knows of now: the principals of its
drivers, of the open sessions on them, and of its unfinished jobs.
"""

from __future__ import annotations

from dataclasses import dataclass

from spark_mcp.app import App
from spark_mcp.drivers import Driver, DriverState
from spark_mcp.drivers.quotas import gib
from spark_mcp.errors import NotFound, PolicyDenied, SessionClosed
from spark_mcp.gateway.routing import route_for
from spark_mcp.identity import Principal
from spark_mcp.jobs import Job
from spark_mcp.session import Session
from spark_mcp.state.sessions import SessionRow

_STATEMENT_SHOWN = 160  # characters of a job's statement in a listing


@dataclass(frozen=True)
class DriverView:
    id: str
    principal: str | None  # whose it is (None: shared by a role, or a spare)
    owner: str  # for people: "nina", "role analyst", "warm pool"
    state: str
    profile: str
    engine: str
    started_at: float
    memory: str  # what it counts against the memory quota (heap and overhead)
    stoppable: bool  # in a state that stopping changes

    @property
    def owner_key(self) -> str:
        """Who may act on it without driver.admin: its principal; nobody for shared drivers and spares."""
        return self.principal if self.principal is not None else f"({self.owner})"


@dataclass(frozen=True)
class SessionView:
    id: str
    principal: str
    state: str
    default: bool
    driver_id: str
    profile: str
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
    """The drivers ``principal`` uses (None: every driver, spares included), oldest first."""
    return [_driver_view(d) for d in app.drivers.drivers() if principal is None or _uses(app, d, principal)]


def find_driver(app: App, driver_id: str) -> DriverView | None:
    driver = app.drivers.get(driver_id) if _plausible(driver_id) else None
    return _driver_view(driver) if driver is not None else None


def shows_driver(app: App, view: DriverView, principal: str) -> bool:
    """Whether ``principal``'s own listing shows this driver (theirs, or shared with them)."""
    driver = app.drivers.get(view.id)
    return driver is not None and _uses(app, driver, principal)


async def stop_driver(app: App, driver_id: str, why: str) -> None:
    """Stop a driver: the fleet ends the sessions on it first, and they say why."""
    if app.drivers.get(driver_id) is None:
        raise NotFound(f"no driver {driver_id}")
    await app.drivers.stop(driver_id, reason=why)


def _uses(app: App, driver: Driver, principal: str) -> bool:
    if driver.principal == principal:
        return True
    return driver.owner is not None and any(s.principal == principal for s in app.sessions.on_driver(driver))


def _owner_label(owner: str | None, principal: str | None) -> str:
    kind, _, name = (owner or "").partition(":")
    if owner is None:
        return "warm pool"
    if kind == "group":
        return f"role {name}"
    return principal or name


@dataclass(frozen=True)
class EndedDriverView:
    """A driver that ended lately, and why: what its sessions and gateway clients were told."""

    id: str
    owner: str
    ended_at: float
    reason: str


def ended_drivers(app: App, principal: str | None, limit: int) -> list[EndedDriverView]:
    """The last ``limit`` drivers of ``principal`` (None: of everyone) that ended, newest first."""
    return [
        EndedDriverView(e.driver_id, _owner_label(e.owner, e.principal), e.at, e.reason)
        for e in app.drivers.endings.recent(principal, limit)
    ]


def _driver_view(driver: Driver) -> DriverView:
    kind, _, _ = (driver.owner or "").partition(":")
    return DriverView(
        id=driver.id,
        principal=driver.principal if kind in ("user", "session") else None,
        owner=_owner_label(driver.owner, driver.principal),
        state=driver.state.value,
        profile=driver.profile,
        engine=driver.engine,
        started_at=driver.started_at,
        memory=gib(driver.memory_bytes) if driver.memory_bytes else "-",
        stoppable=driver.state in (DriverState.STARTING, DriverState.READY, DriverState.LOST),
    )


@dataclass(frozen=True)
class GatewayRoute:
    """Where the Spark Connect gateway sends the viewer's calls, as ``gateway.routing`` decides."""

    profile: str | None
    shared_by: str | None  # the role whose shared driver it is (``driver.share = "group"``)
    driver: DriverView | None  # that driver, while one runs
    refused: str | None  # why the gateway refuses the viewer (no sessions, no profile, no Spark)


def gateway_route(app: App, principal: Principal) -> GatewayRoute:
    """The route of ``principal``'s gateway calls; starts nothing."""
    try:
        app.governance.require(principal, "session.create")
        route = route_for(app, principal)
    except PolicyDenied as exc:
        return GatewayRoute(None, None, None, exc.message)
    driver = app.drivers.assigned(route.owner, route.profile, "spark")
    return GatewayRoute(route.profile, route.group, _driver_view(driver) if driver else None, None)


# -- sessions ----------------------------------------------------------------------------


def _principals(app: App) -> list[str]:
    known: set[str] = set()
    for driver in app.drivers.drivers():
        if driver.principal is not None:
            known.add(driver.principal)
        known.update(s.principal for s in app.sessions.on_driver(driver))
    known.update(j.principal for j in app.jobs.running())
    return sorted(known)


def sessions(app: App, principal: str | None) -> list[SessionView]:
    """The sessions of ``principal`` (None: everyone's), oldest first."""
    owners = [principal] if principal is not None else _principals(app)
    found = [_session_view(app, s) for owner in owners for s in app.sessions.list_for(owner)]
    return sorted(found, key=lambda s: s.created_at)


def find_session(app: App, session_id: str, principal: str | None) -> SessionView | None:
    """The session called ``session_id`` if ``principal`` owns it (None: whoever does)."""
    if not _plausible(session_id, "ses_"):
        return None
    owners = [principal] if principal is not None else _principals(app)
    for owner in owners:
        try:
            return _session_view(app, app.sessions.get(owner, session_id))
        except (NotFound, SessionClosed):  # SessionClosed: lost in a restart, nothing to close
            continue
    return None


async def close_session(app: App, view: SessionView) -> None:
    await app.sessions.close(view.principal, view.id)


def _session_view(app: App, session: Session | SessionRow) -> SessionView:
    if isinstance(session, SessionRow):  # remembered from before a restart: lost
        driver = app.drivers.get(session.driver_id)
        return SessionView(
            id=session.id,
            principal=session.principal,
            state=session.state,
            default=session.is_default,
            driver_id=session.driver_id,
            profile=session.profile,
            engine=driver.engine if driver is not None else "-",
            created_at=session.created_at,
            last_used=session.last_used,
            open=False,
        )
    return SessionView(
        id=session.id,
        principal=session.principal,
        state=session.state.value,
        default=session.default,
        driver_id=session.driver.id,
        profile=session.profile,
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
