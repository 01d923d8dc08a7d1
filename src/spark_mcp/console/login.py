"""Signing in and out: with an API token, through the OIDC issuer, as the proxy's user, or as ``user``.

How one signs in follows ``[auth] mode``, and the credential is checked by the very
verifier that guards ``/mcp``:

    tokens  paste an API token; ``ApiTokenVerifier`` checks it (hash, expiry,
            revocation, resource) and it must carry ``[auth] scopes``
    oidc    authorization code with PKCE at the issuer (``oidc.OidcSignIn``)
    proxy   the trusted proxy's header names the person; the console only confirms it
    none    loopback only: the server's ``user``, as ``/mcp`` does

Forms shown before sign-in carry a token bound to a pre-login cookie (``csrf.LoginCsrf``),
so no other page can sign a browser in as someone else. A sign-in and a sign-out each
write an audit record, and so does a refused sign-in: its principal is ``(unknown)`` unless
a genuine credential lacked a scope, with the id (never the secret) of the API token tried.
"""

from __future__ import annotations

import structlog
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from spark_mcp.auth.claims import identity_of
from spark_mcp.console import csrf
from spark_mcp.console.core import Console, ConsoleProblem
from spark_mcp.console.oidc import PENDING_FOR_S, SignInFailed
from spark_mcp.identity import os_user, validate_principal_id
from spark_mcp.state.tokens import split_token

log = structlog.get_logger(__name__)

_MAX_TOKEN_CHARS = 4096  # an API token is 61 characters; a JWT a few hundred
_ENDED = {
    "logout": "You are signed out.",
    "revoked": "You revoked the token you signed in with, so you are signed out.",
}


def _binding(console: Console, request: Request) -> str:
    value = request.cookies.get(console.cookies.binding_name, "")
    return value if 32 <= len(value) <= 64 and value.replace("-", "").replace("_", "").isalnum() else ""


def _full_scopes(console: Console) -> tuple[str, ...]:
    """A person who signed in interactively (OIDC, proxy, none) holds the required scopes and the
    write scope, as the proxy verifier gives them over MCP; the policy decides the rest."""
    write = console.config.auth.write_scope
    return (*console.config.auth.scopes, *([write] if write else []))


async def login_page(console: Console, request: Request, *, error: str | None = None, status: int = 200) -> Response:
    if error is None and await console.login_of(request) is not None:
        return console.redirect("/")
    binding = _binding(console, request) or csrf.LoginCsrf.new_binding()
    form_action = "'self'"
    oidc_ready = False
    if console.oidc is not None:
        try:
            endpoints = await console.oidc.endpoints()
            form_action += f" {endpoints.authorization_origin}"  # the sign-in form's redirect goes there
            oidc_ready = True
        except SignInFailed as exc:
            error = error or str(exc)
    response = console.page(
        "login.html",
        None,
        status=status,
        headers={"Content-Security-Policy": csp(form_action)},
        title="Sign in",
        nav="login",
        mode=console.mode,
        csrf=console.login_csrf.token_for(binding),
        error=error,
        ended=_ENDED.get(request.query_params.get("ended", "")),
        oidc_ready=oidc_ready,
        oidc_configured=console.oidc is not None,
        proxy_user=console.proxy_identity(request) if console.mode == "proxy" else None,
        none_user=(console.config.user or os_user()) if console.mode == "none" else None,
    )
    console.cookies.set_binding(response, binding, int(PENDING_FOR_S))
    return response


def csp(form_action: str = "'self'") -> str:
    return (
        "default-src 'none'; style-src 'self'; img-src 'self'; "
        f"form-action {form_action}; frame-ancestors 'none'; base-uri 'none'"
    )


async def _checked_login_form(console: Console, request: Request) -> tuple[dict[str, str], str]:
    form = await console.read_form(request)
    binding = _binding(console, request)
    if not console.login_csrf.check(binding, form.get(csrf.FIELD)):
        raise ConsoleProblem(403, "This sign-in form expired or did not come from this console. Reload and retry.")
    return {k: v for k, v in form.items() if isinstance(v, str)}, binding


