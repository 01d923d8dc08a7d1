"""The audit log: records on disk, a chain that shows tampering, redaction, and sharing.

Each tampering test edits the file the way someone with write access would, then checks
that ``verify`` names the line (and, where it matters, that the log refuses to go on).
"""

from __future__ import annotations

import itertools
import json
import os
import re
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from spark_mcp.audit import (
    GENESIS_HASH,
    REDACTED,
    AuditLog,
    AuditRecord,
    Redactor,
    record_hash,
    tail,
    verify,
)
from spark_mcp.errors import AuditError

TOKEN = "sc-token-0123456789abcdef"


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "audit" / "audit.jsonl"


def emit(log: AuditLog, n: int = 1, *, principal: str = "alice", statement: str | None = "SELECT 1") -> None:
    for i in range(n):
        log.emit(
            request_id=f"req-{principal}-{i}",
            principal=principal,
            tool="run_sql",
            statement=statement,
            kind="query",
            tables=["spark_catalog.tpch.lineitem"],
            decision="allowed",
            reason="reader may sql.read spark_catalog.tpch.lineitem",
            rule="roles.reader.actions",
            outcome="ok",
            rows=3,
            duration_ms=12,
        )


def write_log(path: Path, n: int) -> None:
    with AuditLog(path, Redactor()) as log:
        emit(log, n)


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines(keepends=True)


def rewrite(path: Path, new_lines: list[str]) -> None:
    path.write_text("".join(new_lines))


# --- what a record looks like ------------------------------------------------------------------


def test_emitted_records_are_json_lines_in_field_order_and_verify(path: Path) -> None:
    write_log(path, 5)
    report = verify(path)
    assert (report.ok, report.records, report.problems) == (True, 5, [])
    records = [json.loads(line) for line in lines(path)]
    assert len(records) == 5
    assert list(records[0]) == list(AuditRecord.model_fields)  # keys in field order
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", records[0]["ts"])
    assert records[0]["prev_hash"] == GENESIS_HASH
    for before, after in itertools.pairwise(records):
        assert after["prev_hash"] == before["hash"]


def test_the_hash_covers_prev_hash_and_every_other_field(path: Path) -> None:
    with AuditLog(path, Redactor()) as log:
        emit(log, 2)
    second = json.loads(lines(path)[1])
    body = {k: v for k, v in second.items() if k not in ("prev_hash", "hash")}
    assert second["hash"] == record_hash(second["prev_hash"], body)


def test_emit_returns_the_record_it_wrote(path: Path) -> None:
    with AuditLog(path, Redactor()) as log:
        record = log.emit(request_id="r1", principal="bob", tool="whoami", outcome="ok", duration_ms=1)
    assert AuditRecord.model_validate_json(lines(path)[0]) == record
    assert record.tables == []
    assert record.decision is None


def test_an_invalid_record_is_an_audit_error_and_writes_nothing(path: Path) -> None:
    with AuditLog(path, Redactor()) as log:
        with pytest.raises(AuditError, match="outcome"):
            log.emit(request_id="r", principal="bob", tool="t", outcome="maybe", duration_ms=1)  # type: ignore[arg-type]
        emit(log, 1)
    assert verify(path).ok
    assert len(lines(path)) == 1


def test_emit_after_close_is_an_audit_error(path: Path) -> None:
    log = AuditLog(path, Redactor())
    log.close()
    log.close()  # closing twice is harmless
    with pytest.raises(AuditError, match="closed"):
        emit(log)


def test_records_go_only_to_the_audit_file_never_to_the_logs(path: Path) -> None:
    with capture_logs() as logged, AuditLog(path, Redactor()) as log:
        emit(log, 3)
    assert logged == []


# --- tampering ---------------------------------------------------------------------------------


def test_an_edited_field_is_named_by_its_line(path: Path) -> None:
    write_log(path, 5)
    content = lines(path)
    content[2] = content[2].replace('"rows":3', '"rows":4')
    rewrite(path, content)
    report = verify(path)
    assert not report.ok
    assert report.problems == ["line 3: hash mismatch: the record was changed after it was written"]


def test_an_added_field_breaks_the_hash(path: Path) -> None:
    write_log(path, 3)
    content = lines(path)
    record = json.loads(content[1])
    record["note"] = "x"
    content[1] = json.dumps(record, separators=(",", ":")) + "\n"
    rewrite(path, content)
    report = verify(path)
    assert not report.ok
    assert any(problem.startswith("line 2: not an audit record") for problem in report.problems)


