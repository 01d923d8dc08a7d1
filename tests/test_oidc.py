"""OIDC: JWTs checked against a JWKS that the test serves itself over real HTTP.

The issuer here is a small Starlette app on a loopback port (discovery document and
JWKS, with a hit counter); keys are real RSA/EC keys made with ``cryptography``, tokens
are signed with pyjwt. Every way a token can be wrong is tried against the verifier,
and the whole path (401, the principal, its group roles, the audit record) over HTTP.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx2
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from spark_mcp.audit import tail
from spark_mcp.auth.oidc import OidcVerifier
from spark_mcp.config.model import OidcConfig
from spark_mcp.errors import ConfigError
from tests.http_support import MCP_HEADERS, _Uvicorn, bound_socket, http_config, mcp_client, mcp_post_body, serving

pytestmark = pytest.mark.anyio
RESOURCE = "http://127.0.0.1:9/mcp"


@dataclass
class SigningKey:
    kid: str
    private: Any
    alg: str

    def jwk(self) -> dict[str, Any]:
        to_jwk = RSAAlgorithm.to_jwk if self.alg.startswith(("RS", "PS")) else ECAlgorithm.to_jwk
        data: dict[str, Any] = to_jwk(self.private.public_key(), as_dict=True)
        return {**data, "kid": self.kid, "use": "sig", "alg": self.alg}

    def public_pem(self) -> bytes:
        return bytes(
            self.private.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )


@dataclass(frozen=True)
class Relative:
    """A time claim as an offset from when the test runs."""

    seconds: int


def rsa_key(kid: str) -> SigningKey:
    return SigningKey(kid, rsa.generate_private_key(public_exponent=65537, key_size=2048), "RS256")


@dataclass
class Issuer:
    url: str
    keys: list[SigningKey]
    hits: dict[str, int] = field(default_factory=lambda: {"jwks": 0, "discovery": 0})

    @property
    def jwks_url(self) -> str:
        return f"{self.url}/jwks"

    def sign(self, key: SigningKey | None = None, *, headers: dict[str, Any] | None = None, **claims: Any) -> str:
        key = key or self.keys[0]
        now = int(time.time())
        payload = {"iss": self.url, "aud": RESOURCE, "sub": "alice", "iat": now, "exp": now + 300, **claims}
        payload = {k: v for k, v in payload.items() if v is not None}
        return jwt.encode(payload, key.private, algorithm=key.alg, headers={"kid": key.kid, **(headers or {})})


@asynccontextmanager
async def issuer_serving() -> AsyncIterator[Issuer]:
    sock = bound_socket()
    issuer = Issuer(url=f"http://127.0.0.1:{sock.getsockname()[1]}", keys=[rsa_key("key-1")])

    async def discovery(request: Request) -> JSONResponse:
        issuer.hits["discovery"] += 1
        return JSONResponse({"issuer": issuer.url, "jwks_uri": issuer.jwks_url})

    async def jwks(request: Request) -> JSONResponse:
        issuer.hits["jwks"] += 1
        return JSONResponse({"keys": [k.jwk() for k in issuer.keys]})

    app = Starlette(
        routes=[Route("/.well-known/openid-configuration", discovery), Route("/jwks", jwks)],
    )
    import uvicorn

    server = _Uvicorn(uvicorn.Config(app, log_config=None, lifespan="off"))
    async with anyio.create_task_group() as group:
        group.start_soon(server.serve, [sock])
        with anyio.fail_after(30):
            while not server.started:
                await anyio.sleep(0.02)
        try:
            yield issuer
        finally:
            server.should_exit = True
    sock.close()


@pytest.fixture
async def issuer() -> AsyncIterator[Issuer]:
    async with issuer_serving() as running:
        yield running


def verifier(issuer: Issuer, **settings: Any) -> OidcVerifier:
    values: dict[str, Any] = {"issuer": issuer.url, "jwks_url": issuer.jwks_url, "clock_skew_s": 30, **settings}
    return OidcVerifier(OidcConfig.model_validate(values), RESOURCE)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hand_made(header: dict[str, Any], payload: dict[str, Any], secret: bytes | None) -> str:
    """A JWT assembled by hand, for algorithms pyjwt (rightly) refuses to sign with."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
    signature = b"" if secret is None else hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


