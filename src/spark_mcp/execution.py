"""Scope, then policy, then run: the one path every statement takes.

1. the caller's session (their default one when none is named; creating it needs
   ``session.create``);
2. analysis by Spark itself (``spark.analyze``), interruptible and under a deadline;
3. the pure policy decision on the analysed facts, recorded for the audit log;
4. a job that streams the result into the result store under the role's deadline.

A denied statement is never sent for execution. A statement Spark cannot analyse is
refused with Spark's own error for everyone but ``sql.admin``.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import NoReturn, TypeVar

import anyio
import pyarrow as pa

from spark_mcp.calls import note
from spark_mcp.config import Config
from spark_mcp.errors import DriverLost, PolicyDenied, QueryTimedOut, SparkMcpError
from spark_mcp.identity import Principal
from spark_mcp.jobs import Job, JobManager
from spark_mcp.plans import Plan
from spark_mcp.policy import Decision, Policy, decide, decide_statement, readable
from spark_mcp.policy.profiles import ProfileDecision, decide_profile
from spark_mcp.results import ResultMeta, ResultStore
from spark_mcp.sessions import Session, SessionRegistry
from spark_mcp.spark import plans, runner
from spark_mcp.spark.analyze import (
    Analysis,
    ExplainMode,
    analyze_frame,
    analyze_sql,
    explain_frame_text,
    explain_sql_text,
)
from spark_mcp.statement import StatementFacts

T = TypeVar("T")


@dataclass(frozen=True)
class Explanation:
    analysis: Analysis
    decision: Decision
    plan_text: str | None  # withheld when the statement is denied or could not be analysed
    session_id: str


@dataclass(frozen=True)
class EffectiveLimits:
    max_rows: int  # rows in one reply
    max_chars: int  # characters of text in one reply
    query_timeout_s: float
    max_sessions: int


class Executor:
    def __init__(
        self,
        *,
        config: Config,
        policy: Policy,
        sessions: SessionRegistry,
        jobs: JobManager,
        results: ResultStore,
    ) -> None:
        self.config = config
        self.policy = policy
        self.sessions = sessions
        self.jobs = jobs
        self.results = results

    # -- limits and sessions -------------------------------------------------------------

    def limits(self, principal: Principal) -> EffectiveLimits:
        """The role's limits, never above the server's caps."""
        grants = self.policy.grants_for(principal)
        server = self.config.limits
        return EffectiveLimits(
            max_rows=min(grants.max_rows or server.max_rows, server.max_rows),
            max_chars=server.max_chars,
            query_timeout_s=min(grants.query_timeout_s or server.query_timeout_s, server.query_timeout_s),
            max_sessions=min(grants.max_sessions or server.max_sessions, server.max_sessions),
        )

    def require(self, principal: Principal, action: str) -> Decision:
        decision = decide(self.policy, principal, action)
        if not decision.allowed:
            note(decision="denied", reason=decision.reason, rule=decision.rule)
            raise PolicyDenied(decision.reason, rule=decision.rule)
        return decision

    def profile_for(self, principal: Principal, requested: str | None) -> ProfileDecision:
        """The driver profile ``principal`` gets (``requested``, else its default); raises when denied."""
        decision = decide_profile(self.policy, principal, requested)
        if not decision.allowed:
            note(decision="denied", reason=decision.reason, rule=decision.rule)
            raise PolicyDenied(decision.reason, rule=decision.rule)
        return decision

    def _group(self, decision: ProfileDecision) -> str | None:
        return decision.role if self.config.driver.share == "group" else None

    async def create_session(self, principal: Principal, profile: str | None = None) -> Session:
        self.require(principal, "session.create")
        chosen = self.profile_for(principal, profile)
        assert chosen.profile is not None
        session = await self.sessions.create(
            principal.id,
            profile=chosen.profile,
            group=self._group(chosen),
            max_sessions=self.limits(principal).max_sessions,
        )
        note(session_id=session.id, decision="allowed")
        return session

    async def session(self, principal: Principal, session_id: str | None) -> Session:
        """The named session, or the caller's default one (created on first use, on the default profile)."""
        profile, group = "default", None
        if session_id is None:
            if not self.sessions.has_default(principal.id):
                self.require(principal, "session.create")
            chosen = self.profile_for(principal, None)
            assert chosen.profile is not None
            profile, group = chosen.profile, self._group(chosen)
        session = await self.sessions.resolve(
            principal.id, session_id, max_sessions=self.limits(principal).max_sessions, profile=profile, group=group
        )
        note(session_id=session.id)
        return session

    # -- analysis and decision -----------------------------------------------------------

    def is_admin(self, principal: Principal) -> bool:
        return decide(self.policy, principal, "sql.admin").allowed

    async def analyze(self, principal: Principal, session: Session, sql: str) -> tuple[Analysis, Decision]:
        """Spark's analysis of ``sql`` and the policy's verdict on it; nothing runs."""
        tag = f"spark-mcp-analyze-{secrets.token_hex(6)}"
        analysis = await self._with_deadline(
            principal, session, tag, lambda: analyze_sql(session.connect, sql, tag=tag)
        )
        decision = decide_statement(self.policy, principal, analysis.facts)
        record_decision(analysis.statement, analysis.facts, decision)
        return analysis, decision

    def enforce(self, principal: Principal, analysis: Analysis, decision: Decision) -> None:
        """Raise unless the statement may run. Spark's own error wins for a broken statement."""
        if analysis.error is not None and not self.is_admin(principal):
            self.refuse_broken(principal, analysis)
        if not decision.allowed:
            raise PolicyDenied(decision.reason, rule=decision.rule)

    def refuse_broken(self, principal: Principal, analysis: Analysis) -> NoReturn:
        """Refuse a statement Spark could not analyse, with Spark's reason when it is safe to tell.

        Spark's messages can quote what they touched ("did you mean `salary`?"): when the
        partial plan names a table the caller may not read, the denial is all they get.
        """
        assert analysis.error is not None
        for table in sorted(analysis.facts.reads):
            verdict = readable(self.policy, principal, table)
            if not verdict.allowed:
                note(decision="denied", reason=verdict.reason, rule=verdict.rule)
                raise PolicyDenied(verdict.reason, rule=verdict.rule)
        note(decision="denied", reason=f"Spark could not analyse it: {analysis.error}", rule="unanalysable")
        raise analysis.error

    # -- running -------------------------------------------------------------------------

    def submit(
        self,
        principal: Principal,
        session: Session,
        analysis: Analysis,
        *,
        tool: str,
        stream: Callable[[Job, runner.ArrowSink], None],
    ) -> Job:
        """Start a job that streams into a new stored result; returns at once."""
        limits = self.limits(principal)

        def work(job: Job) -> ResultMeta:
            writer = self.results.writer(principal.id, session.id)
            try:
                stream(job, writer)
                return writer.finish()
            except SparkMcpError as exc:
                writer.abort()
                # A driver that died mid-statement shows as an unreachable driver, or as a closed
                # channel once its supervisor has noticed. Said once, here: the session's next use
                # then gets a new driver without a second error.
                wait_s = 10.0 if isinstance(exc, DriverLost) else 0.0
                if self.sessions.loss_seen(session, wait_s=wait_s):
                    raise DriverLost(f"{session.why_closed} (this statement was running: {exc.message})") from None
                raise
            except BaseException:
                writer.abort()
                raise

        job = self.jobs.submit(
            principal=principal.id,
            session_id=session.id,
            tool=tool,
            statement=analysis.statement,
            kind=analysis.facts.kind.value,
            tables=sorted(str(t) for t in analysis.facts.reads | analysis.facts.writes),
            timeout_s=limits.query_timeout_s,
            work=work,
            interrupt=lambda tag: len(runner.interrupt(session.connect, tag)),
        )
        note(job_id=job.id)
        return job

    def stream_sql(self, session: Session, sql: str) -> Callable[[Job, runner.ArrowSink], None]:
        row_limit = self.config.results.max_rows + 1  # one more than kept, to know that more exist

        def stream(job: Job, sink: runner.ArrowSink) -> None:
            runner.stream_sql(
                session.connect,
                sql,
                tag=job.tag,
                row_limit=row_limit,
                sink=sink,
                on_progress=job.set_progress,
                check_stop=job.raise_if_stopping,
            )

        return stream

    async def run_sql(self, principal: Principal, session_id: str | None, sql: str, *, tool: str) -> Job:
        session = await self.session(principal, session_id)
        analysis, decision = await self.analyze(principal, session, sql)
        self.enforce(principal, analysis, decision)
        return self.submit(principal, session, analysis, tool=tool, stream=self.stream_sql(session, analysis.statement))

    # -- structured plans ----------------------------------------------------------------

    async def analyze_plan(
        self, principal: Principal, session: Session, plan: Plan
    ) -> tuple[Analysis, Decision, plans.BuiltPlan]:
        """Build the plan's DataFrame and have Spark analyse it; nothing runs."""
        statement = plan.model_dump_json(exclude_none=True)
        tag = f"spark-mcp-analyze-{secrets.token_hex(6)}"

        def load_result(result_id: str) -> pa.Table:
            return self.results.table(principal.id, result_id)

        def work() -> tuple[Analysis, plans.BuiltPlan]:
            built = plans.build(session.connect, plan, load_result=load_result, tag=tag)
            analysis = analyze_frame(session.connect, built.frame, statement)
            if analysis.error is not None:
                raise plans.locate_failure(built) or analysis.error
            return analysis, built

        analysis, built = await self._with_deadline(principal, session, tag, work)
        decision = decide_statement(self.policy, principal, analysis.facts)
        record_decision(statement, analysis.facts, decision)
        return analysis, decision, built

    async def run_plan(self, principal: Principal, session_id: str | None, plan: Plan, *, tool: str) -> Job:
        self.require(principal, "plan.run")
        session = await self.session(principal, session_id)
        analysis, decision, built = await self.analyze_plan(principal, session, plan)
        self.enforce(principal, analysis, decision)
        row_limit = self.config.results.max_rows + 1
        frame, view = built.frame, plan.save_as

        def stream(job: Job, sink: runner.ArrowSink) -> None:
            if view is not None:
                runner.save_temp_view(session.connect, frame, view, tag=job.tag)
            runner.stream(
                session.connect,
                lambda: frame,
                tag=job.tag,
                row_limit=row_limit,
                sink=sink,
                on_progress=job.set_progress,
                check_stop=job.raise_if_stopping,
            )

        return self.submit(principal, session, analysis, tool=tool, stream=stream)

    # -- explain -------------------------------------------------------------------------

    async def explain(
        self,
        principal: Principal,
        session_id: str | None,
        *,
        sql: str | None,
        plan: Plan | None,
        mode: ExplainMode,
    ) -> Explanation:
        """What a statement or plan would do and whether policy allows it, without running it."""
        session = await self.session(principal, session_id)
        if plan is not None:
            self.require(principal, "plan.run")
            analysis, decision, built = await self.analyze_plan(principal, session, plan)
            frame = built.frame

            def text() -> str:
                return explain_frame_text(frame, mode)

        else:
            assert sql is not None
            analysis, decision = await self.analyze(principal, session, sql)
            statement = analysis.statement
            tag = f"spark-mcp-explain-{secrets.token_hex(6)}"

            def text() -> str:
                return explain_sql_text(session.connect, statement, mode, tag=tag)

        plan_text: str | None = None
        if decision.allowed and analysis.error is None and analysis.plan is not None:
            plan_text = await anyio.to_thread.run_sync(text, abandon_on_cancel=True)
        return Explanation(analysis=analysis, decision=decision, plan_text=plan_text, session_id=session.id)

    async def _with_deadline(self, principal: Principal, session: Session, tag: str, work: Callable[[], T]) -> T:
        """Run blocking Spark work off the loop under the role's deadline; interrupt it on timeout or cancel."""
        limits = self.limits(principal)
        try:
            with anyio.fail_after(limits.query_timeout_s):
                return await anyio.to_thread.run_sync(work, abandon_on_cancel=True)
        except TimeoutError:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(runner.interrupt, session.connect, tag)
            raise QueryTimedOut(f"Spark did not finish analysing within {limits.query_timeout_s:g} s") from None
        except anyio.get_cancelled_exc_class():
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(runner.interrupt, session.connect, tag)
            raise

    def cancel_on_exit(self, job: Job) -> None:
        """The caller went away (the MCP request was cancelled): stop the work in Spark too."""
        self.jobs.stop_in_background(job)


def record_decision(statement: str, facts: StatementFacts, decision: Decision) -> None:
    note(
        statement=statement,
        kind=facts.kind.value,
        tables=sorted(str(t) for t in facts.reads | facts.writes),
        decision="allowed" if decision.allowed else "denied",
        reason=decision.reason,
        rule=decision.rule,
    )
