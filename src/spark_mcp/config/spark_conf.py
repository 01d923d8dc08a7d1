"""What Spark settings a config may set: one allowlist for ``driver.spark_conf`` and profiles.

spark-mcp starts every driver with settings that carry its security invariants (loopback
binding, no UI, no ``${...}`` substitution, no SQL on files, private scratch space, its own
catalog, full plan text). Those are ``MANAGED_KEYS``: a config may not set them, and the
driver's argv puts them *after* everything a config adds, so even a key that slipped
through could not undo them (spark-submit keeps the last ``--conf`` of a key).

A config may set only what ``ALLOWED_KEYS`` and ``ALLOWED_FAMILIES`` list: tuning
(partitions, memory, adaptive execution, broadcast thresholds), file-format options and
object-store connection settings. Anything else is refused with the reason, whether it is
dangerous (``spark.sql.extensions``, ``spark.plugins``, ``spark.jars*``,
``*.extraJavaOptions``, ``spark.connect.*``, ``spark.ui.*``, ``spark.sql.legacy.*``) or just
unknown here: a new key is added to the list after someone has read what it does.

Secrets never go in Spark settings: they would be in the driver's argv, which every local
user can read in ``/proc``. A key that names a secret (``...secret.key``, ``...password``,
``...token``) is refused with a pointer to ``[profiles.NAME.credentials]``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

# Set by spark-mcp on every driver (see ``drivers.command_line.managed_settings``): never by config.
MANAGED_KEYS = frozenset(
    {
        "spark.connect.grpc.binding.address",
        "spark.connect.grpc.binding.port",
        "spark.connect.session.manager.defaultSessionTimeout",
        "spark.driver.bindAddress",
        "spark.driver.host",
        "spark.ui.enabled",
        "spark.sql.variable.substitute",
        "spark.sql.runSQLOnFiles",
        "spark.sql.debug.maxToStringFields",
        "spark.sql.warehouse.dir",
        "spark.local.dir",
        "spark.driver.extraJavaOptions",
        "spark.sql.catalogImplementation",
        "spark.hadoop.javax.jdo.option.ConnectionURL",
        "spark.mcp.driver.id",
        # from driver.task_kill_timeout_s: a killed task that will not stop is dealt with (drivers.stuck_tasks)
        "spark.task.reaper.enabled",
        "spark.task.reaper.killTimeout",
        "spark.task.reaper.pollingInterval",
        "spark.task.reaper.threadDump",
        "spark.kerberos.principal",  # from [profiles.NAME.credentials], never from spark_conf
        "spark.kerberos.keytab",
        # the gateway's analysis plugin (drivers.analysis_plugin)
        "spark.jars",
        "spark.connect.extensions.relation.classes",
    }
)

# Exact keys a config may set. Each is tuning or semantics that policy checks do not rely on.
ALLOWED_KEYS = frozenset(
    {
        # parallelism and memory
        "spark.default.parallelism",
        "spark.sql.shuffle.partitions",
        "spark.driver.maxResultSize",
        "spark.driver.memoryOverhead",
        "spark.executor.memory",
        "spark.executor.memoryOverhead",
        "spark.executor.cores",
        "spark.executor.instances",
        "spark.cores.max",
        "spark.memory.fraction",
        "spark.memory.storageFraction",
        "spark.memory.offHeap.enabled",
        "spark.memory.offHeap.size",
        "spark.dynamicAllocation.enabled",
        "spark.dynamicAllocation.minExecutors",
        "spark.dynamicAllocation.maxExecutors",
        "spark.dynamicAllocation.initialExecutors",
        "spark.task.maxFailures",
        "spark.locality.wait",
        "spark.speculation",
        "spark.network.timeout",
        # query planning and execution
        "spark.sql.adaptive.enabled",
        "spark.sql.adaptive.coalescePartitions.enabled",
        "spark.sql.adaptive.skewJoin.enabled",
        "spark.sql.adaptive.advisoryPartitionSizeInBytes",
        "spark.sql.autoBroadcastJoinThreshold",
        "spark.sql.broadcastTimeout",
        "spark.sql.cbo.enabled",
        "spark.sql.cbo.joinReorder.enabled",
        "spark.sql.codegen.wholeStage",
        "spark.sql.statistics.histogram.enabled",
        "spark.sql.inMemoryColumnarStorage.compressed",
        "spark.sql.inMemoryColumnarStorage.batchSize",
        "spark.sql.execution.arrow.maxRecordsPerBatch",
        "spark.sql.execution.arrow.maxBytesPerBatch",
        "spark.sql.execution.arrow.compression.codec",  # results to clients: none, zstd or lz4
        "spark.sql.execution.arrow.compression.zstd.level",
        "spark.sql.session.timeZone",
        "spark.sql.ansi.enabled",
        # files and formats
        "spark.sql.files.maxPartitionBytes",
        "spark.sql.files.openCostInBytes",
        "spark.sql.files.maxRecordsPerFile",
        "spark.sql.files.ignoreCorruptFiles",
        "spark.sql.files.ignoreMissingFiles",
        "spark.sql.sources.partitionOverwriteMode",
        "spark.sql.parquet.compression.codec",
        "spark.sql.parquet.filterPushdown",
        "spark.sql.parquet.mergeSchema",
        "spark.sql.orc.compression.codec",
        "spark.sql.orc.filterPushdown",
    }
)

# Families of keys a config may set: object-store connection settings, for datasets that live
# there. ``.impl`` keys (which class serves a file system) are excluded: they choose code.
ALLOWED_FAMILIES = (
    "spark.hadoop.fs.s3a.",
    "spark.hadoop.fs.gs.",
    "spark.hadoop.fs.azure.",
)

_KEY = re.compile(r"spark\.[A-Za-z0-9_\-]+(\.[A-Za-z0-9_\-]+)*")
_SECRET_WORDS = re.compile(r"(secret|password|passwd|token|credential|private|\.key(\.|$))", re.I)
# Whole families spark-mcp owns: how clients reach a driver and what it trusts.
_MANAGED_FAMILIES = ("spark.mcp.", "spark.connect.")
# Within them, only how long a result stream runs before the client must reattach: tuning
# that changes neither who reaches the driver nor what it trusts.
CONNECT_TUNING_KEYS = frozenset(
    {
        "spark.connect.execute.reattachable.senderMaxStreamSize",
        "spark.connect.execute.reattachable.senderMaxStreamDuration",
    }
)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_MAX_VALUE = 4096


def conf_problem(key: str, value: object) -> str | None:
    """Why ``key = value`` may not be set from config, or None when it may."""
    if not isinstance(key, str) or not _KEY.fullmatch(key):
        return f"{key!r} is not a Spark setting (spark.<name>, letters, digits, '_', '-' and dots)"
    if not isinstance(value, str):
        return f"{key}: the value must be a string"
    if key in CONNECT_TUNING_KEYS:
        bad = len(value) > 64 or _CONTROL.search(value)
        return f"{key}: the value must be at most 64 characters without control characters" if bad else None
    if key in MANAGED_KEYS or key.startswith(_MANAGED_FAMILIES):
        return f"{key} is managed by spark-mcp for safety and cannot be changed"
    if _SECRET_WORDS.search(key):
        return (
            f"{key} looks like a secret: Spark settings are in the driver's command line, which other "
            "local users can read; put secrets in [profiles.NAME.credentials] (secret_env or files)"
        )
    family = next((f for f in ALLOWED_FAMILIES if key.startswith(f)), None)
    if key not in ALLOWED_KEYS and (family is None or key.endswith(".impl")):
        return (
            f"{key} is not on the list of settings a config may change (tuning, file formats and "
            "object-store connections; see spark_mcp/config/spark_conf.py)"
        )
    if len(value) > _MAX_VALUE or _CONTROL.search(value):
        return f"{key}: the value must be at most {_MAX_VALUE} characters without control characters"
    return None


def check_spark_conf(conf: Mapping[str, object]) -> dict[str, str]:
    """``conf`` unchanged if every entry may be set; ``ValueError`` naming each one that may not."""
    problems = [problem for key, value in conf.items() if (problem := conf_problem(key, value)) is not None]
    if problems:
        raise ValueError("; ".join(problems))
    return {str(k): str(v) for k, v in conf.items()}
