"""Requests the gateway makes of a driver on a client's behalf, and the caller's identity on each.

Every request that reaches a driver carries the caller's own identity: ``identify`` replaces
whatever ``user_context`` the client sent with the principal's id (and nothing else:
extensions are dropped). A Spark Connect session is keyed by (user id, session id), so a
principal can only ever reach sessions made under its own id, even on a shared driver.

The analysis requests ask the driver to explain a relation (``AnalyzePlan``, extended
mode) in the client's own session, where its temp views live; Spark analyses without
running anything (Spark 4.3 explains with command execution skipped; measured: an
explained ``CREATE TABLE`` or ``SET`` had no effect).
"""

from __future__ import annotations

import re

from google.protobuf.message import Message
from pyspark.sql.connect.proto import base_pb2, relations_pb2

from spark_mcp.errors import InvalidInput

CLIENT_TYPE = "spark-mcp-gateway"

_PLAIN_PART = re.compile(r"[A-Za-z0-9_]+")


def identify(request: Message, user_id: str) -> None:
    """Make ``request`` act as ``user_id``, whoever the client claimed to be."""
    context = request.user_context
    context.Clear()
    context.user_id = user_id
    context.user_name = user_id


def interrupt_request(*, session_id: str, operation_id: str, user_id: str) -> bytes:
    """An interrupt of one operation of the caller's session."""
    request = base_pb2.InterruptRequest(
        session_id=session_id,
        client_type=CLIENT_TYPE,
        interrupt_type=base_pb2.InterruptRequest.INTERRUPT_TYPE_OPERATION_ID,
        operation_id=operation_id,
    )
    identify(request, user_id)
    return bytes(request.SerializeToString())


def explain_request(relation: relations_pb2.Relation, *, session_id: str, user_id: str) -> bytes:
    request = base_pb2.AnalyzePlanRequest(session_id=session_id, client_type=CLIENT_TYPE)
    identify(request, user_id)
    request.explain.plan.root.CopyFrom(relation)
    request.explain.explain_mode = base_pb2.AnalyzePlanRequest.Explain.EXPLAIN_MODE_EXTENDED
    return bytes(request.SerializeToString())


def nothing_of(relation: relations_pb2.Relation) -> relations_pb2.Relation | None:
    """``relation.limit(0)``, to explain for governance: Spark analyses the relation exactly as
    it is (the analyzed plan is the same tree under two limit lines), then its optimizer turns
    a limit of nothing into an empty relation before any other rule, so it neither optimizes
    nor plans the rest (a third of an explain's time on a join with an aggregate).

    None for a relation that is nothing but SQL text (a command in it prints as the root, which
    governance reads) or ``spark.sql(text, df=...)``: those are explained as they are."""
    if relation.WhichOneof("rel_type") in ("sql", "with_relations"):
        return None
    wrapped = relations_pb2.Relation()
    wrapped.limit.limit = 0
    wrapped.limit.input.CopyFrom(relation)
    return wrapped


def explain_text(response: bytes) -> str:
    """The plan text of an ``AnalyzePlan`` explain answer (from our own driver)."""
    return str(base_pb2.AnalyzePlanResponse.FromString(response).explain.explain_string)


def sql_relation(text: str) -> relations_pb2.Relation:
    relation = relations_pb2.Relation()
    relation.sql.query = text
    return relation


def table_relation(name: str) -> relations_pb2.Relation:
    """``spark.table(name)``: explaining it resolves the name as the session would."""
    relation = relations_pb2.Relation()
    relation.read.named_table.unparsed_identifier = name
    return relation


