"""Jobs and stored results rendered as tool replies: compact text plus exact structured rows.

The text is what an LLM reads; the structured content carries exact values. Both stay
within the reply budget (``max_rows`` rows and ``limits.max_chars`` characters each), and
a reply that a cap cut says so, in ``truncated``, in ``notes`` and in its text.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from mcp.types import CallToolResult, ResourceLink, TextContent

from spark_mcp.app import App
from spark_mcp.calls import note
from spark_mcp.errors import SparkError, SparkMcpError
from spark_mcp.jobs import Job, JobState
from spark_mcp.preview import column_infos, render_summary, render_table, summarize, to_json_rows
from spark_mcp.results import ResultMeta, ResultState, take
from spark_mcp.spark.runner import Progress
from spark_mcp.tools._base import error_text
from spark_mcp.tools.models import (
    ColumnOut,
    ErrorOut,
    ProgressOut,
    QueryReply,
)

if TYPE_CHECKING:
    # pyarrow (with numpy) is imported where it is used, not with this module: it loads with
    # pyspark, on the thread that prepares the first driver, not on the server's start-up path (issue 12).
    import pyarrow as pa


def result_uri(result_id: str) -> str:
    return f"spark://results/{result_id}"


def progress_out(progress: Progress) -> ProgressOut | None:
    if not progress.stages:
        return None
    return ProgressOut(
        stages=progress.stages,
        stages_done=progress.stages_done,
        tasks=progress.tasks,
        tasks_done=progress.tasks_done,
    )


def progress_words(progress: Progress) -> str:
    if not progress.stages:
        return "no Spark stage has reported yet"
    return (
        f"stage {progress.stages_done}/{progress.stages} done, "
        f"{progress.tasks_done}/{progress.tasks} tasks, {progress.inflight_tasks} running"
    )


def error_out(error: SparkMcpError) -> ErrorOut:
    return ErrorOut(
        code=error.code,
        error_class=error.error_class if isinstance(error, SparkError) else None,
        message=error.message,
    )


def fit_json_rows(rows: list[list[Any]], max_chars: int) -> int:
    """How many leading rows fit in ``max_chars`` of JSON."""
    used = 2
    for count, row in enumerate(rows):
        used += len(json.dumps(row, ensure_ascii=False)) + 1
        if used > max_chars:
            return count
    return len(rows)


def job_reply(app: App, job: Job, *, max_rows: int, max_chars: int, summary: bool, notes: list[str]) -> CallToolResult:
    """A finished job's result (preview or summary), or a running job's handle."""
    base: dict[str, Any] = {
        "state": job.state.value,
        "job_id": job.id,
        "session_id": job.session_id,
        "statement_kind": job.kind,
        "elapsed_ms": job.elapsed_ms,
        "progress": progress_out(job.progress),
        "notes": notes,
    }
    if not job.state.terminal:
        reply = QueryReply(**base)
        text = (
            f"Job {job.id} is {job.state.value} after {job.elapsed_ms / 1000:.1f} s ({progress_words(job.progress)}). "
            f"Call get_job(job_id='{job.id}') to wait for its result, or cancel_job to stop it."
        )
        return _result(text, reply, None)
    if job.state is not JobState.SUCCEEDED or job.result is None:
        assert job.error is not None
        reply = QueryReply(**base, error=error_out(job.error))
        text = f"Job {job.id} {job.state.value}: {error_text(job.error)}"
        return _result(text, reply, None, is_error=False)
    return _stored_reply(app, job, job.result, base, max_rows=max_rows, max_chars=max_chars, summary=summary)


def _stored_reply(
    app: App,
    job: Job,
    meta: ResultMeta,
    base: dict[str, Any],
    *,
    max_rows: int,
    max_chars: int,
    summary: bool,
) -> CallToolResult:
    notes: list[str] = base["notes"]
    meta = app.results.meta(job.principal, meta.result_id)  # it may have been completed since the job ended
    table = app.results.table(job.principal, meta.result_id)
    if table.num_columns == 0:
        # A command (DDL, a temp view, SET...) has no result set: say so, and offer nothing to page.
        note(rows=0)
        reply = QueryReply(**base, result_set=False)
        return _result(f"{job.kind} ok in {job.elapsed_ms} ms: the statement returns no result set.", reply, None)
    notes.extend(state_notes(meta))
    columns = schema_columns(table.schema)
    more = meta.more_rows
    common = {
        **base,
        "columns": columns,
        "total_rows": meta.row_count if meta.complete else None,
        "result_id": meta.result_id,
        "result_state": meta.state.value,
    }
    note(result_id=meta.result_id)
    if summary:
        note(rows=0)
        summaries = summarize(table)
        text = render_summary(summaries, row_count=meta.row_count, max_chars=max_chars)
        reply = QueryReply(
            **{**common, "columns": SUMMARY_COLUMNS},
            rows=[_summary_row(s) for s in summaries],
            row_count=len(summaries),
            truncated=meta.row_count > 0 or more,
            summary=True,
        )
        return _result(_header(job, meta, shown=None) + text, reply, meta)
    page = take(table, 0, max_rows)
    json_rows = to_json_rows(page)
    fitting = fit_json_rows(json_rows, max_chars)
    rendered = render_table(take(page, 0, fitting), max_chars=max_chars, more_rows=meta.row_count > fitting or more)
    shown = rendered.rows_shown
    note(rows=shown)
    if shown < min(max_rows, meta.row_count):
        notes.append(f"the reply stopped at {shown} rows to stay within {max_chars:,} characters")
    reply = QueryReply(
        **common,
        rows=json_rows[:shown],
        row_count=shown,
        truncated=meta.row_count > shown or more,
    )
    return _result(_header(job, meta, shown=shown) + rendered.text, reply, meta)


def state_notes(meta: ResultMeta) -> list[str]:
    """What a reader of ``meta``'s rows must know about how complete and consistent they are."""
    notes: list[str] = []
    if meta.cap:
        notes.append(f"the stored result stopped at {meta.cap}; the statement had more rows")
    if meta.state is ResultState.FAILED:
        notes.append(
            f"producing the rows after the first {meta.row_count} failed ({meta.error}); "
            "asking fetch_rows for them again retries"
        )
    elif meta.state is ResultState.STORING:
        notes.append(f"the rows after the first {meta.row_count} are being produced now; ask fetch_rows again")
    if meta.reordered:
        notes.append(
            "the statement ran again to produce every row, and its first rows differ from the preview's "
            "(its row order is not fixed: add ORDER BY); page from offset 0 for one consistent result"
        )
    return notes


