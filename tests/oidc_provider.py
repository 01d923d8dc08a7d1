"""A tiny OpenID provider for the console's sign-in tests, served over real HTTP on loopback.

It does what an issuer does for the authorization code flow with PKCE, and checks what
an issuer checks: discovery, JWKS, ``/authorize`` (client, redirect URI, ``code``,
S256 challenge; it signs in ``provider.user`` at once, with no login form of its own),
and ``/token`` (the code once, the same client and redirect URI, the verifier against
the challenge, the client secret for a confidential client). ``tamper`` makes it issue
ID tokens that are wrong in one way, so the console's checks can be seen to refuse them.
It was written for these tests; no real identity provider was run here.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import anyio
import jwt
import uvicorn
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from tests.http_support import _Uvicorn, bound_socket

CLIENT_ID = "spark-console"


@dataclass
class Grant:
    client_id: str
    redirect_uri: str
    challenge: str
    nonce: str
    claims: dict[str, Any]


@dataclass
class Provider:
    url: str
    client_secret: str | None = None
    user: dict[str, Any] = field(default_factory=lambda: {"sub": "u-1", "preferred_username": "olga"})
    tamper: dict[str, Any] = field(default_factory=dict)  # e.g. {"nonce": "x"}, {"aud": "other"}, {"key": "other"}
    deny: bool = False
    grants: dict[str, Grant] = field(default_factory=dict)
    exchanges: list[tuple[str, bool]] = field(default_factory=list)  # (what, accepted)
    key: Any = field(default_factory=lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048))
    other_key: Any = field(default_factory=lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048))

    def jwks(self) -> dict[str, Any]:
        public: dict[str, Any] = RSAAlgorithm.to_jwk(self.key.public_key(), as_dict=True)
        return {"keys": [{**public, "kid": "op-key", "use": "sig", "alg": "RS256"}]}

    def id_token(self, grant: Grant) -> str:
        now = int(time.time())
        claims = {
            "iss": self.url,
            "aud": grant.client_id,
            "iat": now,
            "exp": now + 300,
            "nonce": grant.nonce,
            **grant.claims,
        }
        for name in ("nonce", "aud", "azp", "exp", "iss"):
            if name in self.tamper:
                claims[name] = self.tamper[name]
        key = self.other_key if self.tamper.get("key") == "other" else self.key
        return jwt.encode(claims, key, algorithm="RS256", headers={"kid": "op-key"})


def s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


def _app(provider: Provider) -> Starlette:
    async def discovery(request: Request) -> Response:
        return JSONResponse(
            {
                "issuer": provider.url,
                "authorization_endpoint": f"{provider.url}/authorize",
                "token_endpoint": f"{provider.url}/token",
                "jwks_uri": f"{provider.url}/jwks",
                "code_challenge_methods_supported": ["S256"],
            }
        )

    async def jwks(request: Request) -> Response:
        return JSONResponse(provider.jwks())

    async def authorize(request: Request) -> Response:
        q = request.query_params
        if q.get("client_id") != CLIENT_ID or q.get("response_type") != "code":
            return JSONResponse({"error": "unauthorized_client"}, status_code=400)
        if (
            q.get("code_challenge_method") != "S256"
            or not q.get("code_challenge")
            or "openid" not in q.get("scope", "")
        ):
            return JSONResponse({"error": "invalid_request"}, status_code=400)
        redirect = q["redirect_uri"]
        if provider.deny:
            return RedirectResponse(f"{redirect}?{urlencode({'error': 'access_denied', 'state': q['state']})}", 302)
        code = secrets.token_urlsafe(16)
        provider.grants[code] = Grant(CLIENT_ID, redirect, q["code_challenge"], q["nonce"], dict(provider.user))
        answer = {"code": code, "state": q["state"], "iss": provider.tamper.get("iss_param", provider.url)}
        return RedirectResponse(f"{redirect}?{urlencode(answer)}", 302)

    async def token(request: Request) -> Response:
        form = await request.form()
        grant = provider.grants.pop(str(form.get("code")), None)  # a code works once
        refused = None
        if grant is None:
            refused = "unknown or used code"
        elif form.get("grant_type") != "authorization_code" or form.get("client_id") != grant.client_id:
            refused = "wrong grant or client"
        elif form.get("redirect_uri") != grant.redirect_uri:
            refused = "wrong redirect_uri"
        elif s256(str(form.get("code_verifier", ""))) != grant.challenge:
            refused = "PKCE verifier does not match the challenge"
        elif provider.client_secret is not None:
            expected = base64.b64encode(f"{CLIENT_ID}:{provider.client_secret}".encode()).decode()
            if request.headers.get("authorization") != f"Basic {expected}":
                refused = "wrong client secret"
        provider.exchanges.append((refused or "ok", refused is None))
        if refused is not None or grant is None:
            return JSONResponse({"error": "invalid_grant", "error_description": refused}, status_code=400)
        return JSONResponse({"access_token": "opaque", "token_type": "Bearer", "id_token": provider.id_token(grant)})

    return Starlette(
        routes=[
            Route("/.well-known/openid-configuration", discovery),
            Route("/jwks", jwks),
            Route("/authorize", authorize),
            Route("/token", token, methods=["POST"]),
        ]
    )


@asynccontextmanager
async def provider_serving(host_name: str = "127.0.0.1", **kwargs: Any) -> AsyncIterator[Provider]:
    """The provider on a free loopback port; ``host_name`` is how its URLs name it."""
    sock = bound_socket()
    provider = Provider(url=f"http://{host_name}:{sock.getsockname()[1]}", **kwargs)
    server = _Uvicorn(uvicorn.Config(_app(provider), log_config=None, lifespan="off"))
    try:
        async with anyio.create_task_group() as group:
            group.start_soon(server.serve, [sock])
            with anyio.fail_after(30):
                while not server.started:
                    await anyio.sleep(0.02)
            try:
                yield provider
            finally:
                server.should_exit = True
    finally:
        sock.close()
