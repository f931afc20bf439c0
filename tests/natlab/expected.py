"""What each pair of NATs should give today: the one expected table.

Rows are unordered pairs (alice's profile first, in SIDE_PROFILES order),
plus same-nat, which describes both peers at once. A cell is the path both
peers print and, for a direct one, which endpoint of the other each settled
on; a cell that is not direct between the public endpoints says why.
Change a cell only together with the peer behaviour or NAT profile that
moved it, and keep the reason exact.
"""

import collections
import itertools

from .profiles import SHARED_LAN, SIDE_PROFILES

Cell = collections.namedtuple("Cell", "path why via")
PUBLIC = {"alice": "public", "bob": "public"}

DIRECT = Cell("direct", "", PUBLIC)


def direct_via(via, why):
    """Direct, but not between the public endpoints the relay handed out:
    *via* says where each peer settled (runner.Chat._endpoint_kind)."""
    return Cell("direct", why, via)


def failed(why):
    return Cell("failed", why, None)


# The peer probes the public endpoint the relay saw and the LAN endpoints the
# other side announced, and while punching also accepts a reply from the
# other side's public IP at another port (peer-reflexive). So a symmetric NAT
# is traversed when the other side's NAT admits the symmetric side's fresh
# port (open, full-cone, restricted); it has no birthday probing and no relay
# fallback for the rest.
def relayed(why):
    return Cell("relayed", why, PUBLIC)


SYMMETRIC_FILTERED = relayed(
    "symmetric mapping meets port-dependent filtering: the symmetric side's probes leave from"
    " a fresh random port the relay never saw, the other NAT admits only the port it sent to,"
    " and the symmetric NAT drops probes sent to the port the relay saw; so after 3 s the"
    " peers fall back to the relay (birthday probing would find a direct path: not yet"
    " implemented)")

EXPECTED = {pair: DIRECT for pair in itertools.combinations_with_replacement(SIDE_PROFILES, 2)}
SYMMETRIC_REFLEXIVE = direct_via(
    {"alice": "reflexive", "bob": "public"},
    "alice's NAT admits the symmetric side's probes from their fresh port, and alice answers"
    " that peer-reflexive port")
EXPECTED.update({
    ("open", "symmetric"): SYMMETRIC_REFLEXIVE,
    ("full-cone", "symmetric"): SYMMETRIC_REFLEXIVE,
    ("restricted", "symmetric"): SYMMETRIC_REFLEXIVE,
    ("port-restricted", "symmetric"): SYMMETRIC_FILTERED,
    ("symmetric", "symmetric"): SYMMETRIC_FILTERED,
    ("symmetric", "double"): SYMMETRIC_FILTERED,
    (SHARED_LAN, SHARED_LAN): direct_via(
        {"alice": "lan", "bob": "lan"},
        "over the announced LAN endpoints: the home router does not hairpin, so the public"
        " endpoints cannot reach each other"),
})

PAIRS = tuple(EXPECTED)


def pair_id(pair):
    return "%s--%s" % pair


# What each profile does to plain UDP (runner.probe_profile): RFC 4787's
# (mapping, filtering). Filtering is probed before mapping, so the unsolicited
# probes have already hit the NAT when the mapping is looked at.
EIM = "endpoint-independent"
BEHAVIOUR = {
    "open": (EIM, "endpoint-independent"),
    "full-cone": (EIM, "endpoint-independent"),
    "restricted": (EIM, "address-dependent"),
    "port-restricted": (EIM, "address-and-port-dependent"),
    "symmetric": ("address-and-port-dependent", "address-and-port-dependent"),
    "double": (EIM, "address-and-port-dependent"),
    # The known-hard case: the earlier unsolicited probes reached the box
    # itself and left UNREPLIED conntrack entries, so MASQUERADE had to pick
    # other ports for the host's own packets to those endpoints.
    "home-no-input-firewall": ("address-and-port-dependent", "address-and-port-dependent"),
}
