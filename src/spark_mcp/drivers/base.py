"""The driver model: what a running Spark Connect server is, minus how it was started."""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path


class DriverState(StrEnum):
    STARTING = "starting"
    READY = "ready"
    STOPPING = "stopping"
    STOPPED = "stopped"
    FAILED = "failed"  # never became ready
    LOST = "lost"  # was ready, then died without being asked to


@dataclass(eq=False)
class Driver:
    """A Spark Connect server spark-mcp started for one principal.

    The token authenticates clients to this driver. It lives only in this object and
    in the driver's own environment: never in argv, logs, state files or tool output
    (``repr`` leaves it out).
    """

    id: str
    principal: str
    backend: str
    host: str
    port: int
    workdir: Path
    log_path: Path
    token: str = field(repr=False)
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    state: DriverState = DriverState.STARTING
    started_at: float = field(default_factory=time.time)
    ready_at: float | None = None
    exit_code: int | None = None
    spark_version: str = ""
    builtin_functions: frozenset[str] = field(default=frozenset(), repr=False)
    engine: str = "spark"  # "spark" (a JVM SparkConnectServer) or "sail" (pysail's Rust server)
    # Statements every new session on this driver runs first: Sail keeps its catalog per
    # session, so the configured datasets are registered in each one (empty for Spark).
    session_setup: tuple[str, ...] = field(default=(), repr=False)

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @property
    def usable(self) -> bool:
        return self.state is DriverState.READY

    def describe(self) -> dict[str, object]:
        """A token-free description for tools, CLI and logs."""
        return {
            "driver_id": self.id,
            "principal": self.principal,
            "backend": self.backend,
            "engine": self.engine,
            "state": self.state.value,
            "pid": self.pid,
            "endpoint": f"{self.host}:{self.port}",
            "started_at": self.started_at,
            "log": str(self.log_path),
        }