async def login(console: Console, request: Request) -> Response:
    """POST /login: an API token (mode tokens), or a confirmation (modes proxy and none)."""
    form, _ = await _checked_login_form(console, request)
    if console.mode == "tokens":
        token = form.get("token", "").strip()
        access = await console.verifier.verify_token(token) if 0 < len(token) <= _MAX_TOKEN_CHARS else None
        identity = identity_of(access.subject, access.scopes, access.claims) if access is not None else None
        missing = [s for s in console.config.auth.scopes if identity is not None and s not in identity.scopes]
        if access is None or identity is None or missing:
            log.info("console.login_refused", mode="tokens", missing_scopes=missing or None)
            app = console.running_app()
            if identity is not None and missing:
                why = f"That token lacks the scope {', '.join(missing)}."
                console.record_refused_sign_in(
                    app,
                    auth="token",
                    why=f"the token lacks the scope {' '.join(missing)}",
                    error_class="insufficient_scope",
                    principal=identity.principal,
                    token_id=identity.token_id,
                )
            else:
                why = "That token was not accepted: it is unknown, revoked, expired, or made for another server."
                claimed = split_token(token)  # its id, never its secret: which token was tried
                console.record_refused_sign_in(
                    app,
                    auth="token",
                    why="the token is unknown, revoked, expired, wrong, or made for another server",
                    error_class="unauthenticated",
                    token_id=claimed[0] if claimed else None,
                )
            return await login_page(console, request, error=why, status=401)
        return await _signed_in(
            console,
            principal=identity.principal,
            auth="token",
            token_id=identity.token_id,
            scopes=identity.scopes,
            expires_at=access.expires_at,
        )
    if console.mode == "proxy":
        principal = console.proxy_identity(request)
        if principal is None:
            console.record_refused_sign_in(
                console.running_app(), auth="proxy", why="the proxy named no one", error_class="unauthenticated"
            )
            return await login_page(
                console, request, error="The proxy in front of this server did not name you.", status=401
            )
        return await _signed_in(console, principal=principal, auth="proxy", scopes=_full_scopes(console))
    if console.mode == "none":
        user = validate_principal_id(console.config.user or os_user())
        return await _signed_in(console, principal=user, auth="none", scopes=_full_scopes(console))
    return await login_page(console, request, error="Sign in with your identity provider.", status=400)


async def oidc_start(console: Console, request: Request) -> Response:
    """POST /login/oidc: off to the issuer, with a pending sign-in bound to this browser."""
    _, binding = await _checked_login_form(console, request)
    if console.oidc is None:
        raise ConsoleProblem(404, "Sign-in through an identity provider is not configured on this server.")
    try:
        url = await console.oidc.start(binding)
    except SignInFailed as exc:
        return await login_page(console, request, error=str(exc), status=502)
    return RedirectResponse(url, status_code=303)


async def oidc_callback(console: Console, request: Request) -> Response:
    """GET /oidc/callback: the issuer sends the browser back with a code (or an error)."""
    if console.oidc is None:
        raise ConsoleProblem(404, "Sign-in through an identity provider is not configured on this server.")
    params = {k: v[:2048] for k, v in list(request.query_params.items())[:16]}
    try:
        signed = await console.oidc.finish(params, _binding(console, request) or None)
    except SignInFailed as exc:
        log.info("console.oidc_refused", why=str(exc))
        console.record_refused_sign_in(console.running_app(), auth="oidc", why=str(exc), error_class=exc.code)
        return await login_page(console, request, error=str(exc), status=400)
    # The browser arrived here from the issuer's site. A browser that counts the whole
    # redirect chain (as RFC 6265bis asks) would not send a SameSite=Strict cookie on a
    # redirect onwards, so a page of ours moves it on instead (meta refresh, no script):
    # that navigation starts on this site.
    return await _signed_in(
        console,
        principal=signed.principal,
        auth="oidc",
        groups=signed.groups,
        scopes=_full_scopes(console),
        expires_at=None,
        onward_page=True,
    )


async def _signed_in(
    console: Console,
    *,
    principal: str,
    auth: str,
    token_id: str | None = None,
    scopes: tuple[str, ...] = (),
    groups: tuple[str, ...] = (),
    expires_at: float | None = None,
    onward_page: bool = False,
) -> Response:
    app = console.running_app()
    who = app.principal(validate_principal_id(principal), groups=groups, auth=auth, token_id=token_id)
    async with console.audited(app, who, "login", statement=f"sign in to the console ({auth})"):
        cookie, _ = console.logins.create(
            principal, auth=auth, token_id=token_id, scopes=scopes, groups=groups, credential_expires_at=expires_at
        )
    log.info("console.login", principal=principal, auth=auth, token_id=token_id)
    if onward_page:
        response: Response = console.page("onward.html", None, title="Signed in", nav="login", who=principal)
    else:
        response = console.redirect("/")
    console.cookies.set_session(response, cookie)
    console.cookies.clear(response, console.cookies.binding_name)
    return response


async def logout(console: Console, request: Request) -> Response:
    login = await console.require_login(request)
    await console.form(request, login)
    async with console.audited(login.app, login.principal, "logout", statement="sign out of the console"):
        console.logins.end(login.cookie)
    response = console.redirect("/login?ended=logout")
    console.cookies.clear(response, console.cookies.session_name)
    return response
