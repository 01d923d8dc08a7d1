"""Policy: who may do what to which tables, as data plus one pure decision.

    actions.py   the registry of actions a role can grant (``sql.read``, ``sql.admin``...)
    model.py     strict models of a policy file, table patterns, the merged ``Policy``
    loader.py    read ``policies/*.toml``, report bad files by file/key/reason, merge them
    decide.py    ``decide()`` and ``decide_statement()``: verdicts with reasons and rules

Nothing here does I/O except ``loader``; nothing here knows about Spark or MCP. The
rules themselves are written out at the top of ``decide.py``.
"""

from spark_mcp.policy.actions import ACTIONS, Action, get_action
from spark_mcp.policy.decide import (
    DEFAULT_DENY,
    STATEMENT_ACTIONS,
    Decision,
    decide,
    decide_engine,
    decide_statement,
    namespace_visible,
    readable,
    tables_refusal,
)
from spark_mcp.policy.loader import (
    load_policies,
    load_policy_file,
    merge_policy_files,
    policy_files,
    policy_from_toml,
)
from spark_mcp.policy.model import (
    DEFAULT_USER,
    Grants,
    Policy,
    PolicyFile,
    Role,
    RoleSpec,
    TablePattern,
)
from spark_mcp.statement import SESSION_CATALOG

__all__ = [
    "ACTIONS",
    "DEFAULT_DENY",
    "DEFAULT_USER",
    "SESSION_CATALOG",
    "STATEMENT_ACTIONS",
    "Action",
    "Decision",
    "Grants",
    "Policy",
    "PolicyFile",
    "Role",
    "RoleSpec",
    "TablePattern",
    "decide",
    "decide_engine",
    "decide_statement",
    "get_action",
    "load_policies",
    "load_policy_file",
    "merge_policy_files",
    "namespace_visible",
    "policy_files",
    "policy_from_toml",
    "readable",
    "tables_refusal",
]
