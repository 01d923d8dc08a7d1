"""Run a statement or DataFrame under an operation tag and stream its result as Arrow.

The caller's sink receives the Arrow schema (each field carrying its exact Spark type in
metadata ``spark_type``) and then record batches, and may stop the stream (a row or
byte cap was reached). Results are always bounded on the server side too: the plan is
wrapped in ``limit(row_limit)``, so Spark never computes more rows than can be kept.
Interrupting the tag from any thread stops the work in Spark.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, cast

from spark_mcp.spark.connect import ConnectSession
from spark_mcp.spark.errors import translate

if TYPE_CHECKING:
    import pyarrow as pa

    # pyspark is imported where it is used, not with this module: it loads (with pandas and
    # numpy) off the server's start-up path, while the first driver boots (issue 12).
    from pyspark.sql import DataFrame
    from pyspark.sql.types import StructType

    Frame = DataFrame  # for layers above spark/, which never import pyspark themselves

SPARK_TYPE_KEY = b"spark_type"


class ArrowSink(Protocol):
    def begin(self, schema: pa.Schema) -> None: ...

    def write(self, table: pa.Table) -> bool:
        """Take a batch; return False to stop the stream (a cap was reached)."""
        ...


@dataclass(frozen=True)
class Progress:
    """What Spark reported so far about one operation."""

    stages: int = 0
    stages_done: int = 0
    tasks: int = 0
    tasks_done: int = 0
    inflight_tasks: int = 0
    done: bool = False

    @property
    def fraction(self) -> float | None:
        return self.tasks_done / self.tasks if self.tasks else None


def progress_from_stages(stages: list[Any], inflight_tasks: int, done: bool) -> Progress:
    return Progress(
        stages=len(stages),
        stages_done=sum(1 for s in stages if s.done),
        tasks=sum(int(s.num_tasks) for s in stages),
        tasks_done=sum(int(s.num_completed_tasks) for s in stages),
        inflight_tasks=int(inflight_tasks),
        done=done,
    )


def arrow_schema(struct: StructType) -> pa.Schema:
    """Spark's schema as Arrow, each field annotated with its exact Spark SQL type."""
    import pyarrow as pa
    from pyspark.sql.pandas.types import to_arrow_schema

    schema = to_arrow_schema(struct, error_on_duplicated_field_names_in_struct=True, timezone="UTC")
    fields = [
        field.with_metadata({SPARK_TYPE_KEY: spark_field.dataType.simpleString().encode()})
        for field, spark_field in zip(schema, struct.fields, strict=True)
    ]
    return pa.schema(fields)


def stream(
    session: ConnectSession,
    make_frame: Callable[[], DataFrame],
    *,
    tag: str,
    row_limit: int,
    sink: ArrowSink,
    on_progress: Callable[[Progress], None] | None = None,
    check_stop: Callable[[], None] = lambda: None,
) -> None:
    """Build the DataFrame (commands run here) and stream at most ``row_limit`` rows into ``sink``.

    Runs on the calling thread and blocks; any failure is raised translated.
    ``check_stop`` is called between Spark calls and raises to abandon the work, so a
    stop request that arrives between two operations is not lost.
    """
    from pyspark.sql.types import StructType

    spark = session.spark
    check_stop()
    spark.addTag(tag)
    if on_progress is not None:
        session.set_progress_callback(
            lambda st, inflight, _op, done: on_progress(progress_from_stages(st, inflight, done))
        )
    try:
        frame = make_frame().limit(row_limit)
        check_stop()
        client = spark.client
        plan = cast(Any, frame)._plan  # private, but streaming needs the plan, not a collected table
        schema: pa.Schema | None = None
        for item in client.to_table_as_iterator(plan.to_proto(client), plan.observations):
            if isinstance(item, StructType):
                schema = arrow_schema(item)
                sink.begin(schema)
                continue
            if schema is None:  # no schema message came first: ask for it once
                schema = arrow_schema(frame.schema)
                sink.begin(schema)
            check_stop()
            if not sink.write(item.cast(schema)):
                spark.interruptTag(tag)  # the sink is full: stop computing what nobody will read
                break
        if schema is None:
            sink.begin(arrow_schema(frame.schema))
    except Exception as exc:
        raise translate(exc) from None
    finally:
        session.set_progress_callback(None)
        spark.removeTag(tag)


