"""Dangers found anywhere in the plan text: reflection, UDF calls, paths, read options.

These are searched for in the whole text of the parsed and analyzed sections, continuation
lines included, so text a literal planted can only add dangers, never hide one. Function
calls are judged on the parsed plan (a temporary function prints like a built-in once
resolved) and on the analyzed plan (persistent functions print qualified there).
"""

from __future__ import annotations

import re

from spark_mcp.spark.inspect.facts import Facts
from spark_mcp.spark.inspect.names import BT_PART, unquote_parts
from spark_mcp.spark.inspect.sections import Sections
from spark_mcp.spark.inspect.tree import Node
from spark_mcp.spark.inspect.vocabulary import NODE_DANGERS
from spark_mcp.statement import DangerKind

_D = DangerKind

# No left boundary: a name glued to text before it ("xreflect(") still counts (stricter).
_REFLECTION = re.compile(r"(try_reflect|reflect|java_method)\s*\(", re.IGNORECASE)
_PROTOBUF = re.compile(r"(?<![\w$])(from_protobuf|to_protobuf)\s*\(", re.IGNORECASE)
_CALL = re.compile(r"(?<![\w$.#'`])([A-Za-z_][A-Za-z0-9_]*)\(")
# Unresolved function calls in the parsed plan print as 'name(...) or 'a.b.name(...).
_PARSED_CALL = re.compile(rf"'(?P<name>(?:{BT_PART}|[A-Za-z_][\w$]*)(?:\.(?:{BT_PART}|[A-Za-z_][\w$]*))*)\(")
_PARSED_IDENTIFIER_CALL = re.compile(r"expressionwithunresolvedidentifier\((?P<name>[^,()]*)(?P<next>[,()])")
# Resolved persistent functions print qualified and lower-cased: spark_catalog.db.f(...).
_QUALIFIED_CALL = re.compile(r"(?<![\w$.#'`])([a-z_][a-z0-9_]*(?:\.[a-z_][a-z0-9_]*)+)\(")
_HIVE_UDF = re.compile(r"Hive(?:GenericUDF|SimpleUDF|GenericUDTF)#|HiveFunctionWrapper\(|HiveUDAFFunction")
# 'UnresolvedRelation [parts], [options], isStreaming: options given with WITH (...) or a
# DataFrame reader. Spark adds one internal option to write targets, and only that one.
_RELATION_OPTIONS = re.compile(r"'UnresolvedRelation \[[^\]\n]*\], \[(?P<options>[^\n]*?)\], (?:true|false)")
_INTERNAL_OPTION = re.compile(r"__required_write_privileges__=[A-Z,]*")
_SAVE_MODE = re.compile(r", (?:Append|Overwrite|ErrorIfExists|Ignore), ")


def scan_text(parsed: str, analyzed: str, builtins: frozenset[str], facts: Facts) -> None:
    """Reflection, descriptor files, commands that ran, and every function call."""
    both = parsed + "\n" + analyzed
    for match in _REFLECTION.finditer(both):
        facts.danger(_D.REFLECTION, f"{match.group(1).lower()}() calls Java methods by reflection")
        facts.functions.add(match.group(1).lower())
    for match in _PROTOBUF.finditer(both):
        facts.danger(_D.PATH_ACCESS, f"{match.group(1).lower()}() can read a descriptor file from the driver")
    if "CommandResult" in analyzed:
        facts.danger(*NODE_DANGERS["CommandResult"])
    if "ScriptTransformation" in analyzed:
        facts.danger(*NODE_DANGERS["ScriptTransformation"])
    if builtins:
        for match in _CALL.finditer(analyzed):
            name = match.group(1).lower()
            if name in builtins:
                facts.functions.add(name)
    _scan_calls(parsed, analyzed, builtins, facts)