async def test_a_good_token_names_its_principal_with_the_resource_and_claims(issuer: Issuer) -> None:
    check = verifier(issuer, principal_claim="preferred_username", groups_claim="groups")
    token = issuer.sign(preferred_username="erin", groups=["engineer", "staff"], scope="spark:read spark:write")
    access = await check.verify_token(token)
    assert access is not None
    assert (access.subject, access.resource, access.scopes) == ("erin", RESOURCE, ["spark:read", "spark:write"])
    assert access.claims is not None
    assert access.claims["spark_mcp_auth"] == "oidc"
    assert access.claims["spark_mcp_groups"] == ["engineer", "staff"]
    assert access.claims["iss"] == issuer.url


@pytest.mark.parametrize(
    ("why", "claims"),
    [
        ("wrong issuer", {"iss": "https://evil.example.com"}),
        ("wrong audience: a token for another resource", {"aud": "https://other.example.com/mcp"}),
        ("expired beyond the clock skew", {"exp": Relative(-120)}),
        ("not yet valid beyond the clock skew", {"nbf": Relative(120)}),
        ("no exp at all", {"exp": None}),
        ("no aud at all", {"aud": None}),
        ("a principal claim that is not a principal id", {"sub": "auth0|12345"}),
        ("no principal claim", {"sub": None}),
    ],
)
async def test_a_token_that_is_wrong_in_one_way_is_refused(issuer: Issuer, why: str, claims: dict[str, Any]) -> None:
    check = verifier(issuer)
    now = int(time.time())  # times are taken when the test runs, not when it was collected
    resolved = {k: now + v.seconds if isinstance(v, Relative) else v for k, v in claims.items()}
    assert await check.verify_token(issuer.sign(**resolved)) is None, why


async def test_the_clock_skew_admits_a_token_just_past_exp_or_just_before_nbf(issuer: Issuer) -> None:
    check = verifier(issuer, clock_skew_s=60)
    now = int(time.time())
    assert await check.verify_token(issuer.sign(exp=now - 10)) is not None
    assert await check.verify_token(issuer.sign(nbf=now + 10)) is not None


async def test_alg_none_and_hmac_tokens_are_refused(issuer: Issuer) -> None:
    check = verifier(issuer)
    now = int(time.time())
    payload = {"iss": issuer.url, "aud": RESOURCE, "sub": "root", "exp": now + 300}
    unsigned = hand_made({"alg": "none", "typ": "JWT", "kid": "key-1"}, payload, None)
    # The classic confusion attack: HMAC-sign with the issuer's *public* key as the secret.
    confused = hand_made({"alg": "HS256", "typ": "JWT", "kid": "key-1"}, payload, issuer.keys[0].public_pem())
    plain_hmac = hand_made({"alg": "HS256", "typ": "JWT", "kid": "key-1"}, payload, b"a shared secret")
    for token in (unsigned, confused, plain_hmac):
        assert await check.verify_token(token) is None


async def test_a_token_signed_by_a_key_not_in_the_jwks_is_refused(issuer: Issuer) -> None:
    check = verifier(issuer)
    stranger = rsa_key("key-1")  # same kid, different key: the signature must not verify
    assert await check.verify_token(issuer.sign(stranger)) is None
    assert await check.verify_token("not.a.jwt") is None


async def test_a_rotated_key_is_fetched_when_an_unknown_kid_arrives(issuer: Issuer) -> None:
    check = verifier(issuer, jwks_min_refetch_s=0)
    assert await check.verify_token(issuer.sign()) is not None
    assert issuer.hits["jwks"] == 1
    assert await check.verify_token(issuer.sign()) is not None
    assert issuer.hits["jwks"] == 1  # cached
    rotated = rsa_key("key-2")
    issuer.keys = [rotated]
    assert await check.verify_token(issuer.sign(rotated)) is not None
    assert issuer.hits["jwks"] == 2


