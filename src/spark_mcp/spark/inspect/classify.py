"""Classification: the statement's kind, reads, writes and dangers, from its plan's nodes.

The kind comes from the root line, which no literal can precede (only a query chooses the
column names of the schema header above it); any other unindented line naming a known node
is another candidate root, and candidates that disagree make the statement unknown. A node
the reader does not know is an ``UNKNOWN_NODE`` danger; output it cannot read is
``UNANALYSABLE``. Queries that merely contain something dangerous stay ``QUERY`` with the
danger attached; ``ADMIN`` is for statements whose only purpose is the dangerous surface.
"""

from __future__ import annotations

import functools
import re

from spark_mcp.spark.inspect.dangers import option_dangers, path_dangers, scan_text
from spark_mcp.spark.inspect.facts import Facts, unanalysable, unknown
from spark_mcp.spark.inspect.names import (
    Catalogs,
    first_identifier,
    relation_name,
    table_of,
    unquote_parts,
    unresolved_tables,
    view_name,
    written_table,
)
from spark_mcp.spark.inspect.sections import Sections, analysis_error, split_sections
from spark_mcp.spark.inspect.targets import targets
from spark_mcp.spark.inspect.tree import PREFIX, Node, node_name, read_tree, root_index
from spark_mcp.spark.inspect.vocabulary import (
    KIND_FROM_ARGUMENTS,
    KNOWN,
    NODE_DANGERS,
    PARSED_RULES,
    QUERY_NODES,
    RELATION_NODES,
    RESOLVED_NODES,
    RULES,
    Target,
)
from spark_mcp.statement import Danger, DangerKind, StatementFacts, StatementKind, TableName

_K = StatementKind
_D = DangerKind
_TWO_HUMPS = re.compile(r"[A-Z][a-z0-9]+[A-Z][A-Za-z0-9]*$")
# The schema header's first column when it is named like a call, as ibis names its columns
# ("CountStar(t): bigint"): no node prints its name, arguments in parentheses, then ": ".
_HEADER_CALL = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\([^\n]*\): ")
_CHILD = re.compile(r"[:+]- '")  # a root's direct child in a parsed plan
_RENAMED_TO = re.compile(r"'RenameTable \[(?P<parts>[^\]]*)\]")


def inspect_explain(explain_text: str, *, builtin_functions: frozenset[str] = frozenset()) -> StatementFacts:
    """Everything policy needs from one ``EXPLAIN EXTENDED`` output; never raises."""
    text = explain_text if isinstance(explain_text, str) else ""
    try:
        return read_plan(text, _lowered(builtin_functions))
    except Exception as exc:  # a reader bug must deny, not crash the server
        return unanalysable("(unreadable)", f"the plan text could not be read ({type(exc).__name__})")


@functools.lru_cache(maxsize=16)
def _lowered(builtin_functions: frozenset[str]) -> frozenset[str]:
    # Every analysis passes its driver's set (several hundred names): lowered once per set, not
    # once per analysis (a frozenset keeps its hash, so the lookup is cheap).
    return frozenset(f.lower() for f in builtin_functions)


