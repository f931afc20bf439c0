"""The peer's protocol logic, without sockets, threads or clocks.

Theory of operation
-------------------
:class:`PeerSession` is one user's state machine. Its shell feeds it what
happens -- ``datagram_received(data, addr, now)``, ``handle_line(text, now)``,
``tick(now)`` -- and carries out the list of effects each call returns:
:class:`~peerpunch.effects.Send` datagrams, :class:`~peerpunch.effects.Log`
lines and the events of :mod:`peerpunch.events`. ``next_deadline()`` says when ``tick``
is next due. Addresses are canonical ``(ip, port)`` pairs
(:func:`peerpunch.protocol.canonical_addr`); the shell converts.

States and what moves between them::

    REGISTERING --RegisterAck--> IDLE            (no ack in 10 s: Closed(1))
    IDLE --/connect--> REQUESTING --PeerInfo--> PUNCHING
    IDLE --PeerInfo (someone asked for us)--> PUNCHING
    REQUESTING --TargetBusy | Error | no answer--> IDLE
    REQUESTING --TargetNotFound--> WAITING --Online from the relay--> REQUESTING
        (a watch kept by the relay; with a relay that keeps none, a Connect
        every WAIT_RETRY; /leave: IDLE)
    WAITING, REQUESTING --PeerInfo (the target, or someone first)--> PUNCHING
    PUNCHING --any valid datagram from the peer--> HANDSHAKING --keys--> CONNECTED
        (straight to CONNECTED with a peer that cannot encrypt)
    PUNCHING --nothing from the peer in FALLBACK_AFTER--> the same, relayed
        (when relay and peer offer relay1; direct probes go on, and the
        direct path takes over once it proves itself -- a Pong for a plain
        chat, a sealed frame that authenticates for an encrypted one: "now
        direct")
    PUNCHING --nothing from the peer in punch_timeout, no fallback--> IDLE
    CONNECTED --Goodbye | silence for 3 keep-alives | /leave--> IDLE
    any --/quit--> CLOSED

Everything is retried, because it is all UDP: Register with backoff until
acknowledged and then every REREGISTER_INTERVAL to keep the relay's NAT
mapping and our registration alive; Connect until PeerInfo arrives, and
again while punching so the relay repeats the introduction to a peer whose
PeerInfo was lost; probes every PUNCH_INTERVAL until the peer answers;
Goodbye in several copies. Lines typed before the chat is up, or while its
path is suspect (the peer unheard for SUSPECT_AFTER keep-alive intervals),
are queued and sent when it is up (or heard again); lines that cannot be
sent are reported, never dropped in silence. Only the relay and the current
peer are listened to, and the relay only in what carries our nonce once it
has shown it (:class:`~peerpunch.registration.RelayAuth`).

Where things live. :class:`PeerSession` is the router: it owns one
:class:`~peerpunch.relayclient.RelayClient` (registration; its
:class:`~peerpunch.request.Request`, :class:`~peerpunch.liveness.Liveness`
and :class:`~peerpunch.mapping.MappingCheck`) and a table partner ->
:class:`~peerpunch.chat.Chat` (one partner's :class:`~peerpunch.path.Path`
with its birthday :class:`~peerpunch.birthday.Search`, its
:class:`~peerpunch.securing.Secure` and its queued lines), hands each
datagram to the machine it is for with its
:class:`~peerpunch.candidates.Origin`, and acts on the data events they
hand back (Introduction, RequestEnded, PathFound, EndChat). Its own state is only
what it composes from theirs (``state``, the current chat's). The table
holds as many chats as the relay lets us (``RelayClient.max_chats``, from
its RegisterAck; 1 until it says more): plain lines go to the current chat
(one we asked for, or /switch; never switched to a chat we did not open
without a word: :func:`peerpunch.commands.ended`), /msg NAME to one chat,
and the commands live in :mod:`peerpunch.commands`. :mod:`peerpunch.events` holds the
constants, states and events, re-exported here.
"""

import collections
import logging
import os
import random

