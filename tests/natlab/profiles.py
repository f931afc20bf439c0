"""NAT behaviours as netfilter rules: one function per profile.

Theory of operation
-------------------
A profile function takes the mapping lifetime in seconds and returns one
:class:`Rules` per NAT box between the peer and the internet, outermost
first: ``open`` has none, ``double`` has two (carrier, then home router).
Every box names its interfaces ``wan`` (toward the internet) and ``lan``.

Every NAT here drops unsolicited input on its WAN side (see LAB-FACTS): a
punch that arrives before the local peer has sent anything must not leave
an UNREPLIED conntrack entry on the box, or MASQUERADE moves the peer's own
first packet to another port and the endpoint the relay handed out is wrong.
The only box without that rule is :func:`home_without_input_firewall`, kept
to reproduce exactly that failure by hand; the matrix never uses it.

Terms are RFC 4787's: mapping says when the NAT reuses a public port,
filtering says who may send to it.
"""

import dataclasses

WAN = "wan"
LAN = "lan"


@dataclasses.dataclass(frozen=True)
class Rules:
    """What one NAT box runs: ``iptables`` argument lines, then an nft script."""
    iptables: tuple = ()
    nft: str = ""


MASQUERADE = "-t nat -A POSTROUTING -o wan -j MASQUERADE"
FORWARD_STATEFUL = (
    "-A FORWARD -i wan -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
    "-A FORWARD -i wan -j DROP",
)
INPUT_DROP_NEW = "-A INPUT -i wan -m conntrack --ctstate NEW -j DROP"
ACCEPT_MAPPED = "-A FORWARD -i wan -m conntrack --ctstate DNAT -j ACCEPT"


def _home_router():
    return Rules(iptables=(MASQUERADE,) + FORWARD_STATEFUL + (INPUT_DROP_NEW,))


def _learned_mapping(timeout, *, learn_key, lookup_key, key_type):
    """Endpoint-independent mapping with filtering chosen by the map's key.

    After SNAT (priority above srcnat) every outgoing UDP packet of a flow the
    LAN started records *learn_key* -> (LAN address, LAN port); inbound UDP on
    the WAN whose *lookup_key* is in the map is DNATed back to that endpoint.
    Entries live as long as conntrack's would.
    """
    return """table ip natlab {
    map mapped {
        type %(key_type)s : ipv4_addr . inet_service
        flags dynamic, timeout
        timeout %(timeout)ds
    }
    chain learn {
        type filter hook postrouting priority srcnat + 100; policy accept;
        oifname "wan" ct direction original update @mapped { %(learn_key)s timeout %(timeout)ds : ct original ip saddr . ct original proto-src }
    }
    chain admit {
        type nat hook prerouting priority dstnat; policy accept;
        iifname "wan" meta l4proto udp dnat ip to %(lookup_key)s map @mapped
    }
}
""" % dict(key_type=key_type, timeout=max(1, round(timeout)), learn_key=learn_key,
           lookup_key=lookup_key)


# -- the profiles

def open_internet(timeout):
    """open: a public address on the host itself, no NAT, no firewall."""
    return []


def full_cone(timeout):
    """full-cone: endpoint-independent mapping and filtering. Once the LAN
    host sent from a public port, anyone may send to that port (a learned
    mapping, not static port forwarding)."""
    return [Rules(iptables=(MASQUERADE, ACCEPT_MAPPED) + FORWARD_STATEFUL + (INPUT_DROP_NEW,),
                  nft=_learned_mapping(timeout, learn_key="udp sport", lookup_key="udp dport",
                                       key_type="inet_service"))]


def restricted(timeout):
    """restricted: endpoint-independent mapping, address-dependent filtering.
    Once the LAN host sent to an IP from a public port, that IP may send to
    the port from any of its ports."""
    return [Rules(iptables=(MASQUERADE, ACCEPT_MAPPED) + FORWARD_STATEFUL + (INPUT_DROP_NEW,),
                  nft=_learned_mapping(timeout, learn_key="ip daddr . udp sport",
                                       lookup_key="ip saddr . udp dport",
                                       key_type="ipv4_addr . inet_service"))]


def port_restricted(timeout):
    """port-restricted: a home router. MASQUERADE keeps the port (mapping is
    endpoint-independent while it is free); conntrack admits only replies
    from the exact address and port the LAN host sent to."""
    return [_home_router()]


def symmetric(timeout):
    """symmetric: every destination gets a fresh random public port."""
    return [Rules(iptables=(MASQUERADE + " --random-fully",) + FORWARD_STATEFUL
                  + (INPUT_DROP_NEW,))]


def double(timeout):
    """double: a home router whose WAN is in 100.64.0.0/10, behind a
    carrier-grade NAT with the same rules (each peer has its own carrier)."""
    return [_home_router(), _home_router()]


def same_nat(timeout):
    """same-nat: both peers on one LAN behind one home router, which does not
    hairpin (a packet from the LAN to the router's own public address ends
    at the router)."""
    return [_home_router()]


def home_without_input_firewall(timeout):
    """Known-hard case, not in the matrix: a home router that lets
    unsolicited WAN input reach the box itself. An early punch leaves an
    UNREPLIED conntrack entry there, and the local peer's own packet to the
    same endpoint is then moved to another public port."""
    return [Rules(iptables=(MASQUERADE,) + FORWARD_STATEFUL)]


PROFILES = {
    "open": open_internet,
    "full-cone": full_cone,
    "restricted": restricted,
    "port-restricted": port_restricted,
    "symmetric": symmetric,
    "double": double,
    "same-nat": same_nat,
    "home-no-input-firewall": home_without_input_firewall,
}
SHARED_LAN = "same-nat"            # describes both peers: pairs only with itself
SIDE_PROFILES = ("open", "full-cone", "restricted", "port-restricted", "symmetric", "double")
KNOWN_HARD = ("home-no-input-firewall",)


def describe(name):
    """The first sentence of the profile's docstring."""
    return " ".join(PROFILES[name].__doc__.split()).split(". ")[0].rstrip(".")


def random_loss(probability):
    """Drop *probability* of UDP packets both ways on a box's WAN side."""
    match = "-p udp -m statistic --mode random --probability %.4f -m comment --comment natlab-loss -j DROP" \
        % probability
    return Rules(iptables=("-t mangle -A PREROUTING -i wan " + match,
                           "-t mangle -A POSTROUTING -o wan " + match))
