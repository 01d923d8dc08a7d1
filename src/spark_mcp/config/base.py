"""What every section of the configuration shares: a frozen, closed model and a few value checks."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import BaseModel, ConfigDict

_MEMORY = re.compile(r"^[1-9][0-9]*[kmgt]?$", re.IGNORECASE)


class FrozenModel(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def parse_size(text: str) -> int:
    """Bytes in a JVM-style size (``512m``, ``2g``; a bare number is bytes)."""
    if not _MEMORY.fullmatch(text):
        raise ValueError(f"{text!r} is not a size such as 512m or 2g")
    units = {"k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
    unit = text[-1].lower()
    return int(text[:-1]) * units[unit] if unit in units else int(text)


def check_size(value: str) -> str:
    parse_size(value)
    return value.lower()


def check_absolute(value: Path) -> Path:
    if not value.is_absolute():
        raise ValueError(f"{value} must be an absolute path")
    return value