from . import commands
from . import families as F
from . import protocol as P
from .birthday import SearchHistory
from .chat import Chat
from .delivery import refused
from .effects import Log, Send  # noqa: F401 -- Send re-exported
from .events import (  # noqa: F401 -- re-exported: callers import them from here
    CONNECT_RETRY, CONNECT_TIMEOUT, DIRECT_RETRY, DIRECT_RETRY_FAST_FOR, DIRECT_RETRY_SLOW,
    FALLBACK_AFTER, GOODBYE_COPIES, IN_CHAT, KEEPALIVE, LOST_AFTER_INTERVALS, MAX_HEARD,
    MAX_HELD, MAX_QUEUED, NUDGE_EVERY, PUNCH_INTERVAL, PUNCH_TIMEOUT, REGISTER_RTO,
    REGISTER_RTO_MAX, REGISTER_TIMEOUT, RELAY_PROBE_AFTER, REREGISTER_INTERVAL, REREGISTER_RETRY,
    SUSPECT_AFTER, Alert, ChatMessage, Closed, ConnectionLost, Connected, Failed, Notice,
    PeerLeft, PinKey, Registered, State, StoppedWaiting)
from .events import FORMER_PEER_FOR
from .forwarder import CHANNEL_BYTES, RELAYED_TO, is_relay_frame
from .path import (RELAYED_ORIGIN, SEALED_DATA, EndChat, Origin, Path, PathFound,  # noqa: F401
                   Peer)
from .registration import RelayAuth  # noqa: F401 -- re-exported
from .relayclient import (WANT_CHATS, Introduction, RelayClient, RelayState, RequestEnded,
                          RequestState)
from .securing import Pins
from .timers import earliest, fire


