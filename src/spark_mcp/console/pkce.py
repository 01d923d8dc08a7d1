"""PKCE (RFC 7636) with S256, and the other one-time values of an OIDC sign-in.

The console is the OIDC client: it sends ``code_challenge = BASE64URL(SHA256(verifier))``
with the authorization request and the ``verifier`` itself with the code exchange, so a
code intercepted on its way back (a leaky redirect, a log) is worthless to whoever holds
it. ``state`` ties the answer to the request this browser started, ``nonce`` ties the ID
token to it.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets

_VERIFIER = re.compile(r"^[A-Za-z0-9\-._~]{43,128}$")  # RFC 7636 section 4.1


def new_verifier() -> str:
    """64 random bytes as base64url: 86 characters, all of them unreserved."""
    return secrets.token_urlsafe(64)


def valid_verifier(verifier: str) -> bool:
    return bool(_VERIFIER.fullmatch(verifier))


def challenge(verifier: str) -> str:
    """The S256 challenge of ``verifier`` (RFC 7636 section 4.2)."""
    if not valid_verifier(verifier):
        raise ValueError("a PKCE verifier is 43-128 unreserved characters")
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def new_state() -> str:
    return secrets.token_urlsafe(32)


def new_nonce() -> str:
    return secrets.token_urlsafe(32)
