"""The decision: may this principal do this, to these tables? Pure; no I/O, no Spark.

The rules, in the order ``decide()`` applies them:

1. Deny by default. Nothing is allowed unless a rule allows it; a verdict that no rule
   allows carries the rule ``default-deny``.
2. A principal's roles are ``principal.roles``, resolved once when the principal was
   built (``Policy.roles_for``): its own ``[users]`` entry if it has one, else the entry
   ``default`` if there is one, else none; plus, for OIDC, the token's groups that name
   a role. A role name the policy does not define gives nothing. No roles: all denied.
3. Actions: at least one of the principal's roles must list the action. An action that
   is not in the registry (``actions.py``) is a programming error: ``ValueError``. An
   action that changes something (``Action.changes``) is refused to a read-only
   credential (a token without the write scope) whatever the roles grant, with the rule
   ``token-scope``.
4. Tables, checked one by one (reads, then writes, each in name order); the first table
   that fails decides the verdict:
   - a table matching a ``deny`` pattern of ANY of the principal's roles is denied, even
     if another role (or the same one) lists it in ``read`` or ``write``: deny wins;
   - a table read must match a ``read`` or a ``write`` pattern (writing implies reading);
   - a table written must match a ``write`` pattern.
   Grants are a union: the patterns of all the principal's roles count, whichever role
   grants the action.
5. Every verdict names its rule: ``roles.analyst.actions`` when allowed (the first role
   granting the action), ``roles.analyst.deny[0] "*.secret_*"`` for an explicit deny,
   ``default-deny`` otherwise; and its reason names the principal and the table.

``decide_statement()`` maps a statement's facts to actions first: QUERY, TEMP_VIEW and
SETTING (a harmless setting of one's own session, through the gateway) need ``sql.read``,
METADATA ``catalog.read``, WRITE ``sql.write``, DDL ``sql.ddl``. Code the
client ships (a ``CODE`` danger: UDFs, UDTFs and the like, which only the Spark Connect
gateway lets through) needs ``code.run``, checked first. The rest of the dangerous surface
(any other ``Danger``, or a statement of kind ADMIN or UNKNOWN) needs ``sql.admin`` as
well, checked next; with ``sql.admin`` the dangers are allowed, but the table rules still
apply to every read and write the inspector did find. A statement that cannot be checked
(UNANALYSABLE, UNKNOWN_NODE, kind UNKNOWN) is therefore allowed only to a role with
``sql.admin``, and ``code.run`` never stands in for ``sql.admin`` (nor the other way round).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

from spark_mcp.identity import Principal
from spark_mcp.policy.actions import get_action
from spark_mcp.policy.model import Policy, Role, TablePattern
from spark_mcp.statement import Danger, DangerKind, StatementFacts, StatementKind, TableName

DEFAULT_DENY = "default-deny"
TOKEN_SCOPE = "token-scope"

# The action a statement needs for its tables, by kind. ADMIN and UNKNOWN have no table
# action of their own: ``sql.admin`` covers them, and their tables still need patterns.
STATEMENT_ACTIONS: dict[StatementKind, str] = {
    StatementKind.QUERY: "sql.read",
    StatementKind.TEMP_VIEW: "sql.read",
    StatementKind.SETTING: "sql.read",
    StatementKind.METADATA: "catalog.read",
    StatementKind.WRITE: "sql.write",
    StatementKind.DDL: "sql.ddl",
    StatementKind.ADMIN: "sql.admin",
    StatementKind.UNKNOWN: "sql.admin",
}

# How a reason names each danger: short, and in words an agent (and its user) can act on.
DANGER_LABELS: dict[DangerKind, str] = {
    DangerKind.REFLECTION: "reflection",
    DangerKind.COMMAND_EXECUTION: "an operating-system command",
    DangerKind.PATH_ACCESS: "path-based access",
    DangerKind.CONFIG: "configuration",
    DangerKind.RESOURCE: "resources (jars, files, archives)",
    DangerKind.FUNCTION_DEFINITION: "function definition",
    DangerKind.UDF_CALL: "a function that is not a Spark built-in",
    DangerKind.EXECUTE_IMMEDIATE: "EXECUTE IMMEDIATE",
    DangerKind.SCRIPT: "a SQL script",
    DangerKind.CACHE: "caching",
    DangerKind.REFRESH: "refresh",
    DangerKind.STATISTICS: "statistics collection",
    DangerKind.REPAIR: "table repair",
    DangerKind.VARIABLE: "session variables",
    DangerKind.LISTING: "a listing of tables it may not read",
    DangerKind.ANALYSIS_SIDE_EFFECT: "a command that runs while it is analysed",
    DangerKind.UNKNOWN_NODE: "a plan node the checker does not know",
    DangerKind.UNANALYSABLE: "text Spark could not analyse",
    DangerKind.CODE: "code sent by the client",
}
_UNCHECKABLE = frozenset({DangerKind.UNKNOWN_NODE, DangerKind.UNANALYSABLE})
_UNCHECKABLE_NOTE = "statements that cannot be checked are only allowed for sql.admin"


@dataclass(frozen=True)
class Decision:
    """A verdict, why, and which rule of the policy decided it."""

    allowed: bool
    reason: str
    rule: str


def decide(
    policy: Policy,
    principal: Principal,
    action: str,
    *,
    reads: Iterable[TableName] = (),
    writes: Iterable[TableName] = (),
) -> Decision:
    """May ``principal`` do ``action``, reading ``reads`` and writing ``writes``? (rules 1-5)"""
    grant = _action_grant(policy, principal, action)
    if isinstance(grant, Decision):
        return grant
    roles = policy.roles_named(principal.roles)
    read_list, write_list = sorted(set(reads)), sorted(set(writes))
    for table in read_list:
        refusal = _check_table(principal, roles, table, writing=False)
        if refusal is not None:
            return refusal
    for table in write_list:
        refusal = _check_table(principal, roles, table, writing=True)
        if refusal is not None:
            return refusal
    tables = list(dict.fromkeys([*read_list, *write_list]))
    on = f" {', '.join(str(t) for t in tables)}" if tables else ""
    return Decision(True, f"{grant.name} may {action}{on}", f"roles.{grant.name}.actions")


def decide_statement(
    policy: Policy, principal: Principal, facts: StatementFacts, *, action: str | None = None
) -> Decision:
    """May ``principal`` run the statement ``facts`` describes? (see the module docstring)

    ``action`` replaces the action the statement's kind implies for its tables: describing
    a table resolves ``SELECT * FROM t`` but is a ``catalog.read``, not a ``sql.read``.
    """
    action = action or STATEMENT_ACTIONS[facts.kind]
    code = [d for d in facts.dangers if d.kind is DangerKind.CODE]
    other = replace(facts, dangers=tuple(d for d in facts.dangers if d.kind is not DangerKind.CODE))
    granted: list[Decision] = []
    if code:
        grant = _action_grant_decision(policy, principal, "code.run")
        if not grant.allowed:
            summary = _summary(code)
            return Decision(
                False, f"{principal.id} may not run this statement: {summary} which needs code.run", grant.rule
            )
        granted.append(Decision(True, f"{grant.reason} ({_summary(code)})", grant.rule))
    if other.dangers or facts.kind in (StatementKind.ADMIN, StatementKind.UNKNOWN):
        admin = _action_grant_decision(policy, principal, "sql.admin")
        if not admin.allowed:
            return Decision(False, f"{principal.id} may not run this statement: {_danger_reason(other)}", admin.rule)
        granted.append(Decision(True, f"{admin.reason} ({_danger_summary(other)})", admin.rule))
    verdict = decide(policy, principal, action, reads=facts.reads, writes=facts.writes)
    if not granted or not verdict.allowed:
        return verdict
    # Allowed with code.run or sql.admin: name that grant, since it is what let the statement through.
    return Decision(True, "; ".join([*(g.reason for g in granted), verdict.reason]), granted[-1].rule)


def namespace_visible(policy: Policy, principal: Principal, catalog: str, namespace: str | None = None) -> Decision:
    """May ``principal`` see a catalog (``namespace`` None) or a namespace in listings?

    Only when it has ``catalog.read`` and some ``read`` or ``write`` pattern of its roles can
    name a table there, and no ``deny`` pattern covers all of it: a listing never shows a
    place in which the caller may read nothing.
    """
    grant = _action_grant(policy, principal, "catalog.read")
    if isinstance(grant, Decision):
        return grant
    roles = policy.roles_named(principal.roles)
    where = catalog if namespace is None else f"{catalog}.{namespace}"
    if namespace is not None:
        for role in roles:
            for index, pattern in enumerate(role.deny):
                if pattern.covers_whole_namespace(catalog, namespace):
                    return Decision(
                        False,
                        f"{principal.id} may not read anything in {where}: denied by role {role.name} ({pattern.text})",
                        _rule(role, "deny", index, pattern),
                    )
    for role in roles:
        for key, patterns in (("read", role.read), ("write", role.write)):
            for index, pattern in enumerate(patterns):
                covers = (
                    pattern.covers_catalog(catalog)
                    if namespace is None
                    else pattern.covers_namespace(catalog, namespace)
                )
                if covers:
                    return Decision(True, f"{role.name} may read in {where}", _rule(role, key, index, pattern))
    return Decision(False, f"no role of {principal.id} may read anything in {where}", DEFAULT_DENY)


def tables_refusal(
    policy: Policy, principal: Principal, *, reads: Iterable[TableName] = (), writes: Iterable[TableName] = ()
) -> Decision | None:
    """The first table rule (rule 4 alone, whatever the action) that refuses these tables, or None."""
    roles = policy.roles_named(principal.roles)
    for table in sorted(set(reads)):
        refusal = _check_table(principal, roles, table, writing=False)
        if refusal is not None:
            return refusal
    for table in sorted(set(writes)):
        refusal = _check_table(principal, roles, table, writing=True)
        if refusal is not None:
            return refusal
    return None


def decide_engine(policy: Policy, principal: Principal, engine: str) -> Decision:
    """May ``principal`` have sessions on ``engine``? A role lists its engines (default ``["spark"]``).

    The first role listing the engine allows it; none listing it is ``default-deny``.
    """
    roles = policy.roles_named(principal.roles)
    for role in roles:
        if engine in role.engines:
            return Decision(True, f"{role.name} may use the {engine} engine", f"roles.{role.name}.engines")
    return Decision(
        False,
        f"no role of {principal.id} may use the {engine} engine (a role lists its engines in "
        f'engines = [...], default ["spark"])',
        DEFAULT_DENY,
    )


def readable(policy: Policy, principal: Principal, table: TableName) -> Decision:
    """May ``principal`` see ``table`` in catalog listings (``catalog.read`` plus a read rule)?"""
    return decide(policy, principal, "catalog.read", reads=(table,))


def _action_grant(policy: Policy, principal: Principal, action: str) -> Role | Decision:
    """The first of the principal's roles that grants ``action``, or the denial (rule 3)."""
    registered = get_action(action)  # unknown action: ValueError, a bug in the caller
    if principal.read_only and registered.changes:
        return Decision(
            False,
            f"{principal.id} may not {action} with this credential: it is read-only "
            "(a token without the write scope); use a token with write access",
            TOKEN_SCOPE,
        )
    roles = policy.roles_named(principal.roles)
    for role in roles:
        if action in role.actions:
            return role
    if not roles:
        return Decision(
            False,
            f"no role of {principal.id} grants {action}: {principal.id} has no roles "
            "(not listed under [users], and no users.default)",
            DEFAULT_DENY,
        )
    return Decision(False, f"no role of {principal.id} grants {action}", DEFAULT_DENY)


