"""How big is render_table's text next to the plain JSON dump that other Spark MCP servers return?

Run by hand: ``uv run python benchmarks/preview_size.py``. The "peer" output is what Spark MCP
servers on PyPI return today: ``json.dumps(df.to_dict(orient="records"), default=str)`` of the
same rows through pandas. Characters are counted, not tokens: no tokenizer is a dependency.
"""

from __future__ import annotations

import datetime as dt
import json
import random
from decimal import Decimal

import pyarrow as pa

from spark_mcp.preview import render_table

BUDGET = 16_000


def lineitem(rows: int, *, seed: int = 0) -> pa.Table:
    """TPC-H lineitem's sixteen columns with values in TPC-H's ranges."""
    rng = random.Random(seed)
    money = pa.decimal128(15, 2)
    epoch = dt.date(1992, 1, 1)

    def ints(lo: int, hi: int, arrow_type: pa.DataType) -> pa.Array:
        return pa.array([rng.randrange(lo, hi) for _ in range(rows)], arrow_type)

    def cents(lo: int, hi: int) -> pa.Array:
        return pa.array([Decimal(rng.randrange(lo, hi)).scaleb(-2) for _ in range(rows)], money)

    def dates() -> pa.Array:
        return pa.array([epoch + dt.timedelta(days=rng.randrange(2500)) for _ in range(rows)], pa.date32())

    def pick(*choices: str) -> pa.Array:
        return pa.array([rng.choice(choices) for _ in range(rows)])

    words = (
        "carefully",
        "final",
        "deposits",
        "sleep",
        "quickly",
        "furiously",
        "ironic",
        "packages",
        "blithely",
    )

    def comment() -> str:
        text = ""
        while len(text) < 44:
            text += rng.choice(words) + " "
        return text[:44].strip()

    return pa.table(
        {
            "l_orderkey": ints(1, 6_000_000, pa.int64()),
            "l_partkey": ints(1, 200_000, pa.int64()),
            "l_suppkey": ints(1, 10_000, pa.int64()),
            "l_linenumber": ints(1, 8, pa.int32()),
            "l_quantity": cents(100, 5_100),
            "l_extendedprice": cents(90_000, 10_500_000),
            "l_discount": cents(0, 11),
            "l_tax": cents(0, 9),
            "l_returnflag": pick("A", "N", "R"),
            "l_linestatus": pick("F", "O"),
            "l_shipdate": dates(),
            "l_commitdate": dates(),
            "l_receiptdate": dates(),
            "l_shipinstruct": pick("DELIVER IN PERSON", "COLLECT COD", "NONE", "TAKE BACK RETURN"),
            "l_shipmode": pick("REG AIR", "AIR", "RAIL", "SHIP", "TRUCK", "MAIL", "FOB"),
            "l_comment": pa.array([comment() for _ in range(rows)]),
        }
    )


def peer_chars(table: pa.Table) -> int:
    return len(json.dumps(table.to_pandas().to_dict(orient="records"), default=str))


def main() -> None:
    print(f"render_table versus the peer JSON dump, in characters (budget max_chars={BUDGET:,})")
    for rows in (50, 1_000):
        table = lineitem(rows)
        peer = peer_chars(table)
        budgeted = render_table(table, max_chars=BUDGET)
        full = render_table(table, max_chars=10**9)
        # Like for like: the peer's JSON of only the rows the budgeted text shows.
        peer_shown = peer_chars(table.slice(0, budgeted.rows_shown))
        shown = f"{budgeted.rows_shown} of {rows} rows shown"
        print(f"\nlineitem, {rows} rows x {table.num_columns} columns")
        print(f"  peer JSON, all rows          {peer:>9,}  ({peer / rows:.0f}/row)")
        print(f"  render_table, no budget      {len(full.text):>9,}  ({len(full.text) / rows:.0f}/row)")
        print(f"  render_table, {BUDGET:,} budget  {len(budgeted.text):>9,}  ({shown})")
        print(f"  ratio budgeted / peer all rows    {len(budgeted.text) / peer:.3f}")
        print(f"  ratio per row shown (same rows)   {len(budgeted.text) / peer_shown:.3f}")
        print(f"  status line: {budgeted.text.splitlines()[-1]}")


if __name__ == "__main__":
    main()
