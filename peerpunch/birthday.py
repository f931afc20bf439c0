"""Birthday-paradox probing: a direct path through one symmetric NAT.

Theory of operation
-------------------
A symmetric NAT (address/port-dependent mapping, RFC 4787) gives each
destination a fresh public port, so the port the relay saw is of no use to
the peer, and if the peer's NAT filters by port (port-restricted, most home
routers) nothing the symmetric side sends gets in either. But the other,
"easy" side's NAT maps its socket to one public endpoint for every
destination, so:

* the hard side (our mapping ``dependent``, the peer's ``independent``)
  opens SOCKETS extra sockets and sends one datagram from each to the easy
  side's public endpoint: its NAT now holds SOCKETS mappings toward exactly
  that endpoint, on ports we cannot know;
* the easy side sends probes from its one socket to ports of the hard
  side's public IP, RATE per second, each port at most once: first the NEAR
  ports above the one the relay saw (where a NAT that allocates one after
  another put the new mappings), then random ones. A probe
  that lands on one of those mappings gets in (it comes from the endpoint
  the mapping was made for), the hard side answers from the socket that
  received it, and the answer gets through the easy side's NAT because the
  probe went out to that very port. Both sides now have a direct path.

With K open mappings among N candidate ports, n distinct probes miss all of
them with probability C(N-K, n) / C(N, n), about (1 - K/N)^n: for K=256 and
Linux's 64,512 ports, 600 probes (3 s) find one 91 % of the time, 1,000
(5 s) 98 %, 2,000 (10 s) 99.96 %. :func:`hit_probability` computes it.

Who takes which part is decided from the ``mapping`` both sides announce
through the relay (each measured its own with STUN against the relay's two
ports, :mod:`peerpunch.natcheck`); the relay passes it on only for a client
that proved its address, so the probes go only to an address that asked for
them. Two symmetric NATs would need both sides to open and to probe: the
chances multiply down to nothing useful, and such pairs are relayed.

Sans-I/O: :class:`Prober` says which addresses to probe when; :class:`Spray`
says which sockets to open and close, as :class:`~peerpunch.effects.OpenSocket`
and :class:`~peerpunch.effects.CloseSocket` effects and
:class:`~peerpunch.effects.Send` effects whose ``via`` names the socket.
:class:`Search` is the small machine a chat's :class:`~peerpunch.path.Path`
owns: which of the two runs, its timer, when it stops.
"""

import logging
import math
import random

from . import protocol as P
from .effects import CloseSocket, Log, OpenSocket, Send
from .events import Notice
from .link import PING, PONG
from .secure import is_frame
from .timers import Timer

PORT_FIRST, PORT_LAST = 1024, 65535   # where NATs pick ports (Linux: 1024-65535)
SOCKETS = 256          # the hard side's extra sockets
RATE = 200.0           # the easy side's probes per second
PROBES = 2000          # the easy side's budget: 10 s at RATE, 99.96 % with 256 mappings
BATCH = 10             # probes sent together (every BATCH / RATE = 50 ms)
NEAR = SOCKETS + 64    # first probes: the ports just above the one the relay saw
HOLD = PROBES / RATE + 5.0   # the hard side keeps its sockets this long at most
# (conntrack forgets an unanswered UDP mapping after 30 s: more than HOLD)


def hit_probability(mappings, probes, ports=PORT_LAST - PORT_FIRST + 1):
    """Chance that *probes* distinct random ports out of *ports* include at
    least one of *mappings* open ones."""
    if probes > ports - mappings:
        return 1.0
    log_miss = (math.lgamma(ports - mappings + 1) - math.lgamma(ports - mappings - probes + 1)
                - math.lgamma(ports + 1) + math.lgamma(ports - probes + 1))
    return 1.0 - math.exp(log_miss)


