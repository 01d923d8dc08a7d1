"""Long-running work: jobs with state, progress, deadlines and cancellation.

Every statement runs as a job on a bounded thread pool, whether the caller waits for it
or not, so there is one execution path. A job's deadline and ``cancel_job`` both
interrupt its operation tag in Spark, and keep interrupting until the job has really
stopped: an interrupt that lands between two of the job's Spark calls would otherwise
be lost. Jobs belong to their principal; anyone else gets "not found".

A driver runs at most ``limits.max_jobs_per_driver`` jobs at once (its gate): one agent's
burst of heavy statements would otherwise hold more in the driver's memory than it has.
The others wait in state ``queued``, which callers see, and their deadline starts when
they run. A job cancelled while queued never reaches Spark.
"""

from __future__ import annotations

import contextlib
import secrets
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

import anyio
import structlog

from spark_mcp.errors import InvalidInput, JobNotFound, QueryCancelled, QueryTimedOut, SparkError, SparkMcpError
from spark_mcp.results import ResultMeta
from spark_mcp.spark.runner import Progress

log = structlog.get_logger(__name__)


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"
    LOST = "lost"  # its server stopped while it ran; it never finished

    @property
    def terminal(self) -> bool:
        return self in _TERMINAL


_TERMINAL = {JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED, JobState.TIMED_OUT, JobState.LOST}


Interrupt = Callable[[str], int]  # interrupts a tag, returns how many operations it stopped


@dataclass(eq=False)
class Job:
    id: str
    principal: str
    session_id: str
    tool: str
    statement: str
    kind: str
    tables: list[str]
    timeout_s: float
    tag: str
    interrupt: Interrupt = field(repr=False)  # bound to the job's Spark session when it was submitted
    on_end: Callable[[], None] | None = field(default=None, repr=False)  # runs once, when the job ends
    state: JobState = JobState.QUEUED
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    progress: Progress = field(default_factory=Progress)
    result: ResultMeta | None = None
    error: SparkMcpError | None = None
    stop_reason: JobState | None = None  # CANCELLED or TIMED_OUT once asked to stop
    interrupted_operations: int = 0
    version: int = 0
    _cond: threading.Condition = field(default_factory=threading.Condition, repr=False)

    @property
    def elapsed_ms(self) -> int:
        end = self.finished_at or time.time()
        return int((end - (self.started_at or self.created_at)) * 1000)

    def changed(self) -> None:
        with self._cond:
            self.version += 1
            self._cond.notify_all()

    def set_progress(self, progress: Progress) -> None:
        with self._cond:
            self.progress = progress
            self.version += 1
            self._cond.notify_all()

    def wait_change(self, seen: int, timeout_s: float) -> int:
        with self._cond:
            self._cond.wait_for(lambda: self.version != seen or self.state.terminal, timeout_s)
            return self.version

    def raise_if_stopping(self) -> None:
        """Called by the work between Spark calls, so a stop request is never missed."""
        if self.stop_reason is not None:
            raise QueryCancelled("the job was asked to stop")


Work = Callable[[Job], ResultMeta]


class JobJournal(Protocol):
    """Where jobs outlive the server (``journal.StateJournal``): written at submit and at end."""

    def record(self, job: Job) -> None: ...

    def load(self, principal: str, job_id: str) -> Job | None: ...

    def recent(self, principal: str, limit: int) -> list[Job]: ...


def new_job_id() -> str:
    return f"job_{secrets.token_hex(6)}"


