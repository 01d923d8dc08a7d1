"""The session registry: who owns which Spark Connect session, limits, idle expiry.

A session belongs to one principal; any other principal is told it does not exist. Each
principal has at most one *default* session, created on first use by any tool called
without ``session_id``. When a driver dies, its sessions are marked lost and say so
once (or the call that was running when it died says so); a lost default session is
then replaced on the next call.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

import anyio
import structlog

from spark_mcp.drivers import Driver, DriverPool
from spark_mcp.errors import DriverLost, InvalidInput, LimitExceeded, SessionClosed, SessionNotFound
from spark_mcp.spark.connect import ConnectSession, open_session

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
    def __init__(self, pool: DriverPool, *, idle_timeout_s: float, default_engine: str = "spark") -> None:
        self._pool = pool
        self.default_engine = default_engine  # the engine of default sessions (config driver.engine)
        self._idle_timeout_s = idle_timeout_s
        self._sessions: dict[str, Session] = {}
        # Closed, expired and lost sessions are remembered a while so they can be reported as such.
        self._ended: dict[str, Session] = {}
        self._guard = threading.Lock()
        self._default_locks: dict[str, anyio.Lock] = {}
        self._opening: dict[str, int] = {}  # principal -> sessions being opened now

    def _open(self, principal: str) -> list[Session]:
        with self._guard:
            return [s for s in self._sessions.values() if s.principal == principal and s.state is SessionState.OPEN]

    async def create(
        self, principal: str, *, max_sessions: int, default: bool = False, engine: str | None = None
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
                    f"you have {open_now + opening} open sessions, the limit for your role is {max_sessions}: "
                    "close one with close_session (list_sessions shows them)"
                )
            self._opening[principal] = opening + 1
        try:
            driver = await self._pool.acquire(principal, engine or self.default_engine)
            session_id = new_session_id()
            connect = await anyio.to_thread.run_sync(lambda: open_session(driver, user_id=principal))
            session = Session(id=session_id, principal=principal, driver=driver, connect=connect, default=default)
            with self._guard:
                self._sessions[session_id] = session
        finally:
            with self._guard:
                self._opening[principal] -= 1
                if not self._opening[principal]:
                    del self._opening[principal]
        log.info("session.created", session_id=session_id, principal=principal, driver_id=driver.id)
        return session

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
        return session

    async def resolve(self, principal: str, session_id: str | None, *, max_sessions: int) -> Session:
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
            return await self.create(principal, max_sessions=max_sessions, default=True)

    def list_for(self, principal: str) -> list[Session]:
        with self._guard:
            sessions = [s for s in self._sessions.values() if s.principal == principal]
        for session in sessions:
            if session.state is SessionState.OPEN and not session.driver.usable:
                session._mark_lost()
        return sorted(sessions, key=lambda s: s.created_at)

    async def close(self, principal: str, session_id: str) -> Session:
        session = self.get(principal, session_id)
        if session.state is not SessionState.OPEN and session.id in self._ended:
            raise SessionClosed(f"session {session.id} is already {session.state.value}: {session.why_closed}")
        await self._close(session, SessionState.CLOSED, "closed by its owner")
        return session

    async def _close(self, session: Session, state: SessionState, why: str) -> None:
        if session.state is SessionState.OPEN:
            session.state = state
            session.why_closed = why
            await anyio.to_thread.run_sync(session.connect.close)
            log.info("session.closed", session_id=session.id, state=state.value)
        self._forget(session)

    def _forget(self, session: Session) -> None:
        with self._guard:
            self._sessions.pop(session.id, None)
            self._ended[session.id] = session
            while len(self._ended) > _ENDED_KEPT:
                self._ended.pop(next(iter(self._ended)))

    def on_driver_lost(self, driver: Driver) -> None:
        with self._guard:
            sessions = [s for s in self._sessions.values() if s.driver is driver]
        for session in sessions:
            if session.state is SessionState.OPEN:
                session._mark_lost()

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
        return [s.id for s in idle]

    async def close_all(self) -> None:
        with self._guard:
            sessions = list(self._sessions.values())
        with anyio.CancelScope(shield=True):
            for session in sessions:
                await self._close(session, SessionState.CLOSED, "the server stopped")