async def test_unknown_kids_refetch_the_jwks_at_most_once_per_interval(issuer: Issuer) -> None:
    check = verifier(issuer, jwks_min_refetch_s=3600)
    assert await check.verify_token(issuer.sign()) is not None
    for n in range(5):
        assert await check.verify_token(issuer.sign(rsa_key(f"invented-{n}"))) is None
    assert issuer.hits["jwks"] == 1


async def test_the_jwks_is_found_through_discovery_and_ec_keys_work(issuer: Issuer) -> None:
    ec_key = SigningKey("ec-1", ec.generate_private_key(ec.SECP256R1()), "ES256")
    issuer.keys.append(ec_key)
    check = verifier(issuer, jwks_url=None)
    assert await check.verify_token(issuer.sign(ec_key)) is not None
    assert issuer.hits["discovery"] == 1
    # An algorithm the configuration does not list is refused even with a good key.
    only_rsa = verifier(issuer, jwks_url=None, algorithms=["RS256"])
    assert await only_rsa.verify_token(issuer.sign(ec_key)) is None


@pytest.mark.parametrize("alg", ["none", "HS256", "HS512"])
def test_the_configuration_refuses_symmetric_and_unsigned_algorithms(alg: str) -> None:
    with pytest.raises(ValidationError, match="asymmetric algorithms only"):
        OidcConfig(issuer="https://id.example.com", algorithms=(alg,))


def test_keys_and_discovery_must_come_over_https_off_loopback() -> None:
    with pytest.raises(ConfigError, match="https"):
        OidcVerifier(OidcConfig(issuer="http://id.example.com"), RESOURCE)
    with pytest.raises(ConfigError, match="https"):
        OidcVerifier(OidcConfig(issuer="https://id.example.com", jwks_url="http://id.example.com/jwks"), RESOURCE)


async def test_over_http_an_oidc_user_gets_their_group_roles_and_the_audit_says_oidc(
    issuer: Issuer, tmp_path: Path
) -> None:
    auth = {
        "mode": "oidc",
        "oidc": {
            "issuer": issuer.url,
            "jwks_url": issuer.jwks_url,
            "principal_claim": "preferred_username",
            "groups_claim": "groups",
        },
    }
    async with serving(http_config(tmp_path / "home", auth=auth)) as running:
        now = int(time.time())
        base = {"aud": running.url, "scope": "spark:read spark:write", "exp": now + 300}
        # dora is in no [users] entry: no default role either; her groups decide.
        token = issuer.sign(preferred_username="dora", groups=["engineer", "no-such-role"], **base)
        async with mcp_client(running.url, token) as client:
            result = await client.call_tool("whoami", {})
        assert result.structured_content is not None
        assert result.structured_content["principal"] == "dora"
        assert result.structured_content["roles"] == ["engineer"]
        record = tail(running.config.audit_path, 1)[0]
        assert (record.principal, record.auth, record.token_id) == ("dora", "oidc", None)

        async with httpx2.AsyncClient() as http:
            for bad in (
                issuer.sign(preferred_username="dora", **{**base, "aud": "https://other.example.com/mcp"}),
                issuer.sign(preferred_username="dora", **{**base, "exp": now - 3600}),
            ):
                response = await http.post(
                    running.url, json=mcp_post_body(), headers={**MCP_HEADERS, "Authorization": f"Bearer {bad}"}
                )
                assert response.status_code == 401
            metadata = (await http.get(f"{running.base}/.well-known/oauth-protected-resource/mcp")).json()
        # The SDK's metadata model normalises a path-less URL with a trailing slash.
    assert [url.rstrip("/") for url in metadata["authorization_servers"]] == [issuer.url]
