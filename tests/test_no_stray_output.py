"""On stdio, stdout is the MCP stream: no module writes to it but the CLI's one writer."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src" / "spark_mcp"
WRITER = SRC / "cli" / "output.py"


def writes_to_a_terminal(tree: ast.AST) -> list[int]:
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print":
            lines.append(node.lineno)
        if (
            isinstance(node, ast.Attribute)
            and node.attr in ("stdout", "__stdout__")
            and (isinstance(node.value, ast.Name) and node.value.id == "sys")
        ):
            lines.append(node.lineno)
    return lines


def test_only_the_cli_writer_prints_or_touches_stdout() -> None:
    found = {
        str(path.relative_to(SRC)): lines
        for path in sorted(SRC.rglob("*.py"))
        if path != WRITER and (lines := writes_to_a_terminal(ast.parse(path.read_text())))
    }
    assert found == {}


def test_the_writer_is_found_by_the_same_check() -> None:
    assert writes_to_a_terminal(ast.parse(WRITER.read_text())), "the check must see print() and sys.stdout"


def test_serve_never_writes_a_commands_answer_to_stdout() -> None:
    # ``out`` is the writer's stdout half: ``serve`` speaks MCP there, so it may only use ``err``.
    serve = ast.parse((SRC / "cli" / "serve.py").read_text())
    uses = [n.lineno for n in ast.walk(serve) if isinstance(n, ast.Name) and n.id == "out"]
    imports = [
        n.lineno for n in ast.walk(serve) if isinstance(n, ast.ImportFrom) and any(a.name == "out" for a in n.names)
    ]
    assert uses == [] and imports == []
