"""Direct or through the relay: one path's fallback, and its way back.

Theory of operation
-------------------
:class:`Route` says how the datagrams of one :class:`~peerpunch.path.Path`
reach the partner (:data:`TRANSITIONS`)::

    DIRECT --fallback--> PROBING --relayed--> RELAYED --direct--> DIRECT
    DIRECT --relayed--> RELAYED            PROBING --stop_probing--> DIRECT

* DIRECT: to the peer's address (``peer.via_relay`` False).
* PROBING: still direct, but the punch's probes and the keep-alive Pings
  go through the relay too: the path asks for it when punching has not
  worked for a while, when no address family is in common, or when the
  connected path has been silent a while (:meth:`Route.probe_relay`). The
  first answer through the relay makes it RELAYED; anything heard directly
  ends the probing.
* RELAYED: through the relay (``peer.via_relay`` True), naming our
  session's channel when the relay lets us hold several chats. Plain Pings
  go on on the direct path (every DIRECT_RETRY, after
  DIRECT_RETRY_FAST_FOR every DIRECT_RETRY_SLOW) until it proves itself: a
  Pong does for a plain chat; for an encrypted one a Pong only earns a
  sealed Ping, and the sealed answer that authenticates moves it back.
  A connected chat goes RELAYED when the peer is heard through the relay
  while the direct path has been quiet for half a keep-alive interval.

Replies go back the way the datagram they answer came. What it needs of
its path, as callables: ``can_send(addr)``, ``known(addr)`` (an address a
birthday search probed) and ``on_direct(now)`` -> effects (the peer proved
itself directly).
"""

import enum

from . import protocol as P
from .effects import Send
from .events import DIRECT_RETRY, DIRECT_RETRY_FAST_FOR, DIRECT_RETRY_SLOW, Notice
from .forwarder import RELAYED, RELAYED_TO
from .link import PING, PONG
from .timers import Timer

_new_tuple = tuple.__new__      # _new_tuple(Send, fields): a Send, without its Python-level __new__


class RouteState(enum.Enum):
    DIRECT = "direct"
    PROBING = "probing"            # direct, and probes and pings through the relay too
    RELAYED = "relayed"


_D, _P, _R = RouteState.DIRECT, RouteState.PROBING, RouteState.RELAYED
TRANSITIONS = {
    (None, "start"): _D, (_D, "start"): _D, (_P, "start"): _D, (_R, "start"): _D,
    (_D, "fallback"): _P, (_P, "fallback"): _P, (_R, "fallback"): _R,
    (_D, "relayed"): _R, (_P, "relayed"): _R, (_R, "relayed"): _R,
    (_D, "direct"): _D, (_P, "direct"): _D, (_R, "direct"): _D,
    (_D, "stop_probing"): _D, (_P, "stop_probing"): _D, (_R, "stop_probing"): _R,
}


