"""Analysis on the caller's driver, in the caller's own session: Spark's view of a plan.

The driver explains a relation (``AnalyzePlan``, extended mode) without running it, and the
same plan inspection as ``run_sql`` and ``run_plan`` reads the text. Spark's analysis error,
when there is one, is kept with the driver's own status, so a client that may see it gets
Spark's error exactly as Spark sent it (scrubbed), rich details and all.

When analysis fails, Spark's message may quote a table's columns ("did you mean `salary`?"),
so governance needs to know which tables the failing plan names before it shows the
message: ``failed_reads`` asks Spark for them one by one (each named table, and each SQL
text through ``EXPLAIN``, which prints the plan it got as far as). Those ``EXPLAIN``s run as
operations in the caller's own session, which an interrupt or release of that session could
cut short: each holds the session's check gate (``GatewayCall.check``), which those wait for,
and when one is interrupted all the same, the tables are unknown and Spark's message is
withheld, its class too.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace

import grpc
import grpc.aio
from pyspark.sql.connect.proto import relations_pb2

from spark_mcp.errors import DriverLost, InvalidInput, QueryTimedOut, SparkError
from spark_mcp.gateway.calls import GatewayCall, UpstreamError
from spark_mcp.spark.analyze import Analysis, from_explain_text, unanalysable
from spark_mcp.spark.errors import first_line
from spark_mcp.spark.inspect.names import written_table
from spark_mcp.spark.sqltext import gate
from spark_mcp.spark.wire.analysed import analysis_request, split_answer
from spark_mcp.spark.wire.requests import (
    command_text,
    explain_request,
    explain_sql_request,
    explain_text,
    explain_with_refs_request,
    name_parts,
    nothing_of,
    table_relation,
)
from spark_mcp.spark.wire.responses import error_info
from spark_mcp.spark.wire.screen import Screen
from spark_mcp.statement import StatementFacts, StatementKind, TableName

# Failures no second try would mend in time: out of time, or the driver is gone.
_S = grpc.StatusCode
_OUT_OF_REACH = frozenset({_S.DEADLINE_EXCEEDED, _S.UNAVAILABLE, _S.UNAUTHENTICATED})


class Analyst:
    def __init__(self, call: GatewayCall, session_id: str) -> None:
        self.call = call
        self.session_id = session_id
        self.timeout_s = call.app.governance.limits(call.principal).query_timeout_s
        # The relation of the client's own AnalyzePlan(schema), when the driver's analysis
        # plugin answers it with the same analysis the gateway reads: then ``schema_answer``.
        self.schema_of: relations_pb2.Relation | None = None
        self.schema_answer: bytes | None = None

    async def explain(self, relation: relations_pb2.Relation, statement: str) -> tuple[Analysis, UpstreamError | None]:
        """Spark's analysis of ``relation``, and the driver's own error when it failed.

        Read without optimizing or planning where it can be (``_unplanned``); when that
        fails, the relation itself is explained, so that the error is Spark's own about the
        client's plan, not about ours."""
        try:
            text = await self._unplanned(relation)
        except grpc.aio.AioRpcError as exc:
            if exc.code() in _OUT_OF_REACH:
                raise self._not_spark(exc) from None
            text = None  # Spark's error: asked again of the client's own plan, below, to be about it
        if text is not None:
            return from_explain_text(statement, text, builtin_functions=self.call.driver.builtin_functions), None
        try:
            text = explain_text(await self._explain(relation))
        except grpc.aio.AioRpcError as exc:
            error = self._spark_error(exc)
            return unanalysable(statement, error), UpstreamError(exc)
        return from_explain_text(statement, text, builtin_functions=self.call.driver.builtin_functions), None

    async def _unplanned(self, relation: relations_pb2.Relation) -> str | None:
        """The plan text of ``relation``, analysed but neither optimized nor planned: by the
        driver's analysis plugin (``_analysed``), else explained as ``relation.limit(0)``
        (``nothing_of``: analysed alike, and Spark's optimizer empties it first); None for
        SQL text on a driver without the plugin (a command in it prints as the root, which a
        limit would hide: it is explained as it is)."""
        if self.plugin_reads(relation):
            text = await self._analysed(relation)
            if text is not None:
                return text
        empty = nothing_of(relation)
        return None if empty is None else explain_text(await self._explain(empty))

    def plugin_reads(self, relation: relations_pb2.Relation) -> bool:
        """Whether the driver's analysis plugin analyses ``relation`` (all but ``spark.sql(text,
        df=...)``, which is explained over its views): its answer is then the relation's schema too."""
        return self.call.driver.analysis_plugin and relation.WhichOneof("rel_type") != "with_relations"

    async def _explain(self, relation: relations_pb2.Relation) -> bytes:
        request = explain_request(relation, session_id=self.session_id, user_id=self.call.principal.id)
        upstream = self.call.upstream
        response: bytes = await upstream.unary("AnalyzePlan")(
            request, metadata=upstream.metadata, timeout=self.call.timeout(self.timeout_s)
        )
        return response

    async def _analysed(self, relation: relations_pb2.Relation) -> str | None:
        """The plan text of ``relation`` through the driver's analysis plugin; when it is the
        relation of the client's own schema call, its answer is kept (``schema_answer``)."""
        request = analysis_request(relation, session_id=self.session_id, user_id=self.call.principal.id)
        upstream = self.call.upstream
        response: bytes = await upstream.unary("AnalyzePlan")(
            request, metadata=upstream.metadata, timeout=self.call.timeout(self.timeout_s)
        )
        split = split_answer(response)
        if split is None:
            return None  # not the plugin's answer: explained instead
        text, answer = split
        if relation is self.schema_of:
            self.schema_answer = answer
        return text

    def _spark_error(self, exc: grpc.aio.AioRpcError) -> SparkError:
        error_class, sqlstate = error_info(exc.trailing_metadata() or ())
        if error_class is None:
            raise self._not_spark(exc) from None
        message = first_line(self.call.scrub(exc.details() or "")) or error_class
        return SparkError(message, error_class=error_class, sqlstate=sqlstate)

    def _not_spark(self, exc: grpc.aio.AioRpcError) -> Exception:
        """What an upstream failure without a Spark error class is: a timeout, a lost driver."""
        if exc.code() is grpc.StatusCode.DEADLINE_EXCEEDED:
            return QueryTimedOut(f"Spark did not finish analysing within {self.timeout_s:g} s")
        if exc.code() in (_S.UNAVAILABLE, _S.UNAUTHENTICATED):
            driver = self.call.driver.id
            return DriverLost(f"driver {driver} is unreachable ({exc.code().name}): retry to get a new one")
        return UpstreamError(exc)

    async def explain_sql(self, text: str, parameters: relations_pb2.SQL | None = None) -> Analysis:
        """``EXPLAIN EXTENDED <text>``: the plan Spark got as far as, even when analysis fails."""
        gated = gate(text)
        if gated.dangers:
            return unanalysable(text, SparkError("the text did not pass the lexical gate", error_class="GATED"))
        request = explain_sql_request(
            gated.sql,
            session_id=self.session_id,
            user_id=self.call.principal.id,
            operation_id=str(uuid.uuid4()),
            parameters=parameters,
        )
        return await self._explained(request, gated.sql, failed_as=text)

    async def explain_with_refs(self, relation: relations_pb2.Relation, statement: str) -> Analysis:
        """``spark.sql(text, df=...)`` explained, never run: Spark would run a command in the
        text while merely planning the relation, so no analysis of the relation itself may
        come first. The text passes the lexical gate before it is sent."""
        text = relation.with_relations.root.sql.query
        gated = gate(text)
        if gated.dangers:
            # Refused unless sql.admin, and never explained: as run_sql treats such text.
            facts = StatementFacts(StatementKind.ADMIN, "(not analysed)", dangers=gated.dangers)
            return Analysis(gated.sql, facts, None, None)
        request = explain_with_refs_request(
            relation, session_id=self.session_id, user_id=self.call.principal.id, operation_id=str(uuid.uuid4())
        )
        return await self._explained(request, gated.sql, failed_as=statement)

    async def _explained(self, request: bytes, statement: str, *, failed_as: str) -> Analysis:
        """The analysis an EXPLAIN sent as a SQL command prints; Spark's error as an analysis."""
        upstream = self.call.upstream
        lease = await self.call.check(self.session_id)  # no interrupt of the session cuts it short
        try:
            stream = upstream.stream("ExecutePlan")(
                request, metadata=upstream.metadata, timeout=self.call.timeout(self.timeout_s)
            )
            responses = [chunk async for chunk in stream]
        except grpc.aio.AioRpcError as exc:
            return unanalysable(failed_as, self._spark_error(exc))
        finally:
            lease.release()
        builtins = self.call.driver.builtin_functions
        return from_explain_text(statement, command_text(responses), builtin_functions=builtins)

    async def failed_reads(self, found: Screen) -> Failed | None:
        """Every table a plan that failed analysis names, as far as Spark can tell, and the
        command its SQL text was (``attempted``); None when Spark could not tell because an
        ``EXPLAIN`` was interrupted."""
        reads: set[TableName] = set()
        commands: set[StatementFacts] = set()
        for name in found.tables:
            analysis, _ = await self.explain(table_relation(name), name)
            reads |= analysis.facts.reads
            if analysis.error is not None:
                # Found or not, as written: "not found" for hr.nope against a denial for
                # hr.salaries would tell which tables exist.
                reads |= as_written(name)
        for text in found.texts:
            cut_off = False
            for candidate in (text, f"SELECT {text}"):
                analysis = await self.explain_sql(candidate)
                reads |= analysis.facts.reads
                if analysis.facts.attempted is not None:
                    commands.add(analysis.facts.attempted)
                if analysis.plan is not None or analysis.facts.reads:
                    break
                cut_off = cut_off or _cut_short(analysis.error)
            else:
                if cut_off:
                    return None
        for sql in found.parameterized:
            # Without its parameters the text names no table Spark could bind: IDENTIFIER(:t)
            # with t = 'hr.salaries' would show Spark's "did you mean `salary`" to anyone.
            analysis = await self.explain_sql(sql.query, sql)
            reads |= analysis.facts.reads
            if analysis.plan is None and not analysis.facts.reads and _cut_short(analysis.error):
                return None
        # Several texts that were different commands: none is "the" command (the tables decide).
        return Failed(frozenset(reads), commands.pop() if len(commands) == 1 else None)


