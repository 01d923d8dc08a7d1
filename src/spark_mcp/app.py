"""The running service: configuration, policy, audit, drivers, sessions, jobs and results.

``App.running(config)`` is the one place these are built and torn down: when it exits,
every job is interrupted, every session released and every driver stopped. The MCP
layer (``server.py``) wraps an ``App``; tests share one across many MCP clients.
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
from spark_mcp.drivers import Driver, DriverPool
from spark_mcp.drivers.kubernetes_backend import KubernetesBackend
from spark_mcp.drivers.local import LocalBackend
from spark_mcp.drivers.pool import Backend
from spark_mcp.drivers.sail import SailBackend
from spark_mcp.execution import Executor
from spark_mcp.governance import Governance
from spark_mcp.identity import Principal
from spark_mcp.jobs import JobManager
from spark_mcp.logs import configure_logging
from spark_mcp.materialize import Materializer
from spark_mcp.policy import Policy, load_policies
from spark_mcp.results import ResultStore
from spark_mcp.sessions import SessionRegistry
from spark_mcp.spark import bootstrap
from spark_mcp.spark.connect import open_session
from spark_mcp.spark.sail import session_setup as sail_session_setup

log = structlog.get_logger(__name__)

_HOUSEKEEPING_EVERY_S = 30.0


@dataclass
class App:
    config: Config
    policy: Policy
    governance: Governance
    redactor: Redactor
    audit: AuditLog
    drivers: DriverPool
    sessions: SessionRegistry
    jobs: JobManager
    results: ResultStore
    executor: Executor
    materializer: Materializer
    catalog: CatalogService

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
        policy = load_policies(config.policies)
        config.home.mkdir(parents=True, exist_ok=True, mode=0o700)
        redactor = Redactor()
        audit = AuditLog(config.audit_path, redactor)
        sessions_box: list[SessionRegistry] = []

        async def on_ready(driver: Driver) -> None:
            redactor.add_secret(driver.token)
            await anyio.to_thread.run_sync(prepare_driver, driver, config)

        def on_lost(driver: Driver) -> None:
            if sessions_box:
                sessions_box[0].on_driver_lost(driver)

        # Sail keeps its catalog per session: every new session registers the datasets.
        sail = SailBackend(config, env, session_setup=sail_session_setup(config.datasets))
        spark: Backend = (
            KubernetesBackend(config) if config.driver.backend == "kubernetes" else LocalBackend(config, env)
        )
        pool = DriverPool(spark, on_ready=on_ready, on_lost=on_lost, engines={"sail": sail})
        sessions = SessionRegistry(
            pool, idle_timeout_s=config.limits.session_idle_timeout_s, default_engine=config.driver.engine
        )
        sessions_box.append(sessions)
        jobs = JobManager(
            max_workers=config.limits.max_concurrent_jobs,
            keep_per_principal=config.results.max_jobs_kept,
            per_driver=config.limits.max_jobs_per_driver,
        )
        results = ResultStore(config.home / "results", config.results, secrets=redactor.secrets)
        governance = Governance(policy, config.limits)
        executor = Executor(config=config, governance=governance, sessions=sessions, jobs=jobs, results=results)
        app = cls(
            config=config,
            policy=policy,
            governance=governance,
            redactor=redactor,
            audit=audit,
            drivers=pool,
            sessions=sessions,
            jobs=jobs,
            results=results,
            executor=executor,
            materializer=Materializer(executor, jobs, results),
            catalog=CatalogService(executor),
        )
        log.info("app.started", home=str(config.home), policies=[str(p) for p in config.policies])
        try:
            async with anyio.create_task_group() as group:
                group.start_soon(app._housekeeping)
                try:
                    yield app
                finally:
                    group.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await app.close()

    async def _housekeeping(self) -> None:
        while True:
            await anyio.sleep(_HOUSEKEEPING_EVERY_S)
            try:
                await self.sessions.expire_idle()
                await anyio.to_thread.run_sync(lambda: self.results.sweep())
            except Exception:
                log.exception("housekeeping.failed")

    async def close(self) -> None:
        """Interrupt jobs, release sessions, stop drivers. Safe to call twice."""
        await anyio.to_thread.run_sync(self.jobs.shutdown)
        await self.sessions.close_all()
        await self.drivers.stop_all()
        self.audit.close()
        log.info("app.stopped")


def prepare_driver(driver: Driver, config: Config) -> None:
    """Register datasets and learn the built-in functions, through a short-lived session."""
    session = open_session(driver, user_id="spark-mcp-bootstrap")
    try:
        bootstrap.register_datasets(session, config.datasets)
        driver.builtin_functions = bootstrap.builtin_functions(session)
    finally:
        session.close()
