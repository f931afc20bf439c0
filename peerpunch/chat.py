"""One chat: what the user sees of one partner.

Theory of operation
-------------------
A :class:`Chat` joins the machines of one partner: its
:class:`~peerpunch.path.Path` (where datagrams go), its
:class:`~peerpunch.trust.Trust` (the link, the handshake and the key), and
what the user sees: its state (the path's: PUNCHING, HANDSHAKING,
CONNECTED), the lines typed before it is up or while its path is suspect
(``queue``, sent when it is up or heard again, reported when it ends), and
the messages that arrive. A slot for the reliable stream
(:mod:`peerpunch.stream`, section 3 of issue 11) sits between the link and
the messages: today a message is one DirectMessage datagram.

For each datagram its owner (the router, :mod:`peerpunch.session`) passes
the :class:`~peerpunch.path.Origin`. The steps of :meth:`Chat.received`:
while punching, the first valid datagram picks the path and the link; the
path answers its own probes; the link opens what authenticates; the path
follows the peer where it proved to be; the handshake's end is checked
against the pinned key; the messages are handled. :class:`EndChat` in what a
method returns tells the owner the chat is over; nothing after it is to be
done.
"""

import logging

from . import protocol as P
from .effects import Log, Send
from .events import (MAX_QUEUED, ChatMessage, Connected, Failed, Notice, PeerLeft, State,
                     GOODBYE_COPIES)
from .link import PING, PONG, LinkFailed
from .path import EndChat, HeardAgain, KeepAlive
from .secure import OVERHEAD as SEALED_OVERHEAD
from .secure import is_frame
from .timers import Timer


