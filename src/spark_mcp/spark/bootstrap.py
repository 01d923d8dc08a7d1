"""Prepare a freshly started driver: register the configured datasets, learn its built-ins."""

from __future__ import annotations

from collections.abc import Sequence

import structlog

from spark_mcp.config import DatasetConfig
from spark_mcp.errors import DriverStartError
from spark_mcp.spark.connect import ConnectSession
from spark_mcp.spark.errors import translate

log = structlog.get_logger(__name__)


def quote_ident(part: str) -> str:
    return "`" + part.replace("`", "``") + "`"


def quote_string(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def dataset_ddl(dataset: DatasetConfig) -> list[str]:
    namespace, table = dataset.name.split(".", 1)
    options = {"path": dataset.path, **dataset.options}
    rendered = ", ".join(f"{quote_ident(k)} {quote_string(v)}" for k, v in options.items())
    comment = f" COMMENT {quote_string(dataset.comment)}" if dataset.comment else ""
    return [
        f"CREATE NAMESPACE IF NOT EXISTS {quote_ident(namespace)}",
        f"CREATE TABLE IF NOT EXISTS {quote_ident(namespace)}.{quote_ident(table)} "
        f"USING {dataset.format} OPTIONS ({rendered}){comment}",
    ]


def register_datasets(session: ConnectSession, datasets: Sequence[DatasetConfig]) -> None:
    for dataset in datasets:
        for statement in dataset_ddl(dataset):
            try:
                session.spark.sql(statement)
            except Exception as exc:
                error = translate(exc)
                raise DriverStartError(
                    f"dataset {dataset.name} ({dataset.format} at {dataset.path}) could not be registered: {error}. "
                    "Fix the [[datasets]] entry in the config."
                ) from None
    if datasets:
        log.info("driver.datasets_registered", count=len(datasets))


def builtin_functions(session: ConnectSession) -> frozenset[str]:
    """Names of Spark's built-in functions on this driver (what is not here is a UDF)."""
    try:
        rows = session.spark.sql("SHOW SYSTEM FUNCTIONS").collect()
    except Exception as exc:
        raise translate(exc) from None
    return frozenset(str(row[0]).lower() for row in rows)
