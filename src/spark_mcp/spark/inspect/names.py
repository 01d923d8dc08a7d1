"""Name resolution: the tables, views and catalogs a plan's nodes print, as ``TableName``.

Spark quotes a name part only when it needs to, prints session-catalog relations fully
qualified, and prints every other v2 catalog as ``Class@hash``; that catalog's name then
comes from the statement as written (the parsed plan), and only when it cannot be any other.
A name that cannot be read whole is unreadable, never read as a shorter name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from spark_mcp.spark.inspect.facts import Facts
from spark_mcp.spark.inspect.tree import Node, node_name
from spark_mcp.statement import SESSION_CATALOG, DangerKind, TableName

BT_PART = r"`(?:[^`]|``)*`"
_BT_ONE = re.compile(BT_PART)
BT_MULTI = re.compile(rf"{BT_PART}(?:\.{BT_PART})*")
_PLAIN_PART = re.compile(r"[A-Za-z0-9_$]+")
_ANY_PART = rf"(?:{BT_PART}|[A-Za-z0-9_$]+)"
_ANY_MULTI = re.compile(rf"{_ANY_PART}(?:\.{_ANY_PART})*")
# No word boundary on the left: planted text glued to a real name must not hide it.
BT_QUALIFIED = re.compile(rf"(?<!`){BT_PART}(?:\.{BT_PART}){{2,}}")
_VIEW_NAME = re.compile(rf"^View \((?P<name>{BT_PART}(?:\.{BT_PART})*), \[")
_SESSION_CATALOG = re.compile(r"V2SessionCatalog\((?P<name>[^)]*)\)")
_OBJECT_CATALOG = re.compile(r"(?P<object>[A-Za-z_][\w.$]*@[0-9a-f]+)")
_PARSED_TARGET_LIST = re.compile(
    r"'Unresolved(?P<what>Identifier|Table|TableOrView|View|Namespace|Relation)\b \[(?P<parts>[^\]\n]*)\]"
)
# What a failing statement names as a table: a relation to read, or the table of a command
# (SHOW CREATE TABLE, DESCRIBE, ALTER TABLE ... print 'UnresolvedTable(OrView) [parts]).
_PARSED_RELATION = re.compile(r"'Unresolved(?:Relation|Table|TableOrView|View) \[(?P<parts>[^\]\n]*)\]")


def written_table(parts: list[str]) -> TableName | None:
    """The table a qualified name as written would be: ``ns.t`` in the session catalog,
    ``cat.ns.t`` (or deeper) in ``cat``; None for a bare name, which the session resolves
    (its temp views, its current namespace), or for an empty part."""
    if len(parts) == 2 and all(parts):
        return TableName.of(SESSION_CATALOG, parts[0], parts[1])
    return table_of(parts)


def unresolved_tables(parsed: str) -> set[TableName]:
    """The qualified tables a parsed plan names (``'UnresolvedRelation [hr, nope]``), whether
    or not they exist; a part that cannot be read whole names nothing here."""
    found: set[TableName] = set()
    for match in _PARSED_RELATION.finditer(parsed):
        parts = [p.strip() for p in match.group("parts").split(",")]
        table = written_table(parts)
        if table is not None:
            found.add(table)
    return found


def unquote_parts(text: str) -> list[str] | None:
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


def table_of(parts: list[str]) -> TableName | None:
    """A table from catalog, namespace parts and name; None for fewer than three parts."""
    if len(parts) < 3 or any(not p for p in parts):
        return None
    return TableName.of(parts[0], ".".join(parts[1:-1]), parts[-1])


def first_identifier(node: Node) -> list[str] | None:
    """The quoted identifier printed right after the node's name: no literal can precede it."""
    head = node.head
    start = head.find(" ")
    if start < 0:
        return None
    match = BT_MULTI.match(head, start + 1)
    if not match or head[match.end() : match.end() + 1] not in (",", ""):
        return None  # cut short (a name with a line break): unreadable, never a shorter name
    return unquote_parts(match.group(0))


def view_name(node: Node) -> list[str] | None:
    """The name a ``View (`name`, [...])`` node prints."""
    match = _VIEW_NAME.match(node.text)
    return unquote_parts(match.group("name")) if match else None


def in_view_position(analyzed: str, start: int) -> bool:
    """Whether the name at ``start`` is the one a ``View (`name`, [...])`` node prints."""
    line_start = analyzed.rfind("\n", 0, start) + 1
    return re.fullmatch(r"(?:(?:   |:  )*(?:\+- |:- ))?View \(", analyzed[line_start:start]) is not None


def relation_name(node: Node) -> tuple[str, TableName | None]:
    """('table', name), ('path', None) or ('unreadable', None) for a relation node."""
    head = node.head
    if node.name == "Relation":
        match = re.match(r"Relation (?P<name>[^\s\[]*)\[", head)
        if not match:
            return "unreadable", None
        if not match.group("name"):
            return "path", None
        table = table_of(match.group("name").split("."))
        return ("table", table) if table else ("unreadable", None)
    if node.name == "RelationV2":
        # RelationV2[columns] name: the name ends the line (column names may hold "] ").
        cut = head.rfind("] ")
        name = head[cut + 2 :].strip() if cut >= 0 else ""
        parts = unquote_parts(name) if _ANY_MULTI.fullmatch(name) else None
        table = table_of(parts) if parts else None
        return ("table", table) if table else ("unreadable", None)
    if node.name == "HiveTableRelation":
        match = BT_MULTI.match(head, len("HiveTableRelation ["))
        parts = unquote_parts(match.group(0)) if match and head.startswith("HiveTableRelation [") else None
        table = table_of(parts) if parts else None
        return ("table", table) if table else ("unreadable", None)
    return "none", None


def relation_arg(node: Node) -> tuple[str, TableName | None]:
    """The relation a v2 write prints as its first argument (``AppendData RelationV2[...] t``)."""
    rest = node.head[len(node.name) :].lstrip()
    name = node_name(rest)
    if name not in ("Relation", "RelationV2"):
        return "unreadable", None
    if name == "RelationV2":
        # RelationV2[columns] name, then the write's other arguments after ", ".
        match = re.match(rf"RelationV2\[[^\]]*\] (?P<name>{_ANY_MULTI.pattern}),", rest)
        parts = unquote_parts(match.group("name")) if match else None
        table = table_of(parts) if parts else None
        return ("table", table) if table else ("unreadable", None)
    return relation_name(Node(node.index, node.depth, name, rest))


@dataclass
class Catalogs:
    """Catalog names for catalogs Spark prints as ``Class@hash`` (every v2 catalog but the session one)."""

    parsed: str
    facts: Facts
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
                    DangerKind.UNANALYSABLE,
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


def resolved_mentions(node: Node, catalogs: Catalogs) -> tuple[list[TableName], list[str]]:
    """Tables (and namespace wildcards) named by a Resolved* node, and temp view names."""
    head = node.head
    args = head[len(node.name) :].strip()
    if node.name == "ResolvedTempView":
        name = args.split(",", 1)[0].strip()
        return [], [name.lower()] if name else []
    match = _SESSION_CATALOG.match(args) or _OBJECT_CATALOG.match(args)
    if not match:
        catalogs.facts.danger(DangerKind.UNANALYSABLE, f"cannot read the catalog of {node.name}: {head[:120]}")
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
            catalogs.facts.danger(DangerKind.UNANALYSABLE, f"cannot read the namespace in {node.name}: {head[:120]}")
            return [], []
        catalog = catalogs.name(printed, [p.lower() for p in namespace])
        if catalog is None:
            return [], []
        return [TableName.of(catalog, ".".join(namespace) or "*", "*")], []
    ident = re.match(r", (?P<ident>(?:`(?:[^`]|``)*`|[^,`\s])+)(?:,|$)", tail)
    parts = unquote_parts(ident.group("ident")) if ident else None
    if not parts or len(parts) < 2:
        catalogs.facts.danger(DangerKind.UNANALYSABLE, f"cannot read the name in {node.name}: {head[:120]}")
        return [], []
    catalog = catalogs.name(printed, [p.lower() for p in parts])
    if catalog is None:
        return [], []
    table = table_of([catalog, *parts])
    return ([table] if table else []), []
