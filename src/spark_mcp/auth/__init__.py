"""Who is calling over HTTP: verifiers that turn a credential into a verified principal.

    claims.py    what a verified credential carries for identity (auth method, token id, groups)
    settings.py  the resource URL, the scopes, and the verifier ``[auth] mode`` asks for
    tokens.py    spark-mcp's own API tokens (``spark-mcp tokens``), checked against their hashes
    oidc.py      JWTs from an OpenID Connect issuer, checked against its JWKS
    proxy.py     an authenticating proxy's header, trusted only from the proxy's addresses

Each bearer verifier is an MCP SDK ``TokenVerifier``: it returns an ``AccessToken`` whose
``resource`` is this server's resource URL (a credential for another resource is refused
here, and again by the SDK), whose ``subject`` is the principal id, and whose ``claims``
say how it was authenticated. The proxy verifier works on the request instead (its
address and one header), since a bearer verifier never sees either.
"""

from spark_mcp.auth.claims import Identity, identity_of
from spark_mcp.auth.settings import resource_url

__all__ = ["Identity", "identity_of", "resource_url"]
