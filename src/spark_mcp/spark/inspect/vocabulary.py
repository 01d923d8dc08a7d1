"""The node vocabulary: every analyzed-plan node name the reader knows, and what it means.

Query operators read through their children and change nothing; ``Resolved*`` nodes are a
command's target or arguments; every command has a ``Rule``: the statement kind it makes,
where its object is printed (``Target``), what it does to that object (``Role``) and the
danger it carries, if any. A node name in none of these is an unknown node, which only an
admin may run.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from spark_mcp.statement import DangerKind, StatementKind

_K = StatementKind
_D = DangerKind

# Operators that run code the client sent (Python or Scala functions over rows, groups or
# partitions). Only the Spark Connect gateway lets such plans in; they need ``code.run``.
CODE_NODES = frozenset(
    {
        "AppendColumns",
        "CoGroup",
        "DeserializeToObject",
        "FlatMapCoGroupsInArrow",
        "FlatMapCoGroupsInPandas",
        "FlatMapGroupsInArrow",
        "FlatMapGroupsInPandas",
        "FlatMapGroupsInPandasWithState",
        "FlatMapGroupsWithState",
        "MapElements",
        "MapGroups",
        "MapInArrow",
        "MapInPandas",
        "MapPartitions",
        "SerializeFromObject",
        "TypedFilter",
    }
)

# Relational operators: by themselves they read (through their children) and change nothing.
QUERY_NODES = frozenset(
    {
        "Aggregate",
        "AsOfJoin",
        "CollectMetrics",
        "CTERelationDef",
        "CTERelationRef",
        "Deduplicate",
        "DeduplicateWithinWatermark",  # a batch DataFrame's dropDuplicatesWithinWatermark: a Deduplicate
        "Distinct",
        "EmptyRelation",
        "Except",
        "Expand",
        "Filter",
        "Generate",
        "GlobalLimit",
        "HiveTableRelation",
        "Intersect",
        "Join",
        "LateralJoin",
        "LocalLimit",
        "LocalRelation",
        "LogicalRDD",
        "MergeRows",
        "Offset",
        "OneRowRelation",
        "PipeOperator",
        "Project",
        "Range",
        "RebalancePartitions",
        "Relation",
        "RelationV2",
        "Repartition",
        "RepartitionByExpression",
        "ResolvedHint",
        "ResolvedInlineTable",
        "Sample",
        "Sort",
        "Subquery",
        "SubqueryAlias",
        "Tail",
        "Transpose",
        "Union",
        "UnionLoop",
        "UnionLoopRef",
        "View",
        "Window",
        "WindowGroupLimit",
        "WithCTE",
        "WithWindowDefinition",
        # Query operators that carry a danger of their own (see NODE_DANGERS).
        "ScriptTransformation",
        "SQLFunctionNode",
    }
    | CODE_NODES
)

# Plan nodes that are part of a command's tree (its target or its arguments).
RESOLVED_NODES = frozenset(
    {"ResolvedIdentifier", "ResolvedTable", "ResolvedPersistentView", "ResolvedTempView", "ResolvedNamespace"}
)

NODE_DANGERS: dict[str, tuple[DangerKind, str]] = {
    "ScriptTransformation": (
        _D.COMMAND_EXECUTION,
        "TRANSFORM ... USING runs an operating-system command on the cluster",
    ),
    "SQLFunctionNode": (_D.UDF_CALL, "a SQL table function"),
    "CommandResult": (_D.ANALYSIS_SIDE_EFFECT, "a command already ran while Spark analysed the statement"),
    **{name: (_D.CODE, f"{name} runs a function the client sent") for name in CODE_NODES},
}


class Target(Enum):
    """Where a command prints the object it acts on."""

    FIRST = "first"  # the quoted identifier right after the node name (v1 commands)
    RESOLVED = "resolved"  # Resolved* child nodes (v2 commands)
    RELATION = "relation"  # a relation printed as the first argument (v2 writes)
    CHILDREN = "children"  # relations under the node's children (DELETE, UPDATE)
    MERGE = "merge"  # relations under every child but the last (MERGE: the last is the source)
    ANYWHERE = "anywhere"  # every qualified quoted identifier (where literals precede the target)
    HIVE_CTAS = "hive_ctas"  # CreateHiveTableAsSelectCommand's [Database: d, TableName: t]
    NAMESPACE = "namespace"  # SetNamespaceCommand's [ns]: USE DATABASE|SCHEMA|NAMESPACE ns
    NONE = "none"  # no table


class Role(Enum):
    """What a command does to its object: policy checks it as a write, a read, or both."""

    WRITE = "write"
    READ = "read"
    BOTH = "both"

    @property
    def writes(self) -> bool:
        return self in (Role.WRITE, Role.BOTH)

    @property
    def reads(self) -> bool:
        return self in (Role.READ, Role.BOTH)


@dataclass(frozen=True)
class Rule:
    """How to read one command node."""

    kind: StatementKind
    target: Target = Target.NONE
    role: Role = Role.WRITE
    danger: DangerKind | None = None
    detail: str = ""


def _rules() -> dict[str, Rule]:
    rules: dict[str, Rule] = {}

    def add(names: str, rule: Rule) -> None:
        for name in names.split():
            rules[name] = rule

    # Writes (DML).
    add("InsertIntoHadoopFsRelationCommand", Rule(_K.WRITE, Target.ANYWHERE))
    add("InsertIntoHiveTable TruncateTableCommand", Rule(_K.WRITE, Target.FIRST))
    add(
        "InsertIntoDataSourceCommand AppendData OverwriteByExpression OverwritePartitionsDynamic "
        "ReplaceData WriteDelta",
        Rule(_K.WRITE, Target.RELATION),
    )
    add("DeleteFromTable DeleteFromTableWithFilters UpdateTable", Rule(_K.WRITE, Target.CHILDREN))
    add("MergeIntoTable", Rule(_K.WRITE, Target.MERGE))
    add("TruncateTable TruncatePartition", Rule(_K.WRITE, Target.RESOLVED))
    add(
        "LoadDataCommand",
        Rule(_K.WRITE, Target.FIRST, danger=_D.PATH_ACCESS, detail="LOAD DATA reads files from a path"),
    )
    # DDL on tables, views and namespaces.
    add(
        "CreateDataSourceTableCommand CreateDataSourceTableAsSelectCommand CreateTableCommand "
        "CreateTableLikeCommand DropTableCommand "
        "AlterTableRenameCommand AlterTableAddColumnsCommand AlterTableChangeColumnCommand "
        "AlterTableSetPropertiesCommand AlterTableUnsetPropertiesCommand AlterTableSerDePropertiesCommand "
        "AlterTableAddPartitionCommand AlterTableDropPartitionCommand AlterTableRenamePartitionCommand "
        "CreateViewCommand",
        Rule(_K.DDL, Target.FIRST),
    )
    # ALTER VIEW of a temporary view changes only the caller's session: see classify.py.
    add("AlterViewAsCommand AlterViewSchemaBindingCommand", Rule(_K.DDL, Target.FIRST))
    add(
        "AlterTableSetLocationCommand",
        Rule(
            _K.DDL, Target.FIRST, danger=_D.PATH_ACCESS, detail="ALTER TABLE ... SET LOCATION points a table at a path"
        ),
    )
    add("CreateHiveTableAsSelectCommand", Rule(_K.DDL, Target.HIVE_CTAS))
    add(
        "CreateTable CreateTableAsSelect ReplaceTable ReplaceTableAsSelect DropTable DropView RenameTable "
        "AddColumns AlterColumns DropColumns RenameColumn ReplaceColumns SetTableProperties UnsetTableProperties "
        "SetViewProperties UnsetViewProperties SetTableSerDeProperties AddPartitions DropPartitions "
        "RenamePartitions CommentOnTable AlterTableClusterBy AlterTableCollation AddCheckConstraint "
        "AddConstraint DropConstraint CreateIndex DropIndex AlterViewAs AlterViewSchemaBinding "
        "CreateNamespace DropNamespace SetNamespaceProperties CommentOnNamespace",
        Rule(_K.DDL, Target.RESOLVED),
    )
    add(
        "SetTableLocation SetNamespaceLocation",
        Rule(_K.DDL, Target.RESOLVED, danger=_D.PATH_ACCESS, detail="SET LOCATION points an object at a path"),
    )
    # Metadata about one object (the object is read).
    add(
        "DescribeTableCommand DescribeColumnCommand ShowColumnsCommand ShowPartitionsCommand "
        "ShowCreateTableAsSerdeCommand ShowCreateTableCommand ShowTablePropertiesCommand",
        Rule(_K.METADATA, Target.FIRST, role=Role.READ),
    )
    add(
        "DescribeRelation DescribeColumn ShowCreateTable ShowTableProperties ShowColumns ShowPartitions "
        "DescribeNamespace SetCatalogAndNamespace ShowNamespacesCommand ShowProceduresCommand",
        Rule(_K.METADATA, Target.RESOLVED, role=Role.READ),
    )
    add("SetNamespaceCommand", Rule(_K.METADATA, Target.NAMESPACE, role=Role.READ))
    add(
        "ShowCatalogsCommand ShowCurrentNamespaceCommand ShowFunctionsCommand DescribeFunctionCommand "
        "ShowCollationsCommand SetCatalogCommand",
        Rule(_K.METADATA),
    )
    # Listings: they reveal names of tables the caller may not read (use list_tables).
    listing = (
        "it lists table names the caller may not be allowed to see; use the list_tables tool "
        "(through the Spark Connect gateway, plain SHOW TABLES and spark.catalog.listTables() show what the "
        "caller may read)"
    )
    add("ShowTables", Rule(_K.METADATA, Target.RESOLVED, role=Role.READ, danger=_D.LISTING, detail=listing))
    add(
        "ShowTablesCommand ShowViewsCommand ShowTablesExtended ShowTablesJsonCommand ShowTablePartition",
        Rule(_K.METADATA, danger=_D.LISTING, detail=listing),
    )
    # The dangerous surface: statements whose only purpose is in it.
    add("SetCommand ResetCommand", Rule(_K.ADMIN, danger=_D.CONFIG, detail="SET / RESET of configuration"))
    add("SetPathCommand", Rule(_K.ADMIN, danger=_D.CONFIG, detail="SET PATH changes how functions resolve"))
    add(
        "AddJarsCommand AddFilesCommand AddArchivesCommand ListJarsCommand ListFilesCommand ListArchivesCommand",
        Rule(_K.ADMIN, danger=_D.RESOURCE, detail="ADD / LIST JAR, FILE or ARCHIVE"),
    )
    add(
        "CreateFunctionCommand CreateSQLFunctionCommand DropFunctionCommand RefreshFunctionCommand "
        "CreateFunction DropFunction RefreshFunction CreateUserDefinedFunction",
        Rule(_K.ADMIN, danger=_D.FUNCTION_DEFINITION, detail="CREATE / DROP / REFRESH FUNCTION"),
    )
    add(
        "CacheTable CacheTableAsSelect UncacheTable ClearCacheCommand",
        Rule(_K.ADMIN, danger=_D.CACHE, detail="CACHE / UNCACHE / CLEAR CACHE"),
    )
    add("RefreshTableCommand", Rule(_K.ADMIN, Target.FIRST, role=Role.READ, danger=_D.REFRESH, detail="REFRESH TABLE"))
    add("RefreshTable", Rule(_K.ADMIN, Target.RESOLVED, role=Role.READ, danger=_D.REFRESH, detail="REFRESH TABLE"))
    add("RefreshResource", Rule(_K.ADMIN, danger=_D.REFRESH, detail="REFRESH of a path"))
    add(
        "AnalyzeTableCommand AnalyzeColumnCommand AnalyzePartitionCommand",
        Rule(_K.ADMIN, Target.FIRST, role=Role.BOTH, danger=_D.STATISTICS, detail="ANALYZE TABLE"),
    )
    add(
        "AnalyzeTable AnalyzeColumn",
        Rule(_K.ADMIN, Target.RESOLVED, role=Role.BOTH, danger=_D.STATISTICS, detail="ANALYZE TABLE"),
    )
    add("AnalyzeTablesCommand AnalyzeTables", Rule(_K.ADMIN, danger=_D.STATISTICS, detail="ANALYZE TABLES"))
    add("RepairTableCommand", Rule(_K.ADMIN, Target.FIRST, danger=_D.REPAIR, detail="MSCK REPAIR / RECOVER PARTITIONS"))
    add(
        "RepairTable RecoverPartitions",
        Rule(_K.ADMIN, Target.RESOLVED, danger=_D.REPAIR, detail="MSCK REPAIR / RECOVER PARTITIONS"),
    )
    add(
        "CreateVariable SetVariable DropVariable",
        Rule(_K.ADMIN, danger=_D.VARIABLE, detail="DECLARE / SET VAR / DROP VARIABLE"),
    )
    add(
        "InsertIntoDataSourceDirCommand InsertIntoHiveDirCommand",
        Rule(_K.ADMIN, danger=_D.PATH_ACCESS, detail="INSERT OVERWRITE DIRECTORY writes files to a path"),
    )
    add(
        "CreateTempViewUsing",
        Rule(_K.ADMIN, danger=_D.PATH_ACCESS, detail="a temporary view over a data source's own options or path"),
    )
    add(
        "Call",
        Rule(_K.ADMIN, danger=_D.UNKNOWN_NODE, detail="CALL runs a stored procedure the checker cannot see into"),
    )
    add("CommandResult", Rule(_K.ADMIN))
    # Statements whose real content is not in the plan at all.
    add(
        "ExplainCommand DescribeQueryCommand",
        Rule(
            _K.UNKNOWN,
            danger=_D.UNKNOWN_NODE,
            detail=(
                "the inner statement is not analysed in this plan; use the explain tool instead (through the "
                "Spark Connect gateway: df.explain())"
            ),
        ),
    )
    add(
        "CompoundBody SingleStatement MultiResult IfElseStatement WhileStatement RepeatStatement LoopStatement "
        "ForStatement SimpleCaseStatement SearchedCaseStatement LeaveStatement IterateStatement ExceptionHandler "
        "DeclareCursor OpenCursor FetchCursor CloseCursor",
        Rule(_K.UNKNOWN, danger=_D.SCRIPT, detail="SQL scripting statements are not allowed"),
    )
    # DROP VIEW of a temporary view, CREATE VIEW and ALTER VIEW are decided in classify.py.
    add("DropTempViewCommand", Rule(_K.TEMP_VIEW))
    return rules


RULES = _rules()
KNOWN = QUERY_NODES | RESOLVED_NODES | frozenset(RULES)

# A failed analysis leaves only the parsed plan, whose root names the command as written. Its
# kind is what the command would have been (``classify.attempted``), so that a caller without
# the command's action is refused for the action whether its table exists or not. Most parsed
# names are also analyzed names (v2 commands); these three are parsed only. Commands whose kind
# depends on their arguments (a temporary or a persistent view) are not read this way.
PARSED_RULES = {
    **RULES,
    "InsertIntoStatement": Rule(_K.WRITE),
    "CreateView": Rule(_K.DDL),
    "CreateTableLike": Rule(_K.DDL),
}
KIND_FROM_ARGUMENTS = frozenset(
    {
        "CreateViewCommand",
        "AlterViewAs",
        "AlterViewAsCommand",
        "AlterViewSchemaBinding",
        "AlterViewSchemaBindingCommand",
        "DropTempViewCommand",
    }
)
RELATION_NODES = frozenset({"Relation", "RelationV2", "HiveTableRelation"})
