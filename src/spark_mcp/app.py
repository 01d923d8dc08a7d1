"""The running service: configuration, policy, audit, state, the driver fleet, sessions, jobs, results.

``App.running(config)`` is the one place these are built and torn down. At start it opens
the state database, marks the jobs a dead server left behind as lost, re-adopts the
persistent drivers it can verify (stopping orphans), rejoins their sessions, and starts
the warm pool. When it exits, every job is interrupted; then, with ``server`` lifetime,
every session is released and every driver stopped, and with ``persistent`` lifetime the
drivers and their Spark sessions are left for the next server. The MCP layer
(``server.py``) wraps an ``App``; tests share one across many MCP clients.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

import anyio
import structlog

from spark_mcp.audit import AuditLog, Redactor
from spark_mcp.catalog import CatalogService
from spark_mcp.config import Config
from spark_mcp.drivers import Driver, Fleet, FleetHooks, Lifetime, Profile
from spark_mcp.drivers.credentials import secret_values
from spark_mcp.drivers.fleet import Backend
from spark_mcp.drivers.kubernetes_backend import KubernetesBackend
from spark_mcp.drivers.local import LocalBackend
from spark_mcp.drivers.profiles import check_credential_files, driver_memory_budget, resolve_profiles
from spark_mcp.drivers.recovery import recover, server_alive, this_server
from spark_mcp.drivers.sail import SailBackend
from spark_mcp.drivers.standalone import StandaloneBackend, read_cluster_secret
from spark_mcp.errors import ConfigError
from spark_mcp.execution import Executor
from spark_mcp.governance import Governance
from spark_mcp.identity import Principal
from spark_mcp.jobs import JobManager
from spark_mcp.journal import StateJournal
from spark_mcp.logs import configure_logging
from spark_mcp.materialize import Materializer
from spark_mcp.policy import Policy, load_policies
from spark_mcp.policy.profiles import unknown_profiles
from spark_mcp.results import ResultStore
from spark_mcp.sessions import SessionRegistry
from spark_mcp.spark.bootstrap import Preparer, has_analysis_plugin
from spark_mcp.spark.connect import load_client, open_session
from spark_mcp.spark.sail import session_setup as sail_session_setup
from spark_mcp.state import StateDB
from spark_mcp.state.db import state_path
from spark_mcp.state.drivers import DriverStore
from spark_mcp.state.jobs import JobStore
from spark_mcp.state.sessions import SessionStore

log = structlog.get_logger(__name__)

_HOUSEKEEPING_EVERY_S = 30.0
_STUCK_TASKS_EVERY_S = 2.0  # reading the new lines of each local driver's log


@dataclass(frozen=True)
class Preflight:
    """What start-up checks produce before any driver or MCP message: or a clean error."""

    policy: Policy
    profiles: dict[str, Profile]
    memory_budget: int


def preflight(config: Config) -> Preflight:
    """Every check that needs no driver: policies, profiles, credentials, memory, the state database.

    ``spark-mcp serve`` runs it before it speaks, so a bad setting or an unreadable state
    database is a clear error and an exit code, never a crash mid-protocol.
    """
    policy = load_policies(config.policies)
    profiles = resolve_profiles(config)
    problems = unknown_profiles(policy, profiles)
    if problems:
        raise ConfigError("invalid policy or configuration:\n  " + "\n  ".join(problems))
    check_credential_files(config)
    if config.driver.cluster_secret_file is not None:
        try:
            read_cluster_secret(config.driver.cluster_secret_file)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"invalid configuration:\n  driver.cluster_secret_file: {exc}") from exc
    budget = driver_memory_budget(config)
    config.home.mkdir(parents=True, exist_ok=True, mode=0o700)
    db = StateDB(state_path(config.home))
    try:
        DriverStore(db), SessionStore(db), JobStore(db)  # applies or refuses their schemas
    finally:
        db.close()
    return Preflight(policy, profiles, budget)


@dataclass
class App:
    config: Config
    policy: Policy
    governance: Governance
    redactor: Redactor
    audit: AuditLog
    state: StateDB
    drivers: Fleet
    sessions: SessionRegistry
    jobs: JobManager
    results: ResultStore
    executor: Executor
    materializer: Materializer
    catalog: CatalogService
    journal: StateJournal

    def principal(
        self,
        user_id: str,
        *,
        groups: Sequence[str] = (),
        auth: str = "stdio",
        token_id: str | None = None,
        read_only: bool = False,
    ) -> Principal:
        """A principal with the roles the policy gives ``user_id`` (and its OIDC ``groups``)."""
        return Principal(
            id=user_id,
            roles=self.policy.roles_for(user_id, groups),
            auth=auth,
            token_id=token_id,
            read_only=read_only,
        )

    @classmethod
    @asynccontextmanager
    async def running(cls, config: Config, *, environ: Mapping[str, str] | None = None) -> AsyncIterator[App]:
        if not structlog.is_configured():  # used as a library: never let logs fall back to stdout
            configure_logging(config.server.log_level)
        env = dict(os.environ if environ is None else environ)
        checked = preflight(config)
        db = StateDB(state_path(config.home))
        redactor = Redactor()
        for profile in checked.profiles.values():
            for secret in secret_values(profile):
                redactor.add_secret(secret)
        if config.driver.cluster_secret_file is not None:
            redactor.add_secret(read_cluster_secret(config.driver.cluster_secret_file))
        audit = AuditLog(config.audit_path, redactor)
        server = this_server()
        preparer = Preparer(config.datasets)
        late: dict[str, SessionRegistry | JobManager] = {}

        def registry() -> SessionRegistry:
            sessions = late["sessions"]
            assert isinstance(sessions, SessionRegistry)
            return sessions

        def running_jobs(driver: Driver) -> int:
            jobs = late["jobs"]
            assert isinstance(jobs, JobManager)
            return sum(1 for job in jobs.running() if registry().driver_of(job.session_id) is driver)

        async def prepare(driver: Driver, spare: bool) -> None:
            redactor.add_secret(driver.token)
            await anyio.to_thread.run_sync(prepare_driver, driver, preparer, spare)

        async def probe(driver: Driver) -> None:
            redactor.add_secret(driver.token)
            await anyio.to_thread.run_sync(probe_driver, driver, preparer)

        async def retire(driver: Driver, why: str) -> None:
            await registry().retire(driver, why)

        hooks = FleetHooks(
            prepare=prepare,
            retire=retire,
            on_lost=lambda driver: registry().on_driver_lost(driver),
            open_sessions=lambda driver: len(registry().on_driver(driver)),
            running_jobs=running_jobs,
        )
        driver_store = DriverStore(db)
        backends: dict[str, Backend] = {
            "local": LocalBackend(config, env),
            # Sail keeps its catalog per session: every new session registers the datasets.
            "sail": SailBackend(config, env, session_setup=sail_session_setup(config.datasets)),
        }
        if any(p.backend == "kubernetes" for p in checked.profiles.values()):
            backends["kubernetes"] = KubernetesBackend(config)
        if any(p.backend == "standalone" for p in checked.profiles.values()):
            backends["standalone"] = StandaloneBackend(config, env)
        fleet = Fleet(
            config,
            checked.profiles,
            backends,
            driver_store,
            server=server,
            memory_budget=checked.memory_budget,
            hooks=hooks,
        )
        sessions = SessionRegistry(
            fleet, SessionStore(db), idle_timeout_s=config.limits.session_idle_timeout_s, share=config.driver.share
        )
        results = ResultStore(config.home / "results", config.results, secrets=redactor.secrets)
        journal = StateJournal(JobStore(db), server, results.meta, redact=redactor.redact)
        lost_jobs = journal.mark_lost(server_alive)
        jobs = JobManager(
            max_workers=config.limits.max_concurrent_jobs,
            keep_per_principal=config.results.max_jobs_kept,
            per_driver=config.limits.max_jobs_per_driver,
            journal=journal,
        )
        late.update(sessions=sessions, jobs=jobs)
        governance = Governance(checked.policy, config.limits)
        executor = Executor(config=config, governance=governance, sessions=sessions, jobs=jobs, results=results)
        app = cls(
            config=config,
            policy=checked.policy,
            governance=governance,
            redactor=redactor,
            audit=audit,
            state=db,
            drivers=fleet,
            sessions=sessions,
            jobs=jobs,
            results=results,
            executor=executor,
            materializer=Materializer(executor, jobs, results),
            catalog=CatalogService(executor),
            journal=journal,
        )
        try:
            recovered = await recover(fleet, driver_store, probe)
            # Work a dead server left running in a rejoined session is interrupted, not left to burn.
            await sessions.restore(
                recovered.adopted,
                interrupt=[(row.session_id, f"spark-mcp-{row.id}") for row in lost_jobs],
                foreign=recovered.foreign,
            )
            log.info("app.started", home=str(config.home), policies=[str(p) for p in config.policies])
            async with anyio.create_task_group() as group:
                group.start_soon(app._housekeeping)
                # pyspark's client loads (~0.6 s) while the warm pool's first driver boots (issue 12).
                group.start_soon(anyio.to_thread.run_sync, load_client)
                group.start_soon(fleet.warm.run)
                if config.driver.task_kill_timeout_s > 0:
                    group.start_soon(app._stop_stuck_drivers)
                try:
                    yield app
                finally:
                    group.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await app.close()

    async def _housekeeping(self) -> None:
        quotas = self.config.quotas
        every = min([_HOUSEKEEPING_EVERY_S, *(t / 4 for t in (quotas.driver_idle_timeout_s,) if t > 0)])
        while True:
            await anyio.sleep(max(1.0, every))
            try:
                await self.sessions.expire_idle()
                await self.drivers.reap()
                self.drivers.flush_last_used()
                self.sessions.flush_last_used()
                await anyio.to_thread.run_sync(lambda: self.results.sweep())
                self.journal.prune(self.config.results.max_jobs_kept)
            except Exception:
                log.exception("housekeeping.failed")

    async def _stop_stuck_drivers(self) -> None:
        """Every few seconds: a driver that cannot stop a cancelled query's tasks is restarted."""
        while True:
            await anyio.sleep(_STUCK_TASKS_EVERY_S)
            try:
                await self.drivers.stop_stuck()
            except Exception:
                log.exception("stuck_tasks.check_failed")

    async def close(self) -> None:
        """Interrupt jobs; release sessions and stop drivers, or leave persistent ones. Safe to call twice."""
        await anyio.to_thread.run_sync(self.jobs.shutdown)
        keep = self.drivers.lifetime is Lifetime.PERSISTENT
        await self.sessions.close_all(release=not keep)
        await self.drivers.close()
        self.audit.close()
        self.state.close()
        log.info("app.stopped")


def prepare_driver(driver: Driver, preparer: Preparer, warm_up: bool = False) -> None:
    """Register datasets and learn the built-in functions, through a short-lived session.

    A spare is also warmed up, so that the first call of the principal who takes it is fast.
    """
    session = open_session(driver, user_id="spark-mcp-bootstrap")
    try:
        if driver.session_setup:
            # Opening the session registered the datasets (and showed they can be): an engine with
            # a catalog per session (Sail) has nothing to keep from registering them once more.
            driver.builtin_functions = preparer.builtin_functions(session)
        else:
            driver.builtin_functions = preparer.prepare(session)
        driver.analysis_plugin = has_analysis_plugin(session)
        if warm_up:
            preparer.warm_up(session)
    finally:
        session.close()


def probe_driver(driver: Driver, preparer: Preparer) -> None:
    """A re-adopted driver: check it answers with its token, and learn its built-ins (its datasets are there)."""
    session = open_session(driver, user_id="spark-mcp-bootstrap")
    try:
        driver.builtin_functions = preparer.builtin_functions(session)
        driver.analysis_plugin = has_analysis_plugin(session)
    finally:
        session.close()