def test_swapped_lines_are_named(path: Path) -> None:
    write_log(path, 5)
    content = lines(path)
    content[2], content[3] = content[3], content[2]
    rewrite(path, content)
    report = verify(path)
    assert report.problems == [
        "line 3: out of order: it follows line 4, not line 2",
        "line 4: out of order: it follows line 2, not line 3",
        "line 5: out of order: it follows line 3, not line 4",
    ]


def test_a_deleted_middle_line_is_named(path: Path) -> None:
    write_log(path, 5)
    content = lines(path)
    del content[2]
    rewrite(path, content)
    report = verify(path)
    assert not report.ok
    assert report.problems[0] == (
        "line 3: the record before it is missing: records were deleted between line 2 and line 3"
    )
    assert "lines were deleted" in report.problems[1]  # the head file counted 5


def test_a_deleted_first_line_is_named(path: Path) -> None:
    write_log(path, 3)
    rewrite(path, lines(path)[1:])
    assert verify(path).problems[0] == "line 1: the chain does not start here: records before it were deleted"


def test_deleted_last_lines_are_caught_by_the_head_file(path: Path) -> None:
    write_log(path, 5)
    rewrite(path, lines(path)[:3])
    report = verify(path)
    assert not report.ok
    assert report.records == 3
    assert report.problems == [
        "the log ends at line 3 but its head file records 5 records and a last record that is not in the "
        "log: the last 2 record(s) were deleted"
    ]


def test_the_log_refuses_to_continue_after_its_last_lines_were_deleted(path: Path) -> None:
    # Otherwise the next record would rewrite the head file and erase the evidence.
    write_log(path, 5)
    rewrite(path, lines(path)[:4])
    with pytest.raises(AuditError, match="does not end with the record its head file names"):
        AuditLog(path, Redactor())
    assert not verify(path).ok


def test_an_emptied_log_is_caught(path: Path) -> None:
    write_log(path, 2)
    rewrite(path, [])
    assert not verify(path).ok
    with pytest.raises(AuditError, match="is empty but its head file records 2 records"):
        AuditLog(path, Redactor())


def test_a_writer_that_stopped_between_a_record_and_its_head_is_recovered(path: Path) -> None:
    # The record is fsync-ed before the head is replaced; a crash between the two leaves the
    # head one record behind, which is the only gap the log accepts and repairs.
    write_log(path, 3)
    second = json.loads(lines(path)[1])
    (path.parent / "audit.jsonl.head").write_text(json.dumps({"records": 2, "hash": second["hash"]}))
    assert verify(path).ok
    write_log(path, 1)
    report = verify(path)
    assert (report.ok, report.records) == (True, 4)
    assert json.loads((path.parent / "audit.jsonl.head").read_text())["records"] == 4


def test_the_head_is_rewritten_in_place_whatever_was_there_before(path: Path) -> None:
    # The head is overwritten in place, not renamed over: a longer head (written by hand, or by
    # an older version) must not leave its tail behind the new one.
    write_log(path, 2)
    last = json.loads(lines(path)[-1])
    head = path.parent / "audit.jsonl.head"
    inode = head.stat().st_ino
    head.write_text(json.dumps({"records": 2, "hash": last["hash"]}, indent=8) + " " * 300)
    write_log(path, 1)
    report = verify(path)
    assert (report.ok, report.records) == (True, 3)
    assert json.loads(head.read_text()) == {"records": 3, "hash": json.loads(lines(path)[-1])["hash"]}
    assert head.stat().st_ino == inode


def test_the_head_is_never_written_through_a_link(path: Path, tmp_path: Path) -> None:
    write_log(path, 1)
    head = path.parent / "audit.jsonl.head"
    elsewhere = tmp_path / "elsewhere.json"
    elsewhere.write_text(head.read_text())  # a valid head, so that only the write can refuse
    before = elsewhere.read_text()
    head.unlink()
    head.symlink_to(elsewhere)
    with pytest.raises(AuditError, match="head file"):
        write_log(path, 1)
    assert elsewhere.read_text() == before


def test_records_appended_behind_the_head_files_back_are_named(path: Path) -> None:
    write_log(path, 2)
    head = (path.parent / "audit.jsonl.head").read_text()
    write_log(path, 2)
    (path.parent / "audit.jsonl.head").write_text(head)  # as if the head were restored from a backup
    assert verify(path).problems == [
        "lines 3-4 follow line 2, the last record the head file knows: they were appended without updating it"
    ]
    with pytest.raises(AuditError, match="does not end with the record its head file names"):
        AuditLog(path, Redactor())