def save_temp_view(session: ConnectSession, frame: DataFrame, name: str, *, tag: str) -> None:
    """Keep ``frame`` as a temp view of the session (a plan's ``save_as``)."""
    spark = session.spark
    spark.addTag(tag)
    try:
        frame.createOrReplaceTempView(name)
    except Exception as exc:
        raise translate(exc) from None
    finally:
        spark.removeTag(tag)


def query_frame(session: ConnectSession, sql: str) -> DataFrame:
    """The DataFrame of a query, built on the client: no round trip until it is executed.

    Only for statements analysis classified as a query: a command sent this way would run
    on the driver as soon as the frame is executed, exactly like ``spark.sql`` runs it.
    """
    from pyspark.sql.connect.dataframe import DataFrame as ConnectDataFrame
    from pyspark.sql.connect.plan import SQL

    return cast("DataFrame", ConnectDataFrame(SQL(sql, [], {}, []), session.spark))


def command_result(session: ConnectSession, sql: str) -> pa.Table | DataFrame:
    """Run one statement as a command (it runs at once) in one round trip.

    Spark answers a command with its rows inline (a local relation): they come back as an
    Arrow table. A larger answer is cached on the driver, and a query is answered with its
    relation: either comes back as a DataFrame still to execute.
    """
    import pyarrow as pa
    from pyspark.sql.connect.dataframe import DataFrame as ConnectDataFrame
    from pyspark.sql.connect.plan import SQL, CachedRelation

    spark = session.spark
    client: Any = spark.client
    # execute_command_as_iterator refuses the metrics Spark sends along: read the responses here.
    request = client._execute_plan_request_with_metadata()
    client._set_command_in_plan(request.plan, SQL(sql, [], {}, []).command(client))
    relation: Any = None
    for response in client._execute_and_fetch_as_iterator(request, {}):
        if isinstance(response, dict):
            relation = response.get("sql_command_result", relation)
    if relation is not None and relation.HasField("local_relation") and relation.local_relation.HasField("data"):
        return pa.ipc.open_stream(relation.local_relation.data).read_all()
    if relation is None:
        return pa.table({})
    return cast("DataFrame", ConnectDataFrame(CachedRelation(relation), spark))


def stream_sql(session: ConnectSession, sql: str, *, query: bool, tag: str, sink: ArrowSink, **kwargs: Any) -> None:
    """``stream`` for one SQL statement: a query straight from its text, a command sent first.

    ``query`` must come from analysis (``StatementKind.QUERY``): it saves the round trip a
    ``spark.sql`` call costs, which for a query only echoes the statement back.
    """
    import pyarrow as pa

    if query:
        stream(session, lambda: query_frame(session, sql), tag=tag, sink=sink, **kwargs)
        return
    spark = session.spark
    spark.addTag(tag)
    try:
        result = command_result(session, sql)
    except Exception as exc:
        raise translate(exc) from None
    finally:
        spark.removeTag(tag)
    if isinstance(result, pa.Table):
        from pyspark.sql.pandas.types import from_arrow_schema

        schema = arrow_schema(from_arrow_schema(result.schema)) if result.num_columns else result.schema
        sink.begin(schema)
        if result.num_rows:
            sink.write(result.cast(schema))
        return
    frame = result
    stream(session, lambda: frame, tag=tag, sink=sink, **kwargs)


def interrupt(session: ConnectSession, tag: str) -> list[str]:
    """Interrupt every operation carrying ``tag``; returns the interrupted operation ids."""
    try:
        return list(session.spark.interruptTag(tag))
    except Exception as exc:
        raise translate(exc) from None
