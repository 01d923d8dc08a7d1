"""The console's pure logic: cookies, CSRF, PKCE, logins, who may act on what, audit paging.

No server and no browser: each rule is a table whose rows read like the rule itself.
The same rules are exercised end to end in ``test_console_http.py`` (real HTTP) and
``test_console_browser.py`` (Chromium against real drivers).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from starlette.responses import Response

from spark_mcp.audit import AuditLog, Redactor
from spark_mcp.audit.refusals import UNKNOWN_PRINCIPAL, RefusalBudget, refused_principal
from spark_mcp.config import load_config
from spark_mcp.console import authz, csrf, pkce
from spark_mcp.console.audit_view import recent
from spark_mcp.console.authz import Kind, may_act
from spark_mcp.console.core import served_over_tls
from spark_mcp.console.oidc import PENDING_FOR_S, PendingSignIns
from spark_mcp.console.render import duration
from spark_mcp.console.websession import CookiePolicy, WebSessions
from spark_mcp.errors import ConfigError
from spark_mcp.policy import Decision

# -- cookies ------------------------------------------------------------------------------


def set_cookie_headers(secure: bool) -> list[str]:
    policy = CookiePolicy(secure=secure)
    response = Response()
    policy.set_session(response, "session-value")
    policy.set_binding(response, "binding-value", 600)
    return response.headers.getlist("set-cookie")


def test_the_session_cookie_is_httponly_strict_and_lives_with_the_browser_session() -> None:
    session, binding = set_cookie_headers(secure=False)
    assert session.startswith("smcp_console=session-value;")
    attributes = {a.strip().lower() for a in session.split(";")[1:]}
    assert {"httponly", "path=/", "samesite=strict"} <= attributes
    assert "secure" not in attributes  # plain HTTP on loopback: a Secure cookie would never come back
    assert not any(a.startswith(("max-age", "expires", "domain")) for a in attributes)
    # The pre-login cookie must survive the identity provider's cross-site redirect back.
    assert binding.startswith("smcp_login=binding-value;")
    assert {"httponly", "samesite=lax", "max-age=600"} <= {a.strip().lower() for a in binding.split(";")[1:]}


def test_under_tls_cookies_are_secure_and_host_prefixed() -> None:
    session, binding = set_cookie_headers(secure=True)
    for header, name in ((session, "__Host-smcp_console"), (binding, "__Host-smcp_login")):
        assert header.startswith(f"{name}=")
        attributes = {a.strip().lower() for a in header.split(";")[1:]}
        # __Host- cookies must be Secure, Path=/ and carry no Domain, or browsers drop them.
        assert {"secure", "httponly", "path=/"} <= attributes
        assert not any(a.startswith("domain") for a in attributes)


@pytest.mark.parametrize(
    ("server", "tls"),
    [
        ({}, False),  # loopback, plain HTTP
        ({"public_url": "http://spark.internal:8000"}, False),
        ({"public_url": "https://spark.example.com"}, True),  # TLS ends at a proxy in front
        ({"tls_cert": "cert.pem", "tls_key": "key.pem"}, True),  # TLS served directly
    ],
)
def test_cookies_are_secure_exactly_when_browsers_arrive_over_tls(
    tmp_path: Path, server: dict[str, str], tls: bool
) -> None:
    config = load_config(None, environ={}, overrides={"home": str(tmp_path), "server": server})
    assert served_over_tls(config) is tls


# -- CSRF ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expected", "given", "ok"),
    [
        ("abc123", "abc123", True),
        ("abc123", "abc124", False),
        ("abc123", "abc12", False),  # a prefix is not the token
        ("abc123", "", False),
        ("abc123", None, False),  # no field at all
        ("abc123", ["abc123"], False),  # not text (a repeated field, an upload)
        ("", "", False),  # never "equal" by both being empty
        ("abc123", "abc123\u0000", False),
    ],
)
def test_a_form_token_matches_only_the_exact_token(expected: str, given: object, ok: bool) -> None:
    assert csrf.matches(expected, given) is ok


def test_a_login_form_token_is_bound_to_its_browser_and_to_this_server() -> None:
    guard = csrf.LoginCsrf(key=b"k" * 32)
    mine, theirs = guard.new_binding(), guard.new_binding()
    token = guard.token_for(mine)
    assert guard.check(mine, token)
    assert not guard.check(theirs, token)  # another browser's cookie
    assert not guard.check(None, token)  # no cookie: a cross-site form post without it
    assert not guard.check("", guard.token_for(""))
    assert not guard.check(mine, guard.token_for(theirs))
    assert not csrf.LoginCsrf(key=b"x" * 32).check(mine, token)  # another server (or a restart)
    assert not guard.check("b" * 500, guard.token_for("b" * 500))  # absurd cookies are not worth hashing


@pytest.mark.parametrize(
    ("origin", "ok"),
    [
        (None, True),  # no Origin header: the token alone decides
        ("http://127.0.0.1:8000", True),
        ("HTTP://127.0.0.1:8000", True),
        ("http://127.0.0.1:3000", False),  # same site for SameSite, another origin: refused
        ("https://evil.example", False),
        ("null", False),  # sandboxed frames and privacy redirects
        ("", False),
    ],
)
def test_a_post_must_come_from_this_consoles_own_origin(origin: str | None, ok: bool) -> None:
    assert csrf.same_origin(origin, {"http://127.0.0.1:8000"}) is ok


# -- PKCE ---------------------------------------------------------------------------------


def test_the_s256_challenge_is_the_rfc_7636_example() -> None:
    # RFC 7636, appendix B.
    assert (
        pkce.challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk") == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    )


def test_new_verifiers_states_and_nonces_are_long_random_and_well_formed() -> None:
    verifiers = {pkce.new_verifier() for _ in range(50)}
    assert len(verifiers) == 50
    for verifier in verifiers:
        assert pkce.valid_verifier(verifier) and 43 <= len(verifier) <= 128
        assert re.fullmatch(r"[A-Za-z0-9_-]{43}", pkce.challenge(verifier))  # 256 bits, no padding
    assert len({pkce.new_state() for _ in range(50)} | {pkce.new_nonce() for _ in range(50)}) == 100


@pytest.mark.parametrize("verifier", ["short", "x" * 129, "a" * 42 + " ", "ü" * 50, ""])
def test_a_malformed_verifier_is_refused(verifier: str) -> None:
    assert not pkce.valid_verifier(verifier)
    with pytest.raises(ValueError, match="43-128"):
        pkce.challenge(verifier)


def test_a_pending_sign_in_is_used_once_by_the_browser_that_started_it() -> None:
    now = [1000.0]
    pending = PendingSignIns(clock=lambda: now[0])
    started = pending.add("browser-a")
    assert pending.take(started.state, "browser-b") is None  # login CSRF: another browser
    assert pending.take(started.state, "browser-a") is None  # ...and that attempt used it up
    again = pending.add("browser-a")
    assert pending.take("some-other-state", "browser-a") is None
    assert pending.take(again.state, None) is None
    third = pending.add("browser-a")
    assert pending.take(third.state, "browser-a") == third
    assert pending.take(third.state, "browser-a") is None  # a replayed callback
    late = pending.add("browser-a")
    now[0] += PENDING_FOR_S + 1
    assert pending.take(late.state, "browser-a") is None  # too old


# -- logins -------------------------------------------------------------------------------


def test_a_login_ends_when_idle_when_old_and_with_its_credential() -> None:
    now = [0.0]
    logins = WebSessions(idle_s=100, max_s=1000, clock=lambda: now[0])
    cookie, login = logins.create("ann", auth="token", token_id="0123456789ab", scopes=("spark:read",))
    assert logins.get(cookie) is login
    now[0] = 99
    assert logins.get(cookie) is login  # touched: idleness counts from here
    now[0] = 198
    assert logins.get(cookie) is login
    now[0] = 298
    assert logins.get(cookie) is None  # idle for 100 s
    assert logins.get(cookie) is None  # and forgotten

    now[0] = 0
    cookie, _ = logins.create("ann", auth="token")
    for t in range(90, 1000, 90):
        now[0] = t
        assert logins.get(cookie) is not None
    now[0] = 1000
    assert logins.get(cookie) is None  # never past session_max_s, however busy

    now[0] = 0
    cookie, login = logins.create("ann", auth="token", credential_expires_at=50)
    assert login.expires_at == 50
    now[0] = 50
    assert logins.get(cookie) is None  # never past the token it was made with


def test_a_login_is_ended_by_its_cookie_and_unknown_cookies_name_nothing() -> None:
    logins = WebSessions(idle_s=100, max_s=1000)
    cookie, login = logins.create("ann", auth="token")
    other, _ = logins.create("ann", auth="token")
    assert login.csrf and len(cookie) >= 43
    assert logins.end(cookie) is login
    assert logins.get(cookie) is None
    assert logins.get(other) is not None  # only that login
    for bogus in (None, "", "x", cookie + "x", "a" * 5000):
        assert logins.get(bogus) is None


def test_logins_are_bounded_per_principal_and_in_all() -> None:
    logins = WebSessions(idle_s=100, max_s=1000, capacity=5, per_principal=2)
    first, _ = logins.create("ann", auth="token")
    second, _ = logins.create("ann", auth="token")
    third, _ = logins.create("ann", auth="token")
    assert logins.get(first) is None and logins.get(second) and logins.get(third)
    others = [logins.create(f"user{i}", auth="token")[0] for i in range(5)]
    assert len(logins) == 5
    assert logins.get(others[-1]) is not None


def test_flash_messages_are_shown_once_and_bounded() -> None:
    _, login = WebSessions(idle_s=100, max_s=1000).create("ann", auth="token")
    for i in range(8):
        login.flash(f"m{i}")
    assert login.take_flashes() == ["m3", "m4", "m5", "m6", "m7"]
    assert login.take_flashes() == []


# -- who may act on what --------------------------------------------------------------------

ADMIN = Decision(True, "admin may driver.admin", "roles.admin.actions")
NOT_ADMIN = Decision(False, "no role of ann grants driver.admin", "default-deny")
READ_ONLY_ADMIN = Decision(False, "ann may not driver.admin with this credential: it is read-only", "token-scope")


@pytest.mark.parametrize(
    ("kind", "owner", "admin", "allowed", "rule"),
    [
        # One's own things: allowed, whatever the policy says about driver.admin.
        (Kind.DRIVER, "ann", NOT_ADMIN, True, authz.OWNER_RULE),
        (Kind.SESSION, "ann", NOT_ADMIN, True, authz.OWNER_RULE),
        (Kind.JOB, "ann", READ_ONLY_ADMIN, True, authz.OWNER_RULE),
        (Kind.TOKEN, "ann", NOT_ADMIN, True, authz.OWNER_RULE),
        # Nothing by that id: not found, admin or not.
        (Kind.DRIVER, None, ADMIN, False, authz.NOT_FOUND_RULE),
        (Kind.TOKEN, None, NOT_ADMIN, False, authz.NOT_FOUND_RULE),
        # Someone else's driver, session, job: only with driver.admin, and its rule is named.
        (Kind.DRIVER, "bob", ADMIN, True, "roles.admin.actions"),
        (Kind.SESSION, "bob", ADMIN, True, "roles.admin.actions"),
        (Kind.JOB, "bob", ADMIN, True, "roles.admin.actions"),
        (Kind.DRIVER, "bob", NOT_ADMIN, False, "default-deny"),
        (Kind.SESSION, "bob", NOT_ADMIN, False, "default-deny"),
        (Kind.JOB, "bob", NOT_ADMIN, False, "default-deny"),
        # An admin signed in with a read-only token holds no driver.admin.
        (Kind.DRIVER, "bob", READ_ONLY_ADMIN, False, "token-scope"),
        # Someone else's token: never, not even for an admin.
        (Kind.TOKEN, "bob", ADMIN, False, authz.TOKENS_RULE),
        # Names are compared exactly.
        (Kind.DRIVER, "Ann", NOT_ADMIN, False, "default-deny"),
        (Kind.DRIVER, "ann ", NOT_ADMIN, False, "default-deny"),
    ],
)
def test_who_may_act_on_what(kind: Kind, owner: str | None, admin: Decision, allowed: bool, rule: str) -> None:
    verdict = may_act("ann", kind, owner, admin)
    assert verdict.allowed is allowed
    assert verdict.not_found is (not allowed)
    assert verdict.rule == rule
    assert verdict.reason


@pytest.mark.parametrize(
    ("owner", "everyone", "shown"),
    [("ann", False, True), ("bob", False, False), ("bob", True, True), ("ann", True, True)],
)
def test_listings_show_ones_own_or_everyones_with_the_grant(owner: str, everyone: bool, shown: bool) -> None:
    assert authz.sees("ann", owner, everyone) is shown


# -- the audit page -----------------------------------------------------------------------


def test_recent_audit_records_are_newest_first_filtered_and_bounded(tmp_path: Path) -> None:
    path = tmp_path / "audit" / "audit.jsonl"
    with AuditLog(path, Redactor()) as log:
        for i in range(30):
            log.emit(
                request_id=f"r{i}", principal="ann" if i % 3 else "bob", tool="run_sql", outcome="ok", duration_ms=i
            )
    mine = recent(path, principal="ann", limit=5)
    assert [r.request_id for r in mine.records] == ["r29", "r28", "r26", "r25", "r23"]
    assert all(r.principal == "ann" for r in mine.records)
    everyone = recent(path, principal=None, limit=3)
    assert [r.principal for r in everyone.records] == ["ann", "ann", "bob"]
    bounded = recent(path, principal="bob", limit=50, scan=4)  # r29..r26: only r27 is bob's
    assert [r.request_id for r in bounded.records] == ["r27"]
    assert not bounded.scanned_all
    assert recent(tmp_path / "missing.jsonl", principal=None).records == []


def test_a_malformed_audit_line_is_counted_never_shown(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    with AuditLog(path, Redactor()) as log:
        log.emit(request_id="r1", principal="ann", tool="run_sql", outcome="ok", duration_ms=1)
    with path.open("a") as handle:
        handle.write('{"not": "a record"}\n<script>alert(1)</script>\n')
    found = recent(path, principal=None)
    assert found.malformed == 2
    assert [r.request_id for r in found.records] == ["r1"]


# -- small things -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0 s"), (59.9, "59 s"), (60, "1 min"), (3599, "59 min"), (3600, "1 h"), (7260, "2 h 1 min"),
     (48 * 3600, "2 d"), (50 * 3600, "2 d 2 h"), (-5, "0 s")],
)  # fmt: skip
def test_durations_read_at_a_glance(seconds: float, text: str) -> None:
    assert duration(seconds) == text


@pytest.mark.parametrize(
    ("console", "error"),
    [
        ({"oidc_scopes": ["profile"]}, "openid"),
        ({"oidc_client_id": "has space"}, "printable"),
        ({"session_idle_s": 1}, "greater than or equal"),
        ({"surprise": True}, "Extra inputs"),
    ],
)
def test_console_settings_are_validated(tmp_path: Path, console: dict[str, object], error: str) -> None:
    with pytest.raises(ConfigError, match=error):
        load_config(None, environ={}, overrides={"home": str(tmp_path), "console": console})


def test_the_oidc_client_secret_comes_from_the_environment_and_never_shows(tmp_path: Path) -> None:
    config = load_config(
        None,
        environ={"SPARK_MCP_CONSOLE__OIDC_CLIENT_SECRET": "s3cr3t-value", "SPARK_MCP_CONSOLE__OIDC_CLIENT_ID": "cid"},
        overrides={"home": str(tmp_path)},
    )
    assert config.console.oidc_client_id == "cid"
    assert config.console.oidc_client_secret is not None
    assert config.console.oidc_client_secret.get_secret_value() == "s3cr3t-value"
    assert "s3cr3t-value" not in repr(config) and "s3cr3t-value" not in config.model_dump_json()


# -- accessibility, checked on the sources ----------------------------------------------

CONSOLE = Path(__file__).resolve().parents[1] / "src" / "spark_mcp" / "console"


def _luminance(hex_colour: str) -> float:
    channels = [int(hex_colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(a: str, b: str) -> float:
    high, low = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def test_every_text_colour_meets_wcag_aa_contrast_on_its_background() -> None:
    css = (CONSOLE / "static" / "console.css").read_text()
    colours = dict(re.findall(r"--([a-z-]+):\s*(#[0-9a-fA-F]{6})", css))
    pairs = [  # (text, background) as the stylesheet uses them
        ("ink", "paper"), ("muted", "paper"), ("accent", "paper"), ("danger", "paper"), ("ok", "paper"),
        ("warn", "paper"), ("accent-ink", "accent"), ("accent-ink", "danger"), ("ink", "wash"), ("muted", "wash"),
        ("accent", "wash"),
    ]  # fmt: skip
    for text, background in pairs:
        ratio = contrast(colours[text], colours[background])
        assert ratio >= 4.5, f"{text} on {background}: {ratio:.2f}:1"
    for fixed in ("#eef7f0", "#fbeeee"):  # the flash and error boxes
        assert contrast(colours["ink"], fixed) >= 4.5
    assert contrast(colours["focus"], colours["paper"]) >= 3  # a focus ring is a non-text contrast (3:1)


def test_every_form_field_has_a_label() -> None:
    for template in (CONSOLE / "templates").glob("*.html"):
        text = template.read_text()
        labelled = set(re.findall(r'<label for="([^"]+)"', text))
        for field in re.findall(r"<(?:input|select|textarea)\b[^>]*>", text):
            if 'type="hidden"' in field:
                continue
            found = re.search(r'id="([^"]+)"', field)
            assert found and found.group(1) in labelled, f"{template.name}: {field} has no <label for=...>"


# -- refused sign-ins: how many the audit log records ---------------------------------------

# (seconds since the first refusal, what admit() answers): 3 per 10-second window.
_FLOOD = [
    (0.0, (True, 0)),
    (1.0, (True, 0)),
    (2.0, (True, 0)),
    (3.0, (False, 0)),  # past the budget: only logged
    (9.9, (False, 0)),
    (10.0, (True, 2)),  # a new window: recorded, and it says two were left out
    (10.5, (True, 0)),  # said once only
    (11.0, (True, 0)),
    (12.0, (False, 0)),
    (60.0, (True, 1)),  # after a quiet spell, still said
    (61.0, (True, 0)),
]


def test_refused_sign_ins_are_recorded_up_to_a_budget_and_the_next_one_says_how_many_were_not() -> None:
    now = [0.0]
    budget = RefusalBudget(per_window=3, window_s=10.0, clock=lambda: now[0])
    answers = []
    for at, _ in _FLOOD:
        now[0] = at
        answers.append((at, budget.admit()))
    assert answers == _FLOOD


@pytest.mark.parametrize(
    ("claimed", "recorded"),
    [
        ("ann", "ann"),
        ("ann.lee@example.com", "ann.lee@example.com"),
        (None, UNKNOWN_PRINCIPAL),
        ("(unknown)", UNKNOWN_PRINCIPAL),
        ("ann\nprincipal: root", UNKNOWN_PRINCIPAL),  # an identity provider's subject can be any text
        ("x" * 65, UNKNOWN_PRINCIPAL),
        ("", UNKNOWN_PRINCIPAL),
    ],
)
def test_a_refusal_names_only_a_valid_user_name(claimed: str | None, recorded: str) -> None:
    assert refused_principal(claimed) == recorded


def test_a_refusal_record_carries_its_fields_the_safe_principal_and_the_flood_note() -> None:
    now = [0.0]
    budget = RefusalBudget(per_window=1, window_s=10.0, clock=lambda: now[0])
    first = budget.record(
        "spark_connect.ExecutePlan", claimed="ann\nroot", statement="refused: no token", via="gateway"
    )
    assert first is not None
    assert (first.tool, first.principal) == ("spark_connect.ExecutePlan", UNKNOWN_PRINCIPAL)
    assert first.fields["statement"] == "refused: no token" and first.fields["via"] == "gateway"
    assert budget.record("console.login", claimed="ann", statement="refused") is None  # past the budget
    now[0] = 10.0
    later = budget.record("console.login", claimed="ann", statement="refused: expired", token_id="tok_1")
    assert later is not None and later.principal == "ann" and later.fields["token_id"] == "tok_1"
    assert later.fields["statement"] == "refused: expired (1 more refusals before this one were not recorded)"
    assert later.request_id != first.request_id
