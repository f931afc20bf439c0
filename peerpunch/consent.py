"""Consent for chats from strangers, and the names the user blocked.

Theory of operation
-------------------
A chat the relay introduces that we did not ask for (no /connect or
--connect, no group dial, not a member of one of our groups) from a partner
we hold no pin for (never talked to; a seed peer, which has no key, unless
pinned) is a chat *request*, unless the session accepts every chat
(``--wait``). Its chat runs as any other -- punch, handshake, keep-alives,
and its stream acknowledges the partner's lines -- but its Secure sees the
pins through the chat's :class:`Request`, which is *asking*: the chat is
blocked as for a changed key, so the partner's lines are held (MAX_HELD;
after that unacknowledged), nothing of ours goes out, no file or group
message goes either way, and a new key is not pinned (kept for the answer).
The partner's Connected, Secured, Unencrypted and PinKey are held here,
and its group messages (MAX_HELD: an invitation, say) for the groups;
in place of its Connected the user is asked (Notice ``chat_request``), and
a question unanswered for REQUEST_FOR counts as declined.

/accept: the key is pinned, the held events and lines shown, the chat may
take plain lines. /decline (or no answer): the held lines are dropped, a
Goodbye goes, the chat ends (the partner reads that we left).

Blocked names (/block, at most MAX_BLOCKED, for the rest of the run): an
open chat or request with the name ends, its invitations are dropped, its
later introductions are ignored without a word (no chat: its punch finds no
one, as if we were away) and /connect or a group dial to it is refused.
"""

import logging

from . import securing as SC
from .delivery import GroupData
from .effects import Log
from .events import MAX_HELD, Alert, Connected, Message, Notice, PinKey
from .protocol import check_username, is_group_name
from .timers import Timer

REQUEST_FOR = 60.0        # s: a question unanswered this long declines the request
MAX_BLOCKED = 1000        # names blocked at most
HELD = (Connected, SC.Secured, SC.Unencrypted, PinKey)


class Request:
    """One chat request: the pins as its chat's Secure sees them. While
    *asking*, the chat is blocked and a new key is kept, not pinned."""

    def __init__(self, partner, pins):
        self.partner = partner
        self.pins = pins
        self.asking = True
        self.asked_at = None      # when the user was asked (its chat connected)
        self.held = []            # the partner's events, shown on /accept
        self.posts = []           # its group messages (an invitation), handled on /accept
        self.key = None           # a new key, pinned on /accept
        self.counted = 0          # the partner's lines held, as last logged

    def get(self, name):
        return self.pins.get(name)

    def verdict(self, name, key):
        return self.pins.verdict(name, key)

    def record(self, name, key):
        if self.asking:
            self.key = key
        else:
            self.pins.record(name, key)

    def hold(self, event):
        """Keep *event* (the latest of its kind) for the answer."""
        self.held = [e for e in self.held if type(e) is not type(event)] + [event]


