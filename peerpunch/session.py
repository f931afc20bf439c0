"""The peer's protocol logic, without sockets, threads or clocks.

Theory of operation
-------------------
:class:`PeerSession` is one user's state machine. Its shell feeds it what
happens -- ``datagram_received(data, addr, now)``, ``handle_line(text, now)``,
``tick(now)`` -- and carries out the list of effects each call returns:
:class:`~peerpunch.effects.Send` datagrams, :class:`~peerpunch.effects.Log`
lines and the events defined below. ``next_deadline()`` says when ``tick``
is next due. Addresses are canonical ``(ip, port)`` pairs
(:func:`peerpunch.protocol.canonical_addr`); the shell converts.

States and what moves between them::

    REGISTERING --RegisterAck--> IDLE            (no ack in 10 s: Closed(1))
    IDLE --/connect--> REQUESTING --PeerInfo--> PUNCHING
    IDLE --PeerInfo (someone asked for us)--> PUNCHING
    REQUESTING --TargetNotFound | TargetBusy | no answer--> IDLE
    PUNCHING --any valid datagram from the peer--> HANDSHAKING --keys--> CONNECTED
        (straight to CONNECTED with a peer that cannot encrypt)
    PUNCHING --nothing from the peer in FALLBACK_AFTER--> the same, relayed
        (when relay and peer offer relay1; direct probes go on, and the
        first direct Pong moves the chat to the direct path: "now direct")
    PUNCHING --nothing from the peer in punch_timeout, no fallback--> IDLE
    CONNECTED --Goodbye | silence for 3 keep-alives | /leave--> IDLE
    any --/quit--> CLOSED

Everything is retried, because it is all UDP: Register with backoff until
acknowledged and then every REREGISTER_INTERVAL to keep the relay's NAT
mapping and our registration alive; Connect until PeerInfo arrives, and
again while punching so the relay repeats the introduction to a peer whose
PeerInfo was lost; probes every PUNCH_INTERVAL until the peer answers;
Goodbye in several copies. Lines typed before the chat is up are queued and
sent when it is; lines that cannot be sent are reported, never dropped in
silence. Only the relay and the current peer are listened to.
"""

import collections
import enum
import logging

from . import identity as ID
from . import protocol as P
from .effects import Log, Send
from .forwarder import RELAYED, is_relayed
from .link import PING, PONG, LinkFailed, PlainLink, SecureLink
from .secure import DATA, OVERHEAD as SEALED_OVERHEAD, SecureChannel, is_frame

REGISTER_RTO = 0.5            # first Register retransmission, doubling...
REGISTER_RTO_MAX = 1.0        # ...up to this
REGISTER_TIMEOUT = 10.0       # no RegisterAck at all: give up
REREGISTER_INTERVAL = 20.0
REREGISTER_RETRY = 2.0        # after an unanswered re-registration
CONNECT_RETRY = 1.0
CONNECT_TIMEOUT = 10.0
PUNCH_INTERVAL = 0.2
PUNCH_TIMEOUT = 10.0
FALLBACK_AFTER = 3.0          # punching this long without success: relay meanwhile
DIRECT_RETRY = 1.0            # while relayed, probe the direct path this often...
DIRECT_RETRY_SLOW = 5.0       # ...and this often after
DIRECT_RETRY_FAST_FOR = 30.0
KEEPALIVE = 15.0
LOST_AFTER_INTERVALS = 3
SUSPECT_AFTER = 1.25          # silent intervals before the path is suspect...
RELAY_PROBE_AFTER = 1.5       # ...and before pings also go through the relay
GOODBYE_COPIES = 3
MAX_QUEUED = 256
MAX_HELD = 256                # messages kept from a peer whose key changed
MAX_HEARD = 8                 # addresses a handshake is offered to

SEALED_DATA = bytes([DATA])

