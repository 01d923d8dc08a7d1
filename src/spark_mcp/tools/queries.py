"""Tools that run statements and follow their jobs and results."""

from __future__ import annotations

import io
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, Literal

import anyio
from mcp.server import MCPServer
from mcp.server.mcpserver import Context
from mcp.types import CallToolResult, TextContent
from pydantic import Field

from spark_mcp.app import App
from spark_mcp.calls import note
from spark_mcp.jobs import Job, JobState
from spark_mcp.preview import JSONValue, render_table, to_json_rows
from spark_mcp.tools._base import app_of, caller, clamp_rows, guarded, hints, iso, reply
from spark_mcp.tools.models import JobInfo, JobList, QueryReply, RowsPage
from spark_mcp.tools.render import error_out, fit_json_rows, job_reply, progress_words, schema_columns, state_notes

if TYPE_CHECKING:
    # pyarrow (with numpy) is imported where it is used, not with this module: it loads with
    # pyspark, on the thread that prepares the first driver, not on the server's start-up path (issue 12).
    import pyarrow as pa

SessionId = str | None  # the server's instructions say it once: omit it for your default session
MaxRows = Annotated[int | None, Field(ge=1, le=100_000, description="rows in the reply (default 50)")]
WaitS = Annotated[
    float | None,
    Field(ge=0, le=3600, description="seconds before replying with a job handle (default 30)"),
]


async def wait_for_job(app: App, ctx: Context, job: Job, wait_s: float) -> None:
    """Wait for the job, forwarding Spark's progress; a cancelled request stops the job in Spark."""
    try:
        await app.jobs.wait(job, wait_s, progress_reporter(ctx))
    except anyio.get_cancelled_exc_class():
        app.executor.cancel_on_exit(job)
        raise


async def reply_when_done(
    app: App,
    ctx: Context,
    job: Job,
    *,
    wait_s: float | None,
    rows: int,
    summary: bool,
    notes: list[str],
) -> CallToolResult:
    """Wait for a statement the caller just started; its result, its handle, or its error."""
    await wait_for_job(app, ctx, job, app.config.limits.default_wait_s if wait_s is None else wait_s)
    if job.state.terminal and job.state is not JobState.SUCCEEDED and job.error is not None:
        raise job.error  # a statement that failed while the caller waited is the call's error
    limits = app.governance.limits(caller())
    return job_reply(app, job, max_rows=rows, max_chars=limits.max_chars, summary=summary, notes=notes)


def job_info(job: Job) -> JobInfo:
    return JobInfo(
        job_id=job.id,
        state=job.state.value,
        tool=job.tool,
        session_id=job.session_id,
        statement=job.statement if len(job.statement) <= 500 else job.statement[:500] + "…",
        created_at=iso(job.created_at),
        elapsed_ms=job.elapsed_ms,
        result_id=job.result.result_id if job.result else None,
        error=error_out(job.error) if job.error else None,
    )


def table_to_csv(table: pa.Table) -> str:
    import pyarrow.csv as pacsv

    buffer = io.BytesIO()
    pacsv.write_csv(table, buffer)
    return buffer.getvalue().decode()


