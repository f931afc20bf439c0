"""The router's side of group chat: the group machine wired to the chats.

Theory of operation
-------------------
:class:`GroupTable` owns the sans-I/O :class:`~peerpunch.groups.Groups`
and joins it to the router's :class:`~peerpunch.chattable.ChatTable`.
After every input the router passes its effects through :meth:`settled`:
group messages from a partner's stream (GroupData) go to the machine if
that partner's chat is up and can carry groups (else they are dropped,
counted), posts not delivered tell it the partner is gone, and the machine
learns which links are up now (:meth:`links`: encrypted stream chats of
partners that announced ``group1``; for the others, why not: a seed peer,
an unencrypted chat, a client without groups, a blocked key). The
machine's effects are carried out here: Post puts bytes on the partner's
stream (:meth:`Chat.post`), Dial asks the relay for the partner as
/connect does. The commands /invite, /join, /members live here too, and
/leave, /switch reach groups through :meth:`named`.
"""

import logging
import os

from . import features as FT
from . import groupwire as W
from .delivery import GroupData, PostsNotDelivered
from .effects import Log
from .events import NO_ANSWER, Notice, State
from .fields import is_group_name
from .groupfiles import GroupSends
from .groups import Dial, Groups, Post
from .timers import Timer


class GroupTable:
    """The groups of one session, and their links to its chats."""

    def __init__(self, table, *, username, stats, auto_join=False, random_bytes=os.urandom):
        self.table = table
        self.stats = stats
        self.machine = Groups(username, random_bytes=random_bytes, stats=stats,
                              auto_join=auto_join, free=self._free)
        self.timer = Timer(self._due)
        self.sends = GroupSends()     # files sent to a group, followed to their summary

    def _free(self):
        """No conversation with one partner is under way where plain lines go."""
        chat = self.table.current_chat()
        return chat is None or not chat.spoken

    def timers(self):
        return (self.timer,)

    def current_group(self):
        return self.machine.current_group()

    def named(self, name):
        return self.machine.by_name(name) if name else None

    # -- after every input

    def settled(self, effects, now):
        """*effects* with the group events in them acted on, and the
        machine told which links are up now."""
        out, machine = [], []
        if _ACTED_ON.isdisjoint(map(type, effects)):    # a C-speed scan: none for us
            out, effects = list(effects), ()
        for effect in effects:
            kind = type(effect)
            if kind is GroupData:
                machine += self._received(effect, now)
            elif kind is PostsNotDelivered:
                if effect.reason == NO_ANSWER:
                    machine += self.machine.not_delivered(effect.partner, now)
            elif kind is Notice and effect.what in _CHAT_CURRENT and self.current_group():
                continue          # plain lines go to the group: no word of which chat
            else:
                out.append(effect)
        links = self.links()
        if machine or links != self.machine.up:     # else links() would change nothing
            machine += self.machine.links(links, now)
        return self.sends.seen(out + self._carried(machine, now), self.machine.groups)

    def _received(self, event, now):
        if self.links().get(event.partner, "no_chat") is not None:
            self.stats["group_not_linked"] += 1
            return []
        return self.machine.received(event.partner, event.data, now)

    def links(self):
        """partner -> None (its chat carries groups) or why not, for every
        connected chat."""
        return {partner: _why_not(chat) for partner, chat in self.table.chats.items()
                if chat.state is State.CONNECTED and not chat.closed}

    def _carried(self, effects, now):
        """The machine's effects carried out; the rest returned."""
        out = []
        for effect in effects:
            kind = type(effect)
            if kind is Post:
                chat = self.table.chats.get(effect.partner)
                out += chat.post(effect.data, now) if chat is not None else []
            elif kind is Dial:
                out += self._dial(effect.partner, now)
            else:
                out.append(effect)
        self.timer.when = self.machine.next_deadline()
        return out

    def _dial(self, partner, now):
        relay = self.table.relay
        if partner in self.table.chats or partner in relay.requests:
            return []
        if is_group_name(partner):      # a member list's name no chat of ours may have
            return [Log(logging.DEBUG, "not linking to group member %s: a group's name" % partner)]
        return self.table.ask(partner, now, registering=False, for_group=True)

    def _due(self, now):
        return self._carried(self.machine.tick(now), now)

    # -- what the user does

    def typed(self, text, now):
        return self._carried(self.machine.typed(text, now), now)

    def invite(self, name, now):
        """/invite NAME: into the current group, else a new group with the
        current chat's partner."""
        if not name or " " in name:
            return [Notice("usage_invite")]
        group = self.current_group()
        if group is not None:
            return self._carried(self.machine.invite(group, name, now), now)
        chat = self.table.current_chat()
        if chat is None:
            return [Notice("group_no_chat")]
        if name == chat.partner:
            return [Notice("group_already_member", group="this chat", name=name)]
        self.machine.up = self.links()
        return self._carried(self.machine.start(chat.partner, name, now), now)

    def join(self, name, now):
        return self._carried(self.machine.join(name, now), now)

    def leave(self, group, now):
        return self._carried(self.machine.leave(group, now), now)

    def leave_all(self, now):
        return self._carried(self.machine.leave_all(now), now)

    def switch(self, group):
        self.machine.current = group.gid if group is not None else None

    def members(self, name):
        """/members [GROUP]: each member's state, path and round-trip time."""
        group = self.named(name) if name else self.current_group()
        if group is None:
            return [Notice("group_none" if not name else "no_such_chat", name=name)]
        rows = []
        us = [(self.machine.us, "joined")]
        for member, state in us + sorted((n, m.state) for n, m in group.members.items()):
            chat = self.table.chats.get(member)
            path = None
            if member == self.machine.us:
                path = "you"
            elif chat is not None and chat.peer is not None:
                path = "relayed" if chat.peer.via_relay else "direct"
            rtt = chat.lines.rtt if chat is not None else None
            rows.append((member, state, path, rtt))
        return [Notice("group_members", group=group.name, rows=tuple(rows))]


_CHAT_CURRENT = ("now_current", "choose_chat")
_ACTED_ON = frozenset((GroupData, PostsNotDelivered, Notice))


def _why_not(chat):
    """None if *chat* can carry group messages, else why not."""
    secure = chat.secure
    features = secure.features
    if not FT.speaks_extensions(features):
        return "seed"
    if not secure.encrypted:
        return "plain"
    if W.FEATURE not in features or not chat.lines.carries(features):
        return "no_groups"
    if secure.pins.asking:
        return "pending"
    return "blocked" if secure.blocked else None


COMMANDS = {
    "invite": lambda session, arg, now: session.groups.invite(arg, now),
    "join": lambda session, arg, now: session.groups.join(arg or None, now),
    "members": lambda session, arg, now: session.groups.members(arg or None),
}
