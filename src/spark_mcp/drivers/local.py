"""The local backend: a Spark Connect server JVM on this machine, from pyspark's own jars.

Each driver gets a free loopback port, a fresh random token passed in its environment
(never argv), its own folder under ``<home>/drivers/<id>`` with its log, scratch space and
(for the in-memory catalog) warehouse, and the memory and cores from config.
"""

from __future__ import annotations

import os
import re
import secrets
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import anyio
import structlog

from spark_mcp.config import Config
from spark_mcp.drivers.base import Driver, DriverState
from spark_mcp.drivers.environment import check_java, spark_home, spark_version
from spark_mcp.drivers.process import free_loopback_port, spawn, terminate
from spark_mcp.drivers.state import DriverRecord, drivers_dir, ensure_private_dir, remove_record, write_record
from spark_mcp.errors import DriverStartError

log = structlog.get_logger(__name__)

READY_LINE = "Spark Connect server started at"
_PORT_CLASH = re.compile(r"Address already in use|Failed to bind|BindException", re.IGNORECASE)
_INTERESTING = re.compile(r"\b(ERROR|FATAL)\b|Exception|Error:|Caused by|error:", re.IGNORECASE)
_PORT_ATTEMPTS = 3


def driver_argv(config: Config, *, driver_id: str, port: int, workdir: Path, principal: str) -> list[str]:
    """The spark-submit command line. It holds no secret: the token travels in the environment."""
    home = spark_home()
    if config.driver.catalog == "hive":
        principal_dir = config.home / "principals" / principal
        warehouse = principal_dir / "warehouse"
        metastore = f"jdbc:derby:;databaseName={principal_dir / 'metastore_db'};create=true"
        catalog_conf = [
            "spark.sql.catalogImplementation=hive",
            f"spark.hadoop.javax.jdo.option.ConnectionURL={metastore}",
        ]
    else:
        warehouse = workdir / "warehouse"
        catalog_conf = ["spark.sql.catalogImplementation=in-memory"]
    conf = [
        "spark.connect.grpc.binding.address=127.0.0.1",
        f"spark.connect.grpc.binding.port={port}",
        # Spark's own RPC and block manager would otherwise listen on the host's address.
        "spark.driver.bindAddress=127.0.0.1",
        "spark.driver.host=127.0.0.1",
        "spark.ui.enabled=false",
        # ${env:...} substitution would hand the driver's environment, token included, to any SQL.
        "spark.sql.variable.substitute=false",
        # format.`/path` reads bypass the table model; EXPLAIN itself opens the file to infer a schema.
        "spark.sql.runSQLOnFiles=false",
        # Plans print at most this many fields; past it, a column (and a reflect() call in it) is
        # omitted from EXPLAIN, which plan inspection must see in full.
        "spark.sql.debug.maxToStringFields=100000",
        f"spark.sql.warehouse.dir={warehouse}",
        f"spark.local.dir={workdir / 'tmp'}",
        f"spark.driver.extraJavaOptions=-Dderby.system.home={workdir}",
        # Lets `spark-mcp drivers stop` check that a pid from a state file is really this driver.
        f"spark.mcp.driver.id={driver_id}",
        *catalog_conf,
        *(f"{key}={value}" for key, value in sorted(config.driver.spark_conf.items())),
    ]
    argv = [
        str(home / "bin" / "spark-submit"),
        "--class",
        "org.apache.spark.sql.connect.service.SparkConnectServer",
        "--name",
        f"spark-mcp-{driver_id}",
        "--master",
        f"local[{config.driver.cores}]",
        "--driver-memory",
        config.driver.memory,
    ]
    for item in conf:
        argv += ["--conf", item]
    argv.append("spark-internal")
    return argv


def driver_env(config: Config, environ: Mapping[str, str], token: str) -> dict[str, str]:
    env = {
        k: v for k, v in environ.items() if not k.startswith("SPARK_MCP_") and k != "SPARK_CONNECT_AUTHENTICATE_TOKEN"
    }
    env["SPARK_HOME"] = str(spark_home())
    env["SPARK_CONNECT_AUTHENTICATE_TOKEN"] = token
    # Python UDFs (allowed to code.run through the gateway) run in workers of this Python,
    # which has pyarrow and pandas; PATH's python3 may not. An operator's choice wins.
    env.setdefault("PYSPARK_PYTHON", sys.executable)
    if config.driver.java_home:
        env["JAVA_HOME"] = config.driver.java_home
    return env


def log_excerpt(log_path: Path, *, limit: int = 12) -> str:
    """The lines of a driver log that explain a failure: errors first, then the tail."""
    try:
        lines = log_path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log was written)"
    interesting = [line for line in lines if _INTERESTING.search(line) and not line.startswith("\tat ")]
    tail = [line for line in lines[-6:] if line not in interesting]
    picked = (interesting[:limit] + tail)[: limit + 6]
    return "\n".join(f"  {line[:300]}" for line in picked) or "(the log is empty)"