class Prober:
    """The easy side: *probes* distinct ports of *ip*, *rate* a second from
    *now* on, BATCH at a time.

    With *near* (the port the relay saw the other side at), the first NEAR
    probes go to the ports just above it, in order: a NAT that hands out
    ports one after another gave the other side's sockets exactly those, and
    for a NAT that draws them at random they are as good a guess as any.
    The rest are random."""

    def __init__(self, ip, now, *, rng=None, rate=RATE, probes=PROBES, batch=BATCH, near=None):
        rng = rng if rng is not None else random.Random()
        self.ip = ip
        first = []
        if near is not None:
            span = PORT_LAST - PORT_FIRST + 1
            first = [PORT_FIRST + (near - PORT_FIRST + k) % span
                     for k in range(1, min(NEAR, probes) + 1)]
        taken = set(first)
        rest = rng.sample(range(PORT_FIRST, PORT_LAST + 1), probes)   # more than enough
        self.ports = (first + [p for p in rest if p not in taken])[:probes]
        self.sent = 0
        self._start = now
        self._rate = rate
        self._batch = batch
        self._probed = set()

    @property
    def done(self):
        return self.sent >= len(self.ports)

    def due(self, now):
        """The addresses to probe now: every probe whose time has come, at
        most two batches (a stalled clock does not turn into a burst)."""
        want = min(len(self.ports), int((now - self._start) * self._rate) + 1)
        if want - self.sent > 2 * self._batch:      # late: send two batches, then go on
            self._start = now - (self.sent + 2 * self._batch - 1) / self._rate  # from here
            want = self.sent + 2 * self._batch
        ports = self.ports[self.sent:want]
        self.sent = max(self.sent, want)
        self._probed.update(ports)
        return [(self.ip, port) for port in ports]

    def next_deadline(self):
        """When the next batch is due, or None when all probes are out."""
        if self.done:
            return None
        return self._start + (self.sent + self._batch - 1) / self._rate

    def probed(self, addr):
        """True if we sent a probe to *addr*: an answer from there is the hit."""
        return addr[0] == self.ip and addr[1] in self._probed


class Spray:
    """The hard side's *count* sockets, numbered from 1 (0 is the session's
    own) but for the numbers in *taken* (other chats' kept sockets)."""

    def __init__(self, count=SOCKETS, taken=()):
        self.count = count
        self.numbers = [n for n in range(1, count + len(taken) + 1) if n not in taken][:count]
        self.open = set()
        self.kept = None       # the socket a probe landed on: the chat's from then on
        self.until = None      # when the sockets close if no probe has landed

    def start(self, target, probe, now):
        """Open the sockets and send *probe* (bytes) from each to *target*;
        they are kept until HOLD from *now*."""
        self.open = set(self.numbers)
        self.until = now + HOLD
        out = [OpenSocket(via) for via in sorted(self.open)]
        return out + [Send(probe, target, via) for via in sorted(self.open)]

    def searching(self, via):
        """True if *via* is one of our sockets and none has been kept yet."""
        return self.kept is None and via in self.open

    def keep(self, via):
        """A probe landed on *via*: close all the others."""
        self.kept = via
        others = sorted(self.open - {via})
        self.open = {via}
        return [CloseSocket(v) for v in others]

    def close(self):
        """Close every socket."""
        closing, self.open = sorted(self.open), set()
        return [CloseSocket(v) for v in closing]


class SearchHistory:
    """Toward whom, and when, the last search began: kept for the process,
    so that no datagram from the relay can make us spray again and again;
    and the extra sockets chats still use (``kept``), which no other
    search may open or close."""

    def __init__(self):
        self.target = None           # (name, addr)
        self.started = float("-inf")
        self.kept = set()


