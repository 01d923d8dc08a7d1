"""The HTTP front door: streamable MCP at ``/mcp``, health probes, and the request guards.

    app.py        ``build_http_app(config)``: one Starlette app, its lifespan, the verifier for ``[auth] mode``,
                  the web console mounted at ``/console`` (``spark_mcp.console``)
    guards.py     ASGI layers: Host/Origin against DNS rebinding, the trusted-proxy identity
    health.py     ``/healthz`` (the process is up) and ``/readyz`` (it can run drivers)
    serve.py      ``serve_http(config)``: uvicorn with optional TLS, loopback-only without authentication

The MCP SDK does the OAuth 2.1 resource-server part: Protected Resource Metadata at
``/.well-known/oauth-protected-resource/mcp``, 401 with ``WWW-Authenticate`` and 403
``insufficient_scope``; the verifiers in ``spark_mcp.auth`` decide who a token is.
"""
