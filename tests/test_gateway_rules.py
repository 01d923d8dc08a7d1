"""The gateway's pure parts: the plan screen, safe decoding, names, config keys, artifacts,
masking and error scrubbing, the connection string, exposure rules, and code.run decisions.
No driver: these run in a second."""

from __future__ import annotations

import uuid
from pathlib import Path

import grpc
import pyarrow as pa
import pytest
import zstandard
from google.rpc import error_details_pb2, status_pb2
from pyspark.sql.connect.proto import base_pb2, commands_pb2, expressions_pb2, relations_pb2

from spark_mcp.config import load_config
from spark_mcp.drivers.base import new_driver_token
from spark_mcp.errors import ConfigError, InvalidInput, PolicyDenied, SparkError
from spark_mcp.gateway import check_gateway, connection_string
from spark_mcp.gateway.artifacts import action_for
from spark_mcp.gateway.calls import status_of
from spark_mcp.gateway.conf import REDACTED_VALUE, drop_client_keys, keys_set, not_settable, redact_response
from spark_mcp.gateway.govern import before_analysis, quiet_to_analyse
from spark_mcp.gateway.sessions import session_id_of
from spark_mcp.identity import Principal
from spark_mcp.policy import decide_statement, policy_from_toml
from spark_mcp.redaction import Redactor
from spark_mcp.spark.inspect import inspect_explain
from spark_mcp.spark.wire.messages import decode, depth, open_plan
from spark_mcp.spark.wire.requests import explain_with_refs_request, identify, name_parts, quoted
from spark_mcp.spark.wire.responses import STATUS_DETAILS, filter_rows, mask, scrub_status
from spark_mcp.spark.wire.screen import describe, input_relations, screen, sql_with_refs
from spark_mcp.statement import Danger, DangerKind, StatementFacts, StatementKind

# -- building plans by hand ---------------------------------------------------------------


def table(name: str) -> relations_pb2.Relation:
    relation = relations_pb2.Relation()
    relation.read.named_table.unparsed_identifier = name
    return relation


def wrap(kind: str, child: relations_pb2.Relation) -> relations_pb2.Relation:
    """``kind`` (a relation with an ``input``) over ``child``."""
    relation = relations_pb2.Relation()
    getattr(relation, kind).input.CopyFrom(child)
    return relation


def python_udf(name: str) -> expressions_pb2.Expression:
    expression = expressions_pb2.Expression()
    udf = expression.common_inline_user_defined_function
    udf.function_name = name
    udf.python_udf.command = b"pickled"
    return expression


def filters(levels: int) -> relations_pb2.Relation:
    relation = relations_pb2.Relation()
    relation.range.end = 3
    for _ in range(levels):
        outer = wrap("filter", relation)
        outer.filter.condition.literal.boolean = True
        relation = outer
    return relation


# -- the screen ---------------------------------------------------------------------------


def test_a_plain_plan_carries_nothing_to_refuse_and_names_its_tables() -> None:
    plan = wrap("limit", wrap("project", table("tpch.nation")))
    found = screen(plan)
    assert (found.code, found.dangers, found.eager) == ((), (), ())
    assert found.tables == ("tpch.nation",)
    assert describe(plan, found) == "plan: limit < project < read; tables: tpch.nation"


def test_client_code_is_found_wherever_it_hides_and_named_once() -> None:
    project = wrap("project", table("tpch.nation"))
    project.project.expressions.append(python_udf("plus_one"))
    assert screen(project).code == ("a Python UDF plus_one",)
    mapped = wrap("map_partitions", table("tpch.nation"))
    mapped.map_partitions.func.python_udf.command = b"pickled"
    found = screen(mapped)
    assert found.code[0].startswith("a function over partitions") and len(found.code) == 2
    command = commands_pb2.Command()
    command.register_function.function_name = "f"
    command.register_function.java_udf.class_name = "com.example.F"
    assert screen(command).code == ("a Java UDF f",)


@pytest.mark.parametrize(
    ("build", "words"),
    [
        (lambda r: r.read.data_source.paths.append("/etc/passwd"), "straight from files"),
        (lambda r: r.read.named_table.options.__setitem__("dbtable", "other"), "table options"),
        (lambda r: setattr(r.read, "is_streaming", True) or r.read.named_table.SetInParent(), "streaming read"),
        (lambda r: r.with_relations.root.sql.SetInParent(), "sql() with DataFrame arguments"),
        (lambda r: r.catalog.list_tables.SetInParent(), "a catalog call inside a plan"),
        (lambda r: r.ml_relation.SetInParent(), "machine-learning"),
        (lambda r: r.extension.SetInParent(), "protocol extension"),
        (lambda r: r.zip.SetInParent(), "which the gateway does not know"),
        (lambda r: None, "a relation of no type"),
    ],
)
def test_relations_spark_acts_on_while_planning_are_dangers_before_any_analysis(build: object, words: str) -> None:
    relation = relations_pb2.Relation()
    build(relation)  # type: ignore[operator]
    found = screen(wrap("limit", relation))
    assert any(words in d.detail for d in found.dangers), found.dangers


def with_refs(text: str, *frames: relations_pb2.Relation, alias: str | None = None) -> relations_pb2.Relation:
    """``spark.sql(text, df=...)`` as PySpark sends it (or with ``alias`` for every DataFrame)."""
    relation = relations_pb2.Relation()
    relation.with_relations.root.sql.query = text
    for frame in frames:
        ref = relation.with_relations.references.add()
        ref.subquery_alias.input.CopyFrom(frame)
        ref.subquery_alias.alias = alias or f"_pyspark_connect_temp_view_{uuid.uuid4().hex}"
    return relation