class Route:
    """Direct or relayed, for the peer of one path, through *relay* (the
    RelayClient: its address, whether it forwards, whether it grants
    several chats)."""

    def __init__(self, relay, keepalive, *, can_send, known, on_direct):
        self.relay = relay
        self.keepalive = keepalive
        self.state = None
        self.peer = None
        self.started = 0.0
        self._last_direct = 0.0      # when the peer was last heard on the direct path
        self._can_send = can_send
        self._known = known
        self._on_direct = on_direct
        self.direct_retry = Timer(self._direct_retry_due)

    @property
    def probing(self):
        return self.state is _P

    @property
    def relayed(self):
        return self.state is _R

    def _move(self, trigger):
        self.state = TRANSITIONS[(self.state, trigger)]
        self.peer.via_relay = self.state is _R
        if self.state is not _R:
            self.direct_retry.stop()

    def possible(self):
        """True if relay and peer both offer the relay's fallback."""
        return self.relay.forwards and P.FEATURE_RELAY in self.peer.features

    # -- what the path tells it

    def start(self, peer, now):
        """A new punch to *peer*: direct."""
        self.peer = peer
        self.started = now
        self._move("start")

    def probe_relay(self):
        self._move("fallback")

    def stop_probing(self):
        self._move("stop_probing")

    def punched_relayed(self):
        """The first answer to the punch came through the relay."""
        self._move("relayed")

    def connected(self, now):
        self._last_direct = now

    def found(self, now):
        """The punch found a path: what the user is told if it is relayed."""
        if not self.relayed:
            return []
        if not any(map(self._can_send, self.peer.candidates)):
            return [Notice("relayed_only", relay=self.relay.endpoint)]
        self.direct_retry.at(now + DIRECT_RETRY)
        return [Notice("relayed_for_now", relay=self.relay.endpoint)]

    def handshake_relayed(self, now):
        """A handshake that is not getting through directly: via the relay."""
        if self.relayed:
            return []
        self._move("relayed")
        self.direct_retry.at(now + DIRECT_RETRY)
        return [Notice("handshake_relayed", name=self.peer.username)]

    def direct_probe(self, data, origin, link, now):
        """A plain Ping or Pong on the direct path while relayed: answer a
        Ping; a Pong proves the direct path both ways."""
        addr = origin.addr
        if data == PING:
            return [Send(PONG, addr, origin.via)]
        if addr not in self.peer.candidates and not self._known(addr):
            return []             # a reflexive port must prove itself with a sealed frame
        if link.encrypted:           # a hint: ask there with a sealed Ping, move on its answer
            if not link.ready:
                return []         # nothing sealed yet: the handshake finishes via the relay
            return [Send(link.seal(P.Ping()), addr, origin.via)]
        return self._now_direct(origin, now)

    def heard(self, origin, authentic, now, connected):
        """A datagram from the peer passed the link (*authentic*: it carried
        messages that authenticated): follow the peer where it proved to be."""
        addr = origin.addr
        if addr is None:
            quiet = now - self._last_direct > self.keepalive / 2
            if connected and not self.relayed and quiet:
                return self._now_relayed(now)      # the direct path went quiet, the relay works
            return []
        out = []
        if authentic and (self.relayed or addr != self.peer.addr):
            out = self._now_direct(origin, now)    # it went direct first, or moved
        self._last_direct = now
        self._move("stop_probing")
        return out

    def _now_relayed(self, now):
        self._move("relayed")
        self.direct_retry.at(now + DIRECT_RETRY)
        return [Notice("now_relayed", name=self.peer.username)]

    def _now_direct(self, origin, now):
        moved = not self.relayed
        self.peer.settle(origin.addr, origin.via)
        self._move("direct")
        self._last_direct = now
        out = [Notice("moved" if moved else "now_direct", name=self.peer.username,
                      endpoint=self.peer.endpoint)]
        return out + self._on_direct(now)

    def _direct_retry_due(self, now):
        if not self.relayed:
            return []
        fast = now - self.started < DIRECT_RETRY_FAST_FOR
        self.direct_retry.at(now + (DIRECT_RETRY if fast else DIRECT_RETRY_SLOW))
        ping = P.encode(P.Ping())
        return [Send(ping, addr, self.peer.via) for addr in self.peer.candidates
                if self._can_send(addr)]

    # -- sending to the peer

    def send(self, data):
        """Send *data* to the peer on the current path."""
        if self.relayed:
            return self.send_relayed(data)
        return Send(data, self.peer.addr, self.peer.via)

    def send_all(self, datas):
        """``send`` of each of *datas*: the path looked up once, the Sends
        made at C speed (a file transfer's burst is hundreds of them)."""
        if self.relayed:
            return [self.send_relayed(data) for data in datas]
        n = len(datas)
        fields = zip(datas, [self.peer.addr] * n, [self.peer.via] * n)
        return list(map(_new_tuple, [Send] * n, fields))

    def send_relayed(self, data):
        """*data* through the relay: naming our session's channel when the
        relay lets us hold several chats, else in the one-byte form."""
        if self.relay.several and self.peer.channel:
            return Send(bytes([RELAYED_TO]) + self.peer.channel + data, self.relay.addr)
        return Send(bytes([RELAYED]) + data, self.relay.addr)

    def reply(self, data, origin):
        """An answer goes back the way the datagram it answers came."""
        if origin.relayed and not self.relayed:
            return self.send_relayed(data)
        return self.send(data)
