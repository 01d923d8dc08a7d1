"""The gateway's analysis plugin: one analysis gives a client's schema and the plan governance reads.

The plugin (``drivers/AnalysisPlugin.java``) is compiled against this pyspark's jars and
loaded into real drivers. Its plan text must read exactly as ``EXPLAIN EXTENDED``'s, and
the schema it answers with must be exactly the client's own; clients must never reach it.
"""

from __future__ import annotations

import logging
import os
import re
import stat
import uuid
import zipfile
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import grpc
import pytest
import structlog
from pyspark.sql.connect import functions as F
from pyspark.sql.connect.proto import base_pb2, base_pb2_grpc, relations_pb2
from pyspark.sql.connect.session import SparkSession
from structlog.testing import capture_logs
from structlog.typing import EventDict

from spark_mcp.app import App
from spark_mcp.config import Config
from spark_mcp.drivers import analysis_plugin
from spark_mcp.drivers.analysis_plugin import AnalysisPluginJar
from spark_mcp.drivers.base import Driver
from spark_mcp.drivers.class_cache import cache_key, prune_others
from spark_mcp.drivers.environment import check_java
from spark_mcp.spark.connect import open_session
from spark_mcp.spark.inspect.classify import inspect_explain
from spark_mcp.spark.wire.analysed import PLAN_TEXT_START, TYPE_URL, analysed_relation, split_answer
from spark_mcp.spark.wire.requests import nothing_of
from spark_mcp.statement import StatementFacts
from tests.gateway_support import Gateway, failure, off_loop, serving_gateway, status_of
from tests.helpers import make_config

DENIED = "alice may not read spark_catalog.hr.salaries: denied by role analyst (hr.*)"


# -- pure logic -----------------------------------------------------------------------------


def test_the_java_plugin_and_the_gateway_agree_on_the_extension_type() -> None:
    source = analysis_plugin.SOURCE.read_text()
    assert f'TYPE_URL = "{TYPE_URL}"' in source
    assert f"package {analysis_plugin.CLASS_NAME.rsplit('.', 1)[0]};" in source
    assert f"class {analysis_plugin.CLASS_NAME.rsplit('.', 1)[1]} " in source


def _schema_answer(*names: str) -> bytes:
    response = base_pb2.AnalyzePlanResponse(session_id="s", server_side_session_id="x")
    for name in names:
        field = response.schema.schema.struct.fields.add()
        field.name = name
        field.data_type.string.SetInParent()
        field.nullable = True
    return bytes(response.SerializeToString())


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (_schema_answer("a", "b", f"{PLAN_TEXT_START}\nProject"), (f"{PLAN_TEXT_START}\nProject", ["a", "b"])),
        (_schema_answer(f"{PLAN_TEXT_START}\nLocalRelation"), (f"{PLAN_TEXT_START}\nLocalRelation", [])),
        (_schema_answer("a", "b"), None),  # a driver's plain schema: not the plugin's
        (_schema_answer(), None),
        (base_pb2.AnalyzePlanResponse(session_id="s").SerializeToString(), None),
    ],
)
def test_the_plan_text_is_taken_off_the_end_and_the_rest_is_the_clients_answer(
    answer: bytes, expected: tuple[str, list[str]] | None
) -> None:
    split = split_answer(answer)
    if expected is None:
        assert split is None
        return
    assert split is not None
    text, rest = split
    parsed = base_pb2.AnalyzePlanResponse.FromString(rest)
    assert (text, [f.name for f in parsed.schema.schema.struct.fields]) == expected
    assert (parsed.session_id, parsed.server_side_session_id) == ("s", "x")


def test_a_folder_spark_would_misread_or_a_config_that_says_no_means_no_plugin(tmp_path: Path) -> None:
    assert AnalysisPluginJar(tmp_path / "with,comma").directory is None
    assert AnalysisPluginJar(tmp_path / "with space").directory is None
    off = make_config(tmp_path / "home", tmp_path, datasets=[], driver={"analysis_plugin": False})
    assert AnalysisPluginJar.for_config(off, {"HOME": str(tmp_path)}).jar(Path("/bin/false")) is None


def test_the_jar_belongs_to_its_install_so_the_class_archives_pruning_takes_it_with_the_rest(
    tmp_path: Path,
) -> None:
    home = tmp_path / "spark"
    (home / "jars").mkdir(parents=True)
    (home / "jars" / "spark-core.jar").write_bytes(b"x")
    java = tmp_path / "java"
    java.write_bytes(b"")
    key = cache_key(java, home)
    ours = tmp_path / "cache" / analysis_plugin._jar_name(java, home)
    older = tmp_path / "cache" / "0123456789abcdef.analysis-plugin-000000000000.jar"
    ours.parent.mkdir()
    for path in (ours, older, ours.with_name(f"{key}.jsa")):
        path.write_bytes(b"")
    os.utime(older, (0, 0))  # another install's, unused for long
    prune_others(ours.parent, key)
    assert ours.exists() and not older.exists()


