"""Source addresses as the small keys the relay's tables use. Sans-I/O:
no socket module, no clock.

Theory of operation
-------------------
The relay sees every source address as the text its socket gives: canonical
IPv4 dotted quads (``198.51.100.7``) and canonical IPv6 (RFC 5952, maybe
with a ``%zone``; IPv4-mapped as ``::ffff:198.51.100.7``). Its tables key
users, hosts and address blocks by ints derived from that text, on the path
of every datagram, so the parsing here is string handling that is about as
fast as ``socket.inet_aton`` (measured in the commit that introduced it):

* an IPv4 octet is looked up in a table of the 256 canonical decimal
  strings, so anything else ("04", "+4", " 4", other scripts' digits) is
  simply not an IPv4 address to :func:`ipv4_int`, and
  :func:`addr_key`/:func:`addr_of` give back the very same tuple;
* an IPv6 prefix is read group by group from the text, with ``::``
  expanded; forms with an embedded IPv4 address other than the mapped one
  go through :mod:`ipaddress` (rare, and equally correct).

:func:`addr_key` is what a User keeps of its address, :func:`ip_key` whose
per-host quota an address counts against (IPv4 address, IPv6 /64),
:func:`block_key` which /24 or /48 it belongs to (fair shares, budgets).
"""

import ipaddress

_OCTET = {str(i): i for i in range(256)}
_OCTETS = tuple(str(i) for i in range(256))
_MAPPED = "::ffff:"


def ipv4_int(host):
    """A canonical dotted quad as an int; None for any other text."""
    try:
        a, b, c, d = host.split(".")
        return _OCTET[a] << 24 | _OCTET[b] << 16 | _OCTET[c] << 8 | _OCTET[d]
    except (KeyError, ValueError):
        return None


def ipv4_text(ip):
    """The canonical dotted quad of the int *ip* (inverse of :func:`ipv4_int`)."""
    return ".".join((_OCTETS[ip >> 24 & 255], _OCTETS[ip >> 16 & 255], _OCTETS[ip >> 8 & 255],
                     _OCTETS[ip & 255]))


def ipv6_prefix(host, groups):
    """The first *groups* 16-bit groups of the IPv6 address *host* (text,
    a zone allowed) as an int, or its IPv4 address as a str if it is
    IPv4-mapped. Raises ValueError for text that is not an IPv6 address."""
    host = host.split("%", 1)[0]
    if "." in host:
        return _embedded(host, groups)
    head, sep, tail = host.partition("::")
    parts = head.split(":") if head else []
    if sep:
        rest = tail.split(":") if tail else []
        parts += ["0"] * (8 - len(parts) - len(rest)) + rest
    if len(parts) != 8 or "" in parts:
        raise ValueError("not an IPv6 address: %r" % host[:60])
    value = 0
    for part in parts[:groups]:
        if not 0 < len(part) <= 4:
            raise ValueError("not an IPv6 address: %r" % host[:60])
        value = value << 16 | int(part, 16)
    return value


def _embedded(host, groups):
    if host.startswith(_MAPPED) and ipv4_int(host[len(_MAPPED):]) is not None:
        return host[len(_MAPPED):]
    ip = ipaddress.IPv6Address(host)
    if ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return int(ip) >> (128 - 16 * groups)


def addr_key(addr):
    """What a User keeps of its address: an IPv4 (host, port) as one int
    (1 << 48 | IP << 16 | port: never equal to an IP alone), as long as
    that gives back the very same tuple; any other address as it is."""
    host, port = addr[0], addr[1]
    if len(addr) == 2 and type(host) is str and type(port) is int and 0 <= port < 65536:
        ip = ipv4_int(host)
        if ip is not None:
            return 1 << 48 | ip << 16 | port
    return addr


def addr_of(key):
    """The address a key of :func:`addr_key` stands for."""
    if type(key) is int:
        return ipv4_text(key >> 16 & 0xFFFFFFFF), key & 0xFFFF
    return key


def ip_key(addr):
    """Whose quota a source address counts against: its IPv4 address (an
    int), or the /64 of an IPv6 one (8 bytes; an IPv4-mapped one counts as
    IPv4); the text itself for anything else."""
    key = addr_key(addr)
    if type(key) is int:
        return key >> 16 & 0xFFFFFFFF
    host = addr[0]
    if ":" not in host:
        return host
    prefix = ipv6_prefix(host, 4)
    if type(prefix) is str:
        return ipv4_int(prefix)
    return prefix.to_bytes(8, "big")


def block_key(addr):
    """The address block *addr* counts against, as an int: the /24 of an
    IPv4 address (IPv4-mapped IPv6 included), or 1 << 48 plus the /48 of an
    IPv6 one (an address that is neither keeps the text before its last dot)."""
    host = addr[0]
    if ":" in host:
        prefix = ipv6_prefix(host, 3)
        if type(prefix) is not str:
            return 1 << 48 | prefix
        host = prefix
    try:
        a, b, c, d = host.split(".")
        if d in _OCTET:
            return _OCTET[a] << 16 | _OCTET[b] << 8 | _OCTET[c]
    except (KeyError, ValueError):
        pass
    return host.rpartition(".")[0]
