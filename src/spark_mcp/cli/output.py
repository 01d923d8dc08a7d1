"""The one place spark-mcp writes to stdout or stderr with text for a person.

When the server speaks MCP over stdio, stdout is the protocol stream: only the command-line
commands (``tokens``, ``drivers``, ``doctor``...) write their answers there, through ``out``;
everything said about an answer or a failure goes to stderr through ``err``. A test holds the
whole package to that, and ``serve`` to never calling ``out`` (``tests/test_no_stray_output.py``).
"""

from __future__ import annotations

import sys


def out(*values: object) -> None:
    """A command's answer, on stdout (never while serving)."""
    print(*values, file=sys.stdout)


def err(*values: object) -> None:
    """What a command says about its answer, or why it failed, on stderr."""
    print(*values, file=sys.stderr)
