"""Governing what a client asks a driver to analyse or run: the path every plan takes.

For a relation (a DataFrame action, ``df.schema``, ``df.explain()``...), in this order:

1. ``plan.run`` (unless the relation is nothing but ``spark.sql(...)``, which is governed
   exactly like ``run_sql``);
2. the screen (``spark.wire.screen``): client code needs ``code.run``, path and external
   reads and relation types the gateway does not know need ``sql.admin``, and every SQL
   text and expression string passes the lexical gate, all before Spark sees anything;
3. the inputs of relations Spark computes while planning, deepest first, each analysed on
   the driver and judged on its own, so nothing runs during analysis that was not allowed;
4. the whole relation, analysed on the driver (the exact plan the client sent) and read by
   the same plan inspection as ``run_plan``; its facts, with everything found on the way,
   are judged by ``Governance.judge``, the one decision every front door uses.

A ``SqlCommand`` (``spark.sql(...)``, which Spark runs eagerly) is gated first and takes
the same path without ``plan.run``.

``spark.sql(text, df=...)`` (``with_relations``, in the shape PySpark sends) is planned by
running its text, over its DataFrames as temp views, so it is never analysed as a relation
before its text is known to be a query: Spark explains the text over the same views
(``EXPLAIN EXTENDED``, which runs nothing) and that analysis, of the text and the DataFrames
together, is judged first. Inside a plan, or as the relation a client analyses or runs, only
a query is allowed; as a SQL command it is judged like ``run_sql``. It replaces and drops
temp views as it runs, so the session is held alone for the call and its reusable verdicts
are forgotten (``changes_session``). A refused request never reaches the driver. When
Spark could not analyse a plan, its message is shown only if no table the plan names is
one the caller may not read; then the client gets Spark's own error.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import replace
from typing import Any

from pyspark.sql.connect.proto import base_pb2, commands_pb2, relations_pb2

from spark_mcp.calls import note
from spark_mcp.errors import InvalidInput, SparkError
from spark_mcp.gateway.analysis import Analyst, with_reads, withheld
from spark_mcp.gateway.calls import GatewayCall, UpstreamError
from spark_mcp.gateway.conf import harmless_sql_set
from spark_mcp.gateway.listings import row_visible, sql_listing
from spark_mcp.governance import Verdict
from spark_mcp.policy import SESSION_CATALOG
from spark_mcp.spark.analyze import Analysis
from spark_mcp.spark.sqltext import gate
from spark_mcp.spark.wire.screen import Screen, bare_sql, describe, input_relations, screen, sql_with_refs
from spark_mcp.statement import Danger, DangerKind, StatementFacts, StatementKind

_PLANS = {
    "schema": ("plan",),
    "explain": ("plan",),
    "tree_string": ("plan",),
    "is_local": ("plan",),
    "is_streaming": ("plan",),
    "input_files": ("plan",),
    "semantic_hash": ("plan",),
    "same_semantics": ("target_plan", "other_plan"),
}
_RELATIONS = ("persist", "unpersist", "get_storage_level")
_NO_PLAN = ("spark_version", "ddl_parse", "json_to_ddl")

PlanOpener = Callable[[base_pb2.Plan], relations_pb2.Relation]  # a Plan (perhaps compressed) to its relation


def merged(final: StatementFacts, others: Iterable[StatementFacts]) -> StatementFacts:
    """``final`` with the reads, writes, functions, dangers and views of ``others`` added."""
    others = list(others)
    return replace(
        final,
        reads=final.reads.union(*(o.reads for o in others)),
        writes=final.writes.union(*(o.writes for o in others)),
        functions=final.functions.union(*(o.functions for o in others)),
        dangers=tuple(dict.fromkeys([*(d for o in others for d in o.dangers), *final.dangers])),
        views=final.views.union(*(o.views for o in others)),
    )


def before_analysis(found: Screen) -> StatementFacts:
    """What the screen found, as facts: code, dangerous relations, and what the gate refuses."""
    dangers = [Danger(DangerKind.CODE, what) for what in found.code]
    dangers += found.dangers
    for text in found.texts:
        dangers += gate(text).dangers
    return StatementFacts(StatementKind.QUERY, "(before analysis)", dangers=tuple(dict.fromkeys(dangers)))


def quiet_to_analyse(found: Screen, early: StatementFacts) -> bool:
    """Whether analysing a screened relation on the driver acts on nothing: no client code, no
    input Spark computes while planning, nothing the screen or the lexical gate flags. Such a
    relation is analysed for the client's own ``AnalyzePlan`` at the same time as for the
    gateway's decision (which that analysis is no different from), and the answer is held
    back until the decision allows it: one analysis long, not two. ``early`` is
    ``before_analysis(found)``, computed once (the lexical gate is not cheap)."""
    return not found.eager and not early.dangers


class Governor:
    """Governs one call's plans, on the caller's driver, in the caller's session."""

    def __init__(
        self, call: GatewayCall, session_id: str, *, alone: Callable[[], Awaitable[None]] | None = None
    ) -> None:
        self.call = call
        self.session_id = session_id
        self.principal = call.principal
        self.governance = call.app.governance
        self.analyst = Analyst(call, session_id)
        self.upstream_error: UpstreamError | None = None  # Spark's own error for the last failed analysis
        self._alone = alone  # holds the session alone for the rest of the call
        self.changes_session = False  # a plan replaces and drops temp views: forget verdicts after the call
        self.listing: Callable[[dict[str, Any]], bool] | None = None  # the rows a SQL listing may show

    # -- the verdict --------------------------------------------------------------------

    def judge(self, analysis: Analysis) -> Verdict:
        return self.governance.judge(self.principal, analysis)

    def enforce(self, verdict: Verdict) -> None:
        """Refuse, with Spark's own error when the refusal is Spark's analysis error."""
        if verdict.refusal is None:
            return
        if isinstance(verdict.refusal, SparkError) and self.upstream_error is not None:
            raise self.upstream_error
        raise verdict.refusal

    # -- relations ----------------------------------------------------------------------

    async def relation(
        self, relation: relations_pb2.Relation, found: Screen | None = None, early: StatementFacts | None = None
    ) -> Verdict:
        """A relation the client wants run or analysed (``run_plan``, or ``run_sql`` for bare SQL)."""
        if bare_sql(relation) is None:
            self.governance.require(self.principal, "plan.run")
        key = self._key(relation)
        reused = self.call.verdicts.get(key)
        if reused is not None:
            note(**reused.audit_fields())
            return reused
        found = found if found is not None else screen(relation)
        tree = await self.tree(relation, describe(relation, found), found, early)
        verdict = tree if isinstance(tree, Verdict) else self.judge(tree)
        if not self.changes_session:
            self.call.verdicts.put(key, verdict)
        return verdict

    async def alone_for(self, found: Screen) -> None:
        """With ``spark.sql(text, df=...)`` in ``found``, whose temp views come and go while
        Spark plans it, hold the session alone: called before anything in the call is judged."""
        if not self.changes_session and any(map(sql_with_refs, found.eager)):
            self.changes_session = True
            if self._alone is not None:
                await self._alone()

    def _key(self, relation: relations_pb2.Relation) -> tuple[str, tuple[str, ...], bool, str, str]:
        return self.call.verdicts.key(self.principal, self.session_id, reusable_form(relation))

    def changed(self) -> None:
        """The session is about to change (a command ran): its verdicts may no longer be reused."""
        self.call.verdicts.forget(self.principal.id, self.session_id)

    async def tree(
        self,
        relation: relations_pb2.Relation,
        statement: str,
        found: Screen | None = None,
        early: StatementFacts | None = None,
        *,
        command: bool = False,
    ) -> Analysis | Verdict:
        """Steps 2-4: the combined analysis of ``relation``, or the verdict that refused part of it."""
        found = found if found is not None else screen(relation)
        early = early if early is not None else before_analysis(found)
        if early.dangers:
            verdict = self.judge(Analysis(statement, early, None, None))
            if not verdict.allowed:
                return verdict
        await self.alone_for(found)
        parts = [early]
        for eager in found.eager:
            if sql_with_refs(eager):
                if eager == relation:
                    continue  # the relation itself: analysed last, as a whole
                analysis = queries_only(await self.analyse(eager, statement, found), "inside a plan")
                verdict = self.judge(replace(analysis, facts=merged(analysis.facts, parts)))
                if not verdict.allowed:
                    return verdict
                parts.append(analysis.facts)
                continue
            for child in input_relations(eager):
                analysis = await self.analyse(child, statement, found)
                verdict = self.judge(replace(analysis, facts=merged(analysis.facts, parts)))
                if not verdict.allowed:
                    return verdict
                parts.append(analysis.facts)
        analysis = await self.analyse(relation, statement, found)
        if sql_with_refs(relation) and not command:
            analysis = queries_only(analysis, "as a relation to analyse or run")
        return replace(analysis, facts=merged(analysis.facts, parts))

    async def analyse(self, relation: relations_pb2.Relation, statement: str, found: Screen) -> Analysis:
        if sql_with_refs(relation):
            analysis, error = await self.analyst.explain_with_refs(relation, statement), None
        else:
            analysis, error = await self.analyst.explain(relation, statement)
        self.upstream_error = error
        if analysis.error is not None and not self.governance.allows(self.principal, "sql.admin"):
            failed = await self.analyst.failed_reads(found)
            if failed is None:
                analysis, self.upstream_error = withheld(analysis), None
            else:
                analysis = with_reads(analysis, failed)
        return analysis

    # -- SQL ----------------------------------------------------------------------------

    async def sql_command(self, command: commands_pb2.SqlCommand) -> Verdict:
        """``spark.sql(text)``: Spark runs commands at once, so this is decided first, like ``run_sql``."""
        relation = command.input if command.HasField("input") else legacy_sql(command)
        kind = relation.WhichOneof("rel_type")
        if kind == "sql":
            text = relation.sql.query
        elif kind == "with_relations" and relation.with_relations.root.WhichOneof("rel_type") == "sql":
            text = relation.with_relations.root.sql.query
        else:
            raise InvalidInput("a SQL command holds SQL text (spark.sql), nothing else")
        gated = gate(text)
        if gated.dangers:
            # Refused unless sql.admin, and never explained: some statements act while analysed.
            facts = StatementFacts(StatementKind.ADMIN, "(not analysed)", dangers=gated.dangers)
            return self.judge(Analysis(gated.sql, facts, None, None))
        tree = await self.tree(relation, gated.sql, command=True)
        if isinstance(tree, Analysis) and tree.error is None and kind == "sql":
            listed = self._listing(tree)
            if listed is not None:
                return listed
        if isinstance(tree, Analysis) and tree.error is None and harmless_sql_set(gated.sql, tree.plan):
            # A harmless setting in SQL, as spark.conf.set may change it: a change to the caller's own session.
            tree = replace(tree, facts=replace(tree.facts, kind=StatementKind.SETTING, dangers=()))
        verdict = tree if isinstance(tree, Verdict) else self.judge(tree)
        if verdict.facts.kind is StatementKind.QUERY and kind == "sql":
            # Spark answers a query with this very relation, which the client analyses and runs next.
            self.call.verdicts.put(self._key(relation), verdict)
        else:
            self.changed()
        return verdict

    def _listing(self, analysis: Analysis) -> Verdict | None:
        """``SHOW NAMESPACES``, ``SHOW TABLES`` or ``SHOW VIEWS`` in a plain form (``listings``):
        allowed with ``catalog.read`` and a visible namespace, its rows filtered (``listing``)."""
        found = sql_listing(analysis.plan)
        if found is None:
            return None
        if found.namespace is not None:
            self.governance.require_visible(self.principal, SESSION_CATALOG, found.namespace)
        facts = StatementFacts(StatementKind.METADATA, f"SHOW {found.what.upper()}")
        verdict = self.judge(Analysis(analysis.statement, facts, analysis.plan, None))
        if verdict.allowed:
            governance, principal = self.governance, self.principal
            self.listing = lambda row: row_visible(governance, principal, found, row)
        return verdict

    # -- AnalyzePlan --------------------------------------------------------------------

    async def analyze_request(
        self, request: base_pb2.AnalyzePlanRequest, open_plan: PlanOpener, alongside: Callable[[], None] | None = None
    ) -> Verdict | None:
        """An AnalyzePlan call: every plan in it is judged like a relation to run (an
        analysis must reveal no schema of a table the caller may not read).

        ``alongside`` is called, before the gateway's own analysis, when Spark may analyse the
        request for the client at the same time (``quiet_to_analyse``): the caller starts
        that and withholds its answer until the verdict allows it. A schema the driver's
        analysis plugin can give is not asked for twice: the gateway's own analysis brings
        it (``analyst.schema_answer``), and ``alongside`` is not called.
        """
        kind = request.WhichOneof("analyze")
        relations: list[relations_pb2.Relation] = []
        if kind in _PLANS:
            for name in _PLANS[kind]:
                relations.append(open_plan(getattr(getattr(request, kind), name)))
        elif kind in _RELATIONS:
            relations.append(getattr(request, kind).relation)
        elif kind not in _NO_PLAN:
            raise InvalidInput(f"the gateway does not know the analysis {kind!r}")
        found = [screen(relation) for relation in relations]
        for each in found:
            await self.alone_for(each)
        early = [before_analysis(each) for each in found]
        if alongside is not None and found and all(map(quiet_to_analyse, found, early)):
            if kind == "schema" and self.analyst.plugin_reads(relations[0]):
                self.analyst.schema_of = relations[0]
            else:
                alongside()
        verdict: Verdict | None = None
        for relation, screened, before in zip(relations, found, early, strict=True):
            verdict = await self.relation(relation, screened, before)
            if not verdict.allowed:
                return verdict
        return verdict


