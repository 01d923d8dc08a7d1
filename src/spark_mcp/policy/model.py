"""The policy as data: what a policy file may say, and the merged ``Policy`` decisions use.

Two layers:

- ``PolicyFile`` and ``RoleSpec`` are strict pydantic models of one TOML file. They only
  validate: unknown keys, wrong types, unknown actions and bad table patterns are errors
  that ``loader`` reports with the file, the key and the reason.
- ``Policy`` is several files merged (roles by name, users by id) with every pattern
  compiled to a ``TablePattern``. It answers "which roles does this principal have" and
  "what does it get in total" (``Grants``, for ``whoami``); ``decide`` answers "may it".

Table patterns (each part a case-insensitive glob: ``*``, ``?``, ``[...]``, ``[!...]``):

    *                         every table in every catalog
    namespace.table           a table of the session catalog ``spark_catalog`` only
    catalog.namespace.table   the middle part matches the whole, possibly dotted, namespace
    catalog.ns1.ns2.table     four or more parts spell a nested namespace level by level

Parts are matched one by one, so a glob never reaches into a neighbouring part: ``tpch.*``
matches ``spark_catalog.tpch.lineitem`` but nothing in another catalog. Backticks, quotes
and spaces are rejected rather than interpreted, so a pattern always means what it shows.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase
from types import MappingProxyType
from typing import Annotated, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from spark_mcp.errors import InvalidInput
from spark_mcp.identity import Principal, validate_principal_id
from spark_mcp.policy.actions import ACTIONS
from spark_mcp.statement import SESSION_CATALOG, TableName

DEFAULT_USER = "default"
"""The ``[users]`` entry for every principal that is not listed by name."""

_ROLE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")
# Characters a pattern may not contain: they would be quoting or whitespace that a reader
# of the file could take for something the matcher does not do.
_FORBIDDEN_IN_PATTERN = re.compile(r"[`'\"\s\x00-\x1f\x7f]")


@dataclass(frozen=True)
class TablePattern:
    """A compiled table pattern from a role's ``read``, ``write`` or ``deny`` list."""

    text: str  # as written in the file, for rule strings and whoami
    catalog: str | None  # None: the lone "*", every table everywhere
    namespace: tuple[str, ...]  # one glob for the whole namespace, or one per level (4+ parts)
    name: str
    per_level: bool = False  # True when the namespace was spelled level by level

    @classmethod
    def parse(cls, text: str) -> TablePattern:
        """Compile ``text``; ``ValueError`` with a reader-facing reason if it is not a pattern."""
        if not text:
            raise ValueError("empty table pattern")
        if "`" in text:
            raise ValueError(
                f"table pattern {text!r} contains a backtick: patterns are not quoted; "
                "write the parts plainly, separated by dots"
            )
        if _FORBIDDEN_IN_PATTERN.search(text):
            raise ValueError(f"table pattern {text!r} contains a quote, space or control character")
        if text == "*":
            return cls(text=text, catalog=None, namespace=("*",), name="*")
        parts = text.lower().split(".")
        if any(not part for part in parts):
            raise ValueError(f"table pattern {text!r} has an empty part (a leading, trailing or double dot)")
        if len(parts) == 1:
            raise ValueError(
                f"table pattern {text!r} has one part: write namespace.table (session catalog), "
                "catalog.namespace.table, or a lone * for every table"
            )
        for part in parts:
            _check_glob(text, part)
        if len(parts) == 2:
            return cls(text=text, catalog=SESSION_CATALOG, namespace=(parts[0],), name=parts[1])
        return cls(
            text=text,
            catalog=parts[0],
            namespace=tuple(parts[1:-1]),
            name=parts[-1],
            per_level=len(parts) > 3,
        )

    def matches(self, table: TableName) -> bool:
        """Whether ``table`` is one of the tables this pattern names (case-insensitive)."""
        if self.catalog is None:
            return True
        if not fnmatchcase(table.catalog.lower(), self.catalog):
            return False
        if not fnmatchcase(table.name.lower(), self.name):
            return False
        namespace = table.namespace.lower()
        if not self.per_level:
            return fnmatchcase(namespace, self.namespace[0])
        levels = namespace.split(".")
        return len(levels) == len(self.namespace) and all(
            fnmatchcase(level, glob) for level, glob in zip(levels, self.namespace, strict=True)
        )

    def covers_catalog(self, catalog: str) -> bool:
        """Whether this pattern can name a table in ``catalog``."""
        return self.catalog is None or fnmatchcase(catalog.lower(), self.catalog)

    def covers_namespace(self, catalog: str, namespace: str) -> bool:
        """Whether this pattern can name a table in ``catalog.namespace``."""
        if self.catalog is None:
            return True
        if not self.covers_catalog(catalog):
            return False
        namespace = namespace.lower()
        if not self.per_level:
            return fnmatchcase(namespace, self.namespace[0])
        levels = namespace.split(".")
        return len(levels) == len(self.namespace) and all(
            fnmatchcase(level, glob) for level, glob in zip(levels, self.namespace, strict=True)
        )

    def covers_whole_namespace(self, catalog: str, namespace: str) -> bool:
        """Whether this pattern names every table of ``catalog.namespace`` (its name part is ``*``)."""
        return self.name == "*" and self.covers_namespace(catalog, namespace)

    def __str__(self) -> str:
        return self.text


