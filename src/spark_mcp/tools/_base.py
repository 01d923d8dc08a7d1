"""What every tool shares: the app and caller of the request, and one error boundary.

``guarded`` is the only place where spark-mcp's errors become ``ToolError`` (the text the
model reads): ``<code>: <message>``, or ``<SPARK_ERROR_CLASS>: <message>`` for Spark's own
errors. Anything unexpected is logged with its traceback on stderr and reported to the
model as an internal error, without internals.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import ParamSpec, TypeVar

import structlog
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import CallToolResult, TextContent, ToolAnnotations
from pydantic import BaseModel

from spark_mcp.app import App
from spark_mcp.calls import note
from spark_mcp.errors import PolicyDenied, SparkError, SparkMcpError
from spark_mcp.identity import Principal, current_principal

log = structlog.get_logger(__name__)

P = ParamSpec("P")
R = TypeVar("R")


@dataclass
class ServerState:
    """The lifespan context every tool receives."""

    app: App


def app_of(ctx: Context) -> App:
    state = ctx.request_context.lifespan_context
    assert isinstance(state, ServerState)
    return state.app


def caller() -> Principal:
    return current_principal()


def error_text(exc: SparkMcpError) -> str:
    if isinstance(exc, SparkError):
        return f"{exc.error_class}: {exc.message}"
    if isinstance(exc, PolicyDenied):
        return f"{exc.code}: {exc.message} [rule: {exc.rule}]"
    return f"{exc.code}: {exc.message}"


def error_class(exc: SparkMcpError) -> str:
    return exc.error_class if isinstance(exc, SparkError) else exc.code


def guarded(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """Turn spark-mcp errors into ``ToolError`` and record their class for the audit log."""

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await fn(*args, **kwargs)
        except ToolError:
            raise
        except SparkMcpError as exc:
            note(error_class=error_class(exc), error_code=exc.code)
            raise ToolError(error_text(exc)) from None
        except Exception as exc:
            log.exception("tool.crashed", tool=fn.__name__)
            note(error_class="internal_error", error_code="internal_error")
            raise ToolError(
                f"internal_error: {type(exc).__name__} in {fn.__name__}; the server logged the details. "
                "Retry, or report it if it persists."
            ) from None

    return wrapper


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def clamp_rows(app: App, requested: int | None, cap: int, notes: list[str]) -> int:
    """Rows for one reply: the caller's ask (else the server default), never above the cap."""
    requested = app.config.limits.default_max_rows if requested is None else requested
    if requested > cap:
        notes.append(f"max_rows lowered from {requested} to {cap}, the most one reply may carry for your role")
        return cap
    return requested


def reply(model: BaseModel, text: str) -> CallToolResult:
    """A reply whose text is written for a reader with a small context, not pretty-printed JSON."""
    return CallToolResult(
        content=[TextContent(type="text", text=text)], structured_content=model.model_dump(mode="json")
    )


def hints(*, read_only: bool, destructive: bool = False, idempotent: bool = False) -> ToolAnnotations:
    """Honest tool annotations; no tool reaches outside the data Spark is configured with.

    The spec gives destructive and idempotent meaning only for tools that are not read-only,
    so a read-only tool leaves them out (they are sent in every conversation).
    """
    if read_only:
        return ToolAnnotations(read_only_hint=True, open_world_hint=False)
    return ToolAnnotations(
        read_only_hint=False, destructive_hint=destructive, idempotent_hint=idempotent, open_world_hint=False
    )