def test_doctor_says_whether_the_plugin_is_made(tmp_path: Path) -> None:
    home = tmp_path / "spark"
    (home / "jars").mkdir(parents=True)
    java = tmp_path / "java"
    java.write_bytes(b"")
    plugin = AnalysisPluginJar(tmp_path / "cache", home)
    assert plugin.status(java).startswith("not made yet: the next driver's start compiles it")
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / analysis_plugin._jar_name(java, home)).write_bytes(b"")
    assert plugin.status(java).endswith(": local and standalone drivers load it")
    assert AnalysisPluginJar(None, home).status(java).startswith("off")


def test_a_java_that_cannot_compile_leaves_drivers_without_the_plugin_and_is_not_asked_again(
    tmp_path: Path,
) -> None:
    # A fault a real Java cannot be made to show on demand: a "java" without the compiler module.
    calls = tmp_path / "calls"
    java = tmp_path / "java"
    java.write_text(f'#!/bin/sh\necho run >> {calls}\necho "module jdk.compiler not found" >&2\nexit 1\n')
    java.chmod(java.stat().st_mode | stat.S_IXUSR)
    plugin = AnalysisPluginJar(tmp_path / "cache")
    with capture_logs() as logged:
        assert plugin.jar(java) is None
        assert plugin.jar(java) is None
    assert calls.read_text() == "run\n"
    warning = next(e for e in logged if e["event"] == "analysis_plugin.off")
    assert "module jdk.compiler not found" in warning["reason"]
    assert not list((tmp_path / "cache").glob("*.jar"))


def test_a_java_that_never_answers_costs_at_most_a_drivers_start(tmp_path: Path) -> None:
    # A fake again: a "java" that hangs (as the fault tests' never-ready launcher does).
    java = tmp_path / "java"
    java.write_text("#!/bin/sh\nsleep 30\n")
    java.chmod(java.stat().st_mode | stat.S_IXUSR)
    config = make_config(tmp_path / "home", tmp_path, datasets=[], driver={"startup_timeout_s": 1})
    environ = {"HOME": str(tmp_path), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    with capture_logs() as logged:
        assert AnalysisPluginJar.for_config(config, environ).jar(java) is None
    assert "took longer than 1 s" in next(e for e in logged if e["event"] == "analysis_plugin.off")["reason"]


@pytest.mark.spark  # runs Java's compiler: a JVM
def test_the_plugin_compiles_with_the_drivers_own_java_into_a_private_folder(tmp_path: Path) -> None:
    java = check_java(None, os.environ).executable
    assert java is not None
    plugin = AnalysisPluginJar(tmp_path / "cache")
    jar = plugin.jar(java)
    assert jar is not None and jar.parent == tmp_path / "cache"
    assert "dev/sparkmcp/AnalysisPlugin.class" in zipfile.ZipFile(jar).namelist()
    assert stat.S_IMODE(jar.parent.stat().st_mode) == 0o700
    assert [p.name for p in jar.parent.iterdir()] == [jar.name]  # no partial file left behind
    assert plugin.jar(java) == jar  # made once


# -- real drivers ---------------------------------------------------------------------------

pytestmark = [pytest.mark.anyio]


@pytest.fixture(scope="module")
async def gateway(app: App) -> AsyncIterator[Gateway]:
    async with serving_gateway(app, "alice") as served:
        yield served


async def _alices_driver(gateway: Gateway) -> tuple[SparkSession, Driver]:
    spark = await off_loop(lambda: gateway.client("alice"))
    await off_loop(lambda: spark.sql("SELECT 1").collect())
    driver = gateway.app.drivers.current("alice")
    assert driver is not None
    return spark, driver


def _relations(spark: SparkSession) -> dict[str, relations_pb2.Relation]:
    nation, region = spark.table("tpch.nation"), spark.table("tpch.region")
    spark.table("hr.salaries").createOrReplaceTempView("pay")
    frames = {
        "a table": nation,
        "a join, filtered": nation.join(region, F.col("n_regionkey") == F.col("r_regionkey")).where("r_name = 'ASIA'"),
        "a temp view over hr": spark.table("pay").select("name"),
        "an aggregate": nation.groupBy("n_regionkey").agg(F.count("*").alias("n")),
        "a subquery in a string": nation.where("n_nationkey IN (SELECT salary FROM hr.salaries)"),
        "a reflect call": spark.range(1).selectExpr("reflect('java.lang.System', 'getProperty', 'user.home')"),
        "a section header in a literal": nation.select(F.lit("\n== Optimized Logical Plan ==\n"), "n_name"),
        "local rows": spark.createDataFrame([(1, "a")], "x int, y string"),
        "a union with a sample": nation.select("n_name").union(region.select("r_name")).sample(0.5, seed=1),
    }
    found = {what: frame._plan.to_proto(spark.client).root for what, frame in frames.items()}
    for what, text in {
        "SQL reading hr": "SELECT s.name FROM hr.salaries s JOIN tpch.nation n ON n.n_nationkey = s.salary",
        "SQL listing": "SHOW TABLES IN tpch",
        "SQL dropping a table": "DROP TABLE plugin_probe",
        "SQL making a table": "CREATE TABLE plugin_new (a INT) USING parquet",
        "SQL changing a setting": "SET spark.sql.shuffle.partitions = 7",
    }.items():
        relation = relations_pb2.Relation()
        relation.sql.query = text
        found[what] = relation
    return found


@contextmanager
def debug_logs() -> Iterator[list[EventDict]]:
    """The server's log events, debug ones included (the tests' App logs at info)."""
    wrapper = structlog.get_config()["wrapper_class"]
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG))
    try:
        with capture_logs() as logged:
            yield logged
    finally:
        structlog.configure(wrapper_class=wrapper)