def register(server: MCPServer) -> None:
    @server.tool(
        title="Run SQL",
        annotations=hints(read_only=False, destructive=True),
    )
    @guarded
    async def run_sql(
        ctx: Context,
        sql: Annotated[str, Field(min_length=1, max_length=200_000, description="one Spark SQL statement")],
        session_id: SessionId = None,
        max_rows: MaxRows = None,
        wait_s: WaitS = None,
        summary: Annotated[bool, Field(description="per-column statistics instead of rows")] = False,
    ) -> Annotated[CallToolResult, QueryReply]:
        """Run one Spark SQL statement (no scripts); reply with a bounded preview and a result_id.

        Checked by Spark's analyzer and your policy before anything runs. Page the result
        with fetch_rows. Still running after wait_s: you get a job_id for get_job / cancel_job.
        """
        app, principal = app_of(ctx), caller()
        limits = app.governance.limits(principal)
        notes: list[str] = []
        rows = clamp_rows(app, max_rows, limits.max_rows, notes)
        preview = None if summary else rows  # a summary reads every row; a preview only what it shows
        job = await app.executor.run_sql(principal, session_id, sql, tool="run_sql", preview=preview)
        return await reply_when_done(app, ctx, job, wait_s=wait_s, rows=rows, summary=summary, notes=notes)

    @server.tool(
        title="Get job",
        annotations=hints(read_only=True, idempotent=True),
    )
    @guarded
    async def get_job(
        ctx: Context,
        job_id: str,
        wait_s: Annotated[float, Field(ge=0, le=3600)] = 10,
        max_rows: MaxRows = None,
        summary: bool = False,
    ) -> Annotated[CallToolResult, QueryReply]:
        """A job's state and progress, waiting up to wait_s; once finished, its result as run_sql gives it."""
        app, principal = app_of(ctx), caller()
        limits = app.governance.limits(principal)
        notes: list[str] = []
        rows = clamp_rows(app, max_rows, limits.max_rows, notes)
        job = app.jobs.get(principal.id, job_id)
        note(session_id=job.session_id, job_id=job.id)
        # Waiting here must not cancel the job when this request is cancelled: the caller may ask again.
        await app.jobs.wait(job, wait_s, progress_reporter(ctx))
        return job_reply(app, job, max_rows=rows, max_chars=limits.max_chars, summary=summary, notes=notes)

    @server.tool(
        title="Cancel job",
        annotations=hints(read_only=False, idempotent=True),
    )
    @guarded
    async def cancel_job(ctx: Context, job_id: str) -> Annotated[CallToolResult, JobInfo]:
        """Stop a job: its work is interrupted in Spark; the reply says how it ended."""
        app, principal = app_of(ctx), caller()
        job = app.jobs.get(principal.id, job_id)
        note(session_id=job.session_id, job_id=job.id)
        if job.state.terminal:
            said = f"Job {job.id} had already ended ({job.state.value}); nothing to cancel."
        else:
            await app.jobs.cancel(job)
            said = f"Job {job.id} is {job.state.value}: interrupted {job.interrupted_operations} Spark operation(s)."
        return reply(job_info(job), said)

    @server.tool(
        title="List jobs",
        annotations=hints(read_only=True, idempotent=True),
    )
    @guarded
    async def list_jobs(
        ctx: Context, limit: Annotated[int, Field(ge=1, le=200, description="most recent first")] = 20
    ) -> Annotated[CallToolResult, JobList]:
        """Your recent jobs, newest first."""
        app, principal = app_of(ctx), caller()
        jobs = JobList(jobs=[job_info(j) for j in app.jobs.list_for(principal.id)[:limit]])
        lines = [
            f"{j.job_id} {j.state} {j.elapsed_ms} ms {j.tool}"
            + (f" -> {j.result_id}" if j.result_id else "")
            + (f" ({j.error.code})" if j.error else "")
            + f": {j.statement[:80]}"
            for j in jobs.jobs
        ]
        return reply(jobs, "\n".join(lines) or "no jobs yet")

    @server.tool(
        title="Fetch rows",
        annotations=hints(read_only=True, idempotent=True),
    )
    @guarded
    async def fetch_rows(
        ctx: Context,
        result_id: str,
        offset: Annotated[int, Field(ge=0, description="first row, from 0")] = 0,
        limit: Annotated[int | None, Field(ge=1, le=100_000, description="rows (default 50)")] = None,
        format: Annotated[
            Literal["table", "json", "csv"], Field(description="table: compact text, json: exact values, or csv")
        ] = "table",
        wait_s: WaitS = None,
    ) -> Annotated[CallToolResult, RowsPage]:
        """A page of a stored result. Past a preview, the first call computes the rest (waits up to wait_s)."""
        app, principal = app_of(ctx), caller()
        limits = app.governance.limits(principal)
        notes: list[str] = []
        limit = clamp_rows(app, limit, limits.max_rows, notes)
        wait = app.config.limits.default_wait_s if wait_s is None else wait_s
        meta = await app.materializer.ensure(
            principal, result_id, rows=offset + limit, wait_s=wait, on_change=progress_reporter(ctx), offset=offset
        )
        note(result_id=result_id, session_id=meta.session_id)
        page = await anyio.to_thread.run_sync(app.results.page, principal.id, result_id, offset, limit)
        total = meta.row_count if meta.complete else None
        text: str | None = None
        rows: list[list[JSONValue]] | None = None
        if format == "json":
            all_rows = to_json_rows(page)
            count = fit_json_rows(all_rows, limits.max_chars)
            rows = all_rows[:count]
        elif format == "csv":
            count, text = _csv_within(page, limits.max_chars)
        else:
            more = offset + page.num_rows < meta.row_count or meta.more_rows
            rendered = render_table(page, max_chars=limits.max_chars, more_rows=more, first_row=offset)
            count, text = rendered.rows_shown, rendered.text
        notes.extend(state_notes(meta))
        if count < page.num_rows:
            notes.append(f"the page stopped at {count} rows to stay within {limits.max_chars:,} characters")
        if total is not None and offset >= total and total > 0:
            notes.append(f"offset {offset} is past the end: the result has {total} rows")
        stored_end = offset + count < meta.row_count
        next_offset = offset + count if stored_end or not meta.complete else None
        note(rows=count)
        reply = RowsPage(
            result_id=result_id,
            format=format,
            offset=offset,
            row_count=count,
            total_rows=total,
            result_state=meta.state.value,
            next_offset=next_offset,
            columns=schema_columns(page.schema),
            rows=rows,
            text=text,
            notes=notes,
        )
        of = f"{total:,}" if total is not None else f"{meta.row_count:,} so far ({meta.state.value})"
        summary = f"rows {offset + 1}-{offset + count} of {of}" if count else f"no rows at offset {offset} of {of}"
        body = text if text is not None else ""
        return CallToolResult(
            content=[TextContent(type="text", text=f"{summary}" + (f"\n{body}" if body else ""))],
            structured_content=reply.model_dump(mode="json"),
        )


def progress_reporter(ctx: Context) -> Callable[[Job], Awaitable[None]]:
    """Forward a job's progress as MCP progress notifications (tasks done only ever grow)."""
    last_done = -1

    async def on_change(job: Job) -> None:
        nonlocal last_done
        if job.progress.tasks_done > last_done:
            last_done = job.progress.tasks_done
            await ctx.report_progress(job.progress.tasks_done, job.progress.tasks or None, progress_words(job.progress))

    return on_change


def _csv_within(page: pa.Table, max_chars: int) -> tuple[int, str]:
    """The longest leading slice of ``page`` whose CSV fits in ``max_chars``."""
    count = page.num_rows
    text = table_to_csv(page)
    while len(text) > max_chars and count > 0:
        count = max(0, int(count * max_chars / len(text)) - 1)
        text = table_to_csv(page.slice(0, count))
    return count, text
