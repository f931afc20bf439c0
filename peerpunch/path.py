"""The path to the peer: punching, the relay fallback, roaming, keep-alive.

Theory of operation
-------------------
:class:`Peer` is the other side as the relay introduced it, with the
candidate addresses we probe. :class:`PathMixin` is the part of
:class:`~peerpunch.session.PeerSession` that decides where the peer's
datagrams come from and where ours go:

* punching: Ping every PUNCH_INTERVAL to every candidate; the first valid
  datagram from the peer picks the path (``_from_peer``); still punching
  after SLOW_AFTER is said once; nothing in punch_timeout fails the chat;
* address families (:mod:`peerpunch.families`): only candidates of a
  family our socket reaches are probed; with none, the chat fails at once
  saying so, or goes through the relay at once if it forwards;
* fallback: after FALLBACK_AFTER, when relay and peer offer relay1, probe
  through the relay too; the first answer that way makes the chat relayed,
  and plain probes go on on the direct path (DIRECT_RETRY, later
  DIRECT_RETRY_SLOW) until the direct path proves itself -- a Pong for a
  plain chat; for an encrypted one a Pong only earns a sealed Ping, and the
  sealed answer that authenticates moves it back;
* roaming: a sealed DATA frame from an unknown address may be our peer
  after its NAT moved it; once it authenticates the chat follows it, and a
  repeated introduction adds the peer's new endpoint to the candidates;
* keep-alive: Ping every interval, more often once the path is suspect,
  through the relay as well later, and end the chat after
  LOST_AFTER_INTERVALS of silence.

Replies go back the way the datagram they answer came; handshake frames go
to every address the peer was heard from. The mixin uses the session's
state, timers, link and helpers (``_to_peer``, ``_to_relay``,
``_end_chat``, ``_path_found`` ...) through ``self``.
"""

import logging

from . import families as F
from . import protocol as P
from .effects import Log, Send
from .events import (DIRECT_RETRY, DIRECT_RETRY_FAST_FOR, DIRECT_RETRY_SLOW,
                     FALLBACK_AFTER, LOST_AFTER_INTERVALS, MAX_HEARD, PUNCH_INTERVAL,
                     RELAY_PROBE_AFTER, SUSPECT_AFTER, ConnectionLost, Failed, Notice, State)
from .events import SLOW_AFTER, StillPunching
from .forwarder import RELAYED
from .link import PING, PONG
from .secure import DATA, is_frame

SEALED_DATA = bytes([DATA])
FAMILY_HINT = " (if this host has both, --bind [::]:0 gives this client a socket for both)"


class Peer:
    """The other side of the current chat, as the relay introduced it.

    While punching, ``candidates`` are where we probe: the public endpoint
    the relay saw and the LAN endpoints the peer announced (two peers behind
    one NAT that does not hairpin reach each other only there). A datagram
    from any candidate, or from the public IP at another port (a
    peer-reflexive endpoint: the peer's NAT gave the probe a new port), picks
    the path; from then on ``addr`` is the only address we listen to, and
    ``via`` the socket we use for it (0, or one a birthday search kept).
    """
    __slots__ = ("username", "addr", "endpoint", "features", "candidates", "secret", "via_relay",
                 "heard", "via", "mapping")

    def __init__(self, info):
        self.username = info.username
        self.endpoint = info.peer
        self.addr = P.parse_endpoint(info.peer)
        self.features = info.features or ()
        self.secret = bytes.fromhex(info.session) if info.session else b""
        self.via_relay = False       # the chat travels through the relay's fallback
        self.via = 0                 # our socket the direct path uses (birthday.Spray's, or 0)
        self.mapping = info.mapping  # what its NAT does, if the relay passed it on
        self.heard = []              # where valid datagrams came from before keys were agreed
        self.candidates = [self.addr]
        for text in info.local or ():
            addr = P.parse_endpoint(text)
            if addr not in self.candidates:
                self.candidates.append(addr)

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