class PeerSession:
    """One user's client: the relay client, the chats, the commands."""

    def __init__(self, username, relay_addr, *, target=None, local=(), keepalive=KEEPALIVE,
                 punch_timeout=PUNCH_TIMEOUT, register_timeout=REGISTER_TIMEOUT,
                 identity=None, backend=None, known_keys=None, strict=False,
                 require_encryption=False, rng=None, families=None, random_bytes=os.urandom,
                 max_chats=WANT_CHATS):
        """*target*: a name to ask the relay for once registered (else wait).
        *local*: our LAN endpoints, announced to the relay as candidates.
        *identity* (``.private``, ``.public``) and a crypto *backend* enable
        the secure channel with peers that offer it; *known_keys* maps names
        to pinned public keys; *strict* refuses peers with no pinned key;
        *require_encryption* refuses peers that cannot encrypt; *rng* (a
        ``random.Random``) picks the ports a birthday search probes;
        *random_bytes* (n -> n bytes; os.urandom) our nonce for the relay.
        *families*: the address families our socket reaches (4, 6: see
        :mod:`peerpunch.families`; default the relay's). *max_chats*: how
        many chats at once we ask the relay for (1: one, the seed's way)."""
        self.username = P.check_username(username)
        self.identity = identity
        self.pins = Pins(known_keys)     # shared by every chat
        self.stats = collections.Counter()
        self.local = tuple(e for e in map(P.format_endpoint, local)
                           if P.is_lan_endpoint(e))[:P.MAX_LOCAL_CANDIDATES] or None
        self.families = tuple(families or (F.family(relay_addr),))
        features = P.SECURE_FEATURES if identity else P.OUR_FEATURES
        if set(self.families) == set(F.BOTH):
            features += (P.FEATURE_DUAL_STACK,)
        self._rng = rng if rng is not None else random.Random()
        self.relay = RelayClient(self.username, relay_addr, features=features, local=self.local,
                                 identity=identity, keepalive=keepalive,
                                 register_timeout=register_timeout, rng=self._rng,
                                 random_bytes=random_bytes, stats=self.stats, want_chats=max_chats)
        self._path_options = dict(relay=self.relay, families=self.families, local=self.local,
                                  keepalive=keepalive, punch_timeout=punch_timeout,
                                  rng=self._rng, stats=self.stats, history=SearchHistory())
        self._secure_options = dict(identity=identity, backend=backend, pins=self.pins,
                                    strict=strict, require_encryption=require_encryption)
        self.chats = {}              # partner -> Chat (several once the relay allows it)
        self.current = None          # the partner plain lines go to (commands.introduced)
        self._pending = target       # a name to ask for once registered
        self._lines = []             # lines typed for the name we ask for, before its chat
        self._closed = False
        self._former = None          # (addr, name, until): the peer of the chat that just ended

    # -- what the machines know

    @property
    def state(self):
        """The session's State, composed from the relay client's and the chat's."""
        if self._closed or self.relay.state is RelayState.CLOSED:
            return State.CLOSED
        if self.relay.state is RelayState.REGISTERING:
            return State.REGISTERING
        if self.chat is not None:
            return self.chat.state
        req = self.relay.asking(RequestState.REQUESTING, RequestState.WAITING)
        return State(req.state.value) if req is not None else State.IDLE

    @property
    def chat(self):
        """The current chat (where plain lines go), if one lives."""
        return self.chats.get(self.current)

    @property
    def target(self):
        """The name we ask (or wait) for, or will once registered."""
        req = self.relay.request
        return req.target if req is not None else self._pending

    @property
    def peer(self):
        return self.chat.peer if self.chat is not None else None

    @property
    def link(self):
        """The current chat's Secure (its link), if any."""
        return self.chat.secure if self.chat is not None else None

    @property
    def known_keys(self):
        return self.pins.keys

    @property
    def mapping(self):
        return self.relay.mapping

    # -- inputs

    def start(self, now):
        """Begin registering; call once."""
        return self._acted_on(self.relay.start(now), now)

    def connect(self, target, now):
        """Ask the relay for *target* (now, or once registered)."""
        try:
            P.check_username(target)
        except ValueError as exc:           # what the user typed, not the network
            return [Failed("bad_target", target=target, why=str(exc))]
        if target == self.username:
            return [Failed("self")]
        if self.state is State.REGISTERING:
            self._pending = target
            return []
        if target in self.relay.waiting_for():
            return [Notice("already_waiting", name=target)]
        if target in self.chats:
            return [Notice("already_chatting", name=target)]
        if not self.relay.several and self.relay.waits_for() is not None:
            return self._stop_asking(now) + self.connect(target, now)
        busy = commands.busy(self, target)
        if busy is not None:
            return [busy]
        self._pending = None
        return self.relay.ask(target, now)

    def handle_line(self, line, now):
        """A line the user typed: a command (:mod:`peerpunch.commands`) or a chat line."""
        return commands.handle_line(self, line, now)

    def send_text(self, text, now):
        """Send a chat line, or queue it until the chat is up; a line of
        nothing but blanks is not sent."""
        if not text or text.isspace():
            return []
        chat = self.chat
        if chat is not None:
            return chat.typed(text, now)
        if self.chats:                   # several chats, none current: say which
            return [Notice("no_current_chat", names=", ".join(self.chats))]
        if refused(text):
            return refused(text)
        if self.state in (State.REQUESTING, State.WAITING) or \
                (self.state is State.REGISTERING and self.target):
            if len(self._lines) >= MAX_QUEUED:
                return [Notice("queue_full", count=MAX_QUEUED)]
            self._lines.append(text)
            return [Notice("queued")] if len(self._lines) == 1 else []
        return [Notice("no_chat_for_line")]

    def leave_chat(self, now, name=None):
        """End the chat with *name* (else the current chat, or our request)
        and stay registered."""
        if name and name not in self.chats:
            if name in self.relay.requests:
                return self._stop_asking(now, name)
            return [Notice("no_such_chat", name=name)]
        chat = self.chats[name] if name else self.chat
        if chat is not None:
            return chat.goodbye() + [Notice("left", name=chat.partner)] + \
                self._end_chat(chat, now)
        return self._stop_asking(now)

    def _stop_asking(self, now, target=None):
        """End our request for *target* (else the latest)."""
        req = self.relay.requests.get(target) if target else self.relay.request
        if req is None:
            return [Notice("no_chat")]
        said = StoppedWaiting(req.target) if req.waits() else Notice("stopped_asking", name=req.target)
        return self._end_request(now, req.target) + [said]

    def quit(self, now):
        """Say goodbye to the peer and close for good."""
        if self.state is State.CLOSED:
            return []
        out, self.current = [], None     # no "plain lines now go to ..." on the way out
        for chat in list(self.chats.values()):
            out += chat.goodbye() + self._end_chat(chat, now)
        out += self.relay.quit(now)
        self._closed = True
        return out + [Closed(0, "bye")]

    def datagram_received(self, data, addr, now, via=0):
        """A datagram from *addr* on our socket *via* (0: our own, else one
        opened by an OpenSocket effect); anything not from the relay or our
        peer is ignored."""
        if self.state is State.CLOSED:
            return []
        if via:
            return self._via_datagram(data, Origin(addr, via, False), now)
        if addr == self.relay.addr and is_relay_frame(data):
            if data[0] != RELAYED_TO and self.relay.several:    # such a relay says whose
                self.stats["forged_relayed"] += 1
                return []
            chat, data = self._relayed_chat(data)
            if chat is None:
                self.stats["ignored_relayed"] += 1
                return self.relay.nudge(now)
            return self._acted_on(chat.received(data, RELAYED_ORIGIN, now), now)
        if self.relay.is_stun_for_us(data, addr):
            return self._acted_on(self.relay.stun_received(data, addr, now), now)
        if addr != self.relay.addr:
            return self._peer_datagram(data, Origin(addr, 0, False), now)
        return self._acted_on(self.relay.datagram_received(data, now), now)

    def tick(self, now):
        """Run whatever timers are due, soonest first."""
        return fire(self._all_timers(), now, lambda effects: self._acted_on(effects, now))

    def next_deadline(self):
        """When tick() is next due, or None."""
        return earliest(self._all_timers())

    def _all_timers(self):
        """Every timer; on a tie the chats' run before the request's (a punch
        that gives up sends no last Connect)."""
        relay = self.relay.timers()
        chats = sum((chat.timers() for chat in self.chats.values()), ())
        return relay[:4] + chats + relay[4:]

    # -- routing

    def _peer_datagram(self, data, origin, now):
        """To the chat whose partner is at that address, else to one that
        may take it (punching: another port of the partner's IP; roaming)."""
        chats = sorted(self.chats.values(),
                       key=lambda chat: chat.peer is None or chat.peer.addr != origin.addr)
        dropped, out = self.stats["dropped"], None
        for chat in chats:               # a roamed sealed frame: the chat it authenticates for
            if chat.accepts(origin.addr, data):
                out = chat.received(data, origin, now)
                if self.stats["dropped"] == dropped:
                    return self._acted_on(out, now)
                self.stats["dropped"] = dropped          # not this chat's: one drop in all
        if out is not None:
            self.stats["dropped"] += 1
            return out
        return self._ignored(data, origin.addr, now)

    def _relayed_chat(self, data):
        """(chat, datagram) of a relayed *data*: the chat whose session its
        channel names (RELAYED_TO); in the one-byte form, the one the relay
        carries (or may soon carry), else the current one."""
        if data[0] == RELAYED_TO:
            channel = data[1:1 + CHANNEL_BYTES]
            for chat in self.chats.values():
                if chat.peer is not None and chat.peer.channel == channel:
                    return chat, data[1 + CHANNEL_BYTES:]
            return None, data
        relayed = [c for c in self.chats.values() if c.peer is not None and c.peer.via_relay]
        return (relayed[0] if len(relayed) == 1 else self.chat), data[1:]

    def _via_datagram(self, data, origin, now):
        for chat in self.chats.values():
            if chat.path.search.owns(origin.via):
                return self._acted_on(chat.spray_received(data, origin, now), now)
        self.stats["ignored_strangers"] += 1
        return []

    def _ignored(self, data, addr, now):
        if self._former is not None and addr == self._former[0] and now < self._former[2]:
            self.stats["late_from_former_peer"] += 1     # its last Goodbye copies, say
            return [Log(logging.DEBUG, "ignored %d bytes from %s, %s's address: that chat has"
                        " ended" % (len(data), P.format_endpoint(addr), self._former[1]))]
        self.stats["ignored_strangers"] += 1
        return [Log(logging.DEBUG, "ignored %d bytes from %s (%d so far): not the relay or our peer"
                    % (len(data), P.format_endpoint(addr), self.stats["ignored_strangers"]))]

    def _acted_on(self, effects, now):
        """The machines' effects, with their events for us acted on."""
        out = []
        for effect in effects:
            kind = type(effect)
            if kind is Introduction:
                out += self._introduced(effect.info, now)
            elif kind is RequestEnded:
                out += self._end_request(now, effect.target)
            elif kind is PathFound:
                self.relay.settled(effect.partner, now)
            elif kind is EndChat:
                chat = self.chats.get(effect.partner)
                out += self._end_chat(chat, now) if chat is not None else []
            else:
                out.append(effect)
                if kind is Registered:
                    out += self._registered(now)
        return out

    def _registered(self, now):
        if self._pending:
            return self.connect(self._pending, now)
        return [Notice("idle")]

    # -- chats begin and end

    def _introduced(self, info, now):
        """The relay introduced us to *info*'s partner: a new chat, a chat
        paired anew, or a repeat."""
        chat = self.chats.get(info.username)
        if chat is not None:
            return self._reintroduced(chat, info, now)
        if len(self.chats) >= self.relay.max_chats:
            return [Log(logging.INFO, "ignored an introduction to %s during a chat"
                        % info.username)]
        out = []
        single = self.relay.max_chats == 1
        asked = self.relay.asking(RequestState.REQUESTING, RequestState.WAITING)
        if single and asked is not None and info.username != asked.target:
            first = "first_while_waiting" if self.relay.waits_for() else "first_while_asking"
            out.append(Notice(first, name=info.username, target=asked.target))
            if self._lines:          # typed for the target: never hand them to someone else
                out.append(Notice("not_sent_for", count=len(self._lines), name=asked.target))
                self._lines = []
        chat = self.chats[info.username] = self._new_chat(info.username)
        if asked is None or asked.target == info.username or single:
            chat.queue, self._lines = self._lines, []
        out += commands.introduced(self, info.username)
        self.relay.introduced(info.username, now, keep_others=not single)
        return out + self._punch(chat, info, now)

    def _new_chat(self, partner):
        """A Chat for *partner*, with its own Path and (at start) Secure."""
        return Chat(partner, us=self.username, path=Path(**self._path_options),
                    secure_options=self._secure_options, stats=self.stats)

    def _reintroduced(self, chat, info, now):
        if chat.state is not State.CONNECTED and (info.session or "") != chat.peer.secret.hex():
            # the relay paired us anew (say a stale SessionFinished ended the
            # first pairing): its new secret is the one the peer will use
            self.relay.introduced(info.username, now)
            return self._punch(chat, info, now)
        return chat.reintroduced(info, now)

    def _punch(self, chat, info, now):
        self.relay.chat_began(info.username, info.session)
        return self._acted_on(chat.start(info, now), now)

    def _end_chat(self, chat, now):
        """Tell the relay; close the chat; what it still sends for a moment
        is not a stranger's."""
        out = self.relay.chat_finished(chat.partner, now) + chat.close()
        if chat.peer is not None:
            self._former = (chat.peer.addr, chat.partner, now + FORMER_PEER_FOR)
        self.chats.pop(chat.partner, None)
        self.stats["probes"] = 0
        return out + commands.ended(self, chat.partner)

    def _end_request(self, now, target):
        latest, out = target == self.target, self.relay.chat_finished(target, now)
        if not latest:
            return out               # queued lines are for the latest request
        self._pending = None
        if self._lines:
            out.append(Notice("not_sent", count=len(self._lines)))
            self._lines = []
        return out


def __getattr__(name):
    """``HELP`` lives in :mod:`peerpunch.console`; peer.py still reads it here."""
    if name == "HELP":
        from .console import HELP
        return HELP
    raise AttributeError(name)
