"""What a statement touches, read from Sail's ``EXPLAIN EXTENDED`` text (pure).

Sail answers ``EXPLAIN EXTENDED`` with DataFusion's plans, not Spark's: four sections like
Spark's, but each node on its own line as ``<2 spaces per level><Name>: <details>``
(``Projection: ...``, ``Filter: ...``, ``Inner Join: ...``, ``TableScan: tpch.nation``).
Facts come from the analyzed section. What Sail prints, and so what this reader can and
cannot know (each point measured on pysail 0.7.2, see ``tests/fixtures/sail_explain``):

- a ``TableScan`` names its table **as the statement wrote it** (``nation``, ``tpch.nation``
  or ``spark_catalog.tpch.nation``), so one- and two-part names are qualified here with the
  session's current catalog and namespace (``SailContext``); a three-part name whose first
  part is no catalog (a nested namespace, or a part with a dot in it) is ambiguous;
- views, temp views and CTEs are expanded (``SubqueryAlias``) down to their base tables,
  subqueries are printed as ``Subquery:`` children: every base table has its own line;
- a read from a path (``parquet.`/p```) prints as ``TableScan: ?table?``, and so does data a
  client sent (``createDataFrame``): the two cannot be told apart, so only as many
  ``?table?`` scans as the caller itself put there (``local_relations``) are accepted;
- commands print almost nothing: ``CatalogCommand: DropTable`` without its table, an
  ``INSERT`` as ``Barrier`` / ``FileWrite`` with the target's path but not its name. What
  cannot be read is an ``UNKNOWN_NODE`` danger: denied for every role but ``sql.admin``;
- functions print under DataFusion's names (``spark_concat``, ``sha256``); Sail has no
  reflection (``reflect`` and ``java_method`` fail to analyse), no SQL function definitions,
  and a spark-mcp Sail driver cannot load Python UDFs (``drivers/sail.py``), so every call
  that analyses is a built-in. Names are still collected, and reflection names flagged.

The plan text is not a safe format: literals, aliases and names are printed raw, line
breaks included, so a literal can print lines that look like nodes. The reader is built so
that such text can only make a verdict stricter:

- the four section markers must each appear exactly once;
- every line shaped like a node counts, at any indentation: a planted ``TableScan`` only adds
  a read, a planted command or unknown node makes a query a non-query;
- a statement is a query only if every node line names a known relational operator, and a
  metadata command only if its one line is all there is;
- a table name must be plain (letters, digits, ``_``, dot-separated): anything else, such
  as a name that a line break cut short, makes the statement unanalysable.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from spark_mcp.statement import Danger, DangerKind, StatementFacts, StatementKind, TableName

_PARSED = "== Parsed Logical Plan =="
_ANALYZED = "== Analyzed Logical Plan =="
_OPTIMIZED = "== Optimized Logical Plan =="
_PHYSICAL = "== Physical Plan =="
_MARKERS = (_PARSED, _ANALYZED, _OPTIMIZED, _PHYSICAL)

_K = StatementKind
_D = DangerKind

# A node line: indentation, a capitalised name (joins are "<Type> Join"), then ":" and details or nothing.
_NODE = re.compile(r"^(?P<indent> *)(?P<name>[A-Z][A-Za-z0-9]*(?: Join)?)(?P<rest>:.*)?$")
_PLAIN_NAME = re.compile(r"^[A-Za-z0-9_]+(?:\.[A-Za-z0-9_]+)*$")
_LOCAL_RELATION = "?table?"
_CALL = re.compile(r"(?<![A-Za-z0-9_.#])([a-z_][a-z0-9_]*)\(")
_REFLECTION = frozenset({"reflect", "java_method", "try_reflect"})
_NOT_FUNCTIONS = frozenset({"outer_ref"})  # DataFusion's printing of a correlated column

_JOIN_TYPES = ("Inner", "Left", "Right", "Full", "Cross", "LeftSemi", "RightSemi", "LeftAnti", "RightAnti")
_JOINS = frozenset(f"{kind} Join" for kind in (*_JOIN_TYPES, "LeftMark", "RightMark"))
# Relational operators: they read (through TableScan) and change nothing.
QUERY_NODES = frozenset(
    {
        "Aggregate",
        "Distinct",
        "DistinctOn",
        "EmptyRelation",
        "Filter",
        "Limit",
        "Projection",
        "Range",  # spark.range(): Sail's own node, no table
        "Repartition",
        "Sort",
        "Subquery",
        "SubqueryAlias",
        "TableScan",
        "Union",
        "Unnest",
        "Values",
        "WindowAggr",
        *_JOINS,
    }
)
# Nodes that write: Sail prints where (a path) but not which table, so the target is unknown.
_WRITE_NODES = frozenset({"Barrier", "FileWrite", "DeltaWrite", "IcebergWrite", "PythonWrite", "Dml", "CopyTo"})

_METADATA = frozenset(
    {"CurrentCatalog", "CurrentDatabase", "ListCatalogs", "ShowFunctions", "ListFunctions"}
    | {"FunctionExists", "GetFunction", "DescribeFunction"}
)
# Commands about namespaces whose name Sail does not print: they may concern any of them.
_ANY_NAMESPACE = frozenset({"ListDatabases", "DatabaseExists", "GetDatabase", "DescribeDatabase"})
_LISTING = frozenset({"ShowTables", "ListTables", "ListViews", "ShowTableExtended"})
_RESOLUTION = frozenset({"SetCurrentCatalog", "SetCurrentDatabase"})
_ALL_NAMESPACES = TableName.of("*", "*", "*")


@dataclass(frozen=True)
class SailContext:
    """What a plan's bare names are relative to, and what the caller itself put in the plan."""

    catalog: str = "spark_catalog"
    namespace: str = "default"
    catalogs: frozenset[str] = frozenset({"spark_catalog", "system"})
    local_relations: int = 0  # client-sent data frames (result_id sources) the statement may scan


