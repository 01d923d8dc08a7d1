"""Jobs, so that none is silently dropped when its server dies.

Every job is written when it is submitted and again when it ends. A job still queued or
running in a server that is gone can never finish: the next server marks it ``lost``,
with when and why, and its owner sees that from ``get_job`` and ``list_jobs``. Finished
jobs stay listed after a restart, and their stored results stay readable by their owner.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import asdict, dataclass, fields

from spark_mcp.state.db import Component, StateDB
from spark_mcp.state.drivers import ServerRef

COMPONENT = Component(
    "jobs",
    [
        """
        CREATE TABLE jobs (
            id TEXT PRIMARY KEY,
            principal TEXT NOT NULL,
            session_id TEXT NOT NULL,
            tool TEXT NOT NULL,
            statement TEXT NOT NULL,
            kind TEXT NOT NULL,
            tables TEXT NOT NULL,
            state TEXT NOT NULL,
            created_at REAL NOT NULL,
            started_at REAL,
            finished_at REAL,
            result_id TEXT,
            error_code TEXT,
            error_class TEXT,
            error_message TEXT,
            server_pid INTEGER,
            server_start INTEGER
        );
        CREATE INDEX jobs_by_principal ON jobs (principal, created_at)
        """
    ],
)

TERMINAL_STATES = ("succeeded", "failed", "cancelled", "timed_out", "lost")


@dataclass(frozen=True)
class JobRow:
    id: str
    principal: str
    session_id: str
    tool: str
    statement: str
    kind: str
    tables: tuple[str, ...]
    state: str
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    result_id: str | None = None
    error_code: str | None = None
    error_class: str | None = None
    error_message: str | None = None
    server_pid: int | None = None
    server_start: int | None = None


_COLUMNS = [f.name for f in fields(JobRow)]


def _row(record: sqlite3.Row) -> JobRow:
    values = {name: record[name] for name in _COLUMNS}
    values["tables"] = tuple(json.loads(values["tables"]))
    return JobRow(**values)


class JobStore:
    def __init__(self, db: StateDB) -> None:
        db.ensure(COMPONENT)
        self._db = db

    def put(self, row: JobRow) -> None:
        values = asdict(row)
        values["tables"] = json.dumps(list(row.tables))
        self._db.execute(
            f"INSERT OR REPLACE INTO jobs ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' for _ in _COLUMNS)})",
            [values[c] for c in _COLUMNS],
        )

    def get(self, job_id: str) -> JobRow | None:
        rows = self._db.query(f"SELECT {', '.join(_COLUMNS)} FROM jobs WHERE id = ?", (job_id,))
        return _row(rows[0]) if rows else None

    def for_principal(self, principal: str, limit: int) -> list[JobRow]:
        rows = self._db.query(
            f"SELECT {', '.join(_COLUMNS)} FROM jobs WHERE principal = ? ORDER BY created_at DESC LIMIT ?",
            (principal, limit),
        )
        return [_row(r) for r in rows]

    def unfinished(self) -> list[JobRow]:
        marks = ", ".join("?" for _ in TERMINAL_STATES)
        rows = self._db.query(f"SELECT {', '.join(_COLUMNS)} FROM jobs WHERE state NOT IN ({marks})", TERMINAL_STATES)
        return [_row(r) for r in rows]

    def mark_lost(self, job_id: str, *, at: float, why: str) -> None:
        self._db.execute(
            "UPDATE jobs SET state = 'lost', finished_at = ?, error_code = 'job_lost', error_class = NULL, "
            "error_message = ? WHERE id = ?",
            (at, why, job_id),
        )

    def owned_by(self, server: ServerRef) -> list[JobRow]:
        rows = self._db.query(
            f"SELECT {', '.join(_COLUMNS)} FROM jobs WHERE server_pid = ? AND server_start IS ?",
            (server.pid, server.start),
        )
        return [_row(r) for r in rows]

    def prune(self, keep_per_principal: int) -> int:
        """Forget all but the newest ``keep_per_principal`` finished jobs of each principal."""
        marks = ", ".join("?" for _ in TERMINAL_STATES)
        return self._db.execute(
            f"DELETE FROM jobs WHERE id IN (SELECT id FROM (SELECT id, state, row_number() OVER "
            f"(PARTITION BY principal ORDER BY created_at DESC) AS n FROM jobs) "
            f"WHERE n > ? AND state IN ({marks}))",
            (keep_per_principal, *TERMINAL_STATES),
        )
