"""The result store: every successful statement's rows, as Arrow IPC files on disk.

A result belongs to its principal (another principal is told it does not exist), holds
at most ``results.max_rows`` rows and ``results.max_bytes`` bytes (the cap it hit is
recorded and reported), and expires after ``results.ttl_s``; when all results together
pass ``results.disk_budget_bytes``, the oldest go first. Files are memory-mapped for
paging, so fetching rows 900,000-900,050 reads 50 rows, not a million.

A result has a state (``ResultState``): a query's reply is sent as soon as its preview
rows are there, so its result may hold only those (``on_demand``) until someone asks for
more; the rest is then produced by running the statement again (``storing``) and the
file is replaced whole when it is done (``complete``), or the attempt's error is kept
(``failed``). A result is never reported complete unless every row it could keep is in it.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from spark_mcp.config import ResultsConfig
from spark_mcp.errors import InvalidInput, ResultNotFound, StorageError

if TYPE_CHECKING:
    # pyarrow (with numpy) is imported where it is used, not with this module: it loads with
    # pyspark, on the thread that prepares the first driver, not on the server's start-up path (issue 12).
    import pyarrow as pa

log = structlog.get_logger(__name__)

_ID_PREFIX = "res_"


class ResultState(StrEnum):
    COMPLETE = "complete"  # every row the caps allow is stored
    ON_DEMAND = "on_demand"  # only the preview is stored; the rest is produced when asked for
    STORING = "storing"  # the rest is being produced now
    FAILED = "failed"  # producing the rest failed or was cancelled; the preview stays readable


@dataclass(frozen=True)
class ResultMeta:
    result_id: str
    principal: str
    session_id: str | None
    created_at: float
    expires_at: float
    row_count: int  # rows stored now
    bytes: int
    more_rows: bool  # the statement produced more rows than are stored
    cap: str | None  # which cap stopped the result, in words
    state: ResultState = ResultState.COMPLETE
    statement: str | None = None  # what produces the rest of an on-demand result
    language: str | None = None  # "sql", or "plan" when ``statement`` is a structured plan (JSON)
    error: str | None = None  # why producing the rest failed (state FAILED)
    reordered: bool = False  # produced by a second run whose first rows differ from the preview's

    @property
    def complete(self) -> bool:
        return self.state is ResultState.COMPLETE

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ResultMeta:
        data = json.loads(text)
        data["state"] = ResultState(data.get("state", ResultState.COMPLETE))
        return cls(**data)


REDACTED = "[REDACTED]"


def scrub(table: pa.Table, secrets: Sequence[str]) -> pa.Table:
    """``table`` with every occurrence of a secret in its text (at any depth) replaced, and
    every string valid UTF-8.

    Drivers' tokens live in their own environment, so an admin who may read files could
    otherwise read one back through ``/proc/self/environ``; no result ever carries one.
    Spark's strings are bytes (``cast(unhex('FF') AS STRING)``, or a file in another
    encoding), and a stored string that is not UTF-8 would break every reader of the result:
    each bad sequence becomes U+FFFD, as a decoder would show it.
    """
    import pyarrow as pa

    columns = [pa.chunked_array([_scrub(c, secrets) for c in col.chunks], col.type) for col in table.columns]
    return pa.Table.from_arrays(columns, schema=table.schema)


def _valid_utf8(array: pa.Array) -> pa.Array:
    import pyarrow as pa

    try:
        array.validate(full=True)
    except pa.ArrowInvalid:
        raw = array.cast(pa.large_binary()).to_pylist()
        return pa.array([None if b is None else b.decode("utf-8", "replace") for b in raw], type=array.type)
    return array


def _scrub(array: pa.Array, secrets: Sequence[str]) -> pa.Array:
    import pyarrow as pa
    import pyarrow.compute as pc

    kind = array.type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        array = _valid_utf8(array)
    if (
        pa.types.is_string(kind)
        or pa.types.is_large_string(kind)
        or pa.types.is_binary(kind)
        or pa.types.is_large_binary(kind)
    ):
        for secret in secrets:
            if pc.any(pc.match_substring(array, secret)).as_py():
                array = pc.replace_substring(array, secret, REDACTED)
        return array
    if isinstance(array, pa.MapArray):
        keys, items = _scrub(array.keys, secrets), _scrub(array.items, secrets)
        return pa.MapArray.from_arrays(array.offsets, keys, items, mask=array.is_null())
    if isinstance(array, pa.ListArray | pa.LargeListArray):
        values = _scrub(array.values, secrets)
        # type= keeps the element field (its name and non-null flag): without it the scrubbed
        # chunk no longer matches its column's type.
        return type(array).from_arrays(array.offsets, values, type=array.type, mask=array.is_null())
    if isinstance(array, pa.StructArray):
        children = [_scrub(array.field(i), secrets) for i in range(kind.num_fields)]
        return pa.StructArray.from_arrays(children, fields=list(kind), mask=array.is_null())
    return array


def take(table: pa.Table, offset: int, limit: int) -> pa.Table:
    """Rows ``offset`` to ``offset + limit`` of ``table``, never more than it has.

    ``Table.slice`` alone is not enough: on a table without columns (what a command
    returns) pyarrow reports the requested length as its row count.
    """
    offset = max(0, min(offset, table.num_rows))
    return table.slice(offset, max(0, min(limit, table.num_rows - offset)))


def new_result_id() -> str:
    return f"{_ID_PREFIX}{secrets.token_hex(8)}"


def _check_id(result_id: str) -> str:
    if not (
        isinstance(result_id, str)
        and result_id.startswith(_ID_PREFIX)
        and result_id[4:].isalnum()
        and len(result_id) <= 40
    ):
        raise InvalidInput(f"{result_id!r} is not a result id (they look like res_0123456789abcdef)")
    return result_id


class ResultWriter:
    """Receives one statement's Arrow stream and keeps what fits under the caps.

    ``preview`` makes it keep a query's first rows only: when the statement had more, the
    result is ``on_demand`` and remembers ``statement`` to produce the rest later. With
    ``result_id`` it produces that (on-demand) result's rows in full and replaces it.
    """

    def __init__(
        self,
        store: ResultStore,
        principal: str,
        session_id: str | None,
        *,
        result_id: str | None = None,
        statement: str | None = None,
        language: str = "sql",
        preview: int | None = None,
        expect_first: pa.Table | None = None,
    ) -> None:
        self.result_id = result_id or new_result_id()
        self._language = language
        self._expect_first = expect_first
        self._store = store
        self._principal = principal
        self._session_id = session_id
        self._statement = statement
        self._preview = preview
        self._max_rows = store.config.max_rows
        self._max_bytes = store.config.max_bytes
        self._dir = store.principal_dir(principal)
        self._tmp = self._dir / f"{self.result_id}.arrow.{secrets.token_hex(4)}.tmp"
        self._writer: pa.ipc.RecordBatchFileWriter | None = None
        self._schema: pa.Schema | None = None
        self.rows = 0
        self.bytes = 0
        self.more_rows = False
        self.cap: str | None = None

    @contextlib.contextmanager
    def _storing(self) -> Iterator[None]:
        """A full disk or a file size limit becomes an error that says so (the file is removed by ``abort``)."""
        try:
            yield
        except OSError as exc:  # pyarrow's IO errors are OSErrors too
            why = os.strerror(exc.errno) if exc.errno else str(exc).split(". Detail:")[-1].strip()
            raise StorageError(
                f"the server has no room to store result {self.result_id} ({why}); "
                "ask for fewer rows (a LIMIT, a smaller page), or ask the operator to free space for results"
            ) from None

    def begin(self, schema: pa.Schema) -> None:
        import pyarrow as pa

        if self._writer is None:
            self._schema = schema
            with self._storing():
                self._writer = pa.ipc.new_file(str(self._tmp), schema)

    def write(self, table: pa.Table) -> bool:
        with self._storing():
            return self._write(table)

    def _write(self, table: pa.Table) -> bool:
        assert self._writer is not None, "begin() must come first"
        table = scrub(table, self._store.secrets())
        if self._preview is not None and self.rows + table.num_rows > self._preview:
            # The stream asked for one row more than the preview: that row says more exist.
            table = table.slice(0, self._preview - self.rows)
            self.more_rows = True
        room_rows = self._max_rows - self.rows
        if table.num_rows > room_rows:
            table = table.slice(0, room_rows)
            self.more_rows = True
            self.cap = f"results.max_rows ({self._max_rows:,} rows)"
        if table.num_rows and self.bytes + table.nbytes > self._max_bytes:
            per_row = max(1, table.nbytes // table.num_rows)
            fit = max(0, (self._max_bytes - self.bytes) // per_row)
            table = table.slice(0, fit)
            self.more_rows = True
            self.cap = f"results.max_bytes ({self._max_bytes:,} bytes)"
        if table.num_rows:
            self._writer.write_table(table)
            self.rows += table.num_rows
            self.bytes += table.nbytes
        return not self.more_rows

    def finish(self) -> ResultMeta:
        with self._storing():
            return self._finish()

    def _finish(self) -> ResultMeta:
        import pyarrow as pa

        if self._writer is None:  # a statement with no schema at all (should not happen): store nothing
            self.begin(pa.schema([]))
        assert self._writer is not None
        self._writer.close()
        final = self._dir / f"{self.result_id}.arrow"
        os.chmod(self._tmp, 0o600)
        reordered = self._expect_first is not None and not _starts_with(self._tmp, self._expect_first)
        os.replace(self._tmp, final)
        now = time.time()
        on_demand = self._preview is not None and self.more_rows and self.cap is None
        meta = ResultMeta(
            result_id=self.result_id,
            principal=self._principal,
            session_id=self._session_id,
            created_at=now,
            expires_at=now + self._store.config.ttl_s,
            row_count=self.rows,
            bytes=final.stat().st_size,
            more_rows=self.more_rows,
            cap=None if on_demand else self.cap,
            state=ResultState.ON_DEMAND if on_demand else ResultState.COMPLETE,
            statement=self._statement if on_demand else None,
            language=self._language if on_demand else None,
            reordered=reordered,
        )
        self._store.save_meta(meta)
        self._store.added(meta.bytes, keep=self.result_id)
        return meta

    def abort(self) -> None:
        import pyarrow as pa

        if self._writer is not None:
            with contextlib.suppress(OSError, pa.ArrowException):
                self._writer.close()
        self._tmp.unlink(missing_ok=True)


def _starts_with(path: Path, first: pa.Table) -> bool:
    """Whether the Arrow file at ``path`` begins with exactly the rows of ``first``."""
    import pyarrow as pa

    stored = pa.ipc.open_file(pa.memory_map(str(path), "r")).read_all()
    head = take(stored, 0, first.num_rows)
    return bool(head.num_rows == first.num_rows and head.equals(first.cast(head.schema)))


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


class ResultStore:
    def __init__(self, root: Path, config: ResultsConfig, *, secrets: Callable[[], Sequence[str]] = tuple) -> None:
        self.root = root
        self.config = config
        self.secrets = secrets
        self._sweep_lock = threading.Lock()
        self._stored_bytes: int | None = None  # all results together, known after the first sweep
        root.mkdir(parents=True, exist_ok=True, mode=0o700)

    def principal_dir(self, principal: str) -> Path:
        path = self.root / principal
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        return path

    def writer(
        self,
        principal: str,
        session_id: str | None,
        *,
        result_id: str | None = None,
        statement: str | None = None,
        language: str = "sql",
        preview: int | None = None,
        expect_first: pa.Table | None = None,
    ) -> ResultWriter:
        return ResultWriter(
            self,
            principal,
            session_id,
            result_id=result_id,
            statement=statement,
            language=language,
            preview=preview,
            expect_first=expect_first,
        )

    def save_meta(self, meta: ResultMeta) -> None:
        _write_private(self.root / meta.principal / f"{meta.result_id}.json", meta.to_json())

    def set_state(self, meta: ResultMeta, state: ResultState, *, error: str | None = None) -> ResultMeta:
        """Record a new state of an on-demand result (its rows are unchanged)."""
        updated = replace(meta, state=state, error=error)
        self.save_meta(updated)
        return updated

    def meta(self, principal: str, result_id: str) -> ResultMeta:
        _check_id(result_id)
        path = self.root / principal / f"{result_id}.json"
        try:
            meta = ResultMeta.from_json(path.read_text())
        except (OSError, ValueError, TypeError):
            raise ResultNotFound(f"no result {result_id}: it never existed, expired, or is not yours") from None
        if meta.principal != principal or meta.expires_at < time.time():
            raise ResultNotFound(f"no result {result_id}: it never existed, expired, or is not yours")
        return meta

    def table(self, principal: str, result_id: str) -> pa.Table:
        """The whole stored result, memory-mapped (pages are read only when touched)."""
        import pyarrow as pa

        self.meta(principal, result_id)
        path = self.root / principal / f"{result_id}.arrow"
        try:
            return pa.ipc.open_file(pa.memory_map(str(path), "r")).read_all()
        except (OSError, pa.ArrowException):
            raise ResultNotFound(f"no result {result_id}: its file is gone (expired or removed)") from None

    def page(self, principal: str, result_id: str, offset: int, limit: int) -> pa.Table:
        return take(self.table(principal, result_id), offset, limit)

    def added(self, size: int, *, keep: str) -> None:
        """Count a new result's bytes; sweep at once only when the disk budget is passed.

        A sweep reads every result's metadata: doing it after every statement made each
        one cost more the more results there were. Expiry is the housekeeping loop's job.
        """
        with self._sweep_lock:
            if self._stored_bytes is not None:
                self._stored_bytes += size
            over = self._stored_bytes is None or self._stored_bytes > self.config.disk_budget_bytes
        if over:
            self.sweep(keep=keep)

    def sweep(self, *, keep: str | None = None, now: float | None = None) -> list[str]:
        """Drop expired results, then the oldest until the disk budget holds. Returns dropped ids."""
        now = time.time() if now is None else now
        with self._sweep_lock:
            entries: list[tuple[float, float, int, Path]] = []
            for meta_path in self.root.glob("*/res_*.json"):
                try:
                    data = json.loads(meta_path.read_text())
                    entries.append((data["created_at"], data["expires_at"], int(data["bytes"]), meta_path))
                except (OSError, ValueError, KeyError, TypeError):
                    continue
            dropped: list[str] = []
            entries.sort()
            total = sum(size for _, _, size, _ in entries)
            for _created, expires, size, meta_path in entries:
                result_id = meta_path.stem
                over_budget = total > self.config.disk_budget_bytes
                if result_id != keep and (expires < now or over_budget):
                    meta_path.unlink(missing_ok=True)
                    meta_path.with_suffix(".arrow").unlink(missing_ok=True)
                    total -= size
                    dropped.append(result_id)
            self._stored_bytes = total
            if dropped:
                log.info("results.swept", dropped=len(dropped))
            return dropped
