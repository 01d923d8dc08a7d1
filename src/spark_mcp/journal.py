"""Jobs kept in the state database: the ``JobJournal`` the job manager writes, and lost-job reports.

Between ``jobs`` (jobs in memory) and ``state.jobs`` (rows): a job is written when it is
submitted and when it ends; a job asked for after a restart is rebuilt from its row, with
its stored result when that is still on disk. At start, ``mark_lost`` turns the jobs that
a dead server left queued or running into ``lost`` jobs that say what happened.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import structlog

from spark_mcp.errors import JobLost, ResultNotFound, SparkError, SparkMcpError
from spark_mcp.jobs import Job, JobState
from spark_mcp.results import ResultMeta
from spark_mcp.state.drivers import ServerRef
from spark_mcp.state.jobs import JobRow, JobStore

log = structlog.get_logger(__name__)

LoadResult = Callable[[str, str], ResultMeta]  # (principal, result_id) -> meta, or ResultNotFound


class StateJournal:
    """Statements and error messages are redacted before they are written: a statement may quote
    a secret (a driver token, a credential) that the audit log would redact too."""

    def __init__(
        self, store: JobStore, server: ServerRef, load_result: LoadResult, *, redact: Callable[[str], str]
    ) -> None:
        self._store = store
        self._server = server
        self._load_result = load_result
        self._redact = redact

    def record(self, job: Job) -> None:
        error = job.error
        self._store.put(
            JobRow(
                id=job.id,
                principal=job.principal,
                session_id=job.session_id,
                tool=job.tool,
                statement=self._redact(job.statement),
                kind=job.kind,
                tables=tuple(job.tables),
                state=job.state.value,
                created_at=job.created_at,
                started_at=job.started_at,
                finished_at=job.finished_at,
                result_id=job.result.result_id if job.result else None,
                error_code=error.code if error else None,
                error_class=error.error_class if isinstance(error, SparkError) else None,
                error_message=self._redact(error.message) if error else None,
                server_pid=self._server.pid,
                server_start=self._server.start,
            )
        )

    def load(self, principal: str, job_id: str) -> Job | None:
        row = self._store.get(job_id)
        return self._job(row) if row is not None and row.principal == principal else None

    def recent(self, principal: str, limit: int) -> list[Job]:
        return [self._job(row) for row in self._store.for_principal(principal, limit)]

    def _job(self, row: JobRow) -> Job:
        state = JobState(row.state)
        if not state.terminal:  # another live server's job, or one about to be marked lost: not ours to follow
            state = JobState.LOST
        job = Job(
            id=row.id,
            principal=row.principal,
            session_id=row.session_id,
            tool=row.tool,
            statement=row.statement,
            kind=row.kind,
            tables=list(row.tables),
            timeout_s=0,
            tag=f"spark-mcp-{row.id}",
            interrupt=lambda tag: 0,  # nothing of it runs in this server
            state=state,
            created_at=row.created_at,
            started_at=row.started_at,
            finished_at=row.finished_at or row.created_at,
            error=_error(row) if state is not JobState.SUCCEEDED else None,
        )
        if state is JobState.LOST and job.error is None:
            job.error = JobLost("it was running in another spark-mcp server; ask that server")
        if state is JobState.SUCCEEDED and row.result_id is not None:
            try:
                job.result = self._load_result(row.principal, row.result_id)
            except ResultNotFound:
                job.error = ResultNotFound(f"its result {row.result_id} has expired (results.ttl_s); run it again")
        return job

    def mark_lost(self, alive: Callable[[ServerRef], bool]) -> list[JobRow]:
        """Jobs left queued or running by a server that is gone become ``lost``; returns them as they were."""
        lost: list[JobRow] = []
        now = time.time()
        for row in self._store.unfinished():
            server = ServerRef(row.server_pid, row.server_start) if row.server_pid is not None else None
            if server is not None and server != self._server and alive(server):
                continue
            self._store.mark_lost(
                row.id,
                at=now,
                why=(
                    f"the spark-mcp server running it (pid {row.server_pid}) stopped before it finished, "
                    "so it has no result; run the statement again"
                ),
            )
            lost.append(row)
        if lost:
            log.warning("jobs.lost", jobs=[row.id for row in lost])
        return lost

    def prune(self, keep_per_principal: int) -> None:
        self._store.prune(keep_per_principal)


def _error(row: JobRow) -> SparkMcpError | None:
    if row.error_code is None:
        return None
    message = row.error_message or ""
    if row.error_code == JobLost.code:
        return JobLost(message)
    if row.error_class:
        return SparkError(message, error_class=row.error_class)
    error = SparkMcpError(message)
    error.code = row.error_code
    return error
