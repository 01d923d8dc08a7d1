"""One session: a principal's Spark Connect session on a driver, its state, and its saved row.

A session is OPEN until it is closed, expires, or its driver dies (LOST). A lost session
says so once: the call that was running when the driver died reports it, or else the next use.
The registry (``sessions.py``) keeps the sessions; this module is what each one is.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from enum import StrEnum

from spark_mcp.drivers import Driver
from spark_mcp.errors import DriverLost, SessionClosed
from spark_mcp.spark.connect import ConnectSession
from spark_mcp.state.sessions import SessionRow


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
            f"the Spark driver {self.driver.id} stopped unexpectedly while this ran: session {self.id} is lost, "
            "its temp views and settings are gone. Call again (without session_id for a new default session): "
            "a new driver is started."
        )

    def touch(self) -> None:
        self.last_used = time.time()
        self.driver.touch(self.last_used)

    def check_usable(self) -> None:
        if self.state is SessionState.OPEN and not self.driver.usable:
            self.mark_lost()
        if self.state is not SessionState.OPEN:
            raise SessionClosed(f"session {self.id} is {self.state.value}: {self.why_closed}")

    def mark_lost(self) -> None:
        self.connect.abandon()
        code = self.driver.exit_code
        self.state = SessionState.LOST
        self.why_closed = (
            f"its Spark driver {self.driver.id} stopped unexpectedly"
            + (f" (exit code {code})" if code is not None else "")
            + "; its temp views and settings are gone. Create a new session (or call again without "
            "session_id to get a new default session) and a new driver will be started."
        )


def new_session_id() -> str:
    return f"ses_{secrets.token_hex(6)}"


def session_row(session: Session) -> SessionRow:
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
