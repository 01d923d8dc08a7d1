"""API tokens: made once, stored only as hashes, checked on every request.

A token reads ``smcp_<id>_<secret>``: the prefix makes it recognisable (the audit
redactor catches it by shape, and so can a secret scanner), ``<id>`` (12 hex digits) is
its public name in listings, audit records and ``tokens revoke``, and ``<secret>`` is 32
random bytes (base64url). Only the SHA-256 of the secret is stored: the secret is long
and random, so a plain hash cannot be reversed by guessing, and a stolen database holds
nothing that can be presented. The hash is compared in constant time.

``check`` reads the row on every call: revocation and expiry take effect on the very
next request, with no cache that could outlive them.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass

from spark_mcp.errors import InvalidInput, NotFound
from spark_mcp.identity import validate_principal_id
from spark_mcp.state.db import Component, StateDB

TOKEN_PREFIX = "smcp_"
TOKEN_SHAPE = re.compile(r"smcp_[0-9a-f]{12}_[A-Za-z0-9_-]{43}")
_TOKEN_ID = re.compile(r"^[0-9a-f]{12}$")
_NAME = re.compile(r"^[^\x00-\x1f\x7f]{1,64}$")
_SCOPE = re.compile(r"^[\x21\x23-\x5b\x5d-\x7e]{1,64}$")
# last_used_at is a hint for people, not a security fact: write it at most once a minute
# per token, so a busy agent does not turn every request into a write.
_LAST_USED_EVERY_S = 60.0

TOKENS = Component(
    "tokens",
    [
        """
        CREATE TABLE api_tokens (
            id TEXT PRIMARY KEY,
            principal TEXT NOT NULL,
            name TEXT,
            scopes TEXT NOT NULL,
            resource TEXT NOT NULL,
            secret_sha256 TEXT NOT NULL,
            created_at REAL NOT NULL,
            expires_at REAL,
            revoked_at REAL,
            last_used_at REAL
        );
        CREATE INDEX api_tokens_principal ON api_tokens (principal)
        """
    ],
)


@dataclass(frozen=True)
class TokenRecord:
    """What is known about a token; never its secret."""

    id: str
    principal: str
    name: str | None
    scopes: tuple[str, ...]
    resource: str
    created_at: float
    expires_at: float | None
    revoked_at: float | None
    last_used_at: float | None

    def state(self, now: float) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active"


@dataclass(frozen=True)
class IssuedToken:
    record: TokenRecord
    token: str  # shown once, to the person who made it


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def split_token(token: str) -> tuple[str, str] | None:
    """``(id, secret)`` of a well-formed token, else None."""
    if not TOKEN_SHAPE.fullmatch(token):
        return None
    token_id, secret = token[len(TOKEN_PREFIX) :].split("_", 1)
    return token_id, secret


class TokenStore:
    """API tokens in the state database (component ``tokens``)."""

    def __init__(self, db: StateDB) -> None:
        self._db = db
        db.ensure(TOKENS)

    def create(
        self,
        principal: str,
        *,
        scopes: Sequence[str],
        resource: str,
        expires_at: float | None = None,
        name: str | None = None,
        now: float | None = None,
    ) -> IssuedToken:
        validate_principal_id(principal)
        if not scopes:
            raise InvalidInput("a token needs at least one scope")
        for scope in scopes:
            if not _SCOPE.fullmatch(scope):
                raise InvalidInput(f"{scope!r} is not a scope (printable, no spaces, quotes or backslashes)")
        if name is not None and not _NAME.fullmatch(name):
            raise InvalidInput("a token name is 1-64 printable characters")
        created = time.time() if now is None else now
        if expires_at is not None and expires_at <= created:
            raise InvalidInput("a token must expire in the future")
        token_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        unique_scopes = tuple(dict.fromkeys(scopes))
        self._db.execute(
            "INSERT INTO api_tokens (id, principal, name, scopes, resource, secret_sha256, created_at, expires_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (token_id, principal, name, " ".join(unique_scopes), resource, _hash(secret), created, expires_at),
        )
        record = TokenRecord(token_id, principal, name, unique_scopes, resource, created, expires_at, None, None)
        return IssuedToken(record=record, token=f"{TOKEN_PREFIX}{token_id}_{secret}")

    def list(self, principal: str | None = None) -> list[TokenRecord]:
        if principal is None:
            rows = self._db.query("SELECT * FROM api_tokens ORDER BY created_at, id")
        else:
            rows = self._db.query("SELECT * FROM api_tokens WHERE principal = ? ORDER BY created_at, id", (principal,))
        return [_record(row) for row in rows]

    def get(self, token_id: str) -> TokenRecord:
        rows = self._db.query("SELECT * FROM api_tokens WHERE id = ?", (token_id,)) if _TOKEN_ID.match(token_id) else []
        if not rows:
            raise NotFound(f"no token {token_id!r}: `spark-mcp tokens list` shows the tokens and their ids")
        return _record(rows[0])

    def commits(self) -> int:
        """Changes whenever anything was committed to the store since (``StateDB.commits``): a
        token checked before and unchanged since is still what ``check`` said it was."""
        return self._db.commits()

    def revoke(self, token_id: str, *, now: float | None = None) -> TokenRecord:
        """Revoke a token (again is harmless); it is refused from the next request on."""
        self.get(token_id)
        at = time.time() if now is None else now
        self._db.execute("UPDATE api_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", (at, token_id))
        return self.get(token_id)

    def check(self, token: str, *, now: float | None = None) -> TokenRecord | None:
        """The record of a valid token (well-formed, known, secret matching, not revoked or
        expired), else None. Reads the database every time."""
        parts = split_token(token)
        if parts is None:
            return None
        token_id, secret = parts
        rows = self._db.query("SELECT * FROM api_tokens WHERE id = ?", (token_id,))
        if not rows:
            return None
        row = rows[0]
        if not hmac.compare_digest(_hash(secret), str(row["secret_sha256"])):
            return None
        record = _record(row)
        at = time.time() if now is None else now
        if record.state(at) != "active":
            return None
        self._db.execute(
            "UPDATE api_tokens SET last_used_at = ? WHERE id = ? AND (last_used_at IS NULL OR last_used_at < ?)",
            (at, token_id, at - _LAST_USED_EVERY_S),
        )
        return record


def _optional(value: object) -> float | None:
    return None if value is None else float(str(value))


def _record(row: sqlite3.Row) -> TokenRecord:
    return TokenRecord(
        id=str(row["id"]),
        principal=str(row["principal"]),
        name=None if row["name"] is None else str(row["name"]),
        scopes=tuple(str(row["scopes"]).split()),
        resource=str(row["resource"]),
        created_at=float(row["created_at"]),
        expires_at=_optional(row["expires_at"]),
        revoked_at=_optional(row["revoked_at"]),
        last_used_at=_optional(row["last_used_at"]),
    )
