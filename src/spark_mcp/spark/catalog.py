"""Catalogs, namespaces, tables and columns, as Spark reports them (no policy here)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from spark_mcp.errors import InvalidInput
from spark_mcp.spark.connect import ConnectSession
from spark_mcp.spark.errors import translate

_PART = re.compile(r"`((?:[^`]|``)+)`|([^.`\s]+)")


def parse_name(text: str, *, max_parts: int = 3, what: str = "table") -> tuple[str, ...]:
    """Split ``a.b.c`` (parts may be `backtick` quoted) into parts, rejecting anything odd."""
    if not isinstance(text, str) or not text.strip() or len(text) > 512:
        raise InvalidInput(f"{what} name must be a non-empty string such as 'tpch.lineitem'")
    text = text.strip()
    parts: list[str] = []
    pos = 0
    while True:
        match = _PART.match(text, pos)
        if match is None:
            raise InvalidInput(f"cannot read {what} name {text!r}: use {_form(max_parts)}")
        part = match.group(1).replace("``", "`") if match.group(1) is not None else match.group(2)
        if any(ord(c) < 32 for c in part):
            raise InvalidInput(f"{what} name {text!r} contains control characters")
        parts.append(part)
        pos = match.end()
        if pos == len(text):
            break
        if text[pos] != ".":
            raise InvalidInput(f"cannot read {what} name {text!r}: use {_form(max_parts)}")
        pos += 1
    if len(parts) > max_parts:
        raise InvalidInput(f"{what} name {text!r} has {len(parts)} parts: use {_form(max_parts)}")
    return tuple(parts)


def _form(max_parts: int) -> str:
    return {1: "name", 2: "namespace.name or name", 3: "table, namespace.table or catalog.namespace.table"}.get(
        max_parts, "dotted parts"
    )


def quote_name(parts: tuple[str, ...]) -> str:
    return ".".join("`" + p.replace("`", "``") + "`" for p in parts)


_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def display_name(parts: tuple[str, ...]) -> str:
    """A name to show and paste into SQL: parts quoted only where they need it."""
    return ".".join(p if _PLAIN.fullmatch(p) else "`" + p.replace("`", "``") + "`" for p in parts)


@dataclass(frozen=True)
class TableEntry:
    catalog: str | None
    namespace: str | None
    name: str
    table_type: str
    is_temporary: bool
    description: str | None


@dataclass(frozen=True)
class ColumnEntry:
    name: str
    type: str
    nullable: bool
    comment: str | None
    is_partition: bool


@dataclass(frozen=True)
class TableDetails:
    columns: list[ColumnEntry]
    info: dict[str, str] = field(default_factory=dict)  # "# Detailed Table Information" rows


def list_catalogs(session: ConnectSession) -> list[str]:
    try:
        return sorted(str(c.name) for c in session.spark.catalog.listCatalogs())
    except Exception as exc:
        raise translate(exc) from None


def current_catalog(session: ConnectSession) -> str:
    try:
        return str(session.spark.catalog.currentCatalog())
    except Exception as exc:
        raise translate(exc) from None


def list_namespaces(session: ConnectSession, catalog: str | None) -> list[str]:
    sql = "SHOW NAMESPACES" + (f" IN {quote_name((catalog,))}" if catalog else "")
    try:
        return sorted(str(row[0]) for row in session.spark.sql(sql).collect())
    except Exception as exc:
        raise translate(exc) from None


def list_tables(session: ConnectSession, namespace: tuple[str, ...] | None, pattern: str | None) -> list[TableEntry]:
    try:
        db = ".".join(namespace) if namespace else None
        tables = session.spark.catalog.listTables(db, pattern)
    except Exception as exc:
        raise translate(exc) from None
    return [
        TableEntry(
            catalog=t.catalog,
            namespace=".".join(t.namespace) if t.namespace else None,
            name=str(t.name),
            table_type=str(t.tableType),
            is_temporary=bool(t.isTemporary),
            description=t.description,
        )
        for t in tables
    ]


def describe_table(session: ConnectSession, parts: tuple[str, ...]) -> TableDetails:
    name = quote_name(parts)
    try:
        columns = [
            ColumnEntry(
                name=str(c.name),
                type=str(c.dataType),
                nullable=bool(c.nullable),
                comment=c.description or None,
                is_partition=bool(c.isPartition),
            )
            for c in session.spark.catalog.listColumns(".".join(parts) if len(parts) < 3 else name)
        ]
        if not columns:  # Sail lists no columns for a table whose schema comes from its files
            columns = [
                ColumnEntry(
                    name=f.name, type=f.dataType.simpleString(), nullable=f.nullable, comment=None, is_partition=False
                )
                for f in session.spark.table(name).schema.fields
            ]
        rows = session.spark.sql(f"DESCRIBE TABLE EXTENDED {name}").collect()
    except Exception as exc:
        raise translate(exc) from None
    info: dict[str, str] = {}
    in_details = False
    for row in rows:
        key, value = str(row[0] or "").strip(), row[1]
        if key.startswith("# Detailed Table Information"):
            in_details = True
            continue
        if in_details and key and not key.startswith("#"):
            info[key] = "" if value is None else str(value)
    return TableDetails(columns=columns, info=info)
