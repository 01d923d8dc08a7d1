"""A local or standalone driver's command line and environment: what spark-submit is given.

The settings that carry spark-mcp's invariants come last, so nothing a config adds can undo
them; the token travels in the environment, never in argv (which every local user can read).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from spark_mcp.config import Config
from spark_mcp.drivers import analysis_plugin
from spark_mcp.drivers.credentials import StagedCredentials
from spark_mcp.drivers.environment import spark_home
from spark_mcp.drivers.stuck_tasks import LOG4J_FILE, task_reaper_settings

if TYPE_CHECKING:
    from spark_mcp.drivers.local import DriverSpec


def managed_settings(
    config: Config,
    *,
    driver_id: str,
    port: int,
    workdir: Path,
    metastore_dir: Path | None,
    driver_address: str = "127.0.0.1",
    java_options: Sequence[str] = (),
    plugin_jar: Path | None = None,
) -> list[tuple[str, str]]:
    """The settings that carry spark-mcp's invariants. They come last in argv, after anything a
    config adds, so nothing can undo them (spark-submit keeps the last ``--conf`` of a key);
    their keys are ``config.spark_conf.MANAGED_KEYS``, which no config may set anyway.

    ``driver_address`` is where Spark's own RPC and block manager listen: loopback, or for a
    standalone cluster on other hosts the private address its executors reach (the Connect
    port, which clients use, stays on loopback either way). ``java_options`` are the JVM's own
    (the class archive's, ``class_cache``); ``plugin_jar`` is the gateway's analysis plugin
    (``analysis_plugin``), when there is one."""
    if metastore_dir is not None:
        warehouse = metastore_dir / "warehouse"
        catalog = [
            ("spark.sql.catalogImplementation", "hive"),
            (
                "spark.hadoop.javax.jdo.option.ConnectionURL",
                f"jdbc:derby:;databaseName={metastore_dir / 'metastore_db'};create=true",
            ),
        ]
    else:
        warehouse = workdir / "warehouse"
        catalog = [("spark.sql.catalogImplementation", "in-memory")]
    # Spark's own session timeout must not end a session spark-mcp still considers open.
    session_timeout_s = int(config.limits.session_idle_timeout_s) + 600
    return [
        ("spark.connect.grpc.binding.address", "127.0.0.1"),
        ("spark.connect.grpc.binding.port", str(port)),
        ("spark.connect.session.manager.defaultSessionTimeout", f"{session_timeout_s}s"),
        # Spark's own RPC and block manager would otherwise listen on the host's address.
        ("spark.driver.bindAddress", driver_address),
        ("spark.driver.host", driver_address),
        ("spark.ui.enabled", "false"),
        # ${env:...} substitution would hand the driver's environment, token included, to any SQL.
        ("spark.sql.variable.substitute", "false"),
        # format.`/path` reads bypass the table model; EXPLAIN itself opens the file to infer a schema.
        ("spark.sql.runSQLOnFiles", "false"),
        # Plans print at most this many fields; past it, a column (and a reflect() call in it) is
        # omitted from EXPLAIN, which plan inspection must see in full.
        ("spark.sql.debug.maxToStringFields", "100000"),
        ("spark.sql.warehouse.dir", str(warehouse)),
        ("spark.local.dir", str(workdir / "tmp")),
        # Spark Connect keeps each session's artifacts and cached local relations (client data)
        # under java.io.tmpdir: in the driver's private folder, not in a world-readable /tmp.
        (
            "spark.driver.extraJavaOptions",
            " ".join(
                [
                    f"-Djava.io.tmpdir={workdir / 'tmp'}",
                    f"-Dderby.system.home={workdir}",
                    # Spark's own logging, plus the task reaper's log of its own (``stuck_tasks``).
                    f"-Dlog4j2.configurationFile={workdir / LOG4J_FILE}",
                    *java_options,
                ]
            ),
        ),
        *catalog,
        *task_reaper_settings(config.driver.task_kill_timeout_s),
        *(analysis_plugin.settings(plugin_jar) if plugin_jar is not None else []),
        # Lets a server or `spark-mcp drivers` check that a pid is really this driver before signalling it.
        ("spark.mcp.driver.id", driver_id),
    ]


def driver_argv(
    config: Config,
    spec: DriverSpec,
    *,
    driver_id: str,
    port: int,
    workdir: Path,
    credentials: StagedCredentials,
    master: str | None = None,
    cluster: Sequence[tuple[str, str]] = (),
    driver_address: str = "127.0.0.1",
    options: Sequence[str] = (),
    java_options: Sequence[str] = (),
    plugin_jar: Path | None = None,
) -> list[str]:
    """The spark-submit command line. It holds no secret: the token travels in the environment.

    ``master`` defaults to ``local[cores]``; ``cluster`` (a standalone driver's executor
    settings) comes after the profile's settings and before the managed ones; ``options``
    are spark-submit options (``--properties-file`` of a file holding a secret).
    """
    profile = spec.profile
    conf: list[tuple[str, str]] = sorted(profile.spark_conf.items())
    if profile.credentials.kerberos_principal and credentials.keytab is not None:
        conf += [
            ("spark.kerberos.principal", profile.credentials.kerberos_principal),
            ("spark.kerberos.keytab", str(credentials.keytab)),
        ]
    conf += cluster
    conf += managed_settings(
        config,
        driver_id=driver_id,
        port=port,
        workdir=workdir,
        metastore_dir=spec.metastore_dir,
        driver_address=driver_address,
        java_options=java_options,
        plugin_jar=plugin_jar,
    )
    argv = [
        str(spark_home() / "bin" / "spark-submit"),
        *options,
        "--class",
        "org.apache.spark.sql.connect.service.SparkConnectServer",
        "--name",
        f"spark-mcp-{driver_id}",
        "--master",
        master or f"local[{profile.cores}]",
        "--driver-memory",
        profile.memory,
    ]
    for key, value in conf:
        argv += ["--conf", f"{key}={value}"]
    argv.append("spark-internal")
    return argv


def driver_env(
    config: Config, environ: Mapping[str, str], token: str, credentials: StagedCredentials
) -> dict[str, str]:
    env = {
        k: v for k, v in environ.items() if not k.startswith("SPARK_MCP_") and k != "SPARK_CONNECT_AUTHENTICATE_TOKEN"
    }
    env.update(credentials.env)  # allowlisted names only (config.driver_env), secrets included
    env["SPARK_HOME"] = str(spark_home())
    env["SPARK_CONNECT_AUTHENTICATE_TOKEN"] = token
    # Python UDFs (allowed to code.run through the gateway) run in workers of this Python,
    # which has pyarrow and pandas; PATH's python3 may not. An operator's choice wins.
    env.setdefault("PYSPARK_PYTHON", sys.executable)
    if config.driver.java_home:
        env["JAVA_HOME"] = config.driver.java_home
    return env
