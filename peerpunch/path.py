"""The path to one partner: punching, the relay fallback, roaming, keep-alive.

Theory of operation
-------------------
:class:`Path` (one per partner) decides where the partner's datagrams
come from and where ours go, among the candidate addresses of its
:class:`~peerpunch.candidates.Peer`. Each datagram comes with its
:class:`~peerpunch.candidates.Origin` (address, our socket, whether the relay forwarded it),
passed as an argument, never left in an attribute. Its states
(:data:`TRANSITIONS`)::

    PUNCHING --found (plain link)--> CONNECTED
    PUNCHING --found (secure link)--> HANDSHAKING --secured--> CONNECTED
    PUNCHING, HANDSHAKING --introduced anew--> PUNCHING

* punching: Ping every PUNCH_INTERVAL to every candidate; the first valid
  datagram from the peer picks the path (:meth:`Path.punched`); still
  punching after SLOW_AFTER is said once; nothing in punch_timeout fails the
  chat. A birthday search (:class:`~peerpunch.birthday.Search`) runs beside
  it when one side's NAT is symmetric;
* address families (:mod:`peerpunch.families`): only candidates of a
  family our socket reaches are probed; with none, the chat fails at once
  saying so, or goes through the relay at once if it forwards;
* fallback: after FALLBACK_AFTER, when relay and peer offer relay1, probe
  through the relay too; the first answer that way makes the chat relayed,
  and plain probes go on on the direct path (DIRECT_RETRY, later
  DIRECT_RETRY_SLOW) until the direct path proves itself -- a Pong for a
  plain chat; for an encrypted one a Pong only earns a sealed Ping, and the
  sealed answer that authenticates moves it back. A handshake that has not
  got through directly in HANDSHAKE_FALLBACK_AFTER moves to the relay;
* roaming: a sealed DATA frame from an unknown address may be our peer
  after its NAT moved it; once it authenticates the chat follows it, and a
  repeated introduction adds the peer's new endpoint to the candidates;
* keep-alive: Ping every interval, more often once the path is suspect,
  through the relay as well later, and end the chat after
  LOST_AFTER_INTERVALS of silence.

Replies go back the way the datagram they answer came; handshake frames go
to every address the peer was heard from. What a datagram says, and
whether it authenticates, is the link's business (its owner,
:class:`~peerpunch.chat.Chat`, asks the link and tells the path).
:class:`EndChat` in what a method returns means the chat is over.
"""

import collections
import logging

from . import families as F
from . import protocol as P
from .birthday import Search
from .candidates import (RELAYED_ORIGIN, Origin, Peer,  # noqa: F401 -- re-exported
                         add_loopback_alias, family_mismatch, why_no_answer)
from .effects import Log, Send
from .events import (DIRECT_RETRY, DIRECT_RETRY_FAST_FOR, DIRECT_RETRY_SLOW, FALLBACK_AFTER,
                     HANDSHAKE_FALLBACK_AFTER, LOST_AFTER_INTERVALS, PUNCH_INTERVAL,
                     RELAY_PROBE_AFTER, SLOW_AFTER, SUSPECT_AFTER, ConnectionLost, Failed,
                     Notice, State, StillPunching)
from .forwarder import RELAYED, RELAYED_TO
from .link import PING, PONG
from .secure import DATA, is_frame
from .timers import Timer, earliest, fire

SEALED_DATA = bytes([DATA])

EndChat = collections.namedtuple("EndChat", "partner", defaults=(None,))
EndChat.__doc__ = "The chat with *partner* is over (for the chat's owners; never shown)."
PathFound = collections.namedtuple("PathFound", "partner")
PathFound.__doc__ = """The punch to *partner* found a path: no more Connects for it (for
the router; never shown)."""
HeardAgain = collections.namedtuple("HeardAgain", "")
HeardAgain.__doc__ = "The peer, silent long enough to be suspect, proved itself again."

