"""What a statement touches, read from Spark's ``EXPLAIN EXTENDED`` text (pure).

Spark prints four sections: the parsed, analyzed, optimized and physical plans. Facts come
from the analyzed plan (views expanded to base relations, names fully qualified, commands
resolved), plus what only the parsed plan shows: function calls as written (a temporary
function prints like a built-in once resolved), ``CREATE TABLE`` locations and options (the
analyzed ``CreateDataSourceTableCommand`` omits them), read options (``WITH (...)``, which
can point a JDBC read at another table), and the catalog a statement names when Spark
prints a v2 catalog only as ``Class@hash``.

The plan text is not a safe format: literals, aliases, view text and even table column
names are printed raw, line breaks included, so a string literal can print lines that look
like plan nodes or section headers. The reader is therefore built so that injected text can
only make a verdict stricter:

- the four section markers must each appear exactly once, else the output is ambiguous;
- dangers (reflection, UDF calls, paths, commands that already ran) are searched for in the
  whole text of both sections, continuation lines included, so extra text only adds dangers;
- reads are every relation printed anywhere, so injected relations only add reads;
- the statement kind comes from the root line, which no literal can precede (only a query
  chooses the column names of the schema header above it); any other unindented line
  naming a known node is another candidate root, and candidates that disagree make the
  statement unknown;
- write targets are taken where a literal cannot reach (the identifier right after the
  command's name) or, where it can, from every place a target could be printed;
- truncated plans (``... N more fields``, ``... N more characters``) are unanalysable,
  because the truncated part is simply not printed: drivers should raise
  ``spark.sql.debug.maxToStringFields`` so wide plans stay readable.

A node the reader does not know is an ``UNKNOWN_NODE`` danger; output it cannot read is
``UNANALYSABLE``. Queries that merely contain something dangerous stay ``QUERY`` with the
danger attached; ``ADMIN`` is for statements whose only purpose is the dangerous surface
(``SET``, ``ADD JAR``, ``CACHE``, ...).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from spark_mcp.statement import Danger, DangerKind, StatementFacts, StatementKind, TableName

_PARSED = "== Parsed Logical Plan =="
_ANALYZED = "== Analyzed Logical Plan =="
_OPTIMIZED = "== Optimized Logical Plan =="
_PHYSICAL = "== Physical Plan =="
_PLANNING_ERROR = "Error occurred during query planning"

_K = StatementKind
_D = DangerKind

# --------------------------------------------------------------------------------------
# Node vocabulary: every analyzed-plan node name the reader knows, and what it means.
# --------------------------------------------------------------------------------------

# Relational operators: by themselves they read (through their children) and change nothing.
_QUERY_NODES = frozenset(
    {
        "Aggregate",
        "AsOfJoin",
        "CollectMetrics",
        "CTERelationDef",
        "CTERelationRef",
        "Deduplicate",
        "Distinct",
        "EmptyRelation",
        "Except",
        "Expand",
        "Filter",
        "Generate",
        "GlobalLimit",
        "HiveTableRelation",
        "Intersect",
        "Join",
        "LateralJoin",
        "LocalLimit",
        "LocalRelation",
        "LogicalRDD",
        "MergeRows",
        "Offset",
        "OneRowRelation",
        "PipeOperator",
        "Project",
        "Range",
        "RebalancePartitions",
        "Relation",
        "RelationV2",
        "Repartition",
        "RepartitionByExpression",
        "ResolvedHint",
        "ResolvedInlineTable",
        "Sample",
        "Sort",
        "Subquery",
        "SubqueryAlias",
        "Tail",
        "Transpose",
        "Union",
        "UnionLoop",
        "UnionLoopRef",
        "View",
        "Window",
        "WindowGroupLimit",
        "WithCTE",
        "WithWindowDefinition",
        # Query operators that carry a danger of their own (see _NODE_DANGERS).
        "ScriptTransformation",
        "SQLFunctionNode",
    }
)

# Plan nodes that are part of a command's tree (its target or its arguments).
_RESOLVED_NODES = frozenset(
    {"ResolvedIdentifier", "ResolvedTable", "ResolvedPersistentView", "ResolvedTempView", "ResolvedNamespace"}
)

_NODE_DANGERS: dict[str, tuple[DangerKind, str]] = {
    "ScriptTransformation": (
        _D.COMMAND_EXECUTION,
        "TRANSFORM ... USING runs an operating-system command on the cluster",
    ),
    "SQLFunctionNode": (_D.UDF_CALL, "a SQL table function"),
    "CommandResult": (_D.ANALYSIS_SIDE_EFFECT, "a command already ran while Spark analysed the statement"),
}


@dataclass(frozen=True)
class _Rule:
    """How to read one command node."""

    kind: StatementKind
    # Where the command's object is printed:
    #   first        the quoted identifier right after the node name (v1 commands)
    #   resolved     Resolved* child nodes (v2 commands)
    #   relation     a relation printed as the first argument (v2 writes)
    #   children     relations under the node's children (DELETE, UPDATE)
    #   merge        relations under every child but the last (MERGE: the last is the source)
    #   anywhere     every qualified quoted identifier (where literals precede the target)
    #   none         no table
    target: str = "none"
    role: str = "write"  # what the object is for: "write", "read" or "both"
    danger: DangerKind | None = None
    detail: str = ""


def _rules() -> dict[str, _Rule]:
    rules: dict[str, _Rule] = {}

    def add(names: str, rule: _Rule) -> None:
        for name in names.split():
            rules[name] = rule

    # Writes (DML).
    add("InsertIntoHadoopFsRelationCommand", _Rule(_K.WRITE, "anywhere"))
    add("InsertIntoHiveTable TruncateTableCommand", _Rule(_K.WRITE, "first"))
    add(
        "InsertIntoDataSourceCommand AppendData OverwriteByExpression OverwritePartitionsDynamic "
        "ReplaceData WriteDelta",
        _Rule(_K.WRITE, "relation"),
    )
    add("DeleteFromTable DeleteFromTableWithFilters UpdateTable", _Rule(_K.WRITE, "children"))
    add("MergeIntoTable", _Rule(_K.WRITE, "merge"))
    add("TruncateTable TruncatePartition", _Rule(_K.WRITE, "resolved"))
    add(
        "LoadDataCommand",
        _Rule(_K.WRITE, "first", danger=_D.PATH_ACCESS, detail="LOAD DATA reads files from a path"),
    )
    # DDL on tables, views and namespaces.
    add(
        "CreateDataSourceTableCommand CreateDataSourceTableAsSelectCommand CreateTableCommand "
        "CreateTableLikeCommand AlterViewAsCommand AlterViewSchemaBindingCommand DropTableCommand "
        "AlterTableRenameCommand AlterTableAddColumnsCommand AlterTableChangeColumnCommand "
        "AlterTableSetPropertiesCommand AlterTableUnsetPropertiesCommand AlterTableSerDePropertiesCommand "
        "AlterTableAddPartitionCommand AlterTableDropPartitionCommand AlterTableRenamePartitionCommand "
        "CreateViewCommand",
        _Rule(_K.DDL, "first"),
    )
    add(
        "AlterTableSetLocationCommand",
        _Rule(_K.DDL, "first", danger=_D.PATH_ACCESS, detail="ALTER TABLE ... SET LOCATION points a table at a path"),
    )
    add("CreateHiveTableAsSelectCommand", _Rule(_K.DDL, "hive_ctas"))
    add(
        "CreateTable CreateTableAsSelect ReplaceTable ReplaceTableAsSelect DropTable DropView RenameTable "
        "AddColumns AlterColumns DropColumns RenameColumn ReplaceColumns SetTableProperties UnsetTableProperties "
        "SetViewProperties UnsetViewProperties SetTableSerDeProperties AddPartitions DropPartitions "
        "RenamePartitions CommentOnTable AlterTableClusterBy AlterTableCollation AddCheckConstraint "
        "AddConstraint DropConstraint CreateIndex DropIndex AlterViewAs AlterViewSchemaBinding "
        "CreateNamespace DropNamespace SetNamespaceProperties CommentOnNamespace",
        _Rule(_K.DDL, "resolved"),
    )
    add(
        "SetTableLocation SetNamespaceLocation",
        _Rule(_K.DDL, "resolved", danger=_D.PATH_ACCESS, detail="SET LOCATION points an object at a path"),
    )
    # Metadata about one object (the object is read).
    add(
        "DescribeTableCommand DescribeColumnCommand ShowColumnsCommand ShowPartitionsCommand "
        "ShowCreateTableAsSerdeCommand ShowCreateTableCommand ShowTablePropertiesCommand",
        _Rule(_K.METADATA, "first", role="read"),
    )
    add(
        "DescribeRelation DescribeColumn ShowCreateTable ShowTableProperties ShowColumns ShowPartitions "
        "DescribeNamespace SetCatalogAndNamespace ShowNamespacesCommand ShowProceduresCommand",
        _Rule(_K.METADATA, "resolved", role="read"),
    )
    add(
        "ShowCatalogsCommand ShowCurrentNamespaceCommand ShowFunctionsCommand DescribeFunctionCommand "
        "ShowCollationsCommand SetCatalogCommand",
        _Rule(_K.METADATA),
    )
    # Listings: they reveal names of tables the caller may not read (use list_tables).
    listing = "it lists table names the caller may not be allowed to see; use the list_tables tool"
    add("ShowTables", _Rule(_K.METADATA, "resolved", role="read", danger=_D.LISTING, detail=listing))
    add(
        "ShowTablesCommand ShowViewsCommand ShowTablesExtended ShowTablesJsonCommand ShowTablePartition",
        _Rule(_K.METADATA, danger=_D.LISTING, detail=listing),
    )
    # The dangerous surface: statements whose only purpose is in it.
    add("SetCommand ResetCommand", _Rule(_K.ADMIN, danger=_D.CONFIG, detail="SET / RESET of configuration"))
    add("SetPathCommand", _Rule(_K.ADMIN, danger=_D.CONFIG, detail="SET PATH changes how functions resolve"))
    add(
        "AddJarsCommand AddFilesCommand AddArchivesCommand ListJarsCommand ListFilesCommand ListArchivesCommand",
        _Rule(_K.ADMIN, danger=_D.RESOURCE, detail="ADD / LIST JAR, FILE or ARCHIVE"),
    )
    add(
        "CreateFunctionCommand CreateSQLFunctionCommand DropFunctionCommand RefreshFunctionCommand "
        "CreateFunction DropFunction RefreshFunction CreateUserDefinedFunction",
        _Rule(_K.ADMIN, danger=_D.FUNCTION_DEFINITION, detail="CREATE / DROP / REFRESH FUNCTION"),
    )
    add(
        "CacheTable CacheTableAsSelect UncacheTable ClearCacheCommand",
        _Rule(_K.ADMIN, danger=_D.CACHE, detail="CACHE / UNCACHE / CLEAR CACHE"),
    )
    add("RefreshTableCommand", _Rule(_K.ADMIN, "first", role="read", danger=_D.REFRESH, detail="REFRESH TABLE"))
    add("RefreshTable", _Rule(_K.ADMIN, "resolved", role="read", danger=_D.REFRESH, detail="REFRESH TABLE"))
    add("RefreshResource", _Rule(_K.ADMIN, danger=_D.REFRESH, detail="REFRESH of a path"))
    add(
        "AnalyzeTableCommand AnalyzeColumnCommand AnalyzePartitionCommand",
        _Rule(_K.ADMIN, "first", role="both", danger=_D.STATISTICS, detail="ANALYZE TABLE"),
    )
    add(
        "AnalyzeTable AnalyzeColumn",
        _Rule(_K.ADMIN, "resolved", role="both", danger=_D.STATISTICS, detail="ANALYZE TABLE"),
    )
    add("AnalyzeTablesCommand AnalyzeTables", _Rule(_K.ADMIN, danger=_D.STATISTICS, detail="ANALYZE TABLES"))
    add("RepairTableCommand", _Rule(_K.ADMIN, "first", danger=_D.REPAIR, detail="MSCK REPAIR / RECOVER PARTITIONS"))
    add(
        "RepairTable RecoverPartitions",
        _Rule(_K.ADMIN, "resolved", danger=_D.REPAIR, detail="MSCK REPAIR / RECOVER PARTITIONS"),
    )
    add(
        "CreateVariable SetVariable DropVariable",
        _Rule(_K.ADMIN, danger=_D.VARIABLE, detail="DECLARE / SET VAR / DROP VARIABLE"),
    )
    add(
        "InsertIntoDataSourceDirCommand InsertIntoHiveDirCommand",
        _Rule(_K.ADMIN, danger=_D.PATH_ACCESS, detail="INSERT OVERWRITE DIRECTORY writes files to a path"),
    )
    add(
        "CreateTempViewUsing",
        _Rule(_K.ADMIN, danger=_D.PATH_ACCESS, detail="a temporary view over a data source's own options or path"),
    )
    add(
        "Call",
        _Rule(_K.ADMIN, danger=_D.UNKNOWN_NODE, detail="CALL runs a stored procedure the checker cannot see into"),
    )
    add("CommandResult", _Rule(_K.ADMIN))
    # Statements whose real content is not in the plan at all.
    add(
        "ExplainCommand DescribeQueryCommand",
        _Rule(
            _K.UNKNOWN,
            danger=_D.UNKNOWN_NODE,
            detail="the inner statement is not analysed in this plan; use the explain tool instead",
        ),
    )
    add(
        "CompoundBody SingleStatement MultiResult IfElseStatement WhileStatement RepeatStatement LoopStatement "
        "ForStatement SimpleCaseStatement SearchedCaseStatement LeaveStatement IterateStatement ExceptionHandler "
        "DeclareCursor OpenCursor FetchCursor CloseCursor",
        _Rule(_K.UNKNOWN, danger=_D.SCRIPT, detail="SQL scripting statements are not allowed"),
    )
    # DROP VIEW of a temporary view and CREATE VIEW are decided in _classify_root.
    add("DropTempViewCommand", _Rule(_K.TEMP_VIEW))
    return rules


_RULES = _rules()
_KNOWN = _QUERY_NODES | _RESOLVED_NODES | frozenset(_RULES)

# --------------------------------------------------------------------------------------
# Text patterns.
# --------------------------------------------------------------------------------------

_PREFIX = re.compile(r"(?P<indent>(?:   |:  )*)(?P<branch>\+- |:- )")
# A node name: optional marks (' unresolved, ~ streaming), then an identifier that is
# followed by the end of the line, a space, '[' or '(' (as Spark prints ``name args``).
_NODE = re.compile(r"(?P<marks>['~]*)(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?P<dollar>\$?)(?=$|[ \[(])")
_TWO_HUMPS = re.compile(r"[A-Z][a-z0-9]+[A-Z][A-Za-z0-9]*$")
_BT_PART = r"`(?:[^`]|``)*`"
_BT_ONE = re.compile(_BT_PART)
_BT_MULTI = re.compile(rf"{_BT_PART}(?:\.{_BT_PART})*")
_PLAIN_PART = re.compile(r"[A-Za-z0-9_$]+")
_ANY_PART = rf"(?:{_BT_PART}|[A-Za-z0-9_$]+)"
_ANY_MULTI = re.compile(rf"{_ANY_PART}(?:\.{_ANY_PART})*")
# No word boundary on the left: planted text glued to a real name must not hide it.
_BT_QUALIFIED = re.compile(rf"(?<!`){_BT_PART}(?:\.{_BT_PART}){{2,}}")
_VIEW_NAME = re.compile(rf"^View \((?P<name>{_BT_PART}(?:\.{_BT_PART})*), \[")
_SESSION_CATALOG = re.compile(r"V2SessionCatalog\((?P<name>[^)]*)\)")
_OBJECT_CATALOG = re.compile(r"(?P<object>[A-Za-z_][\w.$]*@[0-9a-f]+)")
_SAVE_MODE = re.compile(r", (?:Append|Overwrite|ErrorIfExists|Ignore), ")
_TRUNCATED_FIELDS = re.compile(r"\.\.\. \d+ more fields")
_TRUNCATED_TEXT = re.compile(r"\.\.\. \d+ more characters")
_ERROR_LINE = re.compile(r"^(?P<exception>[A-Za-z_][\w.$]*(?:Exception|Error))(?::\s?(?P<message>.*))?$")
_ERROR_CLASS = re.compile(r"^\[(?P<cls>[A-Z0-9_.]+)\]\s*(?P<rest>.*)$")
_SQLSTATE = re.compile(r"\s*SQLSTATE:.*$")

# No left boundary: a name glued to text before it ("xreflect(") still counts (stricter).
_REFLECTION = re.compile(r"(try_reflect|reflect|java_method)\s*\(", re.IGNORECASE)
_PROTOBUF = re.compile(r"(?<![\w$])(from_protobuf|to_protobuf)\s*\(", re.IGNORECASE)
_CALL = re.compile(r"(?<![\w$.#'`])([A-Za-z_][A-Za-z0-9_]*)\(")
# Unresolved function calls in the parsed plan print as 'name(...) or 'a.b.name(...).
_PARSED_CALL = re.compile(rf"'(?P<name>(?:{_BT_PART}|[A-Za-z_][\w$]*)(?:\.(?:{_BT_PART}|[A-Za-z_][\w$]*))*)\(")
_PARSED_IDENTIFIER_CALL = re.compile(r"expressionwithunresolvedidentifier\((?P<name>[^,()]*)(?P<next>[,()])")
# Resolved persistent functions print qualified and lower-cased: spark_catalog.db.f(...).
_QUALIFIED_CALL = re.compile(r"(?<![\w$.#'`])([a-z_][a-z0-9_]*(?:\.[a-z_][a-z0-9_]*)+)\(")
_HIVE_UDF = re.compile(r"Hive(?:GenericUDF|SimpleUDF|GenericUDTF)#|HiveFunctionWrapper\(|HiveUDAFFunction")
# 'UnresolvedRelation [parts], [options], isStreaming: options given with WITH (...) or a
# DataFrame reader. Spark adds one internal option to write targets, and only that one.
_RELATION_OPTIONS = re.compile(r"'UnresolvedRelation \[[^\]\n]*\], \[(?P<options>[^\n]*?)\], (?:true|false)")
_INTERNAL_OPTION = re.compile(r"__required_write_privileges__=[A-Z,]*")
_PARSED_TARGET_LIST = re.compile(
    r"'Unresolved(?P<what>Identifier|Table|TableOrView|View|Namespace|Relation)\b \[(?P<parts>[^\]\n]*)\]"
)


@dataclass
class _Node:
    index: int  # line number in the analyzed section
    depth: int  # 0 for an unindented line, else the tree depth
    name: str
    text: str  # the node's line after its prefix, plus its continuation lines
    top: int | None = None  # index of the depth-1 node this one sits under, if any


@dataclass
class _Facts:
    """Facts being gathered; frozen into StatementFacts at the end."""

    reads: set[TableName] = field(default_factory=set)
    writes: set[TableName] = field(default_factory=set)
    functions: set[str] = field(default_factory=set)
    dangers: list[Danger] = field(default_factory=list)
    views: set[str] = field(default_factory=set)
    notes: list[str] = field(default_factory=list)

    def danger(self, kind: DangerKind, detail: str) -> None:
        item = Danger(kind, detail)
        if item not in self.dangers:
            self.dangers.append(item)

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)


# --------------------------------------------------------------------------------------
# Sections.
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Sections:
    parsed: str
    analyzed: str  # the analyzed section as printed (schema header included)
    problem: str | None  # why the output cannot be trusted, if it cannot


def _sections(text: str) -> _Sections | None:
    """Split EXPLAIN EXTENDED output; None when it is not that output at all."""
    counts = {marker: text.count(marker) for marker in (_PARSED, _ANALYZED, _OPTIMIZED, _PHYSICAL)}
    if not counts[_PARSED] or not counts[_ANALYZED]:
        return None
    problem = None
    if any(count > 1 for count in counts.values()):
        # A literal or name printed the markers of a plan section: which one is real
        # cannot be told from the text, so nothing in it can be trusted.
        problem = "the plan text repeats its section headers (a literal or name contains them)"
    elif not text.lstrip().startswith(_PARSED):
        problem = "the plan text does not start with the parsed plan"
    parsed_start = text.index(_PARSED) + len(_PARSED)
    analyzed_at = text.index(_ANALYZED)
    parsed = text[parsed_start:analyzed_at].strip("\n")
    rest = text[analyzed_at + len(_ANALYZED) :]
    ends = [rest.find(marker) for marker in (_OPTIMIZED, _PHYSICAL)]
    end = min((e for e in ends if e >= 0), default=len(rest))
    analyzed = rest[:end].strip("\n")
    if _TRUNCATED_TEXT.search(text):
        problem = problem or (
            "Spark truncated the plan text (spark.sql.maxPlanStringLength); the driver's limit must be raised"
        )
    elif _TRUNCATED_FIELDS.search(parsed) or _TRUNCATED_FIELDS.search(analyzed):
        problem = problem or (
            "Spark left fields out of the plan text ('... N more fields'): what they hide cannot be "
            "checked; raise spark.sql.debug.maxToStringFields on the driver, or select fewer columns"
        )
    if not analyzed.strip():
        problem = problem or "the analyzed plan is empty"
    return _Sections(parsed, analyzed, problem)


def _error_of(analyzed: str) -> tuple[str, str] | None:
    first = analyzed.lstrip("\n").split("\n", 1)[0].strip()
    match = _ERROR_LINE.match(first)
    if not match:
        return None
    message = (match.group("message") or "").strip()
    cls = match.group("exception").rsplit(".", 1)[-1]
    inner = _ERROR_CLASS.match(message)
    if inner:
        cls, message = inner.group("cls"), inner.group("rest")
    message = _SQLSTATE.sub("", message).rstrip(" ;")
    return cls, message


def analysis_error(explain_text: str) -> tuple[str, str] | None:
    """(ERROR_CLASS, first line of the message) when Spark could not analyse the statement.

    ``PLANNING_ERROR`` and ``UNRECOGNISED_EXPLAIN_OUTPUT`` are spark-mcp's own names for an
    output without an analyzed plan at all; everything else is Spark's error class.
    """
    text = explain_text if isinstance(explain_text, str) else ""
    stripped = text.strip()
    if stripped.startswith(_PLANNING_ERROR):
        detail = stripped[len(_PLANNING_ERROR) :].lstrip(": ").split("\n", 1)[0].strip()
        # Seen for UPDATE and MERGE on file-based tables: Spark gives no detail here.
        return "PLANNING_ERROR", detail or (
            "Spark could not plan the statement and gave no reason; UPDATE, MERGE and DELETE need a "
            "table format that supports them (e.g. Delta or Iceberg), plain Parquet/CSV tables do not"
        )
    sections = _sections(text)
    if sections is None:
        first = stripped.split("\n", 1)[0][:200]
        return "UNRECOGNISED_EXPLAIN_OUTPUT", first or "empty EXPLAIN output"
    return _error_of(sections.analyzed)


def analyzed_section(explain_text: str) -> str | None:
    """The analyzed logical plan (or Spark's analysis error), without the schema header line."""
    text = explain_text if isinstance(explain_text, str) else ""
    sections = _sections(text)
    if sections is None or (sections.problem and "section headers" in sections.problem):
        return None
    if _error_of(sections.analyzed):
        return sections.analyzed
    lines = sections.analyzed.split("\n")
    return "\n".join(lines[_root_index(lines) :])


# --------------------------------------------------------------------------------------
# Tree reading.
# --------------------------------------------------------------------------------------


def _node_name(text: str) -> str | None:
    match = _NODE.match(text)
    return match.group("name") if match else None


def _unindented_known(line: str) -> bool:
    return not _PREFIX.match(line) and _node_name(line) in _KNOWN


def _root_index(lines: list[str]) -> int:
    """Line of the root node: the first unindented line naming a known node.

    Above it there is at most the output schema header, which is one line unless a column
    name holds a line break (``split(s, '\\n')`` names its column with the literal). Only
    a query has column names a statement can choose, so a header of several lines is
    tolerated; a known node planted in it is a second root candidate (see ``_inspect``).
    When line 0 is a known node and line 1 is one too, line 0 is a header that happens to
    read like a node ("Sort order: int") and line 1 the root; line 0 stays a candidate.
    """
    known = [i for i, line in enumerate(lines) if _unindented_known(line)]
    if not known:
        return 0
    if known[0] == 0 and len(known) > 1 and known[1] == 1:
        return 1
    return known[0]


def _read_tree(lines: list[str], root_index: int) -> list[_Node]:
    """Nodes in print order; lines that are not node lines continue the previous node.

    Every indented line naming a node is a node, and so is every unindented line naming a
    known node (a candidate root), even above the root: text a literal planted can then
    only add nodes, never hide the real ones.
    """
    nodes: list[_Node] = []
    top: int | None = None
    for index, line in enumerate(lines):
        prefix = _PREFIX.match(line)
        if prefix:
            rest = line[prefix.end() :]
            name = _node_name(rest)
            if name is not None:
                depth = len(prefix.group("indent")) // 3 + 1
                if depth == 1:
                    top = index
                nodes.append(_Node(index, depth, name, rest, top))
                continue
        elif index == root_index or _unindented_known(line):
            name = _node_name(line)
            if name is not None:
                nodes.append(_Node(index, 0, name, line))
                continue
        if nodes:
            nodes[-1].text += "\n" + line
    return nodes


# --------------------------------------------------------------------------------------
# Names.
# --------------------------------------------------------------------------------------


def _unquote_parts(text: str) -> list[str] | None:
    """`a`.`b` or a.b (Spark quotes a part only when it needs it) into parts."""
    parts: list[str] = []
    pos = 0
    while pos < len(text):
        if text[pos] == "`":
            match = _BT_ONE.match(text, pos)
            if not match or "``" in match.group(0):
                # A doubled backquote is either an escaped one or two quoted names glued
                # together by planted text: which one cannot be told, so it is unreadable.
                return None
            parts.append(match.group(0)[1:-1])
            pos = match.end()
        else:
            match = _PLAIN_PART.match(text, pos)
            if not match:
                return None
            parts.append(match.group(0))
            pos = match.end()
        if pos < len(text):
            if text[pos] != ".":
                return None
            pos += 1
            if pos == len(text):
                return None
    return parts or None


def _table(parts: list[str]) -> TableName | None:
    if len(parts) < 3 or any(not p for p in parts):
        return None
    return TableName.of(parts[0], ".".join(parts[1:-1]), parts[-1])


def _first_identifier(node: _Node) -> list[str] | None:
    """The quoted identifier printed right after the node's name: no literal can precede it."""
    head = node.text.split("\n", 1)[0]
    start = head.find(" ")
    if start < 0:
        return None
    match = _BT_MULTI.match(head, start + 1)
    if not match or head[match.end() : match.end() + 1] not in (",", ""):
        return None  # cut short (a name with a line break): unreadable, never a shorter name
    return _unquote_parts(match.group(0))


def _relation_name(node: _Node) -> tuple[str, TableName | None]:
    """('table', name), ('path', None) or ('unreadable', None) for a relation node."""
    head = node.text.split("\n", 1)[0]
    if node.name == "Relation":
        match = re.match(r"Relation (?P<name>[^\s\[]*)\[", head)
        if not match:
            return "unreadable", None
        if not match.group("name"):
            return "path", None
        table = _table(match.group("name").split("."))
        return ("table", table) if table else ("unreadable", None)
    if node.name == "RelationV2":
        # RelationV2[columns] name: the name ends the line (column names may hold "] ").
        cut = head.rfind("] ")
        name = head[cut + 2 :].strip() if cut >= 0 else ""
        parts = _unquote_parts(name) if _ANY_MULTI.fullmatch(name) else None
        table = _table(parts) if parts else None
        return ("table", table) if table else ("unreadable", None)
    if node.name == "HiveTableRelation":
        match = _BT_MULTI.match(head, len("HiveTableRelation ["))
        parts = _unquote_parts(match.group(0)) if match and head.startswith("HiveTableRelation [") else None
        table = _table(parts) if parts else None
        return ("table", table) if table else ("unreadable", None)
    return "none", None


def _relation_arg(node: _Node) -> tuple[str, TableName | None]:
    """The relation a v2 write prints as its first argument (``AppendData RelationV2[...] t``)."""
    head = node.text.split("\n", 1)[0]
    rest = head[len(node.name) :].lstrip()
    name = _node_name(rest)
    if name not in ("Relation", "RelationV2"):
        return "unreadable", None
    if name == "RelationV2":
        # RelationV2[columns] name, then the write's other arguments after ", ".
        match = re.match(rf"RelationV2\[[^\]]*\] (?P<name>{_ANY_MULTI.pattern}),", rest)
        parts = _unquote_parts(match.group("name")) if match else None
        table = _table(parts) if parts else None
        return ("table", table) if table else ("unreadable", None)
    inner = _Node(node.index, node.depth, name, rest)
    return _relation_name(inner)


@dataclass
class _Catalogs:
    """Catalog names for catalogs Spark prints as ``Class@hash`` (every v2 catalog but the session one)."""

    parsed: str
    facts: _Facts
    cache: dict[tuple[str, tuple[str, ...]], str | None] = field(default_factory=dict)

    def name(self, printed: str, resolved: list[str]) -> str | None:
        session = _SESSION_CATALOG.match(printed)
        if session:
            return session.group("name")
        key = (printed, tuple(p.lower() for p in resolved))
        if key not in self.cache:
            self.cache[key] = self._from_parsed(list(key[1]))
            if self.cache[key] is None:
                self.facts.danger(
                    _D.UNANALYSABLE,
                    f"Spark printed a catalog as {printed} without its name; name the catalog explicitly "
                    "(catalog.namespace.table) so the checker can tell which catalog it is",
                )
            else:
                self.facts.note(f"catalog {printed} is '{self.cache[key]}', as written in the statement")
        return self.cache[key]

    def _from_parsed(self, resolved: list[str]) -> str | None:
        # The statement as written names [catalog, *resolved] when it names the catalog: the
        # analyzer consumed exactly one leading part. Any written name that could instead be
        # relative to the current catalog, or two different leading parts, leave it unknown.
        found: set[str] = set()
        matches = list(_PARSED_TARGET_LIST.finditer(self.parsed))
        if len(
            re.findall(r"'Unresolved(?:Identifier|Table|TableOrView|View|Namespace|Relation)\b", self.parsed)
        ) != len(matches):
            return None  # a written name that cannot be read whole could be the relative one
        for match in matches:
            parts = [p.strip().lower() for p in match.group("parts").split(",")]
            parts = [p for p in parts if p]
            if match.group("what") != "Relation" and len(parts) <= len(resolved) and parts == resolved[-len(parts) :]:
                return None
            if len(parts) == len(resolved) + 1 and parts[1:] == resolved:
                found.add(parts[0])
        return found.pop() if len(found) == 1 else None


def _resolved_mentions(node: _Node, catalogs: _Catalogs) -> tuple[list[TableName], list[str]]:
    """Tables (and namespace wildcards) named by a Resolved* node, and temp view names."""
    head = node.text.split("\n", 1)[0]
    args = head[len(node.name) :].strip()
    if node.name == "ResolvedTempView":
        name = args.split(",", 1)[0].strip()
        return [], [name.lower()] if name else []
    match = _SESSION_CATALOG.match(args) or _OBJECT_CATALOG.match(args)
    if not match:
        catalogs.facts.danger(_D.UNANALYSABLE, f"cannot read the catalog of {node.name}: {head[:120]}")
        return [], []
    printed = match.group(0)
    if "FakeSystemCatalog" in printed:  # session variables, not tables
        return [], []
    tail = args[match.end() :]
    if node.name == "ResolvedNamespace":
        namespace: list[str] = []
        list_match = re.fullmatch(r", \[(?P<parts>[^\]]*)\]", tail)
        if list_match:
            namespace = [p.strip() for p in list_match.group("parts").split(",") if p.strip()]
        elif tail:
            catalogs.facts.danger(_D.UNANALYSABLE, f"cannot read the namespace in {node.name}: {head[:120]}")
            return [], []
        catalog = catalogs.name(printed, [p.lower() for p in namespace])
        if catalog is None:
            return [], []
        return [TableName.of(catalog, ".".join(namespace) or "*", "*")], []
    ident = re.match(r", (?P<ident>(?:`(?:[^`]|``)*`|[^,`\s])+)(?:,|$)", tail)
    parts = _unquote_parts(ident.group("ident")) if ident else None
    if not parts or len(parts) < 2:
        catalogs.facts.danger(_D.UNANALYSABLE, f"cannot read the name in {node.name}: {head[:120]}")
        return [], []
    catalog = catalogs.name(printed, [p.lower() for p in parts])
    if catalog is None:
        return [], []
    table = _table([catalog, *parts])
    return ([table] if table else []), []


# --------------------------------------------------------------------------------------
# Function calls and other dangers found anywhere in the text.
# --------------------------------------------------------------------------------------


def _scan_text(parsed: str, analyzed: str, builtins: frozenset[str], facts: _Facts) -> None:
    both = parsed + "\n" + analyzed
    for match in _REFLECTION.finditer(both):
        facts.danger(_D.REFLECTION, f"{match.group(1).lower()}() calls Java methods by reflection")
        facts.functions.add(match.group(1).lower())
    for match in _PROTOBUF.finditer(both):
        facts.danger(_D.PATH_ACCESS, f"{match.group(1).lower()}() can read a descriptor file from the driver")
    if "CommandResult" in analyzed:
        facts.danger(*_NODE_DANGERS["CommandResult"])
    if "ScriptTransformation" in analyzed:
        facts.danger(*_NODE_DANGERS["ScriptTransformation"])
    if builtins:
        for match in _CALL.finditer(analyzed):
            name = match.group(1).lower()
            if name in builtins:
                facts.functions.add(name)
    _scan_calls(parsed, analyzed, builtins, facts)


def _scan_calls(parsed: str, analyzed: str, builtins: frozenset[str], facts: _Facts) -> None:
    """Calls to functions that are not Spark built-ins (temporary, persistent, Hive)."""
    for match in _PARSED_CALL.finditer(parsed):
        parts = _unquote_parts(match.group("name"))
        _judge_call(parts if parts else [match.group("name")], builtins, facts)
    for match in _PARSED_IDENTIFIER_CALL.finditer(parsed):
        # IDENTIFIER('f')(...) prints the function name as the first argument; a name built
        # by an expression (a call in it) cannot be judged, so it counts as a UDF call.
        name = match.group("name").strip()
        parts = _unquote_parts(name) if match.group("next") == "," else None
        if parts:
            _judge_call(parts, builtins, facts)
        else:
            facts.danger(_D.UDF_CALL, "IDENTIFIER(...) names a function the checker cannot resolve")
    for match in _QUALIFIED_CALL.finditer(analyzed):
        parts = match.group(1).split(".")
        _judge_call(parts, builtins, facts, resolved=True)
    if _HIVE_UDF.search(analyzed):
        facts.danger(_D.UDF_CALL, "a Hive UDF (a function loaded from a class)")


def _judge_call(parts: list[str], builtins: frozenset[str], facts: _Facts, *, resolved: bool = False) -> None:
    lowered = [p.lower() for p in parts]
    name = lowered[-1]
    qualifier = lowered[:-1]
    if qualifier in (["system", "builtin"], ["builtin"]):
        facts.functions.add(name)
        return
    if qualifier == ["system", "session"]:
        facts.danger(_D.UDF_CALL, f"{'.'.join(parts)}() is a temporary function")
        return
    if qualifier:
        facts.danger(_D.UDF_CALL, f"{'.'.join(lowered)}() is not a Spark built-in")
        return
    if resolved:
        return
    if not builtins:
        facts.note("the driver's built-in function list was not given: calls were not checked for UDFs")
        return
    if name not in builtins:
        facts.danger(_D.UDF_CALL, f"{parts[-1]}() is not a Spark built-in")


# --------------------------------------------------------------------------------------
# Classification.
# --------------------------------------------------------------------------------------


def _unknown(operation: str, detail: str, notes: Iterable[str] = ()) -> StatementFacts:
    return StatementFacts(
        kind=_K.UNKNOWN,
        operation=operation,
        dangers=(Danger(_D.UNKNOWN_NODE, detail),),
        notes=tuple(notes),
    )


def _unanalysable(operation: str, detail: str, notes: Iterable[str] = ()) -> StatementFacts:
    return StatementFacts(
        kind=_K.UNKNOWN,
        operation=operation,
        dangers=(Danger(_D.UNANALYSABLE, detail),),
        notes=tuple(notes) or (detail,),
    )


def inspect_explain(explain_text: str, *, builtin_functions: frozenset[str] = frozenset()) -> StatementFacts:
    """Everything policy needs from one ``EXPLAIN EXTENDED`` output; never raises."""
    text = explain_text if isinstance(explain_text, str) else ""
    try:
        return _inspect(text, frozenset(f.lower() for f in builtin_functions))
    except Exception as exc:  # a reader bug must deny, not crash the server
        return _unanalysable("(unreadable)", f"the plan text could not be read ({type(exc).__name__})")


def _inspect(text: str, builtins: frozenset[str]) -> StatementFacts:
    error = analysis_error(text)
    sections = _sections(text)
    if sections is not None and sections.problem:
        return _unanalysable("(unreadable)", sections.problem)
    if sections is None or error:
        # Spark's own error: the caller surfaces it (TABLE_OR_VIEW_NOT_FOUND, ...) to the agent.
        note = f"{error[0]}: {error[1]}" if error else "not EXPLAIN EXTENDED output"
        failed = _unanalysable("(unanalysable)", note, (note,))
        if sections is None:
            return failed
        # Spark's message and the partial plan after it can name columns of tables that did
        # resolve ("Did you mean one of [`a`, `b`]"): report those tables as reads, so the
        # caller can keep the message from a principal who may not read them.
        return StatementFacts(
            kind=failed.kind,
            operation=failed.operation,
            reads=frozenset(_error_reads(sections.analyzed)),
            dangers=failed.dangers,
            notes=failed.notes,
        )

    facts = _Facts()
    lines = sections.analyzed.split("\n")
    root_index = _root_index(lines)
    nodes = _read_tree(lines, root_index)
    root = next((n for n in nodes if n.index == root_index), None)
    if root is None:
        word = _node_name(lines[root_index]) or "(unreadable)"
        return _unknown(word, f"cannot find the root of the analyzed plan (line: {lines[root_index][:80]!r})")
    _scan_text(sections.parsed, sections.analyzed, builtins, facts)
    _option_dangers(sections.parsed, facts)
    catalogs = _Catalogs(sections.parsed, facts)

    kind = _classify_nodes(nodes, root, facts, catalogs)
    if not builtins:
        facts.note("the driver's built-in function list was not given: calls were not checked for UDFs")
    kind, temp_view = _classify_root(root, nodes, kind, sections, facts, catalogs)

    # Other unindented lines that name known nodes are candidate roots planted by a literal:
    # unless they are query operators under a query, the statement is ambiguous.
    extra = [n for n in nodes if n.depth == 0 and n is not root]
    if extra and not (kind is _K.QUERY and all(n.name in _QUERY_NODES for n in extra)):
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
        if index == root_index or _PREFIX.match(line):
            continue
        name = _node_name(line)
        if name and name not in _KNOWN and _TWO_HUMPS.match(name):
            facts.danger(_D.UNKNOWN_NODE, f"unknown plan node {name}")

    return StatementFacts(
        kind=kind,
        operation=root.name,
        reads=frozenset(facts.reads),
        writes=frozenset(facts.writes),
        functions=frozenset(facts.functions),
        dangers=tuple(facts.dangers),
        views=frozenset(facts.views),
        temp_view=temp_view,
        notes=tuple(facts.notes),
    )


def _error_reads(analyzed: str) -> set[TableName]:
    """Best effort: the tables named by relation lines of a failed analysis' partial plan."""
    reads: set[TableName] = set()
    for line in analyzed.split("\n"):
        prefix = _PREFIX.match(line)
        rest = line[prefix.end() :] if prefix else line
        name = _node_name(rest)
        if name in ("Relation", "RelationV2", "HiveTableRelation"):
            _, table = _relation_name(_Node(0, 0, name, rest))
            if table:
                reads.add(table)
    return reads


def _classify_nodes(nodes: list[_Node], root: _Node, facts: _Facts, catalogs: _Catalogs) -> StatementKind:
    """Reads, views and per-node dangers of every node; the kind its root implies."""
    for node in nodes:
        if node.name not in _KNOWN:
            facts.danger(_D.UNKNOWN_NODE, f"unknown plan node {node.name}")
            continue
        if node.name in ("Relation", "RelationV2", "HiveTableRelation"):
            what, table = _relation_name(node)
            if what == "table" and table:
                facts.reads.add(table)
            elif what == "path":
                facts.danger(_D.PATH_ACCESS, "a relation read straight from files (format.`path`), not a table")
            else:
                facts.danger(_D.UNANALYSABLE, f"cannot read the relation name in: {node.text[:120]}")
        elif node.name == "View":
            match = _VIEW_NAME.match(node.text)
            parts = _unquote_parts(match.group("name")) if match else None
            if parts:
                facts.views.add(".".join(parts).lower())
            else:
                facts.danger(_D.UNANALYSABLE, f"cannot read the view name in: {node.text[:120]}")
        elif node.name in _NODE_DANGERS and node.name != "CommandResult":
            facts.danger(*_NODE_DANGERS[node.name])
        elif node is not root and node.name in _RULES:
            # A command below the root (the command a CommandResult ran, for one) still
            # carries its own danger.
            rule = _RULES[node.name]
            if rule.danger is not None:
                facts.danger(rule.danger, rule.detail or node.name)
    if root.name in _QUERY_NODES:
        return _K.QUERY
    root_rule = _RULES.get(root.name)
    return root_rule.kind if root_rule else _K.UNKNOWN


def _classify_root(
    root: _Node,
    nodes: list[_Node],
    kind: StatementKind,
    sections: _Sections,
    facts: _Facts,
    catalogs: _Catalogs,
) -> tuple[StatementKind, str | None]:
    """Targets and dangers of the root command; the final kind and temp view."""
    if root.name not in _KNOWN:
        facts.danger(_D.UNKNOWN_NODE, f"unknown plan node {root.name}")
        return _K.UNKNOWN, None
    if root.name in _QUERY_NODES or root.name in _RESOLVED_NODES:
        if root.name in _RESOLVED_NODES:
            facts.danger(_D.UNKNOWN_NODE, f"{root.name} cannot be the root of a statement")
            return _K.UNKNOWN, None
        return _K.QUERY, None
    rule = _RULES[root.name]
    if rule.danger is not None:
        facts.danger(rule.danger, rule.detail or root.name)
    if root.name == "CommandResult":
        facts.danger(*_NODE_DANGERS["CommandResult"])

    temp_view: str | None = None
    if root.name == "CreateViewCommand":
        return _create_view(root, sections.analyzed, facts)
    if root.name == "DropTempViewCommand":
        return _drop_temp_view(root, facts)
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

    targets = _targets(rule, root, nodes, sections.analyzed, facts, catalogs)
    if rule.role in ("write", "both"):
        facts.writes.update(targets)
    if rule.role in ("read", "both"):
        facts.reads.update(targets)
    unexplained = not any(d.kind in (_D.UNANALYSABLE, _D.PATH_ACCESS) for d in facts.dangers)
    if rule.target != "none" and not targets and kind in (_K.WRITE, _K.DDL) and unexplained:
        facts.danger(_D.UNANALYSABLE, f"cannot find what {root.name} writes")
    _path_dangers(root, sections, facts)
    return kind, temp_view


def _targets(
    rule: _Rule, root: _Node, nodes: list[_Node], analyzed: str, facts: _Facts, catalogs: _Catalogs
) -> set[TableName]:
    targets: set[TableName] = set()
    if rule.target == "first":
        parts = _first_identifier(root)
        table = _table(parts) if parts else None
        if parts and len(parts) == 1 and rule.role == "read":
            facts.views.add(parts[0].lower())  # DESCRIBE (and the like) of a temporary view
        elif table is None:
            facts.danger(_D.UNANALYSABLE, f"cannot read the table {root.name} acts on")
        else:
            targets.add(table)
            targets.update(_second_names(root, table, analyzed, facts))
        for node in nodes:  # v1 commands that also print a Resolved* child name it there too
            if node.name in _RESOLVED_NODES:
                tables, temp_views = _resolved_mentions(node, catalogs)
                targets.update(tables)
                facts.views.update(temp_views)
    elif rule.target == "anywhere":
        for match in _BT_QUALIFIED.finditer(analyzed):
            if _in_view_position(analyzed, match.start()):
                continue  # a view the query reads through, not the target
            parts = _unquote_parts(match.group(0))
            table = _table(parts) if parts else None
            if table:
                targets.add(table)
            else:
                facts.danger(_D.UNANALYSABLE, f"cannot read the name {match.group(0)[:80]} in {root.name}")
    elif rule.target == "relation":
        what, table = _relation_arg(root)
        if table:
            targets.add(table)
        elif what != "path":
            facts.danger(_D.UNANALYSABLE, f"cannot read the table {root.name} writes")
        else:
            facts.danger(_D.PATH_ACCESS, f"{root.name} writes to files, not a table")
    elif rule.target in ("children", "merge"):
        tops = sorted({n.top for n in nodes if n.depth >= 1 and n.top is not None})
        if rule.target == "merge":
            tops = tops[:-1]  # MERGE prints its source last: everything before it may be the target
        for node in nodes:
            if node.top in tops and node.name in ("Relation", "RelationV2", "HiveTableRelation"):
                what, table = _relation_name(node)
                if table:
                    targets.add(table)
    elif rule.target == "resolved":
        for node in nodes:
            if node.name in _RESOLVED_NODES:
                tables, temp_views = _resolved_mentions(node, catalogs)
                targets.update(tables)
                facts.views.update(temp_views)
        if root.name == "RenameTable":
            renamed = _rename_v2(root, targets)
            if renamed is None:
                facts.danger(_D.UNANALYSABLE, "cannot read the new name of the renamed table")
            else:
                targets.update(renamed)
    elif rule.target == "hive_ctas":
        hive = re.match(r"CreateHiveTableAsSelectCommand \[Database: (?P<db>\w+), TableName: (?P<t>\w+)\]", root.text)
        if hive:
            targets.add(TableName.of("spark_catalog", hive.group("db"), hive.group("t")))
    return targets


def _second_names(root: _Node, first: TableName, analyzed: str, facts: _Facts) -> set[TableName]:
    """The other object some v1 commands name: CREATE TABLE LIKE's source, RENAME's new name.

    Spark prints it right after the first name, but it is looked for everywhere in the
    plan (outside view positions): a line break planted before it then adds, never hides.
    """
    if root.name not in ("CreateTableLikeCommand", "AlterTableRenameCommand"):
        return set()
    others: list[list[str]] = []
    for match in _BT_MULTI.finditer(analyzed):
        if _in_view_position(analyzed, match.start()):
            continue
        parts = _unquote_parts(match.group(0))
        if parts is None:
            facts.danger(_D.UNANALYSABLE, f"cannot read the name {match.group(0)[:80]} in {root.name}")
        elif _table(parts) != first:
            others.append(parts)
    names: set[TableName] = set()
    for parts in others:
        if root.name == "CreateTableLikeCommand":
            source = _table(parts)
            if source:
                facts.reads.add(source)
        elif len(parts) == 1:  # RENAME's new name stays in the old table's namespace
            names.add(TableName.of(first.catalog, first.namespace, parts[0]))
        else:
            names.add(_table(parts) or TableName.of(first.catalog, ".".join(parts[:-1]), parts[-1]))
    return names


def _in_view_position(analyzed: str, start: int) -> bool:
    """Whether the name at ``start`` is the one a ``View (`name`, [...])`` node prints."""
    line_start = analyzed.rfind("\n", 0, start) + 1
    return re.fullmatch(r"(?:(?:   |:  )*(?:\+- |:- ))?View \(", analyzed[line_start:start]) is not None


def _rename_v2(root: _Node, old: set[TableName]) -> set[TableName] | None:
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


def _option_dangers(parsed: str, facts: _Facts) -> None:
    """Read options reach the data source but not the analyzed plan.

    Measured: a JDBC table read ``WITH ('dbtable'='other')`` scans the other table while the
    analyzed plan still names the first one, so options only the parsed plan shows count.
    """
    for match in _RELATION_OPTIONS.finditer(parsed):
        entries = [e for e in match.group("options").split(", ") if e]
        if any(not _INTERNAL_OPTION.fullmatch(e) for e in entries):
            facts.danger(
                _D.PATH_ACCESS,
                "table options (WITH (...)) can point a read at another table, path or URL; remove them",
            )
            break
    if parsed.count("'UnresolvedRelation") > len(_RELATION_OPTIONS.findall(parsed)):
        # A relation whose options could not be read (a name or value with a line break).
        facts.danger(_D.UNANALYSABLE, "cannot read the options of a table in the parsed plan")


def _path_dangers(root: _Node, sections: _Sections, facts: _Facts) -> None:
    """LOCATION, path options and partition locations, wherever Spark prints them."""
    parsed, analyzed = sections.parsed, sections.analyzed
    # unresolvedtablespec(..., optionlist(<options>), <location>, ...): every optionlist Spark
    # printed must be empty and followed by no location; planted text can only break that.
    specs = parsed.count("optionlist(")
    if "unresolvedtablespec(" in parsed and len(re.findall(r"optionlist\(\), None[,)]", parsed)) != specs:
        facts.danger(
            _D.PATH_ACCESS,
            "CREATE TABLE with LOCATION or OPTIONS points a table at a path or an external source",
        )
    if re.search(r"Storage\((?!\))", analyzed):
        facts.danger(_D.PATH_ACCESS, "a storage specification (LOCATION, formats or SerDe) points at a path")
    # Properties and partition values are literals printed before these markers, so they
    # are looked for in the whole section: a planted line break cannot move them away.
    if root.name in ("CreateNamespace", "SetNamespaceProperties") and "location=" in analyzed.lower():
        facts.danger(_D.PATH_ACCESS, "a namespace LOCATION points at a path")
    if root.name in ("AlterTableAddPartitionCommand", "AddPartitions") and "Some(" in analyzed:
        facts.danger(_D.PATH_ACCESS, "a partition LOCATION points at a path")
    if root.name == "InsertIntoHadoopFsRelationCommand":
        for match in _SAVE_MODE.finditer(analyzed):
            if not analyzed.startswith("`", match.end()):
                facts.danger(_D.PATH_ACCESS, "an insert into files that are not a catalog table")
                break


def _create_view(root: _Node, analyzed: str, facts: _Facts) -> tuple[StatementKind, str | None]:
    """CREATE VIEW: a local temp view is TEMP_VIEW; global temp and persistent views are DDL.

    The view's SQL text is printed raw, so a type token could be planted by it: exactly one
    of the three types may appear anywhere in the plan, and it must fit the name's parts.
    """
    parts = _first_identifier(root)
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
    table = _table(parts)
    if table is None or types != {"PersistedView"}:
        facts.danger(_D.UNANALYSABLE, "cannot tell what kind of view is being created")
        return _K.UNKNOWN, None
    facts.writes.add(table)
    return _K.DDL, None


def _drop_temp_view(root: _Node, facts: _Facts) -> tuple[StatementKind, str | None]:
    match = re.match(r"DropTempViewCommand (?P<name>[^,\s]+),", root.text)
    parts = _unquote_parts(match.group("name")) if match else None
    if not parts:
        facts.danger(_D.UNANALYSABLE, "cannot read the name of the view being dropped")
        return _K.UNKNOWN, None
    if len(parts) == 1:
        return _K.TEMP_VIEW, parts[0].lower()
    facts.writes.add(TableName.of("spark_catalog", ".".join(parts[:-1]), parts[-1]))
    return _K.DDL, None
