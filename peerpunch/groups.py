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

Membership rule: a member's list changes only by what a member of the
group says on its own pairwise stream, and every change is sent to every
member, who each show it. The inviter (a joined member) sends ``GroupAdded``
to every joined member *before* it sends the invitee its ``GroupInvite``;
the invitee, once it joins, sends ``GroupJoined`` to each member as soon as
their pairwise chat is up. We take a group message from a peer only if we
have a pairwise session with it (it came on that stream) AND it is in the
list we have seen announced: ``GroupJoined`` from an added (INVITED)
member, lines and changes from a JOINED one. Messages from a peer not (yet)
in the list -- an announcement still on its way on another stream -- are
held for HOLD_FOR, then refused and reported. Messages for a group id we do
not know are held as long (its GroupStart may be on its way), then dropped
in silence. A member whose pairwise chat ends, or whose group messages are not
delivered in time, is gone: we say so, and tell the others (``GroupLeft``
naming it), so every member sees a vanished member within the stream's
delivery timeout of the first line it missed.

Everything is bounded: MAX_GROUPS groups, MAX_INVITES invitations,
groupwire.MAX_MEMBERS members each, MAX_HELD held messages, MAX_QUEUED
messages queued per partner whose chat is not up yet (dropped, and
reported, after LINK_WITHIN).
"""

import collections

from . import groupwire as W
from .events import Notice

MAX_GROUPS = 16
MAX_INVITES = 8
MAX_HELD = 64
MAX_QUEUED = 256
HOLD_FOR = 30.0          # a message from a member not yet announced waits this long
INVITE_FOR = 300.0       # an invitation may be accepted this long
LINK_WITHIN = 60.0       # a chat with a member (or invitee) must come up this soon
JOIN_WITHIN = INVITE_FOR + LINK_WITHIN   # an invited member must join this soon

INVITED = "invited"
JOINED = "joined"

Post = collections.namedtuple("Post", "partner data")
Post.__doc__ = "Put *data* (a group message) on *partner*'s reliable stream."
Dial = collections.namedtuple("Dial", "partner")
Dial.__doc__ = "Open a chat with *partner* (as /connect does) unless one exists."
GroupMessage = collections.namedtuple("GroupMessage", "group sender text")
GroupMessage.__doc__ = "A line from *sender* in the group named *group*."

Invite = collections.namedtuple("Invite", "gid name by members until")


class Member:
    __slots__ = ("state", "since", "last_seq")

    def __init__(self, state, since):
        self.state = state
        self.since = since
        self.last_seq = 0


class Group:
    """One group: its id, our name for it, the others and our line count."""

    def __init__(self, gid, name):
        self.gid = gid
        self.name = name
        self.members = {}        # name -> Member (we are not in it)
        self.owed = set()        # members we still say GroupJoined to (once their chat is up)
        self.seq = 0

    def joined(self):
        return [m for m, member in self.members.items() if member.state == JOINED]

    def is_joined(self, name):
        member = self.members.get(name)
        return member is not None and member.state == JOINED


class Groups:
    """Every group we are in, our invitations, and what waits for a link."""

    def __init__(self, us, *, random_bytes, stats, auto_join=False):
        self.us = us
        self.auto_join = auto_join
        self.stats = stats
        self.groups = {}             # gid -> Group
        self.invites = {}            # gid -> Invite
        self.pending = []            # [gid, invitee, since]: invites waiting for its link
        self.up = {}                 # partner -> None (carries groups) or why not
        self.outbox = {}             # partner -> [since, [data, ...]] until its link is up
        self.held = []               # (until, sender, msg) from peers not yet announced
        self.current = None          # gid plain lines go to
        self._random_bytes = random_bytes

    # -- lookups

    def by_name(self, name):
        return next((g for g in self.groups.values() if g.name == name), None)

    def current_group(self):
        return self.groups.get(self.current)

    def _unique_name(self, name):
        taken = {g.name for g in self.groups.values()} | {i.name for i in self.invites.values()}
        base, n = name, 2
        while name in taken:
            suffix = "~%d" % n
            name, n = base[:W.MAX_NAME - len(suffix)] + suffix, n + 1
        return name

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
        if any(p[0] == group.gid and p[1] == invitee for p in self.pending):
            return []
        self.pending.append([group.gid, invitee, now])
        out = [] if invitee in self.up else [Dial(invitee)]
        return out + self._invite_linked(now)

    def join(self, name, now):
        """/join [NAME]: accept the invitation to NAME (else the latest)."""
        invite = self._invite_named(name)
        if invite is None:
            return [Notice("group_no_invite", group=name or "")]
        del self.invites[invite.gid]
        if len(self.groups) >= MAX_GROUPS:
            return [Notice("group_too_many", count=MAX_GROUPS)]
        group = self.groups[invite.gid] = Group(invite.gid, invite.name)
        out = []
        for member in invite.members:
            if member != self.us:
                group.members[member] = Member(JOINED, now)
                group.owed.add(member)
                out += [] if member in self.up else [Dial(member)]     # the joiner dials
        self.current = group.gid
        out += self._hellos()
        return out + [Notice("group_you_joined", group=group.name,
                             names=", ".join(sorted(group.members)))] + \
            self._release(group, None, now)

    def _invite_named(self, name):
        if not name:
            latest = sorted(self.invites.values(), key=lambda i: i.until)
            return latest[-1] if latest else None
        return next((i for i in self.invites.values() if i.name == name), None)

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
            if why is None and partner in self.outbox:
                out += [Post(partner, data) for data in self.outbox.pop(partner)[1]]
        return out + self._invite_linked(now)

    def _hellos(self):
        """GroupJoined (asking for an answer) to each member we owe it whose
        chat is up: before any line of ours on that stream."""
        out = []
        for group in self.groups.values():
            for member in sorted(m for m in group.owed if self.up.get(m, "") is None):
                group.owed.discard(member)
                out.append(Post(member, W.encode(W.GroupJoined(group.gid, False, []))))
        return out

    def not_delivered(self, partner, now):
        """Group messages to *partner* were not delivered in time: gone."""
        return self.gone(partner, "no_answer", now)

    def gone(self, partner, why, now):
        """*partner*'s chat ended (or stopped answering): out of every group,
        and the others are told."""
        self.outbox.pop(partner, None)
        out = []
        for group in list(self.groups.values()):
            if partner in group.members:
                out += self._remove(group, partner, Notice(
                    "group_gone", group=group.name, name=partner, why=why), tell=True, now=now)
        return out

    def _cannot_link(self, partner):
        why = self.up.get(partner, "no_chat")
        return [] if why is None else [Notice("group_cannot", name=partner, why=why)]

    def _invite_linked(self, now):
        """Pending invitations whose invitee's chat is up: sent, or refused."""
        out, waiting = [], []
        for entry in self.pending:
            gid, invitee, since = entry
            group = self.groups.get(gid)
            if group is None or invitee in group.members:
                continue
            if invitee not in self.up:
                waiting.append(entry)
                continue
            out += self._cannot_link(invitee) or self._send_invite(group, invitee, now)
        self.pending = waiting
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
        queued = self.outbox.setdefault(partner, [now, []])
        if len(queued[1]) >= MAX_QUEUED:
            self.stats["group_queue_full"] += 1
            return []
        queued[1].append(data)
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
        known = msg.group in self.groups or msg.group in self.invites
        if known or self.us not in members or sender not in members:
            self.stats["group_bad_invite"] += 1
            return []
        if type(msg) is W.GroupStart:
            if len(self.groups) >= MAX_GROUPS:
                return []
            group = self.groups[msg.group] = Group(msg.group, self._unique_name(msg.name))
            for name in members:
                if name != self.us:
                    group.members[name] = Member(JOINED, now)
            self.current = group.gid
            return [Notice("group_started_by", group=group.name, name=sender)] + \
                self._release(group, None, now)
        if len(self.invites) >= MAX_INVITES:
            return []
        invite = Invite(msg.group, self._unique_name(msg.name), sender, members, now + INVITE_FOR)
        self.invites[msg.group] = invite
        others = ", ".join(m for m in members if m not in (sender, self.us)) or "no one else"
        out = [Notice("group_invited_you", group=invite.name, name=sender, names=others,
                      auto=self.auto_join)]
        return out + (self.join(invite.name, now) if self.auto_join else [])

    def _added(self, group, sender, msg, now):
        name = msg.member
        if name == self.us or name in group.members or len(group.members) + 1 >= W.MAX_MEMBERS:
            return []
        group.members[name] = Member(INVITED, now)
        group.owed.add(name)                          # it dials us when it joins
        return self._hellos() + [Notice("group_added", group=group.name, name=sender, member=name)] + \
            self._release(group, name, now)

    def _joined(self, group, sender, msg, now):
        """*sender* says it is a joined member: answered (with the members
        we know) unless it is an answer; members it knows and we do not are
        added (and the smaller name of each such pair dials the other)."""
        out, member = [], group.members[sender]
        group.owed.discard(sender)
        if not msg.reply:
            others = sorted(m for m in group.members if m != sender)
            out.append(Post(sender, W.encode(W.GroupJoined(group.gid, True, others))))
        for name in msg.members:
            if name != self.us and name not in group.members and \
                    len(group.members) + 1 < W.MAX_MEMBERS:
                group.members[name] = Member(INVITED, now)
                group.owed.add(name)
                out += [Dial(name)] if self.us < name and name not in self.up else []
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
        name = msg.member
        if name == sender:
            return self._remove(group, sender, Notice("group_left", group=group.name, name=sender))
        if name == self.us:
            self._forget(group)
            return [Notice("group_dropped_you", group=group.name, name=sender)]
        if name not in group.members:
            return []
        return self._remove(group, name, Notice("group_gone", group=group.name, name=name,
                                                why="lost_by", by=sender))

    def _remove(self, group, name, notice, tell=False, now=None):
        del group.members[name]
        self.held = [h for h in self.held if not (h[1] == name and h[2].group == group.gid)]
        out = [notice]
        if tell:
            for member in group.joined():
                out += self._post(member, W.GroupLeft(group.gid, name), now)
        return out

    def _forget(self, group):
        self.groups.pop(group.gid, None)
        self.held = [h for h in self.held if h[2].group != group.gid]
        self.pending = [p for p in self.pending if p[0] != group.gid]
        if self.current == group.gid:
            self.current = None

    # -- messages from peers not (yet) announced

    def _hold(self, sender, msg, now):
        if len(self.held) >= MAX_HELD:
            self.stats["group_refused"] += 1
            return []
        self.held.append((now + HOLD_FOR, sender, msg))
        return []

    def _release(self, group, name, now):
        """Held messages from *name* (any sender: None) in *group*, handled again."""
        mine = [h for h in self.held if name in (None, h[1]) and h[2].group == group.gid]
        self.held = [h for h in self.held if h not in mine]
        out = []
        for _, sender, msg in mine:
            out += self._handle(sender, msg, now)
        return out

    # -- time

    def next_deadline(self):
        times = [h[0] for h in self.held] + [i.until for i in self.invites.values()]
        times += [p[2] + LINK_WITHIN for p in self.pending]
        times += [q[0] + LINK_WITHIN for q in self.outbox.values()]
        times += [m.since + JOIN_WITHIN for g in self.groups.values()
                  for m in g.members.values() if m.state == INVITED]
        return min(times, default=None)

    def tick(self, now):
        """Held messages refused, invitations expired, members that never
        joined or whose chat never came up given up; each reported."""
        return (self._expire_held(now) + self._expire_invites(now) + self._expire_links(now)
                + self._expire_joins(now))

    def _expire_held(self, now):
        late = [h for h in self.held if h[0] <= now]
        self.held = [h for h in self.held if h[0] > now]
        counts = collections.Counter((h[1], h[2].group) for h in late)
        self.stats["group_refused"] += len(late)
        return [Notice("group_refused", name=sender, count=count, group=self.groups[gid].name)
                for (sender, gid), count in sorted(counts.items()) if gid in self.groups]

    def _expire_invites(self, now):
        out = []
        for invite in [i for i in self.invites.values() if i.until <= now]:
            del self.invites[invite.gid]
            out.append(Notice("group_invite_expired", group=invite.name, name=invite.by))
        return out

    def _expire_links(self, now):
        out, late = [], [p for p in self.pending if p[2] + LINK_WITHIN <= now]
        self.pending = [p for p in self.pending if p not in late]
        for gid, invitee, _ in late:
            if gid in self.groups:
                out.append(Notice("group_unreached", group=self.groups[gid].name, name=invitee))
        for partner in [p for p, q in self.outbox.items() if q[0] + LINK_WITHIN <= now]:
            count = len(self.outbox.pop(partner)[1])
            out.append(Notice("group_not_sent", name=partner, count=count))
        return out

    def _expire_joins(self, now):
        out = []
        for group in list(self.groups.values()):
            for name, member in list(group.members.items()):
                if member.state == INVITED and member.since + JOIN_WITHIN <= now:
                    out += self._remove(group, name, Notice(
                        "group_not_joined", group=group.name, name=name))
        return out

    # -- /members

    def members(self, group):
        """(name, state) of each member, us first."""
        return [(self.us, JOINED)] + sorted((n, m.state) for n, m in group.members.items())


_HANDLERS = {
    W.GroupAdded: Groups._added,
    W.GroupJoined: Groups._joined,
    W.GroupLine: Groups._line,
    W.GroupLeft: Groups._left,
}
