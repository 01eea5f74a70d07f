"""The client address of a request: the one function that rate limits, geo routing and logs use.

``X-Forwarded-For`` is honoured only when the peer is a trusted proxy. The
header is read right to left: each hop was appended by the proxy in front of
it, so the rightmost entry not inside a trusted network is the client. A
malformed entry ends the walk and the last trusted hop's peer stands.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_networks(values: Iterable[str]) -> list[Network]:
    """Parse CIDR strings; raise ValueError naming the bad one."""
    networks = []
    for value in values:
        try:
            networks.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError:
            raise ValueError(f"invalid trusted proxy network {value!r}: use CIDR notation such as 10.0.0.0/8 or ::1/128") from None
    return networks


def parse_address(value: str) -> Address | None:
    """Parse an address as it appears in a peer name or header; IPv4-mapped IPv6 becomes IPv4."""
    value = value.strip()
    if value.startswith("[") and "]" in value:
        value = value[1:value.index("]")]
    elif value.count(":") == 1 and "." in value:
        value = value.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(value.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def is_trusted(address: Address, trusted: list[Network]) -> bool:
    return any(address.version == network.version and address in network for network in trusted)


def client_address(peer: str | None, forwarded_for: list[str], trusted: list[Network]) -> str | None:
    """Return the client's address as a string, or None when the peer is unknown.

    ``forwarded_for`` holds every ``X-Forwarded-For`` header value in the
    order received; each may list several comma-separated hops.
    """
    address = parse_address(peer) if peer else None
    if address is None:
        return peer or None
    if not is_trusted(address, trusted):
        return str(address)
    hops = [hop for value in forwarded_for for hop in value.split(",") if hop.strip()]
    for hop in reversed(hops):
        hop_address = parse_address(hop)
        if hop_address is None:
            break
        address = hop_address
        if not is_trusted(address, trusted):
            break
    return str(address)
