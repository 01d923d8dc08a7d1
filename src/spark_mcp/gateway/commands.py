"""Commands in an ExecutePlan: writes, temp views, code registration, and everything else.

- ``WriteOperation`` (``df.write...``) and ``WriteOperationV2`` (``df.writeTo(...)``): the
  data written is governed like a plan; the target table is resolved by Spark (an explained,
  never run, ``CREATE TABLE`` of the same name) and needs write rights: ``sql.ddl`` to
  create or replace it, ``sql.write`` to add to or overwrite its rows. A path, a ``path``
  option, a location, or a format that is not a file format in the warehouse is
  ``sql.admin``.
- ``CreateDataFrameViewCommand`` (``createOrReplaceTempView``) is a temp view of the
  caller's own session (``sql.read``), a global one DDL on ``global_temp``.
- ``df.localCheckpoint()`` keeps a plan's rows in the caller's own session, as ``df.cache()``
  does: governed like the plan. A reliable ``df.checkpoint()`` writes them to the checkpoint
  directory, a path: ``sql.admin``.
- Registering a UDF, UDTF or data source ships code: ``code.run``.
- Anything else (streaming, reliable checkpoints, ML, MERGE through the DataFrame API, resource
  profiles, pipelines, extensions) is ``sql.admin`` until deliberately allowed; the tables
  its plans read still follow the table rules.
"""

from __future__ import annotations

from dataclasses import replace

from pyspark.sql.connect.proto import commands_pb2, relations_pb2

from spark_mcp.errors import InvalidInput
from spark_mcp.gateway.govern import Governor, merged
from spark_mcp.governance import Verdict
from spark_mcp.spark.analyze import Analysis
from spark_mcp.spark.wire.requests import create_table_probe, name_parts, table_relation
from spark_mcp.spark.wire.screen import describe, input_relations, screen
from spark_mcp.statement import Danger, DangerKind, StatementFacts, StatementKind, TableName

_D = DangerKind
_K = StatementKind

# Formats whose table data stays in the warehouse, as Spark's own file sources write it.
FILE_FORMATS = frozenset({"parquet", "orc", "json", "csv", "text", "avro"})
_PATH_KEYS = frozenset({"path", "paths", "location"})

_ADMIN_COMMANDS = {
    "write_stream_operation_start": "a streaming query",
    "streaming_query_command": "a command on a streaming query",
    "streaming_query_manager_command": "streaming query management",
    "streaming_query_listener_bus_command": "a streaming query listener",
    "get_resources_command": "the driver's resources",
    "create_resource_profile_command": "a resource profile",
    "checkpoint_command": "a reliable checkpoint (it writes the rows to the checkpoint directory; "
    "df.localCheckpoint() keeps them in the session)",
    "merge_into_table_command": "MERGE INTO through the DataFrame API",
    "ml_command": "a machine-learning command",
    "execute_external_command": "a command run by an external data source",
    "pipeline_command": "a declarative pipeline",
    "extension": "a command extension",
}
_REGISTRATIONS = {
    "register_function": "registers a function",
    "register_table_function": "registers a table function",
    "register_data_source": "registers a data source",
}
_WV2 = commands_pb2.WriteOperationV2
_CREATES = (_WV2.MODE_CREATE, _WV2.MODE_REPLACE, _WV2.MODE_CREATE_OR_REPLACE)


async def govern_command(governor: Governor, command: commands_pb2.Command) -> Verdict | None:
    """The verdict on a command; None for the harmless bookkeeping a client does on its own."""
    kind = command.WhichOneof("command_type")
    await governor.alone_for(screen(command))  # before anything is judged: spark.sql(text, df=...) inside
    if kind == "sql_command":
        return await governor.sql_command(command.sql_command)  # forgets the session's verdicts unless a query
    governor.changed()
    if kind == "write_operation":
        return await _write(governor, command.write_operation)
    if kind == "write_operation_v2":
        return await _write_v2(governor, command.write_operation_v2)
    if kind == "create_dataframe_view":
        return await _view(governor, command.create_dataframe_view)
    if kind in _REGISTRATIONS:
        found = screen(command)
        code = tuple(Danger(_D.CODE, what) for what in found.code) or (Danger(_D.CODE, _REGISTRATIONS[kind]),)
        facts = StatementFacts(_K.TEMP_VIEW, kind, dangers=(*code, *found.dangers))
        return governor.judge(Analysis(f"{_REGISTRATIONS[kind]}: {', '.join(found.code)}", facts, None, None))
    if kind == "checkpoint_command" and command.checkpoint_command.local:
        return await _local_checkpoint(governor, command.checkpoint_command)
    if kind == "remove_cached_remote_relation_command":
        return None  # a client forgetting a DataFrame it cached in its own session
    return await _admin(governor, command, kind or "(none)")