@dataclass(frozen=True)
class _Node:
    depth: int
    name: str  # "Projection", "Inner Join", or "CatalogCommand" ...
    rest: str  # what follows the name, without the ": "

    @property
    def key(self) -> str:
        """The operation: a CatalogCommand is named by its sub-command."""
        if self.name == "CatalogCommand":
            return self.rest.strip() or self.name
        return self.name


@dataclass
class _Facts:
    reads: set[TableName] = field(default_factory=set)
    functions: set[str] = field(default_factory=set)
    dangers: list[Danger] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def danger(self, kind: DangerKind, detail: str) -> None:
        item = Danger(kind, detail)
        if item not in self.dangers:
            self.dangers.append(item)


def _split(text: str) -> tuple[str | None, str]:
    """The analyzed section, or None and why the text cannot be trusted."""
    if not text.strip():
        return None, "empty EXPLAIN output"
    counts = {marker: text.count(marker) for marker in _MARKERS}
    if any(count != 1 for count in counts.values()):
        return None, (
            "the plan text does not have each section exactly once (a literal or name contains a section header)"
        )
    if not text.lstrip().startswith(_PARSED):
        return None, "the plan text does not start with the parsed plan"
    start = text.index(_ANALYZED) + len(_ANALYZED)
    end = text.index(_OPTIMIZED)
    if end < start:
        return None, "the plan sections are out of order"
    return text[start:end].strip("\n"), ""


def analyzed_plan(explain_text: str) -> str | None:
    """The analyzed section of Sail's EXPLAIN EXTENDED output, when it can be trusted."""
    section, _ = _split(explain_text if isinstance(explain_text, str) else "")
    return section


