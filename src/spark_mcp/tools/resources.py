"""Full stored results as MCP resources: JSON, CSV and Arrow IPC (base64 blob)."""

from __future__ import annotations

import json

import anyio
import pyarrow as pa
from mcp.server import MCPServer
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError

from spark_mcp.calls import note
from spark_mcp.errors import InvalidInput, NotFound
from spark_mcp.preview import column_infos, to_json_rows
from spark_mcp.tools._base import app_of, caller
from spark_mcp.tools.queries import table_to_csv


def _table(ctx: Context, result_id: str) -> pa.Table:
    app, principal = app_of(ctx), caller()
    note(result_id=result_id)
    try:
        meta = app.results.meta(principal.id, result_id)
        note(session_id=meta.session_id, rows=meta.row_count)
        return app.results.table(principal.id, result_id)
    except (NotFound, InvalidInput) as exc:
        note(error_class=exc.code)
        raise ResourceNotFoundError(str(exc)) from None


def to_arrow_stream(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue().to_pybytes())


def register(server: MCPServer) -> None:
    # The suffixed templates come first: the bare one would also match "res_x.csv".
    @server.resource(
        "spark://results/{result_id}.csv",
        name="result-csv",
        title="Stored result as CSV",
        mime_type="text/csv",
    )
    async def result_csv(result_id: str, ctx: Context) -> str:
        """A whole stored result as CSV with a header row."""
        table = _table(ctx, result_id)
        return await anyio.to_thread.run_sync(table_to_csv, table)

    @server.resource(
        "spark://results/{result_id}.arrow",
        name="result-arrow",
        title="Stored result as Arrow IPC stream",
        mime_type="application/vnd.apache.arrow.stream",
    )
    async def result_arrow(result_id: str, ctx: Context) -> bytes:
        """A whole stored result as an Arrow IPC stream (exact types, Spark types in field metadata)."""
        table = _table(ctx, result_id)
        return await anyio.to_thread.run_sync(to_arrow_stream, table)

    @server.resource(
        "spark://results/{result_id}",
        name="result-json",
        title="Stored result as JSON",
        mime_type="application/json",
    )
    async def result_json(result_id: str, ctx: Context) -> str:
        """A whole stored result as JSON: {result_id, columns: [{name, type}], rows: [[...]]}."""
        if "." in result_id:
            raise ResourceError(f"unknown result format in {result_id!r}: use .csv, .arrow or no suffix for JSON")
        table = _table(ctx, result_id)

        def render() -> str:
            columns = [{"name": c.name, "type": c.type} for c in column_infos(table.schema)]
            return json.dumps(
                {"result_id": result_id, "columns": columns, "rows": to_json_rows(table)}, allow_nan=False
            )

        return await anyio.to_thread.run_sync(render)
