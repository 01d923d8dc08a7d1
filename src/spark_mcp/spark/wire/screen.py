"""What a plan carries before Spark sees it: code, hidden SQL, and work Spark does while planning.

Spark analyses a plan (AnalyzePlan) without running it, but not everything in a plan waits
for execution. Measured in Spark 4.3's planner (``SparkConnectPlanner``):

- client code is loaded while planning: a Scala UDF is deserialised (Java serialisation), a
  Python UDTF or data source may run its ``analyze`` code; so code must be refused first;
- a path or JDBC read opens its source while planning (schema inference, a connection);
- some relations compute their input while planning (``show_string``, ``approx_quantile``,
  a pivot without values...) or build it as a Dataset that runs any command inside it
  (``drop``, ``describe``, ``fill_na``...): their inputs must be judged before the whole;
- ``with_relations`` with a SQL root and only aliased references (``spark.sql`` with
  DataFrame arguments) runs its SQL eagerly, with each DataFrame as a temp view of the alias
  it is given (created or replaced, then dropped): one in the shape PySpark sends (a SQL
  text, and DataFrames aliased ``_pyspark_connect_temp_view_<32 hex>``) is eager, to be
  proven a query before anything plans it (``sql_with_refs``); any other with a SQL root is
  dangerous. One whose root is not SQL (``df.scalar()``, ``df.exists()``: a plan whose
  subquery expressions name the referenced plans by id) Spark plans lazily, like a join
  (``isValidSQLWithRefs`` needs a SQL root), and so is it here. A ``catalog`` relation
  performs its catalog call while planning.

``screen`` walks a Relation or Command iteratively (plans nest deeply) and reports what
must be refused before any analysis (code, and the dangerous relation types), the SQL
texts for the lexical gate, and the inputs of eager relations, deepest first, so that each
is judged before anything that computes it is analysed. Relation types this module has
not checked against the planner are dangerous too: a new Spark's plans fail closed.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from google.protobuf.message import Message
from pyspark.sql.connect.proto import relations_pb2

from spark_mcp.statement import Danger, DangerKind

_D = DangerKind

# Planned as pure logical operators over their inputs: nothing runs while planning them.
LAZY_RELATIONS = frozenset(
    {
        "cached_local_relation",
        "cached_remote_relation",
        "chunked_cached_local_relation",
        "collect_metrics",
        "deduplicate",
        "filter",
        "hint",
        "join",
        "lateral_join",
        "limit",
        "local_relation",
        "offset",
        "project",
        "range",
        "read",
        "repartition",
        "repartition_by_expression",
        "set_op",
        "sort",
        "sql",
        "subquery_alias",
        "tail",
        "to_df",
        "unpivot",
        "unresolved_table_valued_function",
        "with_columns",
        "with_columns_renamed",
    }
)
# Planned by building (or computing) their input as a Dataset first.
EAGER_RELATIONS = frozenset(
    {
        "approx_quantile",
        "as_of_join",
        "corr",
        "cov",
        "crosstab",
        "describe",
        "drop",
        "drop_na",
        "fill_na",
        "freq_items",
        "html_string",
        "parse",
        "replace",
        "sample",
        "sample_by",
        "show_string",
        "summary",
        "to_schema",
        # Spark's analyzer (ResolveTranspose) collects the input to name the output's columns:
        # analysed whole, its data would be in the plan as a local relation, its table gone.
        "transpose",
        "with_watermark",
    }
)
# Relations that run code the client sent (and plan their input eagerly).
CODE_RELATIONS = {
    "map_partitions": "a function over partitions (mapInPandas, mapInArrow, mapPartitions)",
    "group_map": "a function over groups (applyInPandas, applyInArrow)",
    "co_group_map": "a function over co-grouped data (cogroup().applyInPandas)",
    "apply_in_pandas_with_state": "a stateful function over groups (applyInPandasWithState)",
    "common_inline_user_defined_table_function": "a Python table function (UDTF)",
    "common_inline_user_defined_data_source": "a Python data source",
}
# The alias PySpark gives each DataFrame in ``spark.sql(text, df=...)``: random, so it
# replaces (and then drops) no temp view of the session's own.
PYSPARK_REF_ALIAS = re.compile(r"_pyspark_connect_temp_view_[0-9a-f]{32}")
# Client code, wherever it appears in a message (expressions, commands, relations).
CODE_MESSAGES = {
    "spark.connect.PythonUDF": "a Python function",
    "spark.connect.ScalarScalaUDF": "a Scala function",
    "spark.connect.JavaUDF": "a Java function loaded from a class",
    "spark.connect.PythonUDTF": "a Python table function",
    "spark.connect.PythonDataSource": "a Python data source",
    "spark.connect.TypedAggregateExpression": "a Scala aggregator",
}
_ADMIN_RELATIONS = {
    "catalog": "a catalog call inside a plan",
    "ml_relation": "a machine-learning relation",
    "extension": "a relation extension",
    "unknown": "an unknown relation",
    "with_relations": "sql() with DataFrame arguments not in the shape PySpark sends (Spark runs its SQL "
    "while planning)",
    "relation_changes": "a change feed of a table",
}


@dataclass(frozen=True)
class Screen:
    """What a message carries, read without Spark."""

    code: tuple[str, ...] = ()  # client code, described
    dangers: tuple[Danger, ...] = ()  # refused before any analysis, unless sql.admin
    texts: tuple[str, ...] = ()  # SQL text and expression strings, for the lexical gate
    eager: tuple[relations_pb2.Relation, ...] = ()  # inputs Spark builds while planning, deepest first
    tables: tuple[str, ...] = ()  # named tables as written, for the audit record
    # SQL texts with parameters, whose markers (IDENTIFIER(:t)) can name tables the text does not
    parameterized: tuple[relations_pb2.SQL, ...] = ()


@dataclass
class _Found:
    code: list[str] = field(default_factory=list)
    dangers: list[Danger] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    eager: list[tuple[int, int, relations_pb2.Relation]] = field(default_factory=list)
    tables: list[str] = field(default_factory=list)
    parameterized: list[relations_pb2.SQL] = field(default_factory=list)

    def danger(self, kind: DangerKind, detail: str) -> None:
        if all(d.detail != detail for d in self.dangers):
            self.dangers.append(Danger(kind, detail))


def children(message: Message) -> Iterator[Message]:
    """Every message directly inside ``message`` (repeated fields and message maps included)."""
    for descriptor, value in message.ListFields():
        if descriptor.message_type is None:
            continue
        if descriptor.message_type.GetOptions().map_entry:
            if descriptor.message_type.fields_by_name["value"].message_type is not None:
                yield from value.values()
        elif descriptor.is_repeated:
            yield from value
        else:
            yield value


def input_relations(relation: relations_pb2.Relation) -> list[relations_pb2.Relation]:
    """The relations a relation is built on: the nearest Relation messages below it."""
    found: list[relations_pb2.Relation] = []
    stack = list(children(relation))
    while stack:
        message = stack.pop()
        if isinstance(message, relations_pb2.Relation):
            found.append(message)
        else:
            stack.extend(children(message))
    return found


def screen(message: Message) -> Screen:
    """Walk a Relation or Command (or any message holding them) and report what it carries."""
    found = _Found()
    # ``described``: code already named by an enclosing message (a UDF's Python payload).
    stack: list[tuple[Message, int, bool]] = [(message, 0, False)]
    order = 0
    while stack:
        current, level, described = stack.pop()
        name = current.DESCRIPTOR.full_name
        if name == "spark.connect.Relation":
            assert isinstance(current, relations_pb2.Relation)
            level += 1
            order += 1
            described = _relation(current, level, order, found)
        elif name == "spark.connect.Expression":
            described = False
            _expression(current, found)
        elif name == "spark.connect.SQL":
            assert isinstance(current, relations_pb2.SQL)
            found.texts.append(current.query)
            if current.args or current.named_arguments or current.pos_args or current.pos_arguments:
                found.parameterized.append(current)
        elif name in _INLINE:
            found.code.append(_inline(current))
            described = True
        elif name in CODE_MESSAGES and not described:
            found.code.append(CODE_MESSAGES[name])
        elif name == "google.protobuf.Any":
            found.danger(_D.UNKNOWN_NODE, "a protocol extension the gateway cannot read")
        stack.extend((child, level, described) for child in children(current))
    found.eager.sort(key=lambda item: (-item[0], item[1]))
    return Screen(
        code=tuple(dict.fromkeys(found.code)),
        dangers=tuple(found.dangers),
        texts=tuple(dict.fromkeys(found.texts)),
        eager=tuple(relation for _, _, relation in found.eager),
        tables=tuple(dict.fromkeys(found.tables)),
        parameterized=tuple(found.parameterized),
    )


_INLINE = frozenset(
    {
        "spark.connect.CommonInlineUserDefinedFunction",
        "spark.connect.CommonInlineUserDefinedTableFunction",
        "spark.connect.CommonInlineUserDefinedDataSource",
    }
)


def _inline(message: Message) -> str:
    """A client function, named: ``a Python UDF f``, ``a Python UDTF t``..."""
    kinds = {
        "python_udf": "a Python UDF",
        "scalar_scala_udf": "a Scala UDF",
        "java_udf": "a Java UDF",
        "python_udtf": "a Python UDTF",
        "python_data_source": "a Python data source",
    }
    field = "data_source" if message.DESCRIPTOR.name == "CommonInlineUserDefinedDataSource" else "function"
    kind = message.WhichOneof(field) or ""
    name = getattr(message, "function_name", "") or getattr(message, "name", "")
    return f"{kinds.get(kind, 'a client function')} {name}".strip()


def _relation(relation: relations_pb2.Relation, level: int, order: int, found: _Found) -> bool:
    """Classify one relation; True when it named the client code it runs."""
    kind = relation.WhichOneof("rel_type")
    if kind is None:
        found.danger(_D.UNKNOWN_NODE, "a relation of no type")
    elif kind == "read":
        _read(relation.read, found)
    elif kind in CODE_RELATIONS:
        found.code.append(CODE_RELATIONS[kind])
        found.eager.append((level, order, relation))
        return True
    elif kind == "aggregate":
        pivot = relation.aggregate
        if pivot.group_type == relations_pb2.Aggregate.GROUP_TYPE_PIVOT and not pivot.pivot.values:
            found.eager.append((level, order, relation))  # Spark collects the pivot values while planning
    elif kind in EAGER_RELATIONS or (kind == "with_relations" and sql_with_refs(relation)):
        found.eager.append((level, order, relation))
    elif kind == "with_relations" and relation.with_relations.root.WhichOneof("rel_type") not in (None, "sql"):
        pass  # subqueries over referenced plans (df.scalar(), df.exists()): planned lazily
    elif kind in _ADMIN_RELATIONS:
        found.danger(_D.UNKNOWN_NODE, _ADMIN_RELATIONS[kind])
    elif kind not in LAZY_RELATIONS:
        found.danger(_D.UNKNOWN_NODE, f"a {kind} relation, which the gateway does not know")
    return False


def _read(read: relations_pb2.Read, found: _Found) -> None:
    if read.is_streaming:
        found.danger(_D.UNKNOWN_NODE, "a streaming read")
    if read.HasField("data_source"):
        source = read.data_source
        what = source.format or "a data source"
        where = f" of {', '.join(source.paths)[:200]}" if source.paths else ""
        found.danger(_D.PATH_ACCESS, f"a {what} read{where}, straight from files or an external source, not a table")
    elif read.HasField("named_table"):
        found.tables.append(read.named_table.unparsed_identifier)
        if read.named_table.options:
            found.danger(_D.PATH_ACCESS, "table options can point a read at another table, path or URL")
    else:
        found.danger(_D.UNKNOWN_NODE, "a read of no type")


def _expression(expression: Message, found: _Found) -> None:
    kind = expression.WhichOneof("expr_type")
    if kind == "expression_string":
        found.texts.append(expression.expression_string.expression)
    elif kind == "extension":
        found.danger(_D.UNKNOWN_NODE, "an expression extension")
    elif kind is None:
        found.danger(_D.UNKNOWN_NODE, "an expression of no type")


def sql_with_refs(relation: relations_pb2.Relation) -> bool:
    """Whether ``relation`` is ``spark.sql(text, df=...)`` as PySpark sends it: a SQL text over
    DataFrames, each aliased by a name PySpark made up."""
    if relation.WhichOneof("rel_type") != "with_relations":
        return False
    refs = relation.with_relations
    return (
        refs.root.WhichOneof("rel_type") == "sql"
        and len(refs.references) > 0
        and all(
            ref.WhichOneof("rel_type") == "subquery_alias"
            and not ref.subquery_alias.qualifier
            and PYSPARK_REF_ALIAS.fullmatch(ref.subquery_alias.alias) is not None
            for ref in refs.references
        )
    )


def bare_sql(relation: relations_pb2.Relation) -> relations_pb2.SQL | None:
    """The SQL of a relation that is nothing but ``spark.sql(...)`` (no DataFrame operations)."""
    return relation.sql if relation.WhichOneof("rel_type") == "sql" else None


def describe(relation: relations_pb2.Relation, found: Screen, *, limit: int = 2000) -> str:
    """A short account of a plan for the audit record: its operations from the top, tables and SQL."""
    sql = bare_sql(relation)
    if sql is not None:
        return sql.query[:limit]
    path: list[str] = []
    current: relations_pb2.Relation | None = relation
    while current is not None and len(path) < 12:
        path.append(current.WhichOneof("rel_type") or "?")
        inputs = input_relations(current)
        current = inputs[0] if len(inputs) == 1 else None
        if len(inputs) > 1:
            path.append(f"({len(inputs)} inputs)")
    text = "plan: " + " < ".join(path)
    if found.tables:
        text += "; tables: " + ", ".join(found.tables)
    if found.texts:
        text += "; sql: " + " | ".join(found.texts)
    return text[:limit]