@pytest.mark.parametrize(
    ("build", "pyspark_shape"),
    [
        (lambda: with_refs("SELECT * FROM v", table("tpch.nation")), True),
        (lambda: with_refs("SELECT 1", table("a"), table("b")), True),
        (lambda: with_refs("SELECT 1"), False),  # no DataFrame at all
        (lambda: with_refs("SELECT * FROM mine", table("a"), alias="mine"), False),  # could replace one's own view
        (lambda: with_refs("SELECT 1", table("a"), alias="_pyspark_connect_temp_view_" + "0" * 31), False),
        (lambda: with_refs("SELECT 1", table("a"), alias="_pyspark_connect_temp_view_" + "A" * 32), False),
    ],
)
def test_sql_with_dataframes_is_eager_only_in_the_shape_pyspark_sends(build: object, pyspark_shape: bool) -> None:
    relation = build()  # type: ignore[operator]
    assert sql_with_refs(relation) is pyspark_shape
    found = screen(wrap("limit", relation))
    assert (found.eager == (relation,)) is pyspark_shape
    assert any("not in the shape PySpark sends" in d.detail for d in found.dangers) is not pyspark_shape
    qualified = build()  # type: ignore[operator]
    if qualified.with_relations.references:
        qualified.with_relations.references[0].subquery_alias.qualifier.append("db")
        assert not sql_with_refs(qualified)


def test_sql_with_dataframe_arguments_is_explained_over_the_same_dataframes_and_its_text_gated() -> None:
    inner = with_refs("SELECT * FROM {t}", table("hr.salaries"))
    outer = with_refs("SELECT * FROM {df} WHERE 1 = 1", wrap("limit", inner))
    found = screen(outer)
    assert found.eager == (inner, outer)  # the nested call is proven a query first
    assert set(found.texts) == {"SELECT * FROM {t}", "SELECT * FROM {df} WHERE 1 = 1"}
    assert found.tables == ("hr.salaries",)
    request = base_pb2.ExecutePlanRequest.FromString(
        explain_with_refs_request(outer, session_id=str(uuid.uuid4()), user_id="alice", operation_id=str(uuid.uuid4()))
    )
    explained = request.plan.command.sql_command.input.with_relations
    assert explained.root.sql.query == "EXPLAIN EXTENDED SELECT * FROM {df} WHERE 1 = 1"
    assert list(explained.references) == list(outer.with_relations.references)
    assert request.user_context.user_id == "alice"


def test_an_empty_listing_is_still_one_empty_batch() -> None:
    # Spark answers an empty listing with one empty batch; filtered down to nothing, the
    # listing must read the same (PySpark fails on a stream that holds a schema alone).
    schema = pa.schema([("name", pa.string()), ("database", pa.string())])
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, schema) as writer:
        writer.write_table(pa.table({"name": ["salaries"], "database": ["hr"]}, schema=schema))
    response = base_pb2.ExecutePlanResponse(session_id="s")
    response.arrow_batch.data = sink.getvalue().to_pybytes()
    response.arrow_batch.row_count = 1
    for keep, names in [(lambda row: False, []), (lambda row: True, ["salaries"])]:
        (out,) = filter_rows([response.SerializeToString()], keep)
        batch = base_pb2.ExecutePlanResponse.FromString(out).arrow_batch
        reader = pa.ipc.open_stream(batch.data)
        batches = list(reader)
        assert len(batches) == 1 and batches[0].schema == schema
        assert batches[0].to_pydict()["name"] == names and batch.row_count == len(names)


def test_a_listing_inside_a_plan_becomes_its_kept_rows_from_every_batch() -> None:
    from spark_mcp.spark.wire.responses import listing_data

    schema = pa.schema([("name", pa.string()), ("isTemporary", pa.bool_())])

    def answer(names: list[str]) -> bytes:
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, schema) as writer:
            writer.write_table(pa.table({"name": names, "isTemporary": [False] * len(names)}, schema=schema))
        response = base_pb2.ExecutePlanResponse(session_id="s")
        response.arrow_batch.data = sink.getvalue().to_pybytes()
        return bytes(response.SerializeToString())

    done = base_pb2.ExecutePlanResponse(session_id="s")
    done.result_complete.SetInParent()
    answers = [answer(["nation", "secret_codes"]), answer(["region"]), done.SerializeToString()]
    for keep, names in [
        (lambda row: not row["name"].startswith("secret"), ["nation", "region"]),
        (None, ["nation", "secret_codes", "region"]),
        (lambda row: False, []),  # still one (empty) batch, with the schema: a listing of nothing
    ]:
        table = pa.ipc.open_stream(listing_data(answers, keep)).read_all()
        assert table.schema == schema and table.column("name").to_pylist() == names
    with pytest.raises(ValueError, match="without rows"):
        listing_data([done.SerializeToString()], None)  # no batch: no schema to stand in for it


