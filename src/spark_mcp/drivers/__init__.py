"""Drivers: Spark Connect server processes that spark-mcp starts, shares out and supervises.

- ``environment``: where Spark and Java are, and whether they are usable.
- ``process``: spawning, identifying (pid + start time) and stopping processes.
- ``files``: a driver's private folder, its token file and credential copies.
- ``profiles``: what a driver is (engine, backend, cores, memory, settings, credentials).
- ``credentials``: a profile's secrets, handed to one driver and registered for redaction.
- ``local``: the local backend: a ``SparkConnectServer`` JVM from pyspark's own jars.
- ``quotas``: the pure admission decision (max drivers, per user, memory, the machine).
- ``reaper``: the pure choice of idle and too-old drivers to stop.
- ``warm``: the warm pool of prepared spare drivers.
- ``owners``: who a driver serves under each share level, and whom it counts against.
- ``fleet``: drivers by owner and profile; acquire, release, stop, supervise.
- ``recovery``: at start, re-adopt persistent drivers, stop orphans, forget the dead.
"""

from spark_mcp.drivers.base import Driver, DriverState, Lifetime
from spark_mcp.drivers.fleet import Fleet, FleetHooks
from spark_mcp.drivers.owners import owner_key
from spark_mcp.drivers.profiles import Profile

__all__ = ["Driver", "DriverState", "Fleet", "FleetHooks", "Lifetime", "Profile", "owner_key"]
