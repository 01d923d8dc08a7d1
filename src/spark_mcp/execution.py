"""Scope, then governance, then run: the one path every statement takes.

1. the caller's session (their default one when none is named; creating it needs
   ``session.create``);
2. analysis by Spark itself (``spark.analyze``), interruptible and under a deadline;
3. governance's verdict on the analysed facts (``governance.judge``), noted for the audit;
4. a job that streams the result into the result store under the role's deadline.

A refused statement is never sent for execution: ``submit`` enforces the verdict again.
``explain`` (``explain.py``) takes the same path up to the verdict, then stops.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

import anyio

from spark_mcp.calls import note
from spark_mcp.config import Config
from spark_mcp.errors import DriverLost, InvalidInput, QueryTimedOut, SessionClosed, SparkMcpError
from spark_mcp.governance import Governance, Verdict
from spark_mcp.identity import Principal
from spark_mcp.jobs import Job, JobManager
from spark_mcp.plans import Plan
from spark_mcp.policy.profiles import ProfileDecision
from spark_mcp.results import ResultMeta, ResultState, ResultStore
from spark_mcp.scope_gate import Lease, ScopeGates, changes_scope, take_lease
from spark_mcp.session import Session
from spark_mcp.sessions import SessionRegistry
from spark_mcp.spark import plans, runner
from spark_mcp.spark.analyze import (
    Analysis,
    analyze_frame,
    analyze_sql,
)
from spark_mcp.statement import StatementKind

if TYPE_CHECKING:
    # pyarrow (with numpy) is imported where it is used, not with this module: it loads with
    # pyspark, on the thread that prepares the first driver, not on the server's start-up path (issue 12).
    import pyarrow as pa

T = TypeVar("T")


class Executor:
    def __init__(
        self,
        *,
        config: Config,
        governance: Governance,
        sessions: SessionRegistry,
        jobs: JobManager,
        results: ResultStore,
    ) -> None:
        self.config = config
        self.governance = governance
        self.sessions = sessions
        self.jobs = jobs
        self.results = results
        self._gates = ScopeGates()

    # -- sessions ------------------------------------------------------------------------

    def _group(self, decision: ProfileDecision) -> str | None:
        return decision.role if self.config.driver.share == "group" else None

    async def create_session(
        self, principal: Principal, profile: str | None = None, *, engine: str | None = None
    ) -> Session:
        self.governance.require(principal, "session.create")
        chosen = self.governance.profile_for(principal, profile)
        assert chosen.profile is not None
        engine = engine or self.sessions.engine_of(chosen.profile)
        self.governance.require_engine(principal, engine)
        session = await self.sessions.create(
            principal.id,
            profile=chosen.profile,
            group=self._group(chosen),
            max_sessions=self.governance.limits(principal).max_sessions,
            engine=engine,
        )
        note(session_id=session.id, decision="allowed")
        return session

    async def session(self, principal: Principal, session_id: str | None) -> Session:
        """The named session, or the caller's default one (created on first use, on the default profile)."""
        profile, group = "default", None
        if session_id is None:
            chosen = self.governance.profile_for(principal, None)
            assert chosen.profile is not None
            profile, group = chosen.profile, self._group(chosen)
            if not self.sessions.has_default(principal.id):
                self.governance.require(principal, "session.create")
                self.governance.require_engine(principal, self.sessions.engine_of(profile))
        session = await self.sessions.resolve(
            principal.id,
            session_id,
            max_sessions=self.governance.limits(principal).max_sessions,
            profile=profile,
            group=group,
        )
        note(session_id=session.id)
        return session

    # -- analysis and the verdict --------------------------------------------------------

    async def analyze(self, principal: Principal, session: Session, sql: str, *, action: str | None = None) -> Verdict:
        """Spark's analysis of ``sql`` and governance's verdict on it; nothing runs."""
        tag = f"spark-mcp-analyze-{secrets.token_hex(6)}"
        analysis = await self._with_deadline(
            principal, session, tag, lambda: analyze_sql(session.connect, sql, tag=tag)
        )
        return self.governance.judge(principal, analysis, action=action)

    async def lease(self, principal: Principal, session: Session, *, exclusive: bool = False) -> Lease:
        """The session's scope gate (``scope_gate.py``), waited for at most the statement deadline."""
        limit_s = self.governance.limits(principal).query_timeout_s
        return await take_lease(
            self._gates.gate(session), exclusive=exclusive, limit_s=limit_s, what=f"session {session.id}"
        )

    async def judge_sql(
        self, principal: Principal, session: Session, sql: str, *, action: str | None = None
    ) -> tuple[Verdict, Lease]:
        """The verdict on ``sql`` and the lease it must hold until it has run.

        A statement that changes name resolution (USE, SET) gives up its shared lease, waits
        to hold the session alone, and is analysed again then: nothing can change under it.
        """
        lease = await self.lease(principal, session)
        try:
            verdict = await self.analyze(principal, session, sql, action=action)
            if changes_scope(verdict.facts):
                lease.release()
                lease = await self.lease(principal, session, exclusive=True)
                verdict = await self.analyze(principal, session, sql, action=action)
        except BaseException:
            lease.release()
            raise
        return verdict, lease

    # -- running -------------------------------------------------------------------------

    def submit(
        self,
        principal: Principal,
        session: Session,
        verdict: Verdict,
        *,
        tool: str,
        stream: Callable[[Job, runner.ArrowSink], None],
        preview: int | None = None,
        fill: ResultMeta | None = None,
        language: str = "sql",
        lease: Lease | None = None,
    ) -> Job:
        """Start a job that streams into a stored result; returns at once.

        ``preview``: the job streams at most that many rows plus one, and the result is
        ``on_demand`` when there were more. ``fill``: the job produces the whole of that
        on-demand result and replaces it; if it fails, the result says so (``failed``).
        ``lease``: the statement's hold on its session's scope gate, released when the job ends.
        """
        try:
            verdict.enforce()  # never submit what governance refused
        except BaseException:
            if lease is not None:
                lease.release()
            raise
        limits = self.governance.limits(principal)

        def work(job: Job) -> ResultMeta:
            writer = self.results.writer(
                principal.id,
                session.id,
                result_id=fill.result_id if fill else None,
                statement=verdict.statement if preview is not None else None,
                language=language,
                preview=preview,
                expect_first=self.results.table(principal.id, fill.result_id) if fill else None,
            )
            try:
                stream(job, writer)
                return writer.finish()
            except BaseException as exc:
                writer.abort()
                if fill is not None:
                    why = job.stop_reason.value if job.stop_reason else str(exc) or type(exc).__name__
                    self.results.set_state(fill, ResultState.FAILED, error=why)
                # A driver that died mid-statement shows as an unreachable driver, or as a closed
                # channel once its supervisor has noticed. Said once, here: the session's next use
                # then gets a new driver without a second error.
                if isinstance(exc, SparkMcpError):
                    wait_s = 10.0 if isinstance(exc, DriverLost) else 0.0
                    if self.sessions.loss_seen(session, wait_s=wait_s):
                        raise session.lost_driver() from None
                raise

        job = self.jobs.submit(
            principal=principal.id,
            session_id=session.id,
            tool=tool,
            statement=verdict.statement,
            kind=verdict.facts.kind.value,
            tables=sorted(str(t) for t in verdict.facts.reads | verdict.facts.writes),
            timeout_s=limits.query_timeout_s,
            work=work,
            interrupt=lambda tag: len(runner.interrupt(session.connect, tag)),
            driver=session.driver.id,
            on_end=lease.release if lease is not None else None,
        )
        note(job_id=job.id)
        return job

    def row_limit(self, verdict: Verdict, preview: int | None) -> tuple[int, int | None]:
        """How many rows to ask Spark for, and the preview size the result keeps (None: all).

        Only a query is previewed: a command runs exactly once, and its answer is small.
        """
        if preview is not None and verdict.facts.kind is StatementKind.QUERY:
            return preview + 1, preview  # one more than shown, to know that more exist
        return self.config.results.max_rows + 1, None

    def stream_sql(self, session: Session, verdict: Verdict, row_limit: int) -> Callable[[Job, runner.ArrowSink], None]:
        sql, query = verdict.statement, verdict.facts.kind is StatementKind.QUERY

        def stream(job: Job, sink: runner.ArrowSink) -> None:
            runner.stream_sql(
                session.connect,
                sql,
                query=query,
                tag=job.tag,
                row_limit=row_limit,
                sink=sink,
                on_progress=job.set_progress,
                check_stop=job.raise_if_stopping,
            )

        return stream

    async def run_sql(
        self,
        principal: Principal,
        session_id: str | None,
        sql: str,
        *,
        tool: str,
        preview: int | None = None,
    ) -> Job:
        """Analyse, judge and start ``sql``; with ``preview``, a query keeps only that many rows for now."""
        session = await self.session(principal, session_id)
        verdict, lease = await self.judge_sql(principal, session, sql)
        limit, keep = self.row_limit(verdict, preview)
        stream = self.stream_sql(session, verdict, limit)
        return self.submit(principal, session, verdict, tool=tool, stream=stream, preview=keep, lease=lease)

    # -- structured plans ----------------------------------------------------------------

    async def analyze_plan(self, principal: Principal, session: Session, plan: Plan) -> tuple[Verdict, plans.BuiltPlan]:
        """Build the plan's DataFrame and have Spark analyse it; nothing runs."""
        statement = plan.model_dump_json(exclude_none=True)
        tag = f"spark-mcp-analyze-{secrets.token_hex(6)}"

        def load_result(result_id: str) -> pa.Table:
            meta = self.results.meta(principal.id, result_id)
            if not meta.complete:
                raise InvalidInput(
                    f"result {result_id} is {meta.state.value}: only its first {meta.row_count} rows exist so far; "
                    f"fetch_rows(result_id='{result_id}', offset={meta.row_count}) produces the rest"
                )
            return self.results.table(principal.id, result_id)

        def work() -> tuple[Analysis, plans.BuiltPlan]:
            built = plans.build(session.connect, plan, load_result=load_result, tag=tag)
            analysis = analyze_frame(session.connect, built.frame, statement)
            if analysis.error is not None:
                raise plans.locate_failure(built) or analysis.error
            return analysis, built

        analysis, built = await self._with_deadline(principal, session, tag, work)
        return self.governance.judge(principal, analysis), built

    async def run_plan(
        self, principal: Principal, session_id: str | None, plan: Plan, *, tool: str, preview: int | None = None
    ) -> Job:
        """Build, analyse, judge and start a plan; ``preview`` as for ``run_sql``."""
        self.governance.require(principal, "plan.run")
        session = await self.session(principal, session_id)
        lease = await self.lease(principal, session)  # a plan's table names resolve in the session too
        try:
            verdict, built = await self.analyze_plan(principal, session, plan)
        except BaseException:
            lease.release()
            raise
        limit, keep = self.row_limit(verdict, preview)
        stream = self.stream_frame(session, built.frame, limit, save_as=plan.save_as)
        return self.submit(
            principal, session, verdict, tool=tool, stream=stream, preview=keep, language="plan", lease=lease
        )

    def stream_frame(
        self, session: Session, frame: runner.Frame, row_limit: int, *, save_as: str | None = None
    ) -> Callable[[Job, runner.ArrowSink], None]:
        def stream(job: Job, sink: runner.ArrowSink) -> None:
            if save_as is not None:
                runner.save_temp_view(session.connect, frame, save_as, tag=job.tag)
            runner.stream(
                session.connect,
                lambda: frame,
                tag=job.tag,
                row_limit=row_limit,
                sink=sink,
                on_progress=job.set_progress,
                check_stop=job.raise_if_stopping,
            )

        return stream

    # -- the rest of an on-demand result -------------------------------------------------

    async def fill(self, principal: Principal, meta: ResultMeta) -> Job:
        """Start producing all of an on-demand result by running its statement again, governed again.

        It runs in the session that produced the preview (the statement may use that
        session's temp views); if that session is gone, the rest cannot be produced.
        """
        assert meta.statement is not None and meta.session_id is not None
        session = self.sessions.get(principal.id, meta.session_id)
        try:
            session.check_usable()
        except SessionClosed as exc:
            raise SessionClosed(
                f"the rest of result {meta.result_id} cannot be produced: {exc}. Its first "
                f"{meta.row_count} rows stay readable; run the statement again for the others."
            ) from None
        limit = self.config.results.max_rows + 1
        if meta.language == "plan":
            plan = Plan.model_validate_json(meta.statement).model_copy(update={"save_as": None})
            lease = await self.lease(principal, session)
            try:
                verdict, built = await self.analyze_plan(principal, session, plan)
            except BaseException:
                lease.release()
                raise
            stream = self.stream_frame(session, built.frame, limit)
        else:
            verdict, lease = await self.judge_sql(principal, session, meta.statement)
            stream = self.stream_sql(session, verdict, limit)
        # Said before the job starts: a quick job's own "complete" must not be overwritten by it.
        storing = self.results.set_state(meta, ResultState.STORING) if verdict.allowed else meta
        try:
            return self.submit(principal, session, verdict, tool="fetch_rows", stream=stream, fill=storing, lease=lease)
        except BaseException:
            self.results.save_meta(meta)
            raise

    async def _with_deadline(self, principal: Principal, session: Session, tag: str, work: Callable[[], T]) -> T:
        """Run blocking Spark work off the loop under the role's deadline; interrupt it on timeout or cancel."""
        limits = self.governance.limits(principal)
        try:
            with anyio.fail_after(limits.query_timeout_s):
                return await anyio.to_thread.run_sync(work, abandon_on_cancel=True)
        except DriverLost:
            if session.driver.usable:
                raise
            raise session.lost_driver() from None
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