def test_a_missing_head_file_is_a_problem(path: Path) -> None:
    write_log(path, 2)
    (path.parent / "audit.jsonl.head").unlink()
    assert verify(path).problems == [
        f"{path}.head: head file missing: cannot tell whether the last records were deleted"
    ]
    with pytest.raises(AuditError, match="head file is missing"):
        AuditLog(path, Redactor())


def test_a_truncated_last_line_is_named_and_stops_the_log(path: Path) -> None:
    write_log(path, 5)
    content = lines(path)
    content[4] = content[4][:40]  # a write cut short: half a record and no newline
    rewrite(path, content)
    report = verify(path)
    assert not report.ok
    assert "line 5: no newline at the end: the last write was interrupted" in report.problems
    assert any(problem.startswith("line 5: not valid JSON") for problem in report.problems)
    with pytest.raises(AuditError, match=rf"{re.escape(str(path))}: line 5: the last record is malformed"):
        AuditLog(path, Redactor())


def test_a_malformed_middle_line_is_named_once(path: Path) -> None:
    write_log(path, 5)
    content = lines(path)
    content[2] = "this is not json\n"
    rewrite(path, content)
    report = verify(path)
    # The next line's link cannot be checked against garbage, so only the garbage is reported.
    assert len(report.problems) == 1
    assert report.problems[0].startswith("line 3: not valid JSON")
    assert report.records == 4


def test_a_missing_log_does_not_verify(tmp_path: Path) -> None:
    report = verify(tmp_path / "nope.jsonl")
    assert not report.ok
    assert "not found" in report.problems[0]


def test_an_empty_new_log_verifies(path: Path) -> None:
    AuditLog(path, Redactor()).close()
    assert verify(path).ok


# --- redaction ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # A registered secret, wherever it appears.
        (f"SELECT '{TOKEN}'", f"SELECT '{REDACTED}'"),
        (f"sc://localhost:15002/;token={TOKEN}", f"sc://localhost:15002/;token={REDACTED}"),
        # Credential-shaped assignments, even for values nobody registered.
        ("sc://localhost:1/;token=abc123;x=1", f"sc://localhost:1/;token={REDACTED};x=1"),
        (
            "SPARK_CONNECT_AUTHENTICATE_TOKEN=hunter2 spark",
            f"SPARK_CONNECT_AUTHENTICATE_TOKEN={REDACTED} spark",
        ),
        (
            "SET spark.hadoop.fs.s3a.secret.key = 'AKIA/xyz'",
            f"SET spark.hadoop.fs.s3a.secret.key = '{REDACTED}'",
        ),
        ('{"password": "pw"}', f'{{"password": "{REDACTED}"}}'),
        ("Authorization: Bearer eyJhbGciOi.J9.x-y_z", f"Authorization: Bearer {REDACTED}"),
        # Words that merely contain a sensitive word are left alone.
        ("SELECT secret_level = 3, token_count FROM t", "SELECT secret_level = 3, token_count FROM t"),
        ("SELECT * FROM tpch.lineitem", "SELECT * FROM tpch.lineitem"),
    ],
)
def test_redactor(text: str, expected: str) -> None:
    redactor = Redactor()
    redactor.add_secret(TOKEN)
    assert redactor.redact(text) == expected


def test_a_removed_secret_is_no_longer_redacted_unless_another_owner_holds_it() -> None:
    redactor = Redactor()
    redactor.add_secret(TOKEN)
    redactor.add_secret(TOKEN)
    redactor.remove_secret(TOKEN)
    assert redactor.redact(TOKEN) == REDACTED
    redactor.remove_secret(TOKEN)
    assert redactor.redact(TOKEN) == TOKEN
    with pytest.raises(ValueError, match="empty"):
        redactor.add_secret("")


def test_the_longest_secret_is_redacted_whole() -> None:
    redactor = Redactor()
    redactor.add_secret("abcd1234")
    redactor.add_secret("abcd1234wxyz")
    assert redactor.redact("x abcd1234wxyz y") == f"x {REDACTED} y"


def test_every_string_field_is_redacted_before_it_reaches_the_file(path: Path) -> None:
    redactor = Redactor()
    redactor.add_secret(TOKEN)
    with AuditLog(path, redactor) as log:
        record = log.emit(
            request_id="r1",
            principal="alice",
            tool="run_sql",
            statement=f"SELECT reflect('x', '{TOKEN}') -- token=plain-secret",
            tables=[f"spark_catalog.db.{TOKEN}"],
            reason=f"driver refused {TOKEN}",
            outcome="error",
            error_class="policy_denied",
            duration_ms=3,
        )
    content = path.read_text()
    assert TOKEN not in content
    assert "plain-secret" not in content
    assert record.statement == f"SELECT reflect('x', '{REDACTED}') -- token={REDACTED}"
    assert record.tables == [f"spark_catalog.db.{REDACTED}"]
    assert record.reason == f"driver refused {REDACTED}"
    assert verify(path).ok  # the hash covers the redacted text, which is what the file holds


