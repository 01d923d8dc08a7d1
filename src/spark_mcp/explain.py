"""``explain``: what a statement or plan would do and whether policy allows it, without running it.

It takes the same path as a run up to the verdict (the caller's session, its scope gate,
Spark's analysis, governance), then asks Spark for the plan text instead of starting a job.
The plan text is withheld when the statement is denied or could not be analysed.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import anyio

from spark_mcp.execution import Executor
from spark_mcp.governance import Verdict
from spark_mcp.identity import Principal
from spark_mcp.plans import Plan
from spark_mcp.session import Session
from spark_mcp.spark.analyze import ExplainMode, explain_frame_text, explain_sql_text


@dataclass(frozen=True)
class Explanation:
    verdict: Verdict
    plan_text: str | None  # withheld when the statement is denied or could not be analysed
    session_id: str


async def explain(
    executor: Executor,
    principal: Principal,
    session_id: str | None,
    *,
    sql: str | None,
    plan: Plan | None,
    mode: ExplainMode,
) -> Explanation:
    """What a statement or plan would do and whether policy allows it, without running it."""
    session = await executor.session(principal, session_id)
    lease = await executor.lease(principal, session)  # the plan text must describe what was judged
    try:
        return await _explain(executor, principal, session, sql=sql, plan=plan, mode=mode)
    finally:
        lease.release()


async def _explain(
    executor: Executor,
    principal: Principal,
    session: Session,
    *,
    sql: str | None,
    plan: Plan | None,
    mode: ExplainMode,
) -> Explanation:
    if plan is not None:
        executor.governance.require(principal, "plan.run")
        verdict, built = await executor.analyze_plan(principal, session, plan)
        frame = built.frame

        def text() -> str:
            return explain_frame_text(frame, mode)

    else:
        assert sql is not None
        verdict = await executor.analyze(principal, session, sql)
        statement = verdict.statement
        tag = f"spark-mcp-explain-{secrets.token_hex(6)}"

        def text() -> str:
            return explain_sql_text(session.connect, statement, mode, tag=tag)

    plan_text: str | None = None
    if verdict.allowed and verdict.spark_error is None:
        plan_text = await anyio.to_thread.run_sync(text, abandon_on_cancel=True)
    return Explanation(verdict=verdict, plan_text=plan_text, session_id=session.id)
