"""The recent audit records a console page shows: the newest first, within a bounded read.

A page must cost little however large the log is, so it reads backwards from the end
(the way ``spark-mcp audit tail`` does) and looks at no more than ``scan`` lines: a
user whose last records are older than that sees the newest of what was scanned, and
the page says the search stopped. A malformed line is skipped and counted, never shown:
``spark-mcp audit verify`` is the tool that says what is wrong with the log.
"""

from __future__ import annotations

import fcntl
import json
from dataclasses import dataclass, field
from pathlib import Path

from spark_mcp.audit import AuditRecord
from spark_mcp.audit.files import lines_backwards
from spark_mcp.audit.record import parse_line

SHOWN = 50
SCAN = 20_000


@dataclass
class RecentRecords:
    records: list[AuditRecord] = field(default_factory=list)  # newest first
    scanned_all: bool = True  # False: the read stopped at ``scan`` lines
    malformed: int = 0


def recent(path: Path, *, principal: str | None, limit: int = SHOWN, scan: int = SCAN) -> RecentRecords:
    """The newest ``limit`` records of ``principal`` (None: of everyone) among the last ``scan`` lines."""
    found = RecentRecords()
    # Records are compact JSON; a line without the principal's own key and value cannot be
    # theirs, so it is skipped without parsing (parsing is what a page would spend its time on).
    needle = None if principal is None else b'"principal":' + json.dumps(principal).encode("utf-8")
    try:
        with path.open("rb") as handle:
            fcntl.flock(handle, fcntl.LOCK_SH)  # no writer mid-append while we read
            for seen, raw in enumerate(lines_backwards(handle), start=1):
                if seen > scan:
                    found.scanned_all = False
                    break
                if needle is not None and needle not in raw:
                    continue
                try:
                    record, _ = parse_line(raw)
                except ValueError:
                    found.malformed += 1
                    continue
                if principal is None or record.principal == principal:
                    found.records.append(record)
                    if len(found.records) >= limit:
                        break
    except FileNotFoundError:
        pass
    return found
