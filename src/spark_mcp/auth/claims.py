"""The identity facts a verified credential carries, and how to read them back.

Verifiers put them in ``AccessToken.claims`` under the keys below; ``identity_of`` reads
them (for the principal and the audit record). Nothing here trusts a request field: the
claims exist only on a token a verifier returned.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

AUTH = "spark_mcp_auth"  # token, oidc or proxy
TOKEN_ID = "spark_mcp_token_id"  # an API token's id
GROUPS = "spark_mcp_groups"  # OIDC groups (matched to policy roles by name)
ISSUER = "iss"  # the SDK binds MCP sessions to (client_id, iss, subject)


@dataclass(frozen=True)
class Identity:
    principal: str
    auth: str
    token_id: str | None
    groups: tuple[str, ...]
    scopes: tuple[str, ...]


def make_claims(auth: str, *, issuer: str, token_id: str | None = None, groups: tuple[str, ...] = ()) -> dict[str, Any]:
    claims: dict[str, Any] = {AUTH: auth, ISSUER: issuer}
    if token_id is not None:
        claims[TOKEN_ID] = token_id
    if groups:
        claims[GROUPS] = list(groups)
    return claims


def identity_of(subject: str | None, scopes: list[str], claims: Mapping[str, Any] | None) -> Identity | None:
    """The identity a verifier vouched for, or None when the token does not carry one."""
    claims = claims or {}
    auth = claims.get(AUTH)
    if not subject or not isinstance(auth, str):
        return None
    token_id = claims.get(TOKEN_ID)
    groups = claims.get(GROUPS) or []
    return Identity(
        principal=subject,
        auth=auth,
        token_id=token_id if isinstance(token_id, str) else None,
        groups=tuple(g for g in groups if isinstance(g, str)),
        scopes=tuple(scopes),
    )
