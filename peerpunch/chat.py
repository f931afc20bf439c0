"""One chat: what the user sees of one partner.

Theory of operation
-------------------
A :class:`Chat` joins one partner's machines: its :class:`~peerpunch.path.Path`
(where datagrams go), its :class:`~peerpunch.securing.Secure` (the link, the
handshake, trust in the partner's key), its :class:`~peerpunch.delivery.Lines`
(line numbers and, on an encrypted link, the secure session's reliable
stream: with a ``stream1`` partner each line is one stream message reported
Delivered or NotDelivered; else DirectMessage datagrams, as with the seed)
and its :class:`~peerpunch.chatfiles.ChatFiles` (file transfers on a second
stream). It holds what the user sees: its state (the path's: PUNCHING,
HANDSHAKING, CONNECTED), the lines held back (:mod:`peerpunch.heldlines`),
the messages that arrive. A line typed while the path is merely suspect goes
on the stream at once (reported within 8 s if the partner is gone); lines
that never left when the chat ends are reported NotDelivered too.

The router passes each datagram's :class:`~peerpunch.path.Origin`. While
punching, the first valid datagram picks the path and starts the link; then
the link opens what authenticates (a RemoteProtocolError drops it, counted),
the path follows the peer, link events are acted on, messages handled.
:class:`EndChat` in what a method returns tells the owner the chat is over;
a bug in one of the chat's timers ends the chat, not the peer.
"""

import logging

from . import identity as ID
from . import protocol as P
from . import securing as SC
from .chatfiles import ChatFiles, sooner
from .delivery import PACKET_SIZE, Lines, ended, refused
from .effects import Log, Send
from .events import GOODBYE_COPIES, Connected, Message, Notice, PeerLeft, State
from .heldlines import Outbox, Withheld
from .link import PING, PONG
from .path import EndChat, HeardAgain, KeepAlive, PathFound
from .secure import is_frame
from .stream import StreamError
from .timers import Timer, earliest, fire


