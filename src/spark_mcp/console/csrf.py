"""Cross-site request forgery: every console form carries a token, every POST is checked.

After login the token is the login's own (``WebSession.csrf``), random and kept on the
server. Before login (the login form, the OIDC start) there is no login yet, so the form
carries ``HMAC(key, binding)`` where ``binding`` is a random value in a pre-login cookie
and ``key`` is this process's secret: a page elsewhere can neither read the cookie nor
compute the MAC. Comparisons are constant-time.

The token is not the only guard: the session cookie is ``SameSite=Strict``, and a POST
whose ``Origin`` header names another origin is refused before its form is read
(``same_origin``). But ``SameSite`` treats every port of a host as the same site, so a
page served from another port of the same machine would get the cookie sent: the
token is what stops it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Collection

FIELD = "csrf"  # the form field every console form carries


def matches(expected: str, given: object) -> bool:
    """Whether a form's token is the expected one (constant time; absent or non-text: no)."""
    if not isinstance(given, str) or not given or not expected:
        return False
    return hmac.compare_digest(expected.encode("utf-8"), given.encode("utf-8", "replace"))


class LoginCsrf:
    """Tokens for forms shown before login, bound to the browser's pre-login cookie."""

    def __init__(self, key: bytes | None = None) -> None:
        self._key = key or secrets.token_bytes(32)

    @staticmethod
    def new_binding() -> str:
        return secrets.token_urlsafe(32)

    def token_for(self, binding: str) -> str:
        return hmac.new(self._key, b"spark-mcp console login\x00" + binding.encode("utf-8"), hashlib.sha256).hexdigest()

    def check(self, binding: object, given: object) -> bool:
        if not isinstance(binding, str) or not binding or len(binding) > 128:
            return False
        return matches(self.token_for(binding), given)


def same_origin(origin: str | None, allowed: Collection[str]) -> bool:
    """A POST's ``Origin`` is acceptable when absent (old browsers; the token still guards it)
    or one of this console's own origins. ``null`` (a sandboxed or privacy-redirected
    request) is refused."""
    if origin is None:
        return True
    return origin.lower() in allowed