def _facts(text: str, *, root: bool) -> StatementFacts:
    # Under a limit of nothing the explain's root is the limit: then only the root may differ.
    facts = inspect_explain(text)
    return facts if root else replace(facts, operation="")


@pytest.mark.spark
async def test_the_plugins_plan_text_reads_exactly_as_spark_explains_the_same_relation(gateway: Gateway) -> None:
    _, driver = await _alices_driver(gateway)
    assert driver.analysis_plugin

    def compare() -> dict[str, tuple[StatementFacts, StatementFacts]]:
        session = open_session(driver, user_id=f"plugin-{uuid.uuid4().hex[:6]}")
        try:
            spark, client = session.spark, session.spark.client
            spark.sql("CREATE TABLE plugin_probe (a INT) USING parquet")
            partitions = spark.conf.get("spark.sql.shuffle.partitions")
            found = {}
            for what, relation in _relations(spark).items():
                plan = base_pb2.Plan(root=analysed_relation(relation))
                answer = client._analyze(method="schema", plan=plan).schema
                plugin_text = answer.fields[-1].name
                empty = nothing_of(relation)
                plan = base_pb2.Plan(root=empty or relation)
                explained = client._analyze(method="explain", plan=plan, explain_mode="extended").explain_string
                plain = client._analyze(method="schema", plan=base_pb2.Plan(root=relation)).schema
                assert answer.fields[:-1] == plain.fields, what  # names, types, nullability, metadata
                root = empty is None
                found[what] = (_facts(plugin_text, root=root), _facts(explained, root=root))
            # Analysed, never run: the commands changed nothing.
            tables = {row.tableName for row in spark.sql("SHOW TABLES").collect()}
            assert "plugin_probe" in tables and "plugin_new" not in tables
            assert spark.conf.get("spark.sql.shuffle.partitions") == partitions != "7"
            spark.sql("DROP TABLE plugin_probe")
            return found
        finally:
            session.close()

    found = await off_loop(compare)
    for what, (plugin, explained) in found.items():
        assert plugin == explained, what
    assert {t.name for t in found["a temp view over hr"][0].reads} == {"salaries"}
    assert {t.name for t in found["a subquery in a string"][0].reads} == {"nation", "salaries"}
    assert found["a reflect call"][0].dangers
    # A literal that prints a section header makes the text unreadable either way.
    assert found["a section header in a literal"][0].dangers
    assert {t.name for t in found["SQL dropping a table"][0].writes} == {"plugin_probe"}
    assert found["SQL dropping a table"][0].operation == "DropTable"


@pytest.mark.spark
async def test_a_clients_schema_is_the_gateways_own_analysis_and_exactly_what_spark_answers(
    gateway: Gateway,
) -> None:
    spark, driver = await _alices_driver(gateway)
    nation, region = spark.table("tpch.nation"), spark.table("tpch.region")
    frame = nation.join(region, F.col("n_regionkey") == F.col("r_regionkey")).withColumn("x", F.lit(None))

    with debug_logs() as logged:
        through = await off_loop(lambda: frame.schema)
    assert [e["event"] for e in logged].count("gateway.schema_from_analysis") == 1

    def direct_schema() -> object:
        session = open_session(driver, user_id=f"direct-{uuid.uuid4().hex[:6]}")
        try:
            other = session.spark.table("tpch.nation").join(
                session.spark.table("tpch.region"), F.col("n_regionkey") == F.col("r_regionkey")
            )
            return other.withColumn("x", F.lit(None)).schema
        finally:
            session.close()

    assert through == await off_loop(direct_schema)
    assert not any(f.name.startswith(PLAN_TEXT_START) for f in through.fields)
    # Refused as before, with the policy's reason; and Spark's own error when it cannot analyse.
    refused = await off_loop(lambda: failure(lambda: spark.table("hr.salaries").schema))
    assert status_of(refused) is grpc.StatusCode.PERMISSION_DENIED and DENIED in str(refused)
    missing = await off_loop(lambda: failure(lambda: spark.table("tpch.nope").schema))
    assert "TABLE_OR_VIEW_NOT_FOUND" in str(missing)


