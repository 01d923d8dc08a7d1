"""The one place spark-mcp writes to stdout or stderr with text for a person.

When the server speaks MCP over stdio, stdout is the protocol stream: only the command-line
commands (``tokens``, ``drivers``, ``doctor``...) print, and they do it through ``out``, so
a test can hold the whole package to that (``tests/test_no_stray_output.py``).
"""

from __future__ import annotations

import sys
from typing import TextIO


def out(*values: object, file: TextIO | None = None) -> None:
    """``print`` for a command's answer (stdout), or for what it says about it (``file=sys.stderr``)."""
    print(*values, file=file if file is not None else sys.stdout)
