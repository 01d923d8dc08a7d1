"""A driver's private folder: ``<home>/drivers/<id>``, mode 0700, and the secrets in it.

It holds the driver's log, scratch space, warehouse (in-memory catalog), its token file
(``token``, 0600: only a server re-adopting the driver reads it) and, for a profile with
credentials, a ``credentials`` folder with private copies of them.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

TOKEN_FILE = "token"


def drivers_dir(home: Path) -> Path:
    return home / "drivers"


def ensure_private_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)
    return path


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to a new ``0600`` file (replacing any), never readable by others in between."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(tmp, path)


def write_token(workdir: Path, token: str) -> None:
    write_private(workdir / TOKEN_FILE, token.encode())


def read_token(workdir: Path) -> str | None:
    """The token of the driver in ``workdir``, if its file is there and private."""
    path = workdir / TOKEN_FILE
    try:
        if path.stat().st_mode & 0o077:
            return None  # someone loosened it: do not trust what others could have written
        return path.read_text().strip() or None
    except OSError:
        return None


def remove_secrets(workdir: Path) -> None:
    """Remove the token and credential copies (a stopped or lost driver keeps only its log)."""
    (workdir / TOKEN_FILE).unlink(missing_ok=True)
    shutil.rmtree(workdir / "credentials", ignore_errors=True)


def remove_workdir(workdir: Path) -> None:
    shutil.rmtree(workdir, ignore_errors=True)


@dataclass
class LogFollower:
    """The complete lines appended to a log since the last call."""

    path: Path
    offset: int = 0
    partial: str = field(default="", repr=False)

    def lines(self) -> list[str]:
        try:
            with self.path.open("rb") as handle:
                handle.seek(self.offset)
                data = handle.read()
        except OSError:
            return []
        self.offset += len(data)
        text = self.partial + data.decode(errors="replace")
        *complete, self.partial = text.split("\n")
        return complete
