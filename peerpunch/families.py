"""Address families: which endpoints one UDP socket can reach.

Theory of operation
-------------------
A relay bound to ``::`` serves IPv4 and IPv6 clients alike, so it can
introduce a peer it saw over IPv4 to one it saw over IPv6. A peer's socket
reaches one family (an ``AF_INET`` socket, or an ``AF_INET6`` one bound to a
particular IPv6 address) or both (``AF_INET6`` bound to ``::`` with
``IPV6_V6ONLY`` off: IPv4 travels as IPv4-mapped addresses). The shell
finds out which and tells the session; the session probes only candidates
it can reach, and when it can reach none of them it says so instead of
blaming NATs. Addresses here are canonical ``(ip, port)`` pairs
(:func:`peerpunch.protocol.canonical_addr`): IPv4-mapped IPv6 is IPv4.
"""

import ipaddress

IPV4, IPV6 = 4, 6
BOTH = (IPV4, IPV6)


def family(addr):
    """4 or 6: the family of the canonical address *addr*."""
    return IPV6 if ":" in addr[0] else IPV4


def describe(families):
    """``(4,)`` -> ``'IPv4'``; ``(4, 6)`` -> ``'IPv4 and IPv6'``."""
    return " and ".join("IPv%d" % f for f in sorted(set(families)))


def is_loopback(addr):
    return ipaddress.ip_address(addr[0]).is_loopback


def loopback_alias(addr):
    """The same port on the other family's loopback address: where a
    dual-stack socket on this host that the relay saw at the loopback *addr*
    can be reached too."""
    return ("127.0.0.1" if family(addr) == IPV6 else "::1"), addr[1]
