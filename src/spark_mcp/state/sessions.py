"""Open sessions, so a restarted server can give each principal its sessions back.

A row ties a spark-mcp session (``ses_...``, owned by one principal) to its driver and to
the Spark Connect session on that driver: the client-side session id and the id the server
gave it. A client that presents both rejoins the very same Spark session (its temp views
and settings), or learns that Spark no longer has it. A session that ends is deleted; one
that could not be restored after a restart is kept as ``lost`` until the next server has
loaded it to tell its owner.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields

from spark_mcp.state.db import Component, StateDB

COMPONENT = Component(
    "sessions",
    [
        """
        CREATE TABLE sessions (
            id TEXT PRIMARY KEY,
            principal TEXT NOT NULL,
            profile TEXT NOT NULL,
            driver_id TEXT NOT NULL,
            spark_session_id TEXT NOT NULL,
            server_side_session_id TEXT,
            is_default INTEGER NOT NULL,
            created_at REAL NOT NULL,
            last_used REAL NOT NULL,
            state TEXT NOT NULL,
            why_closed TEXT
        );
        CREATE INDEX sessions_by_driver ON sessions (driver_id)
        """
    ],
)


@dataclass(frozen=True)
class SessionRow:
    id: str
    principal: str
    profile: str
    driver_id: str
    spark_session_id: str
    server_side_session_id: str | None
    is_default: bool
    created_at: float
    last_used: float
    state: str = "open"
    why_closed: str | None = None


_COLUMNS = [f.name for f in fields(SessionRow)]


def _row(record: sqlite3.Row) -> SessionRow:
    values = {name: record[name] for name in _COLUMNS}
    values["is_default"] = bool(values["is_default"])
    return SessionRow(**values)


class SessionStore:
    def __init__(self, db: StateDB) -> None:
        db.ensure(COMPONENT)
        self._db = db

    def put(self, row: SessionRow) -> None:
        values = asdict(row)
        values["is_default"] = int(row.is_default)
        self._db.execute(
            f"INSERT OR REPLACE INTO sessions ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' for _ in _COLUMNS)})",
            [values[c] for c in _COLUMNS],
        )

    def delete(self, session_id: str) -> None:
        self._db.execute("DELETE FROM sessions WHERE id = ?", (session_id,))

    def delete_many(self, session_ids: Iterable[str]) -> None:
        with self._db.transaction() as conn:
            conn.executemany("DELETE FROM sessions WHERE id = ?", [(i,) for i in session_ids])

    def mark_lost(self, session_id: str, why: str) -> None:
        self._db.execute("UPDATE sessions SET state = 'lost', why_closed = ? WHERE id = ?", (why, session_id))

    def touch_many(self, last_used: dict[str, float]) -> None:
        with self._db.transaction() as conn:
            conn.executemany("UPDATE sessions SET last_used = ? WHERE id = ?", [(t, i) for i, t in last_used.items()])

    def all(self) -> list[SessionRow]:
        rows = self._db.query(f"SELECT {', '.join(_COLUMNS)} FROM sessions ORDER BY created_at, id")
        return [_row(r) for r in rows]
