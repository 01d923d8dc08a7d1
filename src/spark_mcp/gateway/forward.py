"""Passing a call on to the caller's driver: its answer as bytes, or the driver's error.

Both go through the call's own channel (``routing.Upstreams``: the driver's token added
there), within the client's deadline. A stream's answers are never decoded: only the
serving driver's token is masked in them, should a result ever carry it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc.aio

from spark_mcp.gateway.calls import GatewayCall, UpstreamError
from spark_mcp.spark.wire.responses import mask


async def unary(call: GatewayCall, method: str, payload: bytes) -> bytes:
    upstream = call.upstream
    try:
        response: bytes = await upstream.unary(method)(payload, metadata=upstream.metadata, timeout=call.timeout())
    except grpc.aio.AioRpcError as exc:
        raise UpstreamError(exc) from None
    return response


async def stream(call: GatewayCall, method: str, payload: bytes) -> AsyncIterator[bytes]:
    """The driver's answers as they come, secrets masked: never decoded."""
    upstream = call.upstream
    answers = upstream.stream(method)(payload, metadata=upstream.metadata, timeout=call.timeout())
    secrets = call.secrets
    try:
        async for chunk in answers:
            yield mask(chunk, secrets)
    except grpc.aio.AioRpcError as exc:
        raise UpstreamError(exc) from None
    finally:
        answers.cancel()  # the client went away or failed: stop reading (no-op when done)