def _header(job: Job, meta: ResultMeta, *, shown: int | None) -> str:
    if meta.complete:
        more = "+" if meta.more_rows else ""
        return (
            f"{job.kind} ok in {job.elapsed_ms} ms; result {meta.result_id} holds {meta.row_count:,}{more} rows "
            f"(fetch_rows pages through it).\n"
        )
    offset = shown if shown is not None else meta.row_count
    return (
        f"{job.kind} ok in {job.elapsed_ms} ms; more rows exist: result {meta.result_id} keeps the first "
        f"{meta.row_count:,} so far, and fetch_rows(offset={offset}) produces the rest on demand.\n"
    )


# A summary is a table too: one row per column of the result (min and max keep its values' types).
SUMMARY_COLUMNS = [
    ColumnOut(name="column", type="string"),
    ColumnOut(name="type", type="string"),
    ColumnOut(name="null_count", type="bigint"),
    ColumnOut(name="distinct_count", type="bigint"),
    ColumnOut(name="min", type="the column's type"),
    ColumnOut(name="max", type="the column's type"),
    ColumnOut(name="mean", type="double"),
    ColumnOut(name="top_values", type="array<array<value, count>>"),
]


def _summary_row(s: Any) -> list[Any]:
    return [s.name, s.type, s.null_count, s.distinct_count, s.min, s.max, s.mean, [[v, c] for v, c in s.top_values]]


def _result(text: str, reply: QueryReply, meta: ResultMeta | None, *, is_error: bool = False) -> CallToolResult:
    content: list[Any] = [TextContent(type="text", text=text)]
    if meta is not None:
        content.append(
            ResourceLink(
                type="resource_link",
                uri=result_uri(meta.result_id),
                name=meta.result_id,
                mime_type="application/json",
                description=f"the full stored result ({meta.row_count:,} rows); also .csv and .arrow",
            )
        )
    return CallToolResult(content=content, structured_content=reply.model_dump(mode="json"), is_error=is_error)


def schema_columns(schema: pa.Schema) -> list[ColumnOut]:
    return [ColumnOut(name=c.name, type=c.type) for c in column_infos(schema)]