class Chat:
    """One partner's chat: its path, its link and trust, its queued lines."""

    def __init__(self, partner, *, path, trust, stats):
        self.partner = partner
        self.path = path
        self.trust = trust
        self.stats = stats
        self.queue = []              # lines typed before the chat was up, or held meanwhile
        self.closed = False
        self.link_timer = Timer(self._link_due)
        for timer in path.timers():          # the path's markers, acted on here
            timer.due = self._acting_on(timer.due)

    @property
    def state(self):
        return self.path.state

    @property
    def peer(self):
        return self.path.peer

    @property
    def link(self):
        return self.trust.link

    def timers(self):
        return self.path.timers() + (self.link_timer,)

    # -- from the relay

    def start(self, info, now):
        """Punch toward the partner the relay introduced (again, with a new
        secret, when a stale SessionFinished ended the first pairing)."""
        self.trust.link = None
        self.link_timer.stop()
        return self._until_end(self.path.start(info, now), now)

    def reintroduced(self, info, now):
        return self.path.reintroduced(info, now, self.link)

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
            early = self.path.early(data, origin, self.link, now)
            if early is not None:
                return self._until_end(early, now)
        link = self.link
        if link.secure and (data == PONG or (data == PING and link.ready)):
            # a punch probe, or the answer to one of ours, still on its way: harmless
            self.stats["late_probes"] += 1
            return out + [Log(logging.DEBUG, "ignored a late punch %s %s" % (
                "probe" if data == PING else "probe's answer", _source(origin, "from ")))]
        dropped = link.dropped
        frames, messages = link.receive(data, now)
        if link.dropped != dropped:
            self.stats["dropped"] += 1
            return out + [Log(logging.DEBUG, "dropped a datagram from %s that did not authenticate"
                              % _source(origin, ""))]
        return out + self._opened(frames, messages, origin, now)

    def _opened(self, frames, messages, origin, now):
        """What the link let through: the path follows, the handshake ends,
        the messages are handled."""
        was_suspect = self.path.suspect
        out = self._until_end(self.path.heard(origin, bool(messages), now), now)
        out += [self.path.reply(f, origin) for f in frames]
        if self.state is State.HANDSHAKING and self.link.ready:
            out += self._secured(now)
            if self.closed:
                return out
        self._schedule_link()
        for msg in messages:
            handler = self._HANDLERS.get(type(msg))
            if handler is not None:
                out += handler(self, msg, origin, now)
                if self.closed:
                    return out
        return out + (self._heard_again() if was_suspect else [])

    def spray_received(self, data, origin, now):
        """A datagram on one of the birthday search's sockets."""
        relayed = self.state is not State.PUNCHING
        verdict, out = self.path.spray_received(data, origin.addr, origin.via, now)
        if verdict is None:
            return out
        if not self.path.accepts(origin.addr, data, self.link):
            return out
        out += self.received(data, origin, now)
        if verdict == "hit" and relayed and not self.closed and self.peer.via_relay:
            # answer with a probe of our own: a sealed one moves both sides
            secure = self.link is not None and self.link.secure and self.link.ready
            out.append(Send(self.link.seal(P.Ping()) if secure else PING, origin.addr, origin.via))
        return out

    def _on_ping(self, msg, origin, now):
        return [self.path.reply(self._sealed(P.Pong()), origin)]

    def _on_pong(self, msg, origin, now):
        return []

    def _on_direct_message(self, msg, origin, now):
        if self.trust.blocked:
            self.trust.hold(msg.content)
            return []
        return [ChatMessage(self.partner, msg.content)]

    def _on_goodbye(self, msg, origin, now):
        return [PeerLeft(self.partner)] + self._end()

    _HANDLERS = {
        P.Ping: _on_ping,
        P.Pong: _on_pong,
        P.DirectMessage: _on_direct_message,
        P.Goodbye: _on_goodbye,
    }

    # -- the link

    def _path_found(self, now):
        """The punch worked (or the relay will carry us): choose the link
        and, for a secure one, start it."""
        link = self.trust.choose_link(self.peer)
        notes = self.path.found(now, link.secure)
        if link.secure:
            out = self.path.handshake_sends(link.start(now))
            self._schedule_link()
            return notes + out
        refusal = self.trust.plain_refusal(self.partner)
        if refusal is not None:
            return [refusal] + self.goodbye() + self._end()
        out = notes + self._connected(now)
        return out + self.trust.plain_alerts(self.partner)

    def _secured(self, now):
        """The handshake is done: check the key against the pin, then connect."""
        refusal, after = self.trust.key_verdict(self.partner)
        if refusal is not None:
            return [refusal] + self.goodbye() + self._end()
        self.path.secured(now)
        return self._connected(now) + after

    def _connected(self, now):
        peer = self.peer
        path = "relayed" if peer.via_relay else "direct"
        return [Connected(peer.username, peer.endpoint, path, now - self.path.started,
                          self.trust.fingerprint())] + self.flush()

    def _schedule_link(self):
        deadline = self.link.next_deadline() if self.link is not None else None
        self.link_timer.when = deadline

    def _link_due(self, now):
        if self.link is None:
            return []
        try:
            frames = self.link.tick(now)
        except LinkFailed as exc:
            return [Failed("not_secured", name=self.partner, why=str(exc))] + self._end()
        self._schedule_link()
        if not self.link.ready:
            return self.path.handshake_sends(frames)
        return [self.path.send(f) for f in frames]

    # -- lines

    def up(self):
        """True if a line typed now is sent now."""
        return self.state is State.CONNECTED and not self.trust.blocked and not self.path.suspect

    def hold_line(self, text):
        """Queue *text* until the chat is up (or heard again)."""
        if len(self.queue) >= MAX_QUEUED:
            return [Notice("queue_full", count=MAX_QUEUED)]
        self.queue.append(text)
        if len(self.queue) > 1:
            return []
        if self.trust.blocked:
            return [Notice("held_blocked")]
        if self.state is State.CONNECTED:      # the path went quiet
            return [Notice("held_quiet", name=self.partner)]
        return [Notice("queued")]

    def send_line(self, text):
        limit = P.MAX_DATAGRAM - (SEALED_OVERHEAD if self.link.secure else 0) - 1  # 1: RELAYED
        return [self.path.send(self._sealed(P.DirectMessage(piece)))
                for piece in P.split_text(text, limit)]

    def flush(self):
        if self.trust.blocked:
            return []
        out = []
        queued, self.queue = self.queue, []
        for text in queued:
            out += self.send_line(text)
        return out

    def _heard_again(self):
        """The peer, silent long enough to be suspect, authenticated again:
        send the lines held meanwhile."""
        self.path.suspect = False
        if not self.queue or self.state is not State.CONNECTED or self.trust.blocked:
            return []
        return [Notice("heard_again", name=self.partner, count=len(self.queue))] + self.flush()

    def trust_key(self):
        """/trust: accept a changed key; the held messages, the queued lines."""
        was_blocked = bool(self.trust.blocked)
        out = self.trust.trust(self.partner)
        return out + self.flush() if was_blocked else out

    # -- ending

    def goodbye(self):
        if self.link is not None and not self.link.ready:
            return []                  # nothing we could send would authenticate
        return [self.path.send(self._sealed(P.Goodbye())) for _ in range(GOODBYE_COPIES)]

    def close(self):
        """The chat is over: the path stops; lines that never left are reported."""
        self.closed = True
        self.link_timer.stop()
        out = self.path.close()
        if self.queue:
            out.append(Notice("not_sent", count=len(self.queue)))
            self.queue = []
        return out

    def _end(self):
        """The chat is over: every timer stops now; the owner does the rest
        (the relay told, the sockets closed, the lines reported: close())."""
        self.closed = True
        for timer in self.timers():
            timer.stop()
        return [EndChat(self.partner)]

    def _acting_on(self, due):
        return lambda now: [] if self.closed else self._until_end(due(now), now)

    def _until_end(self, effects, now):
        """The path's effects, its markers acted on, up to an EndChat."""
        out = []
        for effect in effects:
            kind = type(effect)
            if kind is EndChat:
                return out + self._end()
            if kind is HeardAgain:
                out += self._heard_again()
            elif kind is KeepAlive:
                out.append(self.path.send(self._sealed(P.Ping())))
                if effect.also_relayed:        # its own copy: not a replay
                    out.append(self.path.send_relayed(self._sealed(P.Ping())))
            else:
                out.append(effect)
        return out

    def _sealed(self, msg):
        return self.link.seal(msg) if self.link is not None else P.encode(msg)


def _source(origin, prefix):
    return prefix + P.format_endpoint(origin.addr) if origin.addr else "through the relay" \
        if prefix else "the relay"


def _parses(data):
    try:
        P.decode(data)
    except P.RemoteProtocolError:
        return False
    return True