def read_plan(text: str, builtins: frozenset[str]) -> StatementFacts:
    """``inspect_explain`` without its safety net: a reader bug raises here (tests call this)."""
    error = analysis_error(text)
    sections = split_sections(text)
    if sections is not None and sections.problem:
        return unanalysable("(unreadable)", sections.problem)
    if sections is None or error:
        # Spark's own error: the caller surfaces it (TABLE_OR_VIEW_NOT_FOUND, ...) to the agent.
        note = f"{error[0]}: {error[1]}" if error else "not EXPLAIN EXTENDED output"
        failed = unanalysable("(unanalysable)", note, (note,))
        if sections is None:
            return failed
        # Spark's message and the partial plan after it can name columns of tables that did
        # resolve ("Did you mean one of [`a`, `b`]"): report those tables as reads, so the
        # caller can keep the message from a principal who may not read them. The qualified
        # names the statement wrote count too, found or not: otherwise "not found" for
        # hr.nope, against a denial for hr.salaries, would tell which tables exist. A name
        # built by an expression (IDENTIFIER('hr.' || 'nope')) is written only in the partial
        # plan Spark's message prints, after the identifier was bound.
        written = unresolved_tables(sections.parsed) | unresolved_tables(sections.analyzed)
        return StatementFacts(
            kind=failed.kind,
            operation=failed.operation,
            reads=frozenset(_error_reads(sections.analyzed) | written),
            dangers=failed.dangers,
            notes=failed.notes,
            attempted=attempted(sections.parsed),
        )

    facts = Facts()
    lines = sections.analyzed.split("\n")
    root_at = root_index(lines)
    nodes = read_tree(lines, root_at)
    root = next((n for n in nodes if n.index == root_at), None)
    if root is None:
        word = node_name(lines[root_at]) or "(unreadable)"
        return unknown(word, f"cannot find the root of the analyzed plan (line: {lines[root_at][:80]!r})")
    scan_text(sections.parsed, sections.analyzed, builtins, facts)
    option_dangers(sections.parsed, facts)
    catalogs = Catalogs(sections.parsed, facts)

    kind = _classify_nodes(nodes, root, facts)
    if not builtins:
        facts.note("the driver's built-in function list was not given: calls were not checked for UDFs")
    kind, temp_view = _classify_root(root, nodes, kind, sections, facts, catalogs)

    # Other unindented lines that name known nodes are candidate roots planted by a literal:
    # unless they are query operators under a query, the statement is ambiguous.
    extra = [n for n in nodes if n.depth == 0 and n is not root]
    if extra and not (kind is _K.QUERY and all(n.name in QUERY_NODES for n in extra)):
        facts.danger(
            _D.UNKNOWN_NODE,
            f"the plan text has more than one root ({root.name}, {extra[0].name}): a literal or name with "
            "a line break makes it ambiguous",
        )
        kind = _K.UNKNOWN
    # An unindented CamelCase word that is no known node may be a node Spark printed that
    # the reader does not know (a newer Spark), shifted off the root by a multi-line header or
    # literal; a column name or a literal's continuation rarely reads like that.
    for index, line in enumerate(lines):
        if index == root_at or PREFIX.match(line) or (index < root_at and _HEADER_CALL.match(line)):
            continue
        name = node_name(line)
        if name and name not in KNOWN and _TWO_HUMPS.match(name):
            facts.danger(_D.UNKNOWN_NODE, f"unknown plan node {name}")

    return facts.freeze(kind, root.name, temp_view)


def attempted(parsed: str) -> StatementFacts | None:
    """The command a failed statement was, from its parsed plan's root (``'RefreshTable``):
    its kind, its rule's danger, and (for a command that writes) the tables it acts on, named
    on its root line or right under it (``+- 'UnresolvedTable [hr, nope]``); None for a
    query, a command whose kind depends on its arguments, or a root the reader does not know.

    A literal cannot precede the root line, and this only ever chooses which refusal a caller
    gets for a statement refused anyway (``Governance.judge``)."""
    lines = parsed.split("\n")
    name = node_name(lines[0].lstrip("'"))
    rule = PARSED_RULES.get(name or "")
    if name is None or rule is None or name in KIND_FROM_ARGUMENTS or rule.kind in (_K.QUERY, _K.UNKNOWN):
        return None
    dangers = (Danger(rule.danger, rule.detail or name),) if rule.danger is not None else ()
    writes: set[TableName] = set()
    if rule.kind in (_K.WRITE, _K.DDL) and rule.role.writes:
        for index, line in enumerate(lines):
            if index == 0 or _CHILD.match(line):
                writes |= unresolved_tables(line)
        renamed = _RENAMED_TO.match(lines[0])
        if renamed:  # the new name: written too
            table = written_table([p.strip() for p in renamed.group("parts").split(",")])
            writes |= {table} if table is not None else set()
    # DELETE, UPDATE and MERGE also read their target (analysed, it is a relation under them).
    reads = writes if rule.target in (Target.CHILDREN, Target.MERGE) else set()
    return StatementFacts(
        kind=rule.kind, operation=name, reads=frozenset(reads), writes=frozenset(writes), dangers=dangers
    )


