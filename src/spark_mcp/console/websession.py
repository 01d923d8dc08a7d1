"""Console logins: an opaque cookie naming a record the server keeps, and ends at will.

The cookie holds 256 random bits and nothing else; the server keeps, under the cookie's
SHA-256, who logged in, how (``token``, ``oidc``, ``proxy``, ``none``; for a token, its
id), the login's CSRF token and when it ends. So a login is revocable on the server:
logging out deletes the record, and the per-request check (``core.Console.login_of``)
deletes it when the credential behind it is revoked or expired. A login ends after
``session_idle_s`` without a request and ``session_max_s`` after it began, and never
outlives the credential it was made with. Logins live in this process's memory: a
restart logs everyone out, which is the safe direction.

The cookie is ``HttpOnly`` (no script can read it), ``SameSite=Strict`` (no other site's
page makes the browser send it) and, under TLS, ``Secure`` with the ``__Host-`` prefix (a
sibling subdomain cannot set or shadow it).
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from starlette.responses import Response

_CAPACITY = 10_000  # logins kept at once, server-wide: the oldest go first
_PER_PRINCIPAL = 32  # logins kept per principal: the oldest go first


@dataclass(frozen=True)
class CookiePolicy:
    """The console's cookie names and attributes; ``secure`` when browsers reach it over TLS."""

    secure: bool

    @property
    def session_name(self) -> str:
        return "__Host-smcp_console" if self.secure else "smcp_console"

    @property
    def binding_name(self) -> str:
        """The pre-login cookie that binds a login form (and an OIDC redirect) to this browser."""
        return "__Host-smcp_login" if self.secure else "smcp_login"

    def set_session(self, response: Response, value: str) -> None:
        # No Max-Age: a browser-session cookie; the server decides when the login ends.
        response.set_cookie(self.session_name, value, path="/", secure=self.secure, httponly=True, samesite="strict")

    def set_binding(self, response: Response, value: str, max_age: int) -> None:
        # Lax, not Strict: the identity provider's redirect back to the console is a
        # cross-site navigation, and must carry it so the callback can match its browser.
        response.set_cookie(
            self.binding_name, value, max_age=max_age, path="/", secure=self.secure, httponly=True, samesite="lax"
        )

    def clear(self, response: Response, name: str) -> None:
        if name == self.session_name:
            response.delete_cookie(name, path="/", secure=self.secure, httponly=True, samesite="strict")
        else:
            response.delete_cookie(name, path="/", secure=self.secure, httponly=True, samesite="lax")


@dataclass
class WebSession:
    """One console login. Never holds a credential: only its id."""

    principal: str
    auth: str
    token_id: str | None
    scopes: tuple[str, ...]
    groups: tuple[str, ...]
    csrf: str
    created_at: float
    expires_at: float
    last_seen: float
    flashes: list[str] = field(default_factory=list)

    def flash(self, message: str) -> None:
        self.flashes = [*self.flashes[-4:], message]

    def take_flashes(self) -> list[str]:
        shown, self.flashes = self.flashes, []
        return shown


def _key(cookie: str) -> str:
    return hashlib.sha256(cookie.encode("utf-8", "replace")).hexdigest()


class WebSessions:
    """The server's console logins, bounded in number, ended by age, idleness or request."""

    def __init__(
        self,
        *,
        idle_s: float,
        max_s: float,
        clock: Callable[[], float] = time.time,
        capacity: int = _CAPACITY,
        per_principal: int = _PER_PRINCIPAL,
    ) -> None:
        self._idle_s = idle_s
        self._max_s = max_s
        self._clock = clock
        self._capacity = capacity
        self._per_principal = per_principal
        self._logins: dict[str, WebSession] = {}  # sha256(cookie) -> login, oldest first
        self._guard = threading.Lock()

    def create(
        self,
        principal: str,
        *,
        auth: str,
        token_id: str | None = None,
        scopes: tuple[str, ...] = (),
        groups: tuple[str, ...] = (),
        credential_expires_at: float | None = None,
    ) -> tuple[str, WebSession]:
        """A new login: the cookie value (shown to the browser once) and its record."""
        now = self._clock()
        expires = now + self._max_s
        if credential_expires_at is not None:
            expires = min(expires, credential_expires_at)
        cookie = secrets.token_urlsafe(32)
        login = WebSession(
            principal=principal,
            auth=auth,
            token_id=token_id,
            scopes=scopes,
            groups=groups,
            csrf=secrets.token_urlsafe(32),
            created_at=now,
            expires_at=expires,
            last_seen=now,
        )
        with self._guard:
            mine = [k for k, v in self._logins.items() if v.principal == principal]
            for key in mine[: max(0, len(mine) - self._per_principal + 1)]:
                del self._logins[key]
            while len(self._logins) >= self._capacity:
                del self._logins[next(iter(self._logins))]
            self._logins[_key(cookie)] = login
        return cookie, login

    def get(self, cookie: str | None) -> WebSession | None:
        """The live login the cookie names, touched; None (and forgotten) once it has ended."""
        if not cookie or len(cookie) > 128:
            return None
        key = _key(cookie)
        now = self._clock()
        with self._guard:
            login = self._logins.get(key)
            if login is None:
                return None
            if now >= login.expires_at or now - login.last_seen >= self._idle_s:
                del self._logins[key]
                return None
            login.last_seen = now
            return login

    def end(self, cookie: str | None) -> WebSession | None:
        if not cookie:
            return None
        with self._guard:
            return self._logins.pop(_key(cookie), None)

    def __len__(self) -> int:
        with self._guard:
            return len(self._logins)
