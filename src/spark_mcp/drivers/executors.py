"""What a standalone driver asks its cluster for: executor cores, memory and count (pure).

Spark's standalone scheduler sizes an application by ``spark.cores.max`` alone: without it
an application takes every free core of the cluster, and it ignores
``spark.executor.instances`` (measured here on pyspark 4.3: ``instances = 1`` on two free
one-core workers got two executors). So a standalone driver always gets an explicit
``spark.cores.max``:

- the profile's ``spark.cores.max``, if it sets one;
- else ``spark.executor.instances`` x ``spark.executor.cores`` (which it must then set too),
  so that the count a profile asks for is the count it gets;
- else the profile's ``cores``.

The executors' memory is at most (executors x ``spark.executor.memory``), where the count is
``cores.max / executor cores`` (rounded up) or, when ``spark.executor.cores`` is unset and
Spark gives each executor all the free cores of a worker, at most ``cores.max``. That sum is
what the cluster is asked for, and what ``quotas.max_driver_memory`` counts besides the driver.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

_MIB = 1024**2
# Spark's memory strings: a bare number is MiB for spark.executor.memory; units k, m, g, t, p, with or without b.
_SPARK_SIZE = re.compile(r"^([0-9]+)\s*([kmgtp]?)b?$", re.IGNORECASE)
_UNITS = {"": _MIB, "k": 1024, "m": _MIB, "g": 1024**3, "t": 1024**4, "p": 1024**5}
DEFAULT_EXECUTOR_MEMORY = "1g"  # Spark's own default


@dataclass(frozen=True)
class ExecutorAsk:
    cores_max: int  # spark.cores.max, always set
    executor_cores: int | None  # None: Spark's default, every free core of a worker
    executor_memory: int  # bytes per executor (what the master accounts on a worker)
    executors: int  # at most this many

    @property
    def memory_bytes(self) -> int:
        return self.executors * self.executor_memory

    @property
    def settings(self) -> list[tuple[str, str]]:
        """What goes into the driver's argv after the profile's own settings."""
        return [("spark.cores.max", str(self.cores_max))]


def spark_size(text: str) -> int:
    """Bytes in a Spark memory string (``512m``, ``2g``, ``1gb``; a bare number is MiB)."""
    match = _SPARK_SIZE.fullmatch(text.strip())
    if match is None or int(match.group(1)) == 0:
        raise ValueError(f"{text!r} is not a memory size such as 512m or 2g")
    return int(match.group(1)) * _UNITS[match.group(2).lower()]


def _positive(conf: Mapping[str, str], key: str) -> int | None:
    if key not in conf:
        return None
    try:
        value = int(conf[key])
    except ValueError:
        raise ValueError(f"{key} = {conf[key]!r} must be a whole number") from None
    if value < 1:
        raise ValueError(f"{key} = {conf[key]!r} must be at least 1")
    return value


def executor_ask(conf: Mapping[str, str], cores: int) -> ExecutorAsk:
    """The ask of a standalone driver whose profile has ``conf`` and ``cores``; ``ValueError`` naming the fix."""
    cores_max = _positive(conf, "spark.cores.max")
    executor_cores = _positive(conf, "spark.executor.cores")
    instances = _positive(conf, "spark.executor.instances")
    memory = spark_size(conf.get("spark.executor.memory", DEFAULT_EXECUTOR_MEMORY))
    if instances is not None:
        if cores_max is not None:
            raise ValueError(
                "set spark.cores.max or spark.executor.instances, not both: the standalone scheduler sizes an "
                "application by spark.cores.max, which spark-mcp derives from spark.executor.instances"
            )
        if executor_cores is None:
            raise ValueError(
                "spark.executor.instances needs spark.executor.cores: the standalone scheduler ignores the "
                "instance count, so spark-mcp sets spark.cores.max = instances x executor cores"
            )
        cores_max = instances * executor_cores
    elif cores_max is None:
        cores_max = cores
    if executor_cores is not None and executor_cores > cores_max:
        raise ValueError(
            f"spark.executor.cores = {executor_cores} is more than the {cores_max} core(s) this driver may take "
            "(spark.cores.max, or the profile's cores): it would never get an executor"
        )
    executors = math.ceil(cores_max / executor_cores) if executor_cores else cores_max
    return ExecutorAsk(cores_max, executor_cores, memory, executors)