class JobManager:
    def __init__(
        self,
        *,
        max_workers: int,
        keep_per_principal: int,
        per_driver: int | None = None,
        journal: JobJournal | None = None,
    ) -> None:
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="spark-job")
        self._keep = keep_per_principal
        self._per_driver = per_driver or max_workers
        self._jobs: dict[str, Job] = {}
        self._running: dict[str, int] = {}  # driver -> jobs admitted to run
        self._waiting: dict[str, deque[tuple[Job, Work]]] = {}  # driver -> jobs queued for it
        self._guard = threading.Lock()
        self._journal = journal

    def _record(self, job: Job) -> None:
        if self._journal is None:
            return
        try:
            self._journal.record(job)
        except Exception:  # the state database failing must not fail the statement
            log.exception("job.record_failed", job_id=job.id)

    def submit(
        self,
        *,
        principal: str,
        session_id: str,
        tool: str,
        statement: str,
        kind: str,
        tables: list[str],
        timeout_s: float,
        work: Work,
        interrupt: Interrupt,
        driver: str | None = None,
        on_end: Callable[[], None] | None = None,
    ) -> Job:
        job_id = new_job_id()
        job = Job(
            id=job_id,
            principal=principal,
            session_id=session_id,
            tool=tool,
            statement=statement,
            kind=kind,
            tables=tables,
            timeout_s=timeout_s,
            tag=f"spark-mcp-{job_id}",
            interrupt=interrupt,
            on_end=on_end,
        )
        with self._guard:
            self._jobs[job_id] = job
            self._prune(principal)
        self._record(job)
        self._admit(driver, job, work)
        return job

    def _admit(self, driver: str | None, job: Job, work: Work) -> None:
        """Run now if the driver has room, else queue behind its other jobs (first come, first run)."""
        with self._guard:
            if driver is not None and self._running.get(driver, 0) >= self._per_driver:
                self._waiting.setdefault(driver, deque()).append((job, work))
                return
            if driver is not None:
                self._running[driver] = self._running.get(driver, 0) + 1
        self._pool.submit(self._run, driver, job, work)

    def _run(self, driver: str | None, job: Job, work: Work) -> None:
        try:
            self._run_admitted(job, work)
        finally:
            if driver is not None:
                with self._guard:
                    waiting = self._waiting.get(driver)
                    following = waiting.popleft() if waiting else None
                    if following is None:
                        self._running[driver] -= 1
                if following is not None:  # its slot passes straight to the next queued job
                    self._pool.submit(self._run, driver, *following)

    def _unqueue(self, job: Job) -> bool:
        with self._guard:
            for waiting in self._waiting.values():
                for entry in waiting:
                    if entry[0] is job:
                        waiting.remove(entry)
                        return True
        return False

    def queued_before(self, job: Job) -> int:
        """How many jobs wait ahead of ``job`` for the same driver (0 when it is not waiting)."""
        with self._guard:
            for waiting in self._waiting.values():
                for index, (other, _) in enumerate(waiting):
                    if other is job:
                        return index
        return 0

    def _run_admitted(self, job: Job, work: Work) -> None:
        with job._cond:
            if job.stop_reason is not None:  # cancelled while queued: never touches Spark
                self._finish(job, job.stop_reason, None, QueryCancelled("cancelled before it started"))
                return
            job.state = JobState.RUNNING
            job.started_at = time.time()
            job.version += 1
            job._cond.notify_all()
        timer = threading.Timer(job.timeout_s, self._stop, args=(job, JobState.TIMED_OUT))
        timer.daemon = True
        timer.start()
        try:
            meta = work(job)
        except SparkMcpError as exc:
            if job.stop_reason is not None:
                self._finish(job, job.stop_reason, None, self._stop_error(job))
            else:
                self._finish(job, JobState.FAILED, None, exc)
        except Exception as exc:
            log.exception("job.crashed", job_id=job.id)
            self._finish(
                job, JobState.FAILED, None, SparkError(f"internal error: {type(exc).__name__}", error_class="INTERNAL")
            )
        else:
            self._finish(job, JobState.SUCCEEDED, meta, None)
        finally:
            timer.cancel()

    def _stop_error(self, job: Job) -> SparkMcpError:
        if job.stop_reason is JobState.TIMED_OUT:
            return QueryTimedOut(
                f"the job ran longer than its {job.timeout_s:g} s limit and was interrupted in Spark "
                "(query_timeout_s of your role or limits.query_timeout_s)"
            )
        return QueryCancelled("the job was cancelled and interrupted in Spark")

    def _finish(self, job: Job, state: JobState, result: ResultMeta | None, error: SparkMcpError | None) -> None:
        with job._cond:
            job.state = state
            job.result = result
            job.error = error
            job.finished_at = time.time()
            job.version += 1
            job._cond.notify_all()
            on_end, job.on_end = job.on_end, None
        if on_end is not None:
            try:
                on_end()
            except Exception:
                log.exception("job.on_end_failed", job_id=job.id)
        self._record(job)
        log.info("job.finished", job_id=job.id, state=state.value, elapsed_ms=job.elapsed_ms)

    def _stop(self, job: Job, reason: JobState) -> None:
        """Interrupt the job's tag until the job is over (at most about 60 s)."""
        with job._cond:
            if job.state.terminal or job.stop_reason is not None:
                return
            job.stop_reason = reason
            job.version += 1
            job._cond.notify_all()
        if job.state is JobState.QUEUED:
            if self._unqueue(job):  # waiting for its driver: it never started, and never will
                self._finish(job, reason, None, QueryCancelled("cancelled while queued; it never started"))
            return
        deadline = time.monotonic() + 60
        while not job.state.terminal and time.monotonic() < deadline:
            try:
                job.interrupted_operations += job.interrupt(job.tag)
            except SparkMcpError as exc:
                log.warning("job.interrupt_failed", job_id=job.id, error=str(exc))
            job.wait_change(job.version, 0.5)

    def get(self, principal: str, job_id: str) -> Job:
        if not isinstance(job_id, str) or not job_id.startswith("job_") or len(job_id) > 64:
            raise InvalidInput(f"{job_id!r} is not a job id (they look like job_1a2b3c4d5e6f)")
        with self._guard:
            job = self._jobs.get(job_id)
        if job is None and self._journal is not None:  # from before a restart: finished, or lost
            job = self._journal.load(principal, job_id)
        if job is None or job.principal != principal:
            raise JobNotFound(f"no job {job_id}: list_jobs shows yours")
        return job

    def list_for(self, principal: str) -> list[Job]:
        with self._guard:
            jobs = [j for j in self._jobs.values() if j.principal == principal]
        if self._journal is not None:
            known = {j.id for j in jobs}
            jobs += [j for j in self._journal.recent(principal, self._keep) if j.id not in known]
        return sorted(jobs, key=lambda j: j.created_at, reverse=True)

    def running(self) -> list[Job]:
        with self._guard:
            return [j for j in self._jobs.values() if not j.state.terminal]

    async def cancel(self, job: Job) -> None:
        """Ask the job to stop and wait until it has (the interrupt is confirmed by its end)."""
        await anyio.to_thread.run_sync(self._stop, job, JobState.CANCELLED, abandon_on_cancel=True)

    def stop_in_background(self, job: Job) -> None:
        threading.Thread(target=self._stop, args=(job, JobState.CANCELLED), daemon=True).start()

    async def wait(self, job: Job, wait_s: float, on_change: Callable[[Job], Awaitable[None]] | None = None) -> bool:
        """Wait up to ``wait_s`` for the job to end; True when it has. Reports each change."""
        deadline = time.monotonic() + wait_s
        seen = job.version
        while not job.state.terminal:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            seen = await anyio.to_thread.run_sync(job.wait_change, seen, min(remaining, 2.0), abandon_on_cancel=True)
            if on_change is not None and not job.state.terminal:
                await on_change(job)
        return True

    def _prune(self, principal: str) -> None:
        finished = sorted(
            (j for j in self._jobs.values() if j.principal == principal and j.state.terminal),
            key=lambda j: j.created_at,
        )
        for job in finished[: max(0, len(finished) - self._keep)]:
            del self._jobs[job.id]

    def shutdown(self) -> None:
        """Stop every job (interrupting it in Spark) and the worker threads."""
        with self._guard:
            queued = [job for waiting in self._waiting.values() for job, _ in waiting]
            self._waiting.clear()
        for job in queued:
            job.stop_reason = JobState.CANCELLED
            self._finish(job, JobState.CANCELLED, None, QueryCancelled("the server stopped before it started"))
        for job in self.running():
            with job._cond:
                job.stop_reason = job.stop_reason or JobState.CANCELLED
            with contextlib.suppress(SparkMcpError):
                job.interrupt(job.tag)
        self._pool.shutdown(wait=False, cancel_futures=True)
