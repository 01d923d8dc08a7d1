"""A notebook user's PySpark, through the gateway: what works directly must work here too, within policy.

Each test runs the DataFrame and session API a person in a notebook relies on, through a
real gateway with PySpark's own client, as a user whose policy allows the tables used
(alice reads ``tpch.*``; erin writes ``staging.*``). Every feature here was first checked
to work when connected to the same driver directly.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from pyspark.sql.connect import functions as F
from pyspark.sql.connect.session import SparkSession
from pyspark.sql.connect.window import Window

from spark_mcp.app import App
from spark_mcp.audit import tail
from tests.gateway_support import failure, off_loop, serving_gateway, status_of

pytestmark = [pytest.mark.anyio, pytest.mark.spark]


@pytest.fixture(scope="module")
async def clients(app: App) -> AsyncIterator[dict[str, SparkSession]]:
    async with serving_gateway(app, "alice", "erin") as gateway:
        yield {user: await off_loop(lambda user=user: gateway.client(user)) for user in ("alice", "erin")}


def _dataframe_api(spark: SparkSession) -> dict[str, Any]:
    # PySpark binds a checkpointed DataFrame to the thread's active session, which a notebook
    # has (its one session); this worker thread may hold another test's, or none.
    SparkSession._active_session.session = spark
    nation = spark.table("tpch.nation")
    region = spark.table("tpch.region")
    by_region = Window.partitionBy("n_regionkey").orderBy("n_name")
    out: dict[str, Any] = {
        "toPandas": len(nation.toPandas()),
        "toArrow": nation.toArrow().num_rows,
        "wide collect": len(spark.table("tpch.lineitem").limit(20000).collect()),
        "describe": len(nation.describe().collect()),
        "summary": len(nation.summary().collect()),
        "na": (nation.na.fill(0).count(), nation.na.drop().count(), nation.na.replace("PERU", "X").count()),
        "corr": round(nation.stat.corr("n_nationkey", "n_regionkey"), 6),
        "cov": round(nation.stat.cov("n_nationkey", "n_regionkey"), 6),
        "crosstab": len(nation.stat.crosstab("n_regionkey", "n_nationkey").collect()),
        "freqItems": len(nation.stat.freqItems(["n_regionkey"]).collect()),
        "approxQuantile": nation.stat.approxQuantile("n_nationkey", [0.5], 0.0),
        "sampleBy": nation.stat.sampleBy("n_regionkey", {0: 1.0}, 1).count(),
        "window": len(nation.withColumn("r", F.row_number().over(by_region)).collect()),
        "pivot": len(nation.groupBy("n_regionkey").pivot("n_name").count().columns),
        "pivot values": nation.groupBy("n_regionkey").pivot("n_name", ["PERU", "CHINA"]).count().columns,
        "cube": nation.cube("n_regionkey").count().count(),
        "rollup": nation.rollup("n_regionkey").count().count(),
        "groupingSets": nation.groupingSets([["n_regionkey"], []], "n_regionkey").count().count(),
        "unionByName": nation.select("n_name")
        .unionByName(nation.select("n_regionkey"), allowMissingColumns=True)
        .count(),
        "dropDuplicates": nation.dropDuplicates(["n_regionkey"]).count(),
        "withColumnsRenamed": nation.withColumnsRenamed({"n_name": "name"}).columns[1],
        "colRegex": len(nation.select(nation.colRegex("`n_.*key`")).columns),
        "self-join": nation.alias("a")
        .join(nation.alias("b"), F.col("a.n_nationkey") == F.col("b.n_regionkey"))
        .count(),
        "broadcast": nation.join(region.hint("broadcast"), F.col("n_regionkey") == F.col("r_regionkey")).count(),
        "toJSON": nation.toJSON().count(),
        "isEmpty": nation.isEmpty(),
        "first/head/take/tail": (
            nation.first() is not None,
            len(nation.head(2)),
            len(nation.take(3)),
            len(nation.tail(2)),
        ),
        "limit/offset": nation.limit(5).offset(2).count(),
        "partitions": (
            nation.sortWithinPartitions("n_name").count(),
            nation.repartition(3).count(),
            nation.coalesce(1).count(),
            nation.repartitionByRange(2, "n_name").count(),
        ),
        "dtypes": nation.dtypes[0],
        "scalar subquery": nation.select(region.select(F.max("r_regionkey")).scalar()).distinct().count(),
        "sql args": (
            spark.sql("SELECT n_name FROM tpch.nation WHERE n_nationkey = :k", args={"k": 3}).count(),
            spark.sql("SELECT n_name FROM tpch.nation WHERE n_nationkey = ?", args=[3]).count(),
            spark.sql("SELECT count(*) AS n FROM {df}", df=nation).first().n,  # type: ignore[union-attr]
        ),
        "range": spark.range(100_000_000).count(),
        "localCheckpoint": (
            nation.localCheckpoint().filter("n_regionkey = 1").count(),
            nation.select("n_name").localCheckpoint(eager=False).join(region, F.lit(True)).count(),
        ),
    }
    for mode in ("simple", "extended", "codegen", "cost", "formatted"):
        nation.explain(mode=mode)
    nation.printSchema()
    nation.show(3)
    cached = nation.filter("n_regionkey > 1").cache()
    level = str(cached.storageLevel)
    out["cache"] = (cached.count(), cached.is_cached, level != "", cached.unpersist(True) is not None)
    return out


async def test_the_dataframe_api_works_through_the_gateway(clients: dict[str, SparkSession]) -> None:
    out = await off_loop(lambda: _dataframe_api(clients["alice"]))
    assert out["toPandas"] == out["toArrow"] == 25
    assert out["wide collect"] == 20000
    assert out["pivot"] == 26 and out["pivot values"] == ["n_regionkey", "PERU", "CHINA"]
    assert out["unionByName"] == 50 and out["dropDuplicates"] == 5 and out["withColumnsRenamed"] == "name"
    assert out["first/head/take/tail"] == (True, 2, 3, 2) and out["limit/offset"] == 3
    assert out["partitions"] == (25, 25, 25, 25) and out["scalar subquery"] == 1
    assert out["sql args"] == (1, 1, 25) and out["range"] == 100_000_000
    assert out["cache"] == (15, True, True, True)
    assert out["localCheckpoint"] == (5, 125)


def _namespaces(spark: SparkSession) -> dict[str, Any]:
    out: dict[str, Any] = {}
    spark.sql("USE DATABASE tpch")  # as ibis moves to a table's namespace for a while...
    out["in tpch"] = (spark.catalog.currentDatabase(), spark.table("nation").count())
    spark.sql("USE SCHEMA default")  # ...and back to the one the session started in
    out["back"] = spark.catalog.currentDatabase()
    spark.sql("USE NAMESPACE sales")
    spark.sql("USE default")
    out["refused"] = str(failure(lambda: spark.sql("USE SCHEMA hr")))
    out["after"] = spark.catalog.currentDatabase()
    spark.catalog.setCurrentDatabase("tpch")  # the catalog API alike
    spark.catalog.setCurrentDatabase("default")
    out["api"] = spark.catalog.currentDatabase()
    out["api refused"] = str(failure(lambda: spark.catalog.setCurrentDatabase("hr")))
    return out


async def test_use_database_schema_and_namespace_move_within_the_policy(clients: dict[str, SparkSession]) -> None:
    # USE DATABASE|SCHEMA|NAMESPACE x is another plan than USE x (SetNamespaceCommand), which the
    # checker once did not know: ibis, which moves to a table's namespace and back, failed.
    out = await off_loop(lambda: _namespaces(clients["alice"]))
    assert out["in tpch"] == ("tpch", 25)
    assert out["back"] == out["after"] == out["api"] == "default"  # alice reads nothing there, but it is the start
    assert "alice may not read spark_catalog.hr.*: denied by role analyst (hr.*)" in out["refused"], out["refused"]
    assert "alice may not read anything in spark_catalog.hr: denied by role analyst" in out["api refused"]


def _writes(spark: SparkSession) -> list[int]:
    nation = spark.table("tpch.nation")
    spark.sql("CREATE NAMESPACE IF NOT EXISTS staging")
    nation.write.mode("overwrite").saveAsTable("staging.feat_n")
    nation.write.insertInto("staging.feat_n")
    nation.write.insertInto("staging.feat_n", overwrite=True)
    nation.write.mode("append").format("parquet").saveAsTable("staging.feat_n")
    nation.write.mode("overwrite").partitionBy("n_regionkey").saveAsTable("staging.feat_parts")
    nation.write.mode("overwrite").bucketBy(2, "n_nationkey").sortBy("n_nationkey").saveAsTable("staging.feat_bk")
    spark.sql("DROP TABLE IF EXISTS staging.feat_v2")
    nation.writeTo("staging.feat_v2").using("parquet").create()
    spark.sql("INSERT OVERWRITE staging.feat_v2 SELECT * FROM tpch.nation WHERE n_regionkey = 1")
    counts = [spark.table(f"staging.{t}").count() for t in ("feat_n", "feat_parts", "feat_bk", "feat_v2")]
    for table in ("feat_n", "feat_parts", "feat_bk", "feat_v2"):
        spark.sql(f"DROP TABLE staging.{table}")
    return counts


async def test_writes_into_an_allowed_namespace_work_through_the_gateway(clients: dict[str, SparkSession]) -> None:
    assert await off_loop(lambda: _writes(clients["erin"])) == [50, 25, 25, 5]


async def test_sql_set_of_a_harmless_setting_works_like_spark_conf_set(
    clients: dict[str, SparkSession], app: App
) -> None:
    alice = clients["alice"]
    # A notebook's %sql cell sets the time zone or the shuffle width in SQL, as spark.conf.set may.
    await off_loop(lambda: alice.sql("SET TIME ZONE 'America/Lima'"))
    assert await off_loop(lambda: alice.conf.get("spark.sql.session.timeZone")) == "America/Lima"
    await off_loop(lambda: alice.sql("SET spark.sql.shuffle.partitions = 7"))
    assert await off_loop(lambda: alice.sql("SET spark.sql.shuffle.partitions").first()[1]) == "7"  # type: ignore[index]
    await off_loop(lambda: alice.conf.set("spark.sql.session.timeZone", "UTC"))
    # Audited for what they are: a setting of one's own session (sql.read), in SQL and through Config.
    records = tail(app.config.audit_path, 40, principal="alice")
    in_sql = [r for r in records if r.statement == "SET spark.sql.shuffle.partitions = 7"]
    through_config = [r for r in records if r.tool == "spark_connect.Config" and "timeZone" in (r.statement or "")]
    assert [(r.kind, r.decision) for r in in_sql] == [("setting", "allowed")]
    assert through_config and (through_config[-1].kind, through_config[-1].decision) == ("setting", "allowed")
    # Every other key, listing them all (the driver's token among them), and RESET stay sql.admin.
    for text in (
        "SET",
        "SET -v",
        "SET spark.sql.warehouse.dir",
        "SET spark.sql.legacy.timeParserPolicy = LEGACY",
        "SET `spark.sql.shuffle.partitions,Some(` = 8",
        "SET spark.sql.shuffle.partitions=8; SET spark.sql.parser.quotedRegexColumnNames=true",
        "RESET",
        "RESET spark.sql.shuffle.partitions",
    ):
        exc = await off_loop(lambda text=text: failure(lambda: alice.sql(text).collect()))
        assert status_of(exc) is not None and status_of(exc).name == "PERMISSION_DENIED", (text, exc)  # type: ignore[union-attr]
        assert "sql.admin" in str(exc), (text, exc)


async def test_results_come_in_chunks_of_up_to_100000_rows(clients: dict[str, SparkSession]) -> None:
    # spark-mcp's drivers send a result in fewer, larger Arrow batches than Spark's default
    # of 10,000 rows: each batch is a message every hop pays for (drivers.profiles.SPARK_DEFAULTS).
    alice = clients["alice"]

    def chunks() -> tuple[str, list[int]]:
        table = alice.range(250_000).toArrow()
        return alice.conf.get("spark.sql.execution.arrow.maxRecordsPerBatch"), [b.num_rows for b in table.to_batches()]

    setting, sizes = await off_loop(chunks)
    assert setting == "100000"
    assert sum(sizes) == 250_000
    assert max(sizes) == 100_000, sizes


async def test_what_spark_analyses_but_cannot_optimize_behaves_as_it_does_directly(
    clients: dict[str, SparkSession],
) -> None:
    # The gateway's own analysis stops where Spark's analysis does (it explains the plan under
    # a limit of nothing, which the optimizer empties first), so a plan whose constant folding
    # fails (ANSI division by zero) has a schema, as it has directly, and fails when it runs.
    alice = clients["alice"]
    broken = alice.table("tpch.nation").select((F.lit(1) / F.lit(0)).alias("boom"), "n_name")
    assert await off_loop(lambda: broken.columns) == ["boom", "n_name"]
    assert "DIVIDE_BY_ZERO" in str(await off_loop(lambda: failure(broken.collect)))
    # What analysis rejects is still Spark's own word about the client's plan.
    exc = await off_loop(lambda: failure(lambda: alice.table("tpch.nation").select("n_nme").columns))
    assert "UNRESOLVED_COLUMN" in str(exc) and "n_nme" in str(exc) and "GlobalLimit 0" not in str(exc)
    # An operator only a stream can run: Spark's own word, not an unknown plan node for sql.admin.
    watermarked = alice.table("tpch.nation").withColumn("ts", F.current_timestamp()).withWatermark("ts", "1 minute")
    exc = await off_loop(lambda: failure(watermarked.dropDuplicatesWithinWatermark(["n_regionkey"]).count))
    assert "dropDuplicatesWithinWatermark is not supported with batch DataFrames" in str(exc), exc
