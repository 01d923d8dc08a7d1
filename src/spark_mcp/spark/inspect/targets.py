"""What a command acts on: its target tables, found where its ``Rule`` says Spark prints them.

Where a literal can precede the target (an ``INSERT`` into files prints its options first),
every place a target could be printed counts, so planted text only adds targets.
"""

from __future__ import annotations

import re
from dataclasses import replace

from spark_mcp.spark.inspect.facts import Facts
from spark_mcp.spark.inspect.names import (
    BT_MULTI,
    BT_QUALIFIED,
    Catalogs,
    first_identifier,
    in_view_position,
    relation_arg,
    relation_name,
    resolved_mentions,
    table_of,
    unquote_parts,
)
from spark_mcp.spark.inspect.tree import Node
from spark_mcp.spark.inspect.vocabulary import RELATION_NODES, RESOLVED_NODES, Role, Rule, Target
from spark_mcp.statement import SESSION_CATALOG, STARTING_NAMESPACE, DangerKind, TableName

_D = DangerKind


# SHOW COLUMNS FROM t IN ns prints the namespace as written (no quotes) before the table;
# Spark refuses the statement unless it is the table's own namespace.
_SHOW_COLUMNS_IN = re.compile(r"ShowColumnsCommand [A-Za-z0-9_]+, (?=`)")


def _show_columns_in(root: Node) -> list[str] | None:
    match = _SHOW_COLUMNS_IN.match(root.head)
    if match is None:
        return None
    return first_identifier(replace(root, text="ShowColumnsCommand " + root.head[match.end() :]))


def targets(
    rule: Rule, root: Node, nodes: list[Node], analyzed: str, facts: Facts, catalogs: Catalogs
) -> set[TableName]:
    """The tables the root command acts on; unreadable names become UNANALYSABLE dangers."""
    found: set[TableName] = set()
    if rule.target is Target.FIRST:
        parts = first_identifier(root) or _show_columns_in(root)
        table = table_of(parts) if parts else None
        if parts and len(parts) == 1 and rule.role is Role.READ:
            facts.views.add(parts[0].lower())  # DESCRIBE (and the like) of a temporary view
        elif table is None:
            facts.danger(_D.UNANALYSABLE, f"cannot read the table {root.name} acts on")
        else:
            found.add(table)
            found.update(_second_names(root, table, analyzed, facts))
        for node in nodes:  # v1 commands that also print a Resolved* child name it there too
            if node.name in RESOLVED_NODES:
                tables, temp_views = resolved_mentions(node, catalogs)
                found.update(tables)
                facts.views.update(temp_views)
    elif rule.target is Target.ANYWHERE:
        for match in BT_QUALIFIED.finditer(analyzed):
            if in_view_position(analyzed, match.start()):
                continue  # a view the query reads through, not the target
            parts = unquote_parts(match.group(0))
            table = table_of(parts) if parts else None
            if table:
                found.add(table)
            else:
                facts.danger(_D.UNANALYSABLE, f"cannot read the name {match.group(0)[:80]} in {root.name}")
    elif rule.target is Target.RELATION:
        what, table = relation_arg(root)
        if table:
            found.add(table)
        elif what != "path":
            facts.danger(_D.UNANALYSABLE, f"cannot read the table {root.name} writes")
        else:
            facts.danger(_D.PATH_ACCESS, f"{root.name} writes to files, not a table")
    elif rule.target in (Target.CHILDREN, Target.MERGE):
        tops = sorted({n.top for n in nodes if n.depth >= 1 and n.top is not None})
        if rule.target is Target.MERGE:
            tops = tops[:-1]  # MERGE prints its source last: everything before it may be the target
        for node in nodes:
            if node.top in tops and node.name in RELATION_NODES:
                _, table = relation_name(node)
                if table:
                    found.add(table)
    elif rule.target is Target.RESOLVED:
        for node in nodes:
            if node.name in RESOLVED_NODES:
                tables, temp_views = resolved_mentions(node, catalogs)
                found.update(tables)
                facts.views.update(temp_views)
        if root.name == "RenameTable":
            renamed = _rename_v2(root, found)
            if renamed is None:
                facts.danger(_D.UNANALYSABLE, "cannot read the new name of the renamed table")
            else:
                found.update(renamed)
    elif rule.target is Target.NAMESPACE:
        namespace = _set_namespace(root)
        if namespace is None:
            facts.danger(_D.UNANALYSABLE, "cannot read the namespace of USE DATABASE; write USE <namespace>")
        else:
            found.add(namespace)
    elif rule.target is Target.HIVE_CTAS:
        hive = re.match(r"CreateHiveTableAsSelectCommand \[Database: (?P<db>\w+), TableName: (?P<t>\w+)\]", root.text)
        if hive:
            found.add(TableName.of("spark_catalog", hive.group("db"), hive.group("t")))
    if root.name in _USE and _STARTING_NAMESPACE in found:
        # A USE reads its namespace so that it tells nothing of one the caller may not see
        # (it fails where none exists). Every session starts in the session catalog's
        # ``default``, which always exists: going back to it tells nothing, and tools that
        # move to a namespace and back (ibis) must not fail there.
        found.discard(_STARTING_NAMESPACE)
        facts.note("USE of the namespace every session starts in (spark_catalog.default) reads nothing")
    return found


