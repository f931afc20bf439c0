"""The router's table partner -> Chat: chats begin, end, and which is current.

Theory of operation
-------------------
The router (:class:`~peerpunch.session.PeerSession`) hands a
:class:`ChatTable` what the relay client says about chats (Introduction,
RequestEnded, EndChat); the table makes a :class:`~peerpunch.chat.Chat`
(or pairs one anew), tells the relay client, ends chats, and keeps
``current``, where plain lines go: a chat we asked for (/connect, or the
first when we ask for no one else) or /switch; a chat we did not ask for
never takes them without a word, and a chat dialled for a group
(``for_groups``) never takes them (nor the lines typed for a request).
Lines typed for the name we ask for, before its chat exists, wait in
``lines``: they go to that chat when the relay introduces it, and are
reported when the request ends. For
FORMER_PEER_FOR after a chat ends, what its partner still sends (its last
Goodbye copies) is logged as such, not as a stranger's. The table also
finds the chat a datagram is for (by address, relay channel or birthday
socket); the router decides what to do with it. Methods return effects.
"""

import logging

from .chat import Chat
from .delivery import refused
from .effects import Log
from .events import FORMER_PEER_FOR, MAX_QUEUED, Failed, Notice, State, StoppedWaiting
from .forwarder import CHANNEL_BYTES, RELAYED_TO
from .path import Path
from .protocol import check_person, format_endpoint
from .relayclient import RequestState

ASKING = (RequestState.REQUESTING, RequestState.WAITING)