# --- continuing and sharing a chain -------------------------------------------------------------


def test_the_chain_continues_across_reopening(path: Path) -> None:
    write_log(path, 2)
    write_log(path, 3)
    records = [json.loads(line) for line in lines(path)]
    assert records[2]["prev_hash"] == records[1]["hash"]
    assert verify(path) == verify(path)
    report = verify(path)
    assert (report.ok, report.records) == (True, 5)


def test_threads_sharing_one_log_keep_one_chain(path: Path) -> None:
    with AuditLog(path, Redactor()) as log:
        threads = [threading.Thread(target=emit, args=(log, 25), kwargs={"principal": f"u{i}"}) for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    report = verify(path)
    assert (report.ok, report.records, report.problems) == (True, 200, [])


_WRITER = """
import sys
from pathlib import Path
from spark_mcp.audit import AuditLog, Redactor

path, who, count = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
with AuditLog(path, Redactor()) as log:
    for i in range(count):
        log.emit(request_id=f"{who}-{i}", principal=who, tool="run_sql", outcome="ok", duration_ms=i)
"""


def test_processes_appending_to_one_log_keep_one_chain(path: Path) -> None:
    write_log(path, 1)  # the writers continue an existing chain, and each opens it mid-stream
    writers = [
        subprocess.Popen([sys.executable, "-c", _WRITER, str(path), f"p{i}", "60"], stderr=subprocess.PIPE)
        for i in range(4)
    ]
    for writer in writers:
        _, stderr = writer.communicate(timeout=120)
        assert writer.returncode == 0, stderr.decode()
    report = verify(path)
    assert (report.ok, report.records, report.problems) == (True, 241, [])
    by_writer = [r.request_id for r in tail(path, 1000, principal="p2")]
    assert by_writer == [f"p2-{i}" for i in range(60)]  # each writer's records in its own order


# --- files -------------------------------------------------------------------------------------


def test_files_are_0600_and_created_folders_0700(path: Path) -> None:
    write_log(path, 1)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE((path.parent / "audit.jsonl.head").stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.parent.parent.stat().st_mode) == 0o700
    assert sorted(p.name for p in path.parent.iterdir()) == [
        "audit.jsonl",
        "audit.jsonl.head",
    ]  # no temp files


def test_a_log_readable_by_others_is_made_private(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    path.touch()
    os.chmod(path, 0o644)
    with AuditLog(path, Redactor()) as log:
        emit(log)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


# --- tail --------------------------------------------------------------------------------------


def test_tail_returns_the_last_records_oldest_first(path: Path) -> None:
    with AuditLog(path, Redactor()) as log:
        for i in range(10):
            log.emit(
                request_id=f"r{i}",
                principal="alice" if i % 2 else "bob",
                tool="t",
                outcome="ok",
                duration_ms=i,
            )
    assert [r.request_id for r in tail(path, 3)] == ["r7", "r8", "r9"]
    assert [r.request_id for r in tail(path, 3, principal="alice")] == ["r5", "r7", "r9"]
    assert [r.request_id for r in tail(path, 100, principal="bob")] == ["r0", "r2", "r4", "r6", "r8"]
    assert tail(path, 5, principal="carol") == []
    assert tail(path, 0) == []


def test_tail_reads_records_longer_than_its_read_chunk(path: Path) -> None:
    # Statements of 50 KB make lines straddle the 64 KB chunks tail reads backwards.
    with AuditLog(path, Redactor()) as log:
        for i in range(6):
            log.emit(
                request_id=f"r{i}",
                principal="alice",
                tool="t",
                statement="x" * 50_000,
                outcome="ok",
                duration_ms=i,
            )
    assert [r.request_id for r in tail(path, 4)] == ["r2", "r3", "r4", "r5"]
    assert [r.request_id for r in tail(path, 100)] == [f"r{i}" for i in range(6)]


def test_tail_of_a_missing_log_is_empty(tmp_path: Path) -> None:
    assert tail(tmp_path / "nope.jsonl") == []


def test_tail_refuses_a_malformed_record(path: Path) -> None:
    write_log(path, 3)
    content = lines(path)
    content[1] = "garbage\n"
    rewrite(path, content)
    assert len(tail(path, 1)) == 1  # the records it needs are fine
    with pytest.raises(AuditError, match="line 2 from the end is malformed"):
        tail(path, 3)
