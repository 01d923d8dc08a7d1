"""Catalog inspection, filtered by policy: what you may not read, you do not see.

Listing drops tables the caller may not read. Describing first asks Spark to resolve the
name (``SELECT * FROM <name>``, analysed, never run), so views and temp views are checked
on their base tables, exactly as a query on them would be.
"""

from __future__ import annotations

from dataclasses import dataclass

import anyio

from spark_mcp.calls import note
from spark_mcp.errors import PolicyDenied
from spark_mcp.execution import Executor
from spark_mcp.identity import Principal
from spark_mcp.policy import decide, readable
from spark_mcp.sessions import Session
from spark_mcp.spark import catalog as spark_catalog
from spark_mcp.spark.catalog import ColumnEntry, TableEntry, parse_name, quote_name
from spark_mcp.statement import StatementFacts, StatementKind, TableName


@dataclass(frozen=True)
class TableDescription:
    name: str  # fully qualified as Spark resolved it
    table_type: str | None
    provider: str | None
    location: str | None
    comment: str | None
    columns: list[ColumnEntry]
    partition_columns: list[str]
    reads: list[str]  # base tables behind it (itself, unless it is a view)


class CatalogService:
    def __init__(self, executor: Executor) -> None:
        self._executor = executor

    async def _session(self, principal: Principal, session_id: str | None) -> Session:
        self._executor.require(principal, "catalog.read")
        return await self._executor.session(principal, session_id)

    async def list_catalogs(self, principal: Principal, session_id: str | None) -> tuple[list[str], str]:
        """The catalogs, and the session's current one."""
        session = await self._session(principal, session_id)
        catalogs = await anyio.to_thread.run_sync(spark_catalog.list_catalogs, session.connect)
        current = await anyio.to_thread.run_sync(spark_catalog.current_catalog, session.connect)
        return catalogs, current

    async def list_namespaces(self, principal: Principal, session_id: str | None, catalog: str | None) -> list[str]:
        if catalog is not None:
            parse_name(catalog, max_parts=1, what="catalog")
        session = await self._session(principal, session_id)
        return await anyio.to_thread.run_sync(spark_catalog.list_namespaces, session.connect, catalog)

    async def list_tables(
        self, principal: Principal, session_id: str | None, namespace: str | None, pattern: str | None
    ) -> tuple[list[TableEntry], int]:
        """Tables the caller may read, and how many others were hidden."""
        parts = parse_name(namespace, max_parts=2, what="namespace") if namespace is not None else None
        session = await self._session(principal, session_id)
        entries = await anyio.to_thread.run_sync(spark_catalog.list_tables, session.connect, parts, pattern)
        default_catalog = ""
        if any(e.catalog is None and not e.is_temporary for e in entries):  # only then is a round trip needed
            default_catalog = await anyio.to_thread.run_sync(spark_catalog.current_catalog, session.connect)
        visible: list[TableEntry] = []
        for entry in entries:
            # Temp views live in the caller's own session; querying one is checked on its base tables.
            if entry.is_temporary and not entry.namespace:
                visible.append(entry)
                continue
            name = TableName.of(entry.catalog or default_catalog, entry.namespace or "", entry.name)
            if readable(self._executor.policy, principal, name).allowed:
                visible.append(entry)
        hidden = len(entries) - len(visible)
        note(rows=len(visible))
        return visible, hidden

    async def describe(self, principal: Principal, session_id: str | None, table: str) -> TableDescription:
        parts = parse_name(table)
        session = await self._session(principal, session_id)
        reads = await self.check_readable(principal, session, parts)
        details = await anyio.to_thread.run_sync(spark_catalog.describe_table, session.connect, parts)
        info = details.info
        qualified = ".".join(p for p in (info.get("Catalog"), info.get("Database"), info.get("Table")) if p)
        return TableDescription(
            name=qualified or ".".join(parts),
            table_type=info.get("Type"),
            provider=info.get("Provider"),
            location=info.get("Location"),
            comment=info.get("Comment"),
            columns=details.columns,
            partition_columns=[c.name for c in details.columns if c.is_partition],
            reads=reads,
        )

    async def check_readable(self, principal: Principal, session: Session, parts: tuple[str, ...]) -> list[str]:
        """Resolve ``parts`` through Spark and check every base table behind it is readable."""
        analysis, _ = await self._executor.analyze(principal, session, f"SELECT * FROM {quote_name(parts)}")
        if analysis.error is not None:
            self._executor.refuse_broken(principal, analysis)
        facts = analysis.facts
        if facts.kind is not StatementKind.QUERY or facts.dangers:
            decision = decide(self._executor.policy, principal, "sql.admin")
            if not decision.allowed:
                raise PolicyDenied(
                    f"{'.'.join(parts)} is not a plain table or view (it reads {_dangers(facts)})", rule="default-deny"
                )
        for name in sorted(facts.reads):
            decision = readable(self._executor.policy, principal, name)
            if not decision.allowed:
                note(decision="denied", reason=decision.reason, rule=decision.rule)
                raise PolicyDenied(decision.reason, rule=decision.rule)
        note(decision="allowed", tables=sorted(str(t) for t in facts.reads))
        return sorted(str(t) for t in facts.reads)


def _dangers(facts: StatementFacts) -> str:
    return ", ".join(f"{d.kind.value} ({d.detail})" for d in facts.dangers) or "something unexpected"
