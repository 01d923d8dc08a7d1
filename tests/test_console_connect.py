"""The console's Spark Connect page: a connection string for one's own driver, and a fresh token for it.

Over real HTTP (uvicorn, the real ``App``, API tokens in its state database): the page with
the gateway off and on (its bound port when ``[gateway] port = 0``), never a real token on
a GET, the button's CSRF and its limits (no more scopes nor a later expiry than the login's),
and what OIDC, a trusted proxy and no authentication say instead of a button. Then, with a
real gateway and a real Spark driver (alice's, shared with the rest of the suite): the minted
string works in PySpark's own Spark Connect client, the token is listed and revoking it
stops the very next call, and the mint's audit record; and once in Chromium, clicking the
button and using the string it shows.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from pyspark.sql.connect.client.retries import DefaultPolicy
from pyspark.sql.connect.session import SparkSession

from spark_mcp.app import App
from spark_mcp.audit import AuditRecord, tail
from spark_mcp.config import Config, GatewayConfig
from spark_mcp.config.model import ServerConfig
from spark_mcp.http.serve import gateway_beside
from tests.console_support import ConsoleClient, chromium, console_client, csrf_of
from tests.gateway_support import RETRIES, failure, off_loop, status_of
from tests.http_support import Running, http_config, serving
from tests.oidc_provider import provider_serving
from tests.test_console_oidc import oidc_config, sign_in

pytestmark = pytest.mark.anyio

SMCP_TOKEN = re.compile(r"smcp_[0-9a-f]{12}_[A-Za-z0-9_-]{20,}")
NEW_URL = re.compile(r'id="new-url" readonly value="([^"]+)"')


def with_gateway(config: Config, port: int = 0) -> Config:
    return config.model_copy(update={"gateway": GatewayConfig(port=port)})


def issue(running: Running, user: str, scopes: tuple[str, ...] = ("spark:read", "spark:write"), **kw: Any) -> str:
    store = running.service.tokens
    assert store is not None
    return store.create(user, scopes=list(scopes), resource=running.service.resource, **kw).token


def records(config: Config, tool: str) -> list[AuditRecord]:
    return [r for r in tail(config.audit_path, 1000) if r.tool == tool]


def shown_url(page: str) -> str:
    found = NEW_URL.search(page)
    assert found, "the page shows no new connection string"
    return found.group(1)


@pytest.fixture
async def gateway_on(tmp_path: Path) -> AsyncIterator[Running]:
    """A server whose gateway binds any free port (no Spark: nothing here connects to a driver)."""
    async with (
        serving(with_gateway(http_config(tmp_path / "home"))) as running,
        gateway_beside(running.config, running.service),
    ):
        yield running


async def signed_in(running: Running, token: str) -> ConsoleClient:
    client = ConsoleClient(running.base)
    assert (await client.sign_in(token)).status_code == 303
    return client


# -- the page ----------------------------------------------------------------------------


async def test_with_the_gateway_off_the_page_says_how_to_turn_it_on_and_makes_no_token(tmp_path: Path) -> None:
    async with serving(http_config(tmp_path / "home")) as running:
        client = await signed_in(running, issue(running, "alice"))
        try:
            page = await client.get("/connect")
            assert page.status_code == 200
            assert 'aria-current="page">Spark Connect</a>' in page.text  # in the nav
            assert "The gateway is off" in page.text and "[gateway] port = 15002" in page.text
            assert "sc://" not in page.text and 'action="/console/connect"' not in page.text
            answer = await client.act("/connect", "/connect", expires="7d")
            assert answer.status_code == 404 and "gateway is off" in answer.text
        finally:
            await client.aclose()
        assert running.service.tokens is not None
        assert len(running.service.tokens.list("alice")) == 1  # only the sign-in token


async def test_with_the_gateway_on_the_page_shows_the_bound_port_and_a_placeholder_never_a_token(
    gateway_on: Running,
) -> None:
    console = gateway_on.service.console
    assert console is not None and console.console.gateway_port  # told by gateway_beside
    port = console.console.gateway_port
    token = issue(gateway_on, "alice")
    async with console_client(gateway_on.base) as client:
        await client.sign_in(token)
        made = await client.act("/tokens", "/tokens", name="agent", expires="1d")  # a token exists to leak
        assert made.status_code == 200
        page = await client.get("/connect")
    assert page.status_code == 200
    assert f'value="sc://localhost:{port}/;token=YOUR_API_TOKEN"' in page.text
    assert f'remote("sc://localhost:{port}/;token=YOUR_API_TOKEN").create()' in page.text
    assert "Your own Spark driver of your default profile, <code>default</code>" in page.text
    assert "none runs now; it starts with your first call" in page.text
    assert not SMCP_TOKEN.search(page.text) and token not in page.text  # no credential on a GET page
    assert 'action="/console/connect"' in page.text and 'name="write"' in page.text


async def test_someone_the_gateway_refuses_is_told_why_and_gets_no_button(gateway_on: Running) -> None:
    client = await signed_in(gateway_on, issue(gateway_on, "carol"))  # catalog_only: no session.create
    try:
        page = await client.get("/connect")
        assert "The gateway refuses your calls" in page.text and "session.create" in page.text
        assert 'action="/console/connect"' not in page.text
        forced = await client.act("/connect", "/connect", expires="7d")
        assert forced.status_code == 403
    finally:
        await client.aclose()
    assert gateway_on.service.tokens is not None
    assert len(gateway_on.service.tokens.list("carol")) == 1  # nothing made
    refused = records(gateway_on.config, "console.create_token")[-1]
    said = (refused.principal, refused.outcome, refused.decision, refused.via)
    assert said == ("carol", "error", "denied", "console")


# -- the button ----------------------------------------------------------------------------


async def test_the_button_needs_this_logins_csrf_token_and_this_origin(gateway_on: Running) -> None:
    client = await signed_in(gateway_on, issue(gateway_on, "alice"))
    try:
        good = await client.csrf("/connect")
        for data, origin in [
            ({"expires": "7d"}, "own"),
            ({"expires": "7d", "csrf": good[:-1]}, "own"),
            ({"expires": "7d", "csrf": good}, "http://127.0.0.1:9"),
            ({"expires": "7d", "csrf": good}, "null"),
        ]:
            answer = await client.post("/connect", data, origin=origin)
            assert answer.status_code == 403, (data, origin)
            assert not SMCP_TOKEN.search(answer.text)
        looked = await client.http.get(client.url("/connect"), params={"expires": "7d"})
        assert looked.status_code == 200 and not SMCP_TOKEN.search(looked.text)  # a GET makes nothing
    finally:
        await client.aclose()
    assert gateway_on.service.tokens is not None
    assert len(gateway_on.service.tokens.list("alice")) == 1
    assert not records(gateway_on.config, "console.create_token")


async def test_a_token_from_the_button_never_gets_more_than_the_login_has(gateway_on: Running) -> None:
    parent_expires = time.time() + 3600
    client = await signed_in(gateway_on, issue(gateway_on, "alice", ("spark:read",), expires_at=parent_expires))
    try:
        page = await client.get("/connect")
        assert 'name="write"' not in page.text  # not offered
        forged = await client.act("/connect", "/connect", expires="30d", write="on")
        assert forged.status_code == 400 and "cannot make changes" in forged.text
        unknown = await client.act("/connect", "/connect", expires="10y")
        assert unknown.status_code == 400
        made = await client.act("/connect", "/connect", expires="never")
        assert made.status_code == 200 and "expires with the token you signed in with" in made.text
        url = shown_url(made.text)
    finally:
        await client.aclose()
    store = gateway_on.service.tokens
    assert store is not None
    child = next(r for r in store.list("alice") if r.name and r.name.startswith("spark-connect "))
    assert child.scopes == ("spark:read",) and child.expires_at == pytest.approx(parent_expires)
    assert f";token=smcp_{child.id}_" in url
    assert [r.error_class for r in records(gateway_on.config, "console.create_token")] == [
        "invalid_input",
        "invalid_input",
        None,
    ]


# -- other ways of signing in --------------------------------------------------------------


async def test_under_oidc_the_token_is_ones_own_jwt_and_there_is_no_button(tmp_path: Path) -> None:
    user = {"sub": "u-7", "preferred_username": "olga", "groups": ["analyst"]}
    async with provider_serving(user=user) as provider:
        config = with_gateway(oidc_config(tmp_path / "home", provider), 15002)  # configured, not started
        async with serving(config) as running, console_client(running.base) as client:
            await sign_in(client)
            page = await client.get("/connect")
            assert 'value="sc://localhost:15002/;token=YOUR_OIDC_ACCESS_TOKEN"' in page.text
            assert "access token (a JWT) from your identity provider" in page.text
            assert 'action="/console/connect"' not in page.text
            forced = await client.post("/connect", {"csrf": csrf_of(page.text), "expires": "7d"})
            assert forced.status_code == 404


async def test_behind_a_proxy_and_without_authentication_the_string_carries_no_token(tmp_path: Path) -> None:
    proxy = http_config(tmp_path / "a", auth={"mode": "proxy", "proxy": {"trusted_proxies": ["127.0.0.1/32"]}})
    async with serving(with_gateway(proxy, 15002)) as running, console_client(running.base) as client:
        client.http.headers["X-Forwarded-User"] = "alice"
        assert (await client.post("/login", {"csrf": csrf_of((await client.get("/login")).text)})).status_code == 303
        page = await client.get("/connect")
        assert 'value="sc://localhost:15002/"' in page.text and "proxy in front of this server" in page.text
        assert 'action="/console/connect"' not in page.text
    none = http_config(tmp_path / "b", auth={"mode": "none"}).model_copy(update={"user": "alice"})
    async with serving(with_gateway(none, 15002)) as running, console_client(running.base) as client:
        assert (await client.post("/login", {"csrf": csrf_of((await client.get("/login")).text)})).status_code == 303
        page = await client.get("/connect")
        assert 'value="sc://localhost:15002/"' in page.text and "No token" in page.text
        assert 'action="/console/connect"' not in page.text


# -- end to end: a real gateway, a real driver, PySpark's client -----------------------------


@dataclass
class Served:
    running: Running
    port: int
    app: App


@pytest.fixture(scope="module")
async def served(app: App) -> AsyncIterator[Served]:
    """The suite's shared ``App`` over HTTP, with its gateway on a free port: alice's calls go to her driver."""
    config = app.config.model_copy(
        update={"server": ServerConfig(transport="http", host="127.0.0.1", port=0), "gateway": GatewayConfig(port=0)}
    )
    async with serving(config, app=app) as running, gateway_beside(running.config, running.service) as gateway:
        yield Served(running, gateway.port, app)


def spark_for(url: str) -> SparkSession:
    """PySpark's own client on the string the console showed (blocking: call it off the loop)."""
    spark = SparkSession.builder.remote(url).create()
    spark.client.set_retry_policies([DefaultPolicy(**RETRIES)])  # type: ignore[arg-type]
    return spark