def reusable_form(relation: relations_pb2.Relation) -> bytes:
    """The bytes a verdict on ``relation`` is reused for: the relation as sent, except that one
    which is nothing but ``spark.sql(...)`` is the same statement whatever its plan id.

    Spark answers a ``SqlCommand`` that is a query with the query's relation, which PySpark
    numbers afresh (``CachedRelation``) before it analyses and runs it: byte for byte it is
    never the relation the command was judged with. A plan id (and the call site in
    ``origin``) names the relation for a parent's column references; a bare SQL relation has
    no parent, so neither changes what Spark makes of its text."""
    if bare_sql(relation) is not None and relation.HasField("common"):
        bare = relations_pb2.Relation()
        bare.CopyFrom(relation)
        bare.ClearField("common")
        relation = bare
    form: bytes = relation.SerializeToString(deterministic=True)
    return form


def queries_only(analysis: Analysis, where: str) -> Analysis:
    """``analysis`` of ``spark.sql(text, df=...)``, with a danger unless its text is a query:
    planned anywhere but as a SQL command, Spark would run the command while planning."""
    if analysis.facts.kind is StatementKind.QUERY:
        return analysis
    detail = f"a command in sql() with DataFrame arguments, {where}: Spark would run it while planning"
    danger = Danger(DangerKind.UNANALYSABLE, detail)
    return replace(analysis, facts=replace(analysis.facts, dangers=(*analysis.facts.dangers, danger)))


def legacy_sql(command: commands_pb2.SqlCommand) -> relations_pb2.Relation:
    """The relation an older client's ``SqlCommand`` (text and arguments inline) stands for."""
    relation = relations_pb2.Relation()
    sql = relation.sql
    sql.query = command.sql
    for key, literal in command.args.items():
        sql.args[key].CopyFrom(literal)
    for key, expression in command.named_arguments.items():
        sql.named_arguments[key].CopyFrom(expression)
    sql.pos_args.extend(command.pos_args)
    sql.pos_arguments.extend(command.pos_arguments)
    return relation
