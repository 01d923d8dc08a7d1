"""Helpers for the console tests: a cookie-keeping HTTP client that fills forms, and Chromium.

``ConsoleClient`` speaks to ``/console`` the way a browser without script would: it keeps
cookies, reads each form's CSRF token from the page, and posts forms with the page's
own ``Origin``. The browser tests drive Debian's ``chromium`` through Playwright; it must
be installed (``.ci/run`` installs it): without it they fail, they never skip.
"""

from __future__ import annotations

import html
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx2

CHROMIUM = Path("/usr/bin/chromium")
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_of(page: str) -> str:
    found = _CSRF.search(page)
    assert found, "the page has no form with a CSRF token"
    return html.unescape(found.group(1))


def session_cookie(client: httpx2.AsyncClient) -> str | None:
    return client.cookies.get("smcp_console")


class ConsoleClient:
    def __init__(self, base: str) -> None:
        self.base = base  # the server's origin, e.g. http://127.0.0.1:PORT
        self.http = httpx2.AsyncClient(timeout=120, follow_redirects=False)

    def url(self, path: str) -> str:
        return f"{self.base}/console{path}"

    async def get(self, path: str) -> httpx2.Response:
        return await self.http.get(self.url(path))

    async def post(self, path: str, data: dict[str, Any], *, origin: str | None = "own") -> httpx2.Response:
        headers = {} if origin is None else {"Origin": self.base if origin == "own" else origin}
        return await self.http.post(self.url(path), data=data, headers=headers)

    async def sign_in(self, token: str) -> httpx2.Response:
        page = await self.get("/login")
        assert page.status_code == 200, page.text
        return await self.post("/login", {"csrf": csrf_of(page.text), "token": token})

    async def csrf(self, path: str = "/") -> str:
        page = await self.get(path)
        assert page.status_code == 200, (page.status_code, page.headers.get("location"))
        return csrf_of(page.text)

    async def act(self, path: str, page: str = "/", **fields: Any) -> httpx2.Response:
        """Post one of a page's forms, with that page's CSRF token."""
        return await self.post(path, {"csrf": await self.csrf(page), **fields})

    async def aclose(self) -> None:
        await self.http.aclose()


@asynccontextmanager
async def console_client(base: str) -> AsyncIterator[ConsoleClient]:
    client = ConsoleClient(base)
    try:
        yield client
    finally:
        await client.aclose()


@asynccontextmanager
async def chromium() -> AsyncIterator[Any]:
    """A headless Chromium (Debian's package) under Playwright; fails when it is missing."""
    from playwright.async_api import async_playwright

    assert CHROMIUM.exists(), f"{CHROMIUM} is missing: apt-get install chromium (.ci/run does)"
    async with async_playwright() as playwright:
        # --no-sandbox: the sandbox cannot start as root, which is how the tests run here.
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            yield browser
        finally:
            await browser.close()
