"""The console over real HTTP, without a browser and without Spark drivers.

A real server (uvicorn on a loopback port, the real ``App``, API tokens in its state
database) and an HTTP client that keeps cookies and fills forms as a browser would.
What is tried: signing in with good and bad tokens, the cookie's attributes, CSRF and
Origin on every POST, tokens made and revoked in the console and refused at once on
``/mcp``, a token that would outgrow the one that made it, revocation and sign-out
ending a login on the server, other people's ids answered as "not found" and audited,
the modes (none, proxy) and the console turned off. Drivers and the browser are in
``test_console_browser.py``.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx2
import pytest
from mcp import MCPError

from spark_mcp.app import App
from spark_mcp.audit import AuditRecord, tail, verify
from spark_mcp.audit.refusals import PER_WINDOW
from spark_mcp.console import build_console
from spark_mcp.errors import ConfigError
from spark_mcp.http.app import build_http_app
from spark_mcp.state.tokens import split_token
from tests.audit_faults import audit_disk
from tests.console_support import ConsoleClient, console_client, csrf_of, session_cookie
from tests.http_support import MCP_HEADERS, Running, http_config, mcp_client, mcp_post_body, self_signed, serving

pytestmark = pytest.mark.anyio


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Running]:
    async with serving(http_config(tmp_path / "home")) as running:
        yield running


def issue(
    server: Running, user: str, scopes: tuple[str, ...] = ("spark:read", "spark:write"), **kw: object
) -> tuple[str, str]:
    store = server.service.tokens
    assert store is not None
    issued = store.create(user, scopes=list(scopes), resource=server.service.resource, **kw)  # type: ignore[arg-type]
    return issued.token, issued.record.id


def records(server: Running, tool: str | None = None) -> list[AuditRecord]:
    found = tail(server.config.audit_path, 500)
    return [r for r in found if tool is None or r.tool == tool]


def running_app(server: Running) -> App:
    app = server.service.ref.get()
    assert app is not None
    return app


@pytest.fixture
async def ann(server: Running) -> AsyncIterator[ConsoleClient]:
    token, _ = issue(server, "ann")
    async with console_client(server.base) as client:
        assert (await client.sign_in(token)).status_code == 303
        yield client


# -- signing in --------------------------------------------------------------------------


async def test_the_console_asks_for_a_sign_in_and_every_answer_is_locked_down(server: Running) -> None:
    async with console_client(server.base) as client:
        first = await client.get("/")
        assert first.status_code == 303 and first.headers["location"] == "/console/login"
        page = await client.get("/login")
    assert page.status_code == 200
    headers = page.headers
    assert headers["content-security-policy"].startswith("default-src 'none'; style-src 'self';")
    assert "script-src" not in headers["content-security-policy"]  # no script may run, at all
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert headers["x-frame-options"] == "DENY"
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "same-origin"  # no-referrer would turn our own Origin into "null"
    assert headers["cache-control"] == "no-store"
    assert "<script" not in page.text
    assert '<label for="token">API token</label>' in page.text
    css_url = page.text.split('rel="stylesheet" href="', 1)[1].split('"', 1)[0]
    async with httpx2.AsyncClient() as http:
        css = await http.get(server.base + css_url)
        assert (await http.get(server.base + "/console/static/console.css")).status_code == 404  # only the hashed name
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert "immutable" in css.headers["cache-control"]
    assert ":focus-visible" in css.text


async def test_signing_in_with_a_token_sets_a_strict_httponly_cookie_and_is_audited(server: Running) -> None:
    token, token_id = issue(server, "ann")
    async with console_client(server.base) as client:
        answer = await client.sign_in(token)
        assert answer.status_code == 303 and answer.headers["location"] == "/console/"
        cookie = next(h for h in answer.headers.get_list("set-cookie") if h.startswith("smcp_console="))
        attributes = {a.strip().lower() for a in cookie.split(";")[1:]}
        assert {"httponly", "samesite=strict", "path=/"} <= attributes
        assert token not in cookie  # an opaque id, not the credential
        home = await client.get("/")
    assert home.status_code == 200
    assert "Signed in as <strong>ann</strong>" in home.text
    assert token not in home.text
    login = records(server, "console.login")[-1]
    assert (login.principal, login.via, login.auth, login.token_id, login.outcome) == (
        "ann",
        "console",
        "token",
        token_id,
        "ok",
    )
    assert token not in server.config.audit_path.read_text()


async def test_a_token_that_is_not_good_on_mcp_does_not_sign_in(server: Running) -> None:
    now = time.time()
    revoked, revoked_id = issue(server, "ann")
    assert server.service.tokens is not None
    server.service.tokens.revoke(revoked_id)
    expired, _ = issue(server, "ann", now=now - 7200, expires_at=now - 1)
    store = server.service.tokens
    elsewhere = store.create("ann", scopes=["spark:read"], resource="http://other.example/mcp").token
    no_scope, no_scope_id = issue(server, "ann", scopes=("spark:write",))
    good, good_id = issue(server, "ann")
    tries = (revoked, expired, elsewhere, no_scope, good[:-1] + "x", "smcp_nonsense", "", "x" * 5000)
    for bad in tries:
        async with console_client(server.base) as client:
            answer = await client.sign_in(bad)
            assert answer.status_code == 401, bad
            assert session_cookie(client.http) is None
            assert (await client.get("/")).status_code == 303
    # Each refusal is audited, as refused. Only the genuine token that lacks a scope names
    # its owner; for the others, the id of the token tried when it had a token's shape.
    logins = records(server, "console.login")
    assert all((r.outcome, r.auth, r.via) == ("error", "token", "console") for r in logins)
    assert [(r.principal, r.token_id, r.error_class) for r in logins] == [
        ("(unknown)", revoked_id, "unauthenticated"),
        ("(unknown)", split_token(expired)[0], "unauthenticated"),  # type: ignore[index]
        ("(unknown)", split_token(elsewhere)[0], "unauthenticated"),  # type: ignore[index]
        ("ann", no_scope_id, "insufficient_scope"),
        ("(unknown)", good_id, "unauthenticated"),  # the right id with a wrong secret
        ("(unknown)", None, "unauthenticated"),
        ("(unknown)", None, "unauthenticated"),
        ("(unknown)", None, "unauthenticated"),
    ]
    logged = server.config.audit_path.read_text()
    secrets = [parts[1] for parts in map(split_token, tries) if parts is not None]
    assert len(secrets) == 5 and not [secret for secret in secrets if secret in logged]  # ids only, never a secret
    assert verify(server.config.audit_path).ok


async def test_a_flood_of_refused_sign_ins_cannot_grow_the_audit_log_without_bound(server: Running) -> None:
    budget = PER_WINDOW
    async with console_client(server.base) as client:
        for _ in range(budget + 5):
            assert (await client.sign_in("smcp_nonsense")).status_code == 401
    logins = records(server, "console.login")
    assert len(logins) == budget  # the rest were refused all the same, and only logged
    assert all((r.principal, r.outcome) == ("(unknown)", "error") for r in logins)
    # The same budget covers everyone: a good sign-in still works and is recorded.
    token, _ = issue(server, "ann")
    async with console_client(server.base) as client:
        assert (await client.sign_in(token)).status_code == 303
    assert records(server, "console.login")[-1].principal == "ann"
    assert verify(server.config.audit_path).ok


async def test_sign_in_forms_need_their_token_and_this_origin(server: Running) -> None:
    token, _ = issue(server, "ann")
    async with console_client(server.base) as client, console_client(server.base) as other:
        form = csrf_of((await client.get("/login")).text)
        their_form = csrf_of((await other.get("/login")).text)
        attempts = [
            ({"token": token}, "own"),  # no CSRF token
            ({"token": token, "csrf": their_form}, "own"),  # another browser's form
            ({"token": token, "csrf": form}, "http://127.0.0.1:1"),  # a page on another port
            ({"token": token, "csrf": form}, "null"),
        ]
        for data, origin in attempts:
            answer = await client.post("/login", data, origin=origin)
            assert answer.status_code == 403, (data, origin)
            assert session_cookie(client.http) is None
        assert (await client.post("/login", {"token": token, "csrf": form})).status_code == 303


# -- CSRF after sign-in ----------------------------------------------------------------


async def test_every_post_needs_this_logins_csrf_token(server: Running, ann: ConsoleClient) -> None:
    bob_token, _ = issue(server, "bob")
    async with console_client(server.base) as bob:
        await bob.sign_in(bob_token)
        bobs_csrf = await bob.csrf()
    store = server.service.tokens
    assert store is not None
    before = len(store.list("ann"))
    good = await ann.csrf()
    refused = [
        ({"name": "t"}, "own"),
        ({"name": "t", "csrf": ""}, "own"),
        ({"name": "t", "csrf": good[:-1]}, "own"),
        ({"name": "t", "csrf": bobs_csrf}, "own"),  # a real token, of another login
        ({"name": "t", "csrf": good, "expires": "30d"}, "http://127.0.0.1:9"),
    ]
    for data, origin in refused:
        answer = await ann.post("/tokens", data, origin=origin)
        assert answer.status_code == 403, (data, origin)
        assert "<script" not in answer.text
    for path in ("/drivers/drv_x/stop", "/sessions/ses_000000000000/close", "/jobs/job_x/cancel", "/logout"):
        assert (await ann.post(path, {})).status_code == 403
    assert len(store.list("ann")) == before
    assert session_cookie(ann.http)  # still signed in: the forgeries changed nothing
    assert (await ann.http.get(ann.url("/tokens/abc/revoke"))).status_code == 405  # state changes are POST only
    assert (await ann.http.get(ann.url("/logout"))).status_code == 405


# -- tokens ------------------------------------------------------------------------------


async def test_a_token_made_in_the_console_works_on_mcp_until_revoked_there(
    server: Running, ann: ConsoleClient
) -> None:
    made = await ann.act("/tokens", "/tokens", name="laptop agent", expires="30d", write="on")
    assert made.status_code == 200
    new_token = made.text.split('id="new-token" readonly value="', 1)[1].split('"', 1)[0]
    assert new_token.startswith("smcp_")
    token_id = new_token.split("_")[1]
    listing = await ann.get("/tokens")
    assert token_id in listing.text and new_token not in listing.text  # shown once, never again
    assert "laptop agent" in listing.text
    async with mcp_client(server.url, new_token, mode="legacy") as agent:
        who = (await agent.call_tool("whoami", {})).structured_content
        assert who is not None and who["principal"] == "ann"
        revoked = await ann.act(f"/tokens/{token_id}/revoke", "/tokens")
        assert revoked.status_code == 303 and revoked.headers["location"] == "/console/tokens"
        with pytest.raises((MCPError, httpx2.HTTPStatusError)):  # the very next call
            await agent.call_tool("whoami", {})
    async with httpx2.AsyncClient() as http:
        probe = await http.post(
            server.url, json=mcp_post_body(), headers={**MCP_HEADERS, "Authorization": f"Bearer {new_token}"}
        )
    assert probe.status_code == 401
    after = await ann.get("/tokens")
    assert f"Token {token_id} is revoked" in after.text
    made_record = records(server, "console.create_token")[-1]
    assert made_record.via == "console" and made_record.outcome == "ok"
    assert made_record.statement is not None and token_id in made_record.statement
    assert records(server, "console.revoke_token")[-1].outcome == "ok"
    assert new_token not in server.config.audit_path.read_text()


async def test_a_token_never_gets_more_than_the_token_that_made_it(server: Running) -> None:
    parent_expires = time.time() + 3600
    read_only, _ = issue(server, "ann", scopes=("spark:read",), expires_at=parent_expires)
    store = server.service.tokens
    assert store is not None
    async with console_client(server.base) as client:
        await client.sign_in(read_only)
        page = await client.get("/tokens")
        assert 'name="write"' not in page.text  # not offered
        forged = await client.act("/tokens", "/tokens", name="more", expires="30d", write="on")
        assert forged.status_code == 400
        assert "cannot make changes" in forged.text
        made = await client.act("/tokens", "/tokens", name="forever", expires="never")
        assert made.status_code == 200 and "expires with the token you signed in with" in made.text
    child = next(r for r in store.list("ann") if r.name == "forever")
    assert child.scopes == ("spark:read",)
    assert child.expires_at == pytest.approx(parent_expires)
    assert [r.name for r in store.list("ann")].count("more") == 0
    assert records(server, "console.create_token")[0].error_class == "invalid_input"


async def test_another_users_token_is_not_found_and_the_attempt_is_audited(server: Running, ann: ConsoleClient) -> None:
    bob_token, bob_token_id = issue(server, "bob")
    theirs = await ann.act(f"/tokens/{bob_token_id}/revoke", "/tokens")
    unknown = await ann.act("/tokens/0123456789ab/revoke", "/tokens")
    assert theirs.status_code == unknown.status_code == 404
    said = theirs.text.replace(bob_token_id, "ID")
    assert said == unknown.text.replace("0123456789ab", "ID")  # not a word more about bob's
    async with mcp_client(server.url, bob_token) as bob:
        assert not (await bob.call_tool("whoami", {})).is_error
    attempt = records(server, "console.revoke_token")[0]
    assert (attempt.principal, attempt.outcome, attempt.error_class, attempt.decision, attempt.rule) == (
        "ann",
        "error",
        "not_found",
        "denied",
        "tokens-are-their-owners",
    )


# -- ending a login ----------------------------------------------------------------------


async def test_revoking_the_sign_in_token_ends_the_login_at_the_next_request(server: Running) -> None:
    token, token_id = issue(server, "ann")
    store = server.service.tokens
    assert store is not None
    async with console_client(server.base) as client:
        await client.sign_in(token)
        assert (await client.get("/")).status_code == 200
        store.revoke(token_id)  # the operator, on the command line
        answer = await client.get("/")
        assert answer.status_code == 303 and answer.headers["location"] == "/console/login"
    app = running_app(server)
    assert app is not None


async def test_revoking_ones_own_sign_in_token_in_the_console_signs_one_out(server: Running) -> None:
    token, token_id = issue(server, "ann")
    async with console_client(server.base) as client:
        await client.sign_in(token)
        answer = await client.act(f"/tokens/{token_id}/revoke", "/tokens")
        assert answer.headers["location"] == "/console/login?ended=revoked"
        assert "you are signed out" in (await client.get("/login?ended=revoked")).text
        assert (await client.get("/")).status_code == 303


async def test_signing_out_ends_the_login_on_the_server(server: Running, ann: ConsoleClient) -> None:
    cookie = session_cookie(ann.http)
    assert cookie
    out = await ann.act("/logout")
    assert out.status_code == 303 and out.headers["location"] == "/console/login?ended=logout"
    assert session_cookie(ann.http) is None  # the browser is told to forget it...
    async with httpx2.AsyncClient(cookies={"smcp_console": cookie}) as replay:
        answer = await replay.get(ann.url("/"))  # ...and a copy kept elsewhere is worthless
    assert answer.status_code == 303
    assert records(server, "console.logout")[-1].principal == "ann"


# -- ids that are not one's own ----------------------------------------------------------


async def test_unknown_ids_are_not_found_and_every_attempt_is_audited(server: Running, ann: ConsoleClient) -> None:
    for path, tool, error in [
        ("/drivers/drv_0000/stop", "console.stop_driver", "not_found"),
        ("/sessions/ses_000000000000/close", "console.close_session", "session_not_found"),
        ("/jobs/job_000000000000/cancel", "console.cancel_job", "job_not_found"),
        ("/jobs/%3Cscript%3E/cancel", "console.cancel_job", "job_not_found"),
    ]:
        answer = await ann.act(path)
        assert answer.status_code == 404, path
        assert "among those you can see" in answer.text
        assert "<script>" not in answer.text
        record = records(server, tool)[-1]
        assert (record.principal, record.via, record.outcome, record.error_class) == ("ann", "console", "error", error)


async def test_when_the_audit_log_fails_console_actions_are_withheld_then_refused(
    server: Running, ann: ConsoleClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = server.service.tokens
    assert store is not None
    csrf = await ann.csrf("/tokens")
    disk = audit_disk(monkeypatch)  # a fault injected: see tests/audit_faults.py
    disk(full=True)
    made = await ann.post("/tokens", {"csrf": csrf, "name": "made", "expires": "1d"})
    # The token was made before its record failed: its secret is withheld, never shown.
    assert made.status_code == 503 and "withheld" in made.text and "smcp_" not in made.text
    refused = await ann.post("/tokens", {"csrf": csrf, "name": "refused", "expires": "1d"})
    assert refused.status_code == 503 and "smcp_" not in refused.text
    disk(full=False)
    # The first action after the disk is back is refused, and that refusal is its first record.
    late = await ann.post("/tokens", {"csrf": csrf, "name": "late", "expires": "1d"})
    assert late.status_code == 503 and "Nothing was done" in late.text
    assert sorted(str(t.name) for t in store.list("ann")) == ["None", "made"]  # the sign-in token, and "made"
    assert [(r.outcome, r.error_class) for r in records(server, "console.create_token")] == [("error", "audit_error")]
    again = await ann.post("/tokens", {"csrf": csrf, "name": "again", "expires": "1d"})
    assert again.status_code in (200, 303) and "again" in [t.name for t in store.list("ann")]
    assert verify(server.config.audit_path).ok


# -- audit records -----------------------------------------------------------------------


async def test_the_audit_page_shows_ones_own_records_or_everyones_with_audit_read(server: Running) -> None:
    tokens = {user: issue(server, user)[0] for user in ("ann", "bob", "root")}
    pages = {}
    for user, token in tokens.items():
        async with console_client(server.base) as client:
            await client.sign_in(token)
            pages[user] = (await client.get("/audit")).text
    assert "<td>bob</td>" not in pages["ann"] and "Your own." in pages["ann"]
    assert "<td>ann</td>" not in pages["bob"]
    assert "<td>ann</td>" in pages["root"] and "<td>bob</td>" in pages["root"]  # admin holds audit.read
    assert "Everyone&#39;s" in pages["root"] or "Everyone's" in pages["root"]


# -- TLS -------------------------------------------------------------------------------


async def test_over_tls_the_login_cookie_is_secure_and_host_prefixed(tmp_path: Path) -> None:
    import ssl

    cert, key = self_signed(tmp_path)
    async with serving(http_config(tmp_path / "home", tls_cert=str(cert), tls_key=str(key))) as running:
        assert running.service.tokens is not None
        https = running.base.replace("http://", "https://")
        token = running.service.tokens.create("ann", scopes=["spark:read"], resource=f"{https}/mcp").token
        client = ConsoleClient(https)
        client.http = httpx2.AsyncClient(verify=ssl.create_default_context(cafile=str(cert)), timeout=60)
        try:
            login_page = await client.get("/login")
            binding = login_page.headers["set-cookie"]
            assert binding.startswith("__Host-smcp_login=") and "Secure" in binding
            answer = await client.post("/login", {"csrf": csrf_of(login_page.text), "token": token})
            assert answer.status_code == 303
            cookie = next(h for h in answer.headers.get_list("set-cookie") if h.startswith("__Host-smcp_console="))
            assert {"secure", "httponly", "samesite=strict", "path=/"} <= {a.strip().lower() for a in cookie.split(";")}
            assert "Signed in as <strong>ann</strong>" in (await client.get("/")).text
        finally:
            await client.aclose()


# -- modes -------------------------------------------------------------------------------


async def test_the_console_can_be_turned_off(tmp_path: Path) -> None:
    config = http_config(tmp_path / "home").model_copy(update={})
    config = config.model_copy(update={"console": config.console.model_copy(update={"enabled": False})})
    async with serving(config) as running, httpx2.AsyncClient() as http:
        answer = await http.get(running.base + "/console/login")
    assert answer.status_code == 404
    assert running.service.console is None


async def test_without_authentication_the_console_serves_only_loopback_and_only_the_servers_user(
    tmp_path: Path,
) -> None:
    exposed = http_config(tmp_path / "a", auth={"mode": "none"}).model_copy(update={})
    exposed = exposed.model_copy(update={"server": exposed.server.model_copy(update={"host": "0.0.0.0"})})
    with pytest.raises(ConfigError, match="without authentication"):
        build_http_app(exposed)
    with pytest.raises(ConfigError, match="loopback"):
        build_console(exposed, app=lambda: None, verifier=None, tokens=None, resource="http://x/mcp")
    local = http_config(tmp_path / "b", auth={"mode": "none"}).model_copy(update={"user": "dana"})
    async with serving(local) as running, console_client(running.base) as client:
        page = await client.get("/login")
        assert "Continue as dana" in page.text
        assert (await client.post("/login", {"csrf": csrf_of(page.text)})).status_code == 303
        assert "Signed in as <strong>dana</strong>" in (await client.get("/")).text
        assert (await client.get("/tokens")).status_code == 404  # no API tokens in this mode
    assert tail(running.config.audit_path, 1)[0].auth == "none"


async def test_behind_a_proxy_the_login_lasts_only_while_the_proxy_vouches(tmp_path: Path) -> None:
    config = http_config(tmp_path / "home", auth={"mode": "proxy", "proxy": {"trusted_proxies": ["127.0.0.1/32"]}})
    async with serving(config) as running, console_client(running.base) as client:
        client.http.headers["X-Forwarded-User"] = "pia"
        page = await client.get("/login")
        assert "Continue as pia" in page.text
        form = csrf_of(page.text)
        assert (await client.post("/login", {"csrf": form})).status_code == 303
        assert "Signed in as <strong>pia</strong>" in (await client.get("/")).text
        client.http.headers["X-Forwarded-User"] = "quinn"  # someone else at the same browser
        assert (await client.get("/")).status_code == 303
        del client.http.headers["X-Forwarded-User"]
        page = await client.get("/login")
        assert "did not name you" in page.text and "csrf" not in page.text  # no form to send
    async with serving(config) as running, console_client(running.base) as client:
        client.http.headers["X-Forwarded-User"] = "pia"
        form = csrf_of((await client.get("/login")).text)
        del client.http.headers["X-Forwarded-User"]  # the form came with the header, the post without
        assert (await client.post("/login", {"csrf": form})).status_code == 401
        refused = tail(running.config.audit_path, 1)[0]
        assert (refused.tool, refused.principal, refused.auth, refused.outcome) == (
            "console.login",
            "(unknown)",
            "proxy",
            "error",
        )
