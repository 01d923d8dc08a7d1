"""Catalog inspection, filtered by policy: what you may not read, you do not see.

Every check goes through ``governance``: listings drop catalogs, namespaces and tables in
which the caller may read nothing; describing first asks Spark to resolve the name
(``SELECT * FROM <name>``, analysed, never run), so views and temp views are judged on
their base tables exactly as a query on them would be, under ``catalog.read``.
"""

from __future__ import annotations

from dataclasses import dataclass

import anyio

from spark_mcp.calls import note
from spark_mcp.execution import Executor
from spark_mcp.governance import Governance
from spark_mcp.identity import Principal
from spark_mcp.session import Session
from spark_mcp.spark import catalog as spark_catalog
from spark_mcp.spark.catalog import ColumnEntry, TableEntry, parse_name, quote_name
from spark_mcp.statement import TableName


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
        self._governance: Governance = executor.governance

    async def _session(self, principal: Principal, session_id: str | None) -> Session:
        self._governance.require(principal, "catalog.read")
        return await self._executor.session(principal, session_id)

    async def list_catalogs(self, principal: Principal, session_id: str | None) -> tuple[list[str], str, int]:
        """The catalogs the caller may read something in, the session's current one, how many were hidden."""
        session = await self._session(principal, session_id)
        catalogs = await anyio.to_thread.run_sync(spark_catalog.list_catalogs, session.connect)
        current = await anyio.to_thread.run_sync(spark_catalog.current_catalog, session.connect)
        visible = [c for c in catalogs if self._governance.visible(principal, c)]
        note(rows=len(visible))
        return visible, current, len(catalogs) - len(visible)

    async def list_namespaces(
        self, principal: Principal, session_id: str | None, catalog: str | None
    ) -> tuple[list[str], int]:
        """The namespaces the caller may read something in, and how many others were hidden."""
        if catalog is not None:
            parse_name(catalog, max_parts=1, what="catalog")
        session = await self._session(principal, session_id)
        names = await anyio.to_thread.run_sync(spark_catalog.list_namespaces, session.connect, catalog)
        where = (
            catalog
            if catalog is not None
            else await anyio.to_thread.run_sync(spark_catalog.current_catalog, session.connect)
        )
        visible = [n for n in names if self._governance.visible(principal, where, n)]
        note(rows=len(visible))
        return visible, len(names) - len(visible)

    async def list_tables(
        self, principal: Principal, session_id: str | None, namespace: str | None, pattern: str | None
    ) -> tuple[list[TableEntry], int]:
        """Tables the caller may read (and its session's temp views), and how many others were hidden."""
        parts = parse_name(namespace, max_parts=2, what="namespace") if namespace is not None else None
        session = await self._session(principal, session_id)
        entries = await anyio.to_thread.run_sync(spark_catalog.list_tables, session.connect, parts, pattern)
        default_catalog = ""
        if any(e.catalog is None and not e.is_temporary for e in entries):  # only then is a round trip needed
            default_catalog = await anyio.to_thread.run_sync(spark_catalog.current_catalog, session.connect)
        visible: list[TableEntry] = []
        for entry in entries:
            # Temp views live in the caller's own session; querying one is judged on its base tables.
            if entry.is_temporary and not entry.namespace:
                visible.append(entry)
                continue
            name = TableName.of(entry.catalog or default_catalog, entry.namespace or "", entry.name)
            if self._governance.readable(principal, name):
                visible.append(entry)
        note(rows=len(visible))
        return visible, len(entries) - len(visible)

    async def describe(self, principal: Principal, session_id: str | None, table: str) -> TableDescription:
        parts = parse_name(table)
        session = await self._session(principal, session_id)
        # The name must resolve to the same table for the check and for the description.
        lease = await self._executor.lease(principal, session)
        try:
            reads = await self.check_readable(principal, session, parts)
            details = await anyio.to_thread.run_sync(spark_catalog.describe_table, session.connect, parts)
        finally:
            lease.release()
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
        """Resolve ``parts`` through Spark and have governance judge reading every base table behind it."""
        verdict = await self._executor.analyze(
            principal, session, f"SELECT * FROM {quote_name(parts)}", action="catalog.read"
        )
        verdict.enforce()
        return sorted(str(t) for t in verdict.facts.reads)
