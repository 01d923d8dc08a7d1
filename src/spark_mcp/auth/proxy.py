"""The ``proxy`` verifier: the principal from a header set by an authenticating proxy.

The header is believed only on a connection from one of ``[auth.proxy] trusted_proxies``
(the peer address of the TCP connection itself: the HTTP server is run without
``X-Forwarded-For`` processing, so a client cannot claim a proxy's address). A request
from any other address is refused, whatever it carries; a trusted request without the
header, or with a value that is not a principal id, is refused too.

The proxy has authenticated the caller, and the policy decides what it may do, so a
proxied principal gets the required scopes and the write scope.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

import structlog
from mcp.server.auth.provider import AccessToken

from spark_mcp.auth.claims import make_claims
from spark_mcp.errors import InvalidInput
from spark_mcp.identity import validate_principal_id

log = structlog.get_logger(__name__)

PROXY_ISSUER = "spark-mcp-proxy"

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(cidrs: Sequence[str]) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(cidr, strict=False) for cidr in cidrs)


class ProxyVerifier:
    """Turns (peer address, identity header) into an ``AccessToken``, or refuses."""

    def __init__(self, *, header: str, trusted: Sequence[str], resource: str, scopes: Sequence[str]) -> None:
        self.header = header.lower()
        self._trusted = parse_networks(trusted)
        self._resource = resource
        self._scopes = list(dict.fromkeys(scopes))

    def trusts(self, peer: str | None) -> bool:
        if not peer:
            return False
        try:
            address = ipaddress.ip_address(peer)
        except ValueError:
            return False  # a Unix socket or something else without an IP: never trusted
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address.version == net.version and address in net for net in self._trusted)

    def verify_request(self, peer: str | None, values: Sequence[str]) -> AccessToken | None:
        if not self.trusts(peer):
            log.warning("auth.proxy_untrusted_peer", peer=peer)
            return None
        if len(values) != 1:
            return None  # missing, or repeated (two proxies, or a client header the proxy passed on)
        try:
            principal = validate_principal_id(values[0].strip())
        except InvalidInput:
            log.info("auth.proxy_bad_principal", peer=peer)
            return None
        return AccessToken(
            token="",
            client_id=PROXY_ISSUER,
            scopes=self._scopes,
            resource=self._resource,
            subject=principal,
            claims=make_claims("proxy", issuer=PROXY_ISSUER),
        )
