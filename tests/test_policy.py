"""Policy: the decision rules as a table, the loader's rejections, and the shipped policies.

The rules under test are written out in ``spark_mcp/policy/decide.py``; each case's id
and comment restate the rule it pins down.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from spark_mcp.errors import PolicyFileError
from spark_mcp.identity import Principal
from spark_mcp.policy import (
    ACTIONS,
    DEFAULT_DENY,
    STATEMENT_ACTIONS,
    Policy,
    TablePattern,
    decide,
    decide_statement,
    load_policies,
    namespace_visible,
    policy_from_toml,
    readable,
    tables_refusal,
)
from spark_mcp.policy.decide import DANGER_LABELS
from spark_mcp.statement import Danger, DangerKind, StatementFacts, StatementKind, TableName

REPO = Path(__file__).resolve().parents[1]
POLICIES = REPO / "policies"

POLICY_TOML = """
[roles.analyst]
description = "reads tpch, one sales table, finance in iceberg, some lake tables"
actions = ["session.create", "sql.read", "catalog.read", "plan.run"]
read = [
    "tpch.*",
    "Sales.Orders",
    "iceberg.finance.*",
    "lake.*.events",
    "lake.raw.eu.clicks_?",
    "warehouse.db.*.*",
]
deny = ["*.secret_*", "iceberg.finance.payroll"]
max_rows = 1000
query_timeout_s = 300
max_sessions = 4

[roles.engineer]
actions = ["sql.read", "sql.write", "sql.ddl"]
read = ["tpch.*"]
write = ["staging.*", "tpch.secret_tmp"]
max_rows = 5000
max_sessions = 2

[roles.everything]
actions = ["sql.read", "sql.write", "sql.ddl", "catalog.read"]
read = ["*"]
write = ["*"]
deny = ["*.*.pii_*"]

[roles.admin]
actions = ["sql.read", "sql.write", "sql.ddl", "sql.admin", "catalog.read"]
read = ["*"]
write = ["*"]

[roles.dba]
actions = ["sql.read", "sql.admin"]
read = ["tpch.*"]

[roles.viewer]
actions = ["catalog.read"]

[roles.nothing]

