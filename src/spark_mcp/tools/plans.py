"""Tools for structured DataFrame plans and for explaining statements without running them."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from mcp.server import MCPServer
from mcp.server.mcpserver import Context
from mcp.types import CallToolResult, TextContent
from pydantic import Field

from spark_mcp.errors import InvalidInput
from spark_mcp.explain import explain as explain_without_running
from spark_mcp.plans import PLAN_GRAMMAR, parse_plan
from spark_mcp.spark.analyze import cost_estimates
from spark_mcp.tools._base import app_of, caller, clamp_rows, guarded, hints
from spark_mcp.tools.models import DangerOut, DecisionOut, ExplainReply, QueryReply
from spark_mcp.tools.queries import MaxRows, SessionId, WaitS, reply_when_done
from spark_mcp.tools.render import error_out

# The grammar is written once, here; explain's plan argument points to it.
RUN_PLAN = f"""Run a structured DataFrame plan (JSON, not code); results, jobs and limits as in run_sql.
Analysed by Spark and checked by your policy before it runs; errors name the failing operation.
save_as keeps the result as a temp view, to build an analysis step by step.

{PLAN_GRAMMAR}"""


def register(server: MCPServer) -> None:
    @server.tool(title="Run DataFrame plan", annotations=hints(read_only=False), description=RUN_PLAN)
    @guarded
    async def run_plan(
        ctx: Context,
        plan: Annotated[dict[str, Any], Field(description="the plan, as the grammar above says")],
        session_id: SessionId = None,
        max_rows: MaxRows = None,
        wait_s: WaitS = None,
        summary: bool = False,
    ) -> Annotated[CallToolResult, QueryReply]:
        parsed = parse_plan(plan)
        app, principal = app_of(ctx), caller()
        limits = app.governance.limits(principal)
        notes: list[str] = []
        rows = clamp_rows(app, max_rows, limits.max_rows, notes)
        preview = None if summary else rows
        await app.materializer.complete_sources(principal, parsed, wait_s=limits.query_timeout_s)
        job = await app.executor.run_plan(principal, session_id, parsed, tool="run_plan", preview=preview)
        if parsed.save_as:
            notes.append(f"saves temp view {parsed.save_as} in session {job.session_id}")
        return await reply_when_done(app, ctx, job, wait_s=wait_s, rows=rows, summary=summary, notes=notes)

    @server.tool(title="Explain", annotations=hints(read_only=True, idempotent=True))
    @guarded
    async def explain(
        ctx: Context,
        sql: Annotated[str | None, Field(max_length=200_000, description="one SQL statement")] = None,
        plan: Annotated[dict[str, Any] | None, Field(description="or a structured plan, as for run_plan")] = None,
        session_id: SessionId = None,
        mode: Annotated[
            Literal["simple", "extended", "cost", "formatted"],
            Field(description="extended: all plans; cost: with size and row estimates"),
        ] = "simple",
    ) -> Annotated[CallToolResult, ExplainReply]:
        """Without running it: Spark's plan, the statement kind, the tables and functions it touches,
        and the policy decision with its reason. Give exactly one of sql or plan.
        """
        if (sql is None) == (plan is None):
            raise InvalidInput("give exactly one of sql or plan")
        app, principal = app_of(ctx), caller()
        parsed = parse_plan(plan) if plan is not None else None
        if parsed is not None:
            wait = app.governance.limits(principal).query_timeout_s
            await app.materializer.complete_sources(principal, parsed, wait_s=wait)
        explained = await explain_without_running(app.executor, principal, session_id, sql=sql, plan=parsed, mode=mode)
        verdict = explained.verdict
        facts, decision = verdict.facts, verdict.decision
        notes: list[str] = []
        plan_text = explained.plan_text
        size: float | None = None
        row_count: int | None = None
        if plan_text is not None and mode == "cost":
            size, row_count = cost_estimates(plan_text)
        limits = app.governance.limits(principal)
        if plan_text is not None and len(plan_text) > limits.max_chars:
            plan_text = plan_text[: limits.max_chars] + f"\n…(+{len(plan_text) - limits.max_chars} chars)"
            notes.append(f"the plan text was cut at {limits.max_chars:,} characters")
        if explained.plan_text is None and not decision.allowed:
            notes.append("the plan text is withheld because the policy denies this statement")
        reply = ExplainReply(
            session_id=explained.session_id,
            mode=mode,
            statement_kind=facts.kind.value,
            operation=facts.operation,
            tables_read=sorted(str(t) for t in facts.reads),
            tables_written=sorted(str(t) for t in facts.writes),
            functions=sorted(facts.functions),
            views=sorted(facts.views),
            dangers=[DangerOut(kind=d.kind.value, detail=d.detail) for d in facts.dangers],
            decision=DecisionOut(allowed=decision.allowed, reason=decision.reason, rule=decision.rule),
            plan=plan_text,
            estimated_bytes=size,
            estimated_rows=row_count,
            error=error_out(verdict.spark_error) if verdict.spark_error else None,
            notes=notes,
        )
        said = "ALLOWED" if decision.allowed else "DENIED"
        lines = [
            f"{facts.kind.value} ({facts.operation}); reads: {', '.join(reply.tables_read) or '-'}; "
            f"writes: {', '.join(reply.tables_written) or '-'}",
            f"policy: {said}: {decision.reason} [{decision.rule}]",
        ]
        if reply.error is not None:
            lines.append(f"Spark: {reply.error.error_class}: {reply.error.message}")
        if mode == "cost" and plan_text is not None:
            lines.append(f"estimates: {size or '?'} bytes, {row_count or '?'} rows")
        if plan_text:
            lines.append(plan_text)
        return CallToolResult(
            content=[TextContent(type="text", text="\n".join(lines))],
            structured_content=reply.model_dump(mode="json"),
        )