async def _input(governor: Governor, relation: relations_pb2.Relation, statement: str) -> Analysis | Verdict:
    """The data a command writes or names, governed like a plan (``plan.run``)."""
    governor.governance.require(governor.principal, "plan.run")
    tree = await governor.tree(relation, statement)
    if isinstance(tree, Analysis) and tree.facts.kind is not _K.QUERY:
        danger = Danger(_D.UNANALYSABLE, f"the data a command uses is not a plain query ({tree.facts.operation})")
        tree = replace(tree, facts=replace(tree.facts, dangers=(*tree.facts.dangers, danger)))
    return tree


async def write_target(governor: Governor, name: str) -> tuple[frozenset[TableName], tuple[Danger, ...]]:
    """The table ``name`` means in the caller's session, as Spark resolves it for a write.

    A write resolves a temp view first (``insertInto("v")`` writes into the files of the
    table under ``v``), which the ``CREATE TABLE`` probe never names: when reading ``name``
    reaches anything but the probe's table, the target is not the table it seems."""
    analysis, _ = await governor.analyst.explain(create_table_probe(name), name)
    if analysis.error is not None or len(analysis.facts.writes) != 1:
        return frozenset(), (Danger(_D.UNANALYSABLE, f"cannot tell which table {name!r} is"),)
    read, _ = await governor.analyst.explain(table_relation(name), name)
    if read.error is None and (read.facts.reads != analysis.facts.writes or read.facts.views):
        detail = f"{name!r} names a view (or a temp view), not the table {next(iter(analysis.facts.writes))}"
        return analysis.facts.writes, (Danger(_D.UNANALYSABLE, f"{detail}: write to a table by its full name"),)
    return analysis.facts.writes, ()


def path_dangers(options: dict[str, str], what: str) -> tuple[Danger, ...]:
    if any(key.lower() in _PATH_KEYS for key in options):
        return (Danger(_D.PATH_ACCESS, f"{what} points at a path"),)
    return ()


def format_dangers(source: str | None) -> tuple[Danger, ...]:
    if source and source.lower() not in FILE_FORMATS:
        return (Danger(_D.PATH_ACCESS, f"writes through the {source} data source, not a warehouse table"),)
    return ()


async def _write(governor: Governor, op: commands_pb2.WriteOperation) -> Verdict:
    table = op.table.table_name if op.WhichOneof("save_type") == "table" else None
    statement = f"df.write to {table or 'a path'}: " + describe(op.input, screen(op.input))
    tree = await _input(governor, op.input, statement)
    if isinstance(tree, Verdict):
        return tree
    dangers = [
        *format_dangers(op.source if op.HasField("source") else None),
        *path_dangers(dict(op.options), "a write option"),
    ]
    writes: frozenset[TableName] = frozenset()
    kind = _K.WRITE
    if table is None:
        dangers.append(Danger(_D.PATH_ACCESS, f"writes files at {op.path[:200]!r}, not a table"))
    else:
        writes, unresolved = await write_target(governor, table)
        dangers += unresolved
        creates = op.table.save_method != commands_pb2.WriteOperation.SaveTable.TABLE_SAVE_METHOD_INSERT_INTO
        if creates and op.mode != commands_pb2.WriteOperation.SAVE_MODE_APPEND:
            kind = _K.DDL  # saveAsTable creates (or replaces) the table
    return governor.judge(_as(tree, statement, kind, "WriteOperation", writes, dangers))


