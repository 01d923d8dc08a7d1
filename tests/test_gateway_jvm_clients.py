"""Spark Connect's own JVM clients through the gateway: the Java/Scala client and the JDBC driver.

Notebooks are not the only Spark Connect clients: IDEs run the Scala client, and BI tools
take the JDBC driver (``jdbc:sc://``). Both ship with PySpark (``jars/connect-repl``) and
build their plans and calls their own way: a Java lambda as a UDF, typed ``map`` over a
Dataset, its own schema and config calls, and the JDBC driver's metadata calls (``getTables``,
``getColumns``), which run ``SHOW SCHEMAS`` and ``SHOW TABLES``. ``tests/fixtures/JvmClient.java`` runs one of each
through a real gateway to a real driver, with the class path Spark's own launcher gives the
Scala Connect shell; the same work must come back, and the same refusals must hold, with
the same policy reasons, as for PySpark.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pyspark
import pytest

from spark_mcp.app import App
from spark_mcp.drivers.environment import java_executable
from tests.gateway_support import Gateway, serving_gateway

pytestmark = [pytest.mark.anyio, pytest.mark.spark]

CLIENT = Path(__file__).resolve().parent / "fixtures" / "JvmClient.java"
JARS = Path(pyspark.__file__).resolve().parent / "jars"
_JAR = JARS / "connect-repl" / "spark-connect-client-jdbc_2.13-4.3.0.jar"  # a jar to upload, as code
# Spark's launcher leaves these out of the Connect shell's class path: the client shades them,
# or they are the classic (server) side.
_SERVER_SIDE = ("spark-sql_", "spark-connect_", "spark-sql-api_", "spark-connect-common_")
# What Spark's launcher opens for Arrow and Netty on Java 17 (``JavaModuleOptions``).
_OPENS = [
    f"--add-opens=java.base/{package}=ALL-UNNAMED"
    for package in ("java.lang", "java.nio", "java.util", "java.util.concurrent", "sun.nio.ch")
] + ["-Dio.netty.tryReflectionSetAccessible=true"]


def class_path() -> str:
    client = sorted((JARS / "connect-repl").glob("*.jar"))
    rest = sorted(j for j in JARS.glob("*.jar") if not j.name.startswith(_SERVER_SIDE))
    return os.pathsep.join(str(j) for j in [*client, *rest])


@pytest.fixture(scope="module")
async def gateway(app: App) -> AsyncIterator[Gateway]:
    async with serving_gateway(app, "alice") as found:
        yield found


async def test_the_jvm_client_and_the_jdbc_driver_are_governed_like_pyspark(gateway: Gateway) -> None:
    if not (JARS / "connect-repl" / "spark-connect-client-jvm_2.13-4.3.0.jar").exists():
        pytest.fail(f"PySpark's JVM Spark Connect client is missing from {JARS / 'connect-repl'}")
    java = java_executable(None, os.environ)
    assert java is not None, "Java is needed for the drivers, and for this client"
    modules = await anyio.run_process([str(java), "--list-modules"], check=False)
    assert b"jdk.compiler@" in modules.stdout, (
        f"{java} cannot run a Java source file (no jdk.compiler module): install a JDK, or on Debian and "
        "Ubuntu openjdk-17-jre-headless, which has it (see the README's prerequisites)"
    )
    token = gateway.tokens["alice"]
    url = f"sc://localhost:{gateway.port}/;token={token}"
    command = [str(java), *_OPENS, "-cp", class_path(), str(CLIENT), url, f"jdbc:{url}", str(_JAR)]
    done = await anyio.run_process(command, check=False, env=dict(os.environ))
    lines = [json.loads(line) for line in done.stdout.decode().splitlines() if line.startswith("{")]
    found = {line["case"]: line for line in lines}
    assert done.returncode == 0 and len(found) == 40, done.stderr.decode()[-3000:]

    def ok(case: str) -> str:
        assert "ok" in found[case], (case, found[case])
        return str(found[case]["ok"])

    def refused(case: str, words: str) -> None:
        assert "error" in found[case], (case, found[case])
        assert words in found[case]["error"], (case, found[case]["error"])

    # The same work as through PySpark.
    assert ok("count") == "25"
    assert ok("sql") == "5"
    assert ok("join") == "AFRICA"
    assert ok("temp_view") == "2"
    assert ok("schema") == "r_regionkey"
    assert ok("harmless_conf") == "UTC"
    assert ok("jdbc_count") == "25"
    assert ok("explain") == "explained"
    assert ok("sql_args") == "5"
    assert ok("version") == pyspark.__version__
    assert ok("local_data") == "2"
    assert ok("cache") == "5"
    assert ok("local_checkpoint") == "5"
    assert ok("big_collect") == "2000000"  # a result of many chunks, released as it is read
    # The same refusals, with the same policy reason and rule, as Spark exceptions labelled
    # with the refusal's code (without that label the client failed to convert them at all).
    reason = (
        "spark_mcp.policy_denied: policy_denied: alice may not read spark_catalog.hr.salaries: "
        'denied by role analyst (hr.*) [rule: roles.analyst.deny[1] "hr.*"]'
    )
    for case in ("denied_table", "denied_sql", "denied_join", "denied_schema", "denied_view"):
        refused(case, f"org.apache.spark.SparkException: {reason}")
    refused("jdbc_denied", f"java.sql.SQLException: {reason}")
    # Java code shipped to the driver: a lambda as a UDF, and a typed map over a Dataset.
    refused("udf", "code.run")
    refused("typed_map", "code.run")
    refused("group_map", "code.run")
    refused("foreach", "code.run")
    refused("artifact", "no role of alice grants code.run")
    refused("write", "no role of alice grants sql.ddl")
    refused("admin_conf", "spark.sql.warehouse.dir")
    refused("read_path", "uses path-based access (a text read of /etc/hostname")
    # Browsing, as an IDE or a BI tool does: only what alice may read (tpch.secret_codes and
    # everything in hr are hidden), her own temp view, and the columns of a readable table.
    hidden = "alice may not read anything in spark_catalog.hr"
    refused("catalog_hr", hidden)
    readable = "customer,lineitem,nation,orders,part,partsupp,region,supplier"
    assert ok("catalog_tables") == "customer,jvm_regions,lineitem,nation,orders,part,partsupp,region,supplier"
    assert ok("catalog_count") == "8"  # listTables("tpch").count(): tpch.secret_codes is not counted
    assert ok("catalog_select") == "sales,tpch"  # listDatabases().select("name"): no hr
    assert ok("jdbc_tables") == "sales.orders," + ",".join(f"tpch.{name}" for name in readable.split(","))
    assert ok("jdbc_columns") == "r_regionkey,r_name,r_comment"
    assert ok("jdbc_hr_columns") == ""
    assert ok("jdbc_schemas") == "sales,tpch"
    assert ok("jdbc_all_columns") == ok("jdbc_tables")  # the columns of every table it may read, no others
    assert ok("clone") == "5"
    # interruptAll() from another thread stops a long query (20 billion rows) after 3 s.
    refused("interrupt", "OPERATION_CANCELED")
    refused("denied_checkpoint", reason)
