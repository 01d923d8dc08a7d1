"""The actions a role can grant, declared as data.

This registry is the vocabulary of every policy file: ``[roles.*].actions`` may name only
these, and ``decide()`` refuses (``ValueError``) to rule on anything else, because an
action the registry does not know is a bug in the caller, not a question for policy.

Actions that touch tables (``touches_tables``) are also checked against the role's
``read``/``write``/``deny`` patterns; the others are about the caller's own sessions or
about the server itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType


@dataclass(frozen=True)
class Action:
    """One thing a principal may be allowed to do."""

    name: str
    description: str
    touches_tables: bool = False
    changes: bool = False  # changes data or the server: refused to a read-only credential


# Read top to bottom, this is the list of everything spark-mcp will ever ask policy about.
_ACTIONS = (
    Action("session.create", "Create, list and close Spark Connect sessions of one's own"),
    Action(
        "sql.read",
        "Run queries and create temp views in one's own sessions, on tables the role may read",
        touches_tables=True,
    ),
    Action("sql.write", "Change rows (INSERT, UPDATE, DELETE, MERGE) in tables the role may write", True, True),
    Action("sql.ddl", "Create, alter and drop tables and views the role may write", True, True),
    Action(
        "sql.admin",
        "Use the dangerous surface: reflection, paths, SET, ADD JAR, functions from classes, "
        "EXECUTE IMMEDIATE, scripts, CACHE/REFRESH, and statements that cannot be checked",
        True,
        True,
    ),
    Action("plan.run", "Run structured DataFrame plans on tables the role may read", True),
    Action("catalog.read", "List catalogs, namespaces and tables, and describe tables the role may read", True),
    Action("driver.admin", "See and stop the Spark drivers of every principal", changes=True),
    Action("audit.read", "Read the audit log of every principal"),
)

ACTIONS: Mapping[str, Action] = MappingProxyType({action.name: action for action in _ACTIONS})
"""Every action, by name, in the order above."""


def get_action(name: str) -> Action:
    """The registered action called ``name``; ``ValueError`` for anything else."""
    try:
        return ACTIONS[name]
    except KeyError:
        raise ValueError(f"unknown action {name!r}; known actions: {', '.join(ACTIONS)}") from None