@pytest.mark.spark
async def test_a_client_cannot_send_the_plugins_extension_itself(gateway: Gateway) -> None:
    await _alices_driver(gateway)
    hidden = relations_pb2.Relation()
    hidden.read.named_table.unparsed_identifier = "tpch.nation"  # even a table alice may read
    request = base_pb2.AnalyzePlanRequest(session_id=str(uuid.uuid4()))
    request.user_context.user_id = "alice"
    request.schema.plan.root.CopyFrom(analysed_relation(hidden))
    execute = base_pb2.ExecutePlanRequest(session_id=request.session_id, operation_id=str(uuid.uuid4()))
    execute.user_context.user_id = "alice"
    execute.plan.root.CopyFrom(analysed_relation(hidden))

    def send() -> list[grpc.RpcError]:
        errors = []
        with gateway.channel() as channel:
            stub = base_pb2_grpc.SparkConnectServiceStub(channel)
            for call in (
                lambda: stub.AnalyzePlan(request, metadata=gateway.bearer("alice"), timeout=60),
                lambda: list(stub.ExecutePlan(execute, metadata=gateway.bearer("alice"), timeout=60)),
            ):
                error = failure(call)
                assert isinstance(error, grpc.RpcError)
                errors.append(error)
        return errors

    for error in await off_loop(send):
        assert error.code() is grpc.StatusCode.PERMISSION_DENIED
        assert "a relation extension" in (error.details() or "")
        assert PLAN_TEXT_START not in (error.details() or "")


@pytest.mark.spark
async def test_a_driver_without_the_plugin_is_told_apart_and_governed_the_same(tmp_path: Path, data_dir: Path) -> None:
    config: Config = make_config(tmp_path / "home", data_dir, driver={"analysis_plugin": False})
    async with App.running(config, environ=dict(os.environ)) as app, serving_gateway(app, "alice") as gateway:
        spark, driver = await _alices_driver(gateway)
        argv = Path(f"/proc/{driver.pid}/cmdline").read_bytes()
        assert not driver.analysis_plugin and b"AnalysisPlugin" not in argv
        with debug_logs() as logged:
            schema = await off_loop(lambda: spark.table("tpch.nation").schema)
        assert "gateway.schema_from_analysis" not in [e["event"] for e in logged]
        assert [f.name for f in schema.fields][:2] == ["n_nationkey", "n_name"]
        refused = await off_loop(lambda: failure(lambda: spark.table("hr.salaries").toArrow()))
        assert status_of(refused) is grpc.StatusCode.PERMISSION_DENIED and DENIED in str(refused)


@pytest.mark.spark
async def test_drivers_load_the_plugin_from_a_private_jar_through_spark_jars(gateway: Gateway) -> None:
    _, driver = await _alices_driver(gateway)
    argv = Path(f"/proc/{driver.pid}/cmdline").read_bytes().split(b"\0")
    jars = [a.split(b"=", 1)[1].decode() for a in argv if a.startswith(b"spark.jars=")]
    assert len(jars) == 1 and re.fullmatch(r"[0-9a-f]{16}\.analysis-plugin-[0-9a-f]{12}\.jar", Path(jars[0]).name)
    assert b"spark.connect.extensions.relation.classes=" + analysis_plugin.CLASS_NAME.encode() in argv
    folder = Path(jars[0]).parent
    assert folder.stat().st_uid == os.getuid() and stat.S_IMODE(folder.stat().st_mode) == 0o700


@pytest.mark.spark
async def test_sql_text_is_analysed_without_optimizing_so_a_failure_past_analysis_tells_nothing(
    gateway: Gateway,
) -> None:
    # Under ANSI mode Spark's optimizer folds 1 / 0 and fails: an explain of the text would fail
    # there for a table that exists, and only there. Analysed alone, both are refused alike.
    spark, _ = await _alices_driver(gateway)
    said = []
    for table in ("hr.salaries", "hr.no_such_table"):
        refused = await off_loop(lambda table=table: failure(lambda: spark.sql(f"SELECT 1 / 0 FROM {table}")))
        assert status_of(refused) is grpc.StatusCode.PERMISSION_DENIED, table
        said.append(str(refused).split("\n", 1)[0].replace("salaries", "X").replace("no_such_table", "X"))
    assert said[0] == said[1] and "denied by role analyst (hr.*)" in said[0]
