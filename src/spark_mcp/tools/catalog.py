"""Catalog tools: what data there is, filtered by what the caller may read."""

from __future__ import annotations

from typing import Annotated

from mcp.server import MCPServer
from mcp.server.mcpserver import Context
from mcp.types import CallToolResult
from pydantic import Field

from spark_mcp.spark.catalog import display_name, parse_name, quote_name
from spark_mcp.tools._base import app_of, caller, clamp_rows, guarded, hints, reply
from spark_mcp.tools.models import (
    CatalogList,
    ColumnDetail,
    NamespaceList,
    QueryReply,
    TableDescriptionOut,
    TableList,
    TableOut,
    TablePreview,
)
from spark_mcp.tools.queries import SessionId, reply_when_done

_READ_ONLY = hints(read_only=True, idempotent=True)
TableArg = Annotated[str, Field(description="table, namespace.table or catalog.namespace.table")]


def register(server: MCPServer) -> None:
    @server.tool(title="List catalogs", annotations=_READ_ONLY)
    @guarded
    async def list_catalogs(ctx: Context, session_id: SessionId = None) -> Annotated[CallToolResult, CatalogList]:
        """The catalogs Spark knows (spark_catalog is the default)."""
        app, principal = app_of(ctx), caller()
        catalogs, current, hidden = await app.catalog.list_catalogs(principal, session_id)
        text = f"{', '.join(catalogs) or 'no catalogs you may read'} (current: {current})"
        if hidden:
            text += f"\n({hidden} more not shown: your policy lets you read nothing in them)"
        return reply(CatalogList(catalogs=catalogs, current_catalog=current, hidden=hidden), text)

    @server.tool(title="List namespaces", annotations=_READ_ONLY)
    @guarded
    async def list_namespaces(
        ctx: Context,
        catalog: Annotated[str | None, Field(description="a catalog; omit for the current one")] = None,
        session_id: SessionId = None,
    ) -> Annotated[CallToolResult, NamespaceList]:
        """The namespaces (databases) in a catalog."""
        app, principal = app_of(ctx), caller()
        names, hidden = await app.catalog.list_namespaces(principal, session_id, catalog)
        text = ", ".join(names) or "no namespaces you may read"
        if hidden:
            text += f"\n({hidden} more not shown: your policy lets you read nothing in them)"
        return reply(NamespaceList(catalog=catalog, namespaces=names, hidden=hidden), text)

    @server.tool(title="List tables", annotations=_READ_ONLY)
    @guarded
    async def list_tables(
        ctx: Context,
        namespace: Annotated[str | None, Field(description="omit for the current one")] = None,
        pattern: Annotated[str | None, Field(max_length=200, description="e.g. 'line*' or 'orders|parts'")] = None,
        session_id: SessionId = None,
    ) -> Annotated[CallToolResult, TableList]:
        """Tables and views you may read (and your session's temp views) in a namespace."""
        app, principal = app_of(ctx), caller()
        entries, hidden = await app.catalog.list_tables(principal, session_id, namespace, pattern)
        tables = [
            TableOut(
                name=display_name(tuple(p for p in (e.namespace, e.name) if p)),
                catalog=e.catalog,
                namespace=e.namespace,
                type=e.table_type,
                is_temporary=e.is_temporary,
                description=e.description,
            )
            for e in entries
        ]
        lines = [
            f"{t.name} ({'temp view' if t.is_temporary else t.type.lower()})"
            + (f": {t.description}" if t.description else "")
            for t in tables
        ]
        if hidden:
            lines.append(f"({hidden} more not shown: your policy does not let you read them)")
        return reply(TableList(tables=tables, hidden=hidden), "\n".join(lines) or "no tables")

    @server.tool(title="Describe table", annotations=_READ_ONLY)
    @guarded
    async def describe_table(
        ctx: Context, table: TableArg, session_id: SessionId = None
    ) -> Annotated[CallToolResult, TableDescriptionOut]:
        """Columns (type, nullability, comment), partitioning, provider and location of a table or view."""
        app, principal = app_of(ctx), caller()
        described = await app.catalog.describe(principal, session_id, table)
        out = TableDescriptionOut(
            table=described.name,
            type=described.table_type,
            provider=described.provider,
            location=described.location,
            comment=described.comment,
            columns=[
                ColumnDetail(name=c.name, type=c.type, nullable=c.nullable, comment=c.comment, partition=c.is_partition)
                for c in described.columns
            ],
            partition_columns=described.partition_columns,
            base_tables=described.reads,
        )
        kind = " ".join(p for p in (out.type, out.provider) if p)
        lines = [f"{out.table} ({kind})" if kind else out.table]
        if out.location:
            lines.append(f"location: {out.location}")
        if out.comment:
            lines.append(f"comment: {out.comment}")
        for c in out.columns:
            flags = ("" if c.nullable else " not null") + (" partition" if c.partition else "")
            lines.append(f"  {c.name} {c.type}{flags}" + (f" -- {c.comment}" if c.comment else ""))
        if out.base_tables != [out.table]:
            lines.append(f"reads: {', '.join(out.base_tables)}")
        return reply(out, "\n".join(lines))

    @server.tool(title="Preview table", annotations=_READ_ONLY)
    @guarded
    async def preview_table(
        ctx: Context,
        table: TableArg,
        limit: Annotated[int, Field(ge=1, le=100_000, description="rows to show")] = 10,
        session_id: SessionId = None,
    ) -> Annotated[CallToolResult, TablePreview]:
        """The first rows of a table or view, with exact values (checked by policy like any query)."""
        app, principal = app_of(ctx), caller()
        limits = app.governance.limits(principal)
        notes: list[str] = []
        rows = clamp_rows(app, limit, limits.max_rows, notes)
        parts = parse_name(table)
        sql = f"SELECT * FROM {quote_name(parts)} LIMIT {rows}"
        job = await app.executor.run_sql(principal, session_id, sql, tool="preview_table", preview=rows)
        # A LIMIT query is short: wait for it (its deadline bounds the wait) rather than hand out a job.
        done = await reply_when_done(
            app, ctx, job, wait_s=limits.query_timeout_s, rows=rows, summary=False, notes=notes
        )
        result = QueryReply.model_validate(done.structured_content)
        assert result.result_id is not None
        preview = TablePreview(
            table=display_name(parts),
            columns=result.columns,
            rows=result.rows,
            row_count=result.row_count,
            truncated=result.truncated,
            result_id=result.result_id,
            notes=result.notes,
        )
        done.structured_content = preview.model_dump(mode="json")
        return done
