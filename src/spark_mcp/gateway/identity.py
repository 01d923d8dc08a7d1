"""Who is calling the gateway: the same verifiers as the HTTP transport, on every call.

A Spark Connect client sends its credential as ``authorization: Bearer <token>`` metadata
(``sc://host:port/;token=...``). Each call is verified afresh, with the verifier ``[auth]
mode`` names: an API token is looked up in the token store (so revoking one refuses the
very next call), an OIDC JWT is checked against the issuer's keys, and in ``proxy`` mode
the identity header counts only from a trusted proxy's address. A credential must carry
the scopes ``[auth] scopes`` requires; one without the write scope makes a read-only
principal. ``none`` (loopback only) makes every caller the server's user.

Nothing the client sends besides the credential names the caller: the principal is built
exactly as the HTTP transport builds it (``App.principal``), with its roles from the policy.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

import structlog

from spark_mcp.app import App
from spark_mcp.auth.claims import identity_of
from spark_mcp.auth.oidc import OidcVerifier
from spark_mcp.auth.proxy import ProxyVerifier
from spark_mcp.auth.settings import resource_url, token_is_read_only
from spark_mcp.auth.tokens import ApiTokenVerifier
from spark_mcp.config import Config
from spark_mcp.errors import InvalidInput, SparkMcpError
from spark_mcp.identity import Principal, os_user, validate_principal_id
from spark_mcp.state.db import StateDB, state_path
from spark_mcp.state.tokens import TokenStore

log = structlog.get_logger(__name__)

_MAX_TOKEN_CHARS = 8192


class Unauthenticated(SparkMcpError):
    """No valid credential: the call is refused before anything else looks at it."""

    code = "unauthenticated"


class Forbidden(SparkMcpError):
    """A valid credential without a scope the server requires; ``principal`` is its owner."""

    code = "insufficient_scope"

    def __init__(self, message: str, principal: str | None = None) -> None:
        super().__init__(message)
        self.principal = principal


@dataclass(frozen=True)
class Metadata:
    """What identity may come from: the call's metadata and the connection's peer."""

    pairs: Sequence[tuple[str, str | bytes]]
    peer: str

    def values(self, key: str) -> list[str]:
        return [v for k, v in self.pairs if k == key and isinstance(v, str)]

    @property
    def peer_address(self) -> str | None:
        """``ipv4:1.2.3.4:5``/``ipv6:[::1]:5`` as an address; None for anything else (unix sockets)."""
        kind, _, rest = self.peer.partition(":")
        if kind == "ipv4":
            address = rest.rsplit(":", 1)[0]
        elif kind == "ipv6":
            address = rest.rsplit(":", 1)[0].strip("[]")
        else:
            return None
        try:
            return str(ipaddress.ip_address(address))
        except ValueError:
            return None


class GatewayAuth:
    """Turns a call's metadata into a principal, or refuses it."""

    def __init__(self, config: Config) -> None:
        self._config = config
        self._mode = config.auth.mode
        self._db: StateDB | None = None
        resource = resource_url(config)
        self._bearer: ApiTokenVerifier | OidcVerifier | None = None
        self._proxy: ProxyVerifier | None = None
        if self._mode == "tokens":
            self._db = StateDB(state_path(config.home))
            self._bearer = ApiTokenVerifier(TokenStore(self._db), resource)
        elif self._mode == "oidc":
            self._bearer = OidcVerifier(config.auth.oidc, resource)
        elif self._mode == "proxy":
            scopes = [*config.auth.scopes, *([config.auth.write_scope] if config.auth.write_scope else [])]
            self._proxy = ProxyVerifier(
                header=config.auth.proxy.header,
                trusted=config.auth.proxy.trusted_proxies,
                resource=resource,
                scopes=scopes,
            )
        self._static_user = validate_principal_id(config.user or os_user()) if self._mode == "none" else None

    @property
    def mode(self) -> str:
        return self._mode

    async def principal(self, app: App, metadata: Metadata) -> Principal:
        if self._static_user is not None:
            return app.principal(self._static_user, auth="none")
        if self._proxy is not None:
            token = self._proxy.verify_request(metadata.peer_address, metadata.values(self._proxy.header))
        else:
            assert self._bearer is not None
            token = await self._bearer.verify_token(self._bearer_token(metadata))
        identity = identity_of(token.subject, token.scopes, token.claims) if token is not None else None
        if identity is None:
            raise Unauthenticated("invalid, expired or revoked credential: make a new token and connect again")
        missing = [s for s in self._config.auth.scopes if s not in identity.scopes]
        if missing:
            raise Forbidden(
                f"the credential lacks the scope {' '.join(missing)}: make a token with it", identity.principal
            )
        try:
            principal_id = validate_principal_id(identity.principal)
        except InvalidInput:
            raise Unauthenticated("the credential names no valid principal") from None
        return app.principal(
            principal_id,
            groups=identity.groups,
            auth=identity.auth,
            token_id=identity.token_id,
            read_only=token_is_read_only(self._config, identity.scopes),
        )

    @staticmethod
    def _bearer_token(metadata: Metadata) -> str:
        values = metadata.values("authorization")
        if len(values) != 1:
            raise Unauthenticated(
                "no credential: connect with sc://HOST:PORT/;token=<your API token or JWT> "
                "(and use_ssl=true anywhere but localhost)"
            )
        scheme, _, token = values[0].strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token or len(token) > _MAX_TOKEN_CHARS:
            raise Unauthenticated("the authorization metadata must be 'Bearer <token>'")
        return token

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