def _nodes(section: str) -> list[_Node]:
    nodes = []
    for line in section.split("\n"):
        match = _NODE.match(line)
        if match:
            rest = (match.group("rest") or "")[1:].strip()
            nodes.append(_Node(len(match.group("indent")) // 2, match.group("name"), rest))
    return nodes


def _qualify(parts: list[str], context: SailContext) -> TableName:
    if len(parts) == 1:
        return TableName.of(context.catalog, context.namespace, parts[0])
    if len(parts) == 2:
        return TableName.of(context.catalog, parts[0], parts[1])
    return TableName.of(parts[0], ".".join(parts[1:-1]), parts[-1])


def _scans(nodes: list[_Node], context: SailContext, facts: _Facts) -> None:
    local = 0
    for node in nodes:
        if node.name != "TableScan":
            continue
        name = node.rest
        if name == _LOCAL_RELATION:
            local += 1
        elif _PLAIN_NAME.fullmatch(name):
            parts = name.split(".")
            if len(parts) >= 3 and parts[0].lower() not in context.catalogs:
                facts.danger(
                    _D.UNANALYSABLE,
                    f"{name} is ambiguous on Sail: a nested namespace, or a part with a dot in its name",
                )
            else:
                facts.reads.add(_qualify(parts, context))
        else:
            facts.danger(
                _D.UNANALYSABLE,
                f"a scanned table's name cannot be read unambiguously ({name[:80]!r}): names with dots, spaces "
                "or line breaks in a part print the same as other names on Sail",
            )
    if local > context.local_relations:
        facts.danger(
            _D.PATH_ACCESS,
            "a read from a path (format.`path`): Sail prints it as ?table?, like data the client sent, so it is "
            "refused unless the plan's own result sources account for it",
        )


def _functions(section: str, facts: _Facts) -> None:
    for match in _CALL.finditer(section):
        name = match.group(1)
        if name in _NOT_FUNCTIONS:
            continue
        facts.functions.add(name)
        if name in _REFLECTION:
            facts.danger(_D.REFLECTION, f"{name}() calls Java methods by reflection")


def _unanalysable(detail: str) -> StatementFacts:
    return StatementFacts(
        kind=_K.UNKNOWN,
        operation="(unreadable)",
        dangers=(Danger(_D.UNANALYSABLE, detail),),
        notes=(detail,),
    )


def inspect_sail_explain(explain_text: str, context: SailContext | None = None) -> StatementFacts:
    """Everything policy needs from one Sail ``EXPLAIN EXTENDED`` output; never raises."""
    try:
        return _inspect(explain_text if isinstance(explain_text, str) else "", context or SailContext())
    except Exception as exc:  # a reader bug must deny, not crash the server
        return _unanalysable(f"the plan text could not be read ({type(exc).__name__})")


def _inspect(text: str, context: SailContext) -> StatementFacts:
    section, problem = _split(text)
    if section is None:
        return _unanalysable(problem)
    nodes = _nodes(section)
    roots = [n for n in nodes if n.depth == 0]
    if not roots:
        return _unanalysable("the analyzed plan has no root node")
    facts = _Facts(notes=[f"Sail plan: bare table names are read as {context.catalog}.{context.namespace}.<name>"])
    _scans(nodes, context, facts)
    _functions(section, facts)
    kind = _classify(nodes, facts)
    return StatementFacts(
        kind=kind,
        operation=roots[0].key,
        reads=frozenset(facts.reads),
        functions=frozenset(facts.functions),
        dangers=tuple(facts.dangers),
        notes=tuple(facts.notes),
    )


def _classify(nodes: list[_Node], facts: _Facts) -> StatementKind:
    """The statement kind from the set of node names (never from one line alone)."""
    others = [n for n in nodes if n.name not in QUERY_NODES]
    if not others:
        return _K.QUERY
    keys = {n.key for n in others}
    if keys & _WRITE_NODES:
        facts.danger(
            _D.UNKNOWN_NODE,
            "Sail does not print the table an INSERT or CREATE TABLE ... AS SELECT writes (only a path), "
            "so its target cannot be checked",
        )
        return _K.UNKNOWN
    if len(others) > 1 or (len(nodes) > 1 and others[0].name == "CatalogCommand"):
        names = ", ".join(sorted(keys | {n.name for n in nodes if n.name in QUERY_NODES}))
        facts.danger(_D.UNKNOWN_NODE, f"the plan mixes a command with other nodes ({names}): it cannot be read")
        return _K.UNKNOWN
    node = others[0]
    key = node.key
    if node.name == "SetVariable" and len(nodes) > 1:
        facts.danger(_D.UNKNOWN_NODE, "the plan mixes SET with other nodes: it cannot be read")
        return _K.UNKNOWN
    if node.name == "SetVariable":
        facts.danger(_D.CONFIG, "SET changes the session's configuration")
        return _K.ADMIN
    if node.name != "CatalogCommand":
        facts.danger(_D.UNKNOWN_NODE, f"unknown plan node {node.name}")
        return _K.UNKNOWN
    if key in _METADATA:
        return _K.METADATA
    if key in _ANY_NAMESPACE:
        facts.reads.add(_ALL_NAMESPACES)  # Sail does not print which namespace: it may be any
        return _K.METADATA
    if key in _LISTING:
        facts.danger(_D.LISTING, "SHOW TABLES lists tables you may not read: use list_tables")
        return _K.METADATA
    if key in _RESOLUTION:
        facts.danger(
            _D.CONFIG,
            "USE changes how later statements' table names resolve, and Sail does not print its target; "
            "write qualified names (namespace.table) instead",
        )
        return _K.ADMIN
    facts.danger(_D.UNKNOWN_NODE, f"Sail does not print the object of {key}, so it cannot be checked")
    return _K.UNKNOWN
