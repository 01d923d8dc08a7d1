"""spark-mcp: governed access to Apache Spark for LLM agents, over MCP.

The folder tree is the architecture; dependencies point downwards only:

- ``server.py``, ``tools/``: the MCP layer (the only code importing ``mcp``): thin tools,
  the per-call middleware (identity, audit), output models, reply rendering.
- ``app.py``: the running service, wiring everything below.
- ``execution.py`` (scope → policy → run), ``catalog.py`` (policy-filtered catalog),
  ``sessions.py``, ``jobs.py``, ``results.py``, ``preview.py`` (pure rendering).
- ``policy/`` (pure ``decide()``), ``audit.py``, ``identity.py``, ``calls.py``,
  ``statement.py`` (what a statement touches), ``config.py``, ``errors.py``, ``logs.py``.
- ``spark/``: the only code importing pyspark. ``drivers/``: the only code starting processes.
"""

__version__ = "0.1.0"
