"""One SQLite database for the server's state, with per-component schema versions.

Each component (``tokens``, ``drivers``, ...) declares its migrations as a list of SQL
scripts; the database records the version it has applied for each component in
``schema_versions``, so components evolve independently. Opening a database applies the
missing migrations in one transaction per component.

It fails closed and says what to do:

- a file that is not a SQLite database, or a corrupt one: ``StateError`` naming the file
  and telling the operator to move it aside;
- a component whose recorded version is newer than this code knows (a newer spark-mcp
  wrote it): ``StateError``, never a silent downgrade.

The file is created ``0600`` in a ``0700`` folder, runs in WAL mode (readers do not block
the writer) and waits for locks instead of failing at once, so a CLI command can read it
while a server writes.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spark_mcp.errors import StateError

STATE_FILE = "state.db"
_BUSY_TIMEOUT_MS = 10_000


@dataclass(frozen=True)
class Component:
    """A part of the state with its own tables: migration ``i`` brings it to version ``i + 1``."""

    name: str
    migrations: Sequence[str]

    @property
    def version(self) -> int:
        return len(self.migrations)


def state_path(home: Path) -> Path:
    return home / STATE_FILE


class StateDB:
    """A thread-safe handle on the state database (one connection, serialised by a lock)."""

    def __init__(self, path: Path, components: Sequence[Component] = ()) -> None:
        self.path = path
        self._lock = threading.RLock()
        self._watch: sqlite3.Connection | None = None
        self._watch_lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not path.exists():
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        try:
            self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=10)
            self._conn.row_factory = sqlite3.Row
            self._conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
            self._conn.execute("PRAGMA journal_mode = WAL")
            self._conn.execute("PRAGMA foreign_keys = ON")
            self._conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_versions (component TEXT PRIMARY KEY, version INTEGER NOT NULL)"
            )
        except sqlite3.DatabaseError as exc:
            raise self._unreadable(exc) from None
        for component in components:
            self.ensure(component)

    def _unreadable(self, exc: BaseException) -> StateError:
        return StateError(
            f"{self.path}: the state database cannot be read ({exc}); it is corrupt or not a spark-mcp "
            "state file. Stop the server, move the file aside (drivers it knew are then found as orphans "
            "and stopped at the next start), and start again."
        )

    def ensure(self, component: Component) -> None:
        """Apply ``component``'s missing migrations; refuse a newer schema than this code knows."""
        with self._lock:
            try:
                row = self._conn.execute(
                    "SELECT version FROM schema_versions WHERE component = ?", (component.name,)
                ).fetchone()
                current = int(row["version"]) if row else 0
                if current > component.version:
                    raise StateError(
                        f"{self.path}: the {component.name} state has schema version {current}, but this "
                        f"spark-mcp knows only up to {component.version}: it was written by a newer "
                        "spark-mcp. Run that version, or move the file aside to start afresh."
                    )
                if current == component.version:
                    return
                with self.transaction():
                    for script in component.migrations[current:]:
                        for statement in _statements(script):
                            self._conn.execute(statement)
                    self._conn.execute(
                        "INSERT INTO schema_versions (component, version) VALUES (?, ?) "
                        "ON CONFLICT(component) DO UPDATE SET version = excluded.version",
                        (component.name, component.version),
                    )
            except sqlite3.DatabaseError as exc:
                raise self._unreadable(exc) from None

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """An immediate (write-locked) transaction; nested use joins the outer one."""
        with self._lock:
            if self._conn.in_transaction:
                yield self._conn
                return
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one writing statement; returns the number of rows it changed."""
        with self._lock:
            try:
                return self._conn.execute(sql, params).rowcount
            except sqlite3.DatabaseError as exc:
                raise self._unreadable(exc) from None

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            try:
                return self._conn.execute(sql, params).fetchall()
            except sqlite3.DatabaseError as exc:
                raise self._unreadable(exc) from None

    def commits(self) -> int:
        """A number that changes whenever anyone has committed to the database since it was last
        read: this handle, another one, another process (``spark-mcp tokens revoke``). It is
        ``PRAGMA data_version`` on a connection of its own that never writes, so every commit is
        another connection's; in WAL mode it reads shared memory and never waits for a writer."""
        with self._watch_lock:
            try:
                if self._watch is None:
                    self._watch = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
                return int(self._watch.execute("PRAGMA data_version").fetchone()[0])
            except sqlite3.DatabaseError as exc:
                raise self._unreadable(exc) from None

    def close(self) -> None:
        with self._lock:
            self._conn.close()
        with self._watch_lock:
            if self._watch is not None:
                self._watch.close()
                self._watch = None


def _statements(script: str) -> list[str]:
    """A migration script split into statements (migrations hold no ';' inside literals)."""
    return [part.strip() for part in script.split(";") if part.strip()]
