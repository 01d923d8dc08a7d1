"""Tools about the caller and their Spark sessions."""

from __future__ import annotations

from typing import Annotated, Literal

from mcp.server import MCPServer
from mcp.server.mcpserver import Context
from mcp.types import CallToolResult
from pydantic import Field

from spark_mcp.calls import note
from spark_mcp.drivers.environment import spark_version
from spark_mcp.sessions import Session
from spark_mcp.tools._base import app_of, caller, guarded, hints, iso, reply
from spark_mcp.tools.models import LimitsOut, SessionInfo, SessionList, WhoAmI


def session_info(session: Session) -> SessionInfo:
    return SessionInfo(
        session_id=session.id,
        state=session.state.value,
        default=session.default,
        driver_id=session.driver.id,
        engine=session.driver.engine,
        created_at=iso(session.created_at),
        last_used_at=iso(session.last_used),
        note=session.why_closed,
    )


def register(server: MCPServer) -> None:
    @server.tool(
        title="Who am I",
        annotations=hints(read_only=True, idempotent=True),
    )
    @guarded
    async def whoami(ctx: Context) -> Annotated[CallToolResult, WhoAmI]:
        """Who you are to spark-mcp: your roles, the actions and tables your policy allows, your limits.

        Call this first to learn what you can do.
        """
        app, principal = app_of(ctx), caller()
        grants = app.policy.grants_for(principal)
        limits = app.governance.limits(principal)
        who = WhoAmI(
            principal=principal.id,
            roles=list(grants.roles),
            actions=list(grants.actions),
            read=list(grants.read),
            write=list(grants.write),
            deny=list(grants.deny),
            limits=LimitsOut(
                max_rows=limits.max_rows,
                max_chars=limits.max_chars,
                query_timeout_s=limits.query_timeout_s,
                max_sessions=limits.max_sessions,
            ),
            spark_version=spark_version(),
            driver_backend=app.config.driver.backend,
        )
        text = (
            f"You are {who.principal} (roles: {', '.join(who.roles) or 'none'}).\n"
            f"May: {', '.join(who.actions) or 'nothing'}.\n"
            f"Read: {', '.join(who.read) or '-'}; write: {', '.join(who.write) or '-'}; "
            f"deny: {', '.join(who.deny) or '-'}.\n"
            f"Limits: {limits.max_rows} rows and {limits.max_chars:,} characters per reply, "
            f"{limits.query_timeout_s:g} s per statement, {limits.max_sessions} sessions. Spark {who.spark_version}."
        )
        return reply(who, text)

    @server.tool(
        title="Create session",
        annotations=hints(read_only=False),
    )
    @guarded
    async def create_session(
        ctx: Context,
        engine: Annotated[
            Literal["spark", "sail"] | None,
            Field(
                description="the execution engine: spark (a JVM driver) or sail (pysail, fast start, partial "
                "Spark SQL coverage); default: the server's driver.engine"
            ),
        ] = None,
    ) -> Annotated[CallToolResult, SessionInfo]:
        """Start a new, isolated Spark session (its own temp views and settings).

        You rarely need this: every tool uses your default session when you pass no
        `session_id`. Create extra sessions to keep independent work apart. The first
        session may take several seconds while a Spark driver starts.
        """
        app, principal = app_of(ctx), caller()
        session = await app.executor.create_session(principal, engine)
        note(session_id=session.id)
        return reply(
            session_info(session),
            f"Session {session.id} is open on {session.driver.engine} driver {session.driver.id}.",
        )

    @server.tool(
        title="List sessions",
        annotations=hints(read_only=True, idempotent=True),
    )
    @guarded
    async def list_sessions(ctx: Context) -> Annotated[CallToolResult, SessionList]:
        """Your Spark sessions with their state (open, or lost if their driver stopped)."""
        app, principal = app_of(ctx), caller()
        listed = SessionList(sessions=[session_info(s) for s in app.sessions.list_for(principal.id)])
        lines = [
            f"{s.session_id} {s.state}{' (default)' if s.default else ''}, last used {s.last_used_at}"
            + (f": {s.note}" if s.note else "")
            for s in listed.sessions
        ]
        return reply(listed, "\n".join(lines) or "No sessions yet: the first query creates your default session.")

    @server.tool(
        title="Close session",
        annotations=hints(read_only=False, destructive=True),
    )
    @guarded
    async def close_session(
        ctx: Context, session_id: Annotated[str, Field(description="the session to close")]
    ) -> Annotated[CallToolResult, SessionInfo]:
        """Close one of your sessions and release it in Spark (its temp views are dropped)."""
        app, principal = app_of(ctx), caller()
        note(session_id=session_id)
        session = await app.sessions.close(principal.id, session_id)
        return reply(session_info(session), f"Session {session.id} is closed; its temp views are gone.")
