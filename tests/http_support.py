"""Real HTTP for the tests: spark-mcp's HTTP app under uvicorn on a free loopback port.

``serving(config)`` binds a socket first (so the resource URL can name the real port),
starts uvicorn in the test's own event loop, waits until it accepts connections, and
stops it (and the app's lifespan, with its drivers) at exit.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx2
import uvicorn
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from spark_mcp.app import App
from spark_mcp.config import Config, load_config
from spark_mcp.http.app import HttpService, build_http_app
from spark_mcp.http.serve import uvicorn_config

TESTS = Path(__file__).resolve().parent


def http_config(home: Path, *, auth: dict[str, Any] | None = None, **server: Any) -> Config:
    """A config for an HTTP server with the test policies and no datasets (no Spark needed)."""
    return load_config(
        None,
        environ={},
        overrides={
            "home": str(home),
            "policies": [str(TESTS / "policies")],
            "server": {"transport": "http", "host": "127.0.0.1", "port": 0, **server},
            "auth": auth or {},
        },
    )


class _Uvicorn(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # pytest owns the signals of its process


@dataclass
class Running:
    url: str  # the MCP endpoint
    base: str
    service: HttpService
    config: Config


def bound_socket(host: str = "127.0.0.1") -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    return sock


@asynccontextmanager
async def serving(config: Config, *, app: App | None = None) -> AsyncIterator[Running]:
    sock = bound_socket(config.server.host)
    port = sock.getsockname()[1]
    config = config.model_copy(update={"server": config.server.model_copy(update={"port": port})})
    service = build_http_app(config, app=app)
    server = _Uvicorn(uvicorn_config(config, service.asgi))
    base = f"http://{config.server.host}:{port}"
    try:
        async with anyio.create_task_group() as group:
            group.start_soon(server.serve, [sock])
            with anyio.fail_after(60):
                while not server.started:
                    if server.should_exit:
                        raise RuntimeError("the HTTP server failed to start")
                    await anyio.sleep(0.02)
            try:
                yield Running(url=f"{base}/mcp", base=base, service=service, config=config)
            finally:
                server.should_exit = True
    finally:
        sock.close()


def bearer(token: str, **headers: str) -> httpx2.AsyncClient:
    return httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}", **headers}, timeout=120)


@asynccontextmanager
async def mcp_client(url: str, token: str, *, mode: str = "auto") -> AsyncIterator[Client]:
    async with bearer(token) as http, Client(streamable_http_client(url, http_client=http), mode=mode) as client:
        yield client


def mcp_post_body() -> dict[str, Any]:
    """A legacy ``initialize`` request, for probing the endpoint with raw HTTP."""
    return {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "probe", "version": "1"},
        },
    }


MCP_HEADERS = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key (0600), for serving HTTPS in tests."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(__import__("ipaddress").ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    key_path.chmod(0o600)
    return cert_path, key_path
