"""The peer's router: the relay client and the chats, without sockets, threads or clocks.

Theory of operation
-------------------
The shell feeds :class:`PeerSession` what happens (``datagram_received(data,
addr, now, via)``, ``handle_line(text, now)``, ``tick(now)``) and carries
out the effects each call returns: Send, Log and the events of
:mod:`peerpunch.events` (which also draws the states). ``next_deadline()``
says when ``tick`` is next due. It owns one
:class:`~peerpunch.relayclient.RelayClient` and a
:class:`~peerpunch.chattable.ChatTable` (partner -> Chat, each with its own
Path and Secure) and only routes: each datagram goes with an explicit
:class:`~peerpunch.candidates.Origin` ``(addr, via, relayed)`` to the chat
that opened socket *via*, the chat a relayed frame's channel names, the
relay client, or the chat at (or that may take: punching, roaming) its
address; anything else is ignored. It acts on the machines' events for it
(Introduction, RequestEnded, PathFound, EndChat) and passes the rest on.
"""

import collections
import logging
import os
import random
import traceback

from . import commands
from . import families as F
from . import protocol as P
from .birthday import SearchHistory
from .chatlist import ChatListWatch
from .chattable import ChatTable
from .consent import Consents
from .filewire import FEATURE as FILES_FEATURE
from .effects import Log, Send  # noqa: F401 -- Send re-exported
from .events import (  # noqa: F401 -- re-exported: callers import them from here
    CONNECT_RETRY, CONNECT_TIMEOUT, DIRECT_RETRY, DIRECT_RETRY_FAST_FOR, DIRECT_RETRY_SLOW,
    FALLBACK_AFTER, GOODBYE_COPIES, IN_CHAT, KEEPALIVE, LOST_AFTER_INTERVALS, MAX_HEARD,
    MAX_HELD, MAX_QUEUED, NUDGE_EVERY, PUNCH_INTERVAL, PUNCH_TIMEOUT, REGISTER_RTO,
    REGISTER_RTO_MAX, REGISTER_TIMEOUT, RELAY_PROBE_AFTER, REREGISTER_INTERVAL, REREGISTER_RETRY,
    SUSPECT_AFTER, Alert, ChatMessage, Closed, ConnectionLost, Connected, Failed, Notice,
    PeerLeft, PinKey, Registered, State, StoppedWaiting)
from .forwarder import RELAYED_TO, is_relay_frame
from .grouptable import GroupTable
from .groupwire import FEATURE as FEATURE_GROUP
from .path import RELAYED_ORIGIN, EndChat, Origin, PathFound
from .registration import RelayAuth  # noqa: F401 -- re-exported
from .relayclient import (WANT_CHATS, Introduction, RelayClient,  # noqa: F401 -- WANT_CHATS
                          RelayState, RequestEnded, RequestState)
from .secure import DATA_BYTE as DATA
from .securing import Pins, SecureState
from .timers import earliest, fire


