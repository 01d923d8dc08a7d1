"""Reading the audit log: ``verify`` checks the whole chain, ``tail`` reads the last records.

What ``verify`` makes visible:

    an edited line        its hash no longer matches its content
    reordered lines       a prev_hash points at a record that is not the line before
    a deleted line        a prev_hash points at no record in the file
    deleted last lines    the log ends before the record the head file names
    a malformed line      not JSON, or not an audit record
"""

from __future__ import annotations

import fcntl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spark_mcp.audit.files import Head, head_path, lines_backwards, read_head
from spark_mcp.audit.record import GENESIS_HASH, AuditRecord, body_of, parse_line, record_hash
from spark_mcp.errors import AuditError


@dataclass(frozen=True)
class VerifyReport:
    """What ``verify`` found: ``ok`` when there are no problems."""

    ok: bool
    records: int
    problems: list[str] = field(default_factory=list)


def verify(path: Path) -> VerifyReport:
    """Check every line's hash and link, and the end of the log against its head file."""
    try:
        with path.open("rb") as handle:
            fcntl.flock(handle, fcntl.LOCK_SH)  # a consistent snapshot: no writer mid-append
            data = handle.read()
            head = read_head(path)
    except FileNotFoundError:
        return VerifyReport(ok=False, records=0, problems=[f"{path}: audit log not found"])
    except OSError as exc:
        return VerifyReport(ok=False, records=0, problems=[f"{path}: cannot read: {exc.strerror}"])

    problems: list[str] = []
    lines = data.split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    elif data:
        problems.append(f"line {len(lines)}: no newline at the end: the last write was interrupted")

    parsed: list[AuditRecord | None] = []
    bodies: list[dict[str, Any]] = []  # as read: the hash is checked on the bytes' meaning, not a copy
    for number, raw in enumerate(lines, start=1):
        try:
            record, obj = parse_line(raw)
        except ValueError as exc:
            problems.append(f"line {number}: {exc}" if raw.strip() else f"line {number}: empty line")
            parsed.append(None)
            bodies.append({})
        else:
            parsed.append(record)
            bodies.append(body_of(obj))
    line_of_hash = {record.hash: n for n, record in enumerate(parsed, start=1) if record is not None}

    expected: str | None = GENESIS_HASH  # None: the line before could not be read
    for number, (entry, body) in enumerate(zip(parsed, bodies, strict=True), start=1):
        if entry is None:
            expected = None
            continue
        if record_hash(entry.prev_hash, body) != entry.hash:
            problems.append(f"line {number}: hash mismatch: the record was changed after it was written")
        if expected is not None and entry.prev_hash != expected:
            problems.append(f"line {number}: {_link_problem(number, entry.prev_hash, line_of_hash)}")
        expected = entry.hash

    records = sum(1 for record in parsed if record is not None)
    problems.extend(_head_problems(path, head, parsed))
    return VerifyReport(ok=not problems, records=records, problems=problems)


def _link_problem(number: int, prev_hash: str, line_of_hash: Mapping[str, int]) -> str:
    follows = line_of_hash.get(prev_hash)
    if follows is not None:
        return f"out of order: it follows line {follows}, not line {number - 1}"
    if prev_hash == GENESIS_HASH:
        return "a new chain starts here in the middle of the log"
    if number == 1:
        return "the chain does not start here: records before it were deleted"
    return f"the record before it is missing: records were deleted between line {number - 1} and line {number}"


def _head_problems(path: Path, head: Head | str | None, parsed: list[AuditRecord | None]) -> list[str]:
    """Compare the end of the log with its head file: the only witness of deleted last lines."""
    if isinstance(head, str):
        return [head]
    count = len(parsed)
    last = parsed[-1] if parsed else None
    if head is None:
        if count == 0:
            return []
        return [f"{head_path(path)}: head file missing: cannot tell whether the last records were deleted"]
    last_hash = last.hash if last is not None else GENESIS_HASH
    if head.hash == last_hash:
        if head.records == count:
            return []
        change = "deleted" if head.records > count else "added"
        return [f"the log has {count} lines but its head file records {head.records} records: lines were {change}"]
    if head.records == count - 1 and last is not None and head.hash == last.prev_hash:
        return []  # a writer stopped between a record and its head; the next record fixes it
    known = [n for n, record in enumerate(parsed, start=1) if record is not None and record.hash == head.hash]
    if known:
        return [
            f"lines {known[0] + 1}-{count} follow line {known[0]}, the last record the head file knows: "
            "they were appended without updating it"
        ]
    if head.records > count:
        missing = head.records - count
        return [
            f"the log ends at line {count} but its head file records {head.records} records and a last "
            f"record that is not in the log: the last {missing} record(s) were deleted"
        ]
    return [f"the last line does not match the head file ({head.records} records): the end of the log was changed"]


def tail(path: Path, n: int = 20, *, principal: str | None = None) -> list[AuditRecord]:
    """The last ``n`` records (of ``principal`` only, if given), oldest first.

    Reads backwards from the end, so it costs the size of the answer, not of the log.
    A malformed line on the way is an ``AuditError``: ``verify`` says what is wrong.
    """
    if n <= 0:
        return []
    found: list[AuditRecord] = []
    try:
        with path.open("rb") as handle:
            fcntl.flock(handle, fcntl.LOCK_SH)
            for back, raw in enumerate(lines_backwards(handle), start=1):
                try:
                    record, _ = parse_line(raw)
                except ValueError as exc:
                    raise AuditError(
                        f"{path}: line {back} from the end is malformed: {exc}; run `spark-mcp audit verify {path}`"
                    ) from None
                if principal is None or record.principal == principal:
                    found.append(record)
                    if len(found) == n:
                        break
    except FileNotFoundError:
        return []
    found.reverse()
    return found
