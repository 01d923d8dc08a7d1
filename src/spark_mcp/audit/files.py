"""The audit log's files: a private folder, the head file, and reading lines from the end.

The head file ``<log>.head`` holds the record count and the last hash, replaced atomically
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
    """Replace the head file atomically: write a temporary file, fsync, rename, fsync the folder."""
    head = head_path(path)
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
