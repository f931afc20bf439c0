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

Cell = collections.namedtuple("Cell", "path why via search", defaults=(False,))
Cell.__doc__ = """*via*: per peer, the kind of endpoint it settled on, or a tuple of
the kinds allowed. *search*: a birthday search finds the direct path, in
the first seconds or, after the relay fallback, a little later ("now
direct"): the runner waits up to SEARCH_WAIT for it."""
PUBLIC = {"alice": "public", "bob": "public"}
SEARCH_WAIT = 15.0     # the easy side probes for 10 s (peerpunch.birthday.PROBES / RATE)

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
# is traversed at once when the other side's NAT admits the symmetric side's
# fresh port (open, full-cone, restricted). Against port-dependent filtering
# a birthday search finds a port (peerpunch.birthday); two symmetric NATs are
# relayed. The symmetric side is reached at its public IP, on a port that is
# usually not the one the relay saw -- but may be, when the NAT happened to
# give one of the search's sockets that same port toward the other peer.
SYMMETRIC_SIDE = ("reflexive", "public")


def relayed(why):
    return Cell("relayed", why, PUBLIC)


EXPECTED = {pair: DIRECT for pair in itertools.combinations_with_replacement(SIDE_PROFILES, 2)}
SYMMETRIC_REFLEXIVE = direct_via(
    {"alice": SYMMETRIC_SIDE, "bob": "public"},
    "alice's NAT admits the symmetric side's probes from their fresh port, and alice answers"
    " that peer-reflexive port")
BIRTHDAY_WHY = (
    "symmetric mapping meets port-dependent filtering: the symmetric side opens 256 sockets"
    " toward the other's public endpoint, the other probes random ports of the symmetric side's"
    " IP (200/s) until one lands; if none has by the relay fallback (after 3 s; 2.5 s with the"
    " lab's --punch-timeout 5) the chat starts"
    " relayed and goes direct when one does")
EXPECTED.update({
    ("open", "symmetric"): SYMMETRIC_REFLEXIVE,
    ("full-cone", "symmetric"): SYMMETRIC_REFLEXIVE,
    ("restricted", "symmetric"): SYMMETRIC_REFLEXIVE,
    ("port-restricted", "symmetric"): Cell(
        "direct", BIRTHDAY_WHY, {"alice": SYMMETRIC_SIDE, "bob": "public"}, search=True),
    ("symmetric", "double"): Cell(
        "direct", BIRTHDAY_WHY, {"alice": "public", "bob": SYMMETRIC_SIDE}, search=True),
    ("symmetric", "symmetric"): relayed(
        "both mappings are symmetric: each side's probes leave from a fresh port the other never"
        " saw and are dropped, and a birthday search would need both sides to guess at once; so"
        " after 3 s the peers fall back to the relay"),
    (SHARED_LAN, SHARED_LAN): direct_via(
        {"alice": "lan", "bob": "lan"},
        "over the announced LAN endpoints: the home router does not hairpin, so the public"
        " endpoints cannot reach each other"),
})

PAIRS = tuple(EXPECTED)
BIRTHDAY_PAIRS = tuple(pair for pair, cell in EXPECTED.items() if cell.search)


def matches(cell, outcome):
    """True if a runner.PairOutcome is what *cell* expects."""
    if (outcome.path, outcome.problem) != (cell.path, None):
        return False
    if cell.via is None or outcome.via is None:
        return cell.via == outcome.via
    return outcome.via.keys() == cell.via.keys() and all(
        outcome.via[name] in (kind if isinstance(kind, tuple) else (kind,))
        for name, kind in cell.via.items())


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
