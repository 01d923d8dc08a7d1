"""Load policy files (``policies/*.toml``) and merge them into one ``Policy``.

Rules, in the order they are checked:

1. Each path is a file, or a directory meaning its ``*.toml`` files (sorted by name, not
   recursive, dot-files skipped). A path that does not exist is an error. A file reached
   twice (say, by its directory and by name) is read once.
2. No policy file at all is an error, never an empty or allow-all policy: the server
   fails closed and says where it looked.
3. Each file must be valid TOML and match ``PolicyFile`` exactly: unknown keys, wrong
   types, unknown actions and bad table patterns are all reported at once, each as
   ``<file>: <key>: <reason>`` (e.g. ``roles.analyst.actions[2]``).
4. Files merge: a role is defined in exactly one file; a user may appear in several files
   only with the same roles; every role a user is given must be defined in some file.

Every failure is a ``PolicyFileError``.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from spark_mcp.errors import PolicyFileError
from spark_mcp.policy.model import Policy, PolicyFile, Role, RoleSpec

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
_TOML_TYPES = {
    "str": "a string",
    "int": "an integer",
    "float": "a float",
    "bool": "a boolean",
    "list": "an array",
    "dict": "a table",
}


def load_policies(paths: Sequence[Path]) -> Policy:
    """Load, validate and merge every policy file under ``paths`` (files or directories)."""
    files = policy_files(paths)
    return merge_policy_files([(str(path), load_policy_file(path)) for path in files])


def policy_files(paths: Sequence[Path]) -> list[Path]:
    """The policy files ``paths`` stand for, in load order; an error if there are none."""
    found: list[Path] = []
    seen: set[Path] = set()
    for path in paths:
        if path.is_dir():
            candidates = sorted(
                p for p in path.iterdir() if p.suffix == ".toml" and not p.name.startswith(".") and p.is_file()
            )
        elif path.is_file():
            candidates = [path]
        else:
            raise PolicyFileError(f"{path}: policy file or directory not found")
        for candidate in candidates:
            resolved = candidate.resolve()
            if resolved not in seen:
                seen.add(resolved)
                found.append(candidate)
    if not found:
        where = ", ".join(str(p) for p in paths) or "(no paths given)"
        raise PolicyFileError(
            f"no policy files found in {where}: spark-mcp never runs without a policy; "
            "add a .toml policy file there or point SPARK_MCP_POLICIES at one"
        )
    return found


def load_policy_file(path: Path) -> PolicyFile:
    """Read and validate one policy file (not merged: its users may name roles defined elsewhere)."""
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise PolicyFileError(f"{path}: policy file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise PolicyFileError(f"{path}: not valid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise PolicyFileError(f"{path}: not valid TOML: the file is not UTF-8 text") from None
    except OSError as exc:
        raise PolicyFileError(f"{path}: cannot read policy file: {exc.strerror}") from None
    return parse_policy_file(data, source=str(path))


def parse_policy_file(data: dict[str, Any], *, source: str) -> PolicyFile:
    """Validate one file's parsed TOML; ``source`` names it in error messages."""
    try:
        return PolicyFile.model_validate(data)
    except ValidationError as exc:
        problems = [f"{source}: {_key(item['loc'])}: {_reason(item)}" for item in exc.errors()]
        raise PolicyFileError("\n".join(problems)) from None


def policy_from_toml(text: str, *, source: str = "<string>") -> Policy:
    """A policy from TOML text alone (tests, ``spark-mcp policy check -``)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PolicyFileError(f"{source}: not valid TOML: {exc}") from None
    return merge_policy_files([(source, parse_policy_file(data, source=source))])


def merge_policy_files(files: Sequence[tuple[str, PolicyFile]]) -> Policy:
    """Merge validated files, in order; ``(source, file)`` pairs name where each came from."""
    roles: dict[str, Role] = {}
    users: dict[str, tuple[str, ...]] = {}
    user_sources: dict[str, str] = {}
    for source, policy_file in files:
        for name, spec in policy_file.roles.items():
            if name in roles:
                raise PolicyFileError(
                    f"{source}: roles.{name}: role {name!r} is already defined in {roles[name].source}; "
                    "define each role in one file only"
                )
            roles[name] = Role.from_spec(name, spec, source=source)
        for user, names in policy_file.users.items():
            given = tuple(names)
            if user in users and users[user] != given:
                raise PolicyFileError(
                    f"{source}: users.{_part(user)}: gives {user!r} the roles {list(given)}, but "
                    f"{user_sources[user]} gives {list(users[user])}; list each user's roles in one place"
                )
            users[user] = given
            user_sources.setdefault(user, source)
    for user, role_names in users.items():
        for index, name in enumerate(role_names):
            if name not in roles:
                defined = ", ".join(sorted(roles)) or "none"
                raise PolicyFileError(
                    f"{user_sources[user]}: users.{_part(user)}[{index}]: role {name!r} is not defined "
                    f"in any policy file (defined roles: {defined})"
                )
    return Policy(roles=roles, users=users, sources=tuple(source for source, _ in files))


def _part(key: str) -> str:
    """A key as TOML would spell it: bare when it can be, quoted otherwise."""
    return key if _BARE_KEY.fullmatch(key) else json.dumps(key)


def _key(loc: tuple[int | str, ...]) -> str:
    """pydantic's error location as a TOML key path, e.g. ``roles.analyst.actions[2]``."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif part == "[key]":
            continue  # the error is about the key itself, which is already the last part
        else:
            text += ("." if text else "") + _part(part)
    return text or "(top level)"


def _reason(item: Any) -> str:
    kind: str = item["type"]
    loc: tuple[int | str, ...] = item["loc"]
    if kind == "extra_forbidden":
        allowed = ", ".join(RoleSpec.model_fields) if len(loc) == 3 and loc[0] == "roles" else "[roles.<name>], [users]"
        return f"unknown key {loc[-1]!r}; allowed here: {allowed}"
    message: str = item["msg"]
    if message.startswith("Value error, "):
        return message.removeprefix("Value error, ")
    if kind.endswith("_type"):
        got = _TOML_TYPES.get(type(item["input"]).__name__, type(item["input"]).__name__)
        return f"{message[0].lower()}{message[1:]}, not {got}"
    return message[0].lower() + message[1:]