def test_a_sql_listing_is_filtered_in_the_rows_its_answer_carries() -> None:
    # Spark answers a SQL command with its rows in a local relation, which the client builds on.
    schema = pa.schema([("namespace", pa.string()), ("tableName", pa.string())])
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, schema) as writer:
        writer.write_table(pa.table({"namespace": ["tpch", "hr"], "tableName": ["nation", "salaries"]}, schema=schema))
    response = base_pb2.ExecutePlanResponse(session_id="s")
    response.sql_command_result.relation.local_relation.data = sink.getvalue().to_pybytes()
    done = base_pb2.ExecutePlanResponse(session_id="s")
    done.result_complete.SetInParent()
    out = filter_rows([response.SerializeToString(), done.SerializeToString()], lambda row: row["namespace"] != "hr")
    relation = base_pb2.ExecutePlanResponse.FromString(out[0]).sql_command_result.relation
    assert pa.ipc.open_stream(relation.local_relation.data).read_all().to_pylist() == [
        {"namespace": "tpch", "tableName": "nation"}
    ]
    assert out[1] == done.SerializeToString()
    # Rows kept on the driver (a cached relation) could not be filtered: nothing is shown.
    cached = base_pb2.ExecutePlanResponse(session_id="s")
    cached.sql_command_result.relation.cached_local_relation.hash = "abc"
    with pytest.raises(ValueError, match="cached_local_relation"):
        filter_rows([cached.SerializeToString()], lambda row: True)


def test_inputs_spark_computes_while_planning_come_deepest_first() -> None:
    inner = wrap("describe", table("tpch.nation"))
    middle = wrap("drop", inner)
    outer = wrap("show_string", wrap("project", middle))
    found = screen(outer)
    assert [r.WhichOneof("rel_type") for r in found.eager] == ["describe", "drop", "show_string"]
    assert input_relations(found.eager[0]) == [table("tpch.nation")]


def test_a_pivot_without_values_is_eager_and_a_plain_aggregate_is_not() -> None:
    plain = wrap("aggregate", table("t"))
    assert screen(plain).eager == ()
    pivot = wrap("aggregate", table("t"))
    pivot.aggregate.group_type = relations_pb2.Aggregate.GROUP_TYPE_PIVOT
    pivot.aggregate.pivot.col.unresolved_attribute.unparsed_identifier = "c"
    assert screen(pivot).eager == (pivot,)


def _sql(text: str) -> relations_pb2.Relation:
    relation = relations_pb2.Relation()
    relation.sql.query = text
    return relation


def _with_udf() -> relations_pb2.Relation:
    project = wrap("project", table("tpch.nation"))
    project.project.expressions.append(python_udf("plus_one"))
    return project


def _pivot() -> relations_pb2.Relation:
    pivot = wrap("aggregate", table("t"))
    pivot.aggregate.group_type = relations_pb2.Aggregate.GROUP_TYPE_PIVOT
    pivot.aggregate.pivot.col.unresolved_attribute.unparsed_identifier = "c"
    return pivot


@pytest.mark.parametrize(
    ("relation", "quiet"),
    [
        (wrap("limit", table("hr.salaries")), True),  # a denied table too: only the answer is withheld
        (_sql("SELECT * FROM tpch.nation"), True),
        (wrap("describe", table("tpch.nation")), False),  # Spark computes its input while planning
        (_pivot(), False),
        (_with_udf(), False),
        (_sql("DROP TABLE tpch.nation"), True),  # a command in a relation is analysed, not run (measured)
        (_sql("EXECUTE IMMEDIATE 'DROP TABLE tpch.nation'"), False),  # the gate: this one acts while analysed
        (_sql("SELECT 1; DROP TABLE tpch.nation"), False),
        (wrap("limit", relations_pb2.Relation()), False),  # a relation the screen cannot read
    ],
)
def test_a_client_analysis_runs_alongside_the_gateways_only_when_it_acts_on_nothing(
    relation: relations_pb2.Relation, quiet: bool
) -> None:
    found = screen(relation)
    assert quiet_to_analyse(found, before_analysis(found)) is quiet


def test_every_sql_text_and_expression_string_is_collected_for_the_gate() -> None:
    relation = wrap("filter", relations_pb2.Relation())
    relation.filter.input.sql.query = "SELECT * FROM tpch.nation"
    relation.filter.condition.expression_string.expression = "n_nationkey > (SELECT max(salary) FROM hr.salaries)"
    assert screen(relation).texts == (
        "n_nationkey > (SELECT max(salary) FROM hr.salaries)",
        "SELECT * FROM tpch.nation",
    )


# -- decoding safely ------------------------------------------------------------------------


def test_nesting_is_measured_without_parsing_and_a_deep_message_is_refused() -> None:
    data = filters(40).SerializeToString()
    assert depth(data, relations_pb2.Relation.DESCRIPTOR, limit=1000) == 40 * 2 + 2
    with pytest.raises(InvalidInput, match="nests more than 50 levels"):
        decode(relations_pb2.Relation, data, max_depth=50)
    assert decode(relations_pb2.Relation, data, max_depth=100) == filters(40)
    for garbage in (b"\x0a\xff\xff", b"\x0b", b"\x80"):
        with pytest.raises(InvalidInput):
            decode(relations_pb2.Relation, garbage, max_depth=100)


