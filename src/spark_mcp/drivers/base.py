"""The driver model: what a running Spark Connect server is, minus how it was started."""

from __future__ import annotations

import secrets
import subprocess
import time
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path


def new_driver_token() -> str:
    """A driver's token, shaped like a spark-mcp API token (``smcp_<12 hex>_<43 characters>``).

    Anything of that shape is masked wherever spark-mcp passes bytes or text on (result chunks,
    logs, the audit log): one scan for the shape finds driver tokens too, so the gateway reads
    each result chunk once instead of once per secret. The secret part has 256 bits, as before.
    """
    return f"smcp_{secrets.token_hex(6)}_{secrets.token_urlsafe(32)}"


class DriverState(StrEnum):
    STARTING = "starting"
    READY = "ready"
    STOPPING = "stopping"
    STOPPED = "stopped"
    FAILED = "failed"  # never became ready
    LOST = "lost"  # was ready, then died without being asked to


class Lifetime(StrEnum):
    SERVER = "server"  # dies with the server that started it
    PERSISTENT = "persistent"  # outlives a restart; the next server re-adopts it


@dataclass(eq=False)
class Driver:
    """A Spark Connect server spark-mcp runs.

    ``owner`` says who it serves: ``user:<principal>``, ``session:<session id>`` or
    ``group:<role>`` (see ``fleet.owner_key``), or None while it is a spare in the warm
    pool. The token authenticates clients to this driver. It lives only in this object,
    in the driver's own environment and in a ``0600`` file in its private folder: never in
    argv, logs, the state database or tool output (``repr`` leaves it out).
    """

    id: str
    profile: str
    backend: str
    host: str
    port: int
    workdir: Path
    log_path: Path
    token: str = field(repr=False)
    engine: str = "spark"  # "spark" (a JVM SparkConnectServer) or "sail" (pysail's Rust server)
    memory_bytes: int = 0
    lifetime: Lifetime = Lifetime.SERVER
    owner: str | None = None
    principal: str | None = None  # the principal it was assigned for (None for spares and groups)
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)  # None when adopted
    pid: int | None = None
    pid_start: int | None = None
    state: DriverState = DriverState.STARTING
    started_at: float = field(default_factory=time.time)
    ready_at: float | None = None
    assigned_at: float | None = None
    last_used: float = field(default_factory=time.time)
    exit_code: int | None = None
    adopted: bool = False
    spark_version: str = ""
    builtin_functions: frozenset[str] = field(default=frozenset(), repr=False)
    analysis_plugin: bool = False  # the gateway's analysis plugin answers on it (drivers.analysis_plugin)
    # Statements every new session on this driver runs first: Sail keeps its catalog per
    # session, so the configured datasets are registered in each one (empty for Spark).
    session_setup: tuple[str, ...] = field(default=(), repr=False)

    @property
    def usable(self) -> bool:
        return self.state is DriverState.READY

    @property
    def spare(self) -> bool:
        return self.owner is None

    @property
    def marker(self) -> str:
        """A string only this driver's command line carries (see ``command_line.managed_settings``)."""
        return f"spark.mcp.driver.id={self.id}"

    def touch(self, now: float | None = None) -> None:
        self.last_used = time.time() if now is None else now

    def describe(self) -> dict[str, object]:
        """A token-free description for tools, CLI and logs."""
        return {
            "driver_id": self.id,
            "profile": self.profile,
            "engine": self.engine,
            "backend": self.backend,
            "owner": self.owner,
            "state": self.state.value,
            "pid": self.pid,
            "endpoint": f"{self.host}:{self.port}",
            "started_at": self.started_at,
            "log": str(self.log_path),
        }
