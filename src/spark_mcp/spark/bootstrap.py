"""Prepare a freshly started driver: register the configured datasets, learn its built-ins, quickly."""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, cast

import structlog

from spark_mcp.config import DatasetConfig
from spark_mcp.errors import DriverStartError
from spark_mcp.spark.connect import ConnectSession
from spark_mcp.spark.errors import translate
from spark_mcp.spark.runner import query_frame

log = structlog.get_logger(__name__)

_WORKERS = 4
_MAX_FINGERPRINT_FILES = 2000


def quote_ident(part: str) -> str:
    return "`" + part.replace("`", "``") + "`"


def quote_string(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def dataset_ddl(dataset: DatasetConfig, columns: str | None = None) -> str:
    """The statement registering ``dataset``; with ``columns`` (a schema in DDL) Spark infers nothing."""
    namespace, table = dataset.name.split(".", 1)
    options = {"path": dataset.path, **dataset.options}
    rendered = ", ".join(f"{quote_ident(k)} {quote_string(v)}" for k, v in options.items())
    comment = f" COMMENT {quote_string(dataset.comment)}" if dataset.comment else ""
    schema = f" ({columns})" if columns else ""
    return (
        f"CREATE TABLE IF NOT EXISTS {quote_ident(namespace)}.{quote_ident(table)}{schema} "
        f"USING {dataset.format} OPTIONS ({rendered}){comment}"
    )


def fingerprint(path: Path) -> str | None:
    """What a local dataset's files are now (names, sizes, times), or None if too many to say cheaply."""
    digest = hashlib.sha256()
    count = 0
    try:
        if path.is_file():
            info = path.stat()
            digest.update(f"{info.st_size}:{info.st_mtime_ns}".encode())
            return digest.hexdigest()
        for root, dirs, files in os.walk(path):
            dirs.sort()
            for name in sorted(files):
                info = (Path(root) / name).stat()
                digest.update(f"{root}/{name}:{info.st_size}:{info.st_mtime_ns}\n".encode())
                count += 1
                if count > _MAX_FINGERPRINT_FILES:
                    return None
    except OSError:
        return None
    return digest.hexdigest() if count else None


class Preparer:
    """Prepares new drivers, and remembers what is the same for every driver of this server.

    Registering a dataset makes Spark infer its schema by reading file footers (or, for
    CSV with ``inferSchema``, the data): about half a second per table. The first driver
    does that, then the schema is kept, keyed by the dataset and a fingerprint of its local
    files, and later drivers register the table with that schema given, which reads
    nothing. Partitioned tables, remote paths and datasets with very many files are always
    inferred. Tables are registered concurrently, and the built-in function list is learnt
    once per engine and version.
    """

    def __init__(self, datasets: Sequence[DatasetConfig]) -> None:
        self._datasets = tuple(datasets)
        self._schemas: dict[tuple[str, ...], str] = {}
        self._builtins: dict[tuple[str, str], frozenset[str]] = {}
        self._lock = threading.Lock()

    def prepare(self, session: ConnectSession) -> frozenset[str]:
        """Register every dataset on the session's driver; returns the driver's built-in functions."""
        self.register_datasets(session)
        return self.builtin_functions(session)

    def register_datasets(self, session: ConnectSession) -> None:
        for namespace in dict.fromkeys(d.namespace for d in self._datasets):
            _run(session, f"CREATE NAMESPACE IF NOT EXISTS {quote_ident(namespace)}", None)
        if not self._datasets:
            return
        with ThreadPoolExecutor(max_workers=min(_WORKERS, len(self._datasets)), thread_name_prefix="register") as pool:
            for future in [pool.submit(self._register, session, d) for d in self._datasets]:
                future.result()  # the first failure, naming its dataset
        log.info("driver.datasets_registered", count=len(self._datasets))

    def _register(self, session: ConnectSession, dataset: DatasetConfig) -> None:
        key = _schema_key(dataset)
        with self._lock:
            columns = self._schemas.get(key) if key else None
        if columns is not None:
            try:
                session.spark.sql(dataset_ddl(dataset, columns))
                return
            except Exception as exc:  # a schema Spark reads back but will not take as DDL: infer instead
                log.debug("dataset.schema_not_reusable", dataset=dataset.name, error=type(exc).__name__)
        _run(session, dataset_ddl(dataset), dataset)
        if key:
            learnt = _columns(session, dataset)
            if learnt is not None:
                with self._lock:
                    self._schemas[key] = learnt

    def warm_up(self, session: ConnectSession) -> None:
        """Run once what a first call runs (analysis, a scan of each format, Arrow results).

        A fresh JVM loads and compiles that code on first use, which makes the first real
        call several times slower than the next; a spare waiting in the pool pays it instead.
        Best effort: a failure here only means the first call pays it after all.
        """
        statements = ["SELECT 1 AS one"]
        by_format = {d.format: d for d in self._datasets}
        statements += [f"SELECT * FROM {_quoted(d.name)} LIMIT 1" for d in by_format.values()]
        for statement in statements:
            try:
                # The analysis every call makes (spark.analyze), then the statement's Arrow result.
                cast(Any, query_frame(session, statement))._explain_string(extended=True)
                session.spark.sql(statement).toArrow()
            except Exception as exc:
                log.debug("driver.warm_up_failed", error=type(exc).__name__)

    def builtin_functions(self, session: ConnectSession) -> frozenset[str]:
        """Names of Spark's built-in functions on this driver (what is not here is a UDF)."""
        driver = session.driver
        key = (driver.engine, driver.spark_version)
        with self._lock:
            known = self._builtins.get(key)
        if known is not None and driver.spark_version:
            return known
        try:
            rows = session.spark.sql("SHOW SYSTEM FUNCTIONS").collect()
        except Exception as exc:
            raise translate(exc) from None
        names = frozenset(str(row[0]).lower() for row in rows)
        with self._lock:
            self._builtins[key] = names
        return names


def has_analysis_plugin(session: ConnectSession) -> bool:
    """Whether the driver's analysis plugin answers (``drivers.analysis_plugin``): asked of the
    driver itself, so that one started without it, by another backend or by an earlier
    server (adopted), is simply analysed the slower way."""
    if session.driver.engine != "spark":
        return False
    # Imported here: importing the server must not load pyspark (test_lazy_imports).
    from pyspark.sql.connect.proto import base_pb2

    from spark_mcp.spark.wire.analysed import PLAN_TEXT_START, analysed_relation

    plan = base_pb2.Plan()
    plan.root.CopyFrom(analysed_relation(cast(Any, session.spark.range(1))._plan.to_proto(session.spark.client).root))
    try:
        result = session.spark.client._analyze(method="schema", plan=plan)
    except Exception as exc:  # no such plugin here: Spark's "No handler found for extension"
        log.info("driver.analysis_plugin_absent", driver_id=session.driver.id, error=type(exc).__name__)
        return False
    fields = getattr(result.schema, "fields", None) or []
    return bool(fields) and str(fields[-1].name).startswith(PLAN_TEXT_START)


def _quoted(name: str) -> str:
    return ".".join(quote_ident(part) for part in name.split("."))


def _schema_key(dataset: DatasetConfig) -> tuple[str, ...] | None:
    local = dataset.local_path
    stamp = fingerprint(local) if local is not None else None
    if stamp is None:
        return None
    options = json.dumps(dataset.options, sort_keys=True)
    return (dataset.name, dataset.path, dataset.format, options, dataset.comment or "", stamp)


def _columns(session: ConnectSession, dataset: DatasetConfig) -> str | None:
    """The table's schema as DDL columns, or None when it must be inferred each time (partitions)."""
    try:
        columns = session.spark.catalog.listColumns(dataset.name)
    except Exception:
        return None
    if not columns or any(c.isPartition for c in columns):
        return None
    return ", ".join(f"{quote_ident(c.name)} {c.dataType}" for c in columns)


def _run(session: ConnectSession, statement: str, dataset: DatasetConfig | None) -> None:
    try:
        session.spark.sql(statement)
    except Exception as exc:
        error = translate(exc)
        if dataset is None:
            raise DriverStartError(f"a dataset namespace could not be created: {error}") from None
        raise DriverStartError(
            f"dataset {dataset.name} ({dataset.format} at {dataset.path}) could not be registered: {error}. "
            "Fix the [[datasets]] entry in the config."
        ) from None
