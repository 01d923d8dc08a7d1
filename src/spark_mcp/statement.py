"""What a statement touches: the facts that plan inspection extracts and policy rules on.

Pure data, shared by ``spark/inspect/`` (which produces it from Spark's analyzed plan)
and ``policy/`` (which decides on it). Neither side imports the other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class StatementKind(StrEnum):
    """The kind of a statement, from the root of its analyzed plan."""

    QUERY = "query"  # reads rows, changes nothing
    TEMP_VIEW = "temp_view"  # creates or replaces a temp view in the caller's own session
    SETTING = "setting"  # changes a harmless setting of the caller's own session (gateway only)
    METADATA = "metadata"  # describes catalog objects (DESCRIBE, SHOW COLUMNS, USE, ...)
    WRITE = "write"  # DML: INSERT, DELETE, UPDATE, MERGE, TRUNCATE
    DDL = "ddl"  # creates, alters or drops catalog objects
    ADMIN = "admin"  # the dangerous surface: see ``DangerKind``
    UNKNOWN = "unknown"  # anything the inspector does not know: denied but for admin


class DangerKind(StrEnum):
    """Parts of Spark SQL that escape the table model: action ``sql.admin``, but ``CODE``
    (code the client ships, only possible through the Spark Connect gateway) is ``code.run``."""

    REFLECTION = "reflection"  # reflect, java_method, try_reflect
    COMMAND_EXECUTION = "command_execution"  # SELECT TRANSFORM(...) USING 'a shell command'
    PATH_ACCESS = "path_access"  # format.`/path`, LOCATION, INSERT OVERWRITE DIRECTORY, LOAD DATA
    CONFIG = "config"  # SET, RESET
    RESOURCE = "resource"  # ADD JAR/FILE/ARCHIVE, LIST JAR/FILE
    FUNCTION_DEFINITION = "function_definition"  # CREATE/DROP FUNCTION (from classes or SQL)
    UDF_CALL = "udf_call"  # a call to a function that is not a Spark built-in
    EXECUTE_IMMEDIATE = "execute_immediate"
    SCRIPT = "script"  # SQL scripts (BEGIN ... END) and multi-statement text
    CACHE = "cache"  # CACHE, UNCACHE, CLEAR CACHE
    REFRESH = "refresh"  # REFRESH TABLE/FUNCTION/path
    STATISTICS = "statistics"  # ANALYZE TABLE
    REPAIR = "repair"  # MSCK REPAIR TABLE, ALTER TABLE RECOVER PARTITIONS
    VARIABLE = "variable"  # DECLARE / SET VAR / DROP TEMPORARY VARIABLE
    LISTING = "listing"  # SHOW TABLES/VIEWS: names of tables the caller may not read
    ANALYSIS_SIDE_EFFECT = "analysis_side_effect"  # a command ran while being analysed
    UNKNOWN_NODE = "unknown_node"  # a plan node the inspector does not know
    UNANALYSABLE = "unanalysable"  # Spark could not analyse the statement
    CODE = "code"  # code the client ships to run on the driver: UDFs, UDTFs, jars (action code.run)


# Spark's built-in catalog: an unqualified or two-part name resolves there (Sail names its own
# alike, so policy patterns mean the same on both engines).
SESSION_CATALOG = "spark_catalog"
# The namespace of the session catalog every Spark session starts in; it always exists, so
# moving back to it (USE, setCurrentDatabase) tells nothing.
STARTING_NAMESPACE = "default"


@dataclass(frozen=True, order=True)
class TableName:
    """A fully qualified, case-normalised table name as Spark resolved it."""

    catalog: str
    namespace: str  # dotted when the catalog has nested namespaces
    name: str

    @classmethod
    def of(cls, catalog: str, namespace: str, name: str) -> TableName:
        return cls(catalog.lower(), namespace.lower(), name.lower())

    @property
    def parts(self) -> tuple[str, ...]:
        return (self.catalog, *self.namespace.split("."), self.name)

    def __str__(self) -> str:
        return f"{self.catalog}.{self.namespace}.{self.name}"


@dataclass(frozen=True)
class Danger:
    """One use of the dangerous surface, with a short human detail."""

    kind: DangerKind
    detail: str


@dataclass(frozen=True)
class StatementFacts:
    """Everything policy needs to know about one statement, and nothing it must guess."""

    kind: StatementKind
    operation: str  # the analyzed plan's root node, e.g. "Project", "DropTable"
    reads: frozenset[TableName] = frozenset()
    writes: frozenset[TableName] = frozenset()
    functions: frozenset[str] = frozenset()
    dangers: tuple[Danger, ...] = ()
    views: frozenset[str] = frozenset()  # views expanded on the way to base tables
    temp_view: str | None = None  # the temp view this statement creates, if any
    notes: tuple[str, ...] = field(default=())  # e.g. the analysis error that made it unanalysable
    # When analysis failed: the command as written (its kind and dangers, from the parsed plan's
    # root, without tables), so a refusal for its action can be the same as when it succeeds.
    attempted: StatementFacts | None = None