class Chat:
    """One partner's chat: its path, its link, its lines and files."""

    def __init__(self, partner, *, us, path, secure_options, stats, disk=None):
        """*secure_options*: Secure's keyword arguments but features and secret."""
        self.partner = partner
        self.us = us
        self.path = path
        self.secure = None           # the Secure of the current pairing, made at start()
        self.stats = stats
        self.outbox = Outbox(partner)        # our lines, held until the chat can send them
        self.withheld = Withheld(partner)    # the partner's, while blocked on a changed key
        self.closed = False
        self._secure_options = secure_options
        self.lines = Lines(partner)
        self.files = ChatFiles(partner, disk, PACKET_SIZE)   # a second stream: file transfers
        self.link_timer = Timer(self._guarded(self._link_due))
        self.stream_timer = Timer(self._guarded(self._pump))
        for timer in path.timers():          # the path's markers, acted on here
            timer.due = self._acting_on(timer.due)

    @property
    def state(self):
        return self.path.state

    @property
    def peer(self):
        return self.path.peer

    def timers(self):
        """Its path's timers (their markers acted on here), the link's, the streams'."""
        return self.path.timers() + (self.link_timer, self.stream_timer)

    def next_deadline(self):
        return earliest(self.timers())

    def tick(self, now):
        return fire(self.timers(), now)

    def start(self, info, now):
        """Punch toward the partner the relay introduced (again: a new pairing)."""
        secret = bytes.fromhex(info.session) if info.session else b""
        unshown = self.withheld.report("left", self.secure) if self.secure else []  # old pairing's
        self.secure = SC.Secure(self.us, self.partner, features=info.features, secret=secret,
                                **self._secure_options)
        self.link_timer.stop()
        dropped = unshown + self._end_stream()           # a new pairing: a new stream, at keys
        return dropped + self._until_end(self.path.start(info, now), now)

    def reintroduced(self, info, now):
        return self.path.reintroduced(info, now, self.secure)

    def accepts(self, addr, data):
        return self.path.accepts(addr, data, self.secure)

    # -- from the partner

    def received(self, data, origin, now):
        """A datagram from the partner (see the module docstring)."""
        out = []
        if self.state is State.PUNCHING:
            if not is_frame(data) and not _parses(data):
                self.stats["malformed"] += 1
                return []
            self.path.punched(origin)
            out += self._path_found(now)
            if self.closed:                  # refused
                return out
        else:
            early = self.path.early(data, origin, self.secure, now)
            if early is not None:
                return self._until_end(early, now)
        secure = self.secure
        if secure.encrypted and (data == PONG or (data == PING and secure.ready)):
            # a punch probe, or the answer to one of ours, still on its way: harmless
            self.stats["late_probes"] += 1
            return out + [Log(logging.DEBUG, "ignored a late punch %s %s" % (
                "probe" if data == PING else "probe's answer", _source(origin, "from ")))]
        try:
            opened = secure.receive(data, now)
        except P.RemoteProtocolError:       # forged, replayed, or not for this link
            self.stats["dropped"] += 1
            return out + [Log(logging.DEBUG, "dropped a datagram from %s that did not authenticate"
                              % _source(origin, ""))]
        return out + self.opened(opened, origin, now)

    def opened(self, opened, origin, now):
        """What the link let through (an Output): the path follows, link events
        acted on, messages handled (the router's runs of frames come here too)."""
        was_suspect = self.path.suspect
        authentic = bool(opened.messages or opened.packets)   # stream acks prove the path too
        out = self._until_end(self.path.heard(origin, authentic, now), now)
        out += [self.path.reply(f, origin) for f in opened.frames]
        out += self._link_events(opened.events, now)
        if self.closed:
            return out
        self._schedule_link()
        if opened.packets and self.withheld.full(self.secure):
            self.stats["stream_withheld"] += len(opened.packets)   # unacknowledged: not delivered
        elif opened.packets:
            out += self._stream_received(opened.packets, origin, now)
        for msg in opened.messages:
            out += self._deliver(msg, origin, now)
            if self.closed:
                return out
        return out + (self._heard_again(now) if was_suspect else [])

    def _deliver(self, msg, origin, now):
        """One protocol message from the partner."""
        kind = type(msg)
        if kind is P.Ping:
            return [self.path.reply(self._sealed(P.Pong()), origin)]
        if kind is P.DirectMessage:
            return self.withheld.shown([Message(self.partner, msg.content)], self.secure)
        if kind is P.Goodbye:
            return [PeerLeft(self.partner)] + self._end()
        return []

    def spray_received(self, data, origin, now):
        """A datagram on one of the birthday search's sockets."""
        relayed = self.state is not State.PUNCHING
        verdict, out = self.path.spray_received(data, origin.addr, origin.via, now)
        if verdict is None or not self.accepts(origin.addr, data):
            return out
        out += self.received(data, origin, now)
        if verdict == "hit" and relayed and not self.closed and self.peer.via_relay:
            # answer with a probe of our own: a sealed one moves both sides
            secure = self.secure.encrypted and self.secure.ready
            out.append(Send(self.secure.seal(P.Ping()) if secure else PING, origin.addr,
                            origin.via))
        return out

    # -- the link

    def _path_found(self, now):
        """The punch worked (or the relay will carry us): start the link."""
        started = self.secure.start(now)
        notes = [PathFound(self.partner)] + self.path.found(now, self.secure.encrypted)
        if self.secure.encrypted:
            out = self.path.handshake_sends(started.frames)
            self._schedule_link()
            return notes + out
        return notes + self._link_events(started.events, now)

    def _link_events(self, events, now):
        """The link's events: keys agreed (connected), refused or failed (ended); the rest shown."""
        out = []
        for event in events:
            kind = type(event)
            if kind in (SC.Refused, SC.LinkFailed):
                return out + [event] + (self.goodbye() if kind is SC.Refused else []) + self._end()
            if kind is SC.Secured:
                self.path.secured(now)
                self.lines.open()             # the partner opens its own with these keys
                self.files.start(self.secure.features, self.secure)
                out += self._connected(now)
            elif kind is SC.Unencrypted:
                out += self._connected(now)
            out.append(event)
        return out

    def _connected(self, now):
        peer = self.peer
        path = "relayed" if peer.via_relay else "direct"
        key = self.secure.remote_key
        fingerprint = ID.fingerprint(key) if key is not None else None
        return [Connected(peer.username, peer.endpoint, path, now - self.path.started,
                          fingerprint)] + self.flush(now)

    def _schedule_link(self):
        self.link_timer.when = self.secure.next_deadline() if self.secure is not None else None

    def _link_due(self, now):
        ticked = self.secure.tick(now)
        out = self._link_events(ticked.events, now)
        if self.closed:
            return out
        self._schedule_link()
        if not self.secure.ready:
            return out + self.path.handshake_sends(ticked.frames)
        return out + [self.path.send(f) for f in ticked.frames]

    # -- lines

    def up(self):
        """A line typed now is sent now: connected, not blocked, not suspect (unless streamed)."""
        return self.state is State.CONNECTED and self.secure.chat_open and (
            not self.path.suspect or self.lines.carries(self.secure.features))

    @property
    def spoken(self):
        """The user has typed a line into this chat (sent, or held to send)."""
        return self.lines.numbered > 0 or bool(self.outbox.lines)

    def typed(self, text, now):
        """A line for the partner: sent if the chat is up, else held (too long: refused)."""
        too_long = refused(text)
        if too_long or not self.up():
            return too_long or self.outbox.hold(text, self.secure.blocked,
                                                self.state is State.CONNECTED)
        return self.outbox.quiet_notice(self.path.suspect) + self.send_line(text, now)

    def send_line(self, text, now):
        """Send *text*: one stream message, or plain DirectMessage pieces."""
        return self._send(text, now) + self._pump(now)

    def _send(self, text, now):
        if self.lines.carries(self.secure.features):
            self.lines.send(text, now)
            return []                          # the stream's packets follow: _pump
        self.lines.number()
        limit = P.MAX_DATAGRAM - self.secure.overhead - 1    # 1: the RELAYED byte
        return [self.path.send(self._sealed(P.DirectMessage(piece)))
                for piece in P.split_text(text, limit)]

    def post(self, data, now):
        """A group message (bytes) on the stream; what goes out now."""
        if not self.lines.carries(self.secure.features):
            return []
        self.lines.post(data, now)
        return self._pump(now)

    def flush(self, now):
        if self.secure.blocked:
            return []
        out = []
        for text in self.outbox.take():
            out += self._send(text, now)
        return out + self._pump(now)

    def _heard_again(self, now):
        """The peer, suspect, authenticated again: send the lines held meanwhile."""
        self.outbox.told_quiet = False
        if not self.outbox.lines or self.state is not State.CONNECTED or self.secure.blocked:
            return []
        held = Notice("heard_again", name=self.partner, count=len(self.outbox.lines))
        return [held] + self.flush(now)

    def _stream_received(self, packets, origin, now):
        """Authentic stream packets (refused: dropped, counted); file ones answered at the tick."""
        errors, lines = self.files.received_run(packets, now)
        for packet in lines:
            try:
                self.lines.received(packet, now)
            except StreamError as exc:
                errors.append(exc)
        self.stats.update(["stream_dropped"] * len(errors))
        out = [Log(logging.DEBUG, "dropped stream packet from %s: %s" % (_source(origin, ""), e)) for e in errors]
        if not lines:                   # files only: one pass, one ACK per batch read
            self.stream_timer.earlier(now)
            return out
        return out + self._pump(now)

    def pump(self, now):
        """After a file command: what the streams send now."""
        return [] if self.closed or self.secure is None else self._pump(now)

    def _pump(self, now):
        """What the streams send now, sealed, and what they say; their timer set again."""
        relayed, ipv6 = (self.peer.via_relay, ":" in self.peer.addr[0]) if self.peer else (0, 0)
        packets = self.lines.packets(now) + self.files.packets(now, relayed, ipv6)
        out = self.path.send_all(self.secure.seal_packets(packets)) if packets else []
        out += self.withheld.shown(self.lines.events(), self.secure) + self.files.events()
        self.stream_timer.when = sooner(self.lines.next_deadline(), self.files.next_deadline())
        return out

    def _end_stream(self):
        self.stream_timer.stop()
        return self.lines.end() + self.files.end()

    def trust(self, now):
        """/trust: accept a changed key; the held messages, the queued lines."""
        if self.secure is None:
            return [SC.NothingToTrust(self.partner)]
        was_blocked = self.secure.blocked
        trusted = self.secure.trust(now)
        out = trusted.events + [Message(self.partner, m.content) for m in trusted.messages]
        out += self.withheld.report("full", self.secure) if was_blocked else []
        return out + self.flush(now) if was_blocked else out

    def verify(self):
        if self.secure is None or self.state is not State.CONNECTED:
            return SC.NoSafetyCode(self.partner)
        return self.secure.verify()

    # -- ending

    def goodbye(self):
        if self.secure.state is not SC.SecureState.NEW and not self.secure.ready:
            return []                  # nothing we could send would authenticate
        return [self.path.send(self._sealed(P.Goodbye())) for _ in range(GOODBYE_COPIES)]

    def close(self):
        """Over: path and streams stop; lines outstanding or unsent are NotDelivered (ENDED)."""
        self.closed = True
        self.link_timer.stop()
        out = self.withheld.report("left", self.secure) + self.path.close()
        queued = self.outbox.take()
        unsent = self.lines.number(len(queued)) if queued else ()
        return out + ended(self.partner, unsent, self._end_stream())

    def _end(self):
        """Over: every timer stops now; the owner does the rest (and calls close())."""
        self.closed = True
        for timer in self.timers():
            timer.stop()
        return [EndChat(self.partner)]

    def _acting_on(self, due):
        return self._guarded(lambda now: [] if self.closed else self._until_end(due(now), now))

    def _guarded(self, due):
        """A timer of this chat: a bug in it ends this chat (logged, counted), not the peer."""
        def run(now):
            try:
                return due(now)
            except Exception:
                self.stats["internal_errors"] += 1
                logging.getLogger(__name__).exception("the chat with %s failed", self.partner)
                return self._end()
        return run

    def _until_end(self, effects, now):
        """The path's effects, its markers acted on, up to an EndChat."""
        out = []
        for effect in effects:
            kind = type(effect)
            if kind is EndChat:
                return out + self._end()
            if kind is HeardAgain:
                out += self._heard_again(now)
            elif kind is KeepAlive:
                out.append(self.path.send(self._sealed(P.Ping())))
                if effect.also_relayed:        # its own copy: not a replay
                    out.append(self.path.send_relayed(self._sealed(P.Ping())))
            else:
                out.append(effect)
        return out

    def _sealed(self, msg):
        """*msg* as the link sends it (plain before a link is chosen)."""
        if self.secure is None or self.secure.state is SC.SecureState.NEW:
            return P.encode(msg)
        return self.secure.seal(msg)


def _source(origin, prefix):
    if origin.addr is None:
        return "through the relay" if prefix else "the relay"
    return prefix + P.format_endpoint(origin.addr)


def _parses(data):
    try:
        P.decode(data)
    except P.RemoteProtocolError:
        return False
    return True