_USE = frozenset({"SetCatalogAndNamespace", "SetNamespaceCommand"})
_STARTING_NAMESPACE = TableName.of(SESSION_CATALOG, STARTING_NAMESPACE, "*")


# USE DATABASE|SCHEMA|NAMESPACE ns prints the namespace as written, its parts unquoted and
# joined by ", " (so a part holding ", " or "]" cannot be told apart): only a plain name is read.
_SET_NAMESPACE = re.compile(r"SetNamespaceCommand \[(?P<name>[A-Za-z0-9_]+)\]")


def _set_namespace(root: Node) -> TableName | None:
    """The namespace ``USE DATABASE ns`` moves to, as a read of everything in it (as ``USE ns``).

    Spark resolves it in the session's current catalog, which it does not print. spark-mcp's
    drivers have one catalog, the session catalog: a driver setting cannot add one
    (``config.spark_conf`` allows no ``spark.sql.catalog.*`` key), and ``SET CATALOG`` to any
    other name fails. A namespace of more than one part, which the session catalog cannot
    have, is not read."""
    match = _SET_NAMESPACE.fullmatch(root.head)
    return TableName.of(SESSION_CATALOG, match.group("name"), "*") if match else None


def _second_names(root: Node, first: TableName, analyzed: str, facts: Facts) -> set[TableName]:
    """The other object some v1 commands name: CREATE TABLE LIKE's source, RENAME's new name.

    Spark prints it right after the first name, but it is looked for everywhere in the
    plan (outside view positions): a line break planted before it then adds, never hides.
    """
    if root.name not in ("CreateTableLikeCommand", "AlterTableRenameCommand"):
        return set()
    others: list[list[str]] = []
    for match in BT_MULTI.finditer(analyzed):
        if in_view_position(analyzed, match.start()):
            continue
        parts = unquote_parts(match.group(0))
        if parts is None:
            facts.danger(_D.UNANALYSABLE, f"cannot read the name {match.group(0)[:80]} in {root.name}")
        elif table_of(parts) != first:
            others.append(parts)
    names: set[TableName] = set()
    for parts in others:
        if root.name == "CreateTableLikeCommand":
            source = table_of(parts)
            if source:
                facts.reads.add(source)
        elif len(parts) == 1:  # RENAME's new name stays in the old table's namespace
            names.add(TableName.of(first.catalog, first.namespace, parts[0]))
        else:
            names.add(table_of(parts) or TableName.of(first.catalog, ".".join(parts[:-1]), parts[-1]))
    return names


def _rename_v2(root: Node, old: set[TableName]) -> set[TableName] | None:
    """RENAME's new name as written; every reading of it counts, so a wrong one only adds."""
    match = re.match(r"RenameTable \[(?P<parts>[^\]\n]*)\], (?:true|false)(?:\n|$)", root.text)
    if not match:
        return None
    parts = [p.strip() for p in match.group("parts").split(",") if p.strip()]
    names: set[TableName] = set()
    for table in old:
        if len(parts) == 1:
            names.add(TableName.of(table.catalog, table.namespace, parts[0]))
        elif len(parts) >= 2:
            names.add(TableName.of(table.catalog, ".".join(parts[:-1]), parts[-1]))
        if len(parts) >= 3:
            names.add(TableName.of(parts[0], ".".join(parts[1:-1]), parts[-1]))
    return names
