"""API tokens: the store (hashes only, revocation and expiry at once) and ``spark-mcp tokens``."""

from __future__ import annotations

import json
import stat
import time
from pathlib import Path

import anyio
import pytest

from spark_mcp.audit import REDACTED, Redactor
from spark_mcp.auth.tokens import ApiTokenVerifier, parse_duration
from spark_mcp.cli import main
from spark_mcp.errors import InvalidInput, NotFound
from spark_mcp.state.db import StateDB, state_path
from spark_mcp.state.tokens import TOKEN_SHAPE, TokenStore, split_token

RESOURCE = "http://127.0.0.1:8000/mcp"


@pytest.fixture
def store(tmp_path: Path) -> TokenStore:
    return TokenStore(StateDB(tmp_path / "state.db"))


def test_a_token_is_shown_once_and_stored_only_as_a_hash(store: TokenStore, tmp_path: Path) -> None:
    issued = store.create("alice", scopes=["spark:read"], resource=RESOURCE, name="laptop")
    assert TOKEN_SHAPE.fullmatch(issued.token)
    token_id, secret = split_token(issued.token) or ("", "")
    assert token_id == issued.record.id
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("state.db"))
    assert secret.encode() not in raw
    assert stat.S_IMODE((tmp_path / "state.db").stat().st_mode) == 0o600
    checked = store.check(issued.token)
    assert checked is not None
    assert (checked.id, checked.principal, checked.scopes) == (token_id, "alice", ("spark:read",))
    assert store.get(token_id).last_used_at is not None


def test_revocation_takes_effect_on_the_next_check(store: TokenStore) -> None:
    issued = store.create("alice", scopes=["spark:read"], resource=RESOURCE)
    assert store.check(issued.token) is not None
    revoked = store.revoke(issued.record.id)
    assert revoked.state(time.time()) == "revoked"
    assert store.check(issued.token) is None
    assert store.revoke(issued.record.id).revoked_at == revoked.revoked_at  # again: harmless, unchanged


def test_expiry_takes_effect_without_anyone_acting(store: TokenStore) -> None:
    now = time.time()
    issued = store.create("alice", scopes=["spark:read"], resource=RESOURCE, now=now, expires_at=now + 60)
    assert store.check(issued.token, now=now + 59) is not None
    assert store.check(issued.token, now=now + 60) is None
    assert store.get(issued.record.id).state(now + 61) == "expired"


def test_a_wrong_secret_or_a_foreign_shape_is_refused(store: TokenStore) -> None:
    issued = store.create("alice", scopes=["spark:read"], resource=RESOURCE)
    prefix, secret = issued.token.rsplit("_", 1) if not issued.token.endswith("_") else (issued.token, "")
    flipped = ("A" if secret[0] != "A" else "B") + secret[1:]
    for token in (f"{prefix}_{flipped}", issued.token + "x", issued.token[:-1], issued.token.upper(), ""):
        assert store.check(token) is None, token


def test_list_filters_by_user_and_never_holds_secrets(store: TokenStore) -> None:
    a = store.create("alice", scopes=["spark:read"], resource=RESOURCE)
    store.create("bob", scopes=["spark:read"], resource=RESOURCE)
    assert [r.id for r in store.list("alice")] == [a.record.id]
    assert {r.principal for r in store.list()} == {"alice", "bob"}
    assert a.token not in repr(store.list())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"principal": "../root"}, "invalid user name"),
        ({"scopes": []}, "at least one scope"),
        ({"scopes": ['spark"read']}, "not a scope"),
        ({"name": "x" * 65}, "1-64"),
        ({"expires_at": 1.0}, "in the future"),
    ],
)
def test_bad_token_requests_are_refused(store: TokenStore, kwargs: dict[str, object], message: str) -> None:
    values: dict[str, object] = {"principal": "alice", "scopes": ["spark:read"], "resource": RESOURCE, **kwargs}
    principal = values.pop("principal")
    with pytest.raises(InvalidInput, match=message):
        store.create(principal, **values)  # type: ignore[arg-type]