@pytest.mark.spark
async def test_the_minted_string_works_in_pyspark_until_its_token_is_revoked(served: Served) -> None:
    running = served.running
    parent = issue(running, "alice")
    parent_id = parent.split("_")[1]
    client = await signed_in(running, parent)
    try:
        made = await client.act("/connect", "/connect", expires="1d", write="on")
        assert made.status_code == 200
        url = shown_url(made.text)
        assert url.startswith(f"sc://localhost:{served.port}/;token=smcp_")
        new_token = url.split(";token=", 1)[1]
        token_id = new_token.split("_")[1]

        spark = await off_loop(lambda: spark_for(url))
        assert await off_loop(lambda: spark.sql("select 1").collect()[0][0]) == 1
        route = await client.get("/connect")  # the page now names the driver the string reached
        driver = served.app.drivers.current("alice")
        assert driver is not None and f"<code>{driver.id}</code>" in route.text
        assert new_token not in route.text  # shown once

        listing = await client.get("/tokens")
        assert token_id in listing.text and "spark-connect " in listing.text and new_token not in listing.text
        revoked = await client.act(f"/tokens/{token_id}/revoke", "/tokens")
        assert revoked.status_code == 303
        exc = await off_loop(lambda: failure(lambda: spark.sql("select 1").collect()))
        assert status_of(exc) is grpc.StatusCode.UNAUTHENTICATED  # the very next call
        await off_loop(spark.client.close)
    finally:
        await client.aclose()
    mint = next(r for r in records(running.config, "console.create_token") if r.statement and token_id in r.statement)
    assert (mint.principal, mint.via, mint.auth, mint.token_id, mint.outcome) == (
        "alice",
        "console",
        "token",
        parent_id,
        "ok",
    )
    store = running.service.tokens
    assert store is not None and mint.statement is not None
    expires_at = store.get(token_id).expires_at
    assert expires_at is not None
    scopes = "spark:read spark:write"
    assert mint.statement == f"create token {token_id} for Spark Connect ({scopes}, expires {int(expires_at)})"
    assert new_token not in running.config.audit_path.read_text()


