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
:class:`~peerpunch.effects.Send` effects whose ``via`` names the socket. The
session (:mod:`peerpunch.path`) decides when each runs.
"""

import logging
import math
import random

from . import protocol as P
from .effects import CloseSocket, Log, OpenSocket, Send
from .events import Notice, State
from .link import PING, PONG
from .secure import is_frame

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
    """The hard side's sockets, numbered 1..*count* (0 is the session's own)."""

    def __init__(self, count=SOCKETS):
        self.count = count
        self.open = set()
        self.kept = None       # the socket a probe landed on: the chat's from then on
        self.until = None      # when the sockets close if no probe has landed

    def start(self, target, probe, now):
        """Open the sockets and send *probe* (bytes) from each to *target*;
        they are kept until HOLD from *now*."""
        self.open = set(range(1, self.count + 1))
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


class BirthdayMixin:
    """The part of :class:`~peerpunch.session.PeerSession` that runs a :class:`Prober` or a
    :class:`Spray` while a chat looks for a direct path.

    Our mapping comes from the :class:`~peerpunch.relayclient.RelayClient`'s
    check at registration. The search starts
    with the punch and stops when a direct path is found, when the chat
    ends, or when its budget is spent; a relayed chat keeps it going, and a
    hit then moves the chat to the direct path ("now direct").
    """

    # -- the search

    def _start_birthday(self, now):
        """At the punch: our part of a birthday search, if one is needed.

        A repeated introduction of the same endpoint (the relay paired us
        anew) keeps the search that runs; one of another endpoint stops it,
        and starts a new one only SEARCH_AGAIN_AFTER the last began: no
        datagram from the relay can make us spray again and again."""
        target = (self.peer.username, self.peer.addr)
        searching = self._spray is not None or self._prober is not None
        if searching and target == self._search_target:
            return []
        out = self._stop_birthday()          # a search for an earlier pairing
        theirs, ours = self.peer.mapping, self.relay.mapping
        if theirs is None or ours is None or theirs == ours or not self._can_send(self.peer.addr):
            return out
        if now - self._search_started < SEARCH_AGAIN_AFTER:
            return out + [Log(logging.INFO, "no birthday search toward %s: one began %.1f s ago"
                              % (self.peer.endpoint, now - self._search_started))]
        self._search_target, self._search_started = target, now
        if ours == P.MAPPING_DEPENDENT:
            self._spray = Spray()
            self._birthday_timer.at(now + SPRAY_CHECK)
            return out + [Notice("your NAT is symmetric and %s's is not: searching for a direct"
                                 " path (%d extra sockets)" % (self.peer.username, self._spray.count))
                          ] + self._spray.start(self.peer.addr, PING, now)
        self._prober = Prober(self.peer.addr[0], now, rng=self._rng, near=self.peer.addr[1])
        self._birthday_timer.at(now)
        return out + [Notice("%s's NAT is symmetric: searching for a direct path (up to %d probes"
                             " to %s, %g s)" % (self.peer.username, len(self._prober.ports),
                                                self.peer.addr[0], len(self._prober.ports) / RATE))]

    def _late_birthday(self, now):
        """A repeated introduction: if our mapping or the peer's was not
        known at the punch (a check that outlasted MAPPING_WAIT) and both are
        now, the search this chat has not had yet starts."""
        if self._birthday_needed() and self._search_target != (self.peer.username, self.peer.addr) \
                and None not in (self.relay.mapping, self.peer.mapping):
            return self._start_birthday(now)
        return []

    def _birthday_needed(self):
        return self.peer is not None and (self.state is State.PUNCHING or self.peer.via_relay)

    def _timer_birthday(self, now):
        if self._prober is not None:
            if not self._birthday_needed():
                self._prober = None
                return []
            out = [Send(PING, addr) for addr in self._prober.due(now)]
            deadline = self._prober.next_deadline()
            if deadline is None:
                self._prober = None
            else:
                self._birthday_timer.at(deadline)
            return out
        if self._spray is not None and self._spray.kept is None:
            if not self._birthday_needed() or now >= self._spray.until:
                return self._spray.close()
            self._birthday_timer.at(min(now + SPRAY_CHECK, self._spray.until))
        return []

    def _stop_birthday(self):
        """The chat ended: close every extra socket."""
        self._prober = None
        self._birthday_timer.stop()
        spray, self._spray = self._spray, None
        return spray.close() if spray is not None else []

    def _via_datagram(self, data, addr, now, via):
        """A datagram on one of the Spray's sockets."""
        spray = self._spray
        if spray is None or via not in spray.open or self.peer is None or addr == self.relay.addr:
            self.stats["ignored_strangers"] += 1
            return []
        if via == spray.kept:
            return self._peer_datagram(data, addr, now, via)
        if not spray.searching(via) or addr != self.peer.candidates[0] or \
                not self._birthday_needed() or not (data in (PING, PONG) or is_frame(data)):
            self.stats["ignored_strangers"] += 1
            return []
        out = [Log(logging.INFO, "a probe from %s landed on extra socket %d after %.2f s"
                   % (self.peer.username, via, now - self._punch_started))]
        out += spray.keep(via)
        relayed = self.state is not State.PUNCHING
        out += self._peer_datagram(data, addr, now, via)
        if relayed and self.peer is not None and self.peer.via_relay:
            # answer with a probe of our own: a sealed one moves both sides
            secure = self.link is not None and self.link.secure and self.link.ready
            out.append(Send(self.link.seal(P.Ping()) if secure else PING, addr, via))
        return out


SPRAY_CHECK = 0.25     # how often the hard side checks whether its sockets are still needed
SEARCH_AGAIN_AFTER = HOLD  # a new search (another endpoint) no sooner than this after the last
