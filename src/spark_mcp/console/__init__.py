"""The web console at ``/console``: people manage their drivers, sessions, jobs and API tokens.

    app.py          ``build_console(...)``: the routes, their error answers, security headers
    core.py         ``Console``: who is asking (login + credential still good), checked forms,
                    pages, and audited actions (``via = "console"``)
    pages.py        the GET pages: overview, audit records, API tokens
    actions.py      the POSTs that change things: stop, close, cancel, make and revoke tokens
    connect.py      Spark Connect: the connection string for one's own driver, a fresh token for it
    login.py        signing in (token, OIDC, proxy, none) and out
    authz.py        the pure rule: own things, or everyone's with driver.admin / audit.read
    source.py       the one adapter to the App's drivers, sessions and jobs
    audit_view.py   the recent audit records, read backwards within a bound
    websession.py   logins kept on the server behind an opaque cookie; cookie attributes
    csrf.py         CSRF tokens for forms before and after sign-in; the Origin check
    oidc.py         the console as an OIDC client: authorization code with PKCE
    pkce.py         PKCE S256, state and nonce
    render.py       Jinja2 templates (autoescaped), the stylesheet, time formatting

Server-rendered HTML with one stylesheet and no JavaScript at all.
"""

from spark_mcp.console.app import build_console

__all__ = ["build_console"]