class PeerSession:
    """One user's client: the relay client, the chats, the commands."""

    def __init__(self, username, relay_addr, *, target=None, local=(), keepalive=KEEPALIVE,
                 punch_timeout=PUNCH_TIMEOUT, register_timeout=REGISTER_TIMEOUT,
                 identity=None, backend=None, known_keys=None, strict=False,
                 require_encryption=False, rng=None, families=None, random_bytes=os.urandom,
                 max_chats=WANT_CHATS, auto_join=False, disk=None, ask_strangers=False):
        """*target*: a name to ask for once registered (else wait); *local*:
        our LAN endpoints (candidates); *identity* and a crypto *backend*
        enable encryption with peers that offer it; *known_keys*: name ->
        pinned key; *strict*: refuse peers with no pinned key;
        *require_encryption*: refuse peers that cannot encrypt; *rng*: picks
        the birthday search's ports; *random_bytes*: our nonce for the relay;
        *families*: what our socket reaches (4, 6; default the relay's);
        *max_chats*: how many chats at once we ask the relay for;
        *auto_join*: join the groups we are invited to (``--wait``); *disk*:
        the shell's disk side for file transfers (:mod:`peerpunch.filedisk`;
        None: we take no files); *ask_strangers*: a chat we did not ask for
        from a partner with no pin waits for /accept (:mod:`peerpunch.consent`)."""
        self.username = P.check_username(username)
        self.identity = identity
        self.stats = collections.Counter()
        local = tuple(e for e in map(P.format_endpoint, local)
                      if P.is_lan_endpoint(e))[:P.MAX_LOCAL_CANDIDATES] or None
        families = tuple(families or (F.family(relay_addr),))
        rng = rng if rng is not None else random.Random()
        features = _features(identity, families, disk)
        self.relay = RelayClient(self.username, relay_addr, features=features,
                                 local=local, identity=identity, keepalive=keepalive,
                                 register_timeout=register_timeout, rng=rng,
                                 random_bytes=random_bytes, stats=self.stats, want_chats=max_chats)
        paths = dict(relay=self.relay, families=families, local=local, keepalive=keepalive,
                     punch_timeout=punch_timeout, rng=rng, stats=self.stats,
                     history=SearchHistory())
        pins = Pins(known_keys)
        secures = dict(identity=identity, backend=backend, pins=pins, strict=strict,
                       require_encryption=require_encryption)
        self.table = ChatTable(self.relay, username=self.username, stats=self.stats,
                               path_options=paths, secure_options=secures)
        self.table.disk = self.disk = disk
        self.chats = self.table.chats    # partner -> Chat
        self.table.pending = target      # a name to ask for once registered
        self.groups = GroupTable(self.table, username=self.username, stats=self.stats,
                                 auto_join=auto_join, random_bytes=random_bytes)
        self.consent = Consents(self.table, pins, ask=ask_strangers, member=self._member)
        self.table.blocked = self.consent.blocked
        self.table.unanswered = self.consent.requests
        self.listing = ChatListWatch(self)
        self._moved = False          # the router acted on an event that moves a chat
        self._closed = False

    def _member(self, name):
        return any(name in group.members for group in self.groups.machine.groups.values())

    @property
    def state(self):
        """The session's State, composed from the relay client's and the current chat's."""
        if self._closed or self.relay.state is RelayState.CLOSED:
            return State.CLOSED
        if self.relay.state is RelayState.REGISTERING:
            return State.REGISTERING
        chat = self.table.current_chat()
        if chat is not None:
            return chat.state
        req = self.relay.asking(RequestState.REQUESTING, RequestState.WAITING)
        return State(req.state.value) if req is not None else State.IDLE

    # -- inputs

    def start(self, now):
        """Begin registering; call once."""
        return self._done(self._acted_on(self.relay.start(now), now), now)

    def connect(self, target, now):
        """Ask the relay for *target* (now, or once registered)."""
        return self.table.ask(target, now, registering=self.state is State.REGISTERING)

    def handle_line(self, line, now):
        """A line the user typed: a command (:mod:`peerpunch.commands`) or a chat line."""
        return self._done(commands.handle_line(self, line, now), now)

    def send_text(self, text, now):
        """A chat line for the current chat (blanks: nothing is sent)."""
        if not text or text.isspace():
            return []
        if self.groups.current_group() is not None:
            return self.groups.typed(text, now)
        chat = self.table.current_chat()
        return chat.typed(text, now) if chat is not None else self.table.typed(text, self.state)

    def quit(self, now):
        """Say goodbye to the peer and close for good."""
        if self.state is State.CLOSED:
            return []
        out = self.groups.leave_all(now) + self.table.leave_all(now) + self.relay.quit(now)
        self._closed = True
        return self.listing.after(out, True) + [Closed(0, "bye")]

    def tick(self, now):
        """Run whatever timers are due, soonest first."""
        out = fire(self._timers(), now, lambda effects: self._acted_on(effects, now))
        return self._done(out, now, look=False)

    def next_deadline(self):
        """When tick() is next due, or None."""
        return earliest(self._timers())

    def _timers(self):
        return self.table.timers() + self.groups.timers() + self.consent.timers()

    def _done(self, effects, now, look=True):
        """After a call: the effects settled by the groups and the chat
        requests, and a ChatList if the chats changed (:mod:`peerpunch.chatlist`)."""
        out = self.groups.settled(self.consent.settled(effects, now), now)
        look, self._moved = look or self._moved, False
        return self.listing.after(out, look)

    # -- routing

    def datagram_received(self, data, addr, now, via=0):
        """A datagram from *addr* on our socket *via* (0: our own, else one
        opened by an OpenSocket effect), to the machine it is for."""
        return self._done(self._datagram(data, addr, now, via), now, look=False)

    def datagrams_received(self, batch, now, via=0):
        """Several datagrams read at once from socket *via*, ``(data, addr)``
        each: as datagram_received each in turn (one refused is dropped,
        logged), except that a run of sealed DATA frames from a connected
        chat's partner is opened together and its chat hears of them once.
        A datagram (or run) that raises anything else -- a bug -- is
        dropped alone with an ERROR Log: the others' effects are kept."""
        out, i = [], 0
        while i < len(batch):
            data, addr = batch[i]
            chat = self._secure_chat(data, addr, via)
            frames = [data] if chat is None else _run_from(batch, i, addr)
            try:
                out += self._dropping(data, addr, now, via) if chat is None else \
                    self._acted_on(self._run(chat, frames, addr, now), now)
            except Exception:                   # a bug: these datagrams only are lost
                out.append(_internal_error(len(frames), addr))
            i += len(frames)
        return self._done(out, now, look=False)

    def _secure_chat(self, data, addr, via):
        """The chat a sealed DATA frame from *addr* is for, if that chat's
        link is up and its partner is right there; else None."""
        if via or data[:1] != DATA or self.state is State.CLOSED or addr == self.relay.addr:
            return None
        for chat in self.table.chats.values():
            if chat.peer is not None and chat.peer.addr == addr:
                up = chat.state is State.CONNECTED and not chat.closed
                return chat if up and chat.secure.state is SecureState.SECURE and \
                    chat.secure.ready else None
        return None

    def _run(self, chat, frames, addr, now):
        origin = Origin(addr, 0, False)
        opened, refused = chat.secure.open_run(frames, now)
        out = chat.opened(opened, origin, now) if opened.messages or opened.packets else []
        if opened.packets:
            out += chat.pump(now)         # the run's one ACK and data, not a timer's later
        for data in refused:              # another chat may take it (roaming), as one by one
            out += self._dropping(data, addr, now, 0)
        return out

    def _dropping(self, data, addr, now, via):
        try:
            return self._datagram(data, addr, now, via)
        except P.RemoteProtocolError as exc:
            return [Log(logging.DEBUG, "dropped a datagram from %s: %s" % (addr, exc), "dropped")]

    def _datagram(self, data, addr, now, via):
        if self.state is State.CLOSED:
            return []
        if via:
            chat = self.table.by_socket(via)
            return [] if chat is None else self._acted_on(
                chat.spray_received(data, Origin(addr, via, False), now), now)
        if addr == self.relay.addr and is_relay_frame(data):
            return self._relayed(data, now)
        if self.relay.is_stun_for_us(data, addr):
            return self._acted_on(self.relay.stun_received(data, addr, now), now)
        if addr != self.relay.addr:
            return self._from_peer(data, Origin(addr, 0, False), now)
        return self._acted_on(self.relay.datagram_received(data, now), now)

    def _relayed(self, data, now):
        """A relayed frame, to its chat (:meth:`ChatTable.by_relayed`)."""
        if data[0] != RELAYED_TO and self.relay.several:    # such a relay says whose
            self.stats["forged_relayed"] += 1
            return []
        chat, data = self.table.by_relayed(data)
        if chat is None:
            self.stats["ignored_relayed"] += 1
            return self.relay.nudge(now)
        return self._acted_on(chat.received(data, RELAYED_ORIGIN, now), now)

    def _from_peer(self, data, origin, now):
        """To the chat whose partner is at that address, else to one that
        may take it (punching: another port of the partner's IP; roaming)."""
        dropped, out = self.stats["dropped"], None
        for chat in self.table.by_address(origin.addr):   # a roamed sealed frame: its chat
            if chat.accepts(origin.addr, data):
                out = chat.received(data, origin, now)
                if self.stats["dropped"] == dropped:
                    return self._acted_on(out, now)
                self.stats["dropped"] = dropped          # not this chat's: one drop in all
        if out is not None:
            self.stats["dropped"] += 1
            return out
        return self.table.ignored(data, origin.addr, now)

    def _acted_on(self, effects, now):
        """The machines' effects, with their events for us acted on."""
        if _ACTED_ON.isdisjoint(map(type, effects)):   # a C-speed scan: none for us
            return list(effects)
        out = []
        for effect in effects:
            kind = type(effect)
            self._moved = self._moved or kind in _MOVES
            if kind is Introduction:
                out += self._acted_on(self.consent.introduced(effect.info, now), now)
            elif kind is RequestEnded:
                out += self.table.end_request(effect.target, now)
            elif kind is PathFound:
                self.relay.settled(effect.partner, now)
            elif kind is EndChat:
                chat = self.chats.get(effect.partner)
                out += self.table.end_chat(chat, now) if chat is not None else []
            else:
                out.append(effect)
                if kind is Registered:
                    pending = self.table.pending
                    out += self.connect(pending, now) if pending else [Notice("idle")]
        return out


_MOVES = (Introduction, RequestEnded, PathFound, EndChat)
_ACTED_ON = frozenset(_MOVES + (Registered,))


def _run_from(batch, i, addr):
    """The sealed DATA frames from *addr* in *batch* from *i* on, in a row."""
    frames = [batch[i][0]]
    for data, other in batch[i + 1:]:
        if other != addr or data[:1] != DATA:
            break
        frames.append(data)
    return frames


def _internal_error(count, addr):
    """The Log of a bug met on *count* datagrams from *addr* (the shell's words for it)."""
    return Log(logging.ERROR, "internal error on %d datagram%s from %s (dropped)\n%s" % (
        count, "" if count == 1 else "s", addr, traceback.format_exc().rstrip()), "internal")


def _features(identity, families, disk=None):
    features = P.SECURE_FEATURES + (FEATURE_GROUP,) if identity else P.OUR_FEATURES
    features += (FILES_FEATURE,) if identity and disk is not None else ()
    return features + ((P.FEATURE_DUAL_STACK,) if set(families) == set(F.BOTH) else ())