def name_parts(name: str) -> list[str]:
    """A multi-part name as Spark parses one (``a.b``, ```a.b`.c``); ``InvalidInput`` otherwise.

    Unquoted parts are kept to letters, digits and ``_`` (stricter than Spark), so that a
    name re-quoted by ``quoted`` means exactly what the client asked for.
    """
    parts: list[str] = []
    index, text = 0, name.strip()
    while True:
        if index < len(text) and text[index] == "`":
            end, part = index + 1, []
            while True:
                if end >= len(text):
                    raise InvalidInput(f"{name!r} has an unclosed backquote")
                if text[end] == "`":
                    if end + 1 < len(text) and text[end + 1] == "`":
                        part.append("`")
                        end += 2
                        continue
                    break
                part.append(text[end])
                end += 1
            parts.append("".join(part))
            index = end + 1
        else:
            match = _PLAIN_PART.match(text, index)
            if match is None:
                raise InvalidInput(f"{name!r} is not a table name (parts are letters, digits and _, or `quoted`)")
            parts.append(match.group(0))
            index = match.end()
        if index == len(text):
            break
        if text[index] != ".":
            raise InvalidInput(f"{name!r} is not a table name")
        index += 1
    if not parts or any(not p for p in parts) or len(parts) > 8:
        raise InvalidInput(f"{name!r} is not a table name")
    return parts


def quoted(parts: list[str]) -> str:
    return ".".join("`" + part.replace("`", "``") + "`" for part in parts)


def create_table_probe(name: str) -> relations_pb2.Relation:
    """A ``CREATE TABLE`` naming ``name``: explained (never run), Spark prints the table it
    would create fully qualified, whether or not it exists: the target of a write."""
    return sql_relation(f"CREATE TABLE {quoted(name_parts(name))} (c INT)")


def execute_request(relation: relations_pb2.Relation, *, session_id: str, user_id: str, operation_id: str) -> bytes:
    """``relation`` run in the caller's session, as the gateway's own operation (not reattachable)."""
    request = base_pb2.ExecutePlanRequest(session_id=session_id, client_type=CLIENT_TYPE, operation_id=operation_id)
    identify(request, user_id)
    request.plan.root.CopyFrom(relation)
    return bytes(request.SerializeToString())


def explain_sql_request(
    text: str, *, session_id: str, user_id: str, operation_id: str, parameters: relations_pb2.SQL | None = None
) -> bytes:
    """``EXPLAIN EXTENDED <text>`` as a SQL command: unlike the AnalyzePlan RPC, it prints the
    plan Spark got as far as when analysis fails (the tables a failing statement names).
    ``parameters`` (a ``spark.sql`` relation) gives the values of the text's parameter markers,
    which Spark binds inside the EXPLAIN too."""
    request = base_pb2.ExecutePlanRequest(session_id=session_id, client_type=CLIENT_TYPE, operation_id=operation_id)
    identify(request, user_id)
    sql = request.plan.command.sql_command.input.sql
    if parameters is not None:
        sql.CopyFrom(parameters)
    sql.query = f"EXPLAIN EXTENDED {text}"
    return bytes(request.SerializeToString())


def explain_with_refs_request(
    relation: relations_pb2.Relation, *, session_id: str, user_id: str, operation_id: str
) -> bytes:
    """``spark.sql(text, df=...)`` (a ``with_relations`` relation) with ``EXPLAIN EXTENDED``
    before its text: Spark makes its temp views, explains the text over them without running
    it, and drops them again."""
    request = base_pb2.ExecutePlanRequest(session_id=session_id, client_type=CLIENT_TYPE, operation_id=operation_id)
    identify(request, user_id)
    explained = request.plan.command.sql_command.input.with_relations
    explained.CopyFrom(relation.with_relations)
    explained.root.sql.query = f"EXPLAIN EXTENDED {relation.with_relations.root.sql.query}"
    return bytes(request.SerializeToString())


def command_text(responses: list[bytes]) -> str:
    """The one text value a command like EXPLAIN answers with (its rows come back inline)."""
    import pyarrow as pa

    for data in responses:
        response = base_pb2.ExecutePlanResponse.FromString(data)
        if response.HasField("sql_command_result"):
            relation = response.sql_command_result.relation
            if relation.HasField("local_relation") and relation.local_relation.HasField("data"):
                table = pa.ipc.open_stream(relation.local_relation.data).read_all()
                if table.num_rows and table.num_columns:
                    return "\n".join(str(v) for v in table.column(0).to_pylist())
    return ""
