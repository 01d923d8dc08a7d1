"""``emit_call``: the one way every front door (MCP, gateway, console) writes a call's record.

Pure tests on a real audit log file: what a ``CallRecord`` becomes, and that a record that
cannot be written is always an ``AuditError``, logged, whatever went wrong underneath.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import pytest
from structlog.testing import capture_logs

from spark_mcp.audit import AuditLog, Redactor, emit_call, tail, verify
from spark_mcp.calls import CallRecord
from spark_mcp.errors import AuditError
from tests.audit_faults import audit_disk


@pytest.fixture
def log(tmp_path: Path) -> Iterator[AuditLog]:
    with AuditLog(tmp_path / "audit" / "audit.jsonl", Redactor()) as opened:
        yield opened


def call(**fields: Any) -> CallRecord:
    record = CallRecord(tool="run_sql", request_id="r1", principal="alice")
    record.fields.update(fields)
    return record


@pytest.mark.parametrize(
    ("outcome", "given", "noted", "recorded"),
    [
        # A call that succeeded has no error class, whatever it noted or was given.
        ("ok", None, {}, None),
        ("ok", "policy_denied", {"error_class": "x", "error_code": "y"}, None),
        # A failed call's error class is the one the front door picked, not the one it noted
        # (the front door already preferred the noted one when it should).
        ("error", "cancelled", {}, "cancelled"),
        (
            "error",
            "TABLE_OR_VIEW_NOT_FOUND",
            {"error_class": "noted", "error_code": "spark_error"},
            "TABLE_OR_VIEW_NOT_FOUND",
        ),
        ("error", None, {}, None),
    ],
)
def test_a_call_becomes_one_record_with_its_facts_its_outcome_and_the_error_class_picked_for_it(
    log: AuditLog, outcome: Literal["ok", "error"], given: str | None, noted: dict[str, str], recorded: str | None
) -> None:
    record = call(statement="SELECT 1", tables=["tpch.region"], via="gateway", auth="token", token_id="t1", **noted)
    written = emit_call(log, record, outcome, given, time.monotonic())
    assert (written.outcome, written.error_class) == (outcome, recorded)
    assert (written.request_id, written.principal, written.tool) == ("r1", "alice", "run_sql")
    assert (written.statement, written.tables, written.via, written.auth, written.token_id) == (
        "SELECT 1",
        ["tpch.region"],
        "gateway",
        "token",
        "t1",
    )
    assert tail(log.path, 5) == [written]  # on disk, once
    assert verify(log.path).ok


def test_the_duration_runs_from_the_calls_start(log: AuditLog) -> None:
    written = emit_call(log, call(), "ok", None, time.monotonic() - 2.5)
    assert written.duration_ms >= 2500


def test_a_record_the_log_refuses_is_an_audit_error_and_is_logged(log: AuditLog) -> None:
    with capture_logs() as logged, pytest.raises(AuditError, match="invalid audit record: rows"):
        emit_call(log, call(rows="many"), "ok", None, time.monotonic())
    assert [(e["event"], e["tool"]) for e in logged] == [("audit.write_failed", "run_sql")]
    assert tail(log.path, 5) == []


def test_a_closed_log_is_an_audit_error(log: AuditLog) -> None:
    log.close()
    with capture_logs() as logged, pytest.raises(AuditError, match="closed"):
        emit_call(log, call(), "ok", None, time.monotonic())
    assert [e["event"] for e in logged] == ["audit.write_failed"]


def test_a_bug_while_writing_is_still_an_audit_error_so_every_front_door_fails_closed(log: AuditLog) -> None:
    # A fact the record has no field for: a bug in the code that noted it (emit() refuses the
    # keyword with a TypeError), and still a call that cannot be recorded.
    with (
        capture_logs() as logged,
        pytest.raises(AuditError, match="cannot write the audit record: TypeError") as caught,
    ):
        emit_call(log, call(colour="blue"), "ok", None, time.monotonic())
    assert isinstance(caught.value.__cause__, TypeError)
    assert [e["event"] for e in logged] == ["audit.write_failed"]
    assert tail(log.path, 5) == []


def test_a_failing_log_is_explained_once_in_full_then_in_a_line_per_call(
    log: AuditLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    disk = audit_disk(monkeypatch)  # a fault injected: see tests/audit_faults.py
    disk(full=True)
    with capture_logs() as logged:
        for _ in range(3):
            with pytest.raises(AuditError, match="No space left"):
                emit_call(log, call(), "error", "audit_error", time.monotonic())
    assert [e["event"] for e in logged] == ["audit.write_failed", "audit.still_failing", "audit.still_failing"]
    assert logged[0]["exc_info"] is True and "exc_info" not in logged[1]
    assert "No space left" in logged[1]["why"]
    disk(full=False)
    assert emit_call(log, call(), "ok", None, time.monotonic()).outcome == "ok"  # the log works again
    disk(full=True)
    with capture_logs() as logged, pytest.raises(AuditError):
        emit_call(log, call(), "ok", None, time.monotonic())
    assert [e["event"] for e in logged] == ["audit.write_failed"]  # a new failure: explained in full again
    disk(full=False)
    assert verify(log.path).ok