def _check_glob(text: str, part: str) -> None:
    """Reject brackets that ``fnmatch`` would silently read as literal characters."""
    i = 0
    while i < len(part):
        char = part[i]
        if char == "]":
            raise ValueError(f"table pattern {text!r} has a ']' without a matching '['")
        if char == "[":
            j = i + 1
            if j < len(part) and part[j] == "!":
                j += 1
            if j < len(part) and part[j] == "]":
                j += 1  # fnmatch: a ']' first in a class is a literal member
            close = part.find("]", j)
            if close < 0:
                raise ValueError(f"table pattern {text!r} has a '[' without a closing ']'")
            i = close
        i += 1


# --- the file, as pydantic validates it -----------------------------------------------------


def _action_name(value: str) -> str:
    if value not in ACTIONS:
        raise ValueError(f"unknown action {value!r}; known actions: {', '.join(ACTIONS)}")
    return value


def _pattern_text(value: str) -> str:
    TablePattern.parse(value)
    return value


def _role_name(value: str) -> str:
    if not _ROLE_NAME.fullmatch(value):
        raise ValueError(
            f"invalid role name {value!r}: use up to 64 letters, digits, '_' or '-', starting with a letter"
        )
    return value


def _user_name(value: str) -> str:
    try:
        return validate_principal_id(value)
    except InvalidInput as exc:
        raise ValueError(exc.message) from None


ActionName = Annotated[str, AfterValidator(_action_name)]
PatternText = Annotated[str, AfterValidator(_pattern_text)]
RoleName = Annotated[str, AfterValidator(_role_name)]
UserName = Annotated[str, AfterValidator(_user_name)]


def _profile_name(value: str) -> str:
    if not re.fullmatch(r"[a-z][a-z0-9_-]{0,31}", value):
        raise ValueError(f"invalid profile name {value!r}: up to 32 lower-case letters, digits, '_' or '-'")
    return value


ProfileName = Annotated[str, AfterValidator(_profile_name)]


class _FileModel(BaseModel):
    # strict: TOML already has types, so "10" for max_rows is a mistake, not a number.
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


Engine = Literal["spark", "sail"]


def _default_engines() -> list[Engine]:
    return ["spark"]


class RoleSpec(_FileModel):
    """One ``[roles.<name>]`` table as written."""

    description: str | None = None
    actions: list[ActionName] = Field(default_factory=list)
    read: list[PatternText] = Field(default_factory=list)
    write: list[PatternText] = Field(default_factory=list)
    deny: list[PatternText] = Field(default_factory=list)
    max_rows: int | None = Field(default=None, ge=1)
    query_timeout_s: float | None = Field(default=None, gt=0)
    max_sessions: int | None = Field(default=None, ge=1)
    # The engines whose drivers the role may start sessions on (create_session(engine=...)).
    engines: list[Engine] = Field(default_factory=_default_engines)
    profiles: list[ProfileName] | None = Field(
        default=None, description="driver profiles the role may use, the first being its default"
    )


class PolicyFile(_FileModel):
    """One policy file as written: roles, and which users have them."""

    roles: dict[RoleName, RoleSpec] = Field(default_factory=dict)
    users: dict[UserName, list[RoleName]] = Field(default_factory=dict)


# --- the merged policy ----------------------------------------------------------------------


