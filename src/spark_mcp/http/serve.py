"""``serve_http(config)``: run the HTTP app with uvicorn until SIGINT or SIGTERM.

uvicorn runs with ``proxy_headers=False``: the peer address of each request is the
connection's own, never one a client wrote into ``X-Forwarded-For``, because the
trusted-proxy mode decides on that address. TLS is optional (``server.tls_cert`` and
``server.tls_key``); behind a TLS-terminating proxy, leave it off and bind to loopback or
a private address.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import structlog
import uvicorn

from spark_mcp.config.model import Config
from spark_mcp.http.app import HttpService, build_http_app, is_loopback

if TYPE_CHECKING:
    from spark_mcp.gateway import GatewayServer

log = structlog.get_logger(__name__)


def uvicorn_config(config: Config, app: object) -> uvicorn.Config:
    return uvicorn.Config(
        app,  # type: ignore[arg-type]
        host=config.server.host,
        port=config.server.port,
        proxy_headers=False,
        server_header=False,
        access_log=False,
        log_config=None,  # keep spark-mcp's logging (stderr); uvicorn's loggers propagate to it
        log_level=config.server.log_level,
        lifespan="on",
        ssl_certfile=str(config.server.tls_cert) if config.server.tls_cert else None,
        ssl_keyfile=str(config.server.tls_key) if config.server.tls_key else None,
        timeout_graceful_shutdown=int(config.driver.stop_timeout_s) + 15,
        h11_max_incomplete_event_size=64 * 1024,
    )


@asynccontextmanager
async def gateway_beside(config: Config, service: HttpService) -> AsyncIterator[GatewayServer]:
    """The Spark Connect gateway serving ``service``'s app; the console is told the port it
    bound (``[gateway] port = 0`` takes any free one), as connection strings must name it."""
    from spark_mcp.gateway import running_gateway

    async with running_gateway(config, service.ref.get) as gateway:
        if service.console is not None:
            service.console.console.gateway_port = gateway.port
        yield gateway


async def serve_http(config: Config) -> None:
    """Serve HTTP until uvicorn stops (SIGINT, SIGTERM); with ``[gateway] port``, the Spark
    Connect gateway serves the same app beside it, in this event loop."""
    from contextlib import AsyncExitStack

    service = build_http_app(config)
    if not config.server.tls_cert and not is_loopback(config.server.host):
        log.warning(
            "http.plaintext",
            host=config.server.host,
            hint="tokens cross the network in clear text: set server.tls_cert/tls_key or put a TLS proxy in front",
        )
    log.info(
        "http.serving",
        url=f"{'https' if config.server.tls_cert else 'http'}://{config.server.host}:{config.server.port}/mcp",
        auth=config.auth.mode,
        resource=service.resource,
    )
    async with AsyncExitStack() as stack:
        if config.gateway.port is not None:
            await stack.enter_async_context(gateway_beside(config, service))
        await uvicorn.Server(uvicorn_config(config, service.asgi)).serve()
