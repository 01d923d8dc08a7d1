"""How callers prove who they are: ``[auth]`` (with ``[auth.oidc]`` and ``[auth.proxy]``) and the web
console's sign-in, ``[console]``."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from spark_mcp.config.base import FrozenModel

# Signature algorithms an OIDC issuer may use: asymmetric only. "none" and the HS* family are
# refused, since a JWKS publishes public keys and an HMAC "key" taken from it would let
# anyone who can read the JWKS sign tokens.
ASYMMETRIC_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
_SCOPE = re.compile(r"^[\x21\x23-\x5b\x5d-\x7e]{1,64}$")  # RFC 6749 scope-token characters


def _scope_list(value: tuple[str, ...]) -> tuple[str, ...]:
    for scope in value:
        if not _SCOPE.fullmatch(scope):
            raise ValueError(f"{scope!r} is not a scope (printable, no spaces, quotes or backslashes)")
    return value


class OidcConfig(FrozenModel):
    """``[auth.oidc]``: JWTs from an OpenID Connect issuer, checked against its JWKS."""

    issuer: str | None = Field(default=None, description="the issuer URL, exactly as tokens carry it in iss")
    audience: str | None = Field(default=None, description="required aud (default: the resource URL)")
    jwks_url: str | None = Field(default=None, description="default: from the issuer's discovery document")
    principal_claim: str = Field(default="sub", description="the claim naming the principal")
    groups_claim: str | None = Field(default=None, description="a claim listing groups that name policy roles")
    clock_skew_s: float = Field(default=30, ge=0, le=300)
    algorithms: tuple[str, ...] = ("RS256", "ES256")
    jwks_cache_s: float = Field(default=300, gt=0, le=86400, description="how long fetched keys are trusted")
    jwks_min_refetch_s: float = Field(
        default=30, ge=0, le=3600, description="an unknown kid refetches the JWKS at most this often"
    )

    @field_validator("issuer", "jwks_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"https?://[^\s]+", value):
            raise ValueError("must be an http(s) URL")
        return value

    @field_validator("algorithms")
    @classmethod
    def _algorithms(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("name at least one algorithm")
        for name in value:
            if name not in ASYMMETRIC_ALGORITHMS:
                allowed = ", ".join(sorted(ASYMMETRIC_ALGORITHMS))
                raise ValueError(f"{name!r} is not allowed: use asymmetric algorithms only ({allowed})")
        return value

    @field_validator("principal_claim", "groups_claim")
    @classmethod
    def _claim(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[A-Za-z0-9_:./\-]{1,128}", value):
            raise ValueError("must be a claim name")
        return value


class ProxyConfig(FrozenModel):
    """``[auth.proxy]``: identity from a header set by an authenticating proxy."""

    header: str = Field(default="X-Forwarded-User", description="the header carrying the principal id")
    trusted_proxies: tuple[str, ...] = Field(
        default=(), description="addresses (CIDRs) of the proxies allowed to set the header"
    )

    @field_validator("header")
    @classmethod
    def _header(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9-]{1,64}", value):
            raise ValueError("must be an HTTP header name")
        if value.lower() in ("authorization", "host", "cookie", "content-type", "content-length"):
            raise ValueError(f"{value} cannot carry an identity")
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _cidrs(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        import ipaddress

        for cidr in value:
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError:
                raise ValueError(f"{cidr!r} is not an address or CIDR (e.g. 10.0.0.5/32)") from None
        return value


class AuthConfig(FrozenModel):
    """``[auth]``: how HTTP callers prove who they are (stdio trusts the launching user)."""

    mode: Literal["tokens", "oidc", "proxy", "none"] = Field(
        default="tokens",
        description="tokens: spark-mcp's own API tokens; oidc: JWTs from an issuer; proxy: a trusted "
        "proxy's header; none: no authentication (loopback only, every caller is `user`)",
    )
    scopes: tuple[str, ...] = Field(default=("spark:read",), description="scopes every token must carry")
    write_scope: str | None = Field(
        default="spark:write", description="the scope that allows changes; a token without it is read-only"
    )
    resource_url: str | None = Field(default=None, description="this server's resource URL (default: <public>/mcp)")
    oidc: OidcConfig = OidcConfig()
    proxy: ProxyConfig = ProxyConfig()

    @field_validator("scopes")
    @classmethod
    def _scopes(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("name at least one scope: a token with no scope would then reach everything")
        return _scope_list(value)

    @field_validator("write_scope")
    @classmethod
    def _write_scope(cls, value: str | None) -> str | None:
        if not value:
            return None  # "": no write scope, the policy alone decides
        _scope_list((value,))
        return value

    @field_validator("resource_url")
    @classmethod
    def _resource(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"https?://[^\s?#]+", value):
            raise ValueError("must be an http(s) URL without query or fragment")
        return value

    @model_validator(mode="after")
    def _mode_needs(self) -> AuthConfig:
        if self.mode == "oidc" and not self.oidc.issuer:
            raise ValueError("mode oidc needs [auth.oidc] issuer")
        if self.mode == "proxy" and not self.proxy.trusted_proxies:
            raise ValueError("mode proxy needs [auth.proxy] trusted_proxies: the addresses of your proxies")
        return self


class ConsoleConfig(FrozenModel):
    """``[console]``: the web console at ``/console``, served with the HTTP transport."""

    enabled: bool = Field(default=True, description="serve the console at /console (HTTP transport only)")
    session_idle_s: float = Field(default=3600, ge=60, le=7 * 86400, description="a console login ends when idle")
    session_max_s: float = Field(default=12 * 3600, ge=60, le=30 * 86400, description="and after this, whatever")
    oidc_client_id: str | None = Field(
        default=None, description="mode oidc: the console's client id at the issuer (none: no OIDC sign-in)"
    )
    oidc_client_secret: SecretStr | None = Field(
        default=None, description="a confidential client's secret (set it from the environment, not a file)"
    )
    oidc_scopes: tuple[str, ...] = Field(default=("openid", "profile"), description="scopes the sign-in asks for")

    @field_validator("oidc_client_id")
    @classmethod
    def _client_id(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[\x21-\x7e]{1,255}", value):
            raise ValueError("must be 1-255 printable characters without spaces")
        return value

    @field_validator("oidc_scopes")
    @classmethod
    def _oidc_scopes(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if "openid" not in value:
            raise ValueError('must include "openid" (it is what makes the issuer send an ID token)')
        return _scope_list(value)