async def _write_v2(governor: Governor, op: commands_pb2.WriteOperationV2) -> Verdict:
    statement = f"df.writeTo({op.table_name}): " + describe(op.input, screen(op.input))
    tree = await _input(governor, op.input, statement)
    if isinstance(tree, Verdict):
        return tree
    dangers = [
        *format_dangers(op.provider if op.HasField("provider") else None),
        *path_dangers(dict(op.options), "a write option"),
        *path_dangers(dict(op.table_properties), "a table property"),
    ]
    writes, unresolved = await write_target(governor, op.table_name)
    dangers += unresolved
    facts = [tree.facts]
    if op.HasField("overwrite_condition"):
        # The condition is evaluated against the target table and may hold a subquery of its own.
        condition = relations_pb2.Relation()
        condition.filter.input.read.named_table.unparsed_identifier = op.table_name
        condition.filter.condition.CopyFrom(op.overwrite_condition)
        checked = await governor.tree(condition, statement)
        if isinstance(checked, Verdict):
            return checked
        facts.append(checked.facts)
    tree = replace(tree, facts=merged(tree.facts, facts[1:]))
    kind = _K.DDL if op.mode in _CREATES else _K.WRITE
    return governor.judge(_as(tree, statement, kind, "WriteOperationV2", writes, dangers))


async def _view(governor: Governor, op: commands_pb2.CreateDataFrameViewCommand) -> Verdict:
    parts = name_parts(op.name)
    if len(parts) != 1:
        raise InvalidInput(f"{op.name!r} is not a view name (one part, e.g. my_view)")
    statement = f"{'global ' if op.is_global else ''}temp view {parts[0]}: " + describe(op.input, screen(op.input))
    tree = await _input(governor, op.input, statement)
    if isinstance(tree, Verdict):
        return tree
    if op.is_global:
        global_view = frozenset({TableName.of("spark_catalog", "global_temp", parts[0])})
        return governor.judge(_as(tree, statement, _K.DDL, "CreateDataFrameViewCommand", global_view, []))
    facts = replace(tree.facts, kind=_K.TEMP_VIEW, operation="CreateDataFrameViewCommand", temp_view=parts[0].lower())
    return governor.judge(replace(tree, statement=statement, facts=facts))


async def _local_checkpoint(governor: Governor, op: commands_pb2.CheckpointCommand) -> Verdict:
    """The rows of a plan kept on the executors for the caller's own session, under an id that
    later plans name (``cached_remote_relation``, whose plan Spark then prints as a
    ``LogicalRDD``, naming no table): so the plan is judged here, as a query of its tables."""
    statement = "localCheckpoint: " + describe(op.relation, screen(op.relation))
    tree = await _input(governor, op.relation, statement)
    if isinstance(tree, Verdict):
        return tree
    return governor.judge(replace(tree, statement=statement, facts=replace(tree.facts, operation="CheckpointCommand")))


def _as(
    tree: Analysis,
    statement: str,
    kind: StatementKind,
    operation: str,
    writes: frozenset[TableName],
    dangers: list[Danger],
) -> Analysis:
    facts = replace(
        tree.facts,
        kind=kind,
        operation=operation,
        writes=tree.facts.writes | writes,
        dangers=tuple(dict.fromkeys([*tree.facts.dangers, *dangers])),
        temp_view=None,
    )
    return replace(tree, statement=statement, facts=facts)


async def _admin(governor: Governor, command: commands_pb2.Command, kind: str) -> Verdict:
    what = _ADMIN_COMMANDS.get(kind, f"the {kind} command, which the gateway does not know")
    found = screen(command)
    early = StatementFacts(
        _K.ADMIN,
        kind,
        dangers=(Danger(_D.UNKNOWN_NODE, what), *(Danger(_D.CODE, c) for c in found.code), *found.dangers),
    )
    verdict = governor.judge(Analysis(what, early, None, None))
    if not verdict.allowed:
        return verdict
    parts = [early]
    for relation in input_relations(command):
        tree = await governor.tree(relation, what)
        if isinstance(tree, Verdict):
            return tree
        parts.append(tree.facts)
    return governor.judge(Analysis(what, merged(early, parts[1:]), None, None))