@dataclass(frozen=True)
class Role:
    """A role with its patterns compiled, and the file that defines it."""

    name: str
    source: str
    description: str | None = None
    actions: tuple[str, ...] = ()
    read: tuple[TablePattern, ...] = ()
    write: tuple[TablePattern, ...] = ()
    deny: tuple[TablePattern, ...] = ()
    max_rows: int | None = None
    query_timeout_s: float | None = None
    max_sessions: int | None = None
    engines: tuple[str, ...] = ("spark",)
    profiles: tuple[str, ...] | None = None  # None: the role lists none and gets the default profile

    @classmethod
    def from_spec(cls, name: str, spec: RoleSpec, *, source: str) -> Role:
        return cls(
            name=name,
            source=source,
            description=spec.description,
            actions=tuple(spec.actions),
            read=tuple(TablePattern.parse(p) for p in spec.read),
            write=tuple(TablePattern.parse(p) for p in spec.write),
            deny=tuple(TablePattern.parse(p) for p in spec.deny),
            max_rows=spec.max_rows,
            query_timeout_s=spec.query_timeout_s,
            max_sessions=spec.max_sessions,
            engines=tuple(dict.fromkeys(spec.engines)),
            profiles=tuple(dict.fromkeys(spec.profiles)) if spec.profiles is not None else None,
        )


class Grants(BaseModel):
    """Everything a principal's roles give it together (the union), for ``whoami``.

    Limits are the largest value any of its roles sets, or None when none sets one (the
    server's default applies, and the server's own cap always does).
    """

    model_config = ConfigDict(frozen=True)

    principal: str
    roles: tuple[str, ...]
    actions: tuple[str, ...]
    read: tuple[str, ...]
    write: tuple[str, ...]
    deny: tuple[str, ...]
    max_rows: int | None
    query_timeout_s: float | None
    max_sessions: int | None
    engines: tuple[str, ...] = ()


@dataclass(frozen=True)
class Policy:
    """Every loaded policy file, merged. Build it with ``loader.load_policies``."""

    roles: Mapping[str, Role]
    users: Mapping[str, tuple[str, ...]]
    sources: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # The loader reports these with file and key; this guards hand-built policies.
        for user, names in self.users.items():
            for name in names:
                if name not in self.roles:
                    raise ValueError(f"user {user!r} has undefined role {name!r}")
        object.__setattr__(self, "roles", MappingProxyType(dict(self.roles)))
        object.__setattr__(self, "users", MappingProxyType({u: tuple(r) for u, r in self.users.items()}))

    def roles_for(self, principal_id: str, groups: Iterable[str] = ()) -> tuple[str, ...]:
        """The principal's role names: its own ``[users]`` entry, else ``default``'s, else none;
        then every group (from an OIDC token's groups claim) that names a role of this policy.

        A user listed with an empty list has no roles from ``[users]``: that is how a policy
        shuts one principal out while ``default`` still serves everyone else. A group that
        names no role gives nothing: groups are matched to roles by exact name, never created.
        """
        names = self.users[principal_id] if principal_id in self.users else self.users.get(DEFAULT_USER, ())
        from_groups = [group for group in groups if group in self.roles]
        return tuple(dict.fromkeys([*names, *from_groups]))

    def roles_of(self, principal_id: str) -> tuple[Role, ...]:
        return self.roles_named(self.roles_for(principal_id))

    def roles_named(self, names: Iterable[str]) -> tuple[Role, ...]:
        """The roles called ``names``; a name this policy does not define gives nothing."""
        return tuple(self.roles[name] for name in dict.fromkeys(names) if name in self.roles)

    def grants_for(self, principal: Principal) -> Grants:
        roles = self.roles_named(principal.roles)

        def union(items: list[str]) -> tuple[str, ...]:
            return tuple(dict.fromkeys(items))  # first-seen order, no duplicates

        return Grants(
            principal=principal.id,
            roles=tuple(role.name for role in roles),
            actions=tuple(
                sorted(
                    {
                        a
                        for role in roles
                        for a in role.actions
                        if not (principal.read_only and ACTIONS[a].changes)  # decide() refuses these
                    }
                )
            ),
            read=union([p.text for role in roles for p in role.read]),
            write=union([p.text for role in roles for p in role.write]),
            deny=union([p.text for role in roles for p in role.deny]),
            max_rows=_largest([role.max_rows for role in roles]),
            query_timeout_s=_largest([role.query_timeout_s for role in roles]),
            max_sessions=_largest([role.max_sessions for role in roles]),
            engines=union([engine for role in roles for engine in role.engines]),
        )


_Limit = TypeVar("_Limit", int, float)


def _largest(values: list[_Limit | None]) -> _Limit | None:
    """The most generous limit any role sets: grants are a union, so limits are too."""
    present = [v for v in values if v is not None]
    return max(present) if present else None
