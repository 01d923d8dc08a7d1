"""``/healthz`` and ``/readyz``: probes for an orchestrator or a load balancer.

``/healthz`` answers 200 while the process serves requests. ``/readyz`` answers 200 when
the server could run a caller's work now: the app has started, Spark's jars and a usable
Java are present (what a driver needs to start), and the state database answers. It
never starts a driver: a probe every few seconds must cost next to nothing, so the Java
check (a subprocess) is remembered for a minute.

Probes need no token, so a 503 names only which check failed (``java``, ``spark``,
``state``, ``starting``); the details, with paths, go to the server's log.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import anyio
import structlog
from starlette.requests import Request
from starlette.responses import JSONResponse

from spark_mcp.app import App
from spark_mcp.state.db import StateDB

log = structlog.get_logger(__name__)

_JAVA_CHECK_EVERY_S = 60.0


@dataclass
class Readiness:
    app: Callable[[], App | None]
    db: StateDB | None
    environ: dict[str, str]
    _java: tuple[float, str | None] | None = None

    async def problems(self) -> list[str]:
        """The names of the failed checks; each failure's detail is logged."""
        app = self.app()
        if app is None:
            return ["starting"]
        found: dict[str, str] = {}
        java = await self._java_problem(app)
        if java:
            found["java"] = java
        spark = await anyio.to_thread.run_sync(_spark_problem)
        if spark:
            found["spark"] = spark
        if self.db is not None:
            try:
                await anyio.to_thread.run_sync(self.db.query, "SELECT 1")
            except Exception as exc:
                found["state"] = str(exc)
        for check, detail in found.items():
            log.warning("readyz.not_ready", check=check, detail=detail)
        return list(found)

    async def _java_problem(self, app: App) -> str | None:
        from spark_mcp.drivers.environment import check_java

        now = time.monotonic()
        if self._java is None or now - self._java[0] >= _JAVA_CHECK_EVERY_S:
            result = await anyio.to_thread.run_sync(check_java, app.config.driver.java_home, self.environ)
            self._java = (now, result.problem)
        return self._java[1]


def _spark_problem() -> str | None:
    from spark_mcp.drivers.environment import spark_home

    home = spark_home()
    if not (home / "bin" / "spark-submit").is_file() or not list((home / "jars").glob("spark-connect_*.jar")):
        return f"Spark is incomplete at {home}: reinstall pyspark[connect]"
    return None


async def healthz(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


def readyz_endpoint(readiness: Readiness) -> Callable[[Request], object]:
    async def readyz(request: Request) -> JSONResponse:
        problems = await readiness.problems()
        if problems:
            return JSONResponse({"status": "not ready", "problems": problems}, status_code=503)
        return JSONResponse({"status": "ready"})

    return readyz
