"""``spark.catalog.*`` through the gateway: each call governed like the catalog tools.

A catalog call is a ``catalog`` relation that Spark performs while planning it, so it is
decided here from its arguments and never analysed first:

- listings (``listTables``, ``listViews``, ``listDatabases``, ``listCatalogs``) need
  ``catalog.read``; a named namespace must be visible to the caller, and the rows that come
  back are filtered: only readable tables, visible namespaces and catalogs, and the caller's
  own temp views are shown;
- calls about one table (``listColumns``, ``getTable``, ``tableExists``...) resolve the name
  as the session would (Spark explains ``spark.table(name)``, views expanded) and are judged
  like ``describe_table``: a view over a table the caller may not read is refused too;
- calls about a namespace or catalog need it to be visible; ``currentDatabase`` and the
  function calls need ``catalog.read``; dropping one's own temp view is ``sql.read``;
- ``createTable`` is judged like ``CREATE TABLE`` (``sql.ddl``, write rights on the table as
  Spark resolves the name); a path, a ``path`` option or a source that is not a file format
  is ``sql.admin``, as for ``df.write``;
- everything else that changes the catalog or the cache is ``sql.admin``, with the table
  rules on the table it names.

Inside a plan (a JVM client's ``spark.catalog().listTables().show()``, ``.count()``), a
catalog call that only reads is governed the same way and run first, on its own; its rows,
filtered, then stand in the plan as data (``inline_listings``), so nothing counts or shows a
row the caller may not see. One that changes anything stays refused there.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from pyspark.sql.connect.proto import catalog_pb2, relations_pb2

from spark_mcp.gateway.analysis import as_written
from spark_mcp.gateway.commands import format_dangers, path_dangers, write_target
from spark_mcp.gateway.govern import Governor
from spark_mcp.gateway.listings import table_visible
from spark_mcp.policy import SESSION_CATALOG
from spark_mcp.spark.analyze import Analysis
from spark_mcp.spark.wire.requests import name_parts, quoted, table_relation
from spark_mcp.spark.wire.responses import listing_data
from spark_mcp.spark.wire.screen import children
from spark_mcp.statement import STARTING_NAMESPACE, Danger, DangerKind, StatementFacts, StatementKind, TableName

RowFilter = Callable[[dict[str, Any]], bool]

_PLAIN = frozenset({"current_database", "current_catalog", "list_functions", "get_function", "function_exists"})
_TABLE_READS = frozenset(
    {
        "list_columns",
        "get_table",
        "table_exists",
        "is_cached",
        "list_partitions",
        "get_table_properties",
        "get_create_table_string",
    }
)
_NAMESPACES = frozenset({"get_database", "database_exists", "set_current_database"})
_LISTINGS = frozenset({"list_tables", "list_views", "list_databases", "list_catalogs"})
# Those that only read: the ones a plan may hold (``inline_listings``).
_READ_ONLY = _PLAIN | _TABLE_READS | _LISTINGS | {"get_database", "database_exists"}

Fetch = Callable[[relations_pb2.Relation], Awaitable[Sequence[bytes]]]  # a relation's answers from the driver


async def govern_catalog(governor: Governor, catalog: catalog_pb2.Catalog) -> RowFilter | None:
    """Refuse (raise) or allow a catalog call; a listing comes back with the filter for its rows."""
    op = catalog.WhichOneof("cat_type") or "(none)"
    call: Any = getattr(catalog, op, None)
    governance, principal = governor.governance, governor.principal
    governor.call.record.fields.update(statement=f"spark.catalog.{op}", kind=StatementKind.METADATA.value)
    if op in _PLAIN:
        governance.require(principal, "catalog.read")
        if getattr(call, "db_name", ""):
            _visible(governor, call.db_name)
        return None
    if op in ("list_tables", "list_views"):
        governance.require(principal, "catalog.read")
        if call.db_name:
            _visible(governor, call.db_name)
        return lambda row: _table_row_visible(governor, row)
    if op == "list_databases":
        governance.require(principal, "catalog.read")
        return lambda row: governance.visible(principal, row.get("catalog") or SESSION_CATALOG, str(row.get("name")))
    if op == "list_catalogs":
        governance.require(principal, "catalog.read")
        return lambda row: governance.visible(principal, str(row.get("name")))
    if op in _NAMESPACES:
        governance.require(principal, "catalog.read")
        if not (op == "set_current_database" and _starting(call.db_name)):
            _visible(governor, call.db_name)  # back to where the session started tells nothing (as USE)
        return None
    if op == "set_current_catalog":
        governance.require_visible(principal, call.catalog_name)
        return None
    if op in _TABLE_READS:
        name = _table_name(call)
        analysis, _ = await governor.analyst.explain(table_relation(name), f"spark.catalog.{op}({name})")
        if (
            analysis.error is not None
            and op == "table_exists"
            and analysis.error.error_class.startswith("TABLE_OR_VIEW_NOT_FOUND")
        ):
            # Spark answers False. A name the caller could not read if it existed is refused as
            # if it did: refusing only the ones that exist would tell which ones do.
            facts = StatementFacts(StatementKind.QUERY, op, reads=as_written(name))
            analysis = Analysis(analysis.statement, facts, None, None)
        governor.upstream_error = None
        governor.enforce(governance.judge(principal, analysis, action="catalog.read"))
        return None
    if op == "drop_temp_view":
        facts = StatementFacts(StatementKind.TEMP_VIEW, "DropTempView", temp_view=call.view_name.lower())
        governor.enforce(governor.judge(Analysis(f"spark.catalog.dropTempView({call.view_name})", facts, None, None)))
        return None
    if op in ("create_table", "create_external_table"):
        await _create(governor, op, call)
        return None
    await _change(governor, op, call)
    return None


async def inline_listings(governor: Governor, relation: relations_pb2.Relation, fetch: Fetch) -> bool:
    """Replace each catalog call inside ``relation`` (not the relation itself) by its rows, as
    a local relation with the call's plan id; True when any was. Each is governed by
    ``govern_catalog`` first (a refusal raises) and must only read: one that would change
    something is left in place, for the screen to refuse."""
    inlined = False
    stack = list(children(relation))
    while stack:
        message = stack.pop()
        if not isinstance(message, relations_pb2.Relation) or message.WhichOneof("rel_type") != "catalog":
            stack.extend(children(message))
            continue
        if (message.catalog.WhichOneof("cat_type") or "") not in _READ_ONLY:
            continue
        keep = await govern_catalog(governor, message.catalog)
        data = listing_data(await fetch(message), keep)
        rows = relations_pb2.Relation()
        rows.common.CopyFrom(message.common)  # column references by plan id still resolve
        rows.local_relation.data = data
        message.CopyFrom(rows)
        inlined = True
    return inlined


def _table_name(call: Any) -> str:
    parts = name_parts(call.table_name)
    db_name = getattr(call, "db_name", "")
    return quoted([*name_parts(db_name), *parts] if db_name else parts)


def _starting(db_name: str) -> bool:
    parts = [p.lower() for p in name_parts(db_name)]
    return parts in ([STARTING_NAMESPACE], [SESSION_CATALOG, STARTING_NAMESPACE])


def _visible(governor: Governor, db_name: str) -> None:
    parts = name_parts(db_name)
    catalog, namespace = (SESSION_CATALOG, parts) if len(parts) == 1 else (parts[0], parts[1:])
    governor.governance.require_visible(governor.principal, catalog, ".".join(namespace))


def _table_row_visible(governor: Governor, row: dict[str, Any]) -> bool:
    namespace = ".".join(str(part) for part in (row.get("namespace") or []))
    catalog = str(row.get("catalog") or SESSION_CATALOG)
    temporary = bool(row.get("isTemporary"))
    return table_visible(
        governor.governance, governor.principal, catalog, namespace, str(row.get("name") or ""), temporary
    )


async def _create(governor: Governor, op: str, call: Any) -> None:
    """``spark.catalog.createTable`` (or its older name): a new table, like ``CREATE TABLE``."""
    writes, unresolved = await write_target(governor, call.table_name)
    dangers = [
        *unresolved,
        *format_dangers(call.source if call.HasField("source") else None),
        *path_dangers(dict(call.options), "a table option"),
    ]
    if call.HasField("path"):
        dangers.append(Danger(DangerKind.PATH_ACCESS, f"a table over the files at {call.path[:200]!r}"))
    governor.changed()  # what its name means in the session changes
    facts = StatementFacts(StatementKind.DDL, "CreateTable", writes=writes, dangers=tuple(dangers))
    governor.upstream_error = None
    governor.enforce(governor.judge(Analysis(f"spark.catalog.{op}({call.table_name})", facts, None, None)))


async def _change(governor: Governor, op: str, call: Any) -> None:
    """Catalog changes: ``sql.admin``, with the table rules on the table named, when it resolves."""
    writes: frozenset[TableName] = frozenset()
    if getattr(call, "table_name", ""):
        name = _table_name(call)
        analysis, _ = await governor.analyst.explain(table_relation(name), name)
        writes = analysis.facts.reads if analysis.error is None else frozenset()
    facts = StatementFacts(
        StatementKind.ADMIN,
        op,
        writes=writes,
        dangers=(Danger(DangerKind.UNKNOWN_NODE, f"spark.catalog.{op}, a change to the catalog or its cache"),),
    )
    governor.upstream_error = None
    governor.enforce(governor.judge(Analysis(f"spark.catalog.{op}", facts, None, None)))