class PathMixin:
    """Punching, the relay fallback, roaming and keep-alive for :class:`PeerSession`."""

    # -- starting the punch

    def _start_punch(self, msg, now):
        """Punch towards the peer the relay introduced in *msg*."""
        if not P.is_peer_endpoint(msg.peer, allow_loopback=self._relay_is_loopback()):
            self.stats["bad_introductions"] += 1
            return [Failed("the relay introduced %s at %s, which is not an address a peer can"
                           " have" % (msg.username, msg.peer))] + self._end_chat(now)
        self.peer = Peer(msg)
        self.relay.chat_began(self.peer.username, msg.session)
        self._add_loopback_alias()
        direct = any(map(self._can_send, self.peer.candidates))
        if not direct and not self._fallback_possible():
            self.stats["no_shared_family"] += 1
            return [Failed("cannot reach %s: %s%s" % (self.peer.username, self._family_mismatch(),
                                                      FAMILY_HINT))] + self._end_chat(now)
        self._enter(State.PUNCHING, now)
        self._punch_started = now
        search = self._start_birthday(now)
        self._probe_timer.at(now)
        self._punch_timeout_timer.at(now + self.punch_timeout)
        self._punch_slow_timer.at(now + SLOW_AFTER)
        if not direct:               # no family in common: only the relay can carry us
            self._relay_probing = True
            return [Notice("%s: trying through the relay at %s%s"
                           % (self._family_mismatch(), self.relay.endpoint, FAMILY_HINT))] + search
        if self._fallback_possible():
            self._fallback_timer.at(now + min(FALLBACK_AFTER, self.punch_timeout / 2))
        return [Notice("punching a hole to %s at %s ..." % (self.peer.username, self.peer.endpoint))
                ] + search

    def _can_send(self, addr):
        """True if our socket can send to *addr* (it is of a family we have)."""
        return F.family(addr) in self.families

    def _add_loopback_alias(self):
        """A dual-stack peer the loopback relay saw on the loopback of a
        family we lack is on this host, at the same port on ours too."""
        public = self.peer.addr
        if self._relay_is_loopback() and F.is_loopback(public) and \
                P.FEATURE_DUAL_STACK in self.peer.features and not self._can_send(public):
            self.peer.candidates.append(F.loopback_alias(public))

    def _family_mismatch(self):
        """Why none of the peer's candidates is one our socket can reach."""
        name = self.peer.username
        theirs = {F.family(a) for a in self.peer.candidates}
        return "%s is reachable only over %s and this client's socket is %s only" % (
            name, F.describe(theirs), F.describe(self.families))

    def _relay_is_loopback(self):
        return self.relay.is_loopback()

    def _reintroduced(self, msg, now):
        """A repeated introduction. During a chat whose path went quiet it
        carries the peer's endpoint as the relay sees it now (its NAT may
        have moved it): probe there too, with a sealed Ping if we can."""
        if self.state is not State.CONNECTED or msg.peer == self.peer.endpoint or \
                not P.is_peer_endpoint(msg.peer, allow_loopback=self._relay_is_loopback()):
            return []
        fresh = Peer(msg)
        first = self.peer.candidates[0]
        kept = [a for a in self.peer.candidates[1:1 + P.MAX_LOCAL_CANDIDATES] if a not in fresh.candidates]
        self.peer.candidates = [first] + fresh.candidates + kept
        self.peer.candidates = self.peer.candidates[:2 + 2 * P.MAX_LOCAL_CANDIDATES]
        if not self._can_send(fresh.addr):
            return []
        # offer a sealed Ping there; only an answer that authenticates moves the chat
        ping = self.link.seal(P.Ping()) if self.link.secure else PING
        return [Send(ping, fresh.addr)]

    # -- datagrams from the peer

    def _from_peer(self, data, addr, now):
        """A datagram from the peer: direct from *addr*, or relayed (addr None)."""
        out = []
        if self.state is State.PUNCHING:
            if not is_frame(data) and not _parses(data):
                self.stats["malformed"] += 1
                return []
            if addr is None:
                self.peer.via_relay = True   # the peer fell back first
            else:
                self.peer.settle(addr, self._rx_via)
            out += self._path_found(now)
            if self.link is None:            # refused
                return out
        elif addr is not None and self.peer.via_relay and data in (PING, PONG):
            return self._direct_probe(data, addr, now)
        elif addr is not None and addr != self.peer.addr and self.state is State.HANDSHAKING:
            if not is_frame(data):           # a probe from another of its addresses: answer,
                self.peer.hear(addr)         # offer the handshake there, but do not move
                return [Send(PONG, addr, self._rx_via)] if data == PING else []
        if self.link.secure and (data == PONG or (data == PING and self.link.ready)):
            # a punch probe, or the answer to one of ours, still on its way: harmless
            self.stats["late_probes"] += 1
            return out + [Log(logging.DEBUG, "ignored a late punch %s %s" % (
                "probe" if data == PING else "probe's answer",
                "from " + P.format_endpoint(addr) if addr else "through the relay"))]
        dropped = self.link.dropped
        frames, messages = self.link.receive(data, now)
        if self.link.dropped != dropped:
            self.stats["dropped"] += 1
            source = P.format_endpoint(addr) if addr else "the relay"
            return out + [Log(logging.DEBUG, "dropped a datagram from %s that did not authenticate"
                              % source)]
        was_suspect, self._suspect = self._suspect, False
        if addr is not None and addr != self.peer.addr and self.state is State.HANDSHAKING:
            self.peer.settle(addr, self._rx_via)   # a handshake frame that authenticated
        elif addr is not None and messages and (self.peer.via_relay or addr != self.peer.addr):
            out += self._now_direct(addr, now)     # it went direct first, or moved; it authenticated
        if addr is None and not self.peer.via_relay and self.state is State.CONNECTED and \
                now - self._last_direct > self.keepalive / 2:
            out += self._now_relayed(now)          # the direct path went quiet, the relay works
        self._last_heard = now
        if addr is not None:
            self._last_direct = now
            self._relay_probing = False
        self._inbound_relayed = addr is None
        out += [self._reply_bytes(f) for f in frames]
        if self.state is State.HANDSHAKING and self.link.ready:
            out += self._secured(now)
        self._schedule_link()
        for msg in messages:
            if self.link is None:            # the chat ended on an earlier message
                break
            handler = self._PEER_HANDLERS.get(type(msg))
            if handler is not None:
                out += handler(self, msg, now)
        if was_suspect:
            out += self._heard_again()
        return out

    def _heard_again(self):
        """The peer, silent long enough to be suspect, authenticated again:
        send the lines held meanwhile."""
        self._suspect = False
        if not self._queue or self.state is not State.CONNECTED or self._blocked:
            return []
        return [Notice("%s is heard again: sending %d held line(s)"
                       % (self.peer.username, len(self._queue)))] + self._flush_queue()

    def _direct_probe(self, data, addr, now):
        """Plain probes on the direct path while the chat is relayed (or the
        peer's still is): answer a Ping; a Pong proves the path both ways."""
        if data == PING:
            return [Send(PONG, addr, self._rx_via)]
        if addr not in self.peer.candidates and not self._probed(addr):
            return []             # a reflexive port must prove itself with a sealed frame
        if self.link.secure:      # a hint: ask there with a sealed Ping, move on its answer
            if not self.link.ready:
                return []         # nothing sealed yet: the handshake finishes via the relay
            return [Send(self.link.seal(P.Ping()), addr, self._rx_via)]
        return self._now_direct(addr, now)

    def _now_relayed(self, now):
        self.peer.via_relay = True
        self._direct_retry_timer.at(now + DIRECT_RETRY)
        return [Notice("the direct path to %s went quiet: going through the relay"
                       % self.peer.username)]

    def _may_roam(self, data):
        """A datagram from an unknown address may be our peer after its NAT
        mapping changed: worth authenticating if it is a sealed DATA frame
        (a forgery costs one replay-window check and one AEAD)."""
        return (self.link is not None and self.link.secure and self.link.ready
                and data[:1] == SEALED_DATA)

    def _now_direct(self, addr, now):
        moved = not self.peer.via_relay
        self.peer.settle(addr, self._rx_via)
        self.peer.via_relay = False
        self._direct_retry_timer.stop()
        self._last_heard = self._last_direct = now
        what = "%s moved to" if moved else "now direct with %s at"
        out = [Notice((what + " %s") % (self.peer.username, self.peer.endpoint))]
        return out + (self._heard_again() if self._suspect else [])

    # -- timers

    def _timer_punch_slow(self, now):
        """Punching for SLOW_AFTER: say that it goes on (once)."""
        if self.state is not State.PUNCHING:
            return []
        return [StillPunching(self.peer.username, now - self._punch_started)]

    def _timer_probe(self, now):
        self._probe_timer.at(now + PUNCH_INTERVAL)
        self.stats["probes"] += 1
        out = [Send(PING, addr) for addr in self.peer.candidates if self._can_send(addr)]
        if self._relay_probing:
            out.append(Send(bytes([RELAYED]) + PING, self.relay.addr))
        return out

    def _fallback_possible(self):
        return self.relay.forwards and P.FEATURE_RELAY in self.peer.features

    def _timer_fallback(self, now):
        """Punching has not worked yet: probe through the relay as well; the
        first answer that comes back that way makes the chat relayed. During
        a handshake that is not getting through, repeat it via the relay."""
        if self.state is State.HANDSHAKING and not self.peer.via_relay:
            self.peer.via_relay = True
            self._direct_retry_timer.at(now + DIRECT_RETRY)
            return [Notice("the handshake with %s is not getting through directly: trying"
                           " through the relay" % self.peer.username)]
        if self.state is not State.PUNCHING:
            return []
        self._relay_probing = True
        return [Notice("no direct path to %s yet: trying through the relay as well"
                       % self.peer.username)]

    def _timer_direct_retry(self, now):
        if self.peer is None or not self.peer.via_relay:
            return []
        fast = now - self._punch_started < DIRECT_RETRY_FAST_FOR
        self._direct_retry_timer.at(now + (DIRECT_RETRY if fast else DIRECT_RETRY_SLOW))
        ping = P.encode(P.Ping())
        return [Send(ping, addr, self.peer.via) for addr in self.peer.candidates
                if self._can_send(addr)]

    def _timer_punch_timeout(self, now):
        peer = self.peer
        reason = ("could not reach %s at %s: no answer to %d probes in %g s (%s)"
                  % (peer.username, peer.endpoint, self.stats["probes"], self.punch_timeout,
                     self._why_no_answer()))
        return [Failed(reason)] + self._end_chat(now)

    def _why_no_answer(self):
        """The likeliest reason a punch got no answer, true to what we know."""
        peer = self.peer
        if not self._can_send(peer.candidates[0]):
            tried = [P.format_endpoint(a) for a in peer.candidates if self._can_send(a)]
            return ("its endpoint is %s, which this client's %s socket cannot reach, and %s"
                    % (F.describe([F.family(peer.candidates[0])]), F.describe(self.families),
                       "%s did not answer" % ", ".join(tried) if tried else
                       "the relay did not carry our probes either"))
        ours = {F.family(self.relay.addr)} | {F.family(P.parse_endpoint(e)) for e in self.local or ()}
        theirs = set(F.BOTH) if P.FEATURE_DUAL_STACK in peer.features else \
            {F.family(a) for a in peer.candidates}
        if not ours & theirs:
            return ("%s has only %s addresses and knows this client only over %s: it may not be"
                    " able to answer" % (peer.username, F.describe(theirs), F.describe(ours)))
        return "the NATs in between block a direct path"

    def _timer_keepalive(self, now):
        """Ping every interval. Once more than SUSPECT_AFTER intervals have
        passed in silence the path is suspect: ping four times as often,
        re-register (our own NAT may have moved us; the relay's token keeps
        our name) and ask the relay to introduce us again (the peer's NAT may
        have moved it). After RELAY_PROBE_AFTER intervals ping through the
        relay too, if it forwards. Silence for LOST_AFTER_INTERVALS intervals
        ends the chat."""
        interval = self.keepalive
        silent = now - self._last_heard
        if silent >= LOST_AFTER_INTERVALS * interval:
            return [ConnectionLost(self.peer.username)] + self._end_chat(now)
        out = []
        suspect = silent >= SUSPECT_AFTER * interval
        if suspect and not self._suspect:
            self._suspect = True
            session = self.peer.secret.hex() if self.peer.secret else None
            out += self.relay.reintroduce(self.peer.username, session)
        if silent >= RELAY_PROBE_AFTER * interval and not self.peer.via_relay and \
                self._fallback_possible():
            self._relay_probing = True         # ping through the relay as well
        step = interval / 4 if suspect else interval
        send = now >= self._last_ping + step
        if send:
            self._last_ping = now
        nxt = self._last_ping + step
        if not suspect:                        # wake up to notice the silence in time
            nxt = min(nxt, self._last_heard + SUSPECT_AFTER * interval)
        self._keepalive_timer.at(min(nxt, self._last_heard + LOST_AFTER_INTERVALS * interval))
        if not send:
            return out
        out.append(self._to_peer(P.Ping()))
        if self._relay_probing and not self.peer.via_relay:   # its own copy: not a replay
            out.append(Send(bytes([RELAYED]) + self._to_peer(P.Ping()).data, self.relay.addr))
        return out

    # -- sending to the peer

    def _reply_bytes(self, data):
        """An answer goes back the way the datagram it answers came."""
        if self._inbound_relayed and not self.peer.via_relay:
            return Send(bytes([RELAYED]) + data, self.relay.addr)
        return self._peer_bytes(data)

    def _handshake_bytes(self, frames):
        """Handshake frames go to every address the peer was heard from
        (only an answer that authenticates picks the path), or the relay."""
        if self.peer.via_relay or len(self.peer.heard) < 2:
            return [self._peer_bytes(f) for f in frames]
        return [Send(f, addr, self.peer.via) for f in frames for addr in self.peer.heard]

    def _peer_bytes(self, data):
        """Send *data* to the peer on the current path."""
        if self.peer.via_relay:
            return Send(bytes([RELAYED]) + data, self.relay.addr)
        return Send(data, self.peer.addr, self.peer.via)

    def _probed(self, addr):
        """True if our birthday search sent a probe to *addr*."""
        return self._prober is not None and self._prober.probed(addr)


def _parses(data):
    try:
        P.decode(data)
    except P.RemoteProtocolError:
        return False
    return True
