"""Who is calling: the principal of the current request.

A principal always comes from one place: the server's ``IdentitySource`` resolves it
once per tool call (in the MCP middleware) and binds it here. Code below the MCP layer
asks ``current_principal()``; there is no way to run a tool without one, because asking
when none is bound is an error, never an anonymous default.
"""

from __future__ import annotations

import getpass
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

from spark_mcp.errors import InvalidInput

# Principal ids name directories and Spark Connect user ids: keep them boring.
_PRINCIPAL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: its id, the roles policy gives it, and how it proved who it is.

    ``roles`` is the one source of the principal's roles for every decision: whoever builds
    a principal (``App.principal``) resolves them once, from the policy's ``[users]`` and,
    for OIDC, the token's groups. ``auth`` says how the caller was authenticated (``stdio``,
    ``token``, ``oidc``, ``proxy``, ``none``), ``token_id`` which API token it used (never
    the token), and ``read_only`` that its credential lacks the write scope, so actions
    that change anything are refused whatever the roles grant.
    """

    id: str
    roles: tuple[str, ...] = ()
    attrs: Mapping[str, str] = field(default_factory=dict)
    auth: str = "stdio"
    token_id: str | None = None
    read_only: bool = False

    def __post_init__(self) -> None:
        validate_principal_id(self.id)


def is_principal_id(value: str) -> bool:
    return _PRINCIPAL_ID.fullmatch(value) is not None


def validate_principal_id(value: str) -> str:
    if not is_principal_id(value):
        raise InvalidInput(
            f"invalid user name {value!r}: use 1-64 letters, digits, '.', '_', '@' or '-', "
            "starting with a letter or digit"
        )
    return value


def os_user() -> str:
    """The operating-system user, the stdio default principal."""
    try:
        name = getpass.getuser()
    except (KeyError, OSError):
        name = "local"
    return name if _PRINCIPAL_ID.fullmatch(name) else "local"


_current: ContextVar[Principal | None] = ContextVar("spark_mcp_principal", default=None)


def current_principal() -> Principal:
    """The principal of the request being served. Raises if none is bound (a bug)."""
    principal = _current.get()
    if principal is None:
        raise RuntimeError("no principal is bound to this request")
    return principal


@contextmanager
def acting_as(principal: Principal) -> Iterator[Principal]:
    """Bind ``principal`` for the duration of a request."""
    token = _current.set(principal)
    try:
        yield principal
    finally:
        _current.reset(token)
