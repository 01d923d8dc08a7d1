"""Which engines a role may use (``engines = [...]`` in a policy file): pure decisions."""

from __future__ import annotations

import pytest

from spark_mcp.errors import PolicyFileError
from spark_mcp.identity import Principal
from spark_mcp.policy import DEFAULT_DENY, decide_engine, policy_from_toml

POLICY = """
[roles.reader]
actions = ["session.create", "sql.read"]
read = ["*"]

[roles.fast]
actions = ["session.create", "sql.read"]
read = ["tpch.*"]
engines = ["sail"]

[roles.both]
actions = ["session.create"]
engines = ["spark", "sail"]

[users]
ann = ["reader"]
ben = ["reader", "fast"]
cy = ["both"]
nobody = []
"""


def who(name: str) -> Principal:
    """``name`` as the server builds it: with the roles the policy gives it."""
    return Principal(id=name, roles=policy_from_toml(POLICY).roles_for(name))


@pytest.mark.parametrize(
    ("user", "engine", "allowed", "rule"),
    [
        ("ann", "spark", True, "roles.reader.engines"),  # a role without `engines` has ["spark"]
        ("ann", "sail", False, DEFAULT_DENY),
        ("ben", "sail", True, "roles.fast.engines"),  # grants are a union over roles
        ("ben", "spark", True, "roles.reader.engines"),
        ("cy", "sail", True, "roles.both.engines"),
        ("nobody", "spark", False, DEFAULT_DENY),
        ("ann", "duckdb", False, DEFAULT_DENY),
    ],
)
def test_engine_decisions_name_their_rule(user: str, engine: str, allowed: bool, rule: str) -> None:
    decision = decide_engine(policy_from_toml(POLICY), who(user), engine)
    assert (decision.allowed, decision.rule) == (allowed, rule)
    assert engine in decision.reason


def test_a_denial_says_how_to_allow_the_engine() -> None:
    decision = decide_engine(policy_from_toml(POLICY), who("ann"), "sail")
    assert "engines" in decision.reason and "ann" in decision.reason


def test_whoami_grants_list_the_engines() -> None:
    assert policy_from_toml(POLICY).grants_for(who("ben")).engines == ("spark", "sail")


def test_an_unknown_engine_in_a_policy_file_is_refused_with_its_key() -> None:
    with pytest.raises(PolicyFileError, match="engines"):
        policy_from_toml('[roles.x]\nactions = ["sql.read"]\nengines = ["duckdb"]\n')