@dataclass(frozen=True)
class Failed:
    """What the gateway found out about a plan Spark could not analyse."""

    reads: frozenset[TableName]
    attempted: StatementFacts | None  # the command its SQL text was, as written


def as_written(name: str) -> frozenset[TableName]:
    """The table a name means as written (``written_table``), found or not; nothing for a bare
    name, or for one Spark refuses to parse (its error names no table)."""
    try:
        table = written_table(name_parts(name))
    except InvalidInput:
        return frozenset()
    return frozenset() if table is None else frozenset({table})


def _cut_short(error: SparkError | None) -> bool:
    """Whether an ``EXPLAIN`` was interrupted, so it could not tell which tables a plan names.

    Other failures are Spark's answer about the text itself: one that does not parse names no
    table, and one that fails past analysis (``SELECT 1 / 0`` under ANSI mode fails in the
    optimizer) fails the same way for the client, whose message Spark's is."""
    return error is not None and "CANCEL" in error.error_class.upper()


def with_reads(analysis: Analysis, failed: Failed) -> Analysis:
    attempted = analysis.facts.attempted or failed.attempted
    return replace(
        analysis, facts=replace(analysis.facts, reads=analysis.facts.reads | failed.reads, attempted=attempted)
    )


WITHHELD = (
    "Spark could not analyse the plan, and the gateway could not find out which tables its message "
    "would quote (a step of the check failed), so the message is withheld: run it again"
)


def withheld(analysis: Analysis) -> Analysis:
    """``analysis`` (which failed) with Spark's message replaced: it may quote a table the caller
    may not read (``failed_reads`` could not tell)."""
    assert analysis.error is not None
    # Not even Spark's error class: TABLE_OR_VIEW_NOT_FOUND would tell whether a table exists.
    error = SparkError(WITHHELD, error_class="ANALYSIS_WITHHELD")
    return unanalysable(analysis.statement, error)
