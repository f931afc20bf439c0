"""Group chat: the groups we are in, their members, and their lines.

Theory of operation
-------------------
A group is a full mesh of pairwise chats: every member holds an encrypted
stream chat (its own path, Noise keys checked against the TOFU pins, and
reliable stream) with every other member, and everything about the group
travels as :mod:`peerpunch.groupwire` messages on those streams. Nothing is
forwarded: a line goes from its sender to each member on their pairwise
stream, so it arrives once and in the sender's order; the receiver still
drops a ``seq`` not above the last it showed from that sender (dedupe by
sender, group and seq).

:class:`Groups` is sans-I/O. Its owner (:mod:`peerpunch.grouptable`) tells
it which partners' links are up (:meth:`links`: partner -> None when the
link can carry groups, else why not), what a partner sent
(:meth:`received`) and that a partner's group messages were not delivered
(:meth:`not_delivered`); it returns effects: :class:`Post` (put these bytes
on the partner's stream), :class:`Dial` (open a chat with the partner, as
/connect does), :class:`GroupMessage` and Notices for the console.

Membership rule (the whole design and wire form: docs/groups.md): we take a
group message from a peer only if it came on our own pairwise stream with
it and the peer is in the list announced to us (GroupJoined from an INVITED
member, all else from a JOINED one); others are held for HOLD_FOR, then
refused. A member whose chat with us ends is gone for us; one whose group
messages are not delivered in time is gone, and we tell the others. A group
the user did not ask for never takes the plain lines of a conversation under
way. All state is bounded (MAX_GROUPS, MAX_INVITES, groupwire.MAX_MEMBERS,
groupstate's MAX_HELD and MAX_QUEUED).
"""

import logging

from . import groupwire as W
from .effects import Log
from .events import Notice
from .groupstate import (  # noqa: F401 -- constants and effects re-exported
    HOLD_FOR, INVITE_FOR, INVITED, JOIN_WITHIN, JOINED, LINK_WITHIN, MAX_GROUPS, MAX_GROUPS_FROM,
    MAX_HELD, MAX_HELD_FROM, MAX_INVITES, MAX_QUEUED, Dial, Group, GroupMessage, Held, Invitations,
    Invite, Member, Outgoing, Post, Queues, invitation_refused, unique_name)


