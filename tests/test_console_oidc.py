"""Signing in to the console through OIDC: authorization code with PKCE, against a provider
the test serves itself (``tests/oidc_provider.py``; no real identity provider was run).

Over real HTTP: a whole sign-in (public and confidential client), the provider seeing
the S256 challenge match the verifier; then every way the answer can be wrong: a
callback this browser did not start (login CSRF), an unknown or replayed state, the
provider's refusal, an answer from another issuer, and ID tokens with the wrong nonce,
audience, authorized party, issuer, expiry or signing key. And once in Chromium, with
the provider on another site (``localhost`` against ``127.0.0.1``), where the
``SameSite=Strict`` cookie must survive the cross-site return.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from spark_mcp.audit import tail
from spark_mcp.config import Config, load_config
from tests.console_support import ConsoleClient, chromium, console_client, csrf_of, session_cookie
from tests.http_support import TESTS, Running, serving
from tests.oidc_provider import CLIENT_ID, Provider, provider_serving

pytestmark = pytest.mark.anyio


def oidc_config(home: Path, provider: Provider, **console: Any) -> Config:
    return load_config(
        None,
        environ={},
        overrides={
            "home": str(home),
            "policies": [str(TESTS / "policies")],
            "server": {"transport": "http", "host": "127.0.0.1", "port": 0},
            "auth": {
                "mode": "oidc",
                "oidc": {"issuer": provider.url, "principal_claim": "preferred_username", "groups_claim": "groups"},
            },
            "console": {"oidc_client_id": CLIENT_ID, **console},
        },
    )


@asynccontextmanager
async def console_with_provider(tmp_path: Path, **provider_kw: Any) -> AsyncIterator[tuple[Running, Provider]]:
    async with provider_serving(**provider_kw) as provider:
        secret = provider_kw.get("client_secret")
        extra = {"oidc_client_secret": secret} if secret else {}
        async with serving(oidc_config(tmp_path / "home", provider, **extra)) as running:
            yield running, provider


async def to_issuer(client: ConsoleClient) -> str:
    """Start a sign-in; returns the issuer's redirect back to the console (the callback URL)."""
    page = await client.get("/login")
    assert page.status_code == 200 and "Sign in with your identity provider" in page.text
    start = await client.post("/login/oidc", {"csrf": csrf_of(page.text)})
    assert start.status_code == 303, start.text
    at_issuer = await client.http.get(start.headers["location"])
    assert at_issuer.status_code == 302, at_issuer.text
    return at_issuer.headers["location"]


async def sign_in(client: ConsoleClient) -> Any:
    callback = await to_issuer(client)
    return await client.http.get(callback)


@pytest.mark.parametrize("secret", [None, "op-client-secret"], ids=["public-client", "confidential-client"])
async def test_signing_in_through_the_issuer_with_pkce(tmp_path: Path, secret: str | None) -> None:
    user = {"sub": "u-7", "preferred_username": "olga", "groups": ["analyst", "not-a-role"]}
    async with (
        console_with_provider(tmp_path, user=user, client_secret=secret) as (server, provider),
        console_client(server.base) as client,
    ):
        login_page = await client.get("/login")
        csp = login_page.headers["content-security-policy"]
        assert f"form-action 'self' {provider.url}" in csp  # the form's redirect may go there, nowhere else
        start = await client.post("/login/oidc", {"csrf": csrf_of(login_page.text)})
        authorize = urlsplit(start.headers["location"])
        query = {k: v[0] for k, v in parse_qs(authorize.query).items()}
        assert f"{authorize.scheme}://{authorize.netloc}{authorize.path}" == f"{provider.url}/authorize"
        assert query["response_type"] == "code" and query["code_challenge_method"] == "S256"
        assert query["redirect_uri"] == f"{server.base}/console/oidc/callback"
        assert len(query["code_challenge"]) == 43 and query["state"] and query["nonce"]
        assert query["scope"] == "openid profile"
        back = await client.http.get((await client.http.get(start.headers["location"])).headers["location"])
        assert back.status_code == 200
        assert '<meta http-equiv="refresh" content="0; url=/console/">' in back.text
        assert session_cookie(client.http)
        home = await client.get("/")
        assert "Signed in as <strong>olga</strong>" in home.text
        assert "roles: analyst" in home.text  # the group that names a policy role, and only that
        assert (await client.get("/tokens")).status_code == 404  # API tokens are not this mode's
    assert provider.exchanges == [("ok", True)]  # the verifier matched the challenge, the secret was right
    record = tail(server.config.audit_path, 1)[0]
    assert (record.tool, record.principal, record.auth, record.via) == ("console.login", "olga", "oidc", "console")


