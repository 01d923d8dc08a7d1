"""Real Spark Connect clients for the gateway tests: PySpark's own, with bounded retries.

The gateway runs in the test's event loop (beside the shared ``App``), so every blocking
PySpark call is made on a worker thread (``off_loop``). ``tokens_for`` makes API tokens
in the test server's token store, the way ``spark-mcp tokens create`` does.
"""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio
import grpc
from pyspark.sql.connect.client.retries import DefaultPolicy
from pyspark.sql.connect.session import SparkSession

from spark_mcp.app import App
from spark_mcp.auth.settings import resource_url
from spark_mcp.config import Config, GatewayConfig
from spark_mcp.gateway import running_gateway
from spark_mcp.scope_gate import KeyedScopeGates
from spark_mcp.state.db import StateDB, state_path
from spark_mcp.state.tokens import TokenStore

T = TypeVar("T")

# A handful of quick retries: a refused or dead endpoint fails in about a second.
RETRIES = dict(max_retries=3, backoff_multiplier=2.0, initial_backoff=50, max_backoff=400, jitter=10)


async def off_loop(fn: Callable[[], T]) -> T:
    """Run blocking client code on a thread: the gateway shares this test's event loop."""
    return await anyio.to_thread.run_sync(fn)


def token_store(config: Config) -> TokenStore:
    return TokenStore(StateDB(state_path(config.home)))


def tokens_for(config: Config, *users: str, **kwargs: Any) -> dict[str, str]:
    store = token_store(config)
    scopes = kwargs.pop("scopes", ["spark:read", "spark:write"])
    return {
        user: store.create(
            user, scopes=scopes, resource=resource_url(config), expires_at=time.time() + 3600, **kwargs
        ).token
        for user in users
    }


def connect(port: int, token: str | None, *, extra: str = "", host: str = "localhost") -> SparkSession:
    """A new PySpark Connect session through the gateway (blocking: call it off the loop)."""
    url = f"sc://{host}:{port}/" + (f";token={token}" if token else "") + extra
    spark = SparkSession.builder.remote(url).create()
    spark.client.set_retry_policies([DefaultPolicy(**RETRIES)])  # type: ignore[arg-type]
    return spark


@dataclass
class Gateway:
    """A real gateway on a free port beside the shared ``App``, and API tokens of its users."""

    port: int
    tokens: dict[str, str]
    app: App
    sessions: list[SparkSession]
    scopes: KeyedScopeGates

    def client(self, user: str, *, extra: str = "") -> SparkSession:
        """A new PySpark session of ``user``'s (blocking: call it off the loop), stopped at the end."""
        spark = connect(self.port, self.tokens[user], extra=extra)
        self.sessions.append(spark)
        return spark

    def bearer(self, user: str) -> tuple[tuple[str, str], ...]:
        """``user``'s credential as gRPC metadata, for requests built by hand."""
        return (("authorization", f"Bearer {self.tokens[user]}"),)

    @contextmanager
    def channel(self) -> Iterator[grpc.Channel]:
        """A raw gRPC channel to the gateway, for what PySpark cannot send."""
        channel = grpc.insecure_channel(f"localhost:{self.port}")
        try:
            yield channel
        finally:
            channel.close()


@asynccontextmanager
async def serving_gateway(app: App, *users: str, **settings: Any) -> AsyncIterator[Gateway]:
    """The gateway served from ``app`` (for a module-scoped fixture), with ``settings`` of
    ``[gateway]``; its sessions stop at the end."""
    config = app.config.model_copy(update={"gateway": GatewayConfig(port=0, **settings)})
    async with running_gateway(config, lambda: app) as server:
        found = Gateway(server.port, tokens_for(config, *users), app, [], server.scopes)
        try:
            yield found
        finally:
            for spark in found.sessions:
                await off_loop(spark.stop)


def status_of(exc: BaseException) -> grpc.StatusCode | None:
    getter = getattr(exc, "getGrpcStatusCode", None)
    return getter() if getter is not None else None


def failure(fn: Callable[[], Any]) -> BaseException:
    """The exception ``fn`` raises; the test fails if it returns."""
    try:
        result = fn()
    except Exception as exc:  # the client's own exception types
        return exc
    raise AssertionError(f"expected a refusal, got {result!r}")


def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = 120) -> None:
    """Poll ``condition`` (blocking: call it off the loop); the test fails with ``what`` at the deadline."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def in_thread(ended: list[str], what: str, work: Callable[[], object]) -> threading.Thread:
    """Start ``work`` on a thread of its own; ``ended`` then says "<what> ran" or "<what> failed: ..."."""

    def run() -> None:
        try:
            work()
            ended.append(f"{what} ran")
        except Exception as exc:
            ended.append(f"{what} failed: {str(exc)[:200]}")

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def interrupt_when_running(spark: SparkSession, ended: list[str]) -> list[str]:
    """Interrupt the session's operations once one runs in Spark; what had ended just before."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        before = list(ended)  # a query holds its gate until it has been interrupted
        if spark.interruptAll():
            return before
        time.sleep(0.2)  # polling for the query to reach Spark, within the deadline
    raise AssertionError("the query never showed up as running")
