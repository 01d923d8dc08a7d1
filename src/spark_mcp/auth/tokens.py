"""The ``tokens`` verifier: spark-mcp's own API tokens, checked against their stored hashes."""

from __future__ import annotations

import hashlib
import re
import time
from collections import OrderedDict

import anyio
import structlog
from mcp.server.auth.provider import AccessToken

from spark_mcp.auth.claims import make_claims
from spark_mcp.errors import InvalidInput
from spark_mcp.state.tokens import TokenRecord, TokenStore

log = structlog.get_logger(__name__)

API_TOKEN_ISSUER = "spark-mcp"
_DURATION = re.compile(r"^([1-9][0-9]{0,5})([smhdw])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_CHECKED_MAX = 1024  # tokens remembered as valid (the least recently checked are forgotten)


def parse_duration(text: str) -> float | None:
    """``30d``, ``12h``, ``90m``, ``2w``... in seconds; ``never`` for no expiry."""
    if text == "never":
        return None
    match = _DURATION.fullmatch(text.strip())
    if not match:
        raise InvalidInput(f"{text!r} is not a duration: write a number and a unit (s, m, h, d, w), e.g. 30d, or never")
    return float(int(match.group(1)) * _UNIT_S[match.group(2)])


class ApiTokenVerifier:
    """A ``TokenVerifier`` for API tokens made by ``spark-mcp tokens create``.

    A revoked or expired token is refused on the next request. A token made for another
    resource URL (another server, or this one before its public URL changed) is refused too.

    A token found valid is reused without reading the store again while nothing at all has
    been committed to the state database since (``TokenStore.commits``: a revocation from the
    console, the CLI or another server is a commit) and it has not expired meanwhile; a
    Spark Connect client makes a call per result chunk, and each read cost a worker thread.
    """

    def __init__(self, store: TokenStore, resource: str) -> None:
        self._store = store
        self._resource = resource
        # sha256 of a token -> (the store's commits when it was read, its record)
        self._checked: OrderedDict[bytes, tuple[int, TokenRecord]] = OrderedDict()

    async def verify_token(self, token: str) -> AccessToken | None:
        key = hashlib.sha256(token.encode()).digest()
        commits = self._store.commits()  # before the read: a commit during it forces the next one
        found = self._checked.get(key)
        if found is not None and found[0] == commits and found[1].state(time.time()) == "active":
            record: TokenRecord | None = found[1]
        else:
            self._checked.pop(key, None)
            record = await anyio.to_thread.run_sync(self._store.check, token)
            if record is not None:
                self._checked[key] = (commits, record)
                while len(self._checked) > _CHECKED_MAX:
                    self._checked.popitem(last=False)
        if record is None:
            return None
        if record.resource.rstrip("/") != self._resource.rstrip("/"):
            log.warning("auth.token_for_other_resource", token_id=record.id, resource=record.resource)
            return None
        return AccessToken(
            token=token,
            client_id=API_TOKEN_ISSUER,
            scopes=list(record.scopes),
            expires_at=None if record.expires_at is None else int(record.expires_at),
            resource=self._resource,
            subject=record.principal,
            claims=make_claims("token", issuer=API_TOKEN_ISSUER, token_id=record.id),
        )