class Groups:
    """Every group we are in, our invitations, and what waits for a link."""

    def __init__(self, us, *, random_bytes, stats, auto_join=False, free=lambda: True):
        """*free*: True while plain lines go to no conversation under way."""
        self.us = us
        self.auto_join = auto_join
        self._free = free
        self.stats = stats
        self.groups = {}             # gid -> Group
        self.invites = Invitations()  # gid -> Invite: those we may /join
        self.pending = Outgoing()    # our invitations waiting for the invitee's link
        self.up = {}                 # partner -> None (carries groups) or why not
        self.outbox = Queues()       # what waits for a partner's chat to come up
        self.held = Held()           # messages from peers not yet announced
        self.current = None          # gid plain lines go to
        self._random_bytes = random_bytes

    # -- lookups

    def by_name(self, name):
        return next((g for g in self.groups.values() if g.name == name), None)

    def current_group(self):
        return self.groups.get(self.current)

    def _unique_name(self, name):
        taken = {g.name for g in self.groups.values()} | {i.name for i in self.invites.values()}
        return unique_name(name, taken)

    # -- what the user does

    def start(self, partner, invitee, now):
        """/invite *invitee* in the chat with *partner*: a new group of the
        three (the partner is told, and is in it at once)."""
        refusal = self._cannot_link(partner)
        if refusal:
            return refusal
        if len(self.groups) >= MAX_GROUPS:
            return [Notice("group_too_many", count=MAX_GROUPS)]
        gid = self._random_bytes(8).hex()
        group = self.groups[gid] = Group(gid, self._unique_name("#%s-%s" % (self.us[:26], gid[:4])))
        group.members[partner] = Member(JOINED, now)
        self.current = gid
        out = [Post(partner, W.encode(W.GroupStart(gid, group.name, [self.us, partner])))]
        out.append(Notice("group_started", group=group.name, name=partner))
        return out + self.invite(group, invitee, now)

    def invite(self, group, invitee, now):
        """/invite *invitee* into *group* (once its chat is up and can carry it)."""
        if invitee == self.us or invitee in group.members:
            return [Notice("group_already_member", group=group.name, name=invitee)]
        if len(group.members) + 1 >= W.MAX_MEMBERS:
            return [Notice("group_full", group=group.name, count=W.MAX_MEMBERS)]
        if not self.pending.add(group.gid, invitee, now):
            return []
        out = [] if invitee in self.up else [Dial(invitee)]
        return out + self._invite_linked(now)

    def join(self, name, now, asked=True):
        """/join [NAME]: accept the invitation to NAME (else the latest).
        Plain lines go to the group if the user *asked* (or they went nowhere)."""
        invite = self.invites.named(name)
        if invite is None:
            return [Notice("group_no_invite", group=name or "")]
        del self.invites[invite.gid]
        if len(self.groups) >= MAX_GROUPS:
            return [Notice("group_too_many", count=MAX_GROUPS)]
        group = self.groups[invite.gid] = Group(invite.gid, invite.name, invite.by)
        out = []
        for member in invite.members:
            if member != self.us:
                group.members[member] = Member(JOINED, now)
                group.owed.add(member)
                out += [] if member in self.up else [Dial(member)]     # the joiner dials
        current = self._take_lines(group, asked)
        out += self._hellos()
        return out + [Notice("group_you_joined", group=group.name, current=current,
                             names=", ".join(sorted(group.members)))] + \
            self._release(group, None, now)

    def typed(self, text, now):
        """A line for the current group: one GroupLine to each joined member."""
        group = self.current_group()
        if group is None:
            return [Notice("group_none")]
        if len(text.encode("utf-8", "replace")) > W.MAX_TEXT:
            return [Notice("too_long", limit=W.MAX_TEXT // 1024)]
        group.seq += 1
        msg, out = W.GroupLine(group.gid, group.seq, text), []
        for member in group.joined():
            out += self._post(member, msg, now)
        return out or [Notice("group_alone", group=group.name)]

    def leave(self, group, now):
        """/leave GROUP: the others are told; the group is forgotten."""
        out = []
        for member in group.joined():
            out += self._post(member, W.GroupLeft(group.gid, self.us), now)
        self._forget(group)
        return out + [Notice("group_you_left", group=group.name)]

    def leave_all(self, now):
        out = []
        for group in list(self.groups.values()):
            out += self.leave(group, now)[:-1]
        return out

    # -- what the partners' links do

    def links(self, up, now):
        """*up*: partner -> None (its chat is up and can carry groups) or
        why not (its chat is up, and cannot). Queued messages go out on the
        links that came up; members whose link went away are gone."""
        before, self.up = self.up, dict(up)
        out = []
        for partner in before:
            if partner not in up:
                out += self.gone(partner, "ended", now)
        out += self._hellos()
        for partner, why in up.items():
            if why is None:
                out += [Post(partner, data) for data in self.outbox.take(partner)]
        return out + self._invite_linked(now)

    def _hellos(self):
        """GroupJoined (asking for an answer; naming the members we know) to
        each member we owe it whose chat is up: before any line of ours to it."""
        return [Post(member, W.encode(W.GroupJoined(group.gid, False, group.others(member))))
                for group in self.groups.values() for member in group.take_owed(self.up)]

    def not_delivered(self, partner, now):
        """Group messages to *partner* were not delivered in time: gone."""
        return self.gone(partner, "no_answer", now)

    def gone(self, partner, why, now):
        """*partner*'s chat ended (each member sees its own end), or it
        stopped answering (the others are told: they may not have typed)."""
        self.outbox.take(partner)
        out = []
        for group in list(self.groups.values()):
            if partner in group.members:
                out += self._remove(group, partner, Notice(
                    "group_gone", group=group.name, name=partner, why=why),
                    tell=why == "no_answer", now=now)
        return out

    def _cannot_link(self, partner):
        why = self.up.get(partner, "no_chat")
        return [] if why is None else [Notice("group_cannot", name=partner, why=why)]

    def _invite_linked(self, now):
        """Pending invitations whose invitee's chat is up: sent, or refused."""
        out = []
        for gid, invitee in self.pending.take_linked(self.up):
            group = self.groups.get(gid)
            if group is not None and invitee not in group.members:
                out += self._cannot_link(invitee) or self._send_invite(group, invitee, now)
        return out

    def _send_invite(self, group, invitee, now):
        out = []
        for member in group.joined():
            out += self._post(member, W.GroupAdded(group.gid, invitee), now)
        group.members[invitee] = Member(INVITED, now)
        members = [self.us] + group.joined() + [invitee]
        out.append(Post(invitee, W.encode(W.GroupInvite(group.gid, group.name, members))))
        return out + [Notice("group_inviting", group=group.name, name=invitee)]

    def _post(self, partner, msg, now):
        """*msg* to *partner*: now if its link is up, else queued."""
        data = W.encode(msg)
        if self.up.get(partner, "no_chat") is None:
            return [Post(partner, data)]
        if not self.outbox.put(partner, data, now):
            self.stats["group_queue_full"] += 1
        return []

    # -- what the partners send

    def received(self, sender, data, now):
        """A group message from *sender* on its pairwise stream."""
        try:
            msg = W.decode(data)
        except W.GroupWireError:
            self.stats["group_malformed"] += 1
            return []
        return self._handle(sender, msg, now)

    def _handle(self, sender, msg, now):
        kind = type(msg)
        if kind in (W.GroupStart, W.GroupInvite):
            return self._invited(sender, msg, now)
        group = self.groups.get(msg.group)
        if group is None:                 # its GroupStart may be on its way yet
            self.stats["group_unknown"] += 1
            return self._hold(sender, msg, now)
        member = group.members.get(sender)
        allowed = member is not None and (member.state == JOINED or kind is W.GroupJoined)
        if not allowed:
            return self._hold(sender, msg, now)
        return _HANDLERS[kind](self, group, sender, msg, now)

    def _invited(self, sender, msg, now):
        members = msg.members
        why = invitation_refused(self, sender, msg)
        if why is not None:
            self.stats[why] += 1
            return [Log(logging.INFO, "refused a group start or invitation from %s: %s"
                        % (sender, why), "dropped")]
        if type(msg) is W.GroupStart:             # of exactly the sender and us
            group = self.groups[msg.group] = Group(msg.group, self._unique_name(msg.name), sender)
            group.members[sender] = Member(JOINED, now)
            current = self._take_lines(group, False)
            return [Notice("group_started_by", group=group.name, name=sender,
                           current=current)] + \
                self._release(group, None, now)
        invite = Invite(msg.group, self._unique_name(msg.name), sender, members, now + INVITE_FOR)
        if not self.invites.add(invite):
            return []
        others = ", ".join(m for m in members if m not in (sender, self.us)) or "no one else"
        out = [Notice("group_invited_you", group=invite.name, name=sender, names=others,
                      auto=self.auto_join)]
        return out + (self.join(invite.name, now, asked=False) if self.auto_join else [])

    def _take_lines(self, group, asked):
        """Plain lines go to *group* if the user asked, or if no conversation is under way."""
        if asked or (self.current is None and self._free()):
            self.current = group.gid
        return self.current == group.gid

    def _added(self, group, sender, msg, now):
        name = msg.member
        if name == self.us or name in group.members or len(group.members) + 1 >= W.MAX_MEMBERS:
            return []
        group.members[name] = Member(INVITED, now)
        group.owed.add(name)                          # it dials us when it joins
        return self._hellos() + [Notice("group_added", group=group.name, name=sender, member=name)] + \
            self._release(group, name, now)

    def _joined(self, group, sender, msg, now):
        """*sender* says it is a joined member. A first hello gets GroupAdded for each
        member it did not name, then our answer; announced invitees it names are met."""
        out, member = [], group.members[sender]
        group.owed.discard(sender)
        if not msg.reply and member.answered:
            self.stats["group_hello_again"] += 1
        elif not msg.reply:
            member.answered = True
            others = group.others(sender)
            out += [Post(sender, W.encode(W.GroupAdded(group.gid, m)))
                    for m in others if m not in msg.members]
            out.append(Post(sender, W.encode(W.GroupJoined(group.gid, True, others))))
        for name in msg.members:
            known = group.members.get(name)
            if known is None and name != self.us:
                self.stats["group_unannounced"] += 1
            elif known is not None and known.state == INVITED and self.us < name:
                out += [] if name in self.up else [Dial(name)]
        out += self._hellos()
        if member.state == JOINED:
            return out
        member.state, member.since = JOINED, now
        return out + [Notice("group_joined", group=group.name, name=sender)] + \
            self._release(group, sender, now)

    def _line(self, group, sender, msg, now):
        member = group.members[sender]
        if msg.seq <= member.last_seq:
            self.stats["group_duplicates"] += 1
            return []
        member.last_seq = msg.seq
        return [GroupMessage(group.name, sender, msg.text)]

    def _left(self, group, sender, msg, now):
        """*sender* left, or lost a member (we say who said so); no one
        but ourselves takes us out of a group."""
        name = msg.member
        if name == sender:
            return self._remove(group, sender, Notice("group_left", group=group.name, name=sender))
        if name == self.us:
            self.stats["group_left_us"] += 1
            return []
        if name not in group.members:
            return []
        return self._remove(group, name, Notice("group_gone", group=group.name, name=name,
                                                why="lost_by", by=sender))

    def _remove(self, group, name, notice, tell=False, now=None):
        """*name* out of *group*; a group with no one else left is forgotten."""
        del group.members[name]
        self.held.take(group.gid, name)
        out = [notice]
        if tell:
            for member in group.joined():
                out += self._post(member, W.GroupLeft(group.gid, name), now)
        if not group.members:
            self._forget(group)
            out.append(Notice("group_empty", group=group.name))
        return out

    def _forget(self, group):
        self.groups.pop(group.gid, None)
        self.held.take(group.gid)
        self.pending.drop(group.gid)
        if self.current == group.gid:
            self.current = None

    # -- messages from peers not (yet) announced

    def _hold(self, sender, msg, now):
        if not self.held.hold(sender, msg, now):
            self.stats["group_refused"] += 1
        return []

    def _release(self, group, name, now):
        """Held messages from *name* (any sender: None) in *group*, handled again."""
        out = []
        for sender, msg in self.held.take(group.gid, name):
            out += self._handle(sender, msg, now)
        return out

    # -- time

    def next_deadline(self):
        times = [self.held.next_deadline(), self.outbox.next_deadline(),
                 self.invites.next_deadline(), self.pending.next_deadline()]
        times += [group.next_deadline() for group in self.groups.values()]
        return min((t for t in times if t is not None), default=None)

    def tick(self, now):
        """Held messages refused, invitations expired, invitees and queues
        whose chat never came up and members that never joined given up;
        each reported."""
        counts = self.held.expire(now)
        self.stats["group_refused"] += sum(counts.values())
        out = [Notice("group_refused", name=sender, count=count, group=self.groups[gid].name)
               for (sender, gid), count in sorted(counts.items()) if gid in self.groups]
        out += [Notice("group_invite_expired", group=invite.name, name=invite.by)
                for invite in self.invites.expire(now)]
        out += [Notice("group_unreached", group=self.groups[gid].name, name=invitee)
                for gid, invitee in self.pending.expire(now) if gid in self.groups]
        out += [Notice("group_not_sent", name=partner, count=count)
                for partner, count in self.outbox.expire(now)]
        for group in list(self.groups.values()):
            for name in group.late_invitees(now):
                out += self._remove(group, name, Notice("group_not_joined", group=group.name,
                                                        name=name))
        return out


_HANDLERS = {
    W.GroupAdded: Groups._added,
    W.GroupJoined: Groups._joined,
    W.GroupLine: Groups._line,
    W.GroupLeft: Groups._left,
}