def test_a_compressed_plan_is_opened_within_bounds() -> None:
    plan = base_pb2.Plan()
    packed = plan.compressed_operation
    packed.data = zstandard.compress(table("hr.salaries").SerializeToString())
    packed.op_type = base_pb2.Plan.CompressedOperation.OP_TYPE_RELATION
    packed.compression_codec = base_pb2.COMPRESSION_CODEC_ZSTD
    assert open_plan(plan, max_bytes=1024, max_depth=64) == table("hr.salaries")
    with pytest.raises(InvalidInput, match="inflates to more than 8 bytes"):
        open_plan(plan, max_bytes=8, max_depth=64)
    bomb = base_pb2.Plan()
    bomb.compressed_operation.CopyFrom(packed)
    bomb.compressed_operation.data = zstandard.compress(b"\0" * 10_000_000)
    with pytest.raises(InvalidInput):
        open_plan(bomb, max_bytes=1024 * 1024, max_depth=64)
    packed.compression_codec = base_pb2.COMPRESSION_CODEC_UNSPECIFIED
    with pytest.raises(InvalidInput, match="zstd"):
        open_plan(plan, max_bytes=1024, max_depth=64)


def test_identity_on_a_request_is_the_principals_whatever_the_client_claimed() -> None:
    request = base_pb2.ExecutePlanRequest(session_id=str(uuid.uuid4()))
    request.user_context.user_id = "bob"
    request.user_context.extensions.add().type_url = "x"
    identify(request, "alice")
    assert request.user_context == base_pb2.UserContext(user_id="alice", user_name="alice")


@pytest.mark.parametrize(
    ("name", "parts"),
    [
        ("t", ["t"]),
        ("tpch.nation", ["tpch", "nation"]),
        ("`odd.name`.t", ["odd.name", "t"]),
        ("`a``b`", ["a`b"]),
        ("spark_catalog.db.t", ["spark_catalog", "db", "t"]),
    ],
)
def test_names_are_read_as_spark_reads_them_and_quoted_back(name: str, parts: list[str]) -> None:
    assert name_parts(name) == parts
    assert name_parts(quoted(parts)) == parts


@pytest.mark.parametrize("name", ["", "a.", ".a", "a b", "a;DROP", "`open", "t) --", "a..b"])
def test_anything_else_is_not_a_name(name: str) -> None:
    with pytest.raises(InvalidInput):
        name_parts(name)


def test_session_ids_are_uuids() -> None:
    assert session_id_of("00112233-4455-6677-8899-aabbccddeeff")
    with pytest.raises(InvalidInput, match="UUID"):
        session_id_of("../../etc")


# -- config, artifacts ----------------------------------------------------------------------


def test_only_harmless_settings_may_be_changed() -> None:
    assert not_settable(["spark.sql.session.timeZone", "spark.sql.ansi.enabled"]) == []
    assert not_settable(["spark.sql.caseSensitive", "spark.sql.session.timeZone"]) == ["spark.sql.caseSensitive"]


def _conf_set(*keys: str) -> base_pb2.ConfigRequest.Operation:
    operation = base_pb2.ConfigRequest.Operation()
    for key in keys:
        operation.set.pairs.add(key=key, value=f"value of {key}")
    return operation


@pytest.mark.parametrize(
    ("operation", "dropped", "left"),
    [
        # PySpark 3.5 sends its connection string (the token in it) at every session start.
        (_conf_set("spark.remote"), ["spark.remote"], []),
        (_conf_set("spark.remote", "spark.sql.shuffle.partitions"), ["spark.remote"], ["spark.sql.shuffle.partitions"]),
        (_conf_set("spark.sql.ansi.enabled"), [], ["spark.sql.ansi.enabled"]),
        (
            base_pb2.ConfigRequest.Operation(unset=base_pb2.ConfigRequest.Unset(keys=["spark.remote"])),
            [],
            ["spark.remote"],
        ),
        (base_pb2.ConfigRequest.Operation(get=base_pb2.ConfigRequest.Get(keys=["spark.remote"])), [], []),
    ],
)
def test_the_clients_connection_string_never_goes_on_to_the_driver(
    operation: base_pb2.ConfigRequest.Operation, dropped: list[str], left: list[str]
) -> None:
    assert drop_client_keys(operation) == dropped
    assert keys_set(operation) == left
    assert all(pair.value == f"value of {pair.key}" for pair in operation.set.pairs)


def test_secret_settings_are_redacted_and_values_scrubbed() -> None:
    response = base_pb2.ConfigResponse(session_id="s")
    response.pairs.add(key="spark.connect.authenticate.token", value="t0k3n")
    response.pairs.add(key="spark.hadoop.fs.s3a.secret.key", value="abc")
    response.pairs.add(key="spark.app.name", value="uses t0k3n inside")
    answer = base_pb2.ConfigResponse.FromString(
        redact_response(response.SerializeToString(), lambda text: text.replace("t0k3n", "[REDACTED]"))
    )
    assert [p.value for p in answer.pairs] == [REDACTED_VALUE, REDACTED_VALUE, "uses [REDACTED] inside"]


@pytest.mark.parametrize(
    ("name", "action"),
    [
        ("cache/" + "ab" * 32, None),
        ("jars/x.jar", "code.run"),
        ("pyfiles/helper.py", "code.run"),
        ("archives/env.tar.gz", "code.run"),
        ("files/data.txt", "code.run"),
        ("classes/Foo.class", "code.run"),
        ("forward_to_fs/tmp/x", "sql.admin"),
        ("cache/not-a-hash", "sql.admin"),
    ],
)
def test_artifacts_data_passes_and_code_needs_code_run(name: str, action: str | None) -> None:
    assert action_for(name) == action


@pytest.mark.parametrize("name", ["jars/../../x.jar", "/etc/passwd", "pyfiles/./x.py", "jars/", "a\\b", ""])
def test_an_artifact_name_cannot_climb_out(name: str) -> None:
    with pytest.raises(InvalidInput):
        action_for(name)


