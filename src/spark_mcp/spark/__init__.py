"""The only code that talks to Spark (pyspark's Connect client).

- ``connect``: open and close Spark Connect sessions on a driver, with bounded retries.
- ``errors``: translate Spark and gRPC errors into spark-mcp's exception tree, once.
- ``sqltext``: the lexical gate run on SQL text before Spark sees it (pure).
- ``inspect``: parse Spark's analyzed plan into ``StatementFacts`` (pure).
- ``analyze``: ask Spark to analyse a statement or a DataFrame without running it.
- ``runner``: run a statement under a tag, stream its Arrow result, report progress, interrupt.
- ``catalog``: catalogs, namespaces, tables and columns as Spark reports them.
- ``bootstrap``: prepare a fresh driver (datasets, the builtin function list).
- ``plans``: build a DataFrame from a structured JSON plan.
"""
