"""Endpoints on the wire: ``HOST:PORT`` text, and which addresses we accept.

Theory of operation
-------------------
Messages name UDP endpoints as text: ``198.51.100.20:40000`` or, for IPv6,
``[2001:db8::1]:40000`` (literal addresses only, never names, never zones).
:func:`format_endpoint` and :func:`parse_endpoint` are mirror images, and
:func:`canonical_addr` gives the one ``(ip, port)`` form the cores compare,
so an IPv4-mapped IPv6 address and its plain IPv4 twin are the same peer.

Two predicates decide what an endpoint from the network may be used for:
:func:`is_peer_endpoint` (a public, unicast address another peer can have)
and :func:`is_lan_endpoint` (a private-range host candidate). They keep an
introduction from aiming our probes at loopback, multicast or third parties.
Nothing here raises anything but ``ValueError``; the codec
(:mod:`peerpunch.protocol`) turns that into its own errors.
"""

import ipaddress
import re

LAN_NETWORKS = tuple(ipaddress.ip_network(n) for n in (
    "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16",   # RFC 1918
    "100.64.0.0/10",                                   # RFC 6598 shared (CGNAT) space
    "169.254.0.0/16", "fc00::/7", "fe80::/10",         # link-local, unique local
))
"""Where a peer's LAN (host) candidates may be: never loopback, multicast or
a public address, so an introduction cannot aim our probes at third parties."""


def is_peer_endpoint(text, allow_loopback=False):
    """True if *text* can be another peer's public endpoint: a unicast
    address that is not unspecified, multicast, broadcast or reserved, and
    loopback only when *allow_loopback* (a relay on this very machine)."""
    try:
        host, _ = parse_endpoint(text)
    except ValueError:
        return False
    ip = ipaddress.ip_address(host)
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_loopback:
        return allow_loopback
    return not (ip.is_unspecified or ip.is_multicast or ip.is_reserved or ip.is_link_local
                or ip == ipaddress.IPv4Address("255.255.255.255"))


def is_lan_endpoint(text):
    """True if *text* is a literal endpoint in one of LAN_NETWORKS."""
    try:
        host, _ = parse_endpoint(text)
    except ValueError:
        return False
    ip = ipaddress.ip_address(host)
    return any(ip in net for net in LAN_NETWORKS if net.version == ip.version)


def format_endpoint(addr) -> str:
    """``('198.51.100.20', 40000)`` -> ``'198.51.100.20:40000'``; IPv6 in
    brackets, canonical and without a zone; an IPv4-mapped IPv6 address is
    written as plain IPv4."""
    host, port = addr[0], addr[1]
    if ":" in host or not _DOTTED_QUAD.match(host):   # IPv6 (or not what a socket gives)
        host, port = canonical_addr(addr)
    return ("[%s]:%d" if ":" in host else "%s:%d") % (host, port)


_DOTTED_QUAD = re.compile(r"(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}\Z")


def canonical_addr(addr):
    """A socket address as ``(ip, port)`` with the IP in canonical text form
    and IPv4-mapped IPv6 addresses turned into IPv4: what the cores compare."""
    ip = ipaddress.ip_address(addr[0].split("%", 1)[0])
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return str(ip), addr[1]


def parse_endpoint(text: str):
    """Inverse of format_endpoint: ``'[2001:db8::1]:40000'`` ->
    ``('2001:db8::1', 40000)``. Only literal addresses; raises ValueError."""
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
        version = 6
    else:
        host, sep, port = text.rpartition(":")
        version = 4
    if not sep or not port.isdigit() or not port.isascii() or len(port) > 5:
        raise ValueError("endpoint must be HOST:PORT or [HOST]:PORT")
    if "%" in host:      # zones mean nothing off-link; Python 3.9+ would accept them
        raise ValueError("scoped addresses are not endpoints")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        shown = host if len(host) <= 60 else host[:60] + "..."
        raise ValueError("not an IP address: %r" % shown) from None
    if ip.version != version:
        raise ValueError("IPv6 addresses must be written in brackets")
    if not 1 <= int(port) <= 65535:
        raise ValueError("port must be 1..65535")
    return str(ip), int(port)