# -- what goes back --------------------------------------------------------------------------


def test_secrets_in_result_bytes_are_masked_in_place() -> None:
    token = "smcp_0123456789ab_" + "A" * 43
    data = b"\x00row:driver-secret|" + token.encode() + b"|end"
    masked = mask(data, (b"driver-secret",))
    assert len(masked) == len(data)
    assert b"driver-secret" not in masked and token.encode() not in masked and masked.endswith(b"|end")


def test_a_driver_token_is_masked_by_its_shape_alone() -> None:
    token = new_driver_token()
    data = b"\x00" * 1000 + token.encode() + b"|end"
    masked = mask(data, (token.encode(),))
    assert token.encode() not in masked and masked == b"\x00" * 1000 + b"*" * len(token) + b"|end"
    assert Redactor().scrub(f"token={token} or {token}").count(token) == 0


def test_an_upstream_error_is_scrubbed_consistently() -> None:
    status = status_pb2.Status(code=13, message="boom secret-x")
    info = error_details_pb2.ErrorInfo(reason="org.apache.spark.SparkException", domain="org.apache.spark")
    info.metadata["errorClass"] = "CAST_INVALID_INPUT"
    info.metadata["messageParameters"] = '{"expression": "secret-x"}'
    status.details.add().Pack(info)
    status.details.add().Pack(error_details_pb2.DebugInfo(detail="secret-x at Foo.bar"))
    message, trailers = scrub_status(
        "boom secret-x",
        [(STATUS_DETAILS, status.SerializeToString()), ("other", "x")],
        lambda t: t.replace("secret-x", "***"),
    )
    assert message == "boom ***"
    ((key, value),) = trailers
    kept = status_pb2.Status.FromString(value)
    assert key == STATUS_DETAILS and kept.message == message and len(kept.details) == 1
    info = error_details_pb2.ErrorInfo()
    kept.details[0].Unpack(info)
    assert info.metadata["messageParameters"] == '{"expression": "***"}'
    assert info.metadata["errorClass"] == "CAST_INVALID_INPUT"


def test_a_denial_reads_as_the_agent_reads_it() -> None:
    code, text = status_of(PolicyDenied("alice may not read t", rule='roles.a.deny[0] "t"'))
    assert code is grpc.StatusCode.PERMISSION_DENIED
    assert text == 'policy_denied: alice may not read t [rule: roles.a.deny[0] "t"]'
    assert status_of(SparkError("nope", error_class="PARSE_SYNTAX_ERROR")) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "PARSE_SYNTAX_ERROR: nope",
    )


# -- configuration: exposure and the connection string ---------------------------------------


def _config(tmp_path: Path, **values: object) -> object:
    return load_config(None, environ={}, overrides={"home": str(tmp_path), **values})


def test_a_gateway_off_loopback_needs_tls_and_authentication(tmp_path: Path) -> None:
    check_gateway(_config(tmp_path, gateway={"port": 15002}))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="without TLS"):
        check_gateway(_config(tmp_path, gateway={"port": 15002, "host": "0.0.0.0"}))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="without authentication"):
        check_gateway(  # type: ignore[arg-type]
            _config(tmp_path, gateway={"port": 15002, "host": "10.0.0.5"}, auth={"mode": "none"})
        )
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    cert.write_text("x")
    key.write_text("x")
    tls = {"tls_cert": str(cert), "tls_key": str(key)}
    check_gateway(_config(tmp_path, gateway={"port": 15002, "host": "10.0.0.5"}, server=tls))  # type: ignore[arg-type]


def test_the_connection_string_names_this_gateway_and_the_users_token(tmp_path: Path) -> None:
    token = "smcp_0123456789ab_" + "A" * 43
    local = _config(tmp_path, gateway={"port": 15002})
    assert connection_string(local, token) == f"sc://localhost:15002/;token={token}"  # type: ignore[arg-type]
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    public = _config(
        tmp_path,
        gateway={"port": 15002, "host": "0.0.0.0"},
        server={"public_url": "https://spark.example.com", "tls_cert": str(cert), "tls_key": str(key)},
    )
    assert connection_string(public, token) == f"sc://spark.example.com:15002/;token={token};use_ssl=true"  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        connection_string(local, "abc;user_id=root")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="gateway is off"):
        connection_string(_config(tmp_path), token)  # type: ignore[arg-type]


# -- code.run in the decision ------------------------------------------------------------------

POLICY = policy_from_toml(
    """
[roles.analyst]
actions = ["sql.read"]
read = ["*"]
[roles.coder]
actions = ["sql.read", "code.run"]
read = ["*"]
deny = ["hr.*"]
[roles.admin]
actions = ["sql.read", "sql.admin"]
read = ["*"]
[users]
alice = ["analyst"]
cody = ["coder"]
root = ["admin"]
""",
    source="gateway.toml",
)
CODE = StatementFacts(StatementKind.QUERY, "Project", dangers=(Danger(DangerKind.CODE, "a Python UDF f"),))


def who(name: str, **kwargs: object) -> Principal:
    return Principal(name, roles=POLICY.roles_for(name), **kwargs)  # type: ignore[arg-type]


