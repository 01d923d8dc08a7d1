"""The gateway fails closed when the audit log cannot be written, as MCP calls do (``test_faults.py``).

One server process serves MCP over stdio and the Spark Connect gateway beside it, under a real
file size limit (RLIMIT_FSIZE) that leaves no room for another audit record; the operator then
raises it from outside (prlimit), and the test lowers it again while a driver runs. PySpark's
own Spark Connect client calls the gateway.
"""

from __future__ import annotations

import json
import resource
import socket
from pathlib import Path

import anyio
import grpc
import pytest
from mcp import Client, MCPError
from pyspark.sql.connect.client.retries import DefaultPolicy
from pyspark.sql.connect.session import SparkSession

from spark_mcp.audit import AuditLog, Redactor, verify
from spark_mcp.config import load_config
from tests.fleet_support import driver_rows
from tests.gateway_support import RETRIES, connect, failure, off_loop, status_of, tokens_for
from tests.helpers import pid_running, write_config
from tests.test_faults import limited_server

pytestmark = [pytest.mark.anyio, pytest.mark.spark]

WITHHELD = "audit_error: the audit log cannot be written, so calls do not run"
REFUSED_UNTIL_NOW = "audit_error: this call did not run: the audit log could not be written until now"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def refused(spark: SparkSession) -> str:
    """The text of the UNAVAILABLE refusal a query meets (the test fails on anything else)."""
    exc = failure(lambda: spark.sql("SELECT 1 AS one").collect())
    assert status_of(exc) is grpc.StatusCode.UNAVAILABLE, exc
    text = str(exc)
    assert "(spark_mcp.audit_error)" in text, text  # the stable code, from the status details
    return text


async def test_while_the_audit_log_cannot_be_written_every_gateway_call_is_refused_before_it_reaches_a_driver(
    tmp_path: Path, data_dir: Path
) -> None:
    home = tmp_path / "home"
    config_path = write_config(home, data_dir)
    token = tokens_for(load_config(config_path), "alice")["alice"]
    log_path = home / "audit" / "audit.jsonl"
    # An earlier, legitimate record of 1 MB: the limit below leaves room for the state
    # database (tokens, drivers) but none for another record.
    with AuditLog(log_path, Redactor()) as log:
        log.emit(
            request_id="r0", principal="alice", tool="run_sql", outcome="ok", duration_ms=1, statement="x" * 1_000_000
        )
    size = log_path.stat().st_size
    port = free_port()
    params = limited_server(config_path, size + 50)
    params = params.model_copy(update={"args": [*params.args, "--gateway-port", str(port)]})
    async with Client(params) as alice_mcp:
        # A first call finds the log full (MCP's whoami: it needs no driver).
        with pytest.raises(MCPError, match=WITHHELD):
            await alice_mcp.call_tool("whoami", {})

        # From now on the gateway refuses every call, through all of the client's (bounded) retries,
        # and neither a query nor a statement that would start alice's driver starts one.
        spark = await off_loop(lambda: connect(port, token))
        # One call at a time, in order: a reattachable execution also sends ReleaseExecute from a
        # background thread, which could take the one recorded refusal looked for below.
        spark.client.disable_reattachable_execute()
        try:
            with anyio.fail_after(120):
                said = await off_loop(lambda: refused(spark))
                assert WITHHELD in said and "the server's operator must make it writable" in said, said
                exc = await off_loop(lambda: failure(lambda: spark.range(3).collect()))
            assert status_of(exc) is grpc.StatusCode.UNAVAILABLE and WITHHELD in str(exc), exc
            assert driver_rows(home) == []
            assert log_path.stat().st_size == size  # no half record was left behind
            assert verify(log_path).ok

            # Room again (the operator raised the limit). A client that does not retry sees the
            # first call refused but recorded; the calls after it run, on alice's new driver.
            server = pid_running(str(config_path))
            resource.prlimit(server, resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
            spark.client.set_retry_policies([DefaultPolicy(**{**RETRIES, "max_retries": 0})])  # type: ignore[arg-type]
            with anyio.fail_after(120):
                said = await off_loop(lambda: refused(spark))
            assert REFUSED_UNTIL_NOW in said and "it can be again: retry" in said, said
            with anyio.fail_after(300):
                rows = await off_loop(lambda: spark.sql("SELECT 1 AS one").collect())
            assert [row.one for row in rows] == [1]

            # Full again, while alice's driver runs: a statement that ran, but whose record cannot
            # be written, ends with the same refusal instead of its answer (and so do the retries).
            recorded = log_path.stat().st_size
            resource.prlimit(server, resource.RLIMIT_FSIZE, (recorded + 50, resource.RLIM_INFINITY))
            spark.client.set_retry_policies([DefaultPolicy(**RETRIES)])  # type: ignore[arg-type]
            with anyio.fail_after(120):
                said = await off_loop(lambda: refused(spark))
            assert WITHHELD in said, said
            assert log_path.stat().st_size == recorded
            resource.prlimit(server, resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        finally:
            await off_loop(spark.client.close)
    records = [json.loads(line) for line in log_path.read_text().splitlines()]
    assert records[0]["request_id"] == "r0"
    refusal, *after = records[1:]
    assert (refusal["tool"], refusal["via"], refusal["principal"], refusal["outcome"], refusal["error_class"]) == (
        "spark_connect.ExecutePlan",
        "gateway",
        "alice",
        "error",
        "audit_error",
    )
    assert refusal["auth"] == "token" and refusal["token_id"] == token.split("_")[1]
    assert ("spark_connect.ExecutePlan", "ok") in [(r["tool"], r["outcome"]) for r in after]
    assert all(r["via"] == "gateway" for r in after)
    assert verify(log_path).ok