def _error_reads(analyzed: str) -> set[TableName]:
    """Best effort: the tables named by relation lines of a failed analysis' partial plan."""
    reads: set[TableName] = set()
    for line in analyzed.split("\n"):
        prefix = PREFIX.match(line)
        rest = line[prefix.end() :] if prefix else line
        name = node_name(rest)
        if name in RELATION_NODES:
            _, table = relation_name(Node(0, 0, name, rest))
            if table:
                reads.add(table)
    return reads


def _classify_nodes(nodes: list[Node], root: Node, facts: Facts) -> StatementKind:
    """Reads, views and per-node dangers of every node; the kind its root implies."""
    for node in nodes:
        if node.name not in KNOWN:
            facts.danger(_D.UNKNOWN_NODE, f"unknown plan node {node.name}")
            continue
        if node.name in RELATION_NODES:
            what, table = relation_name(node)
            if what == "table" and table:
                facts.reads.add(table)
            elif what == "path":
                facts.danger(_D.PATH_ACCESS, "a relation read straight from files (format.`path`), not a table")
            else:
                facts.danger(_D.UNANALYSABLE, f"cannot read the relation name in: {node.text[:120]}")
        elif node.name == "View":
            parts = view_name(node)
            if parts:
                facts.views.add(".".join(parts).lower())
            else:
                facts.danger(_D.UNANALYSABLE, f"cannot read the view name in: {node.text[:120]}")
        elif node.name in NODE_DANGERS and node.name != "CommandResult":
            facts.danger(*NODE_DANGERS[node.name])
        elif node is not root and node.name in RULES:
            # A command below the root (the command a CommandResult ran, for one) still
            # carries its own danger.
            rule = RULES[node.name]
            if rule.danger is not None:
                facts.danger(rule.danger, rule.detail or node.name)
            if root.name in QUERY_NODES:
                # SQL cannot nest a command in a query, but a DataFrame plan can (a sql()
                # relation below a limit): Spark runs it when the query runs, and the query's
                # verdict would not cover what the command does.
                facts.danger(_D.UNANALYSABLE, f"a command ({node.name}) inside a query")
    if root.name in QUERY_NODES:
        return _K.QUERY
    root_rule = RULES.get(root.name)
    return root_rule.kind if root_rule else _K.UNKNOWN


def _classify_root(
    root: Node,
    nodes: list[Node],
    kind: StatementKind,
    sections: Sections,
    facts: Facts,
    catalogs: Catalogs,
) -> tuple[StatementKind, str | None]:
    """Targets and dangers of the root command; the final kind and temp view."""
    if root.name not in KNOWN:
        facts.danger(_D.UNKNOWN_NODE, f"unknown plan node {root.name}")
        return _K.UNKNOWN, None
    if root.name in QUERY_NODES or root.name in RESOLVED_NODES:
        if root.name in RESOLVED_NODES:
            facts.danger(_D.UNKNOWN_NODE, f"{root.name} cannot be the root of a statement")
            return _K.UNKNOWN, None
        return _K.QUERY, None
    rule = RULES[root.name]
    if rule.danger is not None:
        facts.danger(rule.danger, rule.detail or root.name)
    if root.name == "CommandResult":
        facts.danger(*NODE_DANGERS["CommandResult"])

    temp_view: str | None = None
    if root.name == "CreateViewCommand":
        return _create_view(root, sections.analyzed, facts)
    if root.name == "DropTempViewCommand":
        return _drop_temp_view(root, facts)
    if root.name in ("AlterViewAsCommand", "AlterViewSchemaBindingCommand"):
        return _alter_view(root, facts)
    if root.name in ("CreateTempViewUsing", "CacheTableAsSelect"):
        # The view's name is printed first, right after the node name (no literal before it).
        pattern = (
            r"CreateTempViewUsing \[tableIdent:`((?:[^`]|``)+)` "
            if root.name == "CreateTempViewUsing"
            else r"\w+ (\w+), "
        )
        match = re.match(pattern, root.text)
        if match:
            temp_view = match.group(1).replace("``", "`").lower()
        else:
            facts.danger(_D.UNANALYSABLE, f"cannot read the view name {root.name} creates")

    found = targets(rule, root, nodes, sections.analyzed, facts, catalogs)
    if rule.role.writes:
        facts.writes.update(found)
    if rule.role.reads:
        facts.reads.update(found)
    unexplained = not any(d.kind in (_D.UNANALYSABLE, _D.PATH_ACCESS) for d in facts.dangers)
    if rule.target is not Target.NONE and not found and kind in (_K.WRITE, _K.DDL) and unexplained:
        facts.danger(_D.UNANALYSABLE, f"cannot find what {root.name} writes")
    path_dangers(root, sections, facts)
    return kind, temp_view


