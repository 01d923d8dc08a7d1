"""Pages from Jinja2 templates, and the one stylesheet.

Templates are compiled once, with autoescaping on for everything (every value a page
shows came from someone: user names, token names, SQL), and undefined names are errors
rather than empty strings. The stylesheet is read once and served from memory under a
name with its content hash, so browsers may cache it for good.
"""

from __future__ import annotations

import hashlib
import time
from datetime import UTC, datetime
from importlib import resources
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from starlette.requests import Request
from starlette.responses import Response

CSS_NAME = "console.css"


def stylesheet() -> tuple[bytes, str]:
    """The stylesheet and its cache-busting file name (``console.<hash>.css``)."""
    data = resources.files("spark_mcp.console").joinpath("static", CSS_NAME).read_bytes()
    return data, f"console.{hashlib.sha256(data).hexdigest()[:12]}.css"


def css_endpoint(data: bytes) -> Any:
    async def css(request: Request) -> Response:
        return Response(
            data,
            media_type="text/css",
            headers={"Cache-Control": "public, max-age=31536000, immutable", "X-Content-Type-Options": "nosniff"},
        )

    return css


def iso(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def duration(seconds: float) -> str:
    """``42 s``, ``5 min``, ``3 h 20 min``, ``2 d 4 h``: as long as a glance needs."""
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def since(ts: float | None) -> str:
    return "-" if ts is None else duration(time.time() - ts)


class Templates:
    def __init__(self, *, base: str, static_url: str) -> None:
        self._env = Environment(
            loader=PackageLoader("spark_mcp.console", "templates"),
            autoescape=select_autoescape(default=True, default_for_string=True),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self._env.filters.update(iso=iso, duration=duration, since=since)
        self._env.globals.update(base=base, css_url=static_url)

    def render(self, name: str, **context: Any) -> str:
        return self._env.get_template(name).render(**context)