def test_code_needs_code_run_and_nothing_else_stands_in_for_it() -> None:
    refused = decide_statement(POLICY, who("alice"), CODE)
    assert not refused.allowed
    assert (
        refused.reason
        == "alice may not run this statement: uses code sent by the client (a Python UDF f) which needs code.run"
    )
    assert not decide_statement(POLICY, who("root"), CODE).allowed  # sql.admin is not code.run
    allowed = decide_statement(POLICY, who("cody"), CODE)
    assert allowed.allowed and allowed.rule == "roles.coder.actions" and "a Python UDF f" in allowed.reason
    assert not decide_statement(POLICY, who("cody", read_only=True), CODE).allowed  # code changes things


def test_code_run_is_not_sql_admin_and_opens_no_table() -> None:
    both = StatementFacts(
        StatementKind.QUERY,
        "Project",
        dangers=(Danger(DangerKind.CODE, "a Python UDF f"), Danger(DangerKind.REFLECTION, "reflect")),
    )
    assert "needs sql.admin" in decide_statement(POLICY, who("cody"), both).reason
    from spark_mcp.statement import TableName

    denied_table = StatementFacts(
        StatementKind.QUERY,
        "Project",
        reads=frozenset({TableName.of("spark_catalog", "hr", "salaries")}),
        dangers=CODE.dangers,
    )
    assert "may not read spark_catalog.hr.salaries" in decide_statement(POLICY, who("cody"), denied_table).reason


# -- the inspector: a command hidden below a query ----------------------------------------------

HIDDEN_DROP = """== Parsed Logical Plan ==
'GlobalLimit 1
+- 'LocalLimit 1
   +- 'DropTable false, false
      +- 'UnresolvedIdentifier [default, victim], true

== Analyzed Logical Plan ==

GlobalLimit 1
+- LocalLimit 1
   +- DropTable false, false
      +- ResolvedIdentifier V2SessionCatalog(spark_catalog), default.victim

== Optimized Logical Plan ==
GlobalLimit 1
+- LocalLimit 1
   +- DropTable false, false
      +- ResolvedIdentifier V2SessionCatalog(spark_catalog), default.victim

== Physical Plan ==
CollectLimit 1
+- DropTable V2SessionCatalog(spark_catalog), default.victim, false, false
"""


def test_a_command_below_a_query_is_uncheckable() -> None:
    facts = inspect_explain(HIDDEN_DROP, builtin_functions=frozenset({"count"}))
    assert facts.kind is StatementKind.QUERY
    assert Danger(DangerKind.UNANALYSABLE, "a command (DropTable) inside a query") in facts.dangers


# -- reusing a verdict -------------------------------------------------------------------------


def _verdict(allowed: bool) -> object:
    from spark_mcp.errors import PolicyDenied
    from spark_mcp.governance import Verdict
    from spark_mcp.policy import Decision

    facts = StatementFacts(StatementKind.QUERY, "Project")
    refusal = None if allowed else PolicyDenied("no", rule="r")
    return Verdict("s", facts, Decision(allowed, "why", "r"), refusal, None)


def test_a_verdict_is_reused_only_for_the_same_plan_session_and_roles_for_a_moment() -> None:
    from spark_mcp.gateway.verdicts import VerdictCache

    now = [0.0]
    cache = VerdictCache(ttl_s=5, clock=lambda: now[0])
    alice = Principal("alice", roles=("analyst",))
    key = cache.key(alice, "s1", b"plan")
    allowed = _verdict(True)
    cache.put(key, allowed)  # type: ignore[arg-type]
    assert cache.get(key) is allowed
    assert cache.get(cache.key(alice, "s2", b"plan")) is None
    assert cache.get(cache.key(alice, "s1", b"plan!")) is None
    assert cache.get(cache.key(Principal("alice", roles=("admin",)), "s1", b"plan")) is None
    assert cache.get(cache.key(Principal("alice", roles=("analyst",), read_only=True), "s1", b"plan")) is None
    now[0] = 5.5
    assert cache.get(key) is None  # too old
    cache.put(key, allowed)  # type: ignore[arg-type]
    cache.forget("alice", "s1")  # the session changed
    assert cache.get(key) is None
    cache.put(key, _verdict(False))  # type: ignore[arg-type]
    assert cache.get(key) is None  # a denial is always decided afresh


def test_a_bare_sql_relation_is_reused_whatever_its_plan_id_and_nothing_else_is() -> None:
    from pyspark.sql.connect.proto import relations_pb2

    from spark_mcp.gateway.govern import reusable_form

    def sql(text: str, plan_id: int | None) -> relations_pb2.Relation:
        relation = relations_pb2.Relation()
        relation.sql.query = text
        if plan_id is not None:
            relation.common.plan_id = plan_id
        return relation

    def limited(plan_id: int) -> relations_pb2.Relation:
        relation = relations_pb2.Relation()
        relation.common.plan_id = plan_id
        relation.limit.limit = 1
        relation.limit.input.CopyFrom(sql("SELECT 1", 1))
        return relation

    answered = sql("SELECT 1", 44)
    answered.common.origin.python_origin.call_site = "notebook cell 3"
    assert reusable_form(sql("SELECT 1", 43)) == reusable_form(answered) == reusable_form(sql("SELECT 1", None))
    assert answered.common.plan_id == 44  # the relation the client sent is left as it was
    assert reusable_form(sql("SELECT 1", 43)) != reusable_form(sql("SELECT 2", 43))
    named = sql("SELECT :x", 1)
    named.sql.named_arguments["x"].literal.integer = 1
    other = sql("SELECT :x", 2)
    other.sql.named_arguments["x"].literal.integer = 2
    assert reusable_form(named) != reusable_form(other)
    # A plan id inside a bigger plan is what its parent's column references point at.
    assert reusable_form(limited(7)) != reusable_form(limited(8))


