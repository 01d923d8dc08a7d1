"""The HTTP transport with API tokens, over real HTTP (uvicorn on a loopback port).

An OAuth 2.1 resource server: metadata, 401 with its address, 403 for a missing scope;
tokens that are revoked, expired, malformed or made for another server are refused at
the next request; Host/Origin checks, the size limit and CORS; the probes. No Spark
driver starts here: ``whoami`` needs none.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx2
import pytest
from mcp import MCPError

from spark_mcp.audit import tail
from spark_mcp.errors import ConfigError
from spark_mcp.http.app import build_http_app, check_exposure
from tests.http_support import (
    MCP_HEADERS,
    Running,
    bearer,
    http_config,
    mcp_client,
    mcp_post_body,
    self_signed,
    serving,
)

pytestmark = pytest.mark.anyio


@pytest.fixture
async def server(tmp_path: Path) -> Running:
    async with serving(http_config(tmp_path / "home", max_request_bytes=4096)) as running:
        yield running  # type: ignore[misc]


def issue(server: Running, user: str, **kwargs: object) -> tuple[str, str]:
    store = server.service.tokens
    assert store is not None
    kwargs.setdefault("scopes", ["spark:read", "spark:write"])
    kwargs.setdefault("resource", server.service.resource)
    issued = store.create(user, **kwargs)  # type: ignore[arg-type]
    return issued.token, issued.record.id


async def post(server: Running, token: str | None = None, **headers: str) -> httpx2.Response:
    all_headers = {**MCP_HEADERS, **headers}
    if token is not None:
        all_headers["Authorization"] = f"Bearer {token}"
    async with httpx2.AsyncClient(timeout=60) as http:
        return await http.post(server.url, json=mcp_post_body(), headers=all_headers)


async def test_a_request_without_a_token_gets_401_naming_the_resource_metadata(server: Running) -> None:
    response = await post(server)
    assert response.status_code == 401
    metadata_url = f"{server.base}/.well-known/oauth-protected-resource/mcp"
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith("Bearer ")
    assert f'resource_metadata="{metadata_url}"' in challenge
    async with httpx2.AsyncClient() as http:
        metadata = (await http.get(metadata_url)).json()
    assert metadata["resource"] == server.url
    assert metadata["scopes_supported"] == ["spark:read"]
    assert metadata["bearer_methods_supported"] == ["header"]


async def test_a_token_without_the_required_scope_gets_403_insufficient_scope(server: Running) -> None:
    token, _ = issue(server, "alice", scopes=["spark:write"])
    response = await post(server, token)
    assert response.status_code == 403
    assert 'error="insufficient_scope"' in response.headers["www-authenticate"]
    assert response.json()["error"] == "insufficient_scope"


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_a_good_token_acts_as_its_user_and_the_audit_names_the_token_not_its_secret(
    server: Running, mode: str
) -> None:
    token, token_id = issue(server, "erin", name="laptop")
    async with mcp_client(server.url, token, mode=mode) as client:
        result = await client.call_tool("whoami", {})
    assert not result.is_error
    assert result.structured_content is not None
    assert result.structured_content["principal"] == "erin"
    assert "sql.write" in result.structured_content["actions"]
    record = tail(server.config.audit_path, 1)[0]
    assert (record.principal, record.tool, record.auth, record.token_id, record.via) == (
        "erin",
        "whoami",
        "token",
        token_id,
        "mcp",
    )
    # The secret is everything after smcp_<id>_, and may itself hold "_": split twice only.
    secret = token.split("_", 2)[2]
    assert len(secret) == 43 and secret[:20] not in server.config.audit_path.read_text()


async def test_a_token_without_the_write_scope_is_read_only(server: Running) -> None:
    token, _ = issue(server, "erin", scopes=["spark:read"])
    async with mcp_client(server.url, token) as client:
        result = await client.call_tool("whoami", {})
    assert result.structured_content is not None
    actions = result.structured_content["actions"]
    assert "sql.read" in actions
    assert "sql.write" not in actions
    assert "sql.ddl" not in actions


async def test_a_revoked_token_is_refused_at_the_next_request(server: Running) -> None:
    token, token_id = issue(server, "alice")
    async with mcp_client(server.url, token, mode="legacy") as client:
        assert not (await client.call_tool("whoami", {})).is_error
        assert server.service.tokens is not None
        server.service.tokens.revoke(token_id)
        with pytest.raises((MCPError, httpx2.HTTPStatusError)):
            await client.call_tool("whoami", {})
    assert (await post(server, token)).status_code == 401


async def test_an_expired_token_is_refused(server: Running) -> None:
    now = time.time()
    token, _ = issue(server, "alice", now=now - 3600, expires_at=now - 1)
    response = await post(server, token)
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["www-authenticate"]


async def test_a_token_made_for_another_server_is_refused(server: Running) -> None:
    token, _ = issue(server, "alice", resource="https://other.example.com/mcp")
    assert (await post(server, token)).status_code == 401
    good, _ = issue(server, "alice")
    assert (await post(server, good)).status_code == 200


@pytest.mark.parametrize(
    "token",
    [
        "not-a-token",
        "smcp_000000000000_" + "A" * 43,  # well formed, unknown id
        "Bearer",
        "smcp_short",
    ],
)
async def test_malformed_or_unknown_tokens_are_refused(server: Running, token: str) -> None:
    assert (await post(server, token)).status_code == 401


async def test_a_known_id_with_a_wrong_secret_is_refused(server: Running) -> None:
    token, token_id = issue(server, "alice")
    forged = f"smcp_{token_id}_" + ("B" * 43 if not token.endswith("B" * 43) else "C" * 43)
    assert (await post(server, forged)).status_code == 401


async def test_a_rebound_host_name_is_refused_with_421_even_with_a_good_token(server: Running) -> None:
    token, _ = issue(server, "alice")
    assert (await post(server, token, Host="evil.example.com")).status_code == 421
    assert (await post(server, None, Host="evil.example.com:80")).status_code == 421
    assert (await post(server, token, Origin="http://evil.example.com")).status_code == 403
    assert (await post(server, token, Origin="http://localhost:1234")).status_code == 200


async def test_an_oversized_request_is_refused_with_413(server: Running) -> None:
    token, _ = issue(server, "alice")
    body = mcp_post_body()
    body["params"]["clientInfo"]["name"] = "x" * 8192
    async with bearer(token) as http:
        response = await http.post(server.url, json=body, headers=MCP_HEADERS)
    assert response.status_code == 413


async def test_there_is_no_cors_unless_configured(server: Running) -> None:
    async with httpx2.AsyncClient() as http:
        response = await http.options(
            server.url,
            headers={"Origin": "http://localhost:3000", "Access-Control-Request-Method": "POST"},
        )
    assert "access-control-allow-origin" not in response.headers


async def test_cors_answers_only_the_configured_origins(tmp_path: Path) -> None:
    config = http_config(tmp_path / "home", cors_origins=["https://app.example.com"])
    async with serving(config) as running, httpx2.AsyncClient() as http:
        allowed = await http.options(
            running.url, headers={"Origin": "https://app.example.com", "Access-Control-Request-Method": "POST"}
        )
        other = await http.options(
            running.url, headers={"Origin": "https://evil.example.com", "Access-Control-Request-Method": "POST"}
        )
    assert allowed.headers["access-control-allow-origin"] == "https://app.example.com"
    assert "access-control-allow-origin" not in other.headers


async def test_the_probes_answer_without_a_token(server: Running) -> None:
    async with httpx2.AsyncClient() as http:
        health = await http.get(f"{server.base}/healthz")
        ready = await http.get(f"{server.base}/readyz")
        probe_by_address = await http.get(f"{server.base}/healthz", headers={"Host": "10.1.2.3:8000"})
    assert (health.status_code, health.json()) == (200, {"status": "ok"})
    assert (ready.status_code, ready.json()) == (200, {"status": "ready"})
    assert probe_by_address.status_code == 200


async def test_readyz_says_what_is_missing(tmp_path: Path) -> None:
    config = http_config(tmp_path / "home")
    config = config.model_copy(
        update={"driver": config.driver.model_copy(update={"java_home": str(tmp_path / "no-java")})}
    )
    async with serving(config) as running, httpx2.AsyncClient() as http:
        ready = await http.get(f"{running.base}/readyz")
    assert ready.status_code == 503
    assert ready.json()["status"] == "not ready"
    assert ready.json()["problems"] == ["java"]  # named only: probes are unauthenticated


async def test_without_authentication_loopback_serves_the_configured_user(tmp_path: Path) -> None:
    config = http_config(tmp_path / "home", auth={"mode": "none"})
    config = config.model_copy(update={"user": "bob"})
    async with serving(config) as running, mcp_client(running.url, "ignored") as client:
        result = await client.call_tool("whoami", {})
    assert result.structured_content is not None
    assert result.structured_content["principal"] == "bob"
    assert tail(config.audit_path, 1)[0].auth == "none"


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10", "::"])
def test_binding_beyond_loopback_without_authentication_is_refused(tmp_path: Path, host: str) -> None:
    config = http_config(tmp_path / "home", auth={"mode": "none"}, host=host)
    with pytest.raises(ConfigError, match="without authentication"):
        check_exposure(config)
    with pytest.raises(ConfigError, match="without authentication"):
        build_http_app(config)


def test_binding_every_address_needs_the_names_clients_use(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="public_url"):
        build_http_app(http_config(tmp_path / "home", host="0.0.0.0"))


def test_serve_refuses_an_unauthenticated_public_bind_from_the_command_line(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "spark_mcp.cli",
            "serve",
            "--home",
            str(tmp_path / "home"),
            "--transport",
            "http",
            "--host",
            "0.0.0.0",
        ],
        env={"PATH": "/usr/bin:/bin", "SPARK_MCP_AUTH__MODE": "none", "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1
    assert "refusing to serve HTTP on 0.0.0.0 without authentication" in done.stderr
    assert done.stdout == ""


async def test_the_stdio_principal_is_audited_as_stdio(tmp_path: Path) -> None:
    from mcp import Client

    from spark_mcp.server import build_server

    config = http_config(tmp_path / "home").model_copy(update={"user": "carol"})
    async with Client(build_server(config)) as client:
        assert not (await client.call_tool("whoami", {})).is_error
    record = tail(config.audit_path, 1)[0]
    assert (record.principal, record.auth, record.token_id, record.via) == ("carol", "stdio", None, "mcp")


async def test_tls_serves_https_and_the_resource_url_says_so(tmp_path: Path) -> None:
    import ssl

    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    cert, key = self_signed(tmp_path)
    config = http_config(tmp_path / "home", tls_cert=str(cert), tls_key=str(key))
    async with serving(config) as running:
        https = running.url.replace("http://", "https://")
        assert running.service.resource == https
        assert running.service.tokens is not None
        token = running.service.tokens.create("alice", scopes=["spark:read"], resource=https).token
        context = ssl.create_default_context(cafile=str(cert))
        async with (
            httpx2.AsyncClient(verify=context, headers={"Authorization": f"Bearer {token}"}) as http,
            Client(streamable_http_client(https, http_client=http)) as client,
        ):
            result = await client.call_tool("whoami", {})
        assert result.structured_content is not None
        assert result.structured_content["principal"] == "alice"
        async with httpx2.AsyncClient() as plain:
            with pytest.raises(httpx2.HTTPError):
                await plain.get(f"{running.base}/healthz")  # no plaintext on the TLS port


async def test_each_request_is_attributed_to_the_token_it_carried_even_within_one_mcp_session(
    server: Running,
) -> None:
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    first, first_id = issue(server, "alice")
    second, second_id = issue(server, "alice")
    async with (
        bearer(first) as http,
        Client(streamable_http_client(server.url, http_client=http), mode="legacy") as client,
    ):
        await client.call_tool("whoami", {})
        http.headers["Authorization"] = f"Bearer {second}"  # the same user rotates tokens mid-session
        await client.call_tool("whoami", {})
        assert server.service.tokens is not None
        server.service.tokens.revoke(second_id)
        with pytest.raises((MCPError, httpx2.HTTPStatusError)):
            await client.call_tool("whoami", {})
    records = tail(server.config.audit_path, 2)
    assert [r.token_id for r in records] == [first_id, second_id]


async def test_another_users_token_cannot_ride_an_existing_mcp_session(server: Running) -> None:
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    alice, _ = issue(server, "alice")
    erin, _ = issue(server, "erin")
    async with (
        bearer(alice) as http,
        Client(streamable_http_client(server.url, http_client=http), mode="legacy") as client,
    ):
        await client.call_tool("whoami", {})
        http.headers["Authorization"] = f"Bearer {erin}"
        with pytest.raises((MCPError, httpx2.HTTPStatusError)):
            await client.call_tool("whoami", {})
    assert [r.principal for r in tail(server.config.audit_path, 5)] == ["alice"]


def test_a_missing_tls_file_is_named_at_start(tmp_path: Path) -> None:
    config = http_config(tmp_path / "home", tls_cert=str(tmp_path / "nope.pem"), tls_key=str(tmp_path / "k.pem"))
    with pytest.raises(ConfigError, match=r"server\.tls_cert"):
        build_http_app(config)


def test_the_write_scope_can_be_switched_off_so_the_policy_alone_decides(tmp_path: Path) -> None:
    from spark_mcp.auth.settings import token_is_read_only

    default = http_config(tmp_path / "a")
    assert token_is_read_only(default, ("spark:read",))
    assert not token_is_read_only(default, ("spark:read", "spark:write"))
    off = http_config(tmp_path / "b", auth={"write_scope": ""})
    assert off.auth.write_scope is None
    assert not token_is_read_only(off, ("spark:read",))
