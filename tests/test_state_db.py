"""The state database: private, versioned per component, and clear about what it cannot read."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from spark_mcp.errors import StateError
from spark_mcp.state import Component, StateDB

NOTES_V1 = Component("notes", ["CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT NOT NULL)"])
NOTES_V2 = Component("notes", [*NOTES_V1.migrations, "ALTER TABLE notes ADD COLUMN author TEXT"])


def test_a_new_database_is_private_and_has_its_components(tmp_path: Path) -> None:
    db = StateDB(tmp_path / "home" / "state.db", [NOTES_V1])
    db.execute("INSERT INTO notes (text) VALUES (?)", ("hello",))
    assert [row["text"] for row in db.query("SELECT text FROM notes")] == ["hello"]
    assert stat.S_IMODE((tmp_path / "home" / "state.db").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "home").stat().st_mode) == 0o700


def test_reopening_applies_only_the_missing_migrations_and_keeps_the_rows(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    StateDB(path, [NOTES_V1]).execute("INSERT INTO notes (text) VALUES ('kept')")
    db = StateDB(path, [NOTES_V2])
    db.execute("UPDATE notes SET author = 'ann'")
    assert [tuple(row) for row in db.query("SELECT text, author FROM notes")] == [("kept", "ann")]
    assert db.query("SELECT version FROM schema_versions WHERE component = 'notes'")[0]["version"] == 2


def test_a_database_from_a_newer_spark_mcp_is_refused_with_what_to_do(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    StateDB(path, [NOTES_V2]).close()
    with pytest.raises(StateError, match=r"schema version 2.*knows only up to 1.*newer spark-mcp"):
        StateDB(path, [NOTES_V1])


@pytest.mark.parametrize("content", [b"this is not sqlite at all" * 100, b"SQLite format 3\x00" + b"\xff" * 4000])
def test_a_corrupt_database_is_refused_with_what_to_do(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "state.db"
    path.write_bytes(content)
    with pytest.raises(StateError, match=r"cannot be read.*move the file aside"):
        StateDB(path, [NOTES_V1])


def test_a_failed_transaction_leaves_nothing_behind(tmp_path: Path) -> None:
    db = StateDB(tmp_path / "state.db", [NOTES_V1])

    def half_then_fail() -> None:
        with db.transaction() as conn:
            conn.execute("INSERT INTO notes (text) VALUES ('half')")
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        half_then_fail()
    assert db.query("SELECT count(*) AS n FROM notes")[0]["n"] == 0
