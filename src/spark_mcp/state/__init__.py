"""The server's state that outlives a process: one SQLite database under ``<home>``.

    db.py      the database: private file, WAL, per-component schema versions, clear errors

Each kind of state (tokens, drivers, sessions, jobs) is its own module with its own
schema component and a small store class; callers depend on those classes, so a shared
database can later take SQLite's place without touching them.
"""

from spark_mcp.state.db import Component, StateDB

__all__ = ["Component", "StateDB"]
