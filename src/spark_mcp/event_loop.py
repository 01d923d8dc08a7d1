"""The event loop ``serve`` runs on: ``[server] event_loop``.

``auto`` (the default) is uvloop where it is installed (a dependency everywhere but
Windows), else asyncio's own loop; ``uvloop`` insists on it; ``asyncio`` is the escape
hatch. uvloop's wake-ups are cheaper: the gateway spends about a tenth less CPU per
streamed result chunk on it (``benchmarks/gateway.py``), and the MCP transports share the
same loop.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio

from spark_mcp.config.server import EventLoop
from spark_mcp.errors import ConfigError

T = TypeVar("T")


def uses_uvloop(choice: EventLoop) -> bool:
    installed = importlib.util.find_spec("uvloop") is not None
    if choice == "uvloop" and not installed:
        raise ConfigError("server.event_loop is uvloop, but uvloop is not installed: install it, or choose auto")
    return choice != "asyncio" and installed


def loop_name(choice: EventLoop) -> str:
    return "uvloop" if uses_uvloop(choice) else "asyncio"


def run(choice: EventLoop, func: Callable[..., Awaitable[T]], *args: Any) -> T:
    """``anyio.run(func, *args)`` on the chosen loop."""
    return anyio.run(func, *args, backend_options={"use_uvloop": uses_uvloop(choice)})
