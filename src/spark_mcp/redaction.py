"""Redaction: secrets out of text before it is written or sent anywhere (pure, thread-safe).

Two kinds of secret are removed: the values registered with ``add_secret`` (driver tokens,
which live only in the ``Redactor``'s memory), and anything shaped like a credential
whatever its value: ``token=...``, ``PASSWORD: ...``, ``"api_key": "..."``, ``Bearer ...``, and
spark-mcp's own API tokens (``smcp_<id>_<secret>``).
The audit log redacts every record with it, and the result store scrubs stored rows with
``secrets()``. Replies leave through ``scrub_json`` (registered secrets only: heuristics would
mangle data), and operational logs through ``scrub_everywhere``. It has no dependencies
inside spark-mcp, so any layer may use it.
"""

from __future__ import annotations

import re
import threading
import weakref
from collections import Counter
from typing import Any

REDACTED = "[REDACTED]"

# A word that names a credential, a separator, then the value, quoted or bare. What comes
# before the word does not matter (``SPARK_CONNECT_AUTHENTICATE_TOKEN=`` is caught by its
# end), but the separator must follow the word at once, so ``secret_level = 3`` is left alone.
_ASSIGNMENT = re.compile(
    r"""(?ix)
    (?P<key>token|password|passwd|pwd|secret|secret[_.-]?key|api[_-]?key|access[_-]?key|credentials?)
    (?P<sep>["']?\s*[=:]\s*)
    (?P<value>"[^"]*"|'[^']*'|[^\s;&,'"(){}\[\]]+)
    """
)
_BEARER = re.compile(r"(?i)\b(Bearer\s+)[A-Za-z0-9._~+/-]+=*")
# spark-mcp's own API tokens, by shape (``state/tokens.py``): caught wherever they appear.
_API_TOKEN = re.compile(r"smcp_[0-9a-f]{12}_[A-Za-z0-9_-]{43}")


def _redact_assignment(match: re.Match[str]) -> str:
    value = match["value"]
    quote = value[0] if value[0] in "\"'" else ""
    return f"{match['key']}{match['sep']}{quote}{REDACTED}{quote}"


_LIVE: weakref.WeakSet[Redactor] = weakref.WeakSet()


def scrub_everywhere(text: str) -> str:
    """``text`` with the secrets of every live ``Redactor`` replaced (for operational logs)."""
    for redactor in list(_LIVE):
        text = redactor.scrub(text)
    return text


class Redactor:
    """Removes secrets from text before it is written anywhere. Thread-safe.

    Registered secrets live only in this object's memory; ``redact`` replaces each
    occurrence with ``[REDACTED]``, longest first so a secret containing another is
    removed whole.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._secrets: Counter[str] = Counter()  # counted: two owners may register one value
        self._pattern: re.Pattern[str] | None = None
        _LIVE.add(self)

    def add_secret(self, secret: str) -> None:
        if not secret:
            raise ValueError("an empty secret cannot be redacted")
        with self._lock:
            self._secrets[secret] += 1
            self._compile()

    def remove_secret(self, secret: str) -> None:
        with self._lock:
            if self._secrets[secret] > 1:
                self._secrets[secret] -= 1
            else:
                self._secrets.pop(secret, None)
            self._compile()

    def secrets(self) -> tuple[str, ...]:
        """The registered secrets, for scrubbing data that is not text (e.g. Arrow results)."""
        with self._lock:
            return tuple(self._secrets)

    def redact(self, text: str) -> str:
        pattern = self._pattern  # read once: a concurrent add swaps it whole
        if pattern is not None:
            text = pattern.sub(REDACTED, text)
        text = _API_TOKEN.sub(REDACTED, text)
        text = _ASSIGNMENT.sub(_redact_assignment, text)
        return _BEARER.sub(lambda m: f"{m[1]}{REDACTED}", text)

    def _compile(self) -> None:
        secrets = sorted(self._secrets, key=len, reverse=True)
        self._pattern = re.compile("|".join(re.escape(s) for s in secrets)) if secrets else None

    def scrub(self, text: str) -> str:
        """Registered secrets and API tokens replaced, no heuristics: for replies, whose data they would mangle."""
        pattern = self._pattern
        text = pattern.sub(REDACTED, text) if pattern is not None else text
        return _API_TOKEN.sub(REDACTED, text) if "smcp_" in text else text

    def scrub_json(self, value: Any) -> Any:
        """``scrub`` applied to every string (keys included) of a JSON-like value, at any depth."""
        if isinstance(value, str):
            return self.scrub(value)
        if isinstance(value, dict):
            return {self.scrub(k) if isinstance(k, str) else k: self.scrub_json(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.scrub_json(item) for item in value]
        return value

    def redact_value(self, value: Any) -> Any:
        """``redact`` applied to every string in ``value``, recursively through lists."""
        if isinstance(value, str):
            return self.redact(value)
        if isinstance(value, list | tuple):
            return [self.redact_value(item) for item in value]
        return value
