"""The session registry: who owns which Spark Connect session, on which driver, limits, expiry.

A session belongs to one principal; any other principal is told it does not exist. Each
principal has at most one *default* session, created on first use by any tool called
without ``session_id``, on its default profile. A session gets its driver from the fleet
(by share level and profile). When a driver dies, its sessions are marked lost and say so
once (a call that was running when it died has said so already); a lost default session
is then replaced on the next call. When the fleet stops a driver on purpose (idle,
lifetime), its sessions end with that reason.

Open sessions are kept in the state database: a server that re-adopts their driver after a
restart rejoins them in Spark (``restore``), temp views and all; those it cannot rejoin are
reported as lost, never silently forgotten.
"""

from __future__ import annotations

import contextlib
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from functools import partial

import anyio
import structlog

from spark_mcp.drivers import Driver, Fleet, owner_key
from spark_mcp.errors import DriverLost, InvalidInput, LimitExceeded, SessionClosed, SessionNotFound, SparkMcpError
from spark_mcp.session_pool import SessionPool
from spark_mcp.spark import runner
from spark_mcp.spark.connect import ConnectSession, open_session
from spark_mcp.state.sessions import SessionRow, SessionStore

log = structlog.get_logger(__name__)


class SessionState(StrEnum):
    OPEN = "open"
    CLOSED = "closed"
    EXPIRED = "expired"
    LOST = "lost"  # its driver died


@dataclass(eq=False)
class Session:
    id: str
    principal: str
    driver: Driver
    connect: ConnectSession = field(repr=False)
    profile: str = "default"
    default: bool = False
    created_at: float = field(default_factory=time.time)
    last_used: float = field(default_factory=time.time)
    state: SessionState = SessionState.OPEN
    why_closed: str | None = None
    loss_reported: bool = False  # a call running on it when its driver died already said so

    def lost_driver(self) -> DriverLost:
        """The error of a call that was running when the driver died. It tells the caller the
        session is gone, so the next call without session_id gets a new default session at once."""
        self.loss_reported = True
        return DriverLost(
            f"the Spark driver {self.driver.id} stopped while this ran: session {self.id} is lost with its "
            "temp views and settings. Call again (without session_id for a new default session): "
            "a new driver is started."
        )

    def touch(self) -> None:
        self.last_used = time.time()
        self.driver.touch(self.last_used)

    def check_usable(self) -> None:
        if self.state is SessionState.OPEN and not self.driver.usable:
            self._mark_lost()
        if self.state is not SessionState.OPEN:
            raise SessionClosed(f"session {self.id} is {self.state.value}: {self.why_closed}")

    def _mark_lost(self) -> None:
        self.connect.abandon()
        code = self.driver.exit_code
        self.state = SessionState.LOST
        self.why_closed = (
            f"its Spark driver {self.driver.id} stopped unexpectedly"
            + (f" (exit code {code})" if code is not None else "")
            + "; its temp views and settings are gone. Create a new session (or call again without "
            "session_id to get a new default session) and a new driver will be started."
        )


_ENDED_KEPT = 1000


def new_session_id() -> str:
    return f"ses_{secrets.token_hex(6)}"


