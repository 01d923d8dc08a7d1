"""The rest of an on-demand result, produced when someone first asks for it.

A query's reply is sent as soon as its preview rows are there (``results.ResultState``).
Most previews are all anyone reads, so nothing more is computed until ``fetch_rows``
asks past the preview, a result resource is read, or a plan uses the result as its
source. Then the statement runs again, in the session that produced it and judged by
governance again, into the same result id; callers wait for it up to their budget and
are told it is still ``storing`` if it takes longer. One fill runs per result at a time.

Trade-offs, also in the README: the rest comes from a second run, so a statement whose
row order is not fixed (no ORDER BY) may order its rows differently than the preview
showed; the reply of the completed result says so when its first rows differ. Nothing
is spent on rows nobody reads. Cancelling the fill (``cancel_job``) leaves the preview
readable and the result ``failed``; asking again starts a new fill.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio

from spark_mcp.execution import Executor
from spark_mcp.identity import Principal
from spark_mcp.jobs import Job, JobManager
from spark_mcp.plans import Plan
from spark_mcp.results import ResultMeta, ResultState, ResultStore


class Materializer:
    def __init__(self, executor: Executor, jobs: JobManager, results: ResultStore) -> None:
        self._executor = executor
        self._jobs = jobs
        self._results = results
        self._fills: dict[str, Job] = {}
        self._locks: dict[str, anyio.Lock] = {}

    def fill_job(self, result_id: str) -> Job | None:
        """The job producing ``result_id``'s rest, while it runs."""
        job = self._fills.get(result_id)
        return job if job is not None and not job.state.terminal else None

    async def ensure(
        self,
        principal: Principal,
        result_id: str,
        *,
        rows: int | None,
        wait_s: float,
        on_change: Callable[[Job], Awaitable[None]] | None = None,
        offset: int = 0,
    ) -> ResultMeta:
        """The result once it holds ``rows`` rows (None: all of them), or as it stands after ``wait_s``.

        When the fill it waited for failed and no row from ``offset`` on exists, the fill's
        error is raised: the caller gets nothing else it asked for, so the reason is its answer.
        """
        meta = self._results.meta(principal.id, result_id)
        if self._enough(meta, rows):
            return meta
        lock = self._locks.setdefault(result_id, anyio.Lock())
        async with lock:
            meta = self._results.meta(principal.id, result_id)
            if self._enough(meta, rows):
                return meta
            job = self.fill_job(result_id)
            if job is None:
                job = await self._executor.fill(principal, meta)
                self._fills[result_id] = job
        await self._jobs.wait(job, wait_s, on_change)
        if job.state.terminal:
            self._fills.pop(result_id, None)
        meta = self._results.meta(principal.id, result_id)
        if job.state.terminal and job.error is not None and offset >= meta.row_count > 0:
            raise job.error
        return meta

    async def complete_sources(self, principal: Principal, plan: Plan, *, wait_s: float) -> None:
        """Complete every on-demand result ``plan`` reads (a plan source needs all its rows)."""
        for result_id in plan.result_sources():
            await self.ensure(principal, result_id, rows=None, wait_s=wait_s)

    @staticmethod
    def _enough(meta: ResultMeta, rows: int | None) -> bool:
        if meta.state is ResultState.COMPLETE:
            return True
        return rows is not None and rows <= meta.row_count