HELP = """commands:
  /connect NAME   start a chat with NAME (when not in one)
  /leave          end the current chat and stay online
  /status         show who you are and what you are connected to
  /whoami         your key's fingerprint
  /verify         a safety code to compare with your peer by voice
  /trust          accept the new key of a peer whose key changed
  /quit           say goodbye and exit (also Ctrl+C, Ctrl+D)
  /help           this text
  //text          send a line that begins with '/'"""


class State(enum.Enum):
    REGISTERING = "registering"
    IDLE = "idle"
    REQUESTING = "requesting"
    PUNCHING = "punching"
    HANDSHAKING = "handshaking"
    CONNECTED = "connected"
    CLOSED = "closed"


IN_CHAT = (State.PUNCHING, State.HANDSHAKING, State.CONNECTED)

# -- events for the shell to show

Registered = collections.namedtuple("Registered", "username relay")
Connected = collections.namedtuple("Connected", "username endpoint path seconds security")
ChatMessage = collections.namedtuple("ChatMessage", "username text")
PeerLeft = collections.namedtuple("PeerLeft", "username")
ConnectionLost = collections.namedtuple("ConnectionLost", "username")
Failed = collections.namedtuple("Failed", "reason")
Notice = collections.namedtuple("Notice", "text")
Closed = collections.namedtuple("Closed", "exit_code reason")
Alert = collections.namedtuple("Alert", "text")
PinKey = collections.namedtuple("PinKey", "username key")
PinKey.__doc__ = "Remember *key* as *username*'s (the shell writes known_peers)."


class Peer:
    """The other side of the current chat, as the relay introduced it.

    While punching, ``candidates`` are where we probe: the public endpoint
    the relay saw and the LAN endpoints the peer announced (two peers behind
    one NAT that does not hairpin reach each other only there). A datagram
    from any candidate, or from the public IP at another port (a
    peer-reflexive endpoint: the peer's NAT gave the probe a new port), picks
    the path; from then on ``addr`` is the only address we listen to.
    """
    __slots__ = ("username", "addr", "endpoint", "features", "candidates", "secret", "via_relay",
                 "heard")

    def __init__(self, info):
        self.username = info.username
        self.endpoint = info.peer
        self.addr = P.parse_endpoint(info.peer)
        self.features = info.features or ()
        self.secret = bytes.fromhex(info.session) if info.session else b""
        self.via_relay = False       # the chat travels through the relay's fallback
        self.heard = []              # where valid datagrams came from before keys were agreed
        self.candidates = [self.addr]
        for text in info.local or ():
            addr = P.parse_endpoint(text)
            if addr not in self.candidates:
                self.candidates.append(addr)

    def may_be(self, addr):
        return addr in self.candidates or addr[0] == self.candidates[0][0]

    def settle(self, addr):
        self.addr = addr
        self.endpoint = P.format_endpoint(addr)
        self.hear(addr)

    def hear(self, addr):
        if addr not in self.heard and len(self.heard) < MAX_HEARD:
            self.heard.append(addr)


