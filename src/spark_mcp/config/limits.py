"""What a server lets work use and what it keeps: ``[limits]``, ``[results]``, ``[audit]``, and the
``[[datasets]]`` every driver registers."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from spark_mcp.config.base import FrozenModel

_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_DATASET_NAME = re.compile(rf"^{_IDENT}\.{_IDENT}$")


class DatasetConfig(FrozenModel):
    """A dataset every driver registers as an external table when it starts."""

    name: str = Field(description="namespace.table")
    path: str = Field(description="file or directory (or URI) holding the data")
    format: Literal["parquet", "csv", "json", "orc"] = "parquet"
    options: dict[str, str] = Field(default_factory=dict, description="reader options, e.g. header")
    comment: str | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _DATASET_NAME.fullmatch(value):
            raise ValueError("must be namespace.table, each part letters, digits and '_'")
        return value.lower()

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        if "'" in value or "\n" in value:
            raise ValueError("must not contain quotes or newlines")
        return value

    @field_validator("options")
    @classmethod
    def _options(cls, value: dict[str, str]) -> dict[str, str]:
        for key, item in value.items():
            if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_.]*", key) or "'" in item:
                raise ValueError(f"option {key!r} must be a plain name with an unquoted value")
        return value

    @property
    def namespace(self) -> str:
        return self.name.split(".", 1)[0]

    @property
    def local_path(self) -> Path | None:
        """The path on this machine, or None for a remote URI (s3a://, hdfs://...)."""
        if "://" in self.path and not self.path.startswith("file:"):
            return None
        return Path(self.path.removeprefix("file://").removeprefix("file:"))


class LimitsConfig(FrozenModel):
    """Server-wide limits; a role may lower (never raise) rows, timeouts and sessions."""

    default_max_rows: int = Field(default=50, ge=1)
    max_rows: int = Field(default=1000, ge=1, le=100_000, description="hard cap on rows in one reply")
    max_chars: int = Field(default=16_000, ge=500, le=1_000_000, description="cap on a reply's text")
    query_timeout_s: float = Field(default=300, gt=0)
    default_wait_s: float = Field(default=30, ge=0, le=3600)
    max_sessions: int = Field(default=8, ge=1)
    session_idle_timeout_s: float = Field(default=3600, gt=0)
    max_concurrent_jobs: int = Field(default=16, ge=1, le=256)
    max_jobs_per_driver: int = Field(
        default=4, ge=1, le=256, description="jobs one driver runs at once; the others wait, state queued"
    )

    @model_validator(mode="after")
    def _coherent(self) -> LimitsConfig:
        if self.default_max_rows > self.max_rows:
            raise ValueError("default_max_rows must not exceed max_rows")
        return self


class ResultsConfig(FrozenModel):
    """The on-disk result store."""

    max_rows: int = Field(default=1_000_000, ge=1, description="rows kept per result")
    max_bytes: int = Field(default=256 * 1024 * 1024, ge=1024, description="bytes kept per result")
    ttl_s: float = Field(default=24 * 3600, gt=0, description="how long a result is kept")
    disk_budget_bytes: int = Field(default=2 * 1024**3, ge=1024, description="all results together")
    max_jobs_kept: int = Field(default=200, ge=1, description="finished jobs remembered per principal")


class AuditConfig(FrozenModel):
    path: Path | None = Field(default=None, description="default: <home>/audit/audit.jsonl")
