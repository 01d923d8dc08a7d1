"""Governance: the one path from a principal and what it asks for to a verdict.

Every front door asks here and nowhere else: ``run_sql``, ``run_plan``, ``explain``,
every catalog tool, and the Spark Connect gateway. They bring Spark's analysis of a
statement or plan (``spark.analyze.Analysis``) or a plain action, and get back a
``Verdict``: the decision with its reason and rule, the facts for the audit record, and
the error to raise when the request may not go ahead. Nothing else calls ``decide()``.

The rules on top of ``policy.decide_statement``:

1. A statement Spark could not analyse runs for nobody but ``sql.admin``. Spark's own
   message is what the caller gets, unless the partial plan names a table the caller may
   not read: Spark's messages quote what they touched ("did you mean `salary`?"), so then
   the table's denial is all they get, and ``explain`` shows no Spark error either.
2. Listings never show a place in which the caller may read nothing: a catalog or a
   namespace is visible only when a read or write pattern can name a table in it and no
   deny pattern covers all of it; a table only when it is readable.
3. Every verdict is noted for the call's audit record by the same code that made it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from spark_mcp.calls import note
from spark_mcp.config import LimitsConfig
from spark_mcp.errors import PolicyDenied, SparkError, SparkMcpError
from spark_mcp.identity import Principal
from spark_mcp.policy import (
    Decision,
    Policy,
    decide,
    decide_engine,
    decide_statement,
    namespace_visible,
    readable,
    tables_refusal,
)
from spark_mcp.policy.profiles import ProfileDecision, decide_profile
from spark_mcp.spark.analyze import Analysis
from spark_mcp.statement import Danger, DangerKind, StatementFacts, TableName

UNANALYSABLE_RULE = "unanalysable"
_WITHHELD = "Spark could not analyse it; its message is withheld, as it may describe a table you may not read"


@dataclass(frozen=True)
class EffectiveLimits:
    max_rows: int  # rows in one reply
    max_chars: int  # characters of text in one reply
    query_timeout_s: float
    max_sessions: int


@dataclass(frozen=True)
class Verdict:
    """What governance decided about one statement or plan, and what follows from it."""

    statement: str
    facts: StatementFacts
    decision: Decision  # the allowance, or the denial that stops the request
    refusal: SparkMcpError | None  # raise this instead of running; None when it may run
    spark_error: SparkError | None  # Spark's analysis error, only when the caller may see it

    @property
    def allowed(self) -> bool:
        return self.refusal is None

    def enforce(self) -> None:
        """Raise the refusal, if any: a denied statement is never sent for execution."""
        if self.refusal is not None:
            raise self.refusal

    def audit_fields(self) -> dict[str, Any]:
        return {
            "statement": self.statement,
            "kind": self.facts.kind.value,
            "tables": sorted(str(t) for t in self.facts.reads | self.facts.writes),
            "decision": "allowed" if self.decision.allowed else "denied",
            "reason": self.decision.reason,
            "rule": self.decision.rule,
        }


class Governance:
    """Policy applied: actions, statements, listings and limits, for one loaded policy."""

    def __init__(self, policy: Policy, limits: LimitsConfig) -> None:
        self.policy = policy
        self._server_limits = limits

    # -- actions and limits -----------------------------------------------------------

    def allows(self, principal: Principal, action: str) -> bool:
        return decide(self.policy, principal, action).allowed

    def require(self, principal: Principal, action: str) -> Decision:
        """The allowance for ``action``, or ``PolicyDenied`` naming the rule (noted for the audit)."""
        decision = decide(self.policy, principal, action)
        if not decision.allowed:
            note(decision="denied", reason=decision.reason, rule=decision.rule)
            raise PolicyDenied(decision.reason, rule=decision.rule)
        return decision

    def require_engine(self, principal: Principal, engine: str) -> Decision:
        """The allowance to have sessions on ``engine`` (a role lists its engines), or ``PolicyDenied``."""
        decision = decide_engine(self.policy, principal, engine)
        if not decision.allowed:
            note(decision="denied", reason=decision.reason, rule=decision.rule)
            raise PolicyDenied(decision.reason, rule=decision.rule)
        return decision

    def profile_for(self, principal: Principal, requested: str | None) -> ProfileDecision:
        """The driver profile ``principal`` gets (``requested``, else its default), or ``PolicyDenied``."""
        decision = decide_profile(self.policy, principal, requested)
        if not decision.allowed:
            note(decision="denied", reason=decision.reason, rule=decision.rule)
            raise PolicyDenied(decision.reason, rule=decision.rule)
        return decision

    def limits(self, principal: Principal) -> EffectiveLimits:
        """The role's limits, never above the server's caps."""
        grants = self.policy.grants_for(principal)
        server = self._server_limits
        return EffectiveLimits(
            max_rows=min(grants.max_rows or server.max_rows, server.max_rows),
            max_chars=server.max_chars,
            query_timeout_s=min(grants.query_timeout_s or server.query_timeout_s, server.query_timeout_s),
            max_sessions=min(grants.max_sessions or server.max_sessions, server.max_sessions),
        )

    # -- statements and plans ---------------------------------------------------------

    def judge(self, principal: Principal, analysis: Analysis, *, action: str | None = None) -> Verdict:
        """The verdict on an analysed statement or plan (rule 1), noted for the audit record.

        ``action`` replaces the action the statement's kind implies for its tables (a
        catalog tool resolves ``SELECT * FROM t`` but needs only ``catalog.read``).
        """
        facts = analysis.facts
        decision = decide_statement(self.policy, principal, facts, action=action)
        refusal: SparkMcpError | None = None
        shown = analysis.error
        if analysis.error is not None and not self.allows(principal, "sql.admin"):
            hidden = tables_refusal(self.policy, principal, reads=facts.reads, writes=facts.writes)
            if hidden is not None and facts.attempted is not None:
                # Analysed, a command is refused for its action before its tables, and for
                # writing its target rather than reading it: so it must be here too, or "needs
                # sql.write" against "may not read hr.nope" would tell which tables exist.
                command = facts.attempted
                command = replace(command, reads=(facts.reads - command.writes) | command.reads)
                asked = decide_statement(self.policy, principal, command, action=action)
                hidden = hidden if asked.allowed else asked
            if hidden is not None:
                decision, shown = hidden, None
                refusal = PolicyDenied(hidden.reason, rule=hidden.rule)
                facts = _without_sparks_words(facts)
            else:
                decision = Decision(False, f"Spark could not analyse it: {analysis.error}", UNANALYSABLE_RULE)
                refusal = analysis.error
        elif not decision.allowed:
            refusal = PolicyDenied(decision.reason, rule=decision.rule)
        verdict = Verdict(analysis.statement, facts, decision, refusal, shown)
        note(**verdict.audit_fields())
        return verdict

    # -- listings ---------------------------------------------------------------------

    def readable(self, principal: Principal, table: TableName) -> bool:
        return readable(self.policy, principal, table).allowed

    def visible(self, principal: Principal, catalog: str, namespace: str | None = None) -> bool:
        """Whether a listing may show this catalog (or namespace of it) to ``principal``."""
        return namespace_visible(self.policy, principal, catalog, namespace).allowed

    def require_visible(self, principal: Principal, catalog: str, namespace: str | None = None) -> Decision:
        """The allowance to look into a catalog or namespace, or ``PolicyDenied`` (noted for the audit)."""
        decision = namespace_visible(self.policy, principal, catalog, namespace)
        if not decision.allowed:
            note(decision="denied", reason=decision.reason, rule=decision.rule)
            raise PolicyDenied(decision.reason, rule=decision.rule)
        return decision


def _without_sparks_words(facts: StatementFacts) -> StatementFacts:
    """``facts`` with every trace of Spark's error message (dangers, notes) replaced."""
    dangers = tuple(Danger(d.kind, _WITHHELD) if d.kind is DangerKind.UNANALYSABLE else d for d in facts.dangers)
    return replace(facts, dangers=dangers, notes=())
