"""Profiles: what a driver is (engine, backend, cores, memory, settings, environment, credentials).

A profile is resolved once from config: ``[profiles.NAME]`` with anything it leaves unset
taken from ``[driver]``; the ``default`` profile is ``[driver]`` itself unless the config
redefines it. Engine and backend are dimensions of a profile, so a fleet keyed by profile
serves a Sail engine or a remote backend the same way as a local Spark JVM.

A profile of the ``standalone`` backend also says what it asks the cluster for
(``executors``); that counts against ``quotas.max_driver_memory`` with the driver itself.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from spark_mcp.config import Config, CredentialsConfig, ProfileConfig, parse_size
from spark_mcp.drivers.executors import ExecutorAsk, executor_ask
from spark_mcp.errors import ConfigError

_MIB = 1024**2
# Spark's own estimate of a driver's memory beyond its heap (spark.driver.memoryOverhead's default).
_OVERHEAD_MIN = 384 * _MIB
_OVERHEAD_FACTOR = 0.10

# Spark settings every driver starts with unless config sets the key itself. Spark cuts a
# result into Arrow batches of at most 10,000 rows by default: a 1M-row read reaches its client
# in about 100 messages, and every message costs a hop (the Spark Connect gateway's CPU per such
# read fell from about 105 to 65 ms, and the direct read got faster too: benchmarks/gateway.py).
# Spark still cuts a batch at 0.7 x spark.connect.grpc.arrow.maxBatchSize (2.8 MB), so a
# message's size stays bounded. The same row limit sizes the batches pandas UDFs receive:
# maxBytesPerBatch bounds those in bytes, since 100,000 wide rows would not fit a worker.
SPARK_DEFAULTS: Mapping[str, str] = {
    "spark.sql.execution.arrow.maxRecordsPerBatch": "100000",
    "spark.sql.execution.arrow.maxBytesPerBatch": "67108864",  # 64 MiB
}


@dataclass(frozen=True)
class Profile:
    name: str
    engine: str
    backend: str
    cores: int
    memory: str  # the JVM heap as configured, e.g. "1g"
    spark_conf: Mapping[str, str] = field(default_factory=dict)
    env: Mapping[str, str] = field(default_factory=dict)
    credentials: CredentialsConfig = field(default_factory=CredentialsConfig)
    description: str | None = None
    executors: ExecutorAsk | None = None  # what a standalone driver asks its cluster for

    @property
    def heap_bytes(self) -> int:
        return parse_size(self.memory)

    @property
    def local_memory_bytes(self) -> int:
        """What a driver of this profile holds on this machine: its heap plus overhead."""
        heap = self.heap_bytes
        return heap + max(_OVERHEAD_MIN, int(heap * _OVERHEAD_FACTOR))

    @property
    def memory_bytes(self) -> int:
        """What a driver of this profile counts against ``quotas.max_driver_memory``: itself and its executors."""
        executors = self.executors.memory_bytes if self.executors and self.engine == "spark" else 0
        return self.local_memory_bytes + executors


def resolve_profiles(config: Config) -> dict[str, Profile]:
    """Every profile of ``config`` by name, ``default`` first; ``ConfigError`` for an executor ask that cannot work."""
    driver = config.driver
    profiles: dict[str, Profile] = {}
    problems = []
    for name in config.profile_names:
        spec = config.profiles.get(name, ProfileConfig())
        engine = spec.engine or driver.engine
        backend = spec.backend or driver.backend
        cores = spec.cores or driver.cores
        # [driver].spark_conf applies to every profile; a profile's own settings win.
        spark_conf = {**SPARK_DEFAULTS, **driver.spark_conf, **spec.spark_conf}
        executors = None
        if backend == "standalone" and engine == "spark":
            try:
                executors = executor_ask(spark_conf, cores)
            except ValueError as exc:
                where = f"profiles.{name}" if name in config.profiles else "driver"
                problems.append(f"{where}.spark_conf: {exc}")
        profiles[name] = Profile(
            name=name,
            engine=engine,
            backend=backend,
            cores=cores,
            memory=spec.memory or driver.memory,
            spark_conf=spark_conf,
            env=dict(spec.env),
            credentials=spec.credentials,
            description=spec.description,
            executors=executors,
        )
    if problems:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems))
    return profiles


def check_credential_files(config: Config) -> None:
    """Every credential file (and the cluster secret) exists and only the server's user can read it;
    ``ConfigError`` otherwise."""
    problems = []
    for name, spec in config.profiles.items():
        for key, path in spec.credentials.paths():
            where = f"profiles.{name}.credentials.{key}"
            problem = _file_problem(path)
            if problem:
                problems.append(f"{where}: {problem}")
    secret_file = config.driver.cluster_secret_file
    if secret_file is not None and (problem := _file_problem(secret_file)):
        problems.append(f"driver.cluster_secret_file: {problem}")
    if problems:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems))


def _file_problem(path: Path) -> str | None:
    try:
        info = path.stat()
    except OSError as exc:
        return f"{path}: {exc.strerror or 'cannot be read'}"
    if not stat.S_ISREG(info.st_mode):
        return f"{path} is not a file"
    if info.st_mode & 0o077:
        return f"{path} can be read by other users (mode {stat.S_IMODE(info.st_mode):o}): chmod 600 {path}"
    if info.st_uid != os.getuid():
        return f"{path} belongs to another user; it must belong to the user running spark-mcp"
    return None


def machine_memory_bytes() -> int | None:
    """Physical memory of this machine, or None when it cannot be known."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return None


def available_memory_bytes() -> int | None:
    """Memory the kernel says new processes can have now (``MemAvailable``), or None."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def driver_memory_budget(config: Config) -> int:
    """``quotas.max_driver_memory`` in bytes: as configured, else 80% of the machine's memory.

    Raises ``ConfigError`` when the configured sum exceeds the machine's memory: such a quota
    would never refuse anything, and the machine would swap or kill drivers instead. With the
    standalone backend the sum also counts executors on the cluster, so it may be larger (the
    machine's own memory is still checked per driver, at start).
    """
    machine = machine_memory_bytes()
    configured = config.quotas.max_driver_memory
    if configured is None:
        return int(machine * 0.8) if machine else 16 * 1024**3
    budget = parse_size(configured)
    if machine is not None and budget > machine and not config.uses_standalone:
        raise ConfigError(
            f"quotas.max_driver_memory = {configured} is more than this machine's memory "
            f"({machine / 1024**3:.1f} GiB): lower it, or leave it unset for 80% of the machine"
        )
    return budget
