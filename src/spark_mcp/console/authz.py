"""Who may act on what in the console: one pure rule, written before the code.

A console action names a thing by id (a driver, a session, a job, an API token). The
verdict, most specific rule first:

1. No such thing: **not found**.
2. One's own thing: **allowed** (rule ``owner``). Owning something is what lets one
   stop, close, cancel or revoke it, as ``close_session`` and ``cancel_job`` do over MCP.
3. Someone else's API token: **not found**, whoever asks. Tokens are revoked by their
   owner here, or by the operator with ``spark-mcp tokens revoke``.
4. Someone else's driver, session or job, a driver shared by a role (owned by no one
   person: stopping it ends other people's sessions) or a spare of the warm pool:
   **allowed** when the caller's policy grants ``driver.admin`` (the rule that grants
   it), otherwise **not found**, exactly as if it did not exist: the caller learns
   nothing about other people's ids. The denial keeps its rule for the audit record.
   (A shared driver the caller's own sessions run on is listed for them, so for that
   one the console answers with the denial instead: ``actions.authorize``.)

Listings follow the same rule: everyone's drivers, sessions and jobs with
``driver.admin``, else one's own; everyone's audit records with ``audit.read``, else
one's own. ``driver.admin`` changes things, so a read-only credential (a token without
the write scope) never holds it; ``audit.read`` only reads.

The caller's grants come from ``Governance`` (the policy's ``decide()``), so a verdict
carries the same reasons and rules as every MCP decision.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from spark_mcp.policy import Decision

OWNER_RULE = "owner"
NOT_FOUND_RULE = "not-found"
TOKENS_RULE = "tokens-are-their-owners"


class Kind(StrEnum):
    DRIVER = "driver"
    SESSION = "session"
    JOB = "job"
    TOKEN = "token"


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    reason: str
    rule: str

    @property
    def not_found(self) -> bool:
        return not self.allowed


def may_act(viewer: str, kind: Kind, owner: str | None, admin: Decision) -> Verdict:
    """May ``viewer`` act on a ``kind`` owned by ``owner`` (None: no such thing)?

    ``admin`` is governance's decision on ``driver.admin`` for the viewer.
    """
    if owner is None:
        return Verdict(False, f"no such {kind.value}", NOT_FOUND_RULE)
    if owner == viewer:
        return Verdict(True, f"{viewer} owns this {kind.value}", OWNER_RULE)
    if kind is Kind.TOKEN:
        return Verdict(False, f"{viewer} may not revoke a token of {owner}", TOKENS_RULE)
    if admin.allowed:
        return Verdict(True, f"{admin.reason} (the {kind.value} of {owner})", admin.rule)
    return Verdict(False, f"{viewer} may not act on the {kind.value} of {owner}: {admin.reason}", admin.rule)


def sees(viewer: str, owner: str, everyone: bool) -> bool:
    """Whether a listing shows a thing of ``owner`` to ``viewer`` (``everyone``: the grant for it)."""
    return everyone or owner == viewer
