"""Spark and gRPC errors, translated once into short messages an agent can act on.

The agent gets Spark's error class and the first useful line of its message, never a
JVM stack trace; connection failures become driver errors that say what to do.
"""

from __future__ import annotations

import re

from spark_mcp.errors import DriverLost, InvalidInput, QueryCancelled, SparkError, SparkMcpError

_CLASS_PREFIX = re.compile(r"^\s*(?:\([\w.$]+\)\s*)?\[([A-Z0-9_.]+)\]\s*")
_SQLSTATE_TAIL = re.compile(r"\s*SQLSTATE:\s*\w+.*$")
_MAX_LINE = 400
# What grpc's call objects print when the server sent no error details of its own.
_GRPC_REPR = re.compile(r"^\s*<_\w+ of RPC that terminated with:")
_GRPC_DETAILS = re.compile(r'details = "(.*?)"\n\s*debug_error_string', re.S)
_STATUS_MISMATCH = re.compile(r"Code in Status proto .* doesn't match status code \(StatusCode\.(\w+)\)")


def first_line(message: str) -> str:
    """The first non-empty line of a message, without the JVM stack or SQLSTATE tail."""
    text = message.split("JVM stacktrace:", 1)[0]
    for line in text.splitlines():
        line = line.strip()
        if line:
            line = _SQLSTATE_TAIL.sub("", _CLASS_PREFIX.sub("", line)).rstrip(" ;")
            return line[:_MAX_LINE] + ("…" if len(line) > _MAX_LINE else "")
    return ""


def error_class_of(message: str) -> str | None:
    match = _CLASS_PREFIX.match(message)
    return match.group(1) if match else None


def translate(exc: BaseException, *, what: str = "Spark") -> SparkMcpError:
    """Turn any exception raised by pyspark into spark-mcp's exception tree."""
    if isinstance(exc, SparkMcpError):
        return exc
    # Imported here, not with the module: pyspark (with pandas and numpy) and grpc load on first
    # use, off the server's start-up path (issue 12); what raised had loaded them already.
    import grpc
    from pyspark.errors import PySparkException
    from pyspark.errors.exceptions.connect import SparkConnectGrpcException

    if isinstance(exc, SparkConnectGrpcException):
        status = exc.getGrpcStatusCode()
        raw = exc._message or str(exc)
        error_class = exc.getCondition() or error_class_of(raw) or ""
        # Status codes that mean "the driver is not there" rather than "your statement is wrong".
        unreachable = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
        if status in unreachable and not error_class:
            return DriverLost(
                f"{what} is unreachable ({status.name}): the driver may have stopped; retry to get a new one"
            )
        if status is grpc.StatusCode.UNAUTHENTICATED:
            return DriverLost("the driver refused the session's credentials; close the session and create a new one")
        if error_class == "OPERATION_CANCELED" or "OPERATION_CANCELED" in raw:
            return QueryCancelled("the operation was interrupted in Spark")
        if not error_class and _GRPC_REPR.match(raw):
            # The driver ended the call without an error of its own (seen: a statement nested
            # thousands of levels deep overflows the parser's stack); the client then holds
            # only gRPC's description of the call, which tells an agent nothing.
            details = _GRPC_DETAILS.search(raw)
            said = details.group(1).strip() if details else ""
            if error_class_of(said):  # Spark's own error, only inside the call's description
                return SparkError(first_line(said), error_class=error_class_of(said) or "", sqlstate=exc.getSqlState())
            said = first_line(said)
            return SparkError(
                f"Spark failed the request without an error of its own ({said or 'no details'}); "
                "a statement or plan that is very deeply nested or very large can cause this: simplify it",
                error_class=f"GRPC_{status.name}",
            )
        return SparkError(
            first_line(raw) or type(exc).__name__,
            error_class=error_class or type(exc).__name__,
            sqlstate=exc.getSqlState(),
        )
    if isinstance(exc, PySparkException) and exc.getCondition() == "RETRIES_EXCEEDED":
        return DriverLost(f"{what} is unreachable (gave up after bounded retries): the driver may have stopped")
    if isinstance(exc, PySparkException):
        return SparkError(first_line(exc.getMessage()), error_class=exc.getCondition() or type(exc).__name__)
    if isinstance(exc, grpc.RpcError):
        return DriverLost(f"{what} is unreachable: the driver may have stopped; retry to get a new one")
    if isinstance(exc, UnicodeEncodeError):
        # Text with a lone surrogate (Python's JSON decoder accepts "\ud800") cannot be sent to Spark.
        bad = exc.object[exc.start : exc.end] if isinstance(exc.object, str) else ""
        return InvalidInput(
            f"the text holds {bad.encode('unicode_escape').decode() or 'a character'}, which is not valid Unicode "
            "(a lone surrogate): send UTF-8 text"
        )
    status_mismatch = _STATUS_MISMATCH.search(str(exc)) if isinstance(exc, ValueError) else None
    if status_mismatch is not None:
        # pyspark could not read the error the driver sent (seen under load: RESOURCE_EXHAUSTED,
        # a reply or its error details over a gRPC size limit), and raised about its own parsing.
        code = status_mismatch.group(1)
        return SparkError(
            f"Spark's answer could not be read (gRPC {code}); retry, and if it persists, "
            "make the statement or its result smaller",
            error_class=f"GRPC_{code}",
        )
    if isinstance(exc, ValueError) and "Channel closed" in str(exc):
        # The session's channel was closed under a running call: its driver died and the
        # supervisor gave up the session (session.Session.mark_lost).
        return DriverLost(f"the connection to {what} was closed: the driver stopped; retry to get a new one")
    return SparkError(first_line(str(exc)) or type(exc).__name__, error_class=type(exc).__name__)
