"""The console in a real browser (Chromium, Debian's package, driven by Playwright) against a
real server with real Spark drivers.

Two users work over MCP first, each on their own driver (the only two drivers this
module starts): nina runs a query and opens a second session, omar runs a query. Then,
in the browser: nina signs in with her token (keyboard only) and sees her driver,
sessions and jobs; a POST without the form's CSRF token changes nothing; omar sees none
of nina's things, and each of her ids he posts is "not found" and audited; nina closes a
session, cancels a running job, makes a token and revokes it (refused at once on
``/mcp``); root, an admin, sees both users and stops omar's driver; nina stops her own
driver and signs out. With ``SPARK_MCP_CONSOLE_SCREENSHOT=docs/console.png`` the run
also saves the picture the README shows.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest

from spark_mcp.app import App
from spark_mcp.audit import AuditRecord, tail
from spark_mcp.config.model import ServerConfig
from spark_mcp.drivers.quotas import gib
from spark_mcp.jobs import JobState
from tests.console_support import chromium
from tests.helpers import LONG_QUERY
from tests.http_support import MCP_HEADERS, Running, mcp_client, mcp_post_body, serving

pytestmark = [pytest.mark.spark, pytest.mark.anyio]


@dataclass
class World:
    server: Running
    app: App
    browser: Any
    tokens: dict[str, str]
    nina_session: str  # her second session (the default one runs her jobs)
    nina_job: str
    omar_session: str
    omar_job: str

    def driver_of(self, user: str) -> str:
        driver = self.app.drivers.current(user)
        assert driver is not None, f"{user} has no running driver"
        return driver.id

    def console(self, path: str = "/") -> str:
        return f"{self.server.base}/console{path}"

    def records(self, principal: str, tool: str) -> list[AuditRecord]:
        return [r for r in tail(self.app.config.audit_path, 1000, principal=principal) if r.tool == tool]


async def mcp(server: Running, token: str, tool: str, **arguments: Any) -> dict[str, Any]:
    async with mcp_client(server.url, token) as client:
        result = await client.call_tool(tool, arguments)
    assert not result.is_error, result.content
    assert result.structured_content is not None
    return result.structured_content


@pytest.fixture(scope="module")
async def world(app: App) -> AsyncIterator[World]:
    config = app.config.model_copy(update={"server": ServerConfig(transport="http", host="127.0.0.1", port=0)})
    async with serving(config, app=app) as server, chromium() as browser:
        store = server.service.tokens
        assert store is not None
        tokens = {
            user: store.create(user, scopes=["spark:read", "spark:write"], resource=server.service.resource).token
            for user in ("nina", "omar", "root")
        }
        nina_job = await mcp(server, tokens["nina"], "run_sql", sql="SELECT 'nina' AS who", wait_s=120)
        nina_session = await mcp(server, tokens["nina"], "create_session")
        omar_job = await mcp(server, tokens["omar"], "run_sql", sql="SELECT 'omar' AS who", wait_s=120)
        yield World(
            server=server,
            app=app,
            browser=browser,
            tokens=tokens,
            nina_session=nina_session["session_id"],
            nina_job=nina_job["job_id"],
            omar_session=omar_job["session_id"],
            omar_job=omar_job["job_id"],
        )


async def signed_in(world: World, user: str) -> Any:
    """A fresh browser context (its own cookies), signed in as ``user`` through the login form."""
    context = await world.browser.new_context(viewport={"width": 1280, "height": 860})
    page = await context.new_page()
    await page.goto(world.console("/"))
    await page.get_by_label("API token").fill(world.tokens[user])
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url(world.console("/"))
    return page


async def text_of(page: Any) -> str:
    return str(await page.locator("main").inner_text())


async def test_signing_in_with_a_token_shows_your_driver_sessions_and_jobs(world: World) -> None:
    context = await world.browser.new_context(viewport={"width": 1280, "height": 860})
    page = await context.new_page()
    await page.goto(world.console("/"))
    assert page.url == world.console("/login")
    # Keyboard only: the token field has focus on arrival; Enter signs in.
    assert await page.evaluate("document.activeElement.id") == "token"
    await page.keyboard.type(world.tokens["nina"])
    await page.keyboard.press("Enter")
    await page.wait_for_url(world.console("/"))
    # The first Tab reaches the skip link, its focus is visible, and it moves focus to the content.
    await page.keyboard.press("Tab")
    assert await page.evaluate("document.activeElement.textContent") == "Skip to content"
    assert await page.evaluate("getComputedStyle(document.activeElement).outlineStyle") == "solid"
    await page.keyboard.press("Enter")
    assert await page.evaluate("document.activeElement.id") == "main"

    shown = await text_of(page)
    driver = world.driver_of("nina")
    for mine in (driver, world.nina_session, world.nina_job):
        assert mine in shown
    for theirs in (world.driver_of("omar"), world.omar_session, world.omar_job, "omar"):
        assert theirs not in shown
    row = page.get_by_role("region", name="Drivers").locator("tbody tr", has_text=driver)
    assert "ready" in await row.inner_text() and "spark" in await row.inner_text()
    assert gib(world.app.drivers.get(driver).memory_bytes) in await row.inner_text()  # type: ignore[union-attr]
    stop = page.get_by_role("button", name=f"Stop driver {driver} of nina")
    assert await stop.is_visible()
    screenshot = os.environ.get("SPARK_MCP_CONSOLE_SCREENSHOT")
    await page.screenshot(path=screenshot or str(Path(world.app.config.home) / "console.png"), full_page=True)
    await context.close()


async def test_a_post_without_the_forms_csrf_token_is_refused_and_changes_nothing(world: World) -> None:
    page = await signed_in(world, "nina")
    driver = world.driver_of("nina")
    # The browser's own cookies, but no token, or another one: what a forged form would send.
    for form in ({}, {"csrf": "forged"}):
        answer = await page.request.post(world.console(f"/drivers/{driver}/stop"), form=form)
        assert answer.status == 403
    answer = await page.request.post(world.console(f"/sessions/{world.nina_session}/close"), form={})
    assert answer.status == 403
    assert world.app.drivers.current("nina") is not None and world.driver_of("nina") == driver
    assert not world.records("nina", "console.stop_driver")
    await page.context.close()


async def test_a_second_user_sees_none_of_the_first_users_things_and_cannot_touch_them(world: World) -> None:
    page = await signed_in(world, "omar")
    shown = await text_of(page)
    assert world.driver_of("omar") in shown and world.omar_job in shown
    nina_driver = world.driver_of("nina")
    for hers in (nina_driver, world.nina_session, world.nina_job, "nina"):
        assert hers not in shown
    await page.goto(world.console("/audit"))
    assert "nina" not in await text_of(page)  # not even her records
    csrf = await page.locator('input[name="csrf"]').first.get_attribute("value")
    said: list[str] = []
    for path, kind, ident in [
        (f"/drivers/{nina_driver}/stop", "driver", nina_driver),
        (f"/sessions/{world.nina_session}/close", "session", world.nina_session),
        (f"/jobs/{world.nina_job}/cancel", "job", world.nina_job),
    ]:
        answer = await page.request.post(world.console(path), form={"csrf": csrf})
        assert answer.status == 404
        body = await answer.text()
        assert f"There is no {kind} {ident} among those you can see" in body
        said.append(body.replace(ident, "ID"))
        unknown = await page.request.post(
            world.console(path.replace(ident, ident[:4] + "000000000000")), form={"csrf": csrf}
        )
        assert unknown.status == 404  # an id that exists nowhere gets the same answer
    assert world.driver_of("nina") == nina_driver  # untouched
    for tool, error in [("console.stop_driver", "not_found"), ("console.close_session", "session_not_found"),
                        ("console.cancel_job", "job_not_found")]:  # fmt: skip
        tried = [r for r in world.records("omar", tool) if r.decision == "denied"]
        assert len(tried) == 1, tool
        assert (tried[0].outcome, tried[0].error_class, tried[0].via, tried[0].rule) == (
            "error",
            error,
            "console",
            "default-deny",
        )
    await page.context.close()


async def test_closing_a_session_and_cancelling_a_job(world: World) -> None:
    started = await mcp(world.server, world.tokens["nina"], "run_sql", sql=LONG_QUERY, wait_s=0)
    job_id = started["job_id"]
    page = await signed_in(world, "nina")
    await page.get_by_role("button", name=f"Close session {world.nina_session} of nina").click()
    await page.wait_for_url(world.console("/"))
    assert f"Session {world.nina_session} is closed." in await page.get_by_role("status").inner_text()
    listed = await mcp(world.server, world.tokens["nina"], "list_sessions")
    assert world.nina_session not in {s["session_id"] for s in listed["sessions"] if s["state"] == "open"}

    await page.get_by_role("button", name=f"Cancel job {job_id} of nina").click()
    await page.wait_for_url(world.console("/"))
    job = world.app.jobs.get("nina", job_id)
    with anyio.fail_after(120):
        while not job.state.terminal:
            await anyio.sleep(0.2)
    assert job.state is JobState.CANCELLED
    for tool in ("console.close_session", "console.cancel_job"):
        done = world.records("nina", tool)[-1]
        assert (done.outcome, done.via, done.rule) == ("ok", "console", "owner")
    assert world.records("nina", "console.cancel_job")[-1].job_id == job_id
    await page.context.close()


async def test_making_and_revoking_a_token_in_the_browser(world: World) -> None:
    page = await signed_in(world, "nina")
    await page.get_by_role("link", name="API tokens").click()
    await page.get_by_label("Name").fill("browser-made")
    await page.get_by_label("Expires in").select_option("7d")
    await page.get_by_label("May make changes").check()
    await page.get_by_role("button", name="Make token").click()
    new_token = await page.get_by_label("New token").input_value()
    assert new_token.startswith("smcp_")
    token_id = new_token.split("_")[1]
    who = await mcp(world.server, new_token, "whoami")
    assert who["principal"] == "nina"

    await page.goto(world.console("/tokens"))
    assert new_token not in await page.content()  # shown once
    await page.get_by_role("button", name="Revoke token browser-made").click()
    await page.wait_for_url(world.console("/tokens"))
    async with httpx2.AsyncClient() as http:  # refused at once on /mcp
        probe = await http.post(
            world.server.url, json=mcp_post_body(), headers={**MCP_HEADERS, "Authorization": f"Bearer {new_token}"}
        )
    assert probe.status_code == 401
    row = page.locator("tbody tr", has_text=token_id)
    assert "revoked" in await row.inner_text()
    await page.context.close()


async def test_an_admin_sees_everyones_and_can_stop_anyones_driver(world: World) -> None:
    page = await signed_in(world, "root")
    shown = await text_of(page)
    nina_driver, omar_driver = world.driver_of("nina"), world.driver_of("omar")
    assert "everyone's" in shown
    for theirs in (nina_driver, omar_driver, world.omar_session, world.omar_job, world.nina_job):
        assert theirs in shown
    await page.goto(world.console("/audit"))
    audit = await text_of(page)
    assert "omar" in audit and "nina" in audit and "console.stop_driver" in audit  # omar's attempts too
    await page.goto(world.console("/"))
    await page.get_by_role("button", name=f"Stop driver {omar_driver} of omar").click()
    await page.wait_for_url(world.console("/"))
    assert f"Driver {omar_driver} is stopped." in await page.get_by_role("status").inner_text()
    assert world.app.drivers.current("omar") is None
    assert world.app.drivers.current("nina") is not None
    ended = await page.get_by_role("region", name="Ended lately").inner_text()
    assert omar_driver in ended and "omar" in ended and "stopped in the web console by root" in ended, ended
    theirs = await signed_in(world, "nina")  # why omar's driver ended is omar's (and an admin's) to see
    assert omar_driver not in await text_of(theirs)
    await theirs.context.close()
    stopped = world.records("root", "console.stop_driver")[-1]
    assert (stopped.outcome, stopped.decision, stopped.rule) == ("ok", "allowed", "roles.admin.actions")
    await page.context.close()


async def test_stopping_your_driver_and_signing_out(world: World) -> None:
    page = await signed_in(world, "nina")
    driver = world.driver_of("nina")
    await page.get_by_role("button", name=f"Stop driver {driver} of nina").click()
    await page.wait_for_url(world.console("/"))
    assert f"Driver {driver} is stopped." in await page.get_by_role("status").inner_text()
    assert world.app.drivers.get(driver) is None
    assert driver not in await page.get_by_role("region", name="Drivers").inner_text()
    # Below the running ones, why hers ended: what her sessions and notebooks were told.
    ended = await page.get_by_role("region", name="Ended lately").inner_text()
    assert driver in ended and "stopped in the web console by nina" in ended, ended
    stopped = world.records("nina", "console.stop_driver")[-1]
    assert (stopped.outcome, stopped.via, stopped.rule, stopped.auth) == ("ok", "console", "owner", "token")

    await page.get_by_role("button", name="Sign out").click()
    await page.wait_for_url(world.console("/login?ended=logout"))
    assert "You are signed out." in await text_of(page)
    await page.goto(world.console("/"))
    assert page.url == world.console("/login")
    assert world.records("nina", "console.logout")[-1].outcome == "ok"
    await page.context.close()