class PeerSession:
    """One user's client: registration, introduction, punching and chat."""

    def __init__(self, username, relay_addr, *, target=None, local=(), keepalive=KEEPALIVE,
                 punch_timeout=PUNCH_TIMEOUT, register_timeout=REGISTER_TIMEOUT,
                 identity=None, backend=None, known_keys=None, strict=False,
                 require_encryption=False):
        """*target*: a name to ask the relay for once registered (else wait).
        *local*: our LAN endpoints, announced to the relay as candidates.
        *identity* (``.private``, ``.public``) and a crypto *backend* enable
        the secure channel with peers that offer it; *known_keys* maps names
        to pinned public keys; *strict* refuses peers with no pinned key;
        *require_encryption* refuses peers that cannot encrypt."""
        self.username = P.check_username(username)
        self.relay_addr = relay_addr
        self.relay_endpoint = P.format_endpoint(relay_addr)
        self.keepalive = keepalive
        self.punch_timeout = punch_timeout
        self.register_timeout = register_timeout
        self.state = None
        self.relay_features = ()
        self.peer = None
        self.target = target         # the name we ask the relay for
        self.local = tuple(e for e in map(P.format_endpoint, local)
                           if P.is_lan_endpoint(e))[:P.MAX_LOCAL_CANDIDATES] or None
        self.identity = identity
        self.backend = backend
        self.features = P.SECURE_FEATURES if identity else P.OUR_FEATURES
        self.known_keys = dict(known_keys or {})
        self.strict = strict
        self.require_encryption = require_encryption
        self.link = None             # how messages reach the peer, once a path is found
        self.stats = collections.Counter()
        self._token = None           # from RegisterAck: lets us move to a new address
        self._blocked = None         # why nothing is shown or sent (a changed key)
        self._held = []              # messages from a blocked peer
        self._punch_started = 0.0
        self._relay_probing = False  # punching through the relay's fallback too
        self._suspect = False        # the path went quiet; the relay was asked again
        self._last_direct = 0.0      # when the peer was last heard on the direct path
        self._last_ping = 0.0
        self._reregister_backoff = REREGISTER_RETRY
        self._inbound_relayed = False  # the datagram being handled came through the relay
        self._queue = []             # lines typed before the chat was up
        self._timers = {}            # name -> when it fires
        self._register_rto = REGISTER_RTO
        self._since = 0.0            # when the current state began
        self._last_heard = 0.0

    # -- inputs

    def start(self, now):
        """Begin registering; call once."""
        self.state = State.REGISTERING
        self._since = now
        return self._send_register(now)

    def connect(self, target, now):
        """Ask the relay for *target* (now, or once registered)."""
        try:
            P.check_username(target)
        except ValueError as exc:
            return [Failed("cannot connect to %r: %s" % (target, exc))]
        if target == self.username:
            return [Failed("you cannot connect to yourself")]
        if self.state is State.REGISTERING:
            self.target = target
            return []
        if self.state is not State.IDLE:
            return [Notice("already in a chat; /leave it first")]
        self.target = target
        self._enter(State.REQUESTING, now)
        self._timers["connect"] = now + CONNECT_RETRY
        return [Notice("asking the relay for %s ..." % target), self._to_relay(P.Connect(target))]

    def handle_line(self, line, now):
        """A line the user typed: a command or a chat message."""
        if line.startswith("/") and not line.startswith("//"):
            return self._command(line, now)
        return self.send_text(line[1:] if line.startswith("//") else line, now)

    def send_text(self, text, now):
        """Send a chat line, or queue it until the chat is up."""
        if not text:
            return []
        if self.state is State.CONNECTED and not self._blocked:
            return self._send_chat(text)
        if self.state in IN_CHAT or self.state is State.REQUESTING or \
                (self.state is State.REGISTERING and self.target):
            if len(self._queue) >= MAX_QUEUED:
                return [Notice("not sent: %d lines already wait for the connection" % MAX_QUEUED)]
            self._queue.append(text)
            if len(self._queue) > 1:
                return []
            return [Notice("(held until you /trust or /leave)" if self._blocked
                           else "(queued until connected)")]
        return [Notice("not in a chat: /connect NAME, or wait for someone to connect")]

    def leave_chat(self, now):
        """End the current chat (or request) and stay registered."""
        if self.state in IN_CHAT:
            who = self.peer.username
            return self._goodbye() + self._end_chat(now) + [Notice("left the chat with %s" % who)]
        if self.state is State.REQUESTING:
            return self._end_chat(now) + [Notice("stopped asking for %s" % self.target)]
        return [Notice("not in a chat")]

    def quit(self, now):
        """Say goodbye to the peer and close for good."""
        if self.state is State.CLOSED:
            return []
        out = (self._goodbye() + self._end_chat(now)) if self.state in IN_CHAT else []
        if P.speaks_extensions(self.relay_features) and self.state is not State.REGISTERING:
            out += [self._to_relay(P.Unregister())] * 2
        self._enter(State.CLOSED, now)
        return out + [Closed(0, "bye")]

    def datagram_received(self, data, addr, now):
        """A datagram from *addr*; anything not from the relay or our peer is ignored."""
        if self.state is State.CLOSED:
            return []
        from_relay = addr == self.relay_addr
        searching = self.state in (State.PUNCHING, State.HANDSHAKING) or \
            (self.peer is not None and self.peer.via_relay)
        if from_relay and is_relayed(data):
            if self.peer is None or self.state not in IN_CHAT:
                self.stats["ignored_relayed"] += 1
                return []
            return self._from_peer(data[1:], None, now)
        if not from_relay and (self.peer is None or addr != self.peer.addr) and \
                not (searching and self.peer.may_be(addr)) and not self._may_roam(data):
            self.stats["ignored_strangers"] += 1
            return [Log(logging.DEBUG, "ignored %d bytes from %s (%d so far): not the relay or our peer"
                        % (len(data), P.format_endpoint(addr), self.stats["ignored_strangers"]))]
        if not from_relay:
            return self._from_peer(data, addr, now)
        try:
            msg = P.decode(data)
        except P.RemoteProtocolError as exc:
            self.stats["malformed"] += 1
            return [Log(logging.DEBUG, "dropped datagram from the relay: %s" % exc)]
        handler = self._RELAY_HANDLERS.get(type(msg))
        return handler(self, msg, now) if handler else \
            [Log(logging.DEBUG, "ignored unexpected %s" % type(msg).__name__)]

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
                self.peer.settle(addr)
            out += self._path_found(now)
            if self.link is None:            # refused
                return out
        elif addr is not None and self.peer.via_relay and data in (PING, PONG):
            return self._direct_probe(data, addr, now)
        elif addr is not None and addr != self.peer.addr and self.state is State.HANDSHAKING:
            if not is_frame(data):           # a probe from another of its addresses: answer,
                self.peer.hear(addr)         # offer the handshake there, but do not move
                return [Send(PONG, addr)] if data == PING else []
        if self.link.secure and self.link.ready and data in (PING, PONG):
            self.stats["late_probes"] += 1   # a punch probe still on its way: harmless
            return out
        dropped = self.link.dropped
        frames, messages = self.link.receive(data, now)
        if self.link.dropped != dropped:
            self.stats["dropped"] += 1
            source = P.format_endpoint(addr) if addr else "the relay"
            return out + [Log(logging.DEBUG, "dropped a datagram from %s that did not authenticate"
                              % source)]
        self._suspect = False
        if addr is not None and addr != self.peer.addr and self.state is State.HANDSHAKING:
            self.peer.settle(addr)                 # a handshake frame that authenticated
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
        return out

    def _direct_probe(self, data, addr, now):
        """Plain probes on the direct path while the chat is relayed (or the
        peer's still is): answer a Ping; a Pong proves the path both ways."""
        if data == PING:
            return [Send(PONG, addr)]
        if addr not in self.peer.candidates:
            return []             # a reflexive port must prove itself with a sealed frame
        if self.link.secure:      # a hint: ask there with a sealed Ping, move on its answer
            return [Send(self.link.seal(P.Ping()), addr)]
        return self._now_direct(addr, now)

    def _now_relayed(self, now):
        self.peer.via_relay = True
        self._timers["direct_retry"] = now + DIRECT_RETRY
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
        self.peer.settle(addr)
        self.peer.via_relay = False
        self._timers.pop("direct_retry", None)
        self._last_heard = self._last_direct = now
        what = "%s moved to" if moved else "now direct with %s at"
        return [Notice((what + " %s") % (self.peer.username, self.peer.endpoint))]

    def tick(self, now):
        """Run whatever timers are due."""
        out = []
        for name, when in sorted(self._timers.items(), key=lambda kv: kv[1]):
            if when <= now and self._timers.get(name) == when:
                del self._timers[name]
                out += getattr(self, "_timer_" + name)(now)
        return out

    def next_deadline(self):
        """When tick() is next due, or None."""
        return min(self._timers.values()) if self._timers else None

    # -- commands

    def _command(self, line, now):
        name, _, arg = line[1:].strip().partition(" ")
        arg = arg.strip()
        if name in ("quit", "exit", "q"):
            return self.quit(now)
        if name == "connect" and arg:
            return self.connect(arg, now)
        if name == "leave":
            return self.leave_chat(now)
        if name == "status":
            return [Notice(self.status())]
        if name == "help":
            return [Notice(HELP)]
        if name == "whoami":
            return [Notice(self.whoami())]
        if name == "verify":
            return [Notice(self.verify())]
        if name == "trust":
            return self.trust(now)
        return [Notice("unknown command %r: /help lists them" % line.split()[0])]

    def whoami(self):
        if self.identity is None:
            return "you are %s; no identity key (encryption off)" % self.username
        return "you are %s, key %s" % (self.username, ID.fingerprint(self.identity.public))

    def verify(self):
        if self.state is not State.CONNECTED or not self.link.secure:
            return "/verify needs an encrypted chat"
        code = ID.safety_code(self.identity.public, self.link.remote_key)
        return "safety code with %s: %s\ncompare it with %s by voice; if it differs, someone is" \
               " in between" % (self.peer.username, code, self.peer.username)

    def trust(self, now):
        """Accept a changed key (or an unencrypted peer whose key we had pinned)."""
        if not self._blocked:
            return [Notice("nothing to trust")]
        out = []
        key = self.link.remote_key
        if key is not None:
            self.known_keys[self.peer.username] = key
            out.append(PinKey(self.peer.username, key))
        self._blocked = None
        out.append(Notice("trusting %s now" % self.peer.username))
        held, self._held = self._held, []
        out += [ChatMessage(self.peer.username, text) for text in held]
        return out + self._flush_queue()

    def status(self):
        text = "you are %s at relay %s (%s)" % (self.username, self.relay_endpoint, self.state.value)
        if self.peer is not None:
            text += "; peer %s at %s%s" % (self.peer.username, self.peer.endpoint,
                                          " (relayed)" if self.peer.via_relay else "")
        return text

    # -- messages from the relay

    def _on_register_ack(self, msg, now):
        self.relay_features = msg.features or ()
        proof = []
        if msg.token and msg.token != self._token:
            self._token = msg.token          # echo it at once: proof that we are at this address
            proof = [self._to_relay(self._register_msg())]
        self._timers["reregister"] = now + REREGISTER_INTERVAL
        self._reregister_backoff = REREGISTER_RETRY
        if self.state is not State.REGISTERING:
            return proof
        self._timers.pop("register", None)
        self._enter(State.IDLE, now)
        out = proof + [Registered(self.username, self.relay_endpoint)]
        if self.target:
            return out + self.connect(self.target, now)
        return out + [Notice("waiting for someone to connect (or type /connect NAME)")]

    def _on_peer_info(self, msg, now):
        out = []
        if self.state is State.REGISTERING:   # the RegisterAck was lost
            out += self._on_register_ack(P.RegisterAck(), now)
        if self.state in IN_CHAT:
            if msg.username != self.peer.username:
                out.append(Log(logging.INFO, "ignored an introduction to %s during a chat"
                               % msg.username))
                return out
            if self.state is not State.CONNECTED and (msg.session or "") != self.peer.secret.hex():
                # the relay paired us anew (say a stale SessionFinished ended the
                # first pairing): its new secret is the one the peer will use
                self.link = None
                return out + self._start_punch(msg, now)
            return out + self._reintroduced(msg, now)
        if self.state not in (State.IDLE, State.REQUESTING):
            return out
        if self.state is State.REQUESTING and msg.username != self.target:
            out.append(Notice("%s connected to you first; no longer asking for %s"
                              % (msg.username, self.target)))
            self.target = None
        return out + self._start_punch(msg, now)

    def _start_punch(self, msg, now):
        """Punch towards the peer the relay introduced in *msg*."""
        if not P.is_peer_endpoint(msg.peer, allow_loopback=self._relay_is_loopback()):
            self.stats["bad_introductions"] += 1
            return [Failed("the relay introduced %s at %s, which is not an address a peer can"
                           " have" % (msg.username, msg.peer))] + self._end_chat(now)
        self.peer = Peer(msg)
        self._enter(State.PUNCHING, now)
        self._punch_started = now
        self._timers["probe"] = now
        self._timers["punch_timeout"] = now + self.punch_timeout
        if self._fallback_possible():
            self._timers["fallback"] = now + min(FALLBACK_AFTER, self.punch_timeout / 2)
        if self.target:
            self._timers["connect"] = now + CONNECT_RETRY
        return [Notice("punching a hole to %s at %s ..." % (self.peer.username, self.peer.endpoint))]

    def _relay_is_loopback(self):
        return self.relay_addr[0] in ("127.0.0.1", "::1") or self.relay_addr[0].startswith("127.")

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
        # offer a sealed Ping there; only an answer that authenticates moves the chat
        ping = self.link.seal(P.Ping()) if self.link.secure else PING
        return [Send(ping, fresh.addr)]

    def _on_target_not_found(self, msg, now):
        return self._request_failed("Target user not found.", now)

    def _on_target_busy(self, msg, now):
        return self._request_failed("Target user is busy.", now)

    def _on_error(self, msg, now):
        reason = "relay: %s" % msg.message
        if self.state is State.REGISTERING and msg.code in (P.ERROR_NAME_TAKEN, P.ERROR_RELAY_FULL):
            self._enter(State.CLOSED, now)
            return [Closed(1, reason)]
        if msg.code == P.ERROR_NAME_TAKEN:
            return [Notice(reason + " (someone else registered your name while the relay"
                           " could not hear you)")]
        return self._request_failed(reason, now)

    def _request_failed(self, reason, now):
        if self.state is not State.REQUESTING:
            return [Log(logging.DEBUG, "relay said %r outside a request" % reason)]
        return [Failed(reason)] + self._end_chat(now)

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

    _RELAY_HANDLERS = {
        P.RegisterAck: _on_register_ack,
        P.PeerInfo: _on_peer_info,
        P.TargetNotFound: _on_target_not_found,
        P.TargetBusy: _on_target_busy,
        P.Error: _on_error,
    }
    _PEER_HANDLERS = {
        P.Ping: _on_ping,
        P.Pong: _on_pong,
        P.DirectMessage: _on_direct_message,
        P.Goodbye: _on_goodbye,
    }

    # -- timers

    def _timer_register(self, now):
        if now - self._since >= self.register_timeout:
            self._enter(State.CLOSED, now)
            return [Closed(1, "no answer from the relay at %s after %g s"
                           % (self.relay_endpoint, self.register_timeout))]
        self._register_rto = min(self._register_rto * 2, REGISTER_RTO_MAX)
        return self._send_register(now)

    def _timer_reregister(self, now):
        """Re-register every REREGISTER_INTERVAL. Each one is retried after
        REREGISTER_RETRY, doubling up to the interval, until the RegisterAck
        (which puts the next one a whole interval away) comes back: a lost
        datagram or a relay restarting costs seconds, not an interval."""
        self._timers["reregister"] = now + self._reregister_backoff
        self._reregister_backoff = min(2 * self._reregister_backoff, REREGISTER_INTERVAL)
        return [self._to_relay(self._register_msg())]

    def _timer_connect(self, now):
        if self.state is State.REQUESTING and now - self._since >= CONNECT_TIMEOUT:
            return self._request_failed("no answer from the relay about %s" % self.target, now)
        self._timers["connect"] = now + CONNECT_RETRY
        out = [self._to_relay(P.Connect(self.target))]
        if self.state is State.REQUESTING:      # unanswered: a restarted relay may have
            out.insert(0, self._to_relay(self._register_msg()))   # forgotten us
        return out

    def _timer_probe(self, now):
        self._timers["probe"] = now + PUNCH_INTERVAL
        self.stats["probes"] += 1
        out = [Send(PING, addr) for addr in self.peer.candidates]
        if self._relay_probing:
            out.append(Send(bytes([RELAYED]) + PING, self.relay_addr))
        return out

    def _fallback_possible(self):
        return P.FEATURE_RELAY in self.relay_features and P.FEATURE_RELAY in self.peer.features

    def _timer_fallback(self, now):
        """Punching has not worked yet: probe through the relay as well; the
        first answer that comes back that way makes the chat relayed. During
        a handshake that is not getting through, repeat it via the relay."""
        if self.state is State.HANDSHAKING and not self.peer.via_relay:
            self.peer.via_relay = True
            self._timers["direct_retry"] = now + DIRECT_RETRY
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
        self._timers["direct_retry"] = now + (DIRECT_RETRY if fast else DIRECT_RETRY_SLOW)
        ping = P.encode(P.Ping())
        return [Send(ping, addr) for addr in self.peer.candidates]

    def _timer_punch_timeout(self, now):
        peer = self.peer
        reason = ("could not reach %s at %s: no answer to %d probes in %g s"
                  " (the NATs in between block a direct path)"
                  % (peer.username, peer.endpoint, self.stats["probes"], self.punch_timeout))
        return [Failed(reason)] + self._end_chat(now)

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
            out += [self._to_relay(self._register_msg()),
                    self._to_relay(P.Connect(self.peer.username, session=session))]
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
        self._timers["keepalive"] = min(nxt, self._last_heard + LOST_AFTER_INTERVALS * interval)
        if not send:
            return out
        out.append(self._to_peer(P.Ping()))
        if self._relay_probing and not self.peer.via_relay:   # its own copy: not a replay
            out.append(Send(bytes([RELAYED]) + self._to_peer(P.Ping()).data, self.relay_addr))
        return out

    # -- helpers

    def _enter(self, state, now):
        self.state = state
        self._since = now
        self._relay_probing = False
        keep = ("fallback",) if state is State.HANDSHAKING else ()
        for name in ("connect", "probe", "punch_timeout", "fallback", "keepalive", "link"):
            if name in keep:
                continue
            self._timers.pop(name, None)
        if state is State.CLOSED:
            self._timers.clear()

    def _path_found(self, now):
        """The punch worked (or the relay will carry us): choose the link and,
        for a secure one, start it."""
        notes = []
        if self.peer.via_relay:
            self._timers["direct_retry"] = now + DIRECT_RETRY
            notes.append(Notice("the chat goes through the relay at %s for now; still trying the"
                                " direct path" % self.relay_endpoint))
        if self.identity is not None and P.FEATURE_NOISE in self.peer.features:
            initiator = self.username < self.peer.username
            names = (self.username, self.peer.username) if initiator else \
                (self.peer.username, self.username)
            channel = SecureChannel(initiator=initiator, static_private=self.identity.private,
                                    backend=self.backend, mac_key=self.peer.secret,
                                    prologue="|".join(names).encode("utf-8"))
            self.link = SecureLink(channel)
            self._enter(State.HANDSHAKING, now)
            out = self._handshake_bytes(self.link.start(now))
            self._schedule_link()
            return notes + out
        self.link = PlainLink()
        if self.require_encryption or self.strict:
            who, flag = self.peer.username, "--strict" if self.strict else "--require-encryption"
            return [Failed("%s's client does not encrypt: refused (%s)" % (who, flag))] \
                + self._goodbye() + self._end_chat(now)
        if self.peer.username in self.known_keys:
            self._blocked = ("%s's key is pinned, but this chat is unencrypted: a downgrade?"
                             % self.peer.username)
        out = notes + self._connected(now, "unencrypted")
        out.append(Alert("%s's client does not encrypt: anyone on the path can read and"
                         " change this chat" % self.peer.username))
        return out + self._block_alert()

    def _secured(self, now):
        """The handshake is done: check the key against the pin, then connect."""
        name, key = self.peer.username, self.link.remote_key
        verdict = ID.NEW if name not in self.known_keys else \
            ID.KNOWN if self.known_keys[name] == key else ID.CHANGED
        if verdict == ID.NEW and self.strict:
            reason = "refused %s: key %s is not pinned (--strict)" % (name, ID.fingerprint(key))
            return [Failed(reason)] + self._goodbye() + self._end_chat(now)
        if verdict == ID.CHANGED:
            self._blocked = "%s's key has CHANGED: pinned %s, presented %s" % (
                name, ID.fingerprint(self.known_keys[name]), ID.fingerprint(key))
        out = self._connected(now, "encrypted, key %s" % ID.fingerprint(key))
        if verdict == ID.NEW:
            self.known_keys[name] = key
            out += [PinKey(name, key), Notice("first chat with %s: key pinned" % name)]
        return out + self._block_alert()

    def _block_alert(self):
        """The loud warning for a blocked chat (set before connecting, so
        nothing queued slips out), or nothing."""
        if not self._blocked:
            return []
        bar = "@" * 64
        return [Alert("\n".join((
            bar, "WARNING: " + self._blocked,
            "Someone may be impersonating %s. Nothing will be shown or sent" % self.peer.username,
            "until you type /trust (accept it) or /leave.", bar)))]

    def _connected(self, now, security):
        self._enter(State.CONNECTED, now)
        self._last_direct = self._last_ping = now
        self._timers["keepalive"] = now + self.keepalive
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

    def _schedule_link(self):
        deadline = self.link.next_deadline() if self.link is not None else None
        if deadline is None:
            self._timers.pop("link", None)
        else:
            self._timers["link"] = deadline

    def _timer_link(self, now):
        if self.link is None:
            return []
        try:
            frames = self.link.tick(now)
        except LinkFailed as exc:
            reason = "could not secure the chat with %s: %s" % (self.peer.username, exc)
            return [Failed(reason)] + self._end_chat(now)
        self._schedule_link()
        return self._handshake_bytes(frames) if not self.link.ready else \
            [self._peer_bytes(f) for f in frames]

    def _end_chat(self, now):
        """Back to IDLE; tell the relay; report lines that never left."""
        out = [self._to_relay(P.SessionFinished())]
        if self._queue:
            out.append(Notice("%d queued line(s) were not sent" % len(self._queue)))
            self._queue = []
        self.peer = self.target = self.link = self._blocked = None
        self._timers.pop("direct_retry", None)
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

    def _register_msg(self):
        key = ID.encode_key(self.identity.public) if self.identity else None
        return P.Register(self.username, features=self.features, local=self.local, key=key,
                          token=self._token)

    def _send_register(self, now):
        self._timers["register"] = min(now + self._register_rto, self._since + self.register_timeout)
        return [self._to_relay(self._register_msg())]

    def _to_relay(self, msg):
        return Send(P.encode(msg), self.relay_addr)

    def _to_peer(self, msg):
        return self._peer_bytes(self.link.seal(msg) if self.link is not None else P.encode(msg))

    def _reply_bytes(self, data):
        """An answer goes back the way the datagram it answers came."""
        if self._inbound_relayed and not self.peer.via_relay:
            return Send(bytes([RELAYED]) + data, self.relay_addr)
        return self._peer_bytes(data)

    def _handshake_bytes(self, frames):
        """Handshake frames go to every address the peer was heard from
        (only an answer that authenticates picks the path), or the relay."""
        if self.peer.via_relay or len(self.peer.heard) < 2:
            return [self._peer_bytes(f) for f in frames]
        return [Send(f, addr) for f in frames for addr in self.peer.heard]

    def _peer_bytes(self, data):
        """Send *data* to the peer on the current path."""
        if self.peer.via_relay:
            return Send(bytes([RELAYED]) + data, self.relay_addr)
        return Send(data, self.peer.addr)


def _parses(data):
    try:
        P.decode(data)
    except P.RemoteProtocolError:
        return False
    return True