class Consents:
    """The chat requests and the blocked names of one session."""

    def __init__(self, table, pins, *, ask, member):
        """*table*: the ChatTable; *pins*: the shared Pins; *ask*: ask before
        a stranger's chat (else accept it); *member*: name -> True if it is
        in one of our groups."""
        self.table = table
        self.pins = pins
        self.ask = ask
        self.member = member
        self.requests = {}            # partner -> Request
        self.blocked = set()
        self.timer = Timer(self._due)

    def timers(self):
        return (self.timer,)

    def asked(self):
        """The names whose request the user was asked about, in order."""
        return [name for name, r in self.requests.items() if r.asked_at is not None]

    def pending(self, name):
        request = self.requests.get(name)
        return request is not None and request.asking

    # -- the relay's introductions

    def introduced(self, info, now):
        """The relay introduced *info*'s partner: a chat (a request if a
        stranger's), or nothing if the name is blocked."""
        name = info.username
        if name in self.table.chats:
            return self.table.introduced(info, now)
        if name in self.blocked or is_group_name(name):
            self.table.stats["blocked_introductions"] += 1
            why = "blocked" if name in self.blocked else "a group's name, not a person's"
            return [Log(logging.INFO, "ignored an introduction to %s: %s" % (name, why))]
        request = None
        if self._stranger(name):
            request = self.requests[name] = Request(name, self.pins)
        return self.table.introduced(info, now, request)

    def _stranger(self, name):
        table = self.table
        asked = name in table.relay.requests or name in table.for_groups or name == table.pending
        return self.ask and not asked and self.pins.get(name) is None and not self.member(name)

    # -- after every input

    def settled(self, effects, now):
        """*effects* with a requesting partner's events held (its Connected
        becomes the question); requests whose chat ended forgotten."""
        if not self.requests:
            return effects
        out = []
        for effect in effects:
            out += self._seen(effect, now)
        for name in [n for n in self.requests if n not in self.table.chats]:
            del self.requests[name]
        self._schedule()
        return out + self._counted()

    def _counted(self):
        """A log line (-v) when more of a requesting partner's lines are held."""
        out = []
        for name, request in self.requests.items():
            secure = self.table.chats[name].secure
            count = secure.held_count() if secure is not None else 0
            if count != request.counted:
                request.counted = count
                out.append(Log(logging.DEBUG, "%d line(s) from %s held until /accept or"
                               " /decline" % (count, name)))
        return out

    def _seen(self, effect, now):
        kind = type(effect)
        if kind in HELD:
            name = effect.username if kind in (Connected, PinKey) else effect.partner
            request = self.requests.get(name)
            if request is not None and request.asking:
                request.hold(effect)
                if kind is not Connected or request.asked_at is not None:
                    return []
                request.asked_at = now
                return [Notice("chat_request", name=name)]
        elif kind is GroupData and self.pending(effect.partner):
            posts = self.requests[effect.partner].posts
            if len(posts) < MAX_HELD:
                posts.append(effect)
            return []
        elif kind is Alert and effect.what == "unshown_left" and \
                self.pending(effect.fields["name"]):
            return [Notice("request_unshown", name=effect.fields["name"],
                           count=effect.fields["count"])]
        return [effect]

    def _schedule(self):
        due = [r.asked_at + REQUEST_FOR for r in self.requests.values() if r.asked_at is not None]
        self.timer.when = min(due) if due else None

    def _due(self, now):
        out = []
        for name in self.asked():
            if self.requests[name].asked_at + REQUEST_FOR <= now:
                out += self.decline(name, now, "chat_request_expired")
        self._schedule()
        return out

    # -- the answers

    def accept(self, name, now):
        """/accept NAME: the held events, the key pinned, the held lines shown."""
        request, chat = self.requests.pop(name), self.table.chats[name]
        request.asking = False
        if request.key is not None:
            self.pins.record(name, request.key)
        out = [Notice("chat_accepted", name=name)] + request.held
        if chat.secure is not None:
            out += [Message(name, msg.content) for msg in chat.secure.release()
                    if hasattr(msg, "content")]
        if chat.withheld.unshown:
            out.append(Notice("request_unshown_full", name=name, count=chat.withheld.unshown,
                              limit=MAX_HELD))
            chat.withheld.unshown = 0
        self._schedule()
        return out + self.table.admitted(name) + request.posts + chat.pump(now)

    def decline(self, name, now, what="chat_declined"):
        """/decline NAME (or no answer: *what* says which): the held lines
        dropped, a Goodbye, the chat ended."""
        self.requests.pop(name, None)
        chat = self.table.chats.get(name)
        if chat is None:
            return []
        if chat.secure is not None:
            chat.secure.release()
            chat.withheld.unshown = 0
        out = chat.goodbye() if chat.secure is not None else []
        out += self.table.end_chat(chat, now)
        self._schedule()
        return out + ([Notice(what, name=name, seconds=REQUEST_FOR)] if what else [])

    def block(self, name, now, invites):
        """/block NAME: refused for the rest of the run (its chat or request
        ends, its invitations in *invites* dropped); /block alone: the list."""
        if not name:
            names = ", ".join(sorted(self.blocked))
            return [Notice("blocked_list" if names else "blocked_none", names=names)]
        try:
            check_username(name)
        except ValueError as exc:
            return [Notice("usage_block", why=str(exc))]
        if name == self.table.username or name in self.blocked:
            return [Notice("block_self" if name == self.table.username else "already_blocked",
                           name=name)]
        if len(self.blocked) >= MAX_BLOCKED:
            return [Notice("block_full", count=MAX_BLOCKED)]
        self.blocked.add(name)
        for gid in [gid for gid, invite in invites.items() if invite.by == name]:
            del invites[gid]
        if name in self.requests:
            out = self.decline(name, now, None)
        elif name in self.table.chats or name in self.table.relay.requests:
            out = self.table.leave(now, name)
        else:
            out = []
        return out + [Notice("blocked", name=name)]