KeepAlive = collections.namedtuple("KeepAlive", "also_relayed")
KeepAlive.__doc__ = """Time for a keep-alive Ping (the chat seals it); *also_relayed*: a
copy of its own through the relay too (never shown)."""

TRANSITIONS = {
    (None, "punch"): State.PUNCHING,
    (State.PUNCHING, "punch"): State.PUNCHING,
    (State.HANDSHAKING, "punch"): State.PUNCHING,
    (State.CONNECTED, "punch"): State.PUNCHING,
    (State.PUNCHING, "found_plain"): State.CONNECTED,
    (State.PUNCHING, "found_secure"): State.HANDSHAKING,
    (State.HANDSHAKING, "secured"): State.CONNECTED,
}


class Path:
    """The path to one partner; ``peer`` once :meth:`start` accepted it."""

    def __init__(self, *, relay, families, local, keepalive, punch_timeout, rng, stats, history):
        self.relay = relay           # the RelayClient: its address, whether it forwards
        self.families = families
        self.local = local
        self.keepalive = keepalive
        self.punch_timeout = punch_timeout
        self.stats = stats
        self.state = None
        self.peer = None
        self.started = 0.0           # when the punch began
        self.suspect = False         # the path went quiet; the relay was asked again
        self.last_heard = 0.0
        self._relay_probing = False  # probes and pings go through the relay's fallback too
        self._last_direct = 0.0      # when the peer was last heard on the direct path
        self._last_ping = 0.0
        self.search = Search(history, rng, self._search_needed)
        self.probe = Timer(self._probe_due)
        self.give_up = Timer(self._give_up_due)
        self.slow = Timer(self._slow_due)
        self.fallback = Timer(self._fallback_due)
        self.direct_retry = Timer(self._direct_retry_due)
        self.keepalive_timer = Timer(self._keepalive_due)

    def timers(self):
        return (self.probe, self.give_up, self.slow, self.fallback, self.direct_retry,
                self.keepalive_timer, self.search.timer)

    def next_deadline(self):
        return earliest(self.timers())

    def tick(self, now):
        return fire(self.timers(), now)

    def _move(self, trigger, now):
        self.state = TRANSITIONS[(self.state, trigger)]
        self._relay_probing = False
        for timer in (self.probe, self.give_up, self.keepalive_timer, self.slow):
            timer.stop()
        if self.state is not State.HANDSHAKING:
            self.fallback.stop()

    def close(self):
        """The chat ended: every timer stops, every extra socket closes."""
        for timer in self.timers():
            timer.stop()
        return self.search.stop()

    # -- starting the punch

    def start(self, info, now):
        """Punch towards the peer the relay introduced in *info*."""
        if not P.is_peer_endpoint(info.peer, allow_loopback=self.relay.is_loopback()):
            self.stats["bad_introductions"] += 1
            return [Failed("bad_introduction", name=info.username, endpoint=info.peer), EndChat()]
        self.peer = Peer(info)
        add_loopback_alias(self.peer, self.families, self.relay.is_loopback())
        direct = any(map(self.can_send, self.peer.candidates))
        if not direct and not self.fallback_possible():
            self.stats["no_shared_family"] += 1
            why = family_mismatch(self.peer, self.families)
            return [Failed("no_family", name=self.peer.username, why=why), EndChat()]
        self._move("punch", now)
        self.started = now
        search = self.search.start(self.peer, self.relay.mapping, now, self.can_send)
        self.probe.at(now)
        self.give_up.at(now + self.punch_timeout)
        self.slow.at(now + SLOW_AFTER)
        if not direct:               # no family in common: only the relay can carry us
            self._relay_probing = True
            return [Notice("family_relayed", why=family_mismatch(self.peer, self.families),
                           relay=self.relay.endpoint)] + search
        if self.fallback_possible():
            self.fallback.at(now + min(FALLBACK_AFTER, self.punch_timeout / 2))
        return [Notice("punching", name=self.peer.username, endpoint=self.peer.endpoint)] + search

    def can_send(self, addr):
        """True if our socket can send to *addr* (it is of a family we have)."""
        return F.family(addr) in self.families

    def fallback_possible(self):
        return self.relay.forwards and P.FEATURE_RELAY in self.peer.features

    def reintroduced(self, info, now, link):
        """A repeated introduction during the chat: the peer's mapping if it
        was missing (a search may start now) and, once connected, its
        endpoint as the relay sees it now (its NAT may have moved it): probe
        there too, with a sealed Ping if *link* can seal."""
        if info.mapping and self.peer.mapping is None:
            self.peer.mapping = info.mapping
        out = self.search.late(self.peer, self.relay.mapping, now, self.can_send)
        if self.state is not State.CONNECTED or info.peer == self.peer.endpoint or \
                not P.is_peer_endpoint(info.peer, allow_loopback=self.relay.is_loopback()):
            return out
        fresh = Peer(info)
        first = self.peer.candidates[0]
        kept = [a for a in self.peer.candidates[1:1 + P.MAX_LOCAL_CANDIDATES]
                if a not in fresh.candidates]
        self.peer.candidates = ([first] + fresh.candidates + kept)[:2 + 2 * P.MAX_LOCAL_CANDIDATES]
        if not self.can_send(fresh.addr):
            return out
        # offer a sealed Ping there; only an answer that authenticates moves the chat
        return out + [Send(link.seal(P.Ping()) if link.encrypted else PING, fresh.addr)]

    # -- which datagrams are ours

    def accepts(self, addr, data, link):
        """True if a datagram from *addr* is worth handing to this chat."""
        if addr == self.peer.addr:
            return True
        searching = self.state in (State.PUNCHING, State.HANDSHAKING) or self.peer.via_relay
        return (searching and self.peer.may_be(addr)) or _may_roam(data, link)

    def punched(self, origin):
        """The first valid datagram while punching: it picks the path."""
        if origin.relayed:
            self.peer.via_relay = True   # the peer fell back first
        else:
            self.peer.settle(origin.addr, origin.via)

    def found(self, now, secure):
        """The link is chosen: a handshake (*secure*) or the chat itself;
        what the user is told about the path."""
        notes = []
        if self.peer.via_relay and not any(map(self.can_send, self.peer.candidates)):
            notes.append(Notice("relayed_only", relay=self.relay.endpoint))
        elif self.peer.via_relay:
            self.direct_retry.at(now + DIRECT_RETRY)
            notes.append(Notice("relayed_for_now", relay=self.relay.endpoint))
        if not secure:
            self._connected(now, "found_plain")
            return notes
        self._move("found_secure", now)
        if not self.peer.via_relay and self.fallback_possible():
            # a handshake that has not got through directly by then moves to the relay
            self.fallback.at(now + HANDSHAKE_FALLBACK_AFTER)
        return notes

    def secured(self, now):
        self._connected(now, "secured")

    def _connected(self, now, trigger):
        self._move(trigger, now)
        self._last_direct = self._last_ping = now
        self.keepalive_timer.at(now + self.keepalive)

    def early(self, data, origin, link, now):
        """Datagrams the path answers itself, or None: plain probes on the
        direct path while relayed, and probes from another of the peer's
        addresses during the handshake."""
        if origin.relayed:
            return None
        if self.peer.via_relay and data in (PING, PONG):
            return self._direct_probe(data, origin, link, now)
        if origin.addr != self.peer.addr and self.state is State.HANDSHAKING and \
                not is_frame(data):      # answer, offer the handshake there, but do not move
            self.peer.hear(origin.addr)
            return [Send(PONG, origin.addr, origin.via)] if data == PING else []
        return None

    def _direct_probe(self, data, origin, link, now):
        """Answer a Ping; a Pong proves the direct path both ways."""
        addr = origin.addr
        if data == PING:
            return [Send(PONG, addr, origin.via)]
        if addr not in self.peer.candidates and not self.search.probed(addr):
            return []             # a reflexive port must prove itself with a sealed frame
        if link.encrypted:           # a hint: ask there with a sealed Ping, move on its answer
            if not link.ready:
                return []         # nothing sealed yet: the handshake finishes via the relay
            return [Send(link.seal(P.Ping()), addr, origin.via)]
        return self._now_direct(origin, now)

    def heard(self, origin, authentic, now):
        """A datagram from the peer passed the link (*authentic*: it carried
        messages that authenticated): follow the peer where it proved to be."""
        addr = origin.addr
        out = []
        self.suspect = False
        if addr is not None and addr != self.peer.addr and self.state is State.HANDSHAKING:
            self.peer.settle(addr, origin.via)      # a handshake frame that authenticated
        elif addr is not None and authentic and (self.peer.via_relay or addr != self.peer.addr):
            out += self._now_direct(origin, now)   # it went direct first, or moved
        if addr is None and not self.peer.via_relay and self.state is State.CONNECTED and \
                now - self._last_direct > self.keepalive / 2:
            out += self._now_relayed(now)          # the direct path went quiet, the relay works
        self.last_heard = now
        if addr is not None:
            self._last_direct = now
            self._relay_probing = False
        return out

    def _now_relayed(self, now):
        self.peer.via_relay = True
        self.direct_retry.at(now + DIRECT_RETRY)
        return [Notice("now_relayed", name=self.peer.username)]

    def _now_direct(self, origin, now):
        moved = not self.peer.via_relay
        self.peer.settle(origin.addr, origin.via)
        self.peer.via_relay = False
        self.direct_retry.stop()
        self.last_heard = self._last_direct = now
        out = [Notice("moved" if moved else "now_direct", name=self.peer.username,
                      endpoint=self.peer.endpoint)]
        return out + ([HeardAgain()] if self.suspect else [])

    # -- the birthday search's sockets

    def spray_received(self, data, addr, via, now):
        """A datagram on one of our extra sockets: (verdict, effects), verdict
        None (not ours: counted), "kept" or "hit" (see Search.landed)."""
        search = self.search
        if not search.owns(via) or addr == self.relay.addr:
            self.stats["ignored_strangers"] += 1
            return None, []
        verdict, out = search.landed(data, addr, via, self.peer.candidates[0])
        if verdict is None:
            self.stats["ignored_strangers"] += 1
        elif verdict == "hit":
            out = [Log(logging.INFO, "a probe from %s landed on extra socket %d after %.2f s"
                       % (self.peer.username, via, now - self.started))] + out
        return verdict, out

    def _search_needed(self):
        return self.peer is not None and (self.state is State.PUNCHING or self.peer.via_relay)

    # -- timers

    def _slow_due(self, now):
        """Punching for SLOW_AFTER: say that it goes on (once)."""
        if self.state is not State.PUNCHING:
            return []
        return [StillPunching(self.peer.username, now - self.started)]

    def _probe_due(self, now):
        self.probe.at(now + PUNCH_INTERVAL)
        self.stats["probes"] += 1
        out = [Send(PING, addr) for addr in self.peer.candidates if self.can_send(addr)]
        if self._relay_probing:
            out.append(self.send_relayed(PING))
        return out

    def _fallback_due(self, now):
        """Punching has not worked yet: probe through the relay as well; the
        first answer that comes back that way makes the chat relayed. During
        a handshake that is not getting through, repeat it via the relay."""
        if self.state is State.HANDSHAKING and not self.peer.via_relay:
            self.peer.via_relay = True
            self.direct_retry.at(now + DIRECT_RETRY)
            return [Notice("handshake_relayed", name=self.peer.username)]
        if self.state is not State.PUNCHING:
            return []
        self._relay_probing = True
        return [Notice("fallback", name=self.peer.username)]

    def _direct_retry_due(self, now):
        if not self.peer.via_relay:
            return []
        fast = now - self.started < DIRECT_RETRY_FAST_FOR
        self.direct_retry.at(now + (DIRECT_RETRY if fast else DIRECT_RETRY_SLOW))
        ping = P.encode(P.Ping())
        return [Send(ping, addr, self.peer.via) for addr in self.peer.candidates
                if self.can_send(addr)]

    def _give_up_due(self, now):
        peer = self.peer
        return [Failed("unreachable", name=peer.username, endpoint=peer.endpoint,
                       probes=self.stats["probes"], seconds=self.punch_timeout,
                       why=why_no_answer(peer, self.families, self.relay.addr, self.local)),
                EndChat()]

    def _keepalive_due(self, now):
        """Ping every interval. Once more than SUSPECT_AFTER intervals have
        passed in silence the path is suspect: ping four times as often,
        re-register (our own NAT may have moved us; the relay's token keeps
        our name) and ask the relay to introduce us again (the peer's NAT may
        have moved it). After RELAY_PROBE_AFTER intervals ping through the
        relay too, if it forwards. Silence for LOST_AFTER_INTERVALS intervals
        ends the chat. The Ping itself is the chat's to seal: KeepAlive."""
        interval = self.keepalive
        silent = now - self.last_heard
        if silent >= LOST_AFTER_INTERVALS * interval:
            return [ConnectionLost(self.peer.username), EndChat()]
        out = self._quiet(silent, interval)
        step = interval / 4 if self.suspect else interval
        send = now >= self._last_ping + step
        if send:
            self._last_ping = now
        nxt = self._last_ping + step
        if not self.suspect:                   # wake up to notice the silence in time
            nxt = min(nxt, self.last_heard + SUSPECT_AFTER * interval)
        self.keepalive_timer.at(min(nxt, self.last_heard + LOST_AFTER_INTERVALS * interval))
        if send:
            out.append(KeepAlive(self._relay_probing and not self.peer.via_relay))
        return out

    def _quiet(self, silent, interval):
        """The path has been *silent* so long: suspect it (ask the relay to
        introduce us again) and later ping through the relay as well."""
        out = []
        if silent >= SUSPECT_AFTER * interval and not self.suspect:
            self.suspect = True
            session = self.peer.secret.hex() if self.peer.secret else None
            out += self.relay.reintroduce(self.peer.username, session)
        if silent >= RELAY_PROBE_AFTER * interval and not self.peer.via_relay and \
                self.fallback_possible():
            self._relay_probing = True         # ping through the relay as well
        return out

    # -- sending to the peer

    def send(self, data):
        """Send *data* to the peer on the current path."""
        if self.peer.via_relay:
            return self.send_relayed(data)
        return Send(data, self.peer.addr, self.peer.via)

    def send_relayed(self, data):
        """*data* through the relay: naming our session's channel when the
        relay lets us hold several chats, else in the one-byte form."""
        if self.relay.several and self.peer.channel:
            return Send(bytes([RELAYED_TO]) + self.peer.channel + data, self.relay.addr)
        return Send(bytes([RELAYED]) + data, self.relay.addr)

    def reply(self, data, origin):
        """An answer goes back the way the datagram it answers came."""
        if origin.relayed and not self.peer.via_relay:
            return self.send_relayed(data)
        return self.send(data)

    def handshake_sends(self, frames):
        """Handshake frames go to every address the peer was heard from
        (only an answer that authenticates picks the path), or the relay."""
        if self.peer.via_relay or len(self.peer.heard) < 2:
            return [self.send(f) for f in frames]
        return [Send(f, addr, self.peer.via) for f in frames for addr in self.peer.heard]


def _may_roam(data, link):
    """A datagram from an unknown address may be our peer after its NAT
    mapping changed: worth authenticating if it is a sealed DATA frame (a
    forgery costs one replay-window check and one AEAD)."""
    return link is not None and link.encrypted and link.ready and data[:1] == SEALED_DATA
