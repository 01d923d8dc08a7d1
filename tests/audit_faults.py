"""A full disk under the audit log, on demand: a fault no real part here produces when asked.

The audit writer's module is given an ``os`` whose ``write`` fails as on a full disk (ENOSPC);
everything else, the log file included, is real. ``disk(full=False)`` gives the real ``os`` back.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from typing import Any

import pytest

from spark_mcp.audit import writer


class _FullDisk:
    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)

    @staticmethod
    def write(fd: int, data: Any) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")


def audit_disk(monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """``disk(full=True)`` fills the audit log's disk, ``disk(full=False)`` empties it again."""

    def disk(*, full: bool) -> None:
        monkeypatch.setattr(writer, "os", _FullDisk() if full else os)

    return disk
