"""Operational logging: structlog, to stderr only (stdout is the MCP protocol on stdio).

The audit log is separate (``audit.py``) and never receives operational logs.
"""

from __future__ import annotations

import logging
import sys

import structlog
from structlog.typing import EventDict, WrappedLogger

from spark_mcp.redaction import scrub_everywhere

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


def configure_logging(level: str = "info") -> None:
    numeric = _LEVELS.get(level, logging.INFO)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(_ScrubFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(max(numeric, logging.WARNING))  # third-party libraries: warnings and worse
    for name in ("spark_mcp",):
        logging.getLogger(name).setLevel(numeric)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            _scrub_secrets,
            structlog.processors.KeyValueRenderer(key_order=["timestamp", "level", "event"], drop_missing=True),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )


def _scrub_secrets(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    """No registered secret (a driver's token, say, inside an exception's text) reaches a log line."""
    return {key: scrub_everywhere(value) if isinstance(value, str) else value for key, value in event.items()}


class _ScrubFilter(logging.Filter):
    """The same for records of the standard library's logging (the SDK's, pyspark's, grpc's)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = scrub_everywhere(record.getMessage()), None
        if record.exc_info and not record.exc_text:
            record.exc_text = scrub_everywhere(logging.Formatter().formatException(record.exc_info))
        return True
