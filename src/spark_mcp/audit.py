"""The audit log: one typed record per tool call, hash-chained, on disk before the reply.

Format: JSON lines, one ``AuditRecord`` per line, keys in field order. Each record holds
``prev_hash`` (the previous record's ``hash``, ``"0" * 64`` for the first) and ``hash``,
the SHA-256 of ``prev_hash`` followed by the canonical JSON (sorted keys, no spaces) of
every other field. A head file ``<log>.head`` holds the record count and the last hash.
Together they make tampering visible to ``verify()``:

    an edited line        its hash no longer matches its content
    reordered lines       a prev_hash points at a record that is not the line before
    a deleted line        a prev_hash points at no record in the file
    deleted last lines    the log ends before the record the head file names
    a malformed line      not JSON, or not an audit record

The chain is not signed: someone who can rewrite the whole file and its head can forge
it. What it guarantees is that a partial edit, an accident or a crash is never silent.

Writing rules (``AuditLog.emit``):

- Every string is redacted first (``Redactor``): registered secrets (driver tokens) and
  anything shaped like ``token=...``, ``PASSWORD: ...``, ``Bearer ...`` or an API token
  (``smcp_<id>_<secret>``).
- The record is appended, flushed and ``fsync``-ed before ``emit`` returns, under a thread
  lock and an exclusive ``flock`` on the file, so threads and processes sharing one log
  keep one chain: the tip is re-read under the lock before each append.
- The file is created ``0600`` in a directory created ``0700``.
- If the log and its head disagree in a way a crash cannot explain, the log refuses to
  continue (``AuditError``) instead of papering over the gap with a fresh chain.

Records go only to the audit file, never to the structlog logs.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import stat
import threading
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO, Literal

import structlog
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from spark_mcp.errors import AuditError

log = structlog.get_logger(__name__)

GENESIS_HASH = "0" * 64
REDACTED = "[REDACTED]"
HEAD_SUFFIX = ".head"
_HASH = r"^[0-9a-f]{64}$"
_CHUNK = 64 * 1024


class AuditRecord(BaseModel):
    """One tool call, as the audit log keeps it. Field order is the JSON key order."""

    # strict: a record read back must be exactly what was written, not a coerced look-alike.
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    ts: str  # ISO 8601 UTC with milliseconds and "Z"
    request_id: str
    principal: str
    tool: str
    session_id: str | None = None
    statement: str | None = None  # SQL text, or the plan as compact JSON
    kind: str | None = None  # StatementKind value
    tables: list[str] = Field(default_factory=list)  # resolved, fully qualified
    decision: Literal["allowed", "denied"] | None = None
    reason: str | None = None
    rule: str | None = None
    outcome: Literal["ok", "error"]
    error_class: str | None = None  # e.g. TABLE_OR_VIEW_NOT_FOUND or policy_denied
    rows: int | None = None
    duration_ms: int
    job_id: str | None = None
    result_id: str | None = None
    auth: str | None = None  # how the principal was authenticated: stdio, token, oidc, proxy
    token_id: str | None = None  # the API token's id (never the token itself)
    via: str | None = None  # the front door: mcp, gateway, console
    prev_hash: str = Field(pattern=_HASH)
    hash: str = Field(pattern=_HASH)


def record_hash(prev_hash: str, body: Mapping[str, Any]) -> str:
    """The hash of a record: ``body`` is every field but ``prev_hash`` and ``hash``."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256((prev_hash + canonical).encode("utf-8")).hexdigest()


def _body(record: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k not in ("prev_hash", "hash")}


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# --- redaction ------------------------------------------------------------------------------

# A word that names a credential, a separator, then the value, quoted or bare. What comes
# before the word does not matter (``SPARK_CONNECT_AUTHENTICATE_TOKEN=`` is caught by its
# end), but the separator must follow the word at once, so ``secret_level = 3`` is left alone.
_ASSIGNMENT = re.compile(
    r"""(?ix)
    (?P<key>token|password|passwd|pwd|secret|secret[_.-]?key|api[_-]?key|access[_-]?key|credentials?)
    (?P<sep>["']?\s*[=:]\s*)
    (?P<value>"[^"]*"|'[^']*'|[^\s;&,'"(){}\[\]]+)
    """
)
_BEARER = re.compile(r"(?i)\b(Bearer\s+)[A-Za-z0-9._~+/-]+=*")
# spark-mcp's own API tokens, by shape (``state/tokens.py``): caught wherever they appear.
_API_TOKEN = re.compile(r"smcp_[0-9a-f]{12}_[A-Za-z0-9_-]{43}")


