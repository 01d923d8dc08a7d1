"""What a statement touches, read from Spark's ``EXPLAIN EXTENDED`` text (pure).

Spark prints four sections: the parsed, analyzed, optimized and physical plans. Facts come
from the analyzed plan (views expanded to base relations, names fully qualified, commands
resolved), plus what only the parsed plan shows: function calls as written (a temporary
function prints like a built-in once resolved), ``CREATE TABLE`` locations and options (the
analyzed ``CreateDataSourceTableCommand`` omits them), read options (``WITH (...)``, which
can point a JDBC read at another table), and the catalog a statement names when Spark
prints a v2 catalog only as ``Class@hash``.

The plan text is not a safe format: literals, aliases, view text and even table column
names are printed raw, line breaks included, so a string literal can print lines that look
like plan nodes or section headers. The reader is therefore built so that injected text can
only make a verdict stricter:

- the four section markers must each appear exactly once, else the output is ambiguous;
- dangers (reflection, UDF calls, paths, commands that already ran) are searched for in the
  whole text of both sections, continuation lines included, so extra text only adds dangers;
- reads are every relation printed anywhere, so injected relations only add reads;
- the statement kind comes from the root line, which no literal can precede (only a query
  chooses the column names of the schema header above it); any other unindented line
  naming a known node is another candidate root, and candidates that disagree make the
  statement unknown;
- write targets are taken where a literal cannot reach (the identifier right after the
  command's name) or, where it can, from every place a target could be printed;
- truncated plans (``... N more fields``, ``... N more characters``) are unanalysable,
  because the truncated part is simply not printed: drivers should raise
  ``spark.sql.debug.maxToStringFields`` so wide plans stay readable.

A node the reader does not know is an ``UNKNOWN_NODE`` danger; output it cannot read is
``UNANALYSABLE``. Queries that merely contain something dangerous stay ``QUERY`` with the
danger attached; ``ADMIN`` is for statements whose only purpose is the dangerous surface
(``SET``, ``ADD JAR``, ``CACHE``, ...).

The modules, in the order a plan passes through them:

vocabulary.py   every node name the reader knows; a ``Rule`` (kind, ``Target``, ``Role``,
                danger) per command
sections.py     splitting the output into its sections; Spark's analysis error
tree.py         the analyzed plan's lines as nodes with a depth and a root
names.py        tables, views and catalogs as the nodes print them
dangers.py      reflection, UDF calls, paths and read options, searched in the whole text
targets.py      the tables a command acts on, where its rule says they are printed
classify.py     the kind, reads and writes of the whole statement (``inspect_explain``)
facts.py        the facts being gathered, frozen into ``StatementFacts``
"""

from spark_mcp.spark.inspect.classify import inspect_explain
from spark_mcp.spark.inspect.sections import analysis_error, analyzed_section

__all__ = ["analysis_error", "analyzed_section", "inspect_explain"]
