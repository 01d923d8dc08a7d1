"""Full stored results as MCP resources: JSON, CSV and Arrow IPC (base64 blob)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import anyio
from mcp.server import MCPServer
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError

from spark_mcp.calls import note
from spark_mcp.errors import InvalidInput, NotFound, SparkMcpError
from spark_mcp.preview import column_infos, to_json_rows
from spark_mcp.tools._base import app_of, caller
from spark_mcp.tools.queries import table_to_csv

if TYPE_CHECKING:
    # pyarrow (with numpy) is imported where it is used, not with this module: it loads with
    # pyspark, on the thread that prepares the first driver, not on the server's start-up path (issue 12).
    import pyarrow as pa


async def _table(ctx: Context, result_id: str) -> pa.Table:
    """The whole result: an on-demand one is completed first (within the caller's deadline)."""
    app, principal = app_of(ctx), caller()
    note(result_id=result_id)
    try:
        wait = app.governance.limits(principal).query_timeout_s
        meta = await app.materializer.ensure(principal, result_id, rows=None, wait_s=wait)
    except (NotFound, InvalidInput) as exc:
        note(error_class=exc.code)
        raise ResourceNotFoundError(str(exc)) from None
    except SparkMcpError as exc:
        note(error_class=exc.code)
        raise ResourceError(f"{exc.code}: {exc}") from None
    note(session_id=meta.session_id, rows=meta.row_count)
    if not meta.complete:
        note(error_class="incomplete")
        raise ResourceError(
            f"result {result_id} is {meta.state.value}: only its first {meta.row_count} rows exist so far"
            + (f" ({meta.error})" if meta.error else "")
            + "; read it again, or page with fetch_rows"
        )
    return app.results.table(principal.id, result_id)


def to_arrow_stream(table: pa.Table) -> bytes:
    import pyarrow as pa

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
        table = await _table(ctx, result_id)
        return await anyio.to_thread.run_sync(table_to_csv, table)

    @server.resource(
        "spark://results/{result_id}.arrow",
        name="result-arrow",
        title="Stored result as Arrow IPC stream",
        mime_type="application/vnd.apache.arrow.stream",
    )
    async def result_arrow(result_id: str, ctx: Context) -> bytes:
        """A whole stored result as an Arrow IPC stream (exact types, Spark types in field metadata)."""
        table = await _table(ctx, result_id)
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
        table = await _table(ctx, result_id)

        def render() -> str:
            columns = [{"name": c.name, "type": c.type} for c in column_infos(table.schema)]
            return json.dumps(
                {"result_id": result_id, "columns": columns, "rows": to_json_rows(table)}, allow_nan=False
            )

        return await anyio.to_thread.run_sync(render)
