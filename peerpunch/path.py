"""The path to one partner: punching, roaming, and the machines that keep it.

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
  through the relay too; a handshake that has not got through directly in
  HANDSHAKE_FALLBACK_AFTER moves to the relay. Direct or relayed, and the
  way back, is its :class:`~peerpunch.route.Route`'s business;
* roaming: a sealed DATA frame from an unknown address may be our peer
  after its NAT moved it; once it authenticates the chat follows it, and a
  repeated introduction adds the peer's new endpoint to the candidates;
* keep-alive, once connected: its :class:`~peerpunch.heartbeat.Heartbeat`
  says when to Ping, when the path is suspect (the relay is asked to
  introduce us again), and when it is lost (the chat ends).

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
from .events import (FALLBACK_AFTER, HANDSHAKE_FALLBACK_AFTER, PUNCH_INTERVAL, SLOW_AFTER,
                     ConnectionLost, Failed, Notice, State, StillPunching)
from .heartbeat import Heartbeat
from .link import PING, PONG
from .route import Route
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
        self.punch_timeout = punch_timeout
        self.stats = stats
        self.state = None
        self.peer = None
        self.started = 0.0           # when the punch began
        self.search = Search(history, rng, self._search_needed)
        self.route = Route(relay, keepalive, can_send=self.can_send, known=self.search.probed,
                           on_direct=self._heard_directly)
        self.heartbeat = Heartbeat(keepalive, suspected=self._suspected,
                                   silent_long=self._silent_long, lost=self._lost,
                                   ping=self._keepalive)
        self.probe = Timer(self._probe_due)
        self.give_up = Timer(self._give_up_due)
        self.slow = Timer(self._slow_due)
        self.fallback = Timer(self._fallback_due)

    def timers(self):
        return (self.probe, self.give_up, self.slow, self.fallback, self.route.direct_retry,
                self.heartbeat.timer, self.search.timer)

    @property
    def suspect(self):
        """The path went quiet; the relay was asked to introduce us again."""
        return self.heartbeat.suspect

    @property
    def last_heard(self):
        return self.heartbeat.last_heard

    def next_deadline(self):
        return earliest(self.timers())

    def tick(self, now):
        return fire(self.timers(), now)

    def _move(self, trigger, now):
        self.state = TRANSITIONS[(self.state, trigger)]
        self.route.stop_probing()
        self.heartbeat.stop()
        for timer in (self.probe, self.give_up, self.slow):
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
        self.route.start(self.peer, now)
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
            self.route.probe_relay()
            return [Notice("family_relayed", why=family_mismatch(self.peer, self.families),
                           relay=self.relay.endpoint)] + search
        if self.fallback_possible():
            self.fallback.at(now + min(FALLBACK_AFTER, self.punch_timeout / 2))
        return [Notice("punching", name=self.peer.username, endpoint=self.peer.endpoint)] + search

    def can_send(self, addr):
        """True if our socket can send to *addr* (it is of a family we have)."""
        return F.family(addr) in self.families

    def fallback_possible(self):
        return self.route.possible()

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
        fresh = self.peer.reintroduced(info)
        if not self.can_send(fresh):
            return out
        # offer a sealed Ping there; only an answer that authenticates moves the chat
        return out + [Send(link.seal(P.Ping()) if link.encrypted else PING, fresh)]

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
            self.route.punched_relayed()   # the peer fell back first
        else:
            self.peer.settle(origin.addr, origin.via)

    def found(self, now, secure):
        """The link is chosen: a handshake (*secure*) or the chat itself;
        what the user is told about the path."""
        notes = self.route.found(now)
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
        self.route.connected(now)
        self.heartbeat.start(now)

    def early(self, data, origin, link, now):
        """Datagrams the path answers itself, or None: plain probes on the
        direct path while relayed, and probes during the handshake from
        another of the peer's addresses, or on another of our sockets."""
        if origin.relayed:
            return None
        if self.peer.via_relay and data in (PING, PONG):
            return self.route.direct_probe(data, origin, link, now)
        elsewhere = (origin.addr, origin.via) != (self.peer.addr, self.peer.via)
        if elsewhere and self.state is State.HANDSHAKING and \
                not is_frame(data):      # answer, offer the handshake there, but do not move
            self.peer.hear(origin.addr)
            return [Send(PONG, origin.addr, origin.via)] if data == PING else []
        return None

    def heard(self, origin, authentic, now):
        """A datagram from the peer passed the link (*authentic*: it carried
        messages that authenticated): the peer is alive, and the route
        follows it where it proved to be."""
        addr = origin.addr
        self.heartbeat.heard(now)
        moved = (addr, origin.via) != (self.peer.addr, self.peer.via)
        if addr is not None and moved and self.state is State.HANDSHAKING:
            self.peer.settle(addr, origin.via)      # a handshake frame that authenticated
            authentic = False                       # it moves nothing else
        return self.route.heard(origin, authentic, now, self.state is State.CONNECTED)

    def _heard_directly(self, now):
        """The route moved to where the peer proved itself directly."""
        suspect = self.heartbeat.suspect
        self.heartbeat.heard(now)
        return [HeardAgain()] if suspect else []

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
        """Until the handshake is done: the peer may have settled on one of
        our extra sockets while we settled on our own, and offers its
        handshake there only."""
        return self.peer is not None and (self.state in (State.PUNCHING, State.HANDSHAKING)
                                          or self.peer.via_relay)

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
        if self.route.probing:
            out.append(self.send_relayed(PING))
        return out

    def _fallback_due(self, now):
        """Punching has not worked yet: probe through the relay as well; the
        first answer that comes back that way makes the chat relayed. During
        a handshake that is not getting through, repeat it via the relay."""
        if self.state is State.HANDSHAKING:
            return self.route.handshake_relayed(now)
        if self.state is not State.PUNCHING:
            return []
        self.route.probe_relay()
        return [Notice("fallback", name=self.peer.username)]

    def _give_up_due(self, now):
        peer = self.peer
        return [Failed("unreachable", name=peer.username, endpoint=peer.endpoint,
                       probes=self.stats["probes"], seconds=self.punch_timeout,
                       why=why_no_answer(peer, self.families, self.relay.addr, self.local)),
                EndChat()]

    # -- what the heartbeat asks for

    def _suspected(self):
        """Suspect: re-register (our own NAT may have moved us; the relay's
        token keeps our name) and ask the relay to introduce us again (the
        peer's NAT may have moved it)."""
        session = self.peer.secret.hex() if self.peer.secret else None
        return self.relay.reintroduce(self.peer.username, session)

    def _silent_long(self):
        if not self.route.relayed and self.fallback_possible():
            self.route.probe_relay()           # ping through the relay as well

    def _lost(self):
        return [ConnectionLost(self.peer.username), EndChat()]

    def _keepalive(self):
        return [KeepAlive(self.route.probing)]

    # -- sending to the peer

    def send(self, data):
        """Send *data* to the peer on the current path."""
        return self.route.send(data)

    def send_all(self, datas):
        return self.route.send_all(datas)

    def send_relayed(self, data):
        return self.route.send_relayed(data)

    def reply(self, data, origin):
        """An answer goes back the way the datagram it answers came."""
        return self.route.reply(data, origin)

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
