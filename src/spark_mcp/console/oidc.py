"""Signing in to the console through the OIDC issuer: authorization code with PKCE.

The flow, and what each step checks:

1. ``start``: a fresh ``state``, ``nonce`` and PKCE verifier, kept on the server with
   the browser's pre-login cookie value; the browser goes to the issuer's
   ``authorization_endpoint`` with ``response_type=code``, the S256 challenge, ``state``
   and ``nonce``.
2. ``finish`` (the callback): the ``state`` must name a pending sign-in started by this
   very browser (its cookie) less than ten minutes ago, and is used up; an ``iss``
   parameter (RFC 9207), when sent, must be the issuer. The code is exchanged at the
   ``token_endpoint`` with the verifier (and the client secret, for a confidential
   client).
3. The ID token is checked by the same ``OidcVerifier`` as MCP's access tokens
   (signature from the issuer's JWKS, ``iss``, ``exp``, ``nbf``, the principal claim),
   with the console's client id as the audience; then its ``nonce`` must be ours and,
   when it names an authorized party (``azp``), that must be us too.

Endpoints come from the issuer's discovery document, over HTTPS (plain HTTP only on
loopback), fetched once and kept for ``jwks_cache_s``.
"""

from __future__ import annotations

import hmac
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx2
import jwt
import structlog

from spark_mcp.auth.claims import identity_of
from spark_mcp.auth.oidc import OidcVerifier, require_safe_url
from spark_mcp.config.model import Config
from spark_mcp.console import pkce
from spark_mcp.errors import ConfigError, SparkMcpError

log = structlog.get_logger(__name__)

PENDING_FOR_S = 600.0
_PENDING_MAX = 2_000
_TIMEOUT_S = 10.0
_MAX_BYTES = 256 * 1024


class SignInFailed(SparkMcpError):
    """An OIDC sign-in that did not end with a verified person; the message is for them."""

    code = "sign_in_failed"


@dataclass(frozen=True)
class Endpoints:
    authorization: str
    token: str

    @property
    def authorization_origin(self) -> str:
        parts = urlsplit(self.authorization)
        return f"{parts.scheme}://{parts.netloc}"


@dataclass(frozen=True)
class Pending:
    state: str
    nonce: str
    verifier: str
    binding: str  # the pre-login cookie of the browser that started it
    started_at: float


@dataclass(frozen=True)
class SignedIn:
    principal: str
    groups: tuple[str, ...]
    expires_at: float | None