async def test_a_callback_this_browser_did_not_start_is_refused(tmp_path: Path) -> None:
    async with (
        console_with_provider(tmp_path) as (server, provider),
        console_client(server.base) as attacker,
        console_client(server.base) as victim,
    ):
        # The attacker signs in at the issuer, and lures the victim to the callback with
        # the attacker's code: the victim's browser did not start that sign-in.
        lure = await to_issuer(attacker)
        await victim.get("/login")  # the victim has a pre-login cookie of their own
        answer = await victim.http.get(lure)
        assert answer.status_code == 400 and "not started here" in answer.text
        assert session_cookie(victim.http) is None
        # That state is used up: the attacker cannot use it afterwards either.
        assert (await attacker.http.get(lure)).status_code == 400
        # A state nobody started, and a callback replayed after it worked.
        assert (await attacker.http.get(f"{server.base}/console/oidc/callback?state=nope&code=x")).status_code == 400
        callback = await to_issuer(attacker)
        assert (await attacker.http.get(callback)).status_code == 200
        async with console_client(server.base) as replay:
            replay.http.cookies.update({"smcp_login": attacker.http.cookies.get("smcp_login") or "x"})
            assert (await replay.http.get(callback)).status_code == 400
    assert [accepted for _, accepted in provider.exchanges] == [True]  # refused before any code exchange


@pytest.mark.parametrize(
    ("tamper", "said"),
    [
        ({"nonce": "someone-elses-nonce"}, "nonce"),
        ({"aud": "another-client"}, "did not verify"),
        ({"aud": [CLIENT_ID, "another-client"]}, "azp"),  # several audiences and no authorized party
        ({"azp": "another-client"}, "azp"),
        ({"iss": "http://127.0.0.1:9/other"}, "did not verify"),
        ({"exp": int(time.time()) - 3600}, "did not verify"),
        ({"key": "other"}, "did not verify"),  # signed by a key the issuer does not publish
        ({"iss_param": "http://127.0.0.1:9/mix-up"}, "another issuer"),  # RFC 9207 mix-up
    ],
)
async def test_an_answer_that_is_not_for_this_sign_in_is_refused(
    tmp_path: Path, tamper: dict[str, Any], said: str
) -> None:
    async with console_with_provider(tmp_path, tamper=tamper) as (server, _), console_client(server.base) as client:
        answer = await sign_in(client)
        assert answer.status_code == 400
        assert said in answer.text
        assert session_cookie(client.http) is None
        assert (await client.get("/")).status_code == 303
    # Refused, and audited as refused: nobody is named, and nobody signed in.
    logins = [r for r in tail(server.config.audit_path, 10) if r.tool == "console.login"]
    assert [(r.principal, r.auth, r.outcome, r.error_class) for r in logins] == [
        ("(unknown)", "oidc", "error", "sign_in_failed")
    ]
    assert logins[0].statement is not None and said in logins[0].statement


async def test_the_issuers_refusal_ends_the_sign_in(tmp_path: Path) -> None:
    async with console_with_provider(tmp_path, deny=True) as (server, provider), console_client(server.base) as client:
        answer = await sign_in(client)
        assert answer.status_code == 400 and "refused the sign-in (access_denied)" in answer.text
        assert session_cookie(client.http) is None
    assert provider.exchanges == []
    record = tail(server.config.audit_path, 1)[0]
    assert (record.tool, record.principal, record.outcome) == ("console.login", "(unknown)", "error")
    refusal = "the identity provider refused the sign-in (access_denied)"
    assert record.statement == f"sign in to the console (oidc): refused: {refusal}"


async def test_signing_in_through_the_issuer_in_a_browser(tmp_path: Path) -> None:
    """The issuer on another site than the console: its redirect back is a cross-site
    navigation, which carries no SameSite=Strict cookie; the sign-in must still land."""
    user = {"sub": "u-9", "preferred_username": "olga", "groups": ["admin"]}
    async with (
        provider_serving("localhost", user=user) as provider,
        serving(oidc_config(tmp_path / "home", provider)) as server,
        chromium() as browser,
    ):
        page = await browser.new_page()
        await page.goto(f"{server.base}/console/")
        await page.get_by_role("button", name="Sign in with your identity provider").click()
        await page.wait_for_url(f"{server.base}/console/")
        assert "Signed in as olga" in " ".join((await page.locator(".who").inner_text()).split())
        assert "everyone's" in await page.locator("main").inner_text()  # group admin: driver.admin
        await page.get_by_role("button", name="Sign out").click()
        await page.wait_for_url(f"{server.base}/console/login?ended=logout")
    assert provider.exchanges == [("ok", True)]


async def test_without_a_client_id_the_console_offers_no_oidc_sign_in(tmp_path: Path) -> None:
    async with provider_serving() as provider:
        config = oidc_config(tmp_path / "home", provider)
        config = config.model_copy(update={"console": config.console.model_copy(update={"oidc_client_id": None})})
        async with serving(config) as server, console_client(server.base) as client:
            page = await client.get("/login")
            assert page.status_code == 200 and "oidc_client_id" in page.text
            assert 'action="/console/login/oidc"' not in page.text
            # A hand-made post gets nowhere either (its CSRF token is checked first, then this).
            refused = await client.post("/login/oidc", {"csrf": "x"})
            assert refused.status_code == 403
    assert provider.exchanges == []