def _action_grant_decision(policy: Policy, principal: Principal, action: str) -> Decision:
    grant = _action_grant(policy, principal, action)
    if isinstance(grant, Decision):
        return grant
    return Decision(True, f"{grant.name} may {action}", f"roles.{grant.name}.actions")


def _check_table(principal: Principal, roles: tuple[Role, ...], table: TableName, *, writing: bool) -> Decision | None:
    """The denial for one table (rule 4), or None when the table is allowed."""
    for role in roles:
        for index, pattern in enumerate(role.deny):
            if pattern.matches(table):
                verb = "write" if writing else "read"
                return Decision(
                    False,
                    f"{principal.id} may not {verb} {table}: denied by role {role.name} ({pattern.text})",
                    _rule(role, "deny", index, pattern),
                )
    for role in roles:
        patterns = role.write if writing else (*role.read, *role.write)
        if any(pattern.matches(table) for pattern in patterns):
            return None
    verb = "write" if writing else "read"
    return Decision(False, f"no role of {principal.id} may {verb} {table}", DEFAULT_DENY)


def _rule(role: Role, key: str, index: int, pattern: TablePattern) -> str:
    return f'roles.{role.name}.{key}[{index}] "{pattern.text}"'


def _summary(dangers: Iterable[Danger]) -> str:
    return "uses " + ", ".join(
        f"{DANGER_LABELS[d.kind]} ({d.detail})" if d.detail else DANGER_LABELS[d.kind] for d in dangers
    )


def _danger_summary(facts: StatementFacts) -> str:
    if facts.dangers:
        return _summary(facts.dangers)
    if facts.kind is StatementKind.UNKNOWN:
        return f"is a statement the checker does not know ({facts.operation})"
    return f"is an admin statement ({facts.operation})"


def _danger_reason(facts: StatementFacts) -> str:
    uncheckable = facts.kind is StatementKind.UNKNOWN or any(d.kind in _UNCHECKABLE for d in facts.dangers)
    verb = "needs" if len(facts.dangers) <= 1 else "need"
    reason = f"{_danger_summary(facts)} which {verb} sql.admin"
    return f"{reason}; {_UNCHECKABLE_NOTE}" if uncheckable else reason
