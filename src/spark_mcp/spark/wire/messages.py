"""Reading a client's message safely: nesting is bounded before protobuf parses anything.

protobuf's C parser (upb) refuses messages nested deeper than 100 levels, which a DataFrame
of about fifty chained operations already is; Spark's own server accepts 1024. Lifting that
limit (``allow_deep_messages``) is process-wide, and a message nested tens of thousands of
levels deep then crashes the parser (measured: a segmentation fault at 60,000 levels, from
a 470 KB message). So every message a client sends is first walked here, iteratively and
without parsing, following the message's descriptor: ``decode`` refuses one nested deeper
than the limit before protobuf sees it, and only then parses it.
"""

from __future__ import annotations

import io
from typing import TypeVar

from google.protobuf.descriptor import Descriptor
from google.protobuf.message import DecodeError, Message
from pyspark.sql.connect.proto import base_pb2, commands_pb2, relations_pb2

from spark_mcp.errors import InvalidInput

M = TypeVar("M", bound=Message)

_VARINT, _FIXED64, _LENGTH, _FIXED32 = 0, 1, 2, 5


def allow_deep_messages() -> bool:
    """Let protobuf parse messages deeper than 100 levels (``decode`` bounds them first).

    Returns False where the runtime offers no such switch; deep plans are then refused.
    """
    try:
        from google._upb import _message as upb  # no public switch exists
    except ImportError:
        return False
    upb.SetAllowOversizeProtos(True)
    return True


def _varint(data: bytes, pos: int, end: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= end:
            raise ValueError("a varint runs past the end of its message")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("a varint longer than ten bytes")


def depth(data: bytes, descriptor: Descriptor, *, limit: int) -> int:
    """How deep messages nest in ``data`` (a ``descriptor`` message); stops past ``limit``.

    Only fields the descriptor declares as messages are followed: unknown fields and bytes
    stay opaque, exactly as protobuf treats them. Raises ``ValueError`` on malformed input.
    """
    deepest = 0
    stack: list[tuple[int, int, Descriptor, int]] = [(0, len(data), descriptor, 1)]
    while stack:
        pos, end, desc, level = stack.pop()
        deepest = max(deepest, level)
        if deepest > limit:
            return deepest
        fields = desc.fields_by_number
        while pos < end:
            key, pos = _varint(data, pos, end)
            number, wire = key >> 3, key & 7
            if wire == _VARINT:
                _, pos = _varint(data, pos, end)
            elif wire == _FIXED64:
                pos += 8
            elif wire == _FIXED32:
                pos += 4
            elif wire == _LENGTH:
                length, pos = _varint(data, pos, end)
                if pos + length > end:
                    raise ValueError("a field runs past the end of its message")
                field = fields.get(number)
                if field is not None and field.message_type is not None:
                    stack.append((pos, pos + length, field.message_type, level + 1))
                pos += length
            else:
                raise ValueError(f"wire type {wire} (groups) is not part of Spark Connect")
        if pos != end:
            raise ValueError("a field runs past the end of its message")
    return deepest


def decode(cls: type[M], data: bytes, *, max_depth: int) -> M:
    """``cls`` parsed from ``data``, after checking its nesting; ``InvalidInput`` if unreadable."""
    try:
        found = depth(data, cls.DESCRIPTOR, limit=max_depth)
    except ValueError as exc:
        raise InvalidInput(f"not a valid {cls.DESCRIPTOR.name}: {exc}") from None
    if found > max_depth:
        raise InvalidInput(
            f"the {cls.DESCRIPTOR.name} nests more than {max_depth} levels deep ([gateway] max_plan_depth): "
            "build the DataFrame in steps (for example: save a step as a temp view, then read it with spark.table)"
        )
    try:
        parsed: M = cls.FromString(data)
        return parsed
    except DecodeError as exc:
        raise InvalidInput(f"not a valid {cls.DESCRIPTOR.name}: {exc}") from None


def open_plan(plan: base_pb2.Plan, *, max_bytes: int, max_depth: int) -> relations_pb2.Relation | commands_pb2.Command:
    """The relation or command a ``Plan`` holds, inflating a compressed one (bounded)."""
    kind = plan.WhichOneof("op_type")
    if kind == "root":
        return plan.root
    if kind == "command":
        return plan.command
    if kind != "compressed_operation":
        raise InvalidInput("the plan holds neither a relation nor a command")
    packed = plan.compressed_operation
    if packed.compression_codec != base_pb2.COMPRESSION_CODEC_ZSTD:
        raise InvalidInput("a compressed plan must use zstd")
    import zstandard  # comes with pyspark[connect], whose client compresses large plans with it

    try:
        with zstandard.ZstdDecompressor().stream_reader(io.BytesIO(packed.data)) as reader:
            data = reader.read(max_bytes + 1)
    except zstandard.ZstdError as exc:
        raise InvalidInput(f"the compressed plan cannot be inflated: {exc}") from None
    if len(data) > max_bytes:
        raise InvalidInput(f"the compressed plan inflates to more than {max_bytes} bytes ([gateway] max_message_bytes)")
    op_type = base_pb2.Plan.CompressedOperation
    if packed.op_type == op_type.OP_TYPE_RELATION:
        return decode(relations_pb2.Relation, data, max_depth=max_depth)
    if packed.op_type == op_type.OP_TYPE_COMMAND:
        return decode(commands_pb2.Command, data, max_depth=max_depth)
    raise InvalidInput("a compressed plan must hold a relation or a command")
