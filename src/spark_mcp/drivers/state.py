"""Driver state files, so another process (``spark-mcp drivers``) can see and stop drivers.

One ``state.json`` per driver folder, mode 0600 inside a 0700 folder. It never holds
the driver's token.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from spark_mcp.drivers.process import pid_alive, process_has_marker

STATE_FILE = "state.json"


@dataclass(frozen=True)
class DriverRecord:
    driver_id: str
    principal: str
    backend: str
    pid: int
    port: int
    server_pid: int
    started_at: float
    workdir: str
    log: str
    engine: str = "spark"

    @property
    def marker(self) -> str:
        """A string only this driver's command line carries (see ``local.driver_argv``)."""
        return f"spark.mcp.driver.id={self.driver_id}"

    def is_running(self) -> bool:
        return pid_alive(self.pid) and process_has_marker(self.pid, self.marker)


def drivers_dir(home: Path) -> Path:
    return home / "drivers"


def ensure_private_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)
    return path


def write_record(record: DriverRecord) -> None:
    path = Path(record.workdir) / STATE_FILE
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(asdict(record), handle)
    os.replace(tmp, path)


def remove_record(workdir: Path) -> None:
    (workdir / STATE_FILE).unlink(missing_ok=True)


def read_records(home: Path) -> list[DriverRecord]:
    """Every driver with a state file under ``home``, running or stale, oldest first."""
    records = []
    for path in sorted(drivers_dir(home).glob(f"*/{STATE_FILE}")):
        try:
            data = json.loads(path.read_text())
            records.append(DriverRecord(**data))
        except (OSError, ValueError, TypeError):
            continue  # a half-written or foreign file is not a driver we can manage
    return sorted(records, key=lambda r: r.started_at)
