"""The drivers of this home: one row per driver process, so a restart or a CLI can find it.

A row says what the driver is (engine, backend, profile, resources), whose it is (owner and
principal; none for a spare in the warm pool), where it is (host, port, pid and the pid's
start time, which together tell a live driver from a recycled pid) and which server owns it
(that server's pid and start time; none once a server has let a persistent driver go).

A row never holds the driver's token: that is a ``0600`` file in the driver's ``0700``
folder, read only by a server re-adopting the driver.
"""

from __future__ import annotations

import sqlite3
from dataclasses import asdict, dataclass, fields
from typing import Any

from spark_mcp.state.db import Component, StateDB

COMPONENT = Component(
    "drivers",
    [
        """
        CREATE TABLE drivers (
            id TEXT PRIMARY KEY,
            engine TEXT NOT NULL,
            backend TEXT NOT NULL,
            profile TEXT NOT NULL,
            owner TEXT,
            principal TEXT,
            lifetime TEXT NOT NULL,
            state TEXT NOT NULL,
            host TEXT NOT NULL,
            port INTEGER NOT NULL,
            pid INTEGER,
            pid_start INTEGER,
            memory_bytes INTEGER NOT NULL,
            workdir TEXT NOT NULL,
            log TEXT NOT NULL,
            server_pid INTEGER,
            server_start INTEGER,
            started_at REAL NOT NULL,
            ready_at REAL,
            last_used REAL NOT NULL,
            spark_version TEXT NOT NULL DEFAULT ''
        )
        """
    ],
)


@dataclass(frozen=True)
class ServerRef:
    """A server process: its pid and the kernel's start time for it (pids are reused)."""

    pid: int
    start: int | None


@dataclass(frozen=True)
class DriverRow:
    id: str
    engine: str
    backend: str
    profile: str
    owner: str | None
    principal: str | None
    lifetime: str
    state: str
    host: str
    port: int
    pid: int | None
    pid_start: int | None
    memory_bytes: int
    workdir: str
    log: str
    server_pid: int | None
    server_start: int | None
    started_at: float
    ready_at: float | None
    last_used: float
    spark_version: str = ""

    @property
    def server(self) -> ServerRef | None:
        return ServerRef(self.server_pid, self.server_start) if self.server_pid is not None else None

    @property
    def marker(self) -> str:
        """A string only this driver's command line carries (``spark.mcp.driver.id=...``)."""
        return f"spark.mcp.driver.id={self.id}"


_COLUMNS = [f.name for f in fields(DriverRow)]


def _row(record: sqlite3.Row) -> DriverRow:
    return DriverRow(**{name: record[name] for name in _COLUMNS})


class DriverStore:
    """Driver rows on the state database (the fleet writes them; ``spark-mcp drivers`` reads them)."""

    def __init__(self, db: StateDB) -> None:
        db.ensure(COMPONENT)
        self._db = db

    def put(self, row: DriverRow) -> None:
        values = asdict(row)
        placeholders = ", ".join("?" for _ in _COLUMNS)
        updates = ", ".join(f"{c} = excluded.{c}" for c in _COLUMNS if c != "id")
        self._db.execute(
            f"INSERT INTO drivers ({', '.join(_COLUMNS)}) VALUES ({placeholders}) "
            f"ON CONFLICT(id) DO UPDATE SET {updates}",
            [values[c] for c in _COLUMNS],
        )

    def update(self, driver_id: str, **changes: Any) -> None:
        unknown = set(changes) - set(_COLUMNS)
        if unknown or "id" in changes:
            raise ValueError(f"not driver columns: {sorted(unknown | ({'id'} & set(changes)))}")
        if changes:
            assignments = ", ".join(f"{name} = ?" for name in changes)
            self._db.execute(f"UPDATE drivers SET {assignments} WHERE id = ?", [*changes.values(), driver_id])

    def touch_many(self, last_used: dict[str, float]) -> None:
        with self._db.transaction() as conn:
            conn.executemany("UPDATE drivers SET last_used = ? WHERE id = ?", [(t, i) for i, t in last_used.items()])

    def delete(self, driver_id: str) -> None:
        self._db.execute("DELETE FROM drivers WHERE id = ?", (driver_id,))

    def get(self, driver_id: str) -> DriverRow | None:
        rows = self._db.query(f"SELECT {', '.join(_COLUMNS)} FROM drivers WHERE id = ?", (driver_id,))
        return _row(rows[0]) if rows else None

    def all(self) -> list[DriverRow]:
        """Every driver of this home, oldest first."""
        rows = self._db.query(f"SELECT {', '.join(_COLUMNS)} FROM drivers ORDER BY started_at, id")
        return [_row(r) for r in rows]

    def release_server(self, server: ServerRef) -> None:
        """A server exits and leaves its persistent drivers running: they belong to no server now."""
        self._db.execute(
            "UPDATE drivers SET server_pid = NULL, server_start = NULL WHERE server_pid = ? AND server_start IS ?",
            (server.pid, server.start),
        )