@pytest.mark.spark
async def test_clicking_the_button_in_a_browser_shows_a_string_that_connects(served: Served) -> None:
    running = served.running
    async with chromium() as browser:
        context = await browser.new_context(viewport={"width": 1280, "height": 860})
        page = await context.new_page()
        await page.goto(f"{running.base}/console/login")
        await page.get_by_label("API token").fill(issue(running, "alice"))
        await page.get_by_role("button", name="Sign in").click()
        await page.wait_for_url(f"{running.base}/console/")
        await page.get_by_role("link", name="Spark Connect").click()
        placeholder = await page.get_by_label("Connection string (put your token").input_value()
        assert placeholder == f"sc://localhost:{served.port}/;token=YOUR_API_TOKEN"
        await page.get_by_label("Expires in").select_option("1d")
        await page.get_by_role("button", name="Make a token and show the connection string").click()
        await page.wait_for_url(f"{running.base}/console/connect")
        url = await page.get_by_label("Connection string with token").input_value()
        assert url.startswith(f"sc://localhost:{served.port}/;token=smcp_")
        assert "shown only this once" in await page.get_by_role("status").inner_text()
        await page.goto(f"{running.base}/console/connect")  # the page again: the string is gone
        assert url.split(";token=")[1] not in await page.content()
        await context.close()
    spark = await off_loop(lambda: spark_for(url))
    try:
        assert await off_loop(lambda: spark.sql("select 1").collect()[0][0]) == 1
    finally:
        await off_loop(spark.client.close)
