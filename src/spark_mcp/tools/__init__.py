"""The MCP tools: thin functions that parse, ask the domain, and render.

- ``sessions``: whoami, create_session, list_sessions, close_session
- ``queries``: run_sql, get_job, cancel_job, list_jobs, fetch_rows
- ``catalog``: list_catalogs, list_namespaces, list_tables, describe_table, preview_table
- ``plans``: run_plan, explain
- ``resources``: spark://results/{result_id} as JSON, .csv and .arrow
- ``models`` (output schemas), ``render`` (replies within budgets), ``_base`` (the error boundary)
"""
