"""Roles come from the principal: ``[users]`` plus an OIDC token's groups, and a read-only credential.

``decide`` uses ``principal.roles`` alone (resolved once when the principal is built), so
these pin down how that resolution treats groups and what a read-only token may still do.
"""

from __future__ import annotations

import pytest

from spark_mcp.identity import Principal
from spark_mcp.policy import ACTIONS, DEFAULT_DENY, decide, decide_statement, policy_from_toml
from spark_mcp.policy.decide import TOKEN_SCOPE
from spark_mcp.statement import Danger, DangerKind, StatementFacts, StatementKind, TableName

POLICY = policy_from_toml(
    """
[roles.reader]
actions = ["session.create", "sql.read", "catalog.read"]
read = ["tpch.*"]

[roles.engineer]
actions = ["sql.read", "sql.write", "sql.ddl"]
read = ["tpch.*"]
write = ["staging.*"]

[roles.admin]
actions = [
    "session.create", "sql.read", "sql.write", "sql.ddl", "sql.admin", "plan.run", "catalog.read",
    "driver.admin", "audit.read",
]
read = ["*"]
write = ["*"]

[users]
alice = ["reader"]
mallory = []
default = ["reader"]
""",
    source="groups.toml",
)
STAGING = TableName.of("spark_catalog", "staging", "daily")
LINEITEM = TableName.of("spark_catalog", "tpch", "lineitem")


@pytest.mark.parametrize(
    ("user", "groups", "roles"),
    [
        pytest.param("alice", (), ("reader",), id="users entry alone"),
        pytest.param("alice", ("engineer",), ("reader", "engineer"), id="a group naming a role adds it"),
        pytest.param("zed", ("engineer",), ("reader", "engineer"), id="default plus a group role"),
        pytest.param("alice", ("Engineers", "staff", "ENGINEER"), ("reader",), id="groups naming no role give nothing"),
        pytest.param("alice", ("reader", "reader"), ("reader",), id="a group repeating a role adds no duplicate"),
        pytest.param("mallory", (), (), id="a user listed with no roles has none"),
        pytest.param("mallory", ("engineer",), ("engineer",), id="an empty users entry still takes group roles"),
    ],
)
def test_roles_for_takes_users_then_groups_that_name_roles(
    user: str, groups: tuple[str, ...], roles: tuple[str, ...]
) -> None:
    assert POLICY.roles_for(user, groups) == roles


def test_a_group_role_grants_what_the_role_grants() -> None:
    plain = Principal("alice", roles=POLICY.roles_for("alice"))
    grouped = Principal("alice", roles=POLICY.roles_for("alice", ["engineer"]))
    assert not decide(POLICY, plain, "sql.write", writes=[STAGING]).allowed
    decision = decide(POLICY, grouped, "sql.write", writes=[STAGING])
    assert decision.allowed
    assert decision.rule == "roles.engineer.actions"
    assert POLICY.grants_for(grouped).roles == ("reader", "engineer")


def test_an_unknown_group_grants_nothing() -> None:
    principal = Principal("zed", roles=POLICY.roles_for("zed", ["admins", "root", "*"]))
    for action in ("sql.write", "sql.ddl", "sql.admin", "driver.admin", "audit.read"):
        assert decide(POLICY, principal, action).rule == DEFAULT_DENY, action


def test_decisions_use_the_principals_roles_not_the_users_table() -> None:
    # alice is a reader in [users]; a principal built with no roles (e.g. none resolved) gets nothing.
    bare = Principal("alice")
    assert not decide(POLICY, bare, "sql.read", reads=[LINEITEM]).allowed
    assert POLICY.grants_for(bare).roles == ()
    # ...and a role name the policy does not define (a stale principal) gives nothing either.
    ghost = Principal("alice", roles=("ghost", "reader"))
    assert decide(POLICY, ghost, "sql.read", reads=[LINEITEM]).allowed
    assert POLICY.grants_for(ghost).roles == ("reader",)


def test_a_read_only_credential_keeps_reads_and_loses_every_change() -> None:
    admin = Principal("root", roles=("admin",), read_only=True)
    for name, action in ACTIONS.items():
        decision = decide(POLICY, admin, name, reads=[LINEITEM])
        assert decision.allowed is not action.changes, name
        if action.changes:
            assert decision.rule == TOKEN_SCOPE
            assert "read-only" in decision.reason
    write = StatementFacts(kind=StatementKind.WRITE, operation="InsertIntoStatement", writes=frozenset({STAGING}))
    assert decide_statement(POLICY, admin, write).rule == TOKEN_SCOPE
    reflection = StatementFacts(
        kind=StatementKind.QUERY, operation="Project", dangers=(Danger(DangerKind.REFLECTION, "reflect"),)
    )
    assert not decide_statement(POLICY, admin, reflection).allowed
    assert decide_statement(POLICY, Principal("root", roles=("admin",)), reflection).allowed
