"""Drivers: Spark Connect server processes that spark-mcp starts and supervises.

- ``environment``: where Spark and Java are, and whether they are usable.
- ``process``: spawning, identifying and stopping processes (the only process code).
- ``state``: per-driver state files (0600 in 0700 folders) so ``spark-mcp drivers`` can see them.
- ``local``: the local backend: a ``SparkConnectServer`` JVM from pyspark's own jars.
- ``pool``: one driver per principal, started on demand, supervised, stopped at exit.
"""

from spark_mcp.drivers.base import Driver, DriverState
from spark_mcp.drivers.pool import DriverPool

__all__ = ["Driver", "DriverPool", "DriverState"]
