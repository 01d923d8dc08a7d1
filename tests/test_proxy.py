"""Trusted-proxy mode: the principal from a proxy's header, believed only from the proxy's address.

The server listens on 127.0.0.1 and trusts only 127.0.0.2: a client bound to 127.0.0.2
plays the proxy, the same client from 127.0.0.1 plays everyone else.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from spark_mcp.audit import tail
from spark_mcp.errors import ConfigError
from tests.http_support import MCP_HEADERS, Running, http_config, mcp_post_body, serving

pytestmark = pytest.mark.anyio
PROXY = "127.0.0.2"


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Running]:
    auth = {"mode": "proxy", "proxy": {"header": "X-Auth-User", "trusted_proxies": [f"{PROXY}/32"]}}
    async with serving(http_config(tmp_path / "home", auth=auth)) as running:
        yield running


def from_address(address: str, **headers: str) -> httpx2.AsyncClient:
    return httpx2.AsyncClient(transport=httpx2.AsyncHTTPTransport(local_address=address), headers=headers, timeout=60)


@asynccontextmanager
async def proxied(url: str, user: str) -> AsyncIterator[Client]:
    async with (
        from_address(PROXY, **{"X-Auth-User": user}) as http,
        Client(streamable_http_client(url, http_client=http)) as client,
    ):
        yield client


async def post_from(server: Running, address: str, **headers: str) -> httpx2.Response:
    async with from_address(address) as http:
        return await http.post(server.url, json=mcp_post_body(), headers={**MCP_HEADERS, **headers})


async def test_the_header_from_the_trusted_proxy_names_the_principal(server: Running) -> None:
    async with proxied(server.url, "erin") as client:
        result = await client.call_tool("whoami", {})
    assert result.structured_content is not None
    assert result.structured_content["principal"] == "erin"
    assert "sql.write" in result.structured_content["actions"]  # the policy decides, not a scope
    record = tail(server.config.audit_path, 1)[0]
    assert (record.principal, record.auth, record.token_id) == ("erin", "proxy", None)


async def test_the_same_header_from_any_other_address_is_refused(server: Running) -> None:
    response = await post_from(server, "127.0.0.1", **{"X-Auth-User": "root"})
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer ")


async def test_a_forwarded_for_header_cannot_borrow_the_proxys_address(server: Running) -> None:
    spoofed = {"X-Auth-User": "root", "X-Forwarded-For": PROXY, "Forwarded": f"for={PROXY}", "X-Real-IP": PROXY}
    assert (await post_from(server, "127.0.0.1", **spoofed)).status_code == 401


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="no header"),
        pytest.param({"X-Auth-User": ""}, id="empty"),
        pytest.param({"X-Auth-User": "../../root"}, id="not a principal id"),
        pytest.param({"Authorization": "Bearer smcp_000000000000_" + "A" * 43}, id="a bearer token instead"),
    ],
)
async def test_a_trusted_request_without_a_valid_identity_is_refused(server: Running, headers: dict[str, str]) -> None:
    assert (await post_from(server, PROXY, **headers)).status_code == 401


async def test_two_identity_headers_are_refused(server: Running) -> None:
    async with from_address(PROXY) as http:
        request = http.build_request(
            "POST",
            server.url,
            json=mcp_post_body(),
            headers=[*MCP_HEADERS.items(), ("X-Auth-User", "alice"), ("X-Auth-User", "root")],
        )
        response = await http.send(request)
    assert response.status_code == 401


def test_proxy_mode_needs_trusted_addresses(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="trusted_proxies"):
        http_config(tmp_path, auth={"mode": "proxy"})
    with pytest.raises(ConfigError, match="CIDR"):
        http_config(tmp_path, auth={"mode": "proxy", "proxy": {"trusted_proxies": ["the-proxy"]}})
    with pytest.raises(ConfigError, match="cannot carry an identity"):
        http_config(tmp_path, auth={"mode": "proxy", "proxy": {"header": "Authorization", "trusted_proxies": ["::1"]}})


def test_the_envoy_examples_spark_mcp_config_is_valid_and_trusts_only_envoy() -> None:
    from spark_mcp.config import load_config
    from spark_mcp.http.app import allowed_hosts, check_exposure

    example = Path(__file__).resolve().parents[1] / "examples" / "envoy" / "spark-mcp.toml"
    config = load_config(example, environ={})
    check_exposure(config)
    assert config.auth.mode == "proxy"
    assert config.auth.proxy.trusted_proxies == ("127.0.0.1/32",)
    assert "spark.example.com:8443" in allowed_hosts(config)