def test_open_sessions_are_counted_per_caller_until_released_or_idle() -> None:
    from spark_mcp.errors import LimitExceeded
    from spark_mcp.gateway.sessions import OpenSessions

    now = [0.0]
    sessions = OpenSessions(limit=2, idle_s=60, clock=lambda: now[0])
    steps: list[tuple[float, str, str, str, str | None]] = [
        # (time, action, caller, session, what admit says)
        (0, "admit", "alice", "s1", "ok"),
        (1, "admit", "alice", "s2", "ok"),
        (2, "admit", "alice", "s1", "ok"),  # a session already open: always admitted
        (3, "admit", "alice", "s3", "refused"),  # a third
        (3, "admit", "bob", "s3", "ok"),  # callers are counted apart
        (4, "forget", "alice", "s2", None),  # released
        (5, "admit", "alice", "s3", "ok"),
        (6, "admit", "alice", "s4", "refused"),
        (62, "admit", "alice", "s4", "refused"),  # s1 (last used at t=2) has been idle 60 s: still counts
        (62.5, "admit", "alice", "s4", "ok"),  # past 60 s: no longer counts
        (65.5, "admit", "alice", "s5", "ok"),  # s3 (t=5) is past 60 s too
        (66, "admit", "alice", "s6", "refused"),  # s4 (t=62.5) and s5 (t=65.5) are open
    ]
    messages: list[str] = []

    def outcome(caller: str, session: str) -> str:
        try:
            sessions.admit(caller, session)
        except LimitExceeded as exc:
            messages.append(exc.message)
            return "refused"
        return "ok"

    for at, action, caller, session, expected in steps:
        now[0] = at
        if action == "forget":
            sessions.forget(caller, session)
        else:
            assert outcome(caller, session) == expected, (at, caller, session)
    assert all("you have 2 Spark Connect sessions open" in m and "idle for 1 min" in m for m in messages)
    assert len(messages) == 4


def test_a_gateway_session_remembers_the_driver_it_was_on_before_its_driver_ended() -> None:
    from spark_mcp.gateway.sessions import OpenSessions

    sessions = OpenSessions(limit=5, idle_s=60)
    steps: list[tuple[str, str | None, str | None]] = [
        # (session, the driver the call reaches (None: a call answered without one), moved_from)
        ("s1", "drv-a", None),
        ("s1", "drv-a", None),
        ("s1", None, None),  # answered without a driver: where it was is unchanged
        ("s2", "drv-b", None),  # a new session on a new driver moved from nowhere
        ("s1", "drv-b", "drv-a"),  # drv-a ended; the next call reached drv-b
        ("s1", "drv-b", "drv-a"),  # every later call in that session is told too
        ("s1", None, "drv-a"),
        ("s3", None, None),
        ("s3", "drv-b", None),  # first seen without a driver, then on one: it moved from nowhere
    ]
    for session, driver, moved_from in steps:
        assert sessions.admit("alice", session, driver) == moved_from, (session, driver)
    assert sessions.admit("bob", "s1", "drv-c") is None  # callers are apart


@pytest.mark.parametrize(
    ("plan", "expected"),
    [
        # Plain listings of the session catalog, as Spark 4.3 analyses them.
        (
            "ShowNamespacesCommand [namespace#23]\n+- ResolvedNamespace V2SessionCatalog(spark_catalog)",
            ("namespaces", None),
        ),
        (
            "ShowNamespacesCommand b*, [namespace#27]\n+- ResolvedNamespace V2SessionCatalog(spark_catalog)",
            ("namespaces", None),
        ),
        (
            "ShowTables [namespace#29, tableName#30, isTemporary#31]\n"
            "+- ResolvedNamespace V2SessionCatalog(spark_catalog), [tpch]",
            ("tables", "tpch"),
        ),
        (
            "ShowTables t*, [namespace#41, tableName#42, isTemporary#43]\n"
            "+- ResolvedNamespace V2SessionCatalog(spark_catalog), [tpch]",
            ("tables", "tpch"),
        ),
        ("ShowViewsCommand tpch, [namespace#37, viewName#38, isTemporary#39]", ("views", "tpch")),
        # Anything else keeps the rules of any statement.
        ("ShowTablesCommand tpch, *, [namespace#45, tableName#46, isTemporary#47, information#48], true", None),
        (
            "ShowNamespacesCommand [namespace#50]\n+- ResolvedNamespace V2SessionCatalog(spark_catalog), [tpch]",
            None,
        ),
        ("ShowNamespacesCommand [namespace#1]\n+- ResolvedNamespace InMemoryCatalog(other)", None),
        (
            "ShowTables [namespace#1, tableName#2, isTemporary#3]\n"
            "+- ResolvedNamespace V2SessionCatalog(spark_catalog), [a, b]",
            None,
        ),
        (
            "ShowTables [namespace#1, tableName#2, isTemporary#3]\n"
            "+- ResolvedNamespace V2SessionCatalog(spark_catalog), [tpch]\n+- Project [secret#9]",
            None,
        ),
        # A LIKE pattern that spreads over lines, or forges a second line, is not a plain form.
        (
            "ShowNamespacesCommand x\n+- ResolvedNamespace V2SessionCatalog(spark_catalog), [namespace#1]\n"
            "+- ResolvedNamespace V2SessionCatalog(spark_catalog)",
            None,
        ),
        ("ShowViewsCommand `odd.name`, [namespace#1, viewName#2, isTemporary#3]", None),
        ("Project [id#1L]\n+- Range (0, 3, step=1)", None),
        (None, None),
    ],
)
def test_a_sql_listing_is_recognised_only_in_its_plain_forms(
    plan: str | None, expected: tuple[str, str | None] | None
) -> None:
    from spark_mcp.gateway.listings import sql_listing

    found = sql_listing(plan)
    assert (None if found is None else (found.what, found.namespace)) == expected


