"""SQL listings through the gateway: ``SHOW NAMESPACES``, ``SHOW TABLES``, ``SHOW VIEWS``, filtered.

BI tools and IDEs list what they can browse in SQL: the JDBC driver's ``getSchemas``,
``getTables`` and ``getColumns`` run ``SHOW SCHEMAS IN spark_catalog``, then ``SHOW TABLES``
and ``SHOW VIEWS`` in each namespace. Judged as statements, each reads a whole catalog or
namespace, so a caller who may read only part of it was refused, and the tool showed nothing.

Through the gateway they are answered like ``spark.catalog.listTables()`` (``catalog``): the
caller needs ``catalog.read``, the namespace listed must be visible to it, and only the rows
it may see come back: visible namespaces, readable tables and views, and its own temp views.
Spark runs a SQL command at once and sends its rows with the answer (a local relation in
``SqlCommandResult``), so the rows are filtered there; the client builds what follows on
those rows alone.

Only the plain forms of the session catalog are listings here, recognised from the plan
Spark analysed: ``SHOW TABLE EXTENDED`` (which prints each table's schema), listings of
other catalogs, and anything shaped otherwise keep the rules of any statement.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from spark_mcp.governance import Governance
from spark_mcp.identity import Principal
from spark_mcp.policy import SESSION_CATALOG
from spark_mcp.statement import TableName

_NAME = r"[A-Za-z0-9_]+"
_NAMESPACES = re.compile(r"ShowNamespacesCommand (?:.*, )?\[namespace#\d+\]")
_TABLES = re.compile(r"ShowTables (?:.*, )?\[namespace#\d+, tableName#\d+, isTemporary#\d+\]")
_VIEWS = re.compile(rf"ShowViewsCommand (?P<ns>{_NAME}), (?:.*, )?\[namespace#\d+, viewName#\d+, isTemporary#\d+\]")
_SESSION_CATALOG = "+- ResolvedNamespace V2SessionCatalog(spark_catalog)"
_IN_NAMESPACE = re.compile(rf"\+- ResolvedNamespace V2SessionCatalog\(spark_catalog\), \[(?P<ns>{_NAME})\]")


@dataclass(frozen=True)
class SqlListing:
    what: Literal["namespaces", "tables", "views"]
    namespace: str | None  # the namespace whose tables or views are listed, in the session catalog

    @property
    def name_column(self) -> str:
        return "viewName" if self.what == "views" else "tableName"


def sql_listing(plan: str | None) -> SqlListing | None:
    """The listing an analysed plan is, in one of its plain forms, or None."""
    lines = (plan or "").strip().splitlines()
    if len(lines) == 2 and _NAMESPACES.fullmatch(lines[0]) and lines[1] == _SESSION_CATALOG:
        return SqlListing("namespaces", None)
    if len(lines) == 2 and _TABLES.fullmatch(lines[0]) and (found := _IN_NAMESPACE.fullmatch(lines[1])):
        return SqlListing("tables", found.group("ns"))
    if len(lines) == 1 and (found := _VIEWS.fullmatch(lines[0])):
        return SqlListing("views", found.group("ns"))
    return None


def row_visible(governance: Governance, principal: Principal, listing: SqlListing, row: dict[str, Any]) -> bool:
    """Whether a row of ``listing`` may be shown to ``principal``."""
    namespace = str(row.get("namespace") or "")
    if listing.what == "namespaces":
        return bool(namespace) and governance.visible(principal, SESSION_CATALOG, namespace)
    name = str(row.get(listing.name_column) or "")
    return table_visible(governance, principal, SESSION_CATALOG, namespace, name, bool(row.get("isTemporary")))


def table_visible(
    governance: Governance, principal: Principal, catalog: str, namespace: str, name: str, temporary: bool
) -> bool:
    """Whether a listing (SQL's, or ``spark.catalog``'s) may show a table or view: one the caller
    may read, or a temp view of its own session (no namespace)."""
    if temporary and not namespace:
        return True
    if not namespace or not name:
        return False
    return governance.readable(principal, TableName.of(catalog, namespace, name))
