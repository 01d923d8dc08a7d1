"""The audit log's files: a private folder, the head file, and reading lines from the end.

The head file ``<log>.head`` holds the record count and the last hash, rewritten in place
after each append; it is the only witness of deleted last lines.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from spark_mcp.audit.record import HASH_PATTERN

HEAD_SUFFIX = ".head"
HEAD_BYTES = 128  # {"records": <up to 19 digits>, "hash": "<64 hex>"} and padding
_CHUNK = 64 * 1024


def ensure_private_dir(path: Path) -> None:
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


def head_path(path: Path) -> Path:
    return path.with_name(path.name + HEAD_SUFFIX)


@dataclass(frozen=True)
class Head:
    records: int
    hash: str


def read_head(path: Path) -> Head | str | None:
    """The head file: its content, a problem description, or None when there is none."""
    head = head_path(path)
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
        or not re.fullmatch(HASH_PATTERN, data["hash"])
    ):
        return f"{head}: head file is malformed"
    return Head(records=data["records"], hash=data["hash"])


def write_head(path: Path, records: int, last_hash: str) -> None:
    """Rewrite the head file in place and sync it. The caller holds the log's exclusive flock
    (readers take it shared), so no one reads it half-written.

    In place, always ``HEAD_BYTES`` long, not replaced by a renamed temporary file: a rename
    costs a journal commit and an fsync of the folder, which made every audit record (a tool
    call, a gateway call) three times as slow to write; one write within a disk block is not
    torn by a crash, and a head one record behind its log is repaired by the next record.
    """
    head = head_path(path)
    data = json.dumps({"records": records, "hash": last_hash}).encode().ljust(HEAD_BYTES - 1) + b"\n"
    # Never through a link: the head was replaced by rename before, which a planted link could not redirect.
    try:
        fd, created = os.open(head, os.O_WRONLY | os.O_NOFOLLOW), False
    except FileNotFoundError:
        fd, created = os.open(head, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o600), True
    try:
        os.pwrite(fd, data, 0)
        if os.fstat(fd).st_size != len(data):
            os.ftruncate(fd, len(data))  # a head written by an older version, or by hand
        os.fdatasync(fd)
    finally:
        os.close(fd)
    if created:  # the new name must survive a crash too
        folder = os.open(head.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)


def lines_backwards(handle: BinaryIO) -> Iterator[bytes]:
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


def count_lines(handle: BinaryIO) -> int:
    handle.seek(0)
    count = 0
    last = b"\n"
    while chunk := handle.read(_CHUNK):
        count += chunk.count(b"\n")
        last = chunk[-1:]
    return count + (0 if last == b"\n" else 1)