class SessionRegistry:
    def __init__(self, fleet: Fleet, store: SessionStore, *, idle_timeout_s: float, share: str) -> None:
        self._fleet = fleet
        self._store = store
        self._idle_timeout_s = idle_timeout_s
        self._share = share
        self._sessions: dict[str, Session] = {}
        # Closed, expired and lost sessions are remembered a while so they can be reported as such.
        self._ended: dict[str, Session | SessionRow] = {}
        self._guard = threading.Lock()
        self._default_locks: dict[str, anyio.Lock] = {}
        self._opening: dict[str, int] = {}  # principal -> sessions being opened now
        # Under "session" share every session gets a new driver: nothing to open ahead there.
        self._ahead = SessionPool() if share != "session" else None

    def _open(self, principal: str) -> list[Session]:
        with self._guard:
            return [s for s in self._sessions.values() if s.principal == principal and s.state is SessionState.OPEN]

    async def create(
        self,
        principal: str,
        *,
        profile: str,
        max_sessions: int,
        group: str | None = None,
        default: bool = False,
        engine: str | None = None,
    ) -> Session:
        for session in self._open(principal):
            if not session.driver.usable:
                session._mark_lost()
        # The check and the reservation are one step: sessions being opened count against the
        # limit, or concurrent calls would each see room and all open one (seen: 20 at once
        # opened 20 sessions under a limit of 3).
        with self._guard:
            open_now = sum(
                1 for s in self._sessions.values() if s.principal == principal and s.state is SessionState.OPEN
            )
            opening = self._opening.get(principal, 0)
            if open_now + opening >= max_sessions:
                raise LimitExceeded(
                    f"limits.max_sessions: you have {open_now + opening} open sessions, the limit for your role "
                    f"is {max_sessions}: close one with close_session (list_sessions shows them)"
                )
            self._opening[principal] = opening + 1
        try:
            session = await self._open_new(principal, profile=profile, group=group, default=default, engine=engine)
        finally:
            with self._guard:
                self._opening[principal] -= 1
                if not self._opening[principal]:
                    del self._opening[principal]
        self._store.put(_row(session))
        if self._ahead is not None:
            self._ahead.refill(session.driver, principal)
        log.info(
            "session.created",
            session_id=session.id,
            principal=principal,
            driver_id=session.driver.id,
            profile=profile,
            engine=session.driver.engine,
        )
        return session

    async def _open_new(
        self, principal: str, *, profile: str, group: str | None, default: bool, engine: str | None
    ) -> Session:
        session_id = new_session_id()
        owner = owner_key(self._share, principal=principal, session_id=session_id, group=group)
        # Under the group share level the driver serves a role, not this principal.
        driver = await self._fleet.acquire(owner, profile, principal=None if group else principal, engine=engine)
        try:
            connect = self._ahead.take(driver, principal) if self._ahead else None
            if connect is None:
                connect = await anyio.to_thread.run_sync(lambda: open_session(driver, user_id=principal))
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self._fleet.release(driver)
            raise
        session = Session(
            id=session_id, principal=principal, driver=driver, connect=connect, profile=profile, default=default
        )
        with self._guard:
            self._sessions[session_id] = session
        return session

    def engine_of(self, profile: str) -> str:
        """The engine a session on ``profile`` gets unless it asks for another."""
        return self._fleet.profiles[profile].engine

    def ready_ahead(self, driver: Driver, principal: str) -> bool:
        """Whether a session for ``principal`` on ``driver`` is open and warm, waiting to be taken."""
        return self._ahead is not None and self._ahead.has(driver, principal)

    def has_default(self, principal: str) -> bool:
        with self._guard:
            return any(s.principal == principal and s.default for s in self._sessions.values())

    def get(self, principal: str, session_id: str) -> Session:
        """The caller's session; anyone else's, or an unknown id, is "not found"."""
        if not isinstance(session_id, str) or not session_id.startswith("ses_") or len(session_id) > 64:
            raise InvalidInput(f"{session_id!r} is not a session id (they look like ses_1a2b3c4d5e6f)")
        with self._guard:
            session = self._sessions.get(session_id) or self._ended.get(session_id)
        if session is None or session.principal != principal:
            raise SessionNotFound(f"no session {session_id}: list_sessions shows yours")
        if isinstance(session, SessionRow):  # lost in a restart: it can only say so
            raise SessionClosed(f"session {session.id} is lost: {session.why_closed}")
        return session

    async def resolve(
        self,
        principal: str,
        session_id: str | None,
        *,
        max_sessions: int,
        profile: str = "default",
        group: str | None = None,
    ) -> Session:
        """The named session, or the caller's default session (created on first use)."""
        if session_id is not None:
            session = self.get(principal, session_id)
            session.check_usable()
            session.touch()
            return session
        lock = self._default_locks.setdefault(principal, anyio.Lock())
        async with lock:
            with self._guard:
                current = next((s for s in self._sessions.values() if s.principal == principal and s.default), None)
            if current is not None:
                try:
                    current.check_usable()
                except SessionClosed:
                    self._forget(current)
                    if current.state is SessionState.LOST and not current.loss_reported:
                        raise
                else:
                    current.touch()
                    return current
            return await self.create(principal, profile=profile, max_sessions=max_sessions, group=group, default=True)

    def list_for(self, principal: str) -> list[Session | SessionRow]:
        with self._guard:
            sessions: list[Session | SessionRow] = [s for s in self._sessions.values() if s.principal == principal]
            sessions += [s for s in self._ended.values() if isinstance(s, SessionRow) and s.principal == principal]
        for session in sessions:
            if isinstance(session, Session) and session.state is SessionState.OPEN and not session.driver.usable:
                session._mark_lost()
        return sorted(sessions, key=lambda s: s.created_at)

    def driver_of(self, session_id: str) -> Driver | None:
        with self._guard:
            session = self._sessions.get(session_id)
        return session.driver if session is not None else None

    def on_driver(self, driver: Driver) -> list[Session]:
        with self._guard:
            return [s for s in self._sessions.values() if s.driver is driver and s.state is SessionState.OPEN]

    async def close(self, principal: str, session_id: str) -> Session:
        session = self.get(principal, session_id)
        if session.state is not SessionState.OPEN and session.id in self._ended:
            raise SessionClosed(f"session {session.id} is already {session.state.value}: {session.why_closed}")
        await self._close(session, SessionState.CLOSED, "closed by its owner")
        await self._fleet.release(session.driver)
        return session

    async def _close(self, session: Session, state: SessionState, why: str, *, release: bool = True) -> None:
        if session.state is SessionState.OPEN:
            session.state = state
            session.why_closed = why
            await anyio.to_thread.run_sync(session.connect.close if release else session.connect.abandon)
            log.info("session.closed", session_id=session.id, state=state.value, why=why)
        self._forget(session)

    def _forget(self, session: Session) -> None:
        with self._guard:
            self._sessions.pop(session.id, None)
            self._ended[session.id] = session
            while len(self._ended) > _ENDED_KEPT:
                self._ended.pop(next(iter(self._ended)))
        self._store.delete(session.id)

    def on_driver_lost(self, driver: Driver) -> None:
        if self._ahead is not None:
            self._ahead.drop(driver, release=False)
        with self._guard:
            sessions = [s for s in self._sessions.values() if s.driver is driver]
        for session in sessions:
            if session.state is SessionState.OPEN:
                session._mark_lost()

    def loss_seen(self, session: Session, *, wait_s: float = 10.0) -> bool:
        """A call on ``session`` failed as if its driver were gone: if it is, the caller is being told.

        Runs on a worker thread. Waits briefly for the driver's supervisor to confirm the death
        (it sees the process exit within moments); the session's next use then starts afresh
        without a second error. False when the driver is still there (a network hiccup).
        """
        deadline = time.monotonic() + wait_s
        while session.driver.usable and time.monotonic() < deadline:
            time.sleep(0.05)
        if session.driver.usable:
            return False
        if session.state is SessionState.OPEN:
            session._mark_lost()
        session.loss_reported = True
        return True

    async def retire(self, driver: Driver, why: str) -> None:
        """The fleet is about to stop ``driver`` on purpose: its sessions end, saying why."""
        ahead = self._ahead
        if ahead is not None:
            await anyio.to_thread.run_sync(partial(ahead.drop, driver, release=True))
        for session in self.on_driver(driver):
            await self._close(session, SessionState.EXPIRED, f"{why}; call again for a new session")

    async def expire_idle(self, now: Callable[[], float] = time.time) -> list[str]:
        cutoff = now() - self._idle_timeout_s
        with self._guard:
            idle = [s for s in self._sessions.values() if s.state is SessionState.OPEN and s.last_used < cutoff]
        for session in idle:
            await self._close(
                session,
                SessionState.EXPIRED,
                f"idle for more than {self._idle_timeout_s:g} s (limits.session_idle_timeout_s)",
            )
            await self._fleet.release(session.driver)
        return [s.id for s in idle]

    async def close_all(self, *, release: bool = True) -> None:
        """The server stops. Without ``release`` (persistent drivers) the Spark sessions are kept
        on their drivers, and in the state database, for the next server to rejoin."""
        with self._guard:
            sessions = list(self._sessions.values())
        with anyio.CancelScope(shield=True):
            if self._ahead is not None:  # never saved, so released whatever the lifetime
                await anyio.to_thread.run_sync(self._ahead.close)
            if not release:
                self.flush_last_used()
                for session in sessions:
                    await anyio.to_thread.run_sync(session.connect.abandon)
                return
            for session in sessions:
                await self._close(session, SessionState.CLOSED, "the server stopped")

    def flush_last_used(self) -> None:
        with self._guard:
            stamps = {s.id: s.last_used for s in self._sessions.values() if s.state is SessionState.OPEN}
        self._store.touch_many(stamps)

    # -- after a restart -------------------------------------------------------------------

    async def restore(
        self,
        adopted: Iterable[Driver],
        *,
        interrupt: Iterable[tuple[str, str]] = (),
        foreign: Iterable[str] = (),
    ) -> tuple[list[str], list[str]]:
        """Rejoin the sessions saved on re-adopted drivers; report the others as lost.

        ``interrupt`` names ``(session id, operation tag)`` pairs of work a dead server left
        running: it is interrupted in each rejoined session. Sessions on ``foreign`` drivers
        (another live server's) are that server's and left alone. Returns the ids restored and lost.
        """
        others = set(foreign)
        tags: dict[str, list[str]] = {}
        for session_id, tag in interrupt:
            tags.setdefault(session_id, []).append(tag)
        drivers = {d.id: d for d in adopted}
        restored: list[str] = []
        lost: list[str] = []
        for row in self._store.all():
            if row.driver_id in others:
                continue
            if row.state != SessionState.OPEN.value:  # lost at an earlier start: tell its owner once more
                self._remember_lost(row, row.why_closed or "lost when the server restarted")
                continue
            driver = drivers.get(row.driver_id)
            why = "the server restarted and could not re-adopt its driver; its temp views are gone"
            if driver is not None:
                try:
                    session = await self._rejoin(row, driver)
                except SparkMcpError as exc:
                    why = f"the server restarted and Spark no longer has it ({exc.message[:200]})"
                else:
                    restored.append(session.id)
                    for tag in tags.get(session.id, ()):
                        with contextlib.suppress(SparkMcpError):
                            await anyio.to_thread.run_sync(runner.interrupt, session.connect, tag)
                    continue
            self._remember_lost(row, why)
            lost.append(row.id)
        if restored or lost:
            log.info("sessions.restored", restored=restored, lost=lost)
        return restored, lost

    async def _rejoin(self, row: SessionRow, driver: Driver) -> Session:
        def connect() -> ConnectSession:
            return open_session(
                driver,
                user_id=row.principal,
                session_id=row.spark_session_id,
                server_side_session_id=row.server_side_session_id,
            )

        connect_session = await anyio.to_thread.run_sync(connect)
        session = Session(
            id=row.id,
            principal=row.principal,
            driver=driver,
            connect=connect_session,
            profile=row.profile,
            default=row.is_default,
            created_at=row.created_at,
            last_used=row.last_used,
        )
        with self._guard:
            self._sessions[session.id] = session
        return session

    def _remember_lost(self, row: SessionRow, why: str) -> None:
        lost = SessionRow(**{**row.__dict__, "state": SessionState.LOST.value, "why_closed": why})
        with self._guard:
            self._ended[row.id] = lost
        self._store.delete(row.id)


def _row(session: Session) -> SessionRow:
    return SessionRow(
        id=session.id,
        principal=session.principal,
        profile=session.profile,
        driver_id=session.driver.id,
        spark_session_id=session.connect.spark_session_id,
        server_side_session_id=session.connect.server_side_session_id,
        is_default=session.default,
        created_at=session.created_at,
        last_used=session.last_used,
    )