def _scan_calls(parsed: str, analyzed: str, builtins: frozenset[str], facts: Facts) -> None:
    """Calls to functions that are not Spark built-ins (temporary, persistent, Hive)."""
    for match in _PARSED_CALL.finditer(parsed):
        parts = unquote_parts(match.group("name"))
        _judge_call(parts if parts else [match.group("name")], builtins, facts)
    for match in _PARSED_IDENTIFIER_CALL.finditer(parsed):
        # IDENTIFIER('f')(...) prints the function name as the first argument; a name built
        # by an expression (a call in it) cannot be judged, so it counts as a UDF call.
        name = match.group("name").strip()
        parts = unquote_parts(name) if match.group("next") == "," else None
        if parts:
            _judge_call(parts, builtins, facts)
        else:
            facts.danger(_D.UDF_CALL, "IDENTIFIER(...) names a function the checker cannot resolve")
    for match in _QUALIFIED_CALL.finditer(analyzed):
        parts = match.group(1).split(".")
        _judge_call(parts, builtins, facts, resolved=True)
    if _HIVE_UDF.search(analyzed):
        facts.danger(_D.UDF_CALL, "a Hive UDF (a function loaded from a class)")


def _judge_call(parts: list[str], builtins: frozenset[str], facts: Facts, *, resolved: bool = False) -> None:
    lowered = [p.lower() for p in parts]
    name = lowered[-1]
    qualifier = lowered[:-1]
    if qualifier in (["system", "builtin"], ["builtin"]):
        facts.functions.add(name)
        return
    if qualifier == ["system", "session"]:
        facts.danger(_D.UDF_CALL, f"{'.'.join(parts)}() is a temporary function")
        return
    if qualifier:
        facts.danger(_D.UDF_CALL, f"{'.'.join(lowered)}() is not a Spark built-in")
        return
    if resolved:
        return
    if not builtins:
        facts.note("the driver's built-in function list was not given: calls were not checked for UDFs")
        return
    if name not in builtins:
        facts.danger(_D.UDF_CALL, f"{parts[-1]}() is not a Spark built-in")


def option_dangers(parsed: str, facts: Facts) -> None:
    """Read options reach the data source but not the analyzed plan.

    Measured: a JDBC table read ``WITH ('dbtable'='other')`` scans the other table while the
    analyzed plan still names the first one, so options only the parsed plan shows count.
    """
    for match in _RELATION_OPTIONS.finditer(parsed):
        entries = [e for e in match.group("options").split(", ") if e]
        if any(not _INTERNAL_OPTION.fullmatch(e) for e in entries):
            facts.danger(
                _D.PATH_ACCESS,
                "table options (WITH (...)) can point a read at another table, path or URL; remove them",
            )
            break
    if parsed.count("'UnresolvedRelation") > len(_RELATION_OPTIONS.findall(parsed)):
        # A relation whose options could not be read (a name or value with a line break).
        facts.danger(_D.UNANALYSABLE, "cannot read the options of a table in the parsed plan")


def path_dangers(root: Node, sections: Sections, facts: Facts) -> None:
    """LOCATION, path options and partition locations, wherever Spark prints them."""
    parsed, analyzed = sections.parsed, sections.analyzed
    # unresolvedtablespec(..., optionlist(<options>), <location>, ...): every optionlist Spark
    # printed must be empty and followed by no location; planted text can only break that.
    specs = parsed.count("optionlist(")
    if "unresolvedtablespec(" in parsed and len(re.findall(r"optionlist\(\), None[,)]", parsed)) != specs:
        facts.danger(
            _D.PATH_ACCESS,
            "CREATE TABLE with LOCATION or OPTIONS points a table at a path or an external source",
        )
    if re.search(r"Storage\((?!\))", analyzed):
        facts.danger(_D.PATH_ACCESS, "a storage specification (LOCATION, formats or SerDe) points at a path")
    # Properties and partition values are literals printed before these markers, so they
    # are looked for in the whole section: a planted line break cannot move them away.
    if root.name in ("CreateNamespace", "SetNamespaceProperties") and "location=" in analyzed.lower():
        facts.danger(_D.PATH_ACCESS, "a namespace LOCATION points at a path")
    if root.name in ("AlterTableAddPartitionCommand", "AddPartitions") and "Some(" in analyzed:
        facts.danger(_D.PATH_ACCESS, "a partition LOCATION points at a path")
    if root.name == "InsertIntoHadoopFsRelationCommand":
        for match in _SAVE_MODE.finditer(analyzed):
            if not analyzed.startswith("`", match.end()):
                facts.danger(_D.PATH_ACCESS, "an insert into files that are not a catalog table")
                break
