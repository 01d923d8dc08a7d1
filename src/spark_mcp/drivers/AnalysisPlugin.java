package dev.sparkmcp;

import java.util.ArrayList;
import java.util.List;
import java.util.Optional;

import org.apache.spark.connect.proto.Relation;
import org.apache.spark.sql.catalyst.expressions.Alias;
import org.apache.spark.sql.catalyst.expressions.Attribute;
import org.apache.spark.sql.catalyst.expressions.Literal;
import org.apache.spark.sql.catalyst.expressions.NamedExpression;
import org.apache.spark.sql.catalyst.plans.QueryPlan$;
import org.apache.spark.sql.catalyst.plans.logical.LogicalPlan;
import org.apache.spark.sql.catalyst.plans.logical.Project;
import org.apache.spark.sql.catalyst.util.StringUtils.PlanStringConcat;
import org.apache.spark.sql.catalyst.util.package$;
import org.apache.spark.sql.classic.SparkSession;
import org.apache.spark.sql.connect.planner.SparkConnectPlanner;
import org.apache.spark.sql.connect.plugin.RelationPlugin;
import org.apache.spark.sql.execution.CommandExecutionMode;
import org.apache.spark.sql.execution.QueryExecution;
import org.apache.spark.sql.internal.SQLConf;
import org.apache.spark.sql.types.DataTypes;
import org.apache.spark.util.Utils;
import org.sparkproject.connect.protobuf.Any;
import org.sparkproject.connect.protobuf.InvalidProtocolBufferException;

import scala.Option;
import scala.collection.immutable.Seq;
import scala.jdk.javaapi.CollectionConverters;
import scala.runtime.BoxedUnit;

/**
 * spark-mcp's gateway asks for a relation's schema and its analyzed plan in one analysis.
 *
 * <p>The gateway governs a client's {@code df.schema} by reading Spark's analyzed plan of the
 * same relation. Without this plugin that is two analyses on the driver: the client's schema
 * and the gateway's {@code EXPLAIN}. Wrapped as this extension ({@link #TYPE_URL}, the value
 * being the client's relation), one {@code AnalyzePlan(schema)} answers both: the relation's
 * own columns, exactly as Spark analysed them, then one more string column whose name is the
 * parsed and analyzed sections of {@code EXPLAIN EXTENDED}, printed as Spark prints them and
 * redacted as Spark redacts them. Nothing runs: a command is analysed, never executed. The
 * gateway refuses extension relations from clients (they need {@code sql.admin}), so only
 * the gateway uses it.
 */
public final class AnalysisPlugin implements RelationPlugin {
  public static final String TYPE_URL = "type.googleapis.com/spark_mcp.AnalyzedRelation";

  // Where EXPLAIN EXTENDED would print the optimized and physical plans: printed too, so that
  // a literal or a name that prints a section header is seen twice and the text refused.
  private static final String NOT_OPTIMIZED =
      "\n== Optimized Logical Plan ==\n(not optimized)\n== Physical Plan ==\n(not planned)\n";

  @Override
  public Optional<LogicalPlan> transform(byte[] extension, SparkConnectPlanner planner) {
    Relation relation;
    try {
      Any any = Any.parseFrom(extension);
      if (!TYPE_URL.equals(any.getTypeUrl())) {
        return Optional.empty();
      }
      relation = Relation.parseFrom(any.getValue());
    } catch (InvalidProtocolBufferException e) {
      return Optional.empty();
    }
    SparkSession session = planner.session();
    LogicalPlan parsed = planner.transformRelation(relation);
    QueryExecution execution =
        session.sessionState().executePlan(parsed, CommandExecutionMode.SKIP());
    execution.assertAnalyzed(); // Spark's own analysis error, as the client's schema call gets
    LogicalPlan analyzed = execution.analyzed();
    String text = Utils.redact(session.sessionState().conf().stringRedactionPattern(),
        explained(execution.logical(), analyzed) + NOT_OPTIMIZED);
    List<NamedExpression> columns = new ArrayList<>();
    columns.addAll(CollectionConverters.asJava(analyzed.output()));
    columns.add(new Alias(Literal.create(null, DataTypes.StringType), text,
        org.apache.spark.sql.catalyst.expressions.NamedExpression$.MODULE$.newExprId(),
        emptySeq(), Option.empty(), emptySeq()));
    Project project = new Project(CollectionConverters.asScala(columns).toList(), analyzed);
    // Built of an analysed plan and resolved expressions: Spark need not analyse it again
    // (which would cost about as much as the analysis itself).
    project.setAnalyzed();
    return Optional.of(project);
  }

  /** The first two sections of QueryExecution.writePlans (Spark 4.x), byte for byte. */
  private static String explained(LogicalPlan parsed, LogicalPlan analyzed) {
    PlanStringConcat concat = new PlanStringConcat();
    scala.Function1<String, BoxedUnit> append = s -> {
      concat.append(s);
      return BoxedUnit.UNIT;
    };
    int maxFields = SQLConf.get().maxToStringFields();
    concat.append("== Parsed Logical Plan ==\n");
    QueryPlan$.MODULE$.append(() -> parsed, append, true, false, maxFields,
        QueryPlan$.MODULE$.append$default$6(), QueryPlan$.MODULE$.append$default$7());
    concat.append("\n== Analyzed Logical Plan ==\n");
    Seq<Attribute> output = analyzed.output();
    if (output.nonEmpty()) {
      List<String> fields = new ArrayList<>();
      for (Attribute attribute : CollectionConverters.asJava(output)) {
        fields.add(attribute.name() + ": " + attribute.dataType().simpleString());
      }
      concat.append(package$.MODULE$.truncatedString(
          CollectionConverters.asScala(fields).toList(), ", ", maxFields));
      concat.append("\n");
    }
    QueryPlan$.MODULE$.append(() -> analyzed, append, true, false, maxFields,
        QueryPlan$.MODULE$.append$default$6(), QueryPlan$.MODULE$.append$default$7());
    return concat.toString();
  }

  private static <T> Seq<T> emptySeq() {
    return CollectionConverters.asScala(new ArrayList<T>()).toList();
  }
}