class ChatTable:
    """partner -> Chat, the current partner, and the lines typed for a request."""

    def __init__(self, relay, *, username, path_options, secure_options, stats):
        """*relay*: the RelayClient; *path_options*, *secure_options*: the
        keyword arguments of each chat's Path and Secure."""
        self.relay = relay
        self.username = username
        self.stats = stats
        self.chats = {}              # partner -> Chat (several once the relay allows it)
        self.current = None          # the partner plain lines go to
        self.pending = None          # a name to ask for once registered
        self.lines = []              # lines typed for the name we ask for, before its chat
        self.former = None           # (addr, name, until): the peer of the chat that just ended
        self.for_groups = set()      # partners dialled for a group, not by the user
        self.blocked = ()            # names the user blocked (/block): never asked for
        self.unanswered = ()         # partners whose chat request awaits /accept (consent)
        self._path_options = path_options
        self._secure_options = secure_options
        self.disk = None             # the shell's disk side for file transfers (None: no files)

    def new_chat(self, partner, request=None):
        """A Chat for *partner*, with its own Path and (at start) Secure; a
        chat *request* (:mod:`peerpunch.consent`) is how its Secure sees the pins."""
        options = self._secure_options if request is None else \
            dict(self._secure_options, pins=request)
        return Chat(partner, us=self.username, path=Path(**self._path_options),
                    secure_options=options, stats=self.stats, disk=self.disk)

    def current_chat(self):
        return self.chats.get(self.current)

    def asked_for(self):
        """The name we ask (or wait) for, or will once registered."""
        req = self._asked()
        return req.target if req is not None else self.pending

    def _asked(self, *states):
        """Our latest request in one of *states* (any, without) that the
        user made: a request dialled for a group is not one."""
        req = self.relay.asking(*states)
        if req is not None and req.target in self.for_groups:
            mine = [r for r in self.relay.requests.values() if r.target not in self.for_groups
                    and (not states or r.state in states)]
            req = mine[-1] if mine else None
        return req

    def timers(self):
        """Every timer; on a tie the chats' run before the request's (a punch
        that gives up sends no last Connect)."""
        chats = sum((chat.timers() for chat in self.chats.values()), ())
        return self.relay.own_timers() + chats + self.relay.request_timers()

    # -- which chat a datagram is for

    def by_address(self, addr):
        """The chats, the one whose partner is at *addr* first."""
        return sorted(self.chats.values(),
                      key=lambda chat: chat.peer is None or chat.peer.addr != addr)

    def by_relayed(self, frame):
        """(chat, datagram) of a relayed *frame*: the chat whose session its
        channel names (RELAYED_TO); in the one-byte form, the one chat the
        relay carries (or may soon carry), else the current one."""
        if frame[0] == RELAYED_TO:
            channel, data = frame[1:1 + CHANNEL_BYTES], frame[1 + CHANNEL_BYTES:]
            return next((c for c in self.chats.values()
                         if c.peer is not None and c.peer.channel == channel), None), data
        relayed = [c for c in self.chats.values() if c.peer is not None and c.peer.via_relay]
        return (relayed[0] if len(relayed) == 1 else self.current_chat()), frame[1:]

    def by_socket(self, via):
        """The chat whose birthday search opened socket *via* (else counted)."""
        for chat in self.chats.values():
            if chat.path.search.owns(via):
                return chat
        self.stats["ignored_strangers"] += 1
        return None

    def ignored(self, data, addr, now):
        """*data* from *addr*, no chat's: logged (the former peer's as such)."""
        if self.former is not None and addr == self.former[0] and now < self.former[2]:
            self.stats["late_from_former_peer"] += 1     # its last Goodbye copies, say
            return [Log(logging.DEBUG, "ignored %d bytes from %s, %s's address: that chat has"
                        " ended" % (len(data), format_endpoint(addr), self.former[1]))]
        self.stats["ignored_strangers"] += 1
        return [Log(logging.DEBUG, "ignored %d bytes from %s (%d so far): not the relay or our peer"
                    % (len(data), format_endpoint(addr), self.stats["ignored_strangers"]))]

    # -- lines typed before a chat exists

    def typed(self, text, state):
        """A line typed with no current chat (the session in *state*): queued
        for the chat we ask for (or will once registered), else refused."""
        if self.chats:                   # several chats, none current: say which
            return [Notice("no_current_chat", names=", ".join(self.chats))]
        asking = self.asked_for() is not None and \
            state in (State.REQUESTING, State.WAITING, State.REGISTERING)
        if refused(text) or not asking:
            return refused(text) or [Notice("no_chat_for_line")]
        if len(self.lines) >= MAX_QUEUED:
            return [Notice("queue_full", count=MAX_QUEUED)]
        self.lines.append(text)
        return [Notice("queued")] if len(self.lines) == 1 else []

    def _unsent(self, what, **names):
        count, self.lines = len(self.lines), []
        return [Notice(what, count=count, **names)] if count else []

    # -- requests

    def ask(self, target, now, registering, for_group=False):
        """/connect: ask the relay for *target* (once registered, if still
        *registering*). Asked *for_group*, its chat never becomes current."""
        if not for_group:
            self.for_groups.discard(target)   # the user asks: it may take plain lines
        refusal = self._refusal(target)
        if refusal is not None:
            return refusal
        if registering:
            self.pending = target
            return []
        if not self.relay.several and self.relay.waits_for() is not None:
            return self.stop_asking(now) + self.ask(target, now, False)
        busy = self._busy(target)
        if busy is not None:
            return [busy]
        self.pending = None
        if for_group:
            self.for_groups.add(target)
        return self.relay.ask(target, now)

    def _refusal(self, target):
        """Why *target* is no name to ask the relay for (effects), or None."""
        try:
            check_person(target)
        except ValueError as exc:           # what the user typed, not the network
            return [Failed("bad_target", target=target, why=str(exc))]
        if target == self.username:
            return [Failed("self")]
        if target in self.blocked:
            return [Notice("is_blocked", name=target)]
        if target in self.relay.waiting_for():
            return [Notice("already_waiting", name=target)]
        if target in self.chats:
            return [Notice("already_chatting", name=target)]
        return None

    def _busy(self, target):
        """Why a request for *target* may not go out now (a Notice), or None."""
        relay = self.relay
        if not relay.several:            # one at a time, and one chat
            held = relay.asking(RequestState.REQUESTING) or len(self.chats) >= relay.max_chats
            return Notice("in_chat") if held else None
        if target in relay.requests:
            return Notice("already_asking", name=target)
        held = len(set(self.chats) | set(relay.requests))
        return Notice("too_many_chats", count=held) if held >= relay.max_chats else None

    # -- chats begin

    def introduced(self, info, now, request=None):
        """The relay introduced us to *info*'s partner: a new chat, a chat
        paired anew, or a repeat. The effects are for the router to act on.
        A new chat that is a *request* takes no lines and is not current."""
        chat = self.chats.get(info.username)
        if chat is not None:
            return self._reintroduced(chat, info, now)
        relay = self.relay
        if len(self.chats) >= relay.max_chats:
            return [Log(logging.INFO, "ignored an introduction to %s during a chat"
                        % info.username)]
        out, single, asked = [], relay.max_chats == 1, self._asked(*ASKING)
        if single and asked is not None and info.username != asked.target:
            first = "first_while_waiting" if relay.waits_for() else "first_while_asking"
            out.append(Notice(first, name=info.username, target=asked.target))
            out += self._unsent("not_sent_for", name=asked.target)   # never for someone else
        chat = self.chats[info.username] = self.new_chat(info.username, request)
        lines_for_it = asked is None or asked.target == info.username or single
        if lines_for_it and info.username not in self.for_groups and request is None:
            chat.outbox.lines, self.lines = self.lines, []
        out += self._made_current(info.username) if request is None else []
        relay.introduced(info.username, now, keep_others=not single)
        return out + self._punch(chat, info, now)

    def _reintroduced(self, chat, info, now):
        if chat.state is not State.CONNECTED and (info.session or "") != chat.peer.secret.hex():
            # the relay paired us anew (say a stale SessionFinished ended the
            # first pairing): its new secret is the one the peer will use
            self.relay.introduced(info.username, now)
            return self._punch(chat, info, now)
        return chat.reintroduced(info, now)

    def _punch(self, chat, info, now):
        self.relay.chat_began(info.username, info.session)
        return chat.start(info, now)

    def _made_current(self, partner):
        """The new chat becomes current if we asked for it or there is none
        and we ask for no one else; else we say how to talk to *partner*.
        Call before the relay client forgets the request."""
        others = self.relay.several and self.relay.requests
        if partner in self.for_groups:
            return []                # the group's notices say what it is for
        if partner in self.relay.requests or (self.current is None and not others):
            self.current = partner
            return []
        return [Notice("incoming_chat", name=partner, current=self.current or "no one")]

    def admitted(self, partner):
        """*partner*'s chat request was accepted: current as a chat we did not ask for."""
        return self._made_current(partner)

    # -- chats and requests end

    def end_chat(self, chat, now):
        """Tell the relay; close the chat; what it still sends for a moment
        is not a stranger's."""
        out = self.relay.chat_finished(chat.partner, now) + chat.close()
        if chat.peer is not None:
            self.former = (chat.peer.addr, chat.partner, now + FORMER_PEER_FOR)
        self.chats.pop(chat.partner, None)
        self.stats["probes"] = 0
        return out + self._after_end(chat.partner)

    def _after_end(self, partner):
        """If the current chat ended, the one chat left becomes current (we
        say so) unless dialled for a group or still asking to be accepted;
        else none is (plain lines refused until /switch)."""
        self.for_groups.discard(partner)
        if self.current != partner:
            return []
        left = list(self.chats)
        self.current = left[0] if len(left) == 1 and left[0] not in self.for_groups and \
            left[0] not in self.unanswered else None
        if self.current is not None:
            return [Notice("now_current", name=left[0], ended=partner)]
        return [Notice("choose_chat", names=", ".join(left))] if left else []

    def end_request(self, target, now):
        """Our request for *target* ended; lines typed for it are reported."""
        latest, out = target == self.asked_for(), self.relay.chat_finished(target, now)
        if target not in self.chats:
            self.for_groups.discard(target)
        if not latest:
            return out               # queued lines are for the latest request the user made
        self.pending = None
        return out + self._unsent("not_sent")

    def leave(self, now, name=None):
        """/leave: end the chat with *name* (else the current chat, or our
        request); we stay registered."""
        if name and name not in self.chats:
            if name in self.relay.requests:
                return self.stop_asking(now, name)
            return [Notice("no_such_chat", name=name)]
        chat = self.chats[name] if name else self.current_chat()
        if chat is not None:
            return chat.goodbye() + [Notice("left", name=chat.partner)] + self.end_chat(chat, now)
        return self.stop_asking(now)

    def leave_all(self, now):
        """/quit: end every chat (saying nothing of where plain lines go)."""
        out, self.current = [], None
        for chat in list(self.chats.values()):
            out += chat.goodbye() + self.end_chat(chat, now)
        return out

    def stop_asking(self, now, target=None):
        """End our request for *target* (else the latest)."""
        req = self.relay.requests.get(target) if target else self._asked()
        if req is None:
            return [Notice("no_chat")]
        said = StoppedWaiting(req.target) if req.waits() else Notice("stopped_asking", name=req.target)
        return self.end_request(req.target, now) + [said]
