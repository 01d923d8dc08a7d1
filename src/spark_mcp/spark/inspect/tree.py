"""The tree reader: the analyzed plan's lines as nodes with a depth and a root.

Spark prints a plan as one node per line, children indented under ``+- `` and ``:- ``
prefixes. Text a literal or a name prints can add lines anywhere, so the reader is built
to let planted text only add nodes, never hide the real ones: every indented line naming a
node is a node, every unindented line naming a known node is a candidate root, and any
other line continues the node above it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from spark_mcp.spark.inspect.vocabulary import KNOWN

PREFIX = re.compile(r"(?P<indent>(?:   |:  )*)(?P<branch>\+- |:- )")
# A node name: optional marks (' unresolved, ~ streaming), then an identifier that is
# followed by the end of the line, a space, '[' or '(' (as Spark prints ``name args``).
_NODE = re.compile(r"(?P<marks>['~]*)(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?P<dollar>\$?)(?=$|[ \[(])")


@dataclass
class Node:
    index: int  # line number in the analyzed section
    depth: int  # 0 for an unindented line, else the tree depth
    name: str
    text: str  # the node's line after its prefix, plus its continuation lines
    top: int | None = None  # index of the depth-1 node this one sits under, if any

    @property
    def head(self) -> str:
        """The node's own line, without continuation lines."""
        return self.text.split("\n", 1)[0]


def node_name(text: str) -> str | None:
    match = _NODE.match(text)
    return match.group("name") if match else None


def unindented_known(line: str) -> bool:
    return not PREFIX.match(line) and node_name(line) in KNOWN


def root_index(lines: list[str]) -> int:
    """Line of the root node: the first unindented line naming a known node.

    Above it there is at most the output schema header, which is one line unless a column
    name holds a line break (``split(s, '\\n')`` names its column with the literal). Only
    a query has column names a statement can choose, so a header of several lines is
    tolerated; a known node planted in it is a second root candidate (see ``classify``).
    When line 0 is a known node and line 1 is one too, line 0 is a header that happens to
    read like a node ("Sort order: int") and line 1 the root; line 0 stays a candidate.
    """
    known = [i for i, line in enumerate(lines) if unindented_known(line)]
    if not known:
        return 0
    if known[0] == 0 and len(known) > 1 and known[1] == 1:
        return 1
    return known[0]


def read_tree(lines: list[str], root: int) -> list[Node]:
    """Nodes in print order; lines that are not node lines continue the previous node.

    Every indented line naming a node is a node, and so is every unindented line naming a
    known node (a candidate root), even above the root: text a literal planted can then
    only add nodes, never hide the real ones.
    """
    nodes: list[Node] = []
    top: int | None = None
    for index, line in enumerate(lines):
        prefix = PREFIX.match(line)
        if prefix:
            rest = line[prefix.end() :]
            name = node_name(rest)
            if name is not None:
                depth = len(prefix.group("indent")) // 3 + 1
                if depth == 1:
                    top = index
                nodes.append(Node(index, depth, name, rest, top))
                continue
        elif index == root or unindented_known(line):
            name = node_name(line)
            if name is not None:
                nodes.append(Node(index, 0, name, line))
                continue
        if nodes:
            nodes[-1].text += "\n" + line
    return nodes
