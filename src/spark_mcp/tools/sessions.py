"""Tools about the caller and their Spark sessions."""

from __future__ import annotations

from typing import Annotated, Literal

from mcp.server import MCPServer
from mcp.server.mcpserver import Context
from mcp.types import CallToolResult
from pydantic import Field

from spark_mcp.app import App
from spark_mcp.calls import note
from spark_mcp.drivers.environment import spark_version
from spark_mcp.drivers.quotas import gib
from spark_mcp.identity import Principal
from spark_mcp.policy.profiles import allowed_profiles, decide_profile
from spark_mcp.sessions import Session
from spark_mcp.state.sessions import SessionRow
from spark_mcp.tools._base import app_of, caller, guarded, hints, iso, reply
from spark_mcp.tools.models import LimitsOut, ProfileOut, QuotasOut, SessionInfo, SessionList, WhoAmI


def _seconds(value: float) -> str:
    return "never" if value == 0 else f"{value:g} s"


def session_info(session: Session | SessionRow) -> SessionInfo:
    if isinstance(session, SessionRow):  # lost when the server restarted
        return SessionInfo(
            session_id=session.id,
            state="lost",
            default=session.is_default,
            driver_id=session.driver_id,
            profile=session.profile,
            engine="spark",
            created_at=iso(session.created_at),
            last_used_at=iso(session.last_used),
            note=session.why_closed,
        )
    return SessionInfo(
        session_id=session.id,
        state=session.state.value,
        default=session.default,
        driver_id=session.driver.id,
        profile=session.profile,
        engine=session.driver.engine,
        created_at=iso(session.created_at),
        last_used_at=iso(session.last_used),
        note=session.why_closed,
    )


def profiles_out(app: App, principal: Principal) -> list[ProfileOut]:
    allowed = allowed_profiles(app.policy, principal)
    out = []
    for index, (name, _, _) in enumerate(allowed):
        profile = app.drivers.profiles.get(name)
        if profile is not None:
            out.append(
                ProfileOut(
                    name=name,
                    engine=profile.engine,
                    backend=profile.backend,
                    cores=profile.cores,
                    memory=profile.memory,
                    default=index == 0,
                    description=profile.description,
                )
            )
    return out


def quotas_out(app: App, principal: Principal, max_sessions: int) -> QuotasOut:
    fleet, config = app.drivers, app.config
    holder = f"user:{principal.id}"
    if config.driver.share == "group":  # members of a role count together
        chosen = decide_profile(app.policy, principal, None)
        holder = f"group:{chosen.role}" if chosen.role else holder
    usage = fleet.usage(holder)
    return QuotasOut(
        share=config.driver.share,
        max_sessions=max_sessions,
        session_idle_timeout_s=config.limits.session_idle_timeout_s,
        max_drivers=fleet.limits.max_drivers,
        max_drivers_per_user=fleet.limits.max_drivers_per_user,
        max_driver_memory_bytes=fleet.limits.max_driver_memory,
        driver_idle_timeout_s=config.quotas.driver_idle_timeout_s,
        driver_max_lifetime_s=config.quotas.driver_max_lifetime_s,
        drivers_running=usage.drivers,
        driver_memory_used_bytes=usage.memory,
        your_drivers=usage.owner_drivers,
    )


def register(server: MCPServer) -> None:
    @server.tool(
        title="Who am I",
        annotations=hints(read_only=True, idempotent=True),
    )
    @guarded
    async def whoami(ctx: Context) -> Annotated[CallToolResult, WhoAmI]:
        """Who you are to spark-mcp: your roles, the actions and tables your policy allows, your limits,
        the driver profiles and engines you may use and the driver quotas.

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
            profiles=profiles_out(app, principal),
            engines=list(grants.engines),
            quotas=quotas_out(app, principal, limits.max_sessions),
            spark_version=spark_version(),
            driver_backend=app.config.driver.backend,
        )
        q = who.quotas
        profiles = ", ".join(
            f"{p.name} ({p.cores} cores, {p.memory}{', default' if p.default else ''})" for p in who.profiles
        )
        text = (
            f"You are {who.principal} (roles: {', '.join(who.roles) or 'none'}).\n"
            f"May: {', '.join(who.actions) or 'nothing'}.\n"
            f"Read: {', '.join(who.read) or '-'}; write: {', '.join(who.write) or '-'}; "
            f"deny: {', '.join(who.deny) or '-'}.\n"
            f"Limits: {limits.max_rows} rows and {limits.max_chars:,} characters per reply, "
            f"{limits.query_timeout_s:g} s per statement, {limits.max_sessions} sessions. Spark {who.spark_version}.\n"
            f"Profiles: {profiles or 'none'}; engines: {', '.join(who.engines) or 'none'}.\n"
            f"Drivers (shared per {q.share}): you hold {q.your_drivers} of at most {q.max_drivers_per_user}; "
            f"the server runs {q.drivers_running} of at most {q.max_drivers}, with {gib(q.driver_memory_used_bytes)} "
            f"of {gib(q.max_driver_memory_bytes)} memory; idle drivers stop after "
            f"{_seconds(q.driver_idle_timeout_s)}, any driver after {_seconds(q.driver_max_lifetime_s)}; "
            f"idle sessions close after {q.session_idle_timeout_s:g} s."
        )
        return reply(who, text)

    @server.tool(
        title="Create session",
        annotations=hints(read_only=False),
    )
    @guarded
    async def create_session(
        ctx: Context,
        profile: Annotated[
            str | None,
            Field(
                max_length=32,
                pattern=r"^[a-z][a-z0-9_-]*$",
                description="a driver profile from whoami; default: your first",
            ),
        ] = None,
        engine: Annotated[
            Literal["spark", "sail"] | None,
            Field(description="spark (JVM) or sail (fast start, partial SQL); default: the profile's"),
        ] = None,
    ) -> Annotated[CallToolResult, SessionInfo]:
        """Start a new, isolated Spark session (its own temp views and settings).

        You rarely need this: every tool uses your default session when you pass no
        `session_id`. Create extra sessions to keep independent work apart, or to use
        another driver profile (whoami lists yours). A session may take several seconds
        when a Spark driver has to start.
        """
        app, principal = app_of(ctx), caller()
        session = await app.executor.create_session(principal, profile, engine=engine)
        note(session_id=session.id)
        return reply(
            session_info(session),
            f"Session {session.id} is open on {session.driver.engine} driver {session.driver.id} "
            f"(profile {session.profile}).",
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
            f"{s.session_id} {s.state}{' (default)' if s.default else ''} on driver {s.driver_id} "
            f"(profile {s.profile}), last used {s.last_used_at}" + (f": {s.note}" if s.note else "")
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
