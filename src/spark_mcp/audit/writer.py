"""Writing the audit log: ``AuditLog.emit`` appends one chained record, on disk before it returns.

Writing rules:

- Every string is redacted first (``Redactor``): registered secrets (driver tokens) and
  anything shaped like ``token=...``, ``PASSWORD: ...`` or ``Bearer ...``.
- The record is appended, flushed and ``fsync``-ed before ``emit`` returns, under a thread
  lock and an exclusive ``flock`` on the file, so threads and processes sharing one log
  keep one chain: the tip is re-read under the lock before each append.
- The file is created ``0600`` in a directory created ``0700``.
- If the log and its head disagree in a way a crash cannot explain, the log refuses to
  continue (``AuditError``) instead of papering over the gap with a fresh chain.
- A record that cannot be written whole (disk full, file size limit) is cut back off, so
  the log stays a valid chain; ``failure`` says why until a record is written again (MCP,
  the gateway and the console refuse calls meanwhile: no call runs that cannot be recorded).
- Text that is not valid Unicode (a lone surrogate, which Python's JSON decoder accepts)
  is written with the offending code points escaped (``\\ud800``), never dropped.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import structlog
from pydantic import ValidationError

from spark_mcp.audit.files import count_lines, ensure_private_dir, lines_backwards, read_head, write_head
from spark_mcp.audit.record import GENESIS_HASH, AuditRecord, now, parse_line, record_hash
from spark_mcp.errors import AuditError
from spark_mcp.redaction import Redactor

log = structlog.get_logger(__name__)


def _unicode(value: Any) -> Any:
    """``value`` with lone surrogates in its strings escaped: they cannot be encoded as UTF-8."""
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, list):
        return [_unicode(item) for item in value]
    return value


class AuditLog:
    """An append-only, hash-chained audit log file. Thread- and process-safe."""

    def __init__(self, path: Path, redactor: Redactor) -> None:
        self.path = path
        self._redactor = redactor
        self._lock = threading.Lock()
        ensure_private_dir(path.parent)
        try:
            self._fd: int | None = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        except OSError as exc:
            raise AuditError(f"{path}: cannot open audit log: {exc.strerror}") from None
        mode = stat.S_IMODE(os.fstat(self._fd).st_mode)
        if mode & 0o077:
            # Statements and table names are sensitive: nobody else may read the log.
            os.fchmod(self._fd, 0o600)
            log.warning("audit log was readable by others; now 0600", path=str(path), mode=oct(mode))
        self.failure: str | None = None  # why the last record could not be written, until one is
        self._tip_key: tuple[int, int] | None = None
        self._records = 0
        self._last_hash = GENESIS_HASH
        try:
            with self._locked(fcntl.LOCK_SH):
                self._load_tip()
        except AuditError:
            os.close(self._fd)
            self._fd = None
            raise

    def emit(
        self,
        *,
        request_id: str,
        principal: str,
        tool: str,
        outcome: Literal["ok", "error"],
        duration_ms: int,
        session_id: str | None = None,
        statement: str | None = None,
        kind: str | None = None,
        tables: Sequence[str] = (),
        decision: Literal["allowed", "denied"] | None = None,
        reason: str | None = None,
        rule: str | None = None,
        error_class: str | None = None,
        rows: int | None = None,
        job_id: str | None = None,
        result_id: str | None = None,
        auth: str | None = None,
        token_id: str | None = None,
        via: str | None = None,
    ) -> AuditRecord:
        """Append one record and return it once it is on disk (fsync-ed)."""
        given: dict[str, Any] = {
            "request_id": request_id,
            "principal": principal,
            "tool": tool,
            "session_id": session_id,
            "statement": statement,
            "kind": kind,
            "tables": list(tables),
            "decision": decision,
            "reason": reason,
            "rule": rule,
            "outcome": outcome,
            "error_class": error_class,
            "rows": rows,
            "duration_ms": duration_ms,
            "job_id": job_id,
            "result_id": result_id,
            "auth": auth,
            "token_id": token_id,
            "via": via,
        }
        redacted = {name: _unicode(self._redactor.redact_value(value)) for name, value in given.items()}
        with self._lock, self._locked(fcntl.LOCK_EX):
            with self._failing():
                self._load_tip()
            body = {"ts": now(), **redacted}
            try:
                # Validate before hashing, so the hash covers exactly what the file will hold.
                body = AuditRecord.model_validate({**body, "prev_hash": GENESIS_HASH, "hash": GENESIS_HASH}).model_dump(
                    mode="json", exclude={"prev_hash", "hash"}
                )
            except ValidationError as exc:
                first = exc.errors()[0]
                where = ".".join(str(p) for p in first["loc"])
                raise AuditError(f"invalid audit record: {where}: {first['msg']}") from None
            record = AuditRecord.model_validate(
                {**body, "prev_hash": self._last_hash, "hash": record_hash(self._last_hash, body)}
            )
            with self._failing():
                self._append((record.model_dump_json() + "\n").encode("utf-8"))
            self._records += 1
            self._last_hash = record.hash
            self._tip_key = self._stat_key()
            with self._failing():
                try:
                    write_head(self.path, self._records, record.hash)
                except OSError as exc:
                    # The record is on disk and the head one behind, which the next emit repairs;
                    # the caller still hears of it, since the next write will likely fail too.
                    raise AuditError(f"{self.path}: cannot update the head file: {exc.strerror}") from None
            self.failure = None
            return record

    @contextlib.contextmanager
    def _failing(self) -> Iterator[None]:
        """Remember why the log cannot be written (the file, not one record), until it can again."""
        try:
            yield
        except AuditError as exc:
            self.failure = str(exc)
            raise

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    # The tip (record count and last hash) is cached and keyed by the file's size and
    # mtime: when another process appended since, it is read again from the file.

    def _stat_key(self) -> tuple[int, int]:
        status = os.fstat(self._open_fd())
        return status.st_size, status.st_mtime_ns

    def _load_tip(self) -> None:
        """Read the log's last record and check it against the head file. Hold the flock."""
        key = self._stat_key()
        if key == self._tip_key:
            return
        head = read_head(self.path)
        if isinstance(head, str):
            raise AuditError(f"{head}; run `spark-mcp audit verify {self.path}`")
        with os.fdopen(os.dup(self._open_fd()), "rb") as handle:
            last_raw = next(lines_backwards(handle), None)
            if last_raw is None:
                records, last_hash = 0, GENESIS_HASH
                if head is not None and head.records > 0:
                    raise AuditError(self._gap(f"is empty but its head file records {head.records} records"))
            else:
                try:
                    last, _ = parse_line(last_raw)
                except ValueError as exc:
                    line = count_lines(handle)
                    raise AuditError(
                        f"{self.path}: line {line}: the last record is malformed: {exc}; "
                        f"move the log aside to start a new one"
                    ) from None
                if head is None:
                    raise AuditError(self._gap("has records but its head file is missing"))
                if head.hash == last.hash:
                    records = head.records
                elif head.hash == last.prev_hash:
                    records = head.records + 1  # a writer stopped between the record and its head
                else:
                    raise AuditError(self._gap("does not end with the record its head file names"))
                last_hash = last.hash
        self._records, self._last_hash, self._tip_key = records, last_hash, key

    def _gap(self, what: str) -> str:
        return (
            f"{self.path}: the audit log {what}: records may have been deleted. "
            f"Run `spark-mcp audit verify {self.path}`, "
            "then move the log and its head aside to start a new one"
        )

    def _append(self, data: bytes) -> None:
        fd = self._open_fd()
        size = os.fstat(fd).st_size  # under the flock: nobody else appends meanwhile
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, size)  # no half record: the chain stays valid
            raise AuditError(f"{self.path}: cannot write audit record: {exc.strerror}") from None

    def _open_fd(self) -> int:
        if self._fd is None:
            raise AuditError(f"{self.path}: the audit log is closed")
        return self._fd

    @contextlib.contextmanager
    def _locked(self, operation: int) -> Iterator[None]:
        fd = self._open_fd()
        fcntl.flock(fd, operation)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
