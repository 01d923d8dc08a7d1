"""A scripted agent session: what an LLM agent does with spark-mcp, step by step.

    uv run python examples/agent_session.py

It generates TPC-H data (scale 0.01) into examples/data if it is not there, starts
`spark-mcp serve` over stdio exactly as a host would (with examples/spark-mcp.toml), and
then explores, queries, builds a DataFrame plan, pages a result, watches a long query
become a job, cancels it, and tries something its policy forbids. Every reply is printed
as the agent would read it (the text content).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import anyio
from mcp import Client, StdioServerParameters

HERE = Path(__file__).resolve().parent
SPARK_MCP = Path(sys.executable).parent / "spark-mcp"
TPCHGEN = Path(sys.executable).parent / "tpchgen-cli"


def ensure_data() -> None:
    if not (HERE / "data" / "tpch" / "lineitem.parquet").exists():
        print("generating TPC-H scale 0.01 into examples/data/tpch ...")
        subprocess.run(
            [str(TPCHGEN), "parquet", "-s", "0.01", "--output-dir", str(HERE / "data" / "tpch")],
            check=True,
            capture_output=True,
        )


async def step(client: Client, title: str, tool: str, **arguments: object) -> dict | None:
    print(f"\n### {title}\n> {tool}({json.dumps(arguments)})")
    result = await client.call_tool(tool, arguments)
    text = "\n".join(c.text for c in result.content if c.type == "text")
    print(("ERROR " if result.is_error else "") + text[:1500])
    return result.structured_content


async def main() -> None:
    ensure_data()
    home = tempfile.mkdtemp(prefix="spark-mcp-example-")
    env = {k: v for k, v in os.environ.items() if k in ("HOME", "PATH", "JAVA_HOME", "LANG")}
    env["SPARK_MCP_HOME"] = home  # keep this demo's state (audit log, results) out of yours
    params = StdioServerParameters(
        command=str(SPARK_MCP), args=["serve", "--config", str(HERE / "spark-mcp.toml"), "--user", "analyst"], env=env
    )
    async with Client(params) as client:
        await step(client, "Who am I and what may I do?", "whoami")
        await step(client, "What data is there?", "list_tables", namespace="tpch")
        await step(client, "What does lineitem look like?", "describe_table", table="tpch.lineitem")
        await step(client, "A first look at the rows", "preview_table", table="tpch.orders", limit=5)
        await step(
            client,
            "Check a query before running it",
            "explain",
            sql="SELECT o_orderpriority, count(*) FROM tpch.orders GROUP BY 1",
            mode="cost",
        )
        await step(
            client,
            "Revenue by market segment (SQL)",
            "run_sql",
            sql="""SELECT c_mktsegment, round(sum(o_totalprice), 2) AS revenue, count(*) AS orders
                   FROM tpch.orders JOIN tpch.customer ON o_custkey = c_custkey
                   GROUP BY c_mktsegment ORDER BY revenue DESC""",
        )
        plan = {
            "source": {"table": "tpch.lineitem"},
            "operations": [
                {"op": "with_column", "name": "revenue", "expr": "l_extendedprice * (1 - l_discount)"},
                {
                    "op": "group_by",
                    "columns": ["l_shipmode"],
                    "aggs": [{"fn": "sum", "column": "revenue", "alias": "total"}],
                },
                {
                    "op": "window",
                    "name": "rank",
                    "function": "rank()",
                    "order_by": [{"column": "total", "descending": True}],
                },
                {"op": "order_by", "keys": ["rank"]},
            ],
            "save_as": "revenue_by_shipmode",
        }
        await step(client, "The same kind of analysis as a DataFrame plan, saved as a view", "run_plan", plan=plan)
        await step(
            client, "Build on the saved step", "run_sql", sql="SELECT * FROM revenue_by_shipmode WHERE rank <= 3"
        )
        big = await step(
            client, "A big result: only a preview comes back", "run_sql", sql="SELECT * FROM tpch.lineitem", max_rows=3
        )
        if big is not None:
            await step(client, "Page through it", "fetch_rows", result_id=big["result_id"], offset=1000, limit=5)
            await step(client, "Or summarise it", "get_job", job_id=big["job_id"], summary=True)
        running = await step(
            client,
            "A long query becomes a job",
            "run_sql",
            sql="SELECT count(*) FROM range(100000) a CROSS JOIN range(100000) b WHERE a.id + b.id < 0",
            wait_s=3,
        )
        if running is not None and running.get("state") == "running":
            await step(client, "Check on it", "get_job", job_id=running["job_id"], wait_s=1)
            await step(client, "Stop it", "cancel_job", job_id=running["job_id"])
        await step(client, "Try something the policy forbids", "run_sql", sql="DROP TABLE tpch.orders")
        await step(
            client, "And the dangerous surface", "run_sql", sql="SELECT reflect('java.lang.System', 'getenv', 'HOME')"
        )
    print(f"\nThe audit log of this session: {home}/audit/audit.jsonl")


if __name__ == "__main__":
    anyio.run(main)
