"""Reading spark-mcp's replies in the benchmarks (no dependency on the test suite)."""

from __future__ import annotations

from mcp.types import CallToolResult, TextContent


def first_text(result: CallToolResult) -> str:
    """The text of a reply's first block: spark-mcp leads every reply, error or not, with a text block."""
    block = result.content[0]
    assert isinstance(block, TextContent), block
    return block.text
