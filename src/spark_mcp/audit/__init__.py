"""The audit log: one typed record per tool call, hash-chained, on disk before the reply.

Format: JSON lines, one ``AuditRecord`` per line, keys in field order. Each record holds
``prev_hash`` (the previous record's ``hash``, ``"0" * 64`` for the first) and ``hash``,
the SHA-256 of ``prev_hash`` followed by the canonical JSON (sorted keys, no spaces) of
every other field. A head file ``<log>.head`` holds the record count and the last hash.
Together they make tampering visible to ``verify()`` (see ``reading.py``).

The chain is not signed: someone who can rewrite the whole file and its head can forge
it. What it guarantees is that a partial edit, an accident or a crash is never silent.
Records go only to the audit file, never to the structlog logs.

record.py    the record, its hash, parsing one line
files.py     the private folder, the head file, reading lines from the end
writer.py    ``AuditLog``: redact, chain, append and fsync under locks
reading.py   ``verify`` (the whole chain against its head) and ``tail`` (the last records)
calls.py     ``emit_call``: a call's ``CallRecord`` as its one record, for every front door
refusals.py  how many refusals for a credential are recorded a minute (anyone can cause one)

``Redactor`` lives in ``spark_mcp.redaction``; it is re-exported here because the log
redacts every record with it.
"""

from spark_mcp.audit.calls import emit_call
from spark_mcp.audit.files import HEAD_SUFFIX
from spark_mcp.audit.reading import VerifyReport, tail, verify
from spark_mcp.audit.record import GENESIS_HASH, AuditRecord, record_hash
from spark_mcp.audit.writer import AuditLog
from spark_mcp.redaction import REDACTED, Redactor

__all__ = [
    "GENESIS_HASH",
    "HEAD_SUFFIX",
    "REDACTED",
    "AuditLog",
    "AuditRecord",
    "Redactor",
    "VerifyReport",
    "emit_call",
    "record_hash",
    "tail",
    "verify",
]
