"""One exception tree with stable codes.

Every error spark-mcp raises on purpose derives from ``SparkMcpError`` and carries a
stable ``code`` that agents, tests and the audit log can rely on. Messages say what
happened and what to do next; they never carry a JVM stack trace or a secret.

    SparkMcpError                      code
    ├── ConfigError                    config_invalid
    ├── PolicyFileError                policy_invalid
    ├── InvalidInput                   invalid_input
    │   └── PlanError                  plan_error (names the failing operation)
    ├── NotFound                       not_found
    │   ├── SessionNotFound            session_not_found
    │   ├── JobNotFound                job_not_found
    │   └── ResultNotFound             result_not_found
    ├── SessionClosed                  session_closed
    ├── PolicyDenied                   policy_denied
    ├── LimitExceeded                  limit_exceeded
    │   └── QuotaExceeded              quota_exceeded (names the quota)
    ├── DriverError                    driver_error
    │   ├── DriverStartError           driver_start_failed
    │   └── DriverLost                 driver_lost
    ├── SparkError                     spark_error (plus Spark's own error class)
    ├── QueryTimedOut                  timed_out
    ├── QueryCancelled                 cancelled
    ├── JobLost                        job_lost
    ├── AuditError                     audit_error
    ├── StorageError                   storage_error (the result store could not write)
    └── StateError                     state_error
"""

from __future__ import annotations


class SparkMcpError(Exception):
    """Base of every error spark-mcp raises on purpose."""

    code: str = "error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class ConfigError(SparkMcpError):
    """The configuration (file, environment or flags) is invalid."""

    code = "config_invalid"


class PolicyFileError(SparkMcpError):
    """A policy file is invalid: the message names the file, key and reason."""

    code = "policy_invalid"


class InvalidInput(SparkMcpError):
    """A tool argument is malformed or out of range."""

    code = "invalid_input"


class PlanError(InvalidInput):
    """A structured plan is wrong at ``where`` (e.g. ``operations[2] (join)``)."""

    code = "plan_error"

    def __init__(self, where: str, message: str, *, error_class: str | None = None) -> None:
        super().__init__(f"{where}: {error_class + ': ' if error_class else ''}{message}")
        self.where = where
        self.error_class = error_class


class NotFound(SparkMcpError):
    """Something the caller named does not exist (or is not theirs)."""

    code = "not_found"


class SessionNotFound(NotFound):
    code = "session_not_found"


class JobNotFound(NotFound):
    code = "job_not_found"


class ResultNotFound(NotFound):
    code = "result_not_found"


class SessionClosed(SparkMcpError):
    """The session was closed, expired, or lost its driver."""

    code = "session_closed"


class PolicyDenied(SparkMcpError):
    """The policy refused the request; ``rule`` names the rule that decided it."""

    code = "policy_denied"

    def __init__(self, message: str, *, rule: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.rule = rule
        self.reason = reason or message


class LimitExceeded(SparkMcpError):
    """A role or server limit (sessions, rows, bytes) would be exceeded."""

    code = "limit_exceeded"


class QuotaExceeded(LimitExceeded):
    """A driver quota would be exceeded; ``quota`` is its config key (``quotas.max_drivers``...)."""

    code = "quota_exceeded"

    def __init__(self, message: str, *, quota: str) -> None:
        super().__init__(message)
        self.quota = quota


class DriverError(SparkMcpError):
    """A Spark driver could not be used."""

    code = "driver_error"


class DriverStartError(DriverError):
    """A driver failed to start; the message quotes the relevant lines of its log."""

    code = "driver_start_failed"


class DriverLost(DriverError):
    """A driver that was running has died."""

    code = "driver_lost"


class SparkError(SparkMcpError):
    """Spark refused or failed a statement.

    ``error_class`` is Spark's own error class (``TABLE_OR_VIEW_NOT_FOUND``,
    ``PARSE_SYNTAX_ERROR``...) when Spark gave one, otherwise the exception type.
    """

    code = "spark_error"

    def __init__(self, message: str, *, error_class: str, sqlstate: str | None = None) -> None:
        super().__init__(message)
        self.error_class = error_class
        self.sqlstate = sqlstate


class QueryTimedOut(SparkMcpError):
    """The statement ran past its deadline and was interrupted in Spark."""

    code = "timed_out"


class QueryCancelled(SparkMcpError):
    """The statement was cancelled and interrupted in Spark."""

    code = "cancelled"


class JobLost(SparkMcpError):
    """A job's server stopped while it was queued or running: it never finished."""

    code = "job_lost"


class AuditError(SparkMcpError):
    """The audit log could not be written or does not verify."""

    code = "audit_error"


class StorageError(SparkMcpError):
    """The result store could not write a result (disk full, file size limit)."""

    code = "storage_error"


class StateError(SparkMcpError):
    """The state database is unreadable, corrupt, or from a newer spark-mcp."""

    code = "state_error"
