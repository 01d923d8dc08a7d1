"""Typed structured output of every tool (the tools' output schemas).

Field names are part of the product: agents and hosts rely on them. Keep them stable.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

JobStateName = Literal["queued", "running", "succeeded", "failed", "cancelled", "timed_out", "lost"]
ResultStateName = Literal["complete", "on_demand", "storing", "failed"]


class ColumnOut(BaseModel):
    name: str
    type: str = Field(description="Spark SQL type, e.g. int, decimal(10,2), array<string>")


class ProgressOut(BaseModel):
    stages: int
    stages_done: int
    tasks: int
    tasks_done: int


class ErrorOut(BaseModel):
    code: str = Field(description="spark-mcp's stable error code, e.g. spark_error, policy_denied, timed_out")
    error_class: str | None = Field(default=None, description="Spark's error class, e.g. TABLE_OR_VIEW_NOT_FOUND")
    message: str


class QueryReply(BaseModel):
    """The result of a statement, or the handle of a job still running it."""

    state: JobStateName
    job_id: str
    session_id: str
    statement_kind: str = Field(description="query, temp_view, metadata, write, ddl or admin")
    columns: list[ColumnOut] = []
    rows: list[list[Any]] = Field(
        default=[], description="exact values: decimals as strings, dates and timestamps ISO 8601"
    )
    result_set: bool = Field(default=True, description="false for statements that return no rows (DDL, views, SET)")
    row_count: int = Field(default=0, description="rows in this reply")
    truncated: bool = Field(default=False, description="more rows exist than this reply shows")
    total_rows: int | None = Field(default=None, description="rows kept in the stored result")
    result_id: str | None = Field(default=None, description="page through it with fetch_rows")
    result_state: ResultStateName | None = Field(
        default=None, description="complete, or on_demand: fetch_rows computes rows past the preview when asked"
    )
    elapsed_ms: int
    progress: ProgressOut | None = None
    summary: bool = Field(default=False, description="rows are per-column statistics of the result (summary=true)")
    notes: list[str] = Field(default=[], description="caps that applied and other things to know")
    error: ErrorOut | None = None


class TablePreview(BaseModel):
    """The first rows of a table or view."""

    table: str
    columns: list[ColumnOut]
    rows: list[list[Any]] = Field(description="exact values: decimals as strings, dates and timestamps ISO 8601")
    row_count: int
    truncated: bool = Field(description="the table has more rows")
    result_id: str
    notes: list[str] = []


class RowsPage(BaseModel):
    result_id: str
    format: Literal["table", "json", "csv"]
    offset: int
    row_count: int
    total_rows: int | None = Field(description="rows in the whole result, null until it is complete")
    result_state: ResultStateName
    next_offset: int | None = Field(description="offset of the next page, or null at the end")
    columns: list[ColumnOut]
    rows: list[list[Any]] | None = Field(default=None, description="exact values (format=json)")
    text: str | None = Field(default=None, description="the page as a compact table or CSV")
    notes: list[str] = []


class JobInfo(BaseModel):
    job_id: str
    state: JobStateName
    tool: str
    session_id: str
    statement: str
    created_at: str
    elapsed_ms: int
    result_id: str | None
    error: ErrorOut | None = None


class JobList(BaseModel):
    jobs: list[JobInfo]


class LimitsOut(BaseModel):
    max_rows: int
    max_chars: int
    query_timeout_s: float
    max_sessions: int


class ProfileOut(BaseModel):
    name: str
    engine: str
    backend: str
    cores: int
    memory: str = Field(description="driver heap")
    default: bool = Field(description="used when create_session names no profile")
    description: str | None = None


class QuotasOut(BaseModel):
    share: Literal["user", "session", "group"] = Field(description="how drivers are shared (driver.share)")
    max_sessions: int = Field(description="limits.max_sessions for you")
    session_idle_timeout_s: float
    max_drivers: int = Field(description="quotas.max_drivers, for the whole server")
    max_drivers_per_user: int
    max_driver_memory_bytes: int = Field(description="quotas.max_driver_memory, for the whole server")
    driver_idle_timeout_s: float = Field(description="0: idle drivers are kept")
    driver_max_lifetime_s: float = Field(description="0: no limit")
    drivers_running: int = Field(description="drivers the server runs now, spares included")
    driver_memory_used_bytes: int
    your_drivers: int = Field(description="drivers that count against your max_drivers_per_user")


class WhoAmI(BaseModel):
    principal: str
    roles: list[str]
    actions: list[str] = Field(description="what you may do")
    read: list[str] = Field(description="table patterns you may read")
    write: list[str] = Field(description="table patterns you may change (with sql.write / sql.ddl)")
    deny: list[str] = Field(description="table patterns denied whatever else says")
    limits: LimitsOut
    profiles: list[ProfileOut] = Field(description="driver profiles you may name in create_session")
    engines: list[str]
    quotas: QuotasOut
    spark_version: str
    driver_backend: str


class SessionInfo(BaseModel):
    session_id: str
    state: Literal["open", "closed", "expired", "lost"]
    default: bool
    driver_id: str
    profile: str
    engine: str
    created_at: str
    last_used_at: str
    note: str | None = None


class SessionList(BaseModel):
    sessions: list[SessionInfo]


class CatalogList(BaseModel):
    catalogs: list[str]
    current_catalog: str | None = None
    hidden: int = 0


class NamespaceList(BaseModel):
    catalog: str | None
    namespaces: list[str]
    hidden: int = 0


class TableOut(BaseModel):
    name: str = Field(description="the name to use in SQL")
    catalog: str | None
    namespace: str | None
    type: str
    is_temporary: bool
    description: str | None = None


class TableList(BaseModel):
    tables: list[TableOut]
    hidden: int = Field(description="tables not shown because your policy does not let you read them")


class ColumnDetail(BaseModel):
    name: str
    type: str
    nullable: bool
    comment: str | None = None
    partition: bool = False


class TableDescriptionOut(BaseModel):
    table: str
    type: str | None
    provider: str | None
    location: str | None
    comment: str | None
    columns: list[ColumnDetail]
    partition_columns: list[str]
    base_tables: list[str] = Field(description="tables behind it, views expanded")


class DecisionOut(BaseModel):
    allowed: bool
    reason: str
    rule: str = Field(description="the policy rule that decided")


class DangerOut(BaseModel):
    kind: str
    detail: str


class ExplainReply(BaseModel):
    session_id: str
    mode: Literal["simple", "extended", "cost", "formatted"]
    statement_kind: str
    operation: str = Field(description="the root of Spark's analyzed plan")
    tables_read: list[str]
    tables_written: list[str]
    functions: list[str]
    views: list[str] = Field(description="views expanded on the way to the base tables")
    dangers: list[DangerOut]
    decision: DecisionOut
    plan: str | None = Field(description="Spark's plan text; withheld when the policy denies the statement")
    estimated_bytes: float | None = Field(default=None, description="Spark's estimate of the result size (cost)")
    estimated_rows: int | None = Field(default=None, description="Spark's estimate of the row count (cost)")
    error: ErrorOut | None = None
    notes: list[str] = []
