"""The ``oidc`` verifier: JWTs from an OpenID Connect issuer, checked against its JWKS.

A token is accepted only when all of these hold:

- its header names an algorithm from ``[auth.oidc] algorithms``, which admits asymmetric
  algorithms only (``none`` and HS* are refused by the config model and again here);
- its signature verifies with a key from the issuer's JWKS whose ``kid`` it names (a
  key marked for encryption, or declaring another algorithm, is never used);
- ``iss`` is the configured issuer, ``aud`` contains the configured audience (by default
  this server's resource URL), ``exp`` is in the future and ``nbf`` (if present) in the
  past, each with ``clock_skew_s`` of leeway;
- the principal claim (``principal_claim``, default ``sub``) is a valid principal id.

Keys are fetched once and kept for ``jwks_cache_s``. A token naming a ``kid`` the cache
does not hold (the issuer rotated its keys) refetches the JWKS, at most once every
``jwks_min_refetch_s``, so a flood of tokens with invented ``kid`` values cannot turn
into a flood of requests to the issuer.
"""

from __future__ import annotations

import contextlib
import ipaddress
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

import anyio
import httpx2
import jwt
import structlog
from mcp.server.auth.provider import AccessToken

from spark_mcp.auth.claims import make_claims
from spark_mcp.config.model import ASYMMETRIC_ALGORITHMS, OidcConfig
from spark_mcp.errors import ConfigError, InvalidInput
from spark_mcp.identity import validate_principal_id

log = structlog.get_logger(__name__)

_FETCH_TIMEOUT_S = 10.0
_MAX_JWKS_BYTES = 512 * 1024


def require_safe_url(url: str, what: str) -> None:
    """Keys and discovery come over HTTPS; plain HTTP only from this machine (tests, sidecars)."""
    parts = urlsplit(url)
    if parts.scheme == "https":
        return
    host = parts.hostname or ""
    loopback = host == "localhost"
    with contextlib.suppress(ValueError):
        loopback = loopback or ipaddress.ip_address(host).is_loopback
    if parts.scheme != "http" or not loopback:
        raise ConfigError(f"[auth.oidc] {what} {url!r} must be https:// (plain http only on loopback)")


