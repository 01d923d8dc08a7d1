"""Which driver profiles a principal may use, and which one it gets: pure, like ``decide``.

The rules:

1. A role lists the profiles it may use (``profiles = ["small", "large"]``). A role that
   lists none gets the ``default`` profile (the ``[driver]`` section), so policies written
   before profiles existed keep working; ``profiles = []`` gives a role none.
2. A principal may use every profile any of its roles lists (grants are a union). Asked for
   none, it gets the first profile of its first role that lists any.
3. Asking for a profile none of its roles lists is denied, and the denial names the rules
   (``roles.analyst.profiles``) that list what it may use.
4. The role that grants the chosen profile (the first, in the principal's role order) is
   the one whose driver the principal shares under the ``group`` share level.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from spark_mcp.identity import Principal
from spark_mcp.policy.decide import DEFAULT_DENY
from spark_mcp.policy.model import Policy, Role

DEFAULT_PROFILE = "default"


@dataclass(frozen=True)
class ProfileDecision:
    allowed: bool
    reason: str
    rule: str
    profile: str | None = None
    role: str | None = None  # the role granting it


def _roles(policy: Policy, principal: Principal) -> list[Role]:
    """The principal's roles, as resolved when it was (``principal.roles``), in order."""
    return [policy.roles[name] for name in principal.roles if name in policy.roles]


def allowed_profiles(policy: Policy, principal: Principal) -> list[tuple[str, str, str]]:
    """``(profile, role, rule)`` for every profile the principal may use, its default first."""
    found: dict[str, tuple[str, str, str]] = {}
    for role in _roles(policy, principal):
        if role.profiles is None:
            found.setdefault(DEFAULT_PROFILE, (DEFAULT_PROFILE, role.name, f"roles.{role.name} (no profiles listed)"))
            continue
        for index, name in enumerate(role.profiles):
            found.setdefault(name, (name, role.name, f"roles.{role.name}.profiles[{index}]"))
    return list(found.values())


def decide_profile(policy: Policy, principal: Principal, requested: str | None) -> ProfileDecision:
    """The profile ``principal`` gets for ``requested`` (None: its default), or why not."""
    allowed = allowed_profiles(policy, principal)
    if not allowed:
        roles = _roles(policy, principal)
        if not roles:
            return ProfileDecision(False, f"{principal.id} has no role, so no driver profile", DEFAULT_DENY)
        rule = ", ".join(f"roles.{r.name}.profiles" for r in roles)
        return ProfileDecision(False, f"{principal.id}'s roles allow no driver profile", rule)
    if requested is None:
        profile, role, rule = allowed[0]
        return ProfileDecision(True, f"{profile} is {principal.id}'s default profile", rule, profile, role)
    for profile, role, rule in allowed:
        if profile == requested:
            return ProfileDecision(True, f"{role} may use profile {profile}", rule, profile, role)
    listing = [r for r in _roles(policy, principal) if r.profiles is not None]
    rule = ", ".join(f"roles.{r.name}.profiles" for r in listing) or DEFAULT_DENY
    names = ", ".join(name for name, _, _ in allowed)
    return ProfileDecision(False, f"{principal.id} may not use profile {requested!r}: its roles allow {names}", rule)


def unknown_profiles(policy: Policy, known: Iterable[str]) -> list[str]:
    """One line per role that names a profile the configuration does not define."""
    names = set(known)
    return [
        f"{role.source}: roles.{role.name}.profiles names {profile!r}, which is not a profile "
        f"in the configuration (profiles: {', '.join(sorted(names))})"
        for role in policy.roles.values()
        for profile in role.profiles or ()
        if profile not in names
    ]
