"""Open and close Spark Connect sessions on a driver.

Sessions are always made with ``.create()``, never ``getOrCreate()``: every session is
isolated (its own temp views and settings). Client retries are bounded so a dead or
wrong endpoint fails within seconds, not the client's default ten minutes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, cast

import structlog

from spark_mcp.drivers.base import Driver
from spark_mcp.errors import DriverLost, SessionClosed
from spark_mcp.spark.errors import translate

if TYPE_CHECKING:
    # pyspark (with pandas and numpy) is imported on first use, not with this module: the
    # server answers its first MCP call sooner when that import runs on the thread that
    # prepares the first driver, while the driver boots (issue 12).
    from pyspark.sql.connect.session import SparkSession
    from pyspark.sql.connect.shell.progress import ProgressHandler, StageInfo

log = structlog.get_logger(__name__)

# About 0.1 + 0.2 + 0.4 + 0.8 + 1.6 s of back-off: a restarting driver is waited for, a dead one is not.
_RETRY_POLICY = dict(max_retries=5, backoff_multiplier=2.0, initial_backoff=100, max_backoff=2000, jitter=100)

_SETUP_WORKERS = 4

ProgressCallback = Callable[[list[Any], int, str, bool], None]


def _silence_pyspark_error_loggers() -> None:
    """pyspark logs every Spark error it raises (message, JVM stack) through a stderr handler of
    its own, past spark-mcp's log redaction: a driver token inside an error message reached the
    server's log in clear. spark-mcp translates and reports every error itself."""
    from pyspark.logger import PySparkLogger

    for name in ("SQLQueryContextLogger", "DataFrameQueryContextLogger"):
        logger = PySparkLogger.getLogger(name)
        logger.handlers.clear()
        logger.disabled = True


_client_lock = threading.Lock()
_router_class: type[_ProgressRoutes] | None = None


def _pyspark() -> type[_ProgressRoutes]:
    """Import pyspark's Spark Connect client once, silence its error loggers before any session
    exists, and build the progress handler class (it subclasses pyspark's, so it cannot exist
    earlier). One thread imports, under a lock: two threads importing the same package with
    circular imports can see a module half initialised."""
    global _router_class
    with _client_lock:
        if _router_class is None:
            import pyspark.sql.connect.client.retries
            import pyspark.sql.connect.session  # noqa: F401  (open_session's imports, made here once)
            from pyspark.sql.connect.shell.progress import ProgressHandler

            _silence_pyspark_error_loggers()

            class _ProgressRouter(_ProgressRoutes, ProgressHandler):
                pass

            _router_class = _ProgressRouter
        return _router_class


def load_client() -> None:
    """Import pyspark's Spark Connect client now (about half a second here, with pandas and numpy).

    The App calls this on a worker thread as it starts, so that the import runs while the first
    driver boots instead of after it, on the way to the first session (issue 12).
    """
    _pyspark()


class _ProgressRoutes:
    """Progress events arrive on the thread that runs the operation: route them per thread."""

    def __init__(self) -> None:
        self.local = threading.local()

    def __call__(
        self, stages: Iterable[StageInfo] | None, inflight_tasks: int, operation_id: str | None, done: bool
    ) -> None:
        callback: ProgressCallback | None = getattr(self.local, "callback", None)
        if callback is not None:
            callback(list(stages or ()), inflight_tasks, operation_id or "", done)


class ConnectSession:
    """One isolated Spark Connect session on one driver: the handle the rest of spark/ uses."""

    def __init__(self, spark: SparkSession, driver: Driver, user_id: str) -> None:
        self.spark = spark
        self.driver = driver
        self.user_id = user_id
        self._progress = _pyspark()()
        spark.registerProgressHandler(cast("ProgressHandler", self._progress))  # a _pyspark() router

    def set_progress_callback(self, callback: ProgressCallback | None) -> None:
        """Route progress of operations started on this thread to ``callback``."""
        self._progress.local.callback = callback

    @property
    def spark_session_id(self) -> str:
        """The client-side id of this Spark Connect session (a UUID), which rejoining needs."""
        return str(self.spark.client._session_id)

    @property
    def server_side_session_id(self) -> str | None:
        """The id the driver gave this session; a rejoining client checks it is still the same."""
        value = self.spark.client._server_session_id
        return str(value) if value else None

    def close(self) -> None:
        """Release the session on the driver (temp views, settings, cached state) and the channel."""
        try:
            self.spark.stop()
        except Exception as exc:  # best effort: the driver may already be gone
            log.debug("session.close_failed", error=type(exc).__name__)

    def abandon(self) -> None:
        """Close the channel without talking to the driver (it is gone).

        Left open, pyspark's exit hook would try cleanup calls against the dead driver.
        """
        try:
            self.spark.client.close()
        except Exception as exc:
            log.debug("session.abandon_failed", error=type(exc).__name__)


def open_session(
    driver: Driver,
    *,
    user_id: str,
    session_id: str | None = None,
    server_side_session_id: str | None = None,
) -> ConnectSession:
    """A new, isolated session on ``driver`` for ``user_id``; checks the driver answers.

    With ``session_id`` and ``server_side_session_id`` (from an earlier ``ConnectSession``),
    it rejoins that Spark session instead, with its temp views and settings: the driver
    refuses the first call if it no longer has exactly that session, and ``SessionClosed``
    says so.
    """
    url = f"sc://{driver.host}:{driver.port}/;token={driver.token};user_id={user_id}"
    if session_id is not None:
        url += f";session_id={session_id}"
    _pyspark()
    from pyspark.sql.connect.client.retries import DefaultPolicy
    from pyspark.sql.connect.session import SparkSession

    spark = SparkSession.builder.remote(url).create()
    spark.client.set_retry_policies([DefaultPolicy(**_RETRY_POLICY)])  # type: ignore[arg-type]
    if server_side_session_id is not None:
        # The client sends this with every call; a driver whose session has another id (it was
        # released, or expired and was made anew) refuses, instead of silently starting afresh.
        spark.client._server_session_id = server_side_session_id
    try:
        _ = spark.version  # a first round trip: fails fast on a dead driver or a wrong token
    except Exception as exc:
        error = translate(exc, what=f"driver {driver.id}")
        spark.client.close()  # nothing to release: the session never got going
        if session_id is not None and not isinstance(error, DriverLost):
            raise SessionClosed(f"driver {driver.id} no longer has Spark session {session_id}: {error}") from None
        if isinstance(error, DriverLost):
            raise error from None
        raise DriverLost(f"could not open a session on driver {driver.id}: {error}") from None
    try:
        run_session_setup(spark, driver.session_setup)  # Sail keeps its catalog per session
    except Exception as exc:
        spark.stop()
        raise translate(exc, what=f"driver {driver.id}") from None
    return ConnectSession(spark, driver, user_id)


def run_session_setup(spark: SparkSession, statements: Sequence[str]) -> None:
    """Run a new session's setup: the namespaces one by one, then the tables at once.

    The tables are independent of each other, and each is a round trip (Sail reads the
    files' footers): run in turn they made every new Sail session wait for the sum.
    """
    namespaces = [s for s in statements if s.startswith("CREATE NAMESPACE")]
    tables = [s for s in statements if not s.startswith("CREATE NAMESPACE")]
    for statement in namespaces:
        spark.sql(statement)
    if len(tables) <= 1:
        for statement in tables:
            spark.sql(statement)
        return
    with ThreadPoolExecutor(max_workers=min(_SETUP_WORKERS, len(tables)), thread_name_prefix="setup") as pool:
        for future in [pool.submit(spark.sql, statement) for statement in tables]:
            future.result()  # the first failure