class Search:
    """Our part of one chat's birthday search: a :class:`Prober` or a
    :class:`Spray`, and its timer. *needed()* says whether the chat still
    wants a direct path (punching, handshaking, or relayed).

    It starts with the punch (:meth:`start`) when one side's NAT is symmetric
    and the other's is not, and stops when the handshake on a direct path is
    done (until then the peer may offer it on one of our sockets only), when the
    chat ends, or when its budget is spent; a relayed chat keeps it going,
    and a hit then moves the chat to the direct path ("now direct")."""

    def __init__(self, history, rng, needed):
        self.history = history
        self.prober = None           # we probe a symmetric peer's ports
        self.spray = None            # our NAT is the symmetric one
        self._rng = rng
        self._needed = needed
        self.timer = Timer(self._due)

    @property
    def running(self):
        return self.spray is not None or self.prober is not None

    def start(self, peer, ours, now, can_send):
        """At the punch toward *peer* (a path.Peer), our NAT's mapping
        *ours*: our part of a search, if one is needed. A repeated
        introduction of the same endpoint keeps the search that runs; one
        of another endpoint stops it, and starts a new one only
        SEARCH_AGAIN_AFTER the last began."""
        target = (peer.username, peer.addr)
        if self.running and target == self.history.target:
            return []
        out = self.stop()                    # a search for an earlier pairing
        theirs = peer.mapping
        if theirs is None or ours is None or theirs == ours or not can_send(peer.addr):
            return out
        if now - self.history.started < SEARCH_AGAIN_AFTER:
            return out + [Log(logging.INFO, "no birthday search toward %s: one began %.1f s ago"
                              % (peer.endpoint, now - self.history.started))]
        self.history.target, self.history.started = target, now
        if ours == P.MAPPING_DEPENDENT:
            self.spray = Spray(taken=self.history.kept)
            self.timer.at(now + SPRAY_CHECK)
            return out + [Notice("search_spray", name=peer.username, sockets=self.spray.count)
                          ] + self.spray.start(peer.addr, PING, now)
        self.prober = Prober(peer.addr[0], now, rng=self._rng, near=peer.addr[1])
        self.timer.at(now)
        probes = len(self.prober.ports)
        return out + [Notice("search_probe", name=peer.username, probes=probes, ip=peer.addr[0],
                             seconds=probes / RATE)]

    def late(self, peer, ours, now, can_send):
        """A repeated introduction: if our mapping or the peer's was not
        known at the punch and both are now, the search this chat has not
        had yet starts."""
        if self._needed() and self.history.target != (peer.username, peer.addr) \
                and None not in (ours, peer.mapping):
            return self.start(peer, ours, now, can_send)
        return []

    def _due(self, now):
        if self.prober is not None:
            if not self._needed():
                self.prober = None
                return []
            out = [Send(PING, addr) for addr in self.prober.due(now)]
            deadline = self.prober.next_deadline()
            if deadline is None:
                self.prober = None
            else:
                self.timer.at(deadline)
            return out
        if self.spray is not None and self.spray.kept is None:
            if not self._needed() or now >= self.spray.until:
                return self.spray.close()
            self.timer.at(min(now + SPRAY_CHECK, self.spray.until))
        return []

    def stop(self):
        """Close every extra socket."""
        self.prober = None
        self.timer.stop()
        spray, self.spray = self.spray, None
        if spray is None:
            return []
        self.history.kept.discard(spray.kept)
        return spray.close()

    def probed(self, addr):
        """True if our probes went to *addr*."""
        return self.prober is not None and self.prober.probed(addr)

    def owns(self, via):
        return self.spray is not None and via in self.spray.open

    def landed(self, data, addr, via, peer_addr):
        """A datagram from *addr* on our socket *via*: None if it is not for
        us, "kept" if on the socket a probe landed on earlier, "hit" (with
        the other sockets closed) if a probe from the peer lands now."""
        spray = self.spray
        if via == spray.kept:
            return "kept", []
        if not spray.searching(via) or addr != peer_addr or not self._needed() or \
                not (data in (PING, PONG) or is_frame(data)):
            return None, []
        self.history.kept.add(via)
        return "hit", spray.keep(via)


SPRAY_CHECK = 0.25     # how often the hard side checks whether its sockets are still needed
SEARCH_AGAIN_AFTER = HOLD  # a new search (another endpoint) no sooner than this after the last