def test_revoking_an_unknown_token_says_how_to_find_ids(store: TokenStore) -> None:
    with pytest.raises(NotFound, match="tokens list"):
        store.revoke("0123456789ab")
    with pytest.raises(NotFound):
        store.revoke("'; DROP TABLE api_tokens; --")


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30d", 30 * 86400), ("12h", 43200), ("90m", 5400), ("45s", 45), ("2w", 14 * 86400), ("never", None)],
)
def test_durations(text: str, seconds: float | None) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "30", "d", "-1d", "1y", "0d", "1.5h", "forever"])
def test_bad_durations_are_refused(text: str) -> None:
    with pytest.raises(InvalidInput, match="duration"):
        parse_duration(text)


def test_the_redactor_catches_a_token_by_its_shape(store: TokenStore) -> None:
    token = store.create("alice", scopes=["spark:read"], resource=RESOURCE).token
    assert Redactor().redact(f"SELECT '{token}' AS t") == f"SELECT '{REDACTED}' AS t"


def test_the_tokens_commands_create_list_and_revoke(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    home = ["--home", str(tmp_path / "home")]
    assert main(["tokens", *home, "create", "--user", "alice", "--expires", "30d", "--name", "ci"]) == 0
    out, err = capsys.readouterr()
    token = out.strip()
    assert TOKEN_SHAPE.fullmatch(token)  # stdout holds the token alone, for scripts
    assert "only time" in err
    token_id = token.split("_")[1]

    assert main(["tokens", *home, "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["id"], r["user"], r["scopes"], r["state"], r["name"]) for r in rows] == [
        (token_id, "alice", "spark:read spark:write", "active", "ci")
    ]
    assert rows[0]["resource"] == "http://127.0.0.1:8000/mcp"

    assert main(["tokens", *home, "revoke", token_id]) == 0
    assert "revoked" in capsys.readouterr().out
    assert main(["tokens", *home, "list", "--user", "alice"]) == 0
    listing = capsys.readouterr().out
    assert "revoked" in listing
    assert token.split("_", 2)[2] not in listing
    assert main(["tokens", *home, "list", "--user", "bob"]) == 0
    assert capsys.readouterr().out.strip() == "no tokens"
    assert main(["tokens", *home, "revoke", "ffffffffffff"]) == 1
    assert "no token" in capsys.readouterr().err
    state = StateDB(state_path(tmp_path / "home"))
    assert TokenStore(state).get(token_id).revoked_at is not None


@pytest.mark.anyio
@pytest.mark.parametrize("revoked_by", ["the same handle", "another handle", "the CLI"])
async def test_a_token_the_verifier_saw_is_refused_on_the_next_call_once_revoked(
    tmp_path: Path, revoked_by: str
) -> None:
    """The verifier reuses a token it found valid (a Spark Connect client calls once per result
    chunk), but a revocation from anywhere is seen at the very next call."""
    home = tmp_path / "home"
    db = StateDB(state_path(home))
    store = TokenStore(db)
    verifier = ApiTokenVerifier(store, RESOURCE)
    issued = store.create("alice", scopes=["spark:read"], resource=RESOURCE)
    for _ in range(3):
        verified = await verifier.verify_token(issued.token)
        assert verified is not None and verified.subject == "alice"
    if revoked_by == "the same handle":
        store.revoke(issued.record.id)
    elif revoked_by == "another handle":
        TokenStore(StateDB(state_path(home))).revoke(issued.record.id)
    else:
        assert main(["tokens", "--home", str(home), "revoke", issued.record.id]) == 0
    assert await verifier.verify_token(issued.token) is None
    assert await verifier.verify_token(issued.token) is None
    other = store.create("alice", scopes=["spark:read"], resource=RESOURCE)
    assert await verifier.verify_token(other.token) is not None  # the others still work
    near_miss = other.token[:-1] + ("a" if other.token[-1] != "a" else "b")
    assert await verifier.verify_token(near_miss) is None  # and a near miss never does


@pytest.mark.anyio
async def test_a_token_the_verifier_saw_is_refused_once_it_expires(store: TokenStore) -> None:
    verifier = ApiTokenVerifier(store, RESOURCE)
    expires_at = time.time() + 1.0
    issued = store.create("alice", scopes=["spark:read"], resource=RESOURCE, expires_at=expires_at)
    assert await verifier.verify_token(issued.token) is not None
    assert await verifier.verify_token(issued.token) is not None
    await anyio.sleep(max(0.0, expires_at - time.time()) + 0.05)
    assert await verifier.verify_token(issued.token) is None  # nothing was committed: expiry alone