def _create_view(root: Node, analyzed: str, facts: Facts) -> tuple[StatementKind, str | None]:
    """CREATE VIEW: a local temp view is TEMP_VIEW; global temp and persistent views are DDL.

    The view's SQL text is printed raw, so a type token could be planted by it: exactly one
    of the three types may appear anywhere in the plan, and it must fit the name's parts.
    """
    parts = first_identifier(root)
    if not parts:
        facts.danger(_D.UNANALYSABLE, "cannot read the name of the view being created")
        return _K.UNKNOWN, None
    types = {t for t in ("LocalTempView", "GlobalTempView", "PersistedView") if t in analyzed}
    if len(types) != 1:
        facts.danger(_D.UNANALYSABLE, "cannot tell what kind of view is being created (its text names view types)")
        return _K.UNKNOWN, None
    if len(parts) == 1 and types == {"LocalTempView"}:
        return _K.TEMP_VIEW, parts[0].lower()
    if len(parts) == 1 and types == {"GlobalTempView"}:
        facts.writes.add(TableName.of("spark_catalog", "global_temp", parts[0]))
        return _K.DDL, None
    table = table_of(parts)
    if table is None or types != {"PersistedView"}:
        facts.danger(_D.UNANALYSABLE, "cannot tell what kind of view is being created")
        return _K.UNKNOWN, None
    facts.writes.add(table)
    return _K.DDL, None


def _drop_temp_view(root: Node, facts: Facts) -> tuple[StatementKind, str | None]:
    match = re.match(r"DropTempViewCommand (?P<name>[^,\s]+),", root.text)
    parts = unquote_parts(match.group("name")) if match else None
    if not parts:
        facts.danger(_D.UNANALYSABLE, "cannot read the name of the view being dropped")
        return _K.UNKNOWN, None
    if len(parts) == 1:
        return _K.TEMP_VIEW, parts[0].lower()
    facts.writes.add(TableName.of("spark_catalog", ".".join(parts[:-1]), parts[-1]))
    return _K.DDL, None


def _alter_view(root: Node, facts: Facts) -> tuple[StatementKind, str | None]:
    """ALTER VIEW: of a local temp view it is TEMP_VIEW, else DDL on the view.

    Spark prints the view's name right after the node's name (no literal precedes it): one
    part for a local temp view of the caller's own session, two for a global temp view
    (``global_temp.v``), three for a persistent view. The view's new query is read like any
    other (its relations are reads), so what a temp view is altered to read is checked too.
    """
    parts = first_identifier(root)
    if not parts:
        facts.danger(_D.UNANALYSABLE, "cannot read the name of the view being altered")
        return _K.UNKNOWN, None
    if len(parts) == 1:
        return _K.TEMP_VIEW, parts[0].lower()
    facts.writes.add(table_of(parts) or TableName.of("spark_catalog", parts[0], parts[1]))
    return _K.DDL, None
