"""``spark.conf`` through the gateway: reading is allowed but for secrets; setting only harmless keys.

A driver's configuration holds what a client must never see (its token, credentials from a
profile) and what must not change under spark-mcp (settings that keep plans inspectable, the
substitution and file switches). So:

- a read (``get``, ``getAll``, ``isModifiable``...) is answered by the driver, then every
  value whose key looks like a secret (Spark's own redaction rule, and spark-mcp's) is
  replaced, and every value is scrubbed of registered secrets;
- ``set`` and ``unset`` of a key in ``SETTABLE`` (time zone, ANSI mode, Arrow batch sizes,
  display settings...) is allowed to anyone with a session; any other key needs
  ``sql.admin``, exactly as ``SET key = value`` does in SQL;
- a ``set`` of a key in ``CLIENT_ONLY`` is the client's own connection string, not a setting
  of the driver's: it is dropped from the request, for everyone, and never reaches the driver.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from pyspark.sql.connect.proto import base_pb2

SETTABLE = frozenset(
    {
        "spark.sql.session.timeZone",
        "spark.sql.ansi.enabled",
        "spark.sql.execution.arrow.maxRecordsPerBatch",
        "spark.sql.execution.arrow.maxBytesPerBatch",
        "spark.sql.execution.arrow.pyspark.enabled",
        "spark.sql.execution.arrow.pyspark.fallback.enabled",
        "spark.sql.execution.arrow.useLargeVarTypes",
        "spark.sql.execution.pandas.convertToArrowArraySafely",
        "spark.sql.execution.pythonUDF.arrow.enabled",
        "spark.sql.repl.eagerEval.enabled",
        "spark.sql.repl.eagerEval.maxNumRows",
        "spark.sql.repl.eagerEval.truncate",
        "spark.sql.shuffle.partitions",
        "spark.sql.adaptive.enabled",
        "spark.sql.timestampType",
    }
)
# What a client says about its own connection. PySpark 3.5 sets ``spark.remote`` (the connection
# string, the caller's API token in it) on every session it starts; PySpark 4 no longer sends
# it. The driver has no use for it (Spark 4.3 does not even keep it), the token has no business
# leaving the gateway, and refusing the key (it is not harmless) warned 3.5 users at every start.
CLIENT_ONLY = frozenset({"spark.remote"})
# Spark's default spark.redaction.regex, plus the words spark-mcp's redaction knows, plus the
# keys of storage secrets whose names say neither (Azure's fs.azure.account.key.<account> and
# fs.azure.sas.<container>.<account>: the storage account's key and a SAS token).
SECRET_KEY = re.compile(
    r"(?i)secret|password|passwd|token|access[._-]?key|credential|private[._-]?key|api[._-]?key"
    r"|account[._-]?key|[._-]sas[._-]"
)
REDACTED_VALUE = "*********(redacted)"

_Op = base_pb2.ConfigRequest.Operation

# ``SET TIME ZONE ...`` and ``SET key`` / ``SET key = value`` with a plain key: the forms whose
# key can be read from the text alone (a backquoted key may hold anything, even a comma).
_SQL_SET = re.compile(r"(?is)\s*SET\s+(?:(?P<zone>TIME\s+ZONE)\b|(?P<key>[A-Za-z0-9_.]+)\s*(?:=|$))")


def keys_set(operation: _Op) -> list[str]:
    """The keys an operation changes (empty for a read)."""
    kind = operation.WhichOneof("op_type")
    if kind == "set":
        return [pair.key for pair in operation.set.pairs]
    if kind == "unset":
        return list(operation.unset.keys)
    return []


def drop_client_keys(operation: _Op) -> list[str]:
    """Remove the ``CLIENT_ONLY`` pairs of a ``set`` from ``operation``; the keys dropped."""
    if operation.WhichOneof("op_type") != "set":
        return []
    pairs = operation.set.pairs
    dropped = [pair.key for pair in pairs if pair.key in CLIENT_ONLY]
    if dropped:
        kept = []
        for pair in pairs:
            if pair.key not in CLIENT_ONLY:
                copy = base_pb2.KeyValue()
                copy.CopyFrom(pair)  # a copy of its own: no reference into the field cleared below
                kept.append(copy)
        del pairs[:]
        pairs.extend(kept)
    return dropped


def describe(operation: _Op) -> str:
    kind = operation.WhichOneof("op_type") or "(none)"
    keys = keys_set(operation) or list(getattr(getattr(operation, kind, None), "keys", []) or [])
    return f"spark.conf.{kind}({', '.join(keys)[:500]})"


def not_settable(keys: list[str]) -> list[str]:
    """The keys a client may not change without ``sql.admin`` (empty: the change may go ahead)."""
    return [key for key in keys if key not in SETTABLE]


def harmless_sql_set(text: str, plan: str | None) -> bool:
    """Whether ``text`` (one gated statement) reads or sets one key of ``SETTABLE`` in SQL.

    ``SET spark.sql.shuffle.partitions = 8`` is what ``spark.conf.set`` does. The key is read
    from the text and must also be the key of the ``SetCommand`` Spark planned: listing every
    setting (``SET``, ``SET -v``) or any other key stays ``sql.admin``."""
    found = _SQL_SET.match(text)
    if found is None or plan is None:
        return False
    key = "spark.sql.session.timeZone" if found.group("zone") else found.group("key")
    return key in SETTABLE and plan.strip().startswith(f"SetCommand ({key},")


def redact_response(data: bytes, scrub: Callable[[str], str]) -> bytes:
    """A config answer with secret values replaced and every value scrubbed."""
    response = base_pb2.ConfigResponse.FromString(data)
    for pair in response.pairs:
        if SECRET_KEY.search(pair.key):
            pair.value = REDACTED_VALUE
        elif pair.HasField("value"):
            pair.value = scrub(pair.value)
    response.warnings[:] = [scrub(w) for w in response.warnings]
    return bytes(response.SerializeToString())