class PendingSignIns:
    """Sign-ins waiting for their callback: bounded, used once, bound to their browser."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._pending: dict[str, Pending] = {}
        self._guard = threading.Lock()

    def add(self, binding: str) -> Pending:
        pending = Pending(pkce.new_state(), pkce.new_nonce(), pkce.new_verifier(), binding, self._clock())
        with self._guard:
            self._sweep()
            while len(self._pending) >= _PENDING_MAX:
                del self._pending[next(iter(self._pending))]
            self._pending[pending.state] = pending
        return pending

    def take(self, state: str, binding: str | None) -> Pending | None:
        """The pending sign-in ``state`` names, if this browser started it and it is fresh; used up."""
        with self._guard:
            self._sweep()
            pending = self._pending.pop(state, None) if state else None
        if pending is None or not binding:
            return None
        if not hmac.compare_digest(pending.binding.encode(), binding.encode("utf-8", "replace")):
            return None
        return pending

    def _sweep(self) -> None:
        cutoff = self._clock() - PENDING_FOR_S
        for state in [s for s, p in self._pending.items() if p.started_at < cutoff]:
            del self._pending[state]


class OidcSignIn:
    """The console as an OIDC client of ``[auth.oidc] issuer``."""

    def __init__(self, config: Config, resource: str, redirect_uri: str) -> None:
        client_id = config.console.oidc_client_id
        if not client_id or not config.auth.oidc.issuer:
            raise ConfigError("console sign-in through OIDC needs [auth.oidc] issuer and [console] oidc_client_id")
        self.client_id = client_id
        self._secret = config.console.oidc_client_secret
        self._scopes = " ".join(config.console.oidc_scopes)
        self._issuer = config.auth.oidc.issuer
        self._cache_s = config.auth.oidc.jwks_cache_s
        self.redirect_uri = redirect_uri
        # The ID token's audience is the console's client id, not the MCP resource.
        self._id_tokens = OidcVerifier(config.auth.oidc.model_copy(update={"audience": client_id}), resource)
        self._endpoints: tuple[float, Endpoints] | None = None
        self.pending = PendingSignIns()

    async def endpoints(self) -> Endpoints:
        now = time.monotonic()
        if self._endpoints is not None and now - self._endpoints[0] < self._cache_s:
            return self._endpoints[1]
        url = self._issuer.rstrip("/") + "/.well-known/openid-configuration"
        try:
            async with httpx2.AsyncClient(timeout=_TIMEOUT_S, follow_redirects=False) as http:
                document = _json(await http.get(url, headers={"Accept": "application/json"}), url)
        except (httpx2.HTTPError, ValueError) as exc:
            raise SignInFailed(
                f"the identity provider could not be reached ({type(exc).__name__}); try again"
            ) from None
        if document.get("issuer") != self._issuer:
            raise SignInFailed("the identity provider's discovery document names another issuer")
        found = Endpoints(str(document.get("authorization_endpoint")), str(document.get("token_endpoint")))
        try:
            require_safe_url(found.authorization, "authorization_endpoint")
            require_safe_url(found.token, "token_endpoint")
        except ConfigError as exc:
            raise SignInFailed(str(exc)) from None
        self._endpoints = (now, found)
        return found

    async def start(self, binding: str) -> str:
        """The issuer URL to send the browser to."""
        endpoints = await self.endpoints()
        pending = self.pending.add(binding)
        query = urlencode(
            {
                "response_type": "code",
                "client_id": self.client_id,
                "redirect_uri": self.redirect_uri,
                "scope": self._scopes,
                "state": pending.state,
                "nonce": pending.nonce,
                "code_challenge": pkce.challenge(pending.verifier),
                "code_challenge_method": "S256",
            }
        )
        separator = "&" if "?" in endpoints.authorization else "?"
        return f"{endpoints.authorization}{separator}{query}"

    async def finish(self, params: dict[str, str], binding: str | None) -> SignedIn:
        """The person the issuer vouches for, from the callback's query parameters."""
        pending = self.pending.take(params.get("state", ""), binding)
        if pending is None:
            raise SignInFailed("this sign-in was not started here, expired, or was already used: start again")
        if "error" in params:
            raise SignInFailed(f"the identity provider refused the sign-in ({params['error'][:64]})")
        if "iss" in params and params["iss"] != self._issuer:
            raise SignInFailed("the answer came from another issuer than this server's")
        code = params.get("code")
        if not code:
            raise SignInFailed("the identity provider sent no authorization code")
        id_token = await self._exchange(code, pending)
        access = await self._id_tokens.verify_token(id_token)
        identity = identity_of(access.subject, access.scopes, access.claims) if access is not None else None
        if access is None or identity is None:
            raise SignInFailed("the identity provider's ID token did not verify")
        # The verifier has checked this exact token's signature, so its payload is the issuer's.
        claims: dict[str, Any] = jwt.decode(id_token, options={"verify_signature": False})
        nonce = claims.get("nonce")
        if not isinstance(nonce, str) or not hmac.compare_digest(nonce.encode(), pending.nonce.encode()):
            raise SignInFailed("the ID token was not issued for this sign-in (nonce)")
        audience = claims.get("aud")
        azp = claims.get("azp")
        if (isinstance(audience, list) and len(audience) > 1 and azp is None) or (
            azp is not None and azp != self.client_id
        ):
            raise SignInFailed("the ID token was issued to another client (azp)")
        return SignedIn(identity.principal, identity.groups, float(access.expires_at) if access.expires_at else None)

    async def _exchange(self, code: str, pending: Pending) -> str:
        endpoints = await self.endpoints()
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": self.redirect_uri,
            "client_id": self.client_id,
            "code_verifier": pending.verifier,
        }
        # A confidential client authenticates with HTTP Basic (client_secret_basic); a public one
        # only names itself, and PKCE is what binds the code to this sign-in.
        extra: dict[str, Any] = {}
        if self._secret is not None:
            extra["auth"] = (self.client_id, self._secret.get_secret_value())
        try:
            async with httpx2.AsyncClient(timeout=_TIMEOUT_S, follow_redirects=False) as http:
                response = await http.post(endpoints.token, data=form, headers={"Accept": "application/json"}, **extra)
                document = _json(response, endpoints.token, allow_error=True)
        except (httpx2.HTTPError, ValueError) as exc:
            raise SignInFailed(f"the identity provider's token endpoint failed ({type(exc).__name__})") from None
        if response.status_code != 200:
            error = str(document.get("error", response.status_code))[:64]
            log.info("console.oidc_exchange_refused", error=error)
            raise SignInFailed(f"the identity provider refused the code ({error}): start again")
        id_token = document.get("id_token")
        if not isinstance(id_token, str):
            raise SignInFailed("the identity provider sent no ID token (is openid among the scopes?)")
        return id_token


def _json(response: httpx2.Response, url: str, *, allow_error: bool = False) -> dict[str, Any]:
    if not allow_error:
        response.raise_for_status()
    if len(response.content) > _MAX_BYTES:
        raise ValueError(f"{url} answered with more than {_MAX_BYTES} bytes")
    data = response.json()
    if not isinstance(data, dict):
        raise ValueError(f"{url} did not answer with a JSON object")
    return data
