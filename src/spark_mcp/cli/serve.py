"""``spark-mcp serve``: the MCP server over stdio, or streamable HTTP for a team.

It writes nothing to stdout but the protocol.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys

import anyio
import structlog

from spark_mcp import event_loop
from spark_mcp.allocator import tune_malloc
from spark_mcp.cli.common import config_from
from spark_mcp.config import Config
from spark_mcp.errors import ConfigError
from spark_mcp.logs import configure_logging

log = structlog.get_logger(__name__)


async def _serve_stdio(config: Config) -> None:
    """Serve until the host closes stdin or signals us; either way every driver is stopped.

    With ``[gateway] port`` set, the Spark Connect gateway serves the same app beside it.
    """
    from contextlib import AsyncExitStack

    from spark_mcp.server import AppRef, build_server

    stopped = anyio.Event()
    ref = AppRef()
    server = build_server(config, on_stopped=stopped.set, ref=ref)
    server_scope = anyio.CancelScope()

    async with AsyncExitStack() as stack, anyio.create_task_group() as group:
        if config.gateway.port is not None:
            from spark_mcp.gateway import running_gateway

            await stack.enter_async_context(running_gateway(config, ref.get))

        async def serve() -> None:
            with server_scope:
                await server.run_stdio_async()  # returns when the host closes stdin
            group.cancel_scope.cancel()

        async def stop_on_signal() -> None:
            with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
                async for signum in signals:
                    server_scope.cancel()  # the lifespan stops jobs, sessions and drivers
                    with anyio.move_on_after(config.driver.stop_timeout_s + 15):
                        await stopped.wait()
                    # The SDK reads stdin on a thread that cannot be cancelled: do not wait for it.
                    sys.stderr.flush()
                    os._exit(128 + signum)

        group.start_soon(stop_on_signal)
        group.start_soon(serve)


def cmd_serve(args: argparse.Namespace) -> int:
    config = config_from(args)
    configure_logging(config.server.log_level)
    from spark_mcp.app import preflight
    from spark_mcp.identity import validate_principal_id

    preflight(config)  # a bad policy, profile or state database stops the server before it speaks
    if config.user:
        validate_principal_id(config.user)
    missing = config.missing_datasets()
    if missing:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(missing))
    if config.gateway.port is not None:  # without a gateway, its package (grpc, pyspark) stays unimported
        from spark_mcp.gateway import check_gateway

        check_gateway(config)  # a gateway reachable from the network needs TLS and authentication
    loop = event_loop.loop_name(config.server.event_loop)  # a missing uvloop is refused here
    tuned = config.server.tune_malloc and tune_malloc()
    log.info("serve.starting", transport=config.server.transport, event_loop=loop, malloc_tuned=tuned)
    if config.server.transport == "http":
        from spark_mcp.http.app import check_exposure
        from spark_mcp.http.serve import serve_http

        check_exposure(config)  # before anything starts: a clear refusal, not a half-started server
        event_loop.run(config.server.event_loop, serve_http, config)
        return 0
    event_loop.run(config.server.event_loop, _serve_stdio, config)
    return 0
