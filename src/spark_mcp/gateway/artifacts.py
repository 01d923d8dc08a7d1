"""``addArtifact`` through the gateway: data blocks pass, code needs ``code.run``.

A client uploads artifacts by name, and the prefix says what each is (Spark's
``ArtifactManager``): ``cache/<hash>`` blocks hold the data of a large local relation
(``createDataFrame`` of a big pandas frame) and are data; ``jars/``, ``classes/``,
``pyfiles/``, ``archives/`` and ``files/`` extend the driver with code or files its code
can load, so they need ``code.run``; anything else (``forward_to_fs/`` writes to a path on
the driver's file system) needs ``sql.admin``. A name that climbs out of its folder is
invalid. Every message of the upload stream is checked before it is passed on.
"""

from __future__ import annotations

import re

from pyspark.sql.connect.proto import base_pb2

from spark_mcp.errors import InvalidInput

CODE_PREFIXES = ("jars/", "classes/", "pyfiles/", "archives/", "files/")
_CACHE = re.compile(r"cache/[0-9a-fA-F]{16,128}")


def action_for(name: str) -> str | None:
    """The action an artifact of this name needs beyond a session (None: it is data)."""
    if not name or len(name) > 1024 or "\x00" in name:
        raise InvalidInput("an artifact name must be 1-1024 characters")
    parts = name.split("/")
    if (
        name.startswith("/")
        or "\\" in name
        or any(part in ("", ".", "..") for part in parts[:-1])
        or parts[-1]
        in (
            "",
            ".",
            "..",
        )
    ):
        raise InvalidInput(f"artifact name {name[:200]!r} is not a relative path inside its folder")
    if _CACHE.fullmatch(name):
        return None
    if name.startswith(CODE_PREFIXES):
        return "code.run"
    return "sql.admin"


def names_in(request: base_pb2.AddArtifactsRequest) -> list[str]:
    """The artifact names an ``AddArtifacts`` message begins (a later chunk begins none)."""
    kind = request.WhichOneof("payload")
    if kind == "batch":
        return [artifact.name for artifact in request.batch.artifacts]
    if kind == "begin_chunk":
        return [request.begin_chunk.name]
    return []  # a later chunk of the artifact begun (and checked) before it
