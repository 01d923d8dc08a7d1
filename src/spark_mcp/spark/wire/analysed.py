"""The wire format of the gateway's analysis plugin (``drivers/AnalysisPlugin.java``).

A relation wrapped in the plugin's extension (``TYPE_URL``, the value being the serialized
relation) and asked for its schema answers with the relation's own schema and one more
column at the end, whose name is the plan text ``EXPLAIN EXTENDED`` prints, parsed and
analyzed sections. ``split_answer`` takes that column off: what is left is exactly the answer
the client's own ``AnalyzePlan(schema)`` of the relation gets.

Clients cannot send the extension: a relation extension needs ``sql.admin`` (``screen``).
"""

from __future__ import annotations

from google.protobuf import any_pb2
from pyspark.sql.connect.proto import base_pb2, relations_pb2

from spark_mcp.spark.wire.requests import CLIENT_TYPE, identify

TYPE_URL = "type.googleapis.com/spark_mcp.AnalyzedRelation"  # as AnalysisPlugin.TYPE_URL
PLAN_TEXT_START = "== Parsed Logical Plan =="


def analysed_relation(relation: relations_pb2.Relation) -> relations_pb2.Relation:
    wrapped = relations_pb2.Relation()
    wrapped.extension.CopyFrom(any_pb2.Any(type_url=TYPE_URL, value=relation.SerializeToString()))
    return wrapped


def analysis_request(relation: relations_pb2.Relation, *, session_id: str, user_id: str) -> bytes:
    """``AnalyzePlan(schema)`` of ``relation`` through the plugin, in the caller's session."""
    request = base_pb2.AnalyzePlanRequest(session_id=session_id, client_type=CLIENT_TYPE)
    identify(request, user_id)
    request.schema.plan.root.CopyFrom(analysed_relation(relation))
    return bytes(request.SerializeToString())


def split_answer(data: bytes) -> tuple[str, bytes] | None:
    """(plan text, the client's answer) of the plugin's answer; None when it is not one (a
    driver without the plugin would have failed the request instead)."""
    response = base_pb2.AnalyzePlanResponse.FromString(data)
    if response.WhichOneof("result") != "schema" or response.schema.schema.WhichOneof("kind") != "struct":
        return None
    fields = response.schema.schema.struct.fields
    if not fields or not fields[-1].name.startswith(PLAN_TEXT_START):
        return None
    text = fields[-1].name
    del fields[-1]
    return text, bytes(response.SerializeToString())