def _redact_assignment(match: re.Match[str]) -> str:
    value = match["value"]
    quote = value[0] if value[0] in "\"'" else ""
    return f"{match['key']}{match['sep']}{quote}{REDACTED}{quote}"


class Redactor:
    """Removes secrets from text before it is written anywhere. Thread-safe.

    Registered secrets live only in this object's memory; ``redact`` replaces each
    occurrence with ``[REDACTED]``, longest first so a secret containing another is
    removed whole.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._secrets: Counter[str] = Counter()  # counted: two owners may register one value
        self._pattern: re.Pattern[str] | None = None

    def add_secret(self, secret: str) -> None:
        if not secret:
            raise ValueError("an empty secret cannot be redacted")
        with self._lock:
            self._secrets[secret] += 1
            self._compile()

    def remove_secret(self, secret: str) -> None:
        with self._lock:
            if self._secrets[secret] > 1:
                self._secrets[secret] -= 1
            else:
                self._secrets.pop(secret, None)
            self._compile()

    def secrets(self) -> tuple[str, ...]:
        """The registered secrets, for scrubbing data that is not text (e.g. Arrow results)."""
        with self._lock:
            return tuple(self._secrets)

    def redact(self, text: str) -> str:
        pattern = self._pattern  # read once: a concurrent add swaps it whole
        if pattern is not None:
            text = pattern.sub(REDACTED, text)
        text = _API_TOKEN.sub(REDACTED, text)
        text = _ASSIGNMENT.sub(_redact_assignment, text)
        return _BEARER.sub(lambda m: f"{m[1]}{REDACTED}", text)

    def _compile(self) -> None:
        secrets = sorted(self._secrets, key=len, reverse=True)
        self._pattern = re.compile("|".join(re.escape(s) for s in secrets)) if secrets else None

    def redact_value(self, value: Any) -> Any:
        """``redact`` applied to every string in ``value``, recursively through lists."""
        if isinstance(value, str):
            return self.redact(value)
        if isinstance(value, list | tuple):
            return [self.redact_value(item) for item in value]
        return value


# --- files ----------------------------------------------------------------------------------


def _ensure_private_dir(path: Path) -> None:
    """Create ``path`` and any missing parents ``0700``; leave existing folders alone."""
    missing: list[Path] = []
    current = path
    while not current.exists():
        missing.append(current)
        current = current.parent
    for folder in reversed(missing):
        with contextlib.suppress(FileExistsError):  # another process made it first
            folder.mkdir(mode=0o700)
            os.chmod(folder, 0o700)  # mkdir's mode is filtered by the umask


def _head_path(path: Path) -> Path:
    return path.with_name(path.name + HEAD_SUFFIX)


@dataclass(frozen=True)
class _Head:
    records: int
    hash: str


def _read_head(path: Path) -> _Head | str | None:
    """The head file: its content, a problem description, or None when there is none."""
    head = _head_path(path)
    try:
        data = json.loads(head.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        return f"{head}: head file is unreadable: {exc}"
    if (
        not isinstance(data, dict)
        or not isinstance(data.get("records"), int)
        or not isinstance(data.get("hash"), str)
        or not re.fullmatch(_HASH, data["hash"])
    ):
        return f"{head}: head file is malformed"
    return _Head(records=data["records"], hash=data["hash"])


def _write_head(path: Path, records: int, last_hash: str) -> None:
    """Replace the head file atomically: write a temporary file, fsync, rename, fsync the folder."""
    head = _head_path(path)
    tmp = head.with_name(f"{head.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, json.dumps({"records": records, "hash": last_hash}).encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, head)
    folder = os.open(head.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def _lines_backwards(handle: BinaryIO) -> Iterator[bytes]:
    """The file's lines, last first, each without its newline; reads only as far as needed.

    A last line without a newline (an interrupted write) is yielded like any other; the
    caller finds it malformed.
    """
    position = handle.seek(0, os.SEEK_END)
    if position == 0:
        return
    pending = b""  # the start of the earliest line seen so far: it may continue further back
    at_end = True
    while position > 0:
        size = min(_CHUNK, position)
        position -= size
        handle.seek(position)
        pending = handle.read(size) + pending
        if at_end:
            at_end = False
            pending = pending.removesuffix(b"\n")  # the newline ending the last line
        parts = pending.split(b"\n")
        pending = parts[0]
        yield from reversed(parts[1:])
    yield pending


def _count_lines(handle: BinaryIO) -> int:
    handle.seek(0)
    count = 0
    last = b"\n"
    while chunk := handle.read(_CHUNK):
        count += chunk.count(b"\n")
        last = chunk[-1:]
    return count + (0 if last == b"\n" else 1)


def _parse_line(raw: bytes) -> tuple[AuditRecord, dict[str, Any]]:
    """One line as a record and as the JSON object it is; ``ValueError`` if it is not one."""
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    try:
        return AuditRecord.model_validate(data), data
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "record"
        raise ValueError(f"not an audit record ({where}: {first['msg']})") from None


# --- the log --------------------------------------------------------------------------------


class AuditLog:
    """An append-only, hash-chained audit log file. Thread- and process-safe."""

    def __init__(self, path: Path, redactor: Redactor) -> None:
        self.path = path
        self._redactor = redactor
        self._lock = threading.Lock()
        _ensure_private_dir(path.parent)
        try:
            self._fd: int | None = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        except OSError as exc:
            raise AuditError(f"{path}: cannot open audit log: {exc.strerror}") from None
        mode = stat.S_IMODE(os.fstat(self._fd).st_mode)
        if mode & 0o077:
            # Statements and table names are sensitive: nobody else may read the log.
            os.fchmod(self._fd, 0o600)
            log.warning("audit log was readable by others; now 0600", path=str(path), mode=oct(mode))
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
        redacted = {name: self._redactor.redact_value(value) for name, value in given.items()}
        with self._lock, self._locked(fcntl.LOCK_EX):
            self._load_tip()
            body = {"ts": _now(), **redacted}
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
            self._append((record.model_dump_json() + "\n").encode("utf-8"))
            self._records += 1
            self._last_hash = record.hash
            self._tip_key = self._stat_key()
            try:
                _write_head(self.path, self._records, record.hash)
            except OSError as exc:
                # The record is on disk and the head one behind, which the next emit repairs;
                # the caller still hears of it, since the next write will likely fail too.
                raise AuditError(f"{self.path}: cannot update the head file: {exc.strerror}") from None
            return record

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
        head = _read_head(self.path)
        if isinstance(head, str):
            raise AuditError(f"{head}; run `spark-mcp audit verify {self.path}`")
        with os.fdopen(os.dup(self._open_fd()), "rb") as handle:
            last_raw = next(_lines_backwards(handle), None)
            if last_raw is None:
                records, last_hash = 0, GENESIS_HASH
                if head is not None and head.records > 0:
                    raise AuditError(self._gap(f"is empty but its head file records {head.records} records"))
            else:
                try:
                    last, _ = _parse_line(last_raw)
                except ValueError as exc:
                    line = _count_lines(handle)
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
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        except OSError as exc:
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


# --- reading --------------------------------------------------------------------------------


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
            head = _read_head(path)
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
            record, obj = _parse_line(raw)
        except ValueError as exc:
            problems.append(f"line {number}: {exc}" if raw.strip() else f"line {number}: empty line")
            parsed.append(None)
            bodies.append({})
        else:
            parsed.append(record)
            bodies.append(_body(obj))
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


def _head_problems(path: Path, head: _Head | str | None, parsed: list[AuditRecord | None]) -> list[str]:
    """Compare the end of the log with its head file: the only witness of deleted last lines."""
    if isinstance(head, str):
        return [head]
    count = len(parsed)
    last = parsed[-1] if parsed else None
    if head is None:
        if count == 0:
            return []
        return [f"{_head_path(path)}: head file missing: cannot tell whether the last records were deleted"]
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
            for back, raw in enumerate(_lines_backwards(handle), start=1):
                try:
                    record, _ = _parse_line(raw)
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