class JwksCache:
    """The issuer's signing keys, fetched lazily, refreshed by age and on an unknown ``kid``."""

    def __init__(
        self,
        *,
        issuer: str,
        jwks_url: str | None,
        max_age_s: float,
        min_refetch_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._issuer = issuer
        self._jwks_url = jwks_url
        self._max_age_s = max_age_s
        self._min_refetch_s = min_refetch_s
        self._clock = clock
        self._keys: dict[str | None, list[Mapping[str, Any]]] = {}
        self._fetched_at: float | None = None
        self._lock = anyio.Lock()
        self.fetches = 0  # how many times the JWKS was fetched (for operators' logs and tests)

    async def key(self, kid: str | None, alg: str) -> jwt.PyJWK | None:
        async with self._lock:
            now = self._clock()
            if self._fetched_at is None or now - self._fetched_at >= self._max_age_s:
                await self._refresh(now)
            found = self._pick(kid, alg)
            if found is None and self._fetched_at is not None and now - self._fetched_at >= self._min_refetch_s:
                await self._refresh(now)  # perhaps the issuer rotated its keys
                found = self._pick(kid, alg)
            return found

    def _pick(self, kid: str | None, alg: str) -> jwt.PyJWK | None:
        candidates = self._keys.get(kid, []) if kid is not None else [k for ks in self._keys.values() for k in ks]
        usable: list[jwt.PyJWK] = []
        for data in candidates:
            if data.get("use", "sig") != "sig" or data.get("alg", alg) != alg:
                continue
            try:
                usable.append(jwt.PyJWK(dict(data), algorithm=alg))
            except (jwt.PyJWTError, ValueError, TypeError, KeyError):
                continue  # a key of the wrong type for this algorithm, or one pyjwt cannot load
        # Without a kid, only an unambiguous key set will do.
        return usable[0] if len(usable) == 1 else None

    async def _refresh(self, now: float) -> None:
        try:
            async with httpx2.AsyncClient(timeout=_FETCH_TIMEOUT_S, follow_redirects=False) as client:
                url = self._jwks_url or await self._discover(client)
                document = await _get_json(client, url)
        except (httpx2.HTTPError, ValueError, ConfigError) as exc:
            # Keep the keys we had: an issuer's hiccup must not lock everyone out at once.
            log.warning("auth.jwks_fetch_failed", issuer=self._issuer, error=str(exc))
            self._fetched_at = now
            return
        keys: dict[str | None, list[Mapping[str, Any]]] = {}
        for item in document.get("keys", []) if isinstance(document.get("keys"), list) else []:
            if isinstance(item, dict) and isinstance(item.get("kty"), str):
                kid = item.get("kid") if isinstance(item.get("kid"), str) else None
                keys.setdefault(kid, []).append(item)
        self._keys, self._fetched_at = keys, now
        self.fetches += 1
        log.info("auth.jwks_fetched", issuer=self._issuer, keys=sum(len(v) for v in keys.values()))

    async def _discover(self, client: httpx2.AsyncClient) -> str:
        document = await _get_json(client, self._issuer.rstrip("/") + "/.well-known/openid-configuration")
        if document.get("issuer") != self._issuer:
            raise ValueError(f"the discovery document names issuer {document.get('issuer')!r}, not {self._issuer!r}")
        url = document.get("jwks_uri")
        if not isinstance(url, str):
            raise ValueError("the discovery document has no jwks_uri")
        require_safe_url(url, "jwks_uri")
        self._jwks_url = url
        return url


async def _get_json(client: httpx2.AsyncClient, url: str) -> dict[str, Any]:
    response = await client.get(url, headers={"Accept": "application/json"})
    response.raise_for_status()
    if len(response.content) > _MAX_JWKS_BYTES:
        raise ValueError(f"{url} answered with more than {_MAX_JWKS_BYTES} bytes")
    data = response.json()
    if not isinstance(data, dict):
        raise ValueError(f"{url} did not answer with a JSON object")
    return data


class OidcVerifier:
    """A ``TokenVerifier`` for JWT access tokens from one OpenID Connect issuer."""

    def __init__(self, config: OidcConfig, resource: str, *, clock: Callable[[], float] = time.monotonic) -> None:
        if not config.issuer:
            raise ConfigError("[auth.oidc] issuer is required for mode oidc")
        require_safe_url(config.issuer, "issuer")
        if config.jwks_url:
            require_safe_url(config.jwks_url, "jwks_url")
        self._config = config
        self._issuer = config.issuer
        self._audience = config.audience or resource
        self._resource = resource
        self._algorithms = [a for a in config.algorithms if a in ASYMMETRIC_ALGORITHMS]
        self.jwks = JwksCache(
            issuer=config.issuer,
            jwks_url=config.jwks_url,
            max_age_s=config.jwks_cache_s,
            min_refetch_s=config.jwks_min_refetch_s,
            clock=clock,
        )

    async def verify_token(self, token: str) -> AccessToken | None:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            return None  # not a JWT at all
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self._algorithms:
            log.info("auth.jwt_refused", reason="algorithm not allowed", alg=str(alg)[:16])
            return None
        kid = header.get("kid") if isinstance(header.get("kid"), str) else None
        key = await self.jwks.key(kid, alg)
        if key is None:
            log.info("auth.jwt_refused", reason="no key for kid", kid=str(kid)[:64])
            return None
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key.key,
                algorithms=[alg],
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._config.clock_skew_s,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.PyJWTError as exc:
            log.info("auth.jwt_refused", reason=type(exc).__name__)
            return None
        principal = claims.get(self._config.principal_claim)
        try:
            principal = validate_principal_id(principal) if isinstance(principal, str) else None
        except InvalidInput:
            principal = None
        if principal is None:
            log.info("auth.jwt_refused", reason=f"claim {self._config.principal_claim} is not a valid principal id")
            return None
        return AccessToken(
            token=token,
            client_id=str(claims.get("azp") or claims.get("client_id") or "oidc"),
            scopes=_scopes(claims),
            expires_at=int(claims["exp"] + self._config.clock_skew_s),
            resource=self._resource,
            subject=principal,
            claims=make_claims("oidc", issuer=self._issuer, groups=self._groups(claims)),
        )

    def _groups(self, claims: Mapping[str, Any]) -> tuple[str, ...]:
        if not self._config.groups_claim:
            return ()
        value = claims.get(self._config.groups_claim)
        if isinstance(value, str):
            return (value,)
        if isinstance(value, list):
            return tuple(v for v in value if isinstance(v, str))
        return ()


def _scopes(claims: Mapping[str, Any]) -> list[str]:
    """RFC 8693/9068 ``scope`` (space-separated), or the ``scp`` list some issuers use."""
    scope = claims.get("scope")
    if isinstance(scope, str):
        return scope.split()
    scp = claims.get("scp")
    if isinstance(scp, str):
        return scp.split()
    if isinstance(scp, list):
        return [s for s in scp if isinstance(s, str)]
    return []
