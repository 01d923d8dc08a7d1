"""What environment variables a profile may give its drivers: an allowlist, like Spark settings.

A driver's environment can change what the JVM loads (``JAVA_TOOL_OPTIONS``,
``LD_PRELOAD``, ``SPARK_CONF_DIR``, ``SPARK_SUBMIT_OPTS``, ``CLASSPATH``...) and carries its
Spark Connect token, so a profile may set only the variables cloud and Kerberos clients
read to find their credentials and settings, plus locale and time zone.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

ALLOWED_NAMES = frozenset(
    {
        "HADOOP_CONF_DIR",
        "HADOOP_USER_NAME",
        "HADOOP_TOKEN_FILE_LOCATION",
        "KRB5_CONFIG",
        "KRB5CCNAME",
        "TZ",
        "LANG",
    }
)
ALLOWED_PREFIXES = ("AWS_", "GOOGLE_", "GCLOUD_", "AZURE_", "LC_")

_NAME = re.compile(r"[A-Z_][A-Z0-9_]{0,127}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

CREDENTIALS_PLACEHOLDER = "{credentials}"
"""In a profile's ``env`` values: the driver's private folder holding its credential files."""


def env_problem(name: str, value: object) -> str | None:
    """Why ``name = value`` may not be in a driver's environment, or None when it may."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        return f"{name!r} is not an environment variable name (capital letters, digits and '_')"
    if name not in ALLOWED_NAMES and not name.startswith(ALLOWED_PREFIXES):
        allowed = ", ".join([*sorted(ALLOWED_NAMES), *(p + "*" for p in ALLOWED_PREFIXES)])
        return f"{name} may not be set for a driver (allowed: {allowed})"
    if not isinstance(value, str) or len(value) > 4096 or _CONTROL.search(value):
        return f"{name}: the value must be a string of at most 4096 characters without control characters"
    return None


def check_env(env: Mapping[str, object]) -> dict[str, str]:
    problems = [problem for name, value in env.items() if (problem := env_problem(name, value)) is not None]
    if problems:
        raise ValueError("; ".join(problems))
    return {str(k): str(v) for k, v in env.items()}
