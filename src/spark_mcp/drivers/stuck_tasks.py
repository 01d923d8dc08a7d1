"""Drivers whose cancelled Spark tasks will not stop.

Spark stops a cancelled task only where its generated code checks for it, between input
batches. A tight inner loop, such as a nested-loop join against a large broadcast side, can
run for many minutes after its job was cancelled. It holds the task slots and the cores all
that time, although spark-mcp already reported the query cancelled or timed out. Nothing
outside the JVM can stop one task.

Spark's task reaper (``local.task_reaper_settings``, from ``driver.task_kill_timeout_s``)
watches every killed task. On a cluster, past the timeout, it ends the executor's JVM and
the worker starts a new one. In local mode the executor is the driver, so the reaper only
logs that it gave up. ``StuckTaskWatch`` reads each local driver's reaper log for that line,
and the fleet then stops the driver. Its sessions end, saying why, and the next call gets a
new driver.

The line is read from a file of its own (``REAPER_LOG``, set up by ``LOG4J_CONFIG``), not
from the driver's log: that log carries users' text (a ``raise_error`` message, a statement
quoted in an error), so anyone could write a line that looks like the reaper's there and have
a shared driver stopped. The reaper log holds only the error events of Spark's executor
package, one per line (line breaks in a message are encoded), each starting with its
logger's name; a user's text never starts one of those lines.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from spark_mcp.drivers.base import Driver, DriverState
from spark_mcp.drivers.files import LogFollower

STUCK_LINE = re.compile(
    r"org\.apache\.spark\.executor\.Executor(?:\$TaskReaper)? "
    r"Killed task (\d+) could not be stopped within (\d+) ms; not killing JVM"
)
REAPER_LOG = "task-reaper.log"
LOG4J_FILE = "log4j2.properties"
# Spark's own defaults (log4j2-defaults.properties, which a driver otherwise loads), plus the
# reaper log: the error events of org.apache.spark.executor, each on one line.
LOG4J_CONFIG = """\
rootLogger.level = info
rootLogger.appenderRef.stdout.ref = console
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d{{yy/MM/dd HH:mm:ss}} %p %c{{1}}: %m%n%ex
appender.reaper.type = File
appender.reaper.name = reaper
appender.reaper.fileName = {reaper_log}
appender.reaper.layout.type = PatternLayout
appender.reaper.layout.pattern = %c %enc{{%m}}{{CRLF}}%n
appender.reaper.layout.alwaysWriteExceptions = false
appender.reaper.filter.threshold.type = ThresholdFilter
appender.reaper.filter.threshold.level = error
logger.executor.name = org.apache.spark.executor
logger.executor.appenderRef.reaper.ref = reaper
logger.jetty.name = org.sparkproject.jetty
logger.jetty.level = warn
logger.jetty2.name = org.sparkproject.jetty.util.component.AbstractLifeCycle
logger.jetty2.level = error
logger.metastore.name = org.apache.hadoop.hive.metastore.RetryingHMSHandler
logger.metastore.level = fatal
logger.metastore2.name = org.apache.hadoop.hive.metastore.ObjectStore
logger.metastore2.level = error
logger.parquet.name = org.apache.parquet.CorruptStatistics
logger.parquet.level = error
logger.parquet2.name = parquet.CorruptStatistics
logger.parquet2.level = error
"""
# Only these run a JVM driver whose executor is itself; a standalone driver's executors are
# ended by Spark, and a Kubernetes driver's log is in its pod (see the README's known limits).
WATCHED_BACKENDS = frozenset({"local"})


def task_reaper_settings(kill_timeout_s: float) -> list[tuple[str, str]]:
    """Spark's task reaper watches every killed task for ``kill_timeout_s``.

    A cancelled task stops only where its generated code checks (between input batches): a
    tight loop, such as a nested-loop join against a large broadcast side, can run on for many
    minutes, holding its cores after its query was reported cancelled. Past the timeout the
    reaper ends a cluster executor's JVM; in local mode it only logs, and ``stuck_tasks``
    reads that line (``StuckTaskWatch``). Its thread dumps are off: one per poll and task
    would flood the log.
    """
    if kill_timeout_s <= 0:
        return []
    poll_s = min(10.0, max(1.0, kill_timeout_s / 4))
    return [
        ("spark.task.reaper.enabled", "true"),
        ("spark.task.reaper.killTimeout", f"{round(kill_timeout_s * 1000)}ms"),
        ("spark.task.reaper.pollingInterval", f"{round(poll_s * 1000)}ms"),
        ("spark.task.reaper.threadDump", "false"),
    ]


def write_log_config(workdir: Path) -> Path:
    """The driver's log4j configuration, in its private folder (``-Dlog4j2.configurationFile``)."""
    path = workdir / LOG4J_FILE
    path.write_text(LOG4J_CONFIG.format(reaper_log=workdir / REAPER_LOG))
    return path


def stuck_task_ids(lines: Iterable[str]) -> list[str]:
    """The ids of the tasks the reaper gave up on, in the order the lines of its log name them."""
    return [match.group(1) for line in lines if (match := STUCK_LINE.match(line)) is not None]


@dataclass(frozen=True)
class StuckDriver:
    driver: Driver
    task_ids: list[str]

    def reason(self, kill_timeout_s: float) -> str:
        tasks = ", ".join(self.task_ids)
        return (
            f"its driver was stopped: Spark could not stop the tasks ({tasks}) of a cancelled or timed-out "
            f"query within driver.task_kill_timeout_s ({kill_timeout_s:g} s), and they kept its cores busy"
        )


class StuckTaskWatch:
    """Follows the reaper logs of the fleet's local Spark drivers; not thread-safe (one caller at a time)."""

    def __init__(self) -> None:
        self._logs: dict[str, LogFollower] = {}

    def scan(self, drivers: Iterable[Driver]) -> list[StuckDriver]:
        """The ready drivers whose reaper log says, since the last scan, that a task could not be stopped."""
        watched = [
            d for d in drivers if d.state is DriverState.READY and d.engine == "spark" and d.backend in WATCHED_BACKENDS
        ]
        for gone in self._logs.keys() - {d.id for d in watched}:
            del self._logs[gone]
        stuck = []
        for driver in watched:
            follower = self._logs.setdefault(driver.id, LogFollower(driver.workdir / REAPER_LOG))
            task_ids = stuck_task_ids(follower.lines())
            if task_ids:
                stuck.append(StuckDriver(driver, task_ids))
        return stuck