class LocalBackend:
    """Starts and stops driver JVMs on this machine."""

    name = "local"

    def __init__(self, config: Config, environ: Mapping[str, str]) -> None:
        self._config = config
        self._environ = dict(environ)

    async def start(self, principal: str) -> Driver:
        java = check_java(self._config.driver.java_home, self._environ)
        if java.problem:
            raise DriverStartError(f"cannot start a Spark driver: {java.problem}. Run `spark-mcp doctor` for details.")
        last_error: DriverStartError | None = None
        for _ in range(_PORT_ATTEMPTS):
            driver = self._launch(principal)
            try:
                await self._wait_ready(driver)
                return driver
            except DriverStartError as exc:
                last_error = exc
                if not _PORT_CLASH.search(driver.log_path.read_text(errors="replace")):
                    raise
                log.warning("driver.port_clash", driver_id=driver.id, port=driver.port)
        assert last_error is not None
        raise last_error

    def _launch(self, principal: str) -> Driver:
        driver_id = f"drv-{secrets.token_hex(5)}"
        workdir = ensure_private_dir(drivers_dir(self._config.home) / driver_id)
        ensure_private_dir(workdir / "tmp")
        if self._config.driver.catalog == "hive":
            ensure_private_dir(self._config.home / "principals" / principal)
        port = free_loopback_port()
        token = secrets.token_urlsafe(32)
        log_path = workdir / "driver.log"
        argv = driver_argv(self._config, driver_id=driver_id, port=port, workdir=workdir, principal=principal)
        process = spawn(argv, env=driver_env(self._config, self._environ, token), cwd=workdir, log_path=log_path)
        driver = Driver(
            id=driver_id,
            principal=principal,
            backend=self.name,
            host="localhost",  # the Python client sends a token without TLS only to "localhost"
            port=port,
            workdir=workdir,
            log_path=log_path,
            token=token,
            process=process,
            spark_version=spark_version(),
        )
        write_record(
            DriverRecord(
                driver_id=driver_id,
                principal=principal,
                backend=self.name,
                pid=process.pid,
                port=port,
                server_pid=os.getpid(),
                started_at=driver.started_at,
                workdir=str(workdir),
                log=str(log_path),
            )
        )
        log.info("driver.starting", driver_id=driver_id, principal=principal, port=port, pid=process.pid)
        return driver

    async def _wait_ready(self, driver: Driver) -> None:
        assert driver.process is not None
        deadline = time.monotonic() + self._config.driver.startup_timeout_s
        offset = 0
        while True:
            try:
                with driver.log_path.open("r", errors="replace") as handle:
                    handle.seek(offset)
                    chunk = handle.read()
            except OSError:
                chunk = ""
            if READY_LINE in chunk:
                driver.state = DriverState.READY
                driver.ready_at = time.time()
                log.info("driver.ready", driver_id=driver.id, seconds=round(driver.ready_at - driver.started_at, 1))
                return
            # Keep the tail of what we read so a ready line split across reads is still seen.
            offset += max(0, len(chunk.encode()) - len(READY_LINE))
            code = driver.process.poll()
            if code is not None:
                await self._fail(driver, f"the driver exited with code {code} before it was ready")
            if time.monotonic() > deadline:
                await self._fail(
                    driver,
                    f"the driver was not ready within {self._config.driver.startup_timeout_s:g} s "
                    "(raise driver.startup_timeout_s on a slow machine)",
                )
            await anyio.sleep(0.1)

    async def _fail(self, driver: Driver, why: str) -> None:
        driver.state = DriverState.FAILED
        await self.stop(driver)
        driver.state = DriverState.FAILED
        raise DriverStartError(f"{why}. From its log ({driver.log_path}):\n{log_excerpt(driver.log_path)}")

    async def stop(self, driver: Driver) -> None:
        """Stop the JVM (SIGTERM, then SIGKILL after driver.stop_timeout_s) and forget its state file."""
        if driver.process is not None and driver.process.poll() is None:
            driver.state = DriverState.STOPPING
            process = driver.process
            await anyio.to_thread.run_sync(
                lambda: terminate(process.pid, timeout_s=self._config.driver.stop_timeout_s, proc=process)
            )
        if driver.process is not None:
            driver.exit_code = driver.process.poll()
        if driver.state is not DriverState.FAILED:
            driver.state = DriverState.STOPPED
        remove_record(driver.workdir)
        log.info("driver.stopped", driver_id=driver.id, exit_code=driver.exit_code)
