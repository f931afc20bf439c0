"""The partner as the relay introduced it: where it may be, and why it cannot be reached.

Theory of operation
-------------------
:class:`Peer` holds the partner's candidate addresses: the public endpoint
the relay saw and the LAN endpoints it announced (two peers behind one NAT
that does not hairpin reach each other only there). A datagram from any
candidate, or from the public IP at another port (a peer-reflexive endpoint:
the partner's NAT gave our probe's answer a new port), picks the path; from
then on ``addr`` is the only address the chat listens to. :class:`Origin`
is where one datagram came from, handed along with it. The functions below
reason about address families (:mod:`peerpunch.families`): a loopback alias
for a dual-stack partner on this host, and the true reason a punch got no
answer, as data for the console to word.
"""

import collections

from . import families as F
from . import protocol as P
from .events import MAX_HEARD, Notice
from .forwarder import channel_id

Origin = collections.namedtuple("Origin", "addr via relayed")
Origin.__doc__ = """Where a datagram came from: *addr* (None if *relayed*: the relay
forwarded it), and *via*, our socket it arrived on (0: our own)."""
RELAYED_ORIGIN = Origin(None, 0, True)


class Peer:
    """The other side of a chat, as the relay introduced it.

    While punching, ``candidates`` are where we probe: the public endpoint
    the relay saw and the LAN endpoints the peer announced (two peers behind
    one NAT that does not hairpin reach each other only there). A datagram
    from any candidate, or from the public IP at another port (a
    peer-reflexive endpoint: the peer's NAT gave the probe a new port), picks
    the path; from then on ``addr`` is the only address we listen to, and
    ``via`` the socket we use for it (0, or one a birthday search kept).
    """
    __slots__ = ("username", "addr", "endpoint", "features", "candidates", "secret", "via_relay",
                 "heard", "via", "mapping", "channel")

    def __init__(self, info):
        self.username = info.username
        self.endpoint = info.peer
        self.addr = P.parse_endpoint(info.peer)
        self.features = info.features or ()
        self.secret = bytes.fromhex(info.session) if info.session else b""
        self.channel = channel_id(self.secret) if self.secret else None   # names it when relayed
        self.via_relay = False       # the chat travels through the relay's fallback
        self.via = 0                 # our socket the direct path uses (birthday.Spray's, or 0)
        self.mapping = info.mapping  # what its NAT does, if the relay passed it on
        self.heard = []              # where valid datagrams came from before keys were agreed
        self.candidates = [self.addr]
        for text in info.local or ():
            addr = P.parse_endpoint(text)
            if addr not in self.candidates:
                self.candidates.append(addr)

    def reintroduced(self, info):
        """A repeated introduction: its endpoints become candidates too,
        after the first one we had (bounded); its public address, returned."""
        fresh = Peer(info)
        first = self.candidates[0]
        kept = [a for a in self.candidates[1:1 + P.MAX_LOCAL_CANDIDATES]
                if a not in fresh.candidates]
        self.candidates = ([first] + fresh.candidates + kept)[:2 + 2 * P.MAX_LOCAL_CANDIDATES]
        return fresh.addr

    def may_be(self, addr):
        return addr in self.candidates or addr[0] == self.candidates[0][0]

    def settle(self, addr, via=0):
        self.addr = addr
        self.via = via
        self.endpoint = P.format_endpoint(addr)
        self.hear(addr)

    def hear(self, addr):
        if addr not in self.heard and len(self.heard) < MAX_HEARD:
            self.heard.append(addr)


def add_loopback_alias(peer, families, relay_is_loopback):
    """A dual-stack peer the loopback relay saw on the loopback of a family
    we lack is on this host, at the same port on ours too."""
    public = peer.addr
    if relay_is_loopback and F.is_loopback(public) and \
            P.FEATURE_DUAL_STACK in peer.features and F.family(public) not in families:
        peer.candidates.append(F.loopback_alias(public))


def family_mismatch(peer, families):
    """Why none of the peer's candidates is one our socket can reach."""
    theirs = {F.family(a) for a in peer.candidates}
    return Notice("family_mismatch", name=peer.username, theirs=F.describe(theirs),
                  ours=F.describe(families))


def why_no_answer(peer, families, relay_addr, local):
    """The likeliest reason a punch got no answer, true to what we know."""
    if F.family(peer.candidates[0]) not in families:
        tried = [P.format_endpoint(a) for a in peer.candidates if F.family(a) in families]
        theirs = F.describe([F.family(peer.candidates[0])])
        if not tried:
            return Notice("why_family_relay", theirs=theirs, ours=F.describe(families))
        return Notice("why_family", theirs=theirs, ours=F.describe(families),
                      tried=", ".join(tried))
    ours = {F.family(relay_addr)} | {F.family(P.parse_endpoint(e)) for e in local or ()}
    theirs = set(F.BOTH) if P.FEATURE_DUAL_STACK in peer.features else \
        {F.family(a) for a in peer.candidates}
    if not ours & theirs:
        return Notice("why_ours", name=peer.username, theirs=F.describe(theirs),
                      ours=F.describe(ours))
    return Notice("why_nats")
