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

Where things live: this module holds the state machine, introduction,
commands and chat; :mod:`peerpunch.relayclient` (:class:`RelayClient`, a
machine of its own with its own state and timers) registration, requests,
our NAT's mapping and the relay's answers, handed back as data events
(:class:`~peerpunch.relayclient.Introduction`, ...); :mod:`peerpunch.path`
(``PathMixin``) punching, the relay fallback, roaming and keep-alive;
:mod:`peerpunch.birthday` (``BirthdayMixin``) the birthday search; :mod:`peerpunch.trust` (``TrustMixin``) the secure link
and key pinning; :mod:`peerpunch.events` the constants, states and events,
re-exported here.
"""

import collections
import logging
import os
import random

from . import families as F
from . import protocol as P
from .birthday import BirthdayMixin
from .effects import Log, Send  # noqa: F401 -- Send re-exported
from .events import StoppedWaiting
from .events import (  # noqa: F401 -- re-exported: callers import them from here
    CONNECT_RETRY, CONNECT_TIMEOUT, DIRECT_RETRY, DIRECT_RETRY_FAST_FOR, DIRECT_RETRY_SLOW,
    FALLBACK_AFTER, GOODBYE_COPIES, HELP, IN_CHAT, KEEPALIVE, LOST_AFTER_INTERVALS, MAX_HEARD,
    MAX_HELD, MAX_QUEUED, NUDGE_EVERY, PUNCH_INTERVAL, PUNCH_TIMEOUT, REGISTER_RTO,
    REGISTER_RTO_MAX, REGISTER_TIMEOUT, RELAY_PROBE_AFTER, REREGISTER_INTERVAL, REREGISTER_RETRY,
    SUSPECT_AFTER, Alert, ChatMessage, Closed, ConnectionLost, Connected, Failed, Notice,
    PeerLeft, PinKey, Registered, State)
from .events import FORMER_PEER_FOR
from .forwarder import is_relayed
from .path import SEALED_DATA, Peer, PathMixin  # noqa: F401 -- re-exported
from .registration import RelayAuth  # noqa: F401 -- re-exported
from .relayclient import (Introduction, RelayClient, RelayState, RequestEnded,
                          RequestState)
from .secure import OVERHEAD as SEALED_OVERHEAD
from .timers import Timer, earliest, fire
from .trust import TrustMixin


class PeerSession(PathMixin, TrustMixin, BirthdayMixin):
    """One user's client: registration, introduction, punching and chat."""

    def __init__(self, username, relay_addr, *, target=None, local=(), keepalive=KEEPALIVE,
                 punch_timeout=PUNCH_TIMEOUT, register_timeout=REGISTER_TIMEOUT,
                 identity=None, backend=None, known_keys=None, strict=False,
                 require_encryption=False, rng=None, families=None, random_bytes=os.urandom):
        """*target*: a name to ask the relay for once registered (else wait).
        *local*: our LAN endpoints, announced to the relay as candidates.
        *identity* (``.private``, ``.public``) and a crypto *backend* enable
        the secure channel with peers that offer it; *known_keys* maps names
        to pinned public keys; *strict* refuses peers with no pinned key;
        *require_encryption* refuses peers that cannot encrypt; *rng* (a
        ``random.Random``) picks the ports a birthday search probes;
        *random_bytes* (n -> n bytes; os.urandom) our nonce for the relay.
        *families*: the address families our socket reaches (4, 6: see
        :mod:`peerpunch.families`; default the relay's)."""
        self.username = P.check_username(username)
        self.keepalive = keepalive
        self.punch_timeout = punch_timeout
        self.peer = None
        self._pending = target       # a name to ask for once registered
        self.local = tuple(e for e in map(P.format_endpoint, local)
                           if P.is_lan_endpoint(e))[:P.MAX_LOCAL_CANDIDATES] or None
        self.identity = identity
        self.backend = backend
        features = P.SECURE_FEATURES if identity else P.OUR_FEATURES
        self.families = tuple(families or (F.family(relay_addr),))
        if set(self.families) == set(F.BOTH):
            features += (P.FEATURE_DUAL_STACK,)
        self.known_keys = dict(known_keys or {})
        self.strict = strict
        self.require_encryption = require_encryption
        self.link = None             # how messages reach the peer, once a path is found
        self.stats = collections.Counter()
        self._rng = rng if rng is not None else random.Random()
        self.relay = RelayClient(self.username, relay_addr, features=features, local=self.local,
                                 identity=identity, keepalive=keepalive,
                                 register_timeout=register_timeout, rng=self._rng,
                                 random_bytes=random_bytes, stats=self.stats)
        self._chat_state = None      # PUNCHING, HANDSHAKING or CONNECTED while a chat lives
        self._closed = False
        self._blocked = None         # why nothing is shown or sent (a changed key)
        self._held = []              # messages from a blocked peer
        self._punch_started = 0.0
        self._relay_probing = False  # punching through the relay's fallback too
        self._suspect = False        # the path went quiet; the relay was asked again
        self._last_direct = 0.0      # when the peer was last heard on the direct path
        self._last_ping = 0.0
        self._inbound_relayed = False  # the datagram being handled came through the relay
        self._queue = []             # lines typed before the chat was up
        self._probe_timer = Timer(self._timer_probe)
        self._punch_timeout_timer = Timer(self._timer_punch_timeout)
        self._punch_slow_timer = Timer(self._timer_punch_slow)
        self._fallback_timer = Timer(self._timer_fallback)
        self._direct_retry_timer = Timer(self._timer_direct_retry)
        self._keepalive_timer = Timer(self._timer_keepalive)
        self._link_timer = Timer(self._timer_link)
        self._birthday_timer = Timer(self._timer_birthday)
        self._last_heard = 0.0
        self._prober = None          # birthday.Prober: we probe a symmetric peer's ports
        self._spray = None           # birthday.Spray: our NAT is the symmetric one
        self._search_target = None   # (name, addr) the last search was for
        self._search_started = float("-inf")
        self._rx_via = 0             # the socket the datagram being handled came in on
        self._former = None          # (addr, name, until): the peer of the chat that just ended

    # -- what the relay client knows

    @property
    def state(self):
        """The session's State, composed from the relay client's and the chat's."""
        if self._closed or self.relay.state is RelayState.CLOSED:
            return State.CLOSED
        if self.relay.state is RelayState.REGISTERING:
            return State.REGISTERING
        if self._chat_state is not None:
            return self._chat_state
        req = self.relay.asking(RequestState.REQUESTING, RequestState.WAITING)
        return State(req.state.value) if req is not None else State.IDLE

    @property
    def target(self):
        """The name we ask (or wait) for, or will once registered."""
        req = self.relay.request
        return req.target if req is not None else self._pending

    @property
    def mapping(self):
        return self.relay.mapping

    @property
    def relay_addr(self):
        return self.relay.addr

    @property
    def relay_endpoint(self):
        return self.relay.endpoint

    @property
    def relay_features(self):
        return self.relay.features

    @property
    def _token(self):
        return self.relay.token

    @property
    def _auth(self):
        return self.relay.auth

    @property
    def _relay_silent_since(self):
        return self.relay.silent_since

    @property
    def _waiting(self):
        return self.relay.waits_for() is not None

    # -- inputs

    def start(self, now):
        """Begin registering; call once."""
        return self._from_relay_client(self.relay.start(now), now)

    def connect(self, target, now):
        """Ask the relay for *target* (now, or once registered)."""
        try:
            P.check_username(target)
        except ValueError as exc:
            return [Failed("cannot connect to %r: %s" % (target, exc))]
        if target == self.username:
            return [Failed("you cannot connect to yourself")]
        if self.state is State.REGISTERING:
            self._pending = target
            return []
        if self._waiting and self.state in (State.WAITING, State.REQUESTING):
            if target == self.target:
                return [Notice("already waiting for %s (/leave to stop)" % target)]
            return self.leave_chat(now) + self.connect(target, now)
        if self.state is not State.IDLE:
            return [Notice("already in a chat; /leave it first")]
        self._pending = None
        return self.relay.ask(target, now)

    def handle_line(self, line, now):
        """A line the user typed: a command or a chat message."""
        if line.startswith("/") and not line.startswith("//"):
            return self._command(line, now)
        return self.send_text(line[1:] if line.startswith("//") else line, now)

    def send_text(self, text, now):
        """Send a chat line, or queue it until the chat is up; a line of
        nothing but blanks is not sent."""
        if not text or text.isspace():
            return []
        if self.state is State.CONNECTED and not self._blocked and not self._suspect:
            return self._send_chat(text)
        if self.state in IN_CHAT or self.state in (State.REQUESTING, State.WAITING) or \
                (self.state is State.REGISTERING and self.target):
            if len(self._queue) >= MAX_QUEUED:
                return [Notice("not sent: %d lines already wait for the connection" % MAX_QUEUED)]
            self._queue.append(text)
            if len(self._queue) > 1:
                return []
            if self._blocked:
                return [Notice("(held until you /trust or /leave)")]
            if self.state is State.CONNECTED:      # the path went quiet
                return [Notice("(held: %s has not been heard for a while; sent when it is)"
                               % self.peer.username)]
            return [Notice("(queued until connected)")]
        return [Notice("not in a chat: /connect NAME, or wait for someone to connect")]

    def leave_chat(self, now):
        """End the current chat (or request) and stay registered."""
        if self.state in IN_CHAT:
            who = self.peer.username
            return self._goodbye() + self._end_chat(now) + [Notice("left the chat with %s" % who)]
        if self._waiting and self.state in (State.WAITING, State.REQUESTING):
            target = self.target
            return self._end_chat(now) + [StoppedWaiting(target)]
        if self.state is State.REQUESTING:
            target = self.target
            return self._end_chat(now) + [Notice("stopped asking for %s" % target)]
        return [Notice("not in a chat")]

    def quit(self, now):
        """Say goodbye to the peer and close for good."""
        if self.state is State.CLOSED:
            return []
        out = (self._goodbye() + self._end_chat(now)) if self.state in IN_CHAT else []
        out += self.relay.quit(now)
        self._enter(State.CLOSED, now)
        return out + [Closed(0, "bye")]

    def datagram_received(self, data, addr, now, via=0):
        """A datagram from *addr* on our socket *via* (0: our own, else one
        opened by an OpenSocket effect); anything not from the relay or our
        peer is ignored."""
        if self.state is State.CLOSED:
            return []
        if via:
            return self._via_datagram(data, addr, now, via)
        from_relay = addr == self.relay_addr
        if from_relay and is_relayed(data):
            if self.peer is None or self.state not in IN_CHAT:
                self.stats["ignored_relayed"] += 1
                return self.relay.nudge(now)
            self._rx_via = 0
            return self._from_peer(data[1:], None, now)
        if self.relay.is_stun_for_us(data, addr):
            return self._from_relay_client(self.relay.stun_received(data, addr, now), now)
        if not from_relay:
            return self._peer_datagram(data, addr, now, 0)
        return self._from_relay_client(self.relay.datagram_received(data, now), now)

    def _from_relay_client(self, effects, now):
        """The relay client's effects, with its events for us acted on."""
        out = []
        for effect in effects:
            kind = type(effect)
            if kind is Introduction:
                out += self._on_peer_info(effect.info, now)
            elif kind is RequestEnded:
                out += self._end_chat(now)
            else:
                out.append(effect)
                if kind is Registered:
                    out += self._registered(now)
        return out

    def _registered(self, now):
        if self._pending:
            return self.connect(self._pending, now)
        return [Notice("waiting for someone to connect (or type /connect NAME)")]

    def _peer_datagram(self, data, addr, now, via):
        """A datagram from *addr*, not the relay, on socket *via*."""
        searching = self.state in (State.PUNCHING, State.HANDSHAKING) or \
            (self.peer is not None and self.peer.via_relay)
        if (self.peer is None or addr != self.peer.addr) and \
                not (searching and self.peer.may_be(addr)) and not self._may_roam(data):
            return self._ignored(data, addr, now)
        self._rx_via = via
        return self._from_peer(data, addr, now)

    def _ignored(self, data, addr, now):
        if self._former is not None and addr == self._former[0] and now < self._former[2]:
            self.stats["late_from_former_peer"] += 1     # its last Goodbye copies, say
            return [Log(logging.DEBUG, "ignored %d bytes from %s, %s's address: that chat has"
                        " ended" % (len(data), P.format_endpoint(addr), self._former[1]))]
        self.stats["ignored_strangers"] += 1
        return [Log(logging.DEBUG, "ignored %d bytes from %s (%d so far): not the relay or our peer"
                    % (len(data), P.format_endpoint(addr), self.stats["ignored_strangers"]))]

    def tick(self, now):
        """Run whatever timers are due, soonest first."""
        return self._from_relay_client(fire(self._all_timers(), now), now)

    def next_deadline(self):
        """When tick() is next due, or None."""
        return earliest(self._all_timers())

    def _all_timers(self):
        """Every timer; on a tie the chat's run before the request's (a punch
        that gives up sends no last Connect)."""
        relay = self.relay.timers()
        return relay[:4] + self._chat_timers() + relay[4:]

    def _chat_timers(self):
        return (self._probe_timer, self._punch_timeout_timer, self._punch_slow_timer,
                self._fallback_timer, self._direct_retry_timer, self._keepalive_timer,
                self._link_timer, self._birthday_timer)

    # -- commands

    def _command(self, line, now):
        name, _, arg = line[1:].strip().partition(" ")
        arg = arg.strip()
        if name in ("quit", "exit", "q"):
            return self.quit(now)
        if name == "connect":
            return self.connect(arg, now) if arg else [Notice("usage: /connect NAME")]
        if name == "leave":
            return self.leave_chat(now)
        if name == "status":
            return [Notice(self.status(now))]
        if name == "help":
            return [Notice(HELP)]
        if name == "whoami":
            return [Notice(self.whoami())]
        if name == "verify":
            return [Notice(self.verify())]
        if name == "trust":
            return self.trust(now)
        return [Notice("unknown command %r: /help lists them" % line.split()[0])]

    def status(self, now=None):
        state = self.state.value
        if self.state is State.CONNECTED and self._suspect:      # the path went quiet
            quiet = "a while" if now is None else "%d s" % (now - self._last_heard)
            state = "connected, but %s has not been heard for %s" % (self.peer.username, quiet)
        text = "you are %s at relay %s (%s)" % (self.username, self.relay_endpoint, state)
        if self.peer is not None:
            text += "; peer %s at %s%s" % (self.peer.username, self.peer.endpoint,
                                          " (relayed)" if self.peer.via_relay else "")
        if self._waiting and self.state in (State.WAITING, State.REQUESTING):
            text += "; waiting for %s to come online" % self.target
        if self.mapping is not None:
            text += "; your NAT: %s" % ("symmetric" if self.mapping == P.MAPPING_DEPENDENT else
                                        "one public endpoint per socket")
        if self.relay.silent_since is not None:
            text += "; the relay is not answering"
        return text

    # -- messages from the relay

    def _on_peer_info(self, msg, now):
        out = []
        if self.state in IN_CHAT:
            if msg.username != self.peer.username:
                out.append(Log(logging.INFO, "ignored an introduction to %s during a chat"
                               % msg.username))
                return out
            if self.state is not State.CONNECTED and (msg.session or "") != self.peer.secret.hex():
                # the relay paired us anew (say a stale SessionFinished ended the
                # first pairing): its new secret is the one the peer will use
                self.link = None
                self.relay.introduced(msg.username, now)
                return out + self._start_punch(msg, now)
            if msg.mapping and self.peer.mapping is None:
                self.peer.mapping = msg.mapping
            out += self._late_birthday(now)
            return out + self._reintroduced(msg, now)
        if self.state not in (State.IDLE, State.REQUESTING, State.WAITING):
            return out
        if self.state is not State.IDLE and msg.username != self.target:
            out.append(Notice("%s connected to you first; no longer %s for %s"
                              % (msg.username, "waiting" if self._waiting else "asking", self.target)))
            if self._queue:          # typed for the target: never hand them to someone else
                out.append(Notice("%d queued line(s) for %s were not sent"
                                  % (len(self._queue), self.target)))
                self._queue = []
        self.relay.introduced(msg.username, now)   # drops a request for another name
        return out + self._start_punch(msg, now)

    # -- messages from the peer

    def _on_ping(self, msg, now):
        return [self._reply_bytes(self._to_peer(P.Pong()).data)]

    def _on_pong(self, msg, now):
        return []

    def _on_direct_message(self, msg, now):
        if self._blocked:
            if len(self._held) < MAX_HELD:
                self._held.append(msg.content)
            return []
        return [ChatMessage(self.peer.username, msg.content)]

    def _on_goodbye(self, msg, now):
        return [PeerLeft(self.peer.username)] + self._end_chat(now)

    _PEER_HANDLERS = {
        P.Ping: _on_ping,
        P.Pong: _on_pong,
        P.DirectMessage: _on_direct_message,
        P.Goodbye: _on_goodbye,
    }

    # -- helpers

    def _enter(self, state, now):
        self._chat_state = state if state in IN_CHAT else None
        if state in (State.HANDSHAKING, State.CONNECTED):
            self.relay.settled(now)
        self._relay_probing = False
        for timer in (self._probe_timer, self._punch_timeout_timer, self._keepalive_timer,
                      self._link_timer, self._punch_slow_timer):
            timer.stop()
        if state is not State.HANDSHAKING:
            self._fallback_timer.stop()
        if state is State.CLOSED:
            self._closed = True
            for timer in self._chat_timers():
                timer.stop()

    def _connected(self, now, security):
        self._enter(State.CONNECTED, now)
        self._last_direct = self._last_ping = now
        self._keepalive_timer.at(now + self.keepalive)
        peer = self.peer
        path = "relayed" if peer.via_relay else "direct"
        return [Connected(peer.username, peer.endpoint, path, now - self._punch_started,
                          security)] + self._flush_queue()

    def _flush_queue(self):
        if self._blocked:
            return []
        out = []
        queued, self._queue = self._queue, []
        for text in queued:
            out += self._send_chat(text)
        return out

    def _end_chat(self, now):
        """Back to IDLE; tell the relay; report lines that never left."""
        partner = self.peer.username if self.peer is not None else self.target
        out = self.relay.chat_finished(partner, now) + self._stop_birthday()
        if self.peer is not None:       # what it still sends for a moment is not a stranger's
            self._former = (self.peer.addr, self.peer.username, now + FORMER_PEER_FOR)
        if self._queue:
            out.append(Notice("%d queued line(s) were not sent" % len(self._queue)))
            self._queue = []
        self.peer = self._pending = self.link = self._blocked = None
        self._suspect = False
        self._direct_retry_timer.stop()
        self._held = []
        self.stats["probes"] = 0
        self._enter(State.IDLE, now)
        return out

    def _goodbye(self):
        if self.link is not None and not self.link.ready:
            return []                  # nothing we could send would authenticate
        return [self._to_peer(P.Goodbye()) for _ in range(GOODBYE_COPIES)]

    def _send_chat(self, text):
        limit = P.MAX_DATAGRAM - (SEALED_OVERHEAD if self.link.secure else 0) - 1  # 1: RELAYED
        return [self._to_peer(P.DirectMessage(piece)) for piece in P.split_text(text, limit)]

    def _to_peer(self, msg):
        return self._peer_bytes(self.link.seal(msg) if self.link is not None else P.encode(msg))