[users]
alice = ["analyst"]
erin = ["engineer"]
dana = ["analyst", "engineer"]
ops = ["everything"]
root = ["admin"]
dba = ["dba"]
eve = []
default = ["viewer"]
"""

POLICY = policy_from_toml(POLICY_TOML, source="test.toml")
NO_DEFAULT = policy_from_toml(
    '[roles.analyst]\nactions = ["sql.read"]\nread = ["*"]\n[users]\nalice = ["analyst"]\n',
    source="no-default.toml",
)


def t(name: str) -> TableName:
    """``catalog.namespace...table``: the first part is the catalog, the last the table."""
    parts = name.split(".")
    return TableName(parts[0], ".".join(parts[1:-1]), parts[-1])


def who(name: str, policy: Policy = POLICY) -> Principal:
    """``name`` as the server builds it: with the roles ``policy`` gives it (the one source)."""
    return Principal(name, roles=policy.roles_for(name))


ALLOW, DENY = True, False


def case(why: str, user: str, action: str, allowed: bool, rule: str, *, reads: str = "", writes: str = "") -> Any:
    """One row of the table; ``reads`` and ``writes`` are space-separated table names."""
    return pytest.param(user, action, reads.split(), writes.split(), allowed, rule, id=why)


ANALYST = "roles.analyst.actions"
SECRET_DENY = 'roles.analyst.deny[0] "*.secret_*"'

# fmt: off
DECIDE_CASES = [
    # -- rule 1: deny by default -----------------------------------------------------------------
    case("deny by default: no role of alice grants sql.write",
         "alice", "sql.write", DENY, DEFAULT_DENY, writes="spark_catalog.tpch.lineitem"),
    case("deny by default: an action with no tables still needs a grant",
         "alice", "driver.admin", DENY, DEFAULT_DENY),
    # -- rule 3: actions -------------------------------------------------------------------------
    case("an action listed by the role is allowed, naming the role's actions",
         "alice", "session.create", ALLOW, ANALYST),
    case("sql.admin is an action like any other when it is granted",
         "root", "sql.admin", ALLOW, "roles.admin.actions"),
    # -- rule 4: read patterns -------------------------------------------------------------------
    case("a two-part pattern matches its namespace in the session catalog",
         "alice", "sql.read", ALLOW, ANALYST, reads="spark_catalog.tpch.lineitem"),
    case("a two-part pattern does not reach other catalogs",
         "alice", "sql.read", DENY, DEFAULT_DENY, reads="other.tpch.lineitem"),
    case("patterns are case-insensitive: Sales.Orders matches sales.orders",
         "alice", "sql.read", ALLOW, ANALYST, reads="spark_catalog.sales.orders"),
    case("a pattern without globs names exactly one table",
         "alice", "sql.read", DENY, DEFAULT_DENY, reads="spark_catalog.sales.customers"),
    case("a three-part pattern names catalog, namespace and table",
         "alice", "sql.read", ALLOW, ANALYST, reads="iceberg.finance.budget"),
    case("a three-part pattern's catalog must match too",
         "alice", "sql.read", DENY, DEFAULT_DENY, reads="hive.finance.budget"),
    case("a three-part pattern's middle part matches a whole nested namespace",
         "alice", "sql.read", ALLOW, ANALYST, reads="lake.raw.eu.events"),
    case("four parts spell a nested namespace level by level",
         "alice", "sql.read", ALLOW, ANALYST, reads="lake.raw.eu.clicks_1"),
    case("four parts: every level must match",
         "alice", "sql.read", DENY, DEFAULT_DENY, reads="lake.raw.us.clicks_1"),
    case("? matches exactly one character",
         "alice", "sql.read", DENY, DEFAULT_DENY, reads="lake.raw.eu.clicks_10"),
    case("a * in a namespace level matches that level",
         "alice", "sql.read", ALLOW, ANALYST, reads="warehouse.db.x.orders"),
    case("a * never crosses a dot: warehouse.db.*.* does not match namespace db.x.y",
         "alice", "sql.read", DENY, DEFAULT_DENY, reads="warehouse.db.x.y.orders"),
    case("a * never crosses a dot: tpch.* does not match namespace tpch.sub",
         "alice", "sql.read", DENY, DEFAULT_DENY, reads="spark_catalog.tpch.sub.lineitem"),
    case("a namespace without a glob matches only itself, not a prefix",
         "alice", "sql.read", DENY, DEFAULT_DENY, reads="spark_catalog.tpch_old.lineitem"),
    case("a lone * matches every table in every catalog",
         "root", "sql.read", ALLOW, "roles.admin.actions", reads="any.deep.nested.ns.table"),
    case("the first failing table in name order decides: sales.customers before tpch.secret_b",
         "alice", "sql.read", DENY, DEFAULT_DENY,
         reads="spark_catalog.tpch.a spark_catalog.sales.customers spark_catalog.tpch.secret_b"),
    # -- rule 4: deny wins -----------------------------------------------------------------------
    case("deny wins over read in the same role, and names the deny rule",
         "alice", "sql.read", DENY, SECRET_DENY, reads="spark_catalog.tpch.secret_keys"),
    case("an exact deny carves one table out of a namespace grant",
         "alice", "sql.read", DENY, 'roles.analyst.deny[1] "iceberg.finance.payroll"',
         reads="iceberg.finance.payroll"),
    case("a two-part deny covers the session catalog only (write *.*.secret_* for every catalog)",
         "alice", "sql.read", ALLOW, ANALYST, reads="iceberg.finance.secret_x"),
    case("deny from one role wins over another role's write grant",
         "dana", "sql.write", DENY, SECRET_DENY, writes="spark_catalog.tpch.secret_tmp"),
    case("deny from one role wins over the read implied by another role's write",
         "dana", "sql.read", DENY, SECRET_DENY, reads="spark_catalog.tpch.secret_tmp"),
    case("deny wins over a lone * read",
         "ops", "sql.read", DENY, 'roles.everything.deny[0] "*.*.pii_*"', reads="spark_catalog.hr.pii_ssn"),
    case("deny applies to writes and, with three parts, to nested namespaces",
         "ops", "sql.write", DENY, 'roles.everything.deny[0] "*.*.pii_*"', writes="iceberg.a.b.pii_x"),
    case("a lone * write pattern lets a role write anything not denied",
         "ops", "sql.write", ALLOW, "roles.everything.actions", writes="iceberg.a.b.orders"),
    # -- rule 4: write patterns ------------------------------------------------------------------
    case("write implies read: a table the role may write, it may read",
         "erin", "sql.read", ALLOW, "roles.engineer.actions", reads="spark_catalog.staging.tmp"),
    case("read does not imply write",
         "erin", "sql.write", DENY, DEFAULT_DENY, writes="spark_catalog.tpch.lineitem"),
    case("a table matching a write pattern may be written",
         "erin", "sql.write", ALLOW, "roles.engineer.actions", writes="spark_catalog.staging.tmp"),
    case("without a deny in any of its roles, an explicit write pattern is enough",
         "erin", "sql.write", ALLOW, "roles.engineer.actions", writes="spark_catalog.tpch.secret_tmp"),
    case("reads and writes are both checked: INSERT INTO staging SELECT FROM tpch",
         "erin", "sql.write", ALLOW, "roles.engineer.actions",
         reads="spark_catalog.tpch.lineitem", writes="spark_catalog.staging.t"),
    case("a write whose source table is not readable is denied",
         "erin", "sql.write", DENY, DEFAULT_DENY,
         reads="spark_catalog.sales.orders", writes="spark_catalog.staging.t"),
    # -- grants are a union over roles -----------------------------------------------------------
    case("union: dana writes with her engineer role",
         "dana", "sql.write", ALLOW, "roles.engineer.actions", writes="spark_catalog.staging.t"),
    case("union: the first role granting the action names the rule",
         "dana", "sql.read", ALLOW, ANALYST, reads="iceberg.finance.budget"),
    case("union: one role's read patterns count for another role's action",
         "dana", "sql.ddl", ALLOW, "roles.engineer.actions",
         reads="iceberg.finance.budget", writes="spark_catalog.staging.t"),
    # -- rule 2: which roles a principal has -----------------------------------------------------
    case("a principal not listed gets the roles of users.default",
         "zed", "catalog.read", ALLOW, "roles.viewer.actions"),
    case("users.default grants only what its roles grant",
         "zed", "sql.read", DENY, DEFAULT_DENY),
    case("a role with an action but no read patterns reads no tables",
         "zed", "catalog.read", DENY, DEFAULT_DENY, reads="spark_catalog.tpch.lineitem"),
    case("a principal listed with no roles does not fall back to users.default",
         "eve", "catalog.read", DENY, DEFAULT_DENY),
    case("a listed principal gets its own roles",
         "alice", "catalog.read", ALLOW, ANALYST),
    case("a listed principal does not also get the default roles: erin's engineer has no catalog.read",
         "erin", "catalog.read", DENY, DEFAULT_DENY),
]
# fmt: on


@pytest.mark.parametrize(("user", "action", "reads", "writes", "allowed", "rule"), DECIDE_CASES)
def test_decide(user: str, action: str, reads: list[str], writes: list[str], allowed: bool, rule: str) -> None:
    decision = decide(POLICY, who(user), action, reads=[t(r) for r in reads], writes=[t(w) for w in writes])
    assert (decision.allowed, decision.rule) == (allowed, rule), decision.reason


def test_table_names_are_compared_case_insensitively_even_when_not_normalised() -> None:
    # TableName.of lower-cases; a TableName built by hand may not be, and must not slip past a deny.
    assert decide(POLICY, who("alice"), "sql.read", reads=[TableName("Spark_Catalog", "TPCH", "LineItem")]).allowed
    denied = decide(POLICY, who("alice"), "sql.read", reads=[TableName("SPARK_CATALOG", "TPCH", "SECRET_X")])
    assert denied.rule == 'roles.analyst.deny[0] "*.secret_*"'


def test_without_a_default_entry_unlisted_principals_get_nothing() -> None:
    assert decide(NO_DEFAULT, who("alice", NO_DEFAULT), "sql.read").allowed
    for action in ACTIONS:
        decision = decide(NO_DEFAULT, who("zed", NO_DEFAULT), action)
        assert not decision.allowed
        assert decision.rule == DEFAULT_DENY
    assert "zed has no roles" in decide(NO_DEFAULT, who("zed", NO_DEFAULT), "sql.read").reason


def test_an_unknown_action_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match=r"unknown action 'sql\.reed'"):
        decide(POLICY, who("alice"), "sql.reed")


def test_reasons_name_the_principal_the_role_and_the_tables() -> None:
    allowed = decide(
        POLICY,
        who("alice"),
        "sql.read",
        reads=[t("spark_catalog.tpch.orders"), t("spark_catalog.tpch.lineitem")],
    )
    assert allowed.reason == "analyst may sql.read spark_catalog.tpch.lineitem, spark_catalog.tpch.orders"

    no_grant = decide(POLICY, who("alice"), "sql.write")
    assert no_grant.reason == "no role of alice grants sql.write"

    no_pattern = decide(POLICY, who("alice"), "sql.read", reads=[t("spark_catalog.sales.customers")])
    assert no_pattern.reason == "no role of alice may read spark_catalog.sales.customers"

    denied = decide(POLICY, who("alice"), "sql.read", reads=[t("spark_catalog.tpch.secret_keys")])
    assert "spark_catalog.tpch.secret_keys" in denied.reason
    assert "*.secret_*" in denied.reason
    assert "analyst" in denied.reason


def test_readable_is_catalog_read_plus_a_read_rule() -> None:
    assert readable(POLICY, who("alice"), t("spark_catalog.tpch.lineitem")).allowed
    assert not readable(POLICY, who("alice"), t("spark_catalog.tpch.secret_x")).allowed
    # erin may read tpch with sql.read, but has no catalog.read to list it.
    assert not readable(POLICY, who("erin"), t("spark_catalog.tpch.lineitem")).allowed


@pytest.mark.parametrize(
    ("user", "catalog", "namespace", "visible", "rule"),
    [
        # A read pattern that can name a table there makes a place visible, naming that pattern.
        ("alice", "spark_catalog", "tpch", True, 'roles.analyst.read[0] "tpch.*"'),
        ("alice", "spark_catalog", "sales", True, 'roles.analyst.read[1] "Sales.Orders"'),
        ("alice", "SPARK_CATALOG", "TPCH", True, 'roles.analyst.read[0] "tpch.*"'),
        ("alice", "iceberg", "finance", True, 'roles.analyst.read[2] "iceberg.finance.*"'),
        ("alice", "lake", "raw", True, 'roles.analyst.read[3] "lake.*.events"'),
        ("alice", "lake", "raw.eu", True, 'roles.analyst.read[3] "lake.*.events"'),
        ("alice", "warehouse", "db.x", True, 'roles.analyst.read[5] "warehouse.db.*.*"'),
        # ...and nothing else: no pattern names a table in these.
        ("alice", "spark_catalog", "hr", False, "default-deny"),
        ("alice", "spark_catalog", "default", False, "default-deny"),
        ("alice", "iceberg", "ops", False, "default-deny"),
        ("alice", "warehouse", "db", False, "default-deny"),  # the pattern spells two levels
        # Catalogs: visible when some pattern can name a table in them.
        ("alice", "spark_catalog", None, True, 'roles.analyst.read[0] "tpch.*"'),
        ("alice", "iceberg", None, True, 'roles.analyst.read[2] "iceberg.finance.*"'),
        ("alice", "hive_metastore", None, False, "default-deny"),
        # Reading everything shows everything, except a namespace a deny pattern covers whole.
        ("ops", "anything", "at_all", True, 'roles.everything.read[0] "*"'),
        ("ops", "anything", None, True, 'roles.everything.read[0] "*"'),
        # A deny of some tables (a name glob, pii_*) does not hide the namespace around them.
        ("ops", "spark_catalog", "customers", True, 'roles.everything.read[0] "*"'),
        # Write patterns count too: writing implies reading.
        ("erin", "spark_catalog", "staging", False, "default-deny"),  # erin has no catalog.read
        ("dana", "spark_catalog", "staging", True, 'roles.engineer.write[0] "staging.*"'),
        # No catalog.read at all: nothing is visible.
        ("eve", "spark_catalog", "tpch", False, "default-deny"),
        # viewer has catalog.read but no pattern.
        ("nobody_listed", "spark_catalog", "tpch", False, "default-deny"),
    ],
)
def test_namespace_visible(user: str, catalog: str, namespace: str | None, visible: bool, rule: str) -> None:
    decision = namespace_visible(POLICY, who(user), catalog, namespace)
    assert (decision.allowed, decision.rule) == (visible, rule), decision.reason


def test_a_deny_pattern_covering_a_whole_namespace_hides_it_and_names_the_rule() -> None:
    policy = policy_from_toml(
        '[roles.r]\nactions = ["catalog.read"]\nread = ["*"]\ndeny = ["hr.*", "*.secret_*"]\n[users]\nu = ["r"]\n',
        source="t.toml",
    )
    u = who("u", policy)
    hidden = namespace_visible(policy, u, "spark_catalog", "hr")
    assert not hidden.allowed and hidden.rule == 'roles.r.deny[0] "hr.*"'
    assert "may not read anything in spark_catalog.hr" in hidden.reason
    # A name glob (secret_*) denies some tables, not the namespace.
    assert namespace_visible(policy, u, "spark_catalog", "tpch").allowed
    # hr.* names the session catalog only: another catalog's hr stays visible.
    assert namespace_visible(policy, u, "iceberg", "hr").allowed


def test_tables_refusal_checks_table_rules_whatever_the_action() -> None:
    # dba has no catalog.read, but a broken statement's tables are still judged by the table rules.
    assert tables_refusal(POLICY, who("dba"), reads=[t("spark_catalog.tpch.nation")]) is None
    refusal = tables_refusal(
        POLICY, who("alice"), reads=[t("spark_catalog.tpch.nation"), t("spark_catalog.tpch.secret_x")]
    )
    assert refusal is not None and refusal.rule == 'roles.analyst.deny[0] "*.secret_*"'
    writing = tables_refusal(POLICY, who("alice"), writes=[t("spark_catalog.tpch.nation")])
    assert writing is not None and writing.rule == "default-deny"


# --- decide_statement ------------------------------------------------------------------------


def facts(
    kind: StatementKind,
    reads: tuple[str, ...] = (),
    writes: tuple[str, ...] = (),
    dangers: tuple[Danger, ...] = (),
    operation: str = "Project",
) -> StatementFacts:
    return StatementFacts(
        kind=kind,
        operation=operation,
        reads=frozenset(t(r) for r in reads),
        writes=frozenset(t(w) for w in writes),
        dangers=dangers,
    )


LINEITEM = "spark_catalog.tpch.lineitem"
STAGING = "spark_catalog.staging.t"
REFLECT = Danger(DangerKind.REFLECTION, "reflect")

# fmt: off
STATEMENT_CASES = [
    # (principal, facts, allowed, rule)
    pytest.param("alice", facts(StatementKind.QUERY, reads=(LINEITEM,)), ALLOW, ANALYST,
                 id="QUERY needs sql.read on its tables"),
    pytest.param("alice", facts(StatementKind.QUERY, reads=("spark_catalog.sales.customers",)), DENY,
                 DEFAULT_DENY, id="QUERY of a table no read pattern matches is denied"),
    pytest.param("alice", facts(StatementKind.TEMP_VIEW, reads=(LINEITEM,)), ALLOW, ANALYST,
                 id="TEMP_VIEW in one's own session is sql.read"),
    pytest.param("zed", facts(StatementKind.TEMP_VIEW), DENY, DEFAULT_DENY,
                 id="TEMP_VIEW without sql.read is denied"),
    pytest.param("alice", facts(StatementKind.SETTING), ALLOW, ANALYST,
                 id="SETTING (a harmless one, of one's own session) is sql.read"),
    pytest.param("zed", facts(StatementKind.SETTING), DENY, DEFAULT_DENY,
                 id="SETTING without sql.read is denied"),
    pytest.param("zed", facts(StatementKind.METADATA), ALLOW, "roles.viewer.actions",
                 id="METADATA needs catalog.read"),
    pytest.param("zed", facts(StatementKind.METADATA, reads=(LINEITEM,)), DENY, DEFAULT_DENY,
                 id="METADATA about a table needs a read pattern for it"),
    pytest.param("erin", facts(StatementKind.METADATA, reads=(LINEITEM,)), DENY, DEFAULT_DENY,
                 id="METADATA is catalog.read, not sql.read"),
    pytest.param("alice", facts(StatementKind.WRITE, writes=(STAGING,)), DENY, DEFAULT_DENY,
                 id="WRITE needs sql.write"),
    pytest.param("erin", facts(StatementKind.WRITE, reads=(LINEITEM,), writes=(STAGING,)), ALLOW,
                 "roles.engineer.actions", id="WRITE with sql.write and a write pattern is allowed"),
    pytest.param("erin", facts(StatementKind.WRITE, writes=(LINEITEM,)), DENY, DEFAULT_DENY,
                 id="WRITE to a table without a write pattern is denied"),
    pytest.param("alice", facts(StatementKind.DDL, writes=(STAGING,)), DENY, DEFAULT_DENY,
                 id="DDL needs sql.ddl"),
    pytest.param("erin", facts(StatementKind.DDL, writes=(STAGING,)), ALLOW, "roles.engineer.actions",
                 id="DDL with sql.ddl and a write pattern is allowed"),
    pytest.param("erin", facts(StatementKind.ADMIN, operation="SetCommand"), DENY, DEFAULT_DENY,
                 id="ADMIN needs sql.admin even without a listed danger"),
    pytest.param("root", facts(StatementKind.ADMIN, operation="SetCommand"), ALLOW, "roles.admin.actions",
                 id="ADMIN with sql.admin is allowed"),
    pytest.param("ops", facts(StatementKind.UNKNOWN, operation="Weird"), DENY, DEFAULT_DENY,
                 id="UNKNOWN is denied to every role without sql.admin"),
    pytest.param("root", facts(StatementKind.UNKNOWN, operation="Weird"), ALLOW, "roles.admin.actions",
                 id="UNKNOWN is allowed for sql.admin"),
    pytest.param("dba", facts(StatementKind.QUERY, reads=("spark_catalog.sales.orders",), dangers=(REFLECT,)),
                 DENY, DEFAULT_DENY, id="with sql.admin, dangers pass but table patterns still apply"),
    pytest.param("dba", facts(StatementKind.QUERY, reads=(LINEITEM,), dangers=(REFLECT,)), ALLOW,
                 "roles.dba.actions", id="with sql.admin and readable tables, a dangerous query is allowed"),
    pytest.param("dba", facts(StatementKind.WRITE, writes=(STAGING,), dangers=(REFLECT,)), DENY, DEFAULT_DENY,
                 id="sql.admin does not stand in for the base action (sql.write)"),
]
# fmt: on


@pytest.mark.parametrize(("user", "statement", "allowed", "rule"), STATEMENT_CASES)
def test_decide_statement(user: str, statement: StatementFacts, allowed: bool, rule: str) -> None:
    decision = decide_statement(POLICY, who(user), statement)
    assert (decision.allowed, decision.rule) == (allowed, rule), decision.reason


def test_every_statement_kind_maps_to_a_registered_action() -> None:
    assert set(STATEMENT_ACTIONS) == set(StatementKind)
    assert set(STATEMENT_ACTIONS.values()) <= set(ACTIONS)


@pytest.mark.parametrize(
    "kind", [k for k in DangerKind if k is not DangerKind.CODE], ids=[k.value for k in DangerKind if k.value != "code"]
)
def test_every_danger_needs_sql_admin(kind: DangerKind) -> None:
    statement = facts(StatementKind.QUERY, reads=(LINEITEM,), dangers=(Danger(kind, "detail"),))
    # ops may read and write every table but has no sql.admin.
    denied = decide_statement(POLICY, who("ops"), statement)
    assert not denied.allowed
    assert denied.rule == DEFAULT_DENY
    assert f"uses {DANGER_LABELS[kind]} (detail) which needs sql.admin" in denied.reason
    uncheckable = kind in (DangerKind.UNKNOWN_NODE, DangerKind.UNANALYSABLE)
    assert ("statements that cannot be checked are only allowed for sql.admin" in denied.reason) == uncheckable
    # root has sql.admin: allowed, and the rule names the sql.admin grant.
    allowed = decide_statement(POLICY, who("root"), statement)
    assert allowed.allowed
    assert allowed.rule == "roles.admin.actions"
    assert DANGER_LABELS[kind] in allowed.reason


def test_danger_reasons_read_like_a_sentence() -> None:
    reflection = facts(StatementKind.QUERY, dangers=(Danger(DangerKind.REFLECTION, "reflect"),))
    assert decide_statement(POLICY, who("alice"), reflection).reason == (
        "alice may not run this statement: uses reflection (reflect) which needs sql.admin"
    )
    two = facts(
        StatementKind.ADMIN,
        dangers=(Danger(DangerKind.CONFIG, "SET spark.x"), Danger(DangerKind.RESOURCE, "ADD JAR")),
    )
    assert "uses configuration (SET spark.x), resources (jars, files, archives) (ADD JAR) which need sql.admin" in (
        decide_statement(POLICY, who("alice"), two).reason
    )
    unknown = decide_statement(POLICY, who("alice"), facts(StatementKind.UNKNOWN, operation="Weird"))
    assert unknown.reason == (
        "alice may not run this statement: is a statement the checker does not know (Weird) which needs "
        "sql.admin; statements that cannot be checked are only allowed for sql.admin"
    )


def test_danger_labels_cover_every_danger_kind() -> None:
    assert set(DANGER_LABELS) == set(DangerKind)


# --- grants (whoami) -------------------------------------------------------------------------


def test_grants_are_the_union_of_the_roles_and_the_largest_limits() -> None:
    grants = POLICY.grants_for(who("dana"))
    assert grants.roles == ("analyst", "engineer")
    assert grants.actions == tuple(
        sorted({"session.create", "sql.read", "catalog.read", "plan.run", "sql.write", "sql.ddl"})
    )
    assert grants.read[:2] == ("tpch.*", "Sales.Orders")
    assert grants.read.count("tpch.*") == 1  # listed by both roles, shown once
    assert grants.write == ("staging.*", "tpch.secret_tmp")
    assert grants.deny == ("*.secret_*", "iceberg.finance.payroll")
    # max of 1000 and 5000; 300 from the only role that sets it; max of 4 and 2.
    assert (grants.max_rows, grants.query_timeout_s, grants.max_sessions) == (5000, 300, 4)


def test_grants_limits_are_none_when_no_role_sets_them() -> None:
    grants = POLICY.grants_for(who("zed"))
    assert grants.roles == ("viewer",)
    assert grants.actions == ("catalog.read",)
    assert (grants.max_rows, grants.query_timeout_s, grants.max_sessions) == (None, None, None)


def test_roles_for_follows_users_then_default_then_nothing() -> None:
    assert POLICY.roles_for("dana") == ("analyst", "engineer")
    assert POLICY.roles_for("zed") == ("viewer",)
    assert POLICY.roles_for("eve") == ()
    assert NO_DEFAULT.roles_for("zed") == ()


# --- table patterns --------------------------------------------------------------------------

BAD_PATTERNS = [
    pytest.param("", "empty", id="empty"),
    pytest.param("lineitem", "one part", id="one part that is not a lone *"),
    pytest.param("tpch.", "empty part", id="trailing dot"),
    pytest.param(".lineitem", "empty part", id="leading dot"),
    pytest.param("cat..t", "empty part", id="double dot"),
    pytest.param("`tpch`.lineitem", "backtick", id="backticks are not interpreted"),
    pytest.param("tpch.[ab", "without a closing", id="unclosed bracket"),
    pytest.param("tpch.a]", "without a matching", id="stray closing bracket"),
    pytest.param("tp ch.x", "space", id="space"),
    pytest.param("tpch.'x'", "quote", id="quotes"),
]


@pytest.mark.parametrize(("pattern", "message"), BAD_PATTERNS)
def test_bad_table_patterns_are_rejected(pattern: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TablePattern.parse(pattern)


@pytest.mark.parametrize(
    ("pattern", "table", "matches"),
    [
        ("tpch.[!s]*", "spark_catalog.tpch.lineitem", True),
        ("tpch.[!s]*", "spark_catalog.tpch.supplier", False),
        ("tpch.[]x]", "spark_catalog.tpch.]", True),  # fnmatch: a ']' first in a class is literal
        ("*.*", "spark_catalog.tpch.lineitem", True),
        ("*.*", "iceberg.tpch.lineitem", False),  # two parts: the session catalog only
        ("*.*.*", "iceberg.a.b.c", True),  # three parts: the middle matches a nested namespace
        ("ICEBERG.Sales.*", "iceberg.sales.orders", True),
    ],
)
def test_pattern_matching(pattern: str, table: str, matches: bool) -> None:
    assert TablePattern.parse(pattern).matches(t(table)) is matches


# --- loader: rejections ----------------------------------------------------------------------


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    return path


REJECTIONS = [
    pytest.param(
        '[roles.analyst]\nactions = ["session.create", "sql.read", "sql.reed"]\n',
        ["roles.analyst.actions[2]", "unknown action 'sql.reed'"],
        id="unknown action, by index",
    ),
    pytest.param(
        '[roles.analyst]\nactions = ["sql.read"]\nreads = ["*"]\n',
        ["roles.analyst.reads", "unknown key 'reads'", "read, write, deny"],
        id="unknown key in a role, listing the allowed keys",
    ),
    pytest.param(
        '[role.analyst]\nactions = ["sql.read"]\n', ["role", "unknown key 'role'"], id="unknown top-level key"
    ),
    pytest.param(
        '[roles.analyst]\nactions = "sql.read"\n',
        ["roles.analyst.actions", "valid list, not a string"],
        id="a string where an array is expected",
    ),
    pytest.param('[roles.analyst]\nmax_rows = "10"\n', ["roles.analyst.max_rows", "integer"], id="quoted number"),
    pytest.param("[roles.analyst]\nmax_rows = true\n", ["roles.analyst.max_rows", "integer"], id="boolean number"),
    pytest.param(
        "[roles.analyst]\nmax_rows = 0\n",
        ["roles.analyst.max_rows", "greater than or equal to 1"],
        id="limit out of range",
    ),
    pytest.param(
        "[roles.analyst]\nquery_timeout_s = -1\n",
        ["roles.analyst.query_timeout_s", "greater than 0"],
        id="negative timeout",
    ),
    pytest.param(
        '[roles.analyst]\nread = ["tpch.*", "tpch.[ab"]\n',
        ["roles.analyst.read[1]", "without a closing ']'"],
        id="bad glob, by index",
    ),
    pytest.param(
        '[roles.analyst]\ndeny = ["`a.b`.c"]\n',
        ["roles.analyst.deny[0]", "backtick"],
        id="backticks in a pattern",
    ),
    pytest.param('[roles."bad name"]\n', ['roles."bad name"', "invalid role name"], id="bad role name"),
    pytest.param(
        '[roles.analyst]\n[users]\n"bad user!" = ["analyst"]\n',
        ['users."bad user!"', "invalid user name"],
        id="bad user name",
    ),
    pytest.param(
        '[roles.analyst]\n[users]\nalice = ["analyst", "analist"]\n',
        ["users.alice[1]", "role 'analist' is not defined", "defined roles: analyst"],
        id="user mapped to an undefined role",
    ),
    pytest.param('[users]\nalice = "analyst"\n', ["users.alice", "valid list"], id="roles must be a list"),
    pytest.param("[roles.analyst\n", ["not valid TOML"], id="not TOML"),
]


@pytest.mark.parametrize(("text", "expected"), REJECTIONS)
def test_bad_policy_files_are_rejected_naming_file_key_and_reason(
    tmp_path: Path, text: str, expected: list[str]
) -> None:
    path = write(tmp_path, "bad.toml", text)
    with pytest.raises(PolicyFileError) as raised:
        load_policies([path])
    message = str(raised.value)
    assert str(path) in message
    for part in expected:
        assert part in message


def test_every_problem_in_a_file_is_reported_at_once(tmp_path: Path) -> None:
    path = write(tmp_path, "bad.toml", '[roles.a]\nactions = ["nope"]\nread = ["x"]\nmax_rows = 0\n')
    with pytest.raises(PolicyFileError) as raised:
        load_policies([path])
    lines = str(raised.value).splitlines()
    assert [line.split(": ")[1] for line in lines] == [
        "roles.a.actions[0]",
        "roles.a.read[0]",
        "roles.a.max_rows",
    ]


def test_a_role_defined_in_two_files_is_rejected_naming_both(tmp_path: Path) -> None:
    first = write(tmp_path, "a.toml", '[roles.analyst]\nactions = ["sql.read"]\n')
    second = write(tmp_path, "b.toml", '[roles.analyst]\nactions = ["sql.write"]\n')
    with pytest.raises(PolicyFileError, match="already defined") as raised:
        load_policies([tmp_path])
    assert str(first) in str(raised.value)
    assert str(second) in str(raised.value)
    assert "roles.analyst" in str(raised.value)


def test_conflicting_user_entries_are_rejected_and_identical_ones_merge(tmp_path: Path) -> None:
    write(tmp_path, "a.toml", '[roles.r1]\n[roles.r2]\n[users]\nalice = ["r1"]\nbob = ["r2"]\n')
    write(tmp_path, "b.toml", '[users]\nalice = ["r1"]\ncarol = ["r2"]\n')
    policy = load_policies([tmp_path])
    assert policy.users == {"alice": ("r1",), "bob": ("r2",), "carol": ("r2",)}

    write(tmp_path, "c.toml", '[users]\nalice = ["r2"]\n')
    with pytest.raises(PolicyFileError) as raised:
        load_policies([tmp_path])
    message = str(raised.value)
    assert "users.alice" in message
    assert str(tmp_path / "c.toml") in message
    assert str(tmp_path / "a.toml") in message


def test_a_user_may_be_given_a_role_defined_in_another_file(tmp_path: Path) -> None:
    write(tmp_path, "10-roles.toml", '[roles.analyst]\nactions = ["sql.read"]\n')
    write(tmp_path, "20-users.toml", '[users]\nalice = ["analyst"]\n')
    assert load_policies([tmp_path]).roles_for("alice") == ("analyst",)


def test_no_policy_files_at_all_fails_closed(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    write(tmp_path / "sub", "nested.toml", '[roles.a]\nactions = ["sql.read"]\n')  # not recursive
    write(tmp_path, "notes.txt", "not a policy")
    with pytest.raises(PolicyFileError, match="no policy files found") as raised:
        load_policies([tmp_path])
    assert str(tmp_path) in str(raised.value)
    with pytest.raises(PolicyFileError, match="no policy files found"):
        load_policies([])


def test_a_missing_path_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(PolicyFileError, match="not found"):
        load_policies([tmp_path / "nope.toml"])


def test_directories_load_their_toml_files_sorted_once_each(tmp_path: Path) -> None:
    b = write(tmp_path, "b.toml", '[roles.b]\nactions = ["sql.read"]\n')
    a = write(tmp_path, "a.toml", '[roles.a]\nactions = ["sql.read"]\n')
    write(tmp_path, ".hidden.toml", "this is not toml [")  # editor backups and the like are skipped
    policy = load_policies([tmp_path, b])  # b is reached twice but read once
    assert policy.sources == (str(a), str(b))
    assert set(policy.roles) == {"a", "b"}


def test_an_empty_policy_file_loads_and_allows_nothing(tmp_path: Path) -> None:
    policy = load_policies([write(tmp_path, "empty.toml", "")])
    assert not decide(policy, who("alice", policy), "session.create").allowed


def test_a_policy_is_immutable() -> None:
    with pytest.raises(TypeError):
        POLICY.users["mallory"] = ("admin",)  # type: ignore[index]


def test_a_hand_built_policy_must_not_name_undefined_roles() -> None:
    with pytest.raises(ValueError, match="undefined role"):
        Policy(roles={}, users={"alice": ("ghost",)})


# --- the shipped policies ----------------------------------------------------------------------


def test_the_default_policy_lets_everyone_explore_and_change_nothing() -> None:
    policy = load_policies([POLICIES])
    assert policy.sources == (str(POLICIES / "default.toml"),)  # examples/ is not loaded
    anyone = who("someone", policy)
    lineitem = TableName.of("spark_catalog", "tpch", "lineitem")
    for action in ("session.create", "catalog.read", "plan.run"):
        assert decide(policy, anyone, action).allowed, action
    assert decide(policy, anyone, "sql.read", reads=[lineitem]).allowed
    assert decide(policy, anyone, "sql.read", reads=[TableName.of("iceberg", "a.b", "c")]).allowed
    assert decide_statement(policy, anyone, facts(StatementKind.TEMP_VIEW, reads=(LINEITEM,))).allowed
    for action in ("sql.write", "sql.ddl", "sql.admin", "driver.admin", "audit.read"):
        assert not decide(policy, anyone, action).allowed, action
    assert not decide_statement(policy, anyone, facts(StatementKind.WRITE, writes=(LINEITEM,))).allowed
    reflection = facts(StatementKind.QUERY, dangers=(Danger(DangerKind.REFLECTION, "reflect"),))
    assert not decide_statement(policy, anyone, reflection).allowed
    grants = policy.grants_for(anyone)
    assert (grants.max_rows, grants.query_timeout_s, grants.max_sessions) == (1000, 300, 8)


@pytest.mark.parametrize("name", ["analyst", "engineer", "admin"])
def test_each_example_loads_on_its_own(name: str) -> None:
    policy = load_policies([POLICIES / "examples" / f"{name}.toml"])
    assert set(policy.roles) == {name}


def with_user(tmp_path: Path, example: str, user: str) -> Policy:
    """An example file merged with a ``[users]`` file, the way the example says to use it."""
    users = write(tmp_path, "users.toml", f'[users]\n{user} = ["{example}"]\n')
    return load_policies([POLICIES / "examples" / f"{example}.toml", users])


def test_the_analyst_example_reads_some_namespaces_and_never_secrets(tmp_path: Path) -> None:
    policy = with_user(tmp_path, "analyst", "carol")
    carol = who("carol", policy)
    assert decide(policy, carol, "sql.read", reads=[t("spark_catalog.tpch.lineitem")]).allowed
    assert decide(policy, carol, "sql.read", reads=[t("spark_catalog.sales.orders")]).allowed
    assert not decide(policy, carol, "sql.read", reads=[t("spark_catalog.hr.people")]).allowed
    assert not decide(policy, carol, "sql.read", reads=[t("spark_catalog.tpch.secret_keys")]).allowed
    assert not decide(policy, carol, "sql.write", writes=[t("spark_catalog.tpch.lineitem")]).allowed
    assert not decide(policy, who("stranger", policy), "sql.read").allowed  # the example sets no default


def test_the_engineer_example_writes_staging_only(tmp_path: Path) -> None:
    policy = with_user(tmp_path, "engineer", "alice")
    alice = who("alice", policy)
    assert decide(policy, alice, "sql.read", reads=[t("iceberg.any.table")]).allowed
    ddl = facts(StatementKind.DDL, reads=(LINEITEM,), writes=("spark_catalog.staging.daily",))
    assert decide_statement(policy, alice, ddl).allowed
    assert not decide_statement(policy, alice, facts(StatementKind.WRITE, writes=(LINEITEM,))).allowed
    set_conf = facts(StatementKind.ADMIN, dangers=(Danger(DangerKind.CONFIG, "SET"),))
    assert not decide_statement(policy, alice, set_conf).allowed


def test_the_admin_example_may_do_everything(tmp_path: Path) -> None:
    policy = with_user(tmp_path, "admin", "bob")
    bob = who("bob", policy)
    for action in ACTIONS:
        assert decide(policy, bob, action, reads=[t("x.y.z")]).allowed, action
    unanalysable = facts(StatementKind.UNKNOWN, dangers=(Danger(DangerKind.UNANALYSABLE, "syntax"),))
    assert decide_statement(policy, bob, unanalysable).allowed


def test_the_default_policy_merges_with_the_examples_as_its_comments_say(tmp_path: Path) -> None:
    folder = tmp_path / "policies"
    folder.mkdir()
    for name in ("default.toml", "examples/engineer.toml"):
        (folder / Path(name).name).write_text((POLICIES / name).read_text())
    with (folder / "default.toml").open("a") as handle:
        handle.write('alice = ["reader", "engineer"]\n')
    policy = load_policies([folder])
    assert policy.roles_for("alice") == ("reader", "engineer")
    assert decide(policy, who("alice", policy), "sql.write", writes=[t("spark_catalog.staging.x")]).allowed
    assert not decide(policy, who("bob", policy), "sql.write", writes=[t("spark_catalog.staging.x")]).allowed
