"""The audit record: one tool call, its fields in JSON key order, and the hash that chains it.

A record's ``hash`` is the SHA-256 of its ``prev_hash`` followed by the canonical JSON
(sorted keys, no spaces) of every other field; ``prev_hash`` is the previous record's
``hash``, ``GENESIS_HASH`` for the first.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

GENESIS_HASH = "0" * 64
HASH_PATTERN = r"^[0-9a-f]{64}$"


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
    prev_hash: str = Field(pattern=HASH_PATTERN)
    hash: str = Field(pattern=HASH_PATTERN)


def record_hash(prev_hash: str, body: Mapping[str, Any]) -> str:
    """The hash of a record: ``body`` is every field but ``prev_hash`` and ``hash``."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256((prev_hash + canonical).encode("utf-8")).hexdigest()


def body_of(record: Mapping[str, Any]) -> dict[str, Any]:
    """Every field of a record but the two hashes: what ``record_hash`` covers."""
    return {k: v for k, v in record.items() if k not in ("prev_hash", "hash")}


def now() -> str:
    """A record's timestamp: ISO 8601 UTC with milliseconds and "Z"."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_line(raw: bytes) -> tuple[AuditRecord, dict[str, Any]]:
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
