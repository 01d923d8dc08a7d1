"""Which driver serves a caller, and the channel that reaches it with the driver's own token.

``driver_for`` is the one place that decides where a principal's calls go: the Spark driver
of its default profile, found or started by the fleet (quotas and the warm pool included).
Under ``driver.share = "group"`` that is its role's driver; under ``user`` and ``session`` it
is the principal's own (``user:<id>``, the driver its MCP sessions use under ``user``): a
Spark Connect client's session ids are its own to make up, so they never pick a driver.
Nothing a client sends can name another driver: the route is a function of the verified
principal alone.

``Upstreams`` keeps one gRPC channel per driver. Every call on it carries that driver's
token as ``authorization`` metadata, added here and nowhere else: a client never sees a
driver token, and the client's own metadata is never passed on. A channel to a driver that
stopped is closed and dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc
import grpc.aio

from spark_mcp.app import App
from spark_mcp.drivers import Driver, owner_key
from spark_mcp.identity import Principal

SERVICE = "/spark.connect.SparkConnectService/"


@dataclass(frozen=True)
class Route:
    """Where a principal's calls go: the owner key and profile of its driver."""

    owner: str  # ``user:<id>``, or ``group:<role>`` under ``driver.share = "group"``
    profile: str
    group: str | None  # the role whose shared driver it is, or None for the principal's own


def route_for(app: App, principal: Principal) -> Route:
    """The route of ``principal``'s calls, or ``PolicyDenied`` (no profile, or no Spark engine).

    Starts nothing: the console shows it (which driver a connection string reaches).
    """
    chosen = app.governance.profile_for(principal, None)
    assert chosen.profile is not None
    app.governance.require_engine(principal, "spark")
    group = chosen.role if app.config.driver.share == "group" else None
    owner = owner_key("group" if group else "user", principal=principal.id, session_id="", group=group)
    return Route(owner=owner, profile=chosen.profile, group=group)


async def driver_for(app: App, principal: Principal) -> Driver:
    """The driver that serves ``principal`` (started on first use): always a Spark (JVM) one,
    as the gateway governs Spark's own plans."""
    route = route_for(app, principal)
    return await app.drivers.acquire(
        route.owner, route.profile, principal=None if route.group else principal.id, engine="spark"
    )


async def running_driver_for(app: App, principal: Principal) -> Driver | None:
    """The driver that serves ``principal`` if it is running, or None: starts nothing. For the
    calls that only end or ask about what runs on it (a driver that is not running has no
    session and no operation to release, interrupt or explain). One being started meanwhile
    is waited for: an interrupt sent while a query waits for its driver is meant for it."""
    route = route_for(app, principal)
    found = app.drivers.assigned(route.owner, route.profile, "spark")
    if found is None and app.drivers.acquiring(route.owner, route.profile, "spark"):
        return await driver_for(app, principal)
    return found


class Upstream:
    """Calls to one driver, as raw bytes both ways (nothing is decoded on the way back)."""

    def __init__(self, driver: Driver, channel: grpc.aio.Channel) -> None:
        self.driver = driver
        self.channel = channel
        self.metadata = (("authorization", f"Bearer {driver.token}"),)

    def unary(self, method: str) -> grpc.aio.UnaryUnaryMultiCallable:
        return self.channel.unary_unary(SERVICE + method)

    def stream(self, method: str) -> grpc.aio.UnaryStreamMultiCallable:
        return self.channel.unary_stream(SERVICE + method)

    def client_stream(self, method: str) -> grpc.aio.StreamUnaryMultiCallable:
        return self.channel.stream_unary(SERVICE + method)


class Upstreams:
    def __init__(self, *, max_message_bytes: int) -> None:
        self._max = max_message_bytes
        self._open: dict[str, Upstream] = {}

    async def to(self, driver: Driver) -> Upstream:
        for driver_id, upstream in list(self._open.items()):
            if not upstream.driver.usable:
                del self._open[driver_id]
                await upstream.channel.close()
        found = self._open.get(driver.id)
        if found is not None:
            return found
        channel = grpc.aio.insecure_channel(  # drivers listen on loopback (or a private network)
            f"{driver.host}:{driver.port}",
            options=[
                ("grpc.max_send_message_length", self._max),
                ("grpc.max_receive_message_length", self._max),
            ],
        )
        upstream = self._open[driver.id] = Upstream(driver, channel)
        return upstream

    async def close(self) -> None:
        open_now, self._open = list(self._open.values()), {}
        for upstream in open_now:
            await upstream.channel.close()
