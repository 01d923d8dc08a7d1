"""The Spark Connect gateway: IDEs and notebooks reach their own driver, under the agents' policy.

A Spark Connect client (PySpark, Scala, Go...) connects with
``sc://HOST:PORT/;token=<API token or JWT>``; every call is authenticated, routed to the
caller's own driver, governed by the same ``Governance.judge`` as ``run_sql`` and
``run_plan``, audited, and forwarded with the driver's own token.

    server.py      the grpc.aio server beside ``serve``; exposure rules (TLS, auth off loopback)
    service.py     the twelve RPCs of SparkConnectService, bytes in and out
    session_calls.py  the RPCs about the caller's own sessions and operations
    forward.py     a call passed on to the caller's driver, its answer as bytes
    calls.py       per call: authenticate, route, one audit record, errors as gRPC statuses
    identity.py    the caller, from its bearer token (the HTTP transport's verifiers)
    routing.py     which driver serves a principal, and the channel to it
    sessions.py    a caller's sessions, counted, and the driver each was on
    verdicts.py    a verdict reused for the very same plan, a moment later
    listings.py    which rows a catalog or SQL listing may show
    govern.py      plans and SQL: screen, analyse on the driver, judge
    analysis.py    Spark's analysis of a plan, in the caller's own session
    commands.py    writes, temp views, code registration, everything else
    catalog.py     spark.catalog.* calls, listings filtered
    conf.py        spark.conf: secrets redacted, only harmless keys set
    artifacts.py   addArtifact: data passes, code needs code.run
    connection.py  the connection string for a user (the console shows it)

Why this package imports ``grpc`` and the generated Spark Connect message classes
(``pyspark.sql.connect.proto``), though only ``spark/`` imports pyspark elsewhere: the
gateway's whole job is to speak the Spark Connect wire protocol, and those generated
classes are that protocol's vocabulary, not Spark client logic. What Spark does with a
message (what a plan ships, which relations Spark computes while planning, how to ask for
an analysis, what an answer carries) stays in ``spark/wire/``; nothing here opens a
PySpark session or starts a process.
"""

from spark_mcp.gateway.connection import connection_string
from spark_mcp.gateway.server import GatewayServer, check_gateway, running_gateway

__all__ = ["GatewayServer", "check_gateway", "connection_string", "running_gateway"]