def test_a_sql_listing_shows_only_the_rows_the_caller_may_see() -> None:
    from spark_mcp.config import LimitsConfig
    from spark_mcp.gateway.listings import SqlListing, row_visible
    from spark_mcp.governance import Governance

    policy = policy_from_toml(
        """
[roles.analyst]
actions = ["catalog.read"]
read = ["tpch.*"]
deny = ["*.secret_*", "hr.*"]
[users]
alice = ["analyst"]
""",
        source="listings.toml",
    )
    governance = Governance(policy, LimitsConfig())
    alice = Principal("alice", roles=("analyst",))
    tables, namespaces = SqlListing("tables", "tpch"), SqlListing("namespaces", None)
    rows = [
        (tables, {"namespace": "tpch", "tableName": "nation", "isTemporary": False}, True),
        (tables, {"namespace": "tpch", "tableName": "secret_codes", "isTemporary": False}, False),
        (tables, {"namespace": "hr", "tableName": "salaries", "isTemporary": False}, False),
        (tables, {"namespace": "", "tableName": "my_view", "isTemporary": True}, True),  # her own temp view
        (tables, {"namespace": "", "tableName": "odd", "isTemporary": False}, False),
        (tables, {"namespace": "tpch", "tableName": "", "isTemporary": False}, False),
        (SqlListing("views", "tpch"), {"namespace": "tpch", "viewName": "secret_v", "isTemporary": False}, False),
        (namespaces, {"namespace": "tpch"}, True),
        (namespaces, {"namespace": "hr"}, False),
        (namespaces, {"namespace": ""}, False),
    ]
    for listing, row, shown in rows:
        assert row_visible(governance, alice, listing, row) is shown, (listing, row)


def test_the_fleet_keeps_why_each_recent_driver_ended() -> None:
    from spark_mcp.drivers.endings import DriverEndings, ended_session

    endings = DriverEndings(kept=2)
    endings.note("drv-a", "its driver was idle for more than quotas.driver_idle_timeout_s (60 s)", at=0)
    endings.note("drv-a", "stopped", at=5)  # the cause comes first; a later stop only tidies up
    endings.note("drv-b", "it stopped unexpectedly, exit code -9", at=10)
    first = endings.get("drv-a")
    assert first is not None
    assert (first.reason, first.when) == (
        "its driver was idle for more than quotas.driver_idle_timeout_s (60 s)",
        "1970-01-01 00:00:00 UTC",
    )
    assert ended_session("drv-a", first).startswith(
        "spark-mcp: this session was on Spark driver drv-a, which ended at 1970-01-01 00:00:00 UTC "
        "(its driver was idle for more than quotas.driver_idle_timeout_s (60 s)). "
    )
    # A driver whose end this server did not see (another server's, before a restart).
    assert "which is no longer running. Its temp views" in ended_session("drv-z", None)
    endings.note("drv-c", "stopped in the web console by admin", at=20)
    assert endings.get("drv-a") is None  # only the last ``kept`` are kept
    assert [endings.get(d) is not None for d in ("drv-b", "drv-c", "drv-x")] == [True, True, False]


def test_the_console_lists_whose_drivers_ended_newest_first() -> None:
    from spark_mcp.drivers.endings import DriverEndings

    endings = DriverEndings()
    endings.note("drv-1", "idle", at=1, owner="user:nina", principal="nina")
    endings.note("drv-2", "lost", at=3, owner="session:ses_1", principal="nina")
    endings.note("drv-3", "idle", at=2, owner="user:omar", principal="omar")
    endings.note("drv-4", "stopped", at=4, owner="group:analyst")  # shared by a role: no principal
    endings.note("drv-5", "stopped", at=5)  # a spare of the warm pool: served nobody
    ids = [[e.driver_id for e in endings.recent(who, limit)] for who, limit in (("nina", 5), ("omar", 5), (None, 3))]
    assert ids == [["drv-2", "drv-1"], ["drv-3"], ["drv-4", "drv-2", "drv-3"]]
    assert endings.recent("nobody", 5) == []


def test_the_gateway_explains_a_dataframe_under_a_limit_of_nothing_and_sql_text_as_it_is() -> None:
    from pyspark.sql.connect.proto import relations_pb2

    from spark_mcp.spark.wire.requests import nothing_of, sql_relation, table_relation

    read = table_relation("tpch.nation")
    read.common.plan_id = 7
    wrapped = nothing_of(read)
    assert wrapped is not None
    assert wrapped.WhichOneof("rel_type") == "limit" and wrapped.limit.limit == 0
    assert wrapped.limit.input == read  # the client's plan, plan ids and all
    # A command in SQL text prints as the root, which governance reads: never wrapped.
    assert nothing_of(sql_relation("DROP TABLE tpch.nation")) is None
    with_refs = relations_pb2.Relation()
    with_refs.with_relations.root.CopyFrom(sql_relation("SELECT * FROM {df}"))
    assert nothing_of(with_refs) is None
