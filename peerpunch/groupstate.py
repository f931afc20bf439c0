"""The state a group machine (:mod:`peerpunch.groups`) keeps, each piece bounded.

Theory of operation
-------------------
:class:`Group` is one group as we know it: its id, our name for it, the
other members (:class:`Member`: INVITED until it says GroupJoined, then
JOINED; the last ``seq`` shown from it), the members we still owe a
GroupJoined, and our own line count. :class:`Held` keeps, for HOLD_FOR,
the group messages from a peer not (yet) announced as a member or for a
group we do not know yet, MAX_HELD at most (MAX_HELD_FROM from one peer). :class:`Queues` keeps what we
post to a member whose chat is not up yet, MAX_QUEUED per partner, for
LINK_WITHIN. Post, Dial and GroupMessage are the machine's effects. Time is
passed in; nothing here sends or shows anything.
"""

import collections

from .groupwire import MAX_NAME, GroupStart

MAX_GROUPS = 16
MAX_GROUPS_FROM = 4      # groups and invitations from one partner (one cannot fill the table)
MAX_HELD = 64
MAX_HELD_FROM = 32       # of which from one sender (one peer cannot crowd out the others)
MAX_QUEUED = 256
HOLD_FOR = 30.0          # a message from a member not yet announced waits this long
LINK_WITHIN = 60.0       # a chat with a member (or invitee) must come up this soon
MAX_INVITES = 8
INVITE_FOR = 300.0       # an invitation may be accepted this long
JOIN_WITHIN = INVITE_FOR + LINK_WITHIN   # an invited member must join this soon

INVITED = "invited"
JOINED = "joined"

Invite = collections.namedtuple("Invite", "gid name by members until")

Post = collections.namedtuple("Post", "partner data")
Post.__doc__ = "Put *data* (a group message) on *partner*'s reliable stream."
Dial = collections.namedtuple("Dial", "partner")
Dial.__doc__ = "Open a chat with *partner* (as /connect does) unless one exists."
GroupMessage = collections.namedtuple("GroupMessage", "group sender text")
GroupMessage.__doc__ = "A line from *sender* in the group named *group*."


class Member:
    __slots__ = ("state", "since", "last_seq", "answered")

    def __init__(self, state, since):
        self.state = state
        self.since = since
        self.last_seq = 0
        self.answered = False        # its hello was answered (once: no amplification)


class Group:
    """One group: its id, our name for it, who brought us in (None: we
    made it), the others and our line count."""

    def __init__(self, gid, name, by=None):
        self.gid = gid
        self.name = name
        self.by = by
        self.members = {}        # name -> Member (we are not in it)
        self.owed = set()        # members we still say GroupJoined to (once their chat is up)
        self.seq = 0

    def joined(self):
        return [m for m, member in self.members.items() if member.state == JOINED]

    def others(self, name):
        """The members but *name*, sorted: what a hello to *name* lists."""
        return sorted(m for m in self.members if m != name)

    def take_owed(self, up):
        """The members we owe a GroupJoined whose chat is up (*up*: partner
        -> None), sorted, no longer owed."""
        due = sorted(m for m in self.owed if up.get(m, "") is None)
        self.owed.difference_update(due)
        return due

    def late_invitees(self, now):
        """The invited members whose time to join (JOIN_WITHIN) ran out."""
        return [m for m, member in self.members.items()
                if member.state == INVITED and member.since + JOIN_WITHIN <= now]

    def next_deadline(self):
        return min((member.since + JOIN_WITHIN for member in self.members.values()
                    if member.state == INVITED), default=None)


class Held:
    """Group messages (decoded) waiting for their sender to be announced."""

    def __init__(self):
        self.entries = []        # (until, sender, msg), in arrival order

    def hold(self, sender, msg, now):
        """Keep *msg* for HOLD_FOR; False if MAX_HELD are held already, or
        MAX_HELD_FROM from *sender*."""
        if len(self.entries) >= MAX_HELD or \
                sum(1 for e in self.entries if e[1] == sender) >= MAX_HELD_FROM:
            return False
        self.entries.append((now + HOLD_FOR, sender, msg))
        return True

    def take(self, gid, sender=None):
        """(sender, msg) held for group *gid* (from *sender* only, if given), removed."""
        mine = [e for e in self.entries if e[2].group == gid and sender in (None, e[1])]
        self.entries = [e for e in self.entries if e not in mine]
        return [(e[1], e[2]) for e in mine]

    def expire(self, now):
        """Counter of (sender, gid) -> messages whose time ran out, removed."""
        late = [e for e in self.entries if e[0] <= now]
        self.entries = [e for e in self.entries if e[0] > now]
        return collections.Counter((e[1], e[2].group) for e in late)

    def next_deadline(self):
        return min((e[0] for e in self.entries), default=None)


class Queues:
    """What waits for a partner's chat to come up, per partner."""

    def __init__(self):
        self._queues = {}        # partner -> [since, [data, ...]]

    def put(self, partner, data, now):
        """Queue *data*; False if MAX_QUEUED wait for *partner* already."""
        queued = self._queues.setdefault(partner, [now, []])
        if len(queued[1]) >= MAX_QUEUED:
            return False
        queued[1].append(data)
        return True

    def queued(self, partner):
        return list(self._queues.get(partner, (0, []))[1])

    def take(self, partner):
        """What waits for *partner*, removed."""
        return self._queues.pop(partner, (0, []))[1]

    def expire(self, now):
        """[(partner, count)] of the queues that waited LINK_WITHIN, removed."""
        late = [p for p, q in self._queues.items() if q[0] + LINK_WITHIN <= now]
        return [(p, len(self._queues.pop(p)[1])) for p in late]

    def next_deadline(self):
        return min((q[0] + LINK_WITHIN for q in self._queues.values()), default=None)


class Invitations(dict):
    """gid -> Invite: the invitations we may accept, MAX_INVITES at most."""

    def add(self, invite):
        if len(self) >= MAX_INVITES:
            return False
        self[invite.gid] = invite
        return True

    def named(self, name):
        """The invitation to the group *name* (else the latest), or None."""
        if not name:
            return max(self.values(), key=lambda i: i.until, default=None)
        return next((i for i in self.values() if i.name == name), None)

    def expire(self, now):
        """The invitations whose time ran out, removed."""
        late = [i for i in self.values() if i.until <= now]
        for invite in late:
            del self[invite.gid]
        return late

    def next_deadline(self):
        return min((i.until for i in self.values()), default=None)


class Outgoing:
    """Our invitations waiting for the invitee's chat to come up (LINK_WITHIN)."""

    def __init__(self):
        self._entries = []       # [gid, invitee, since]

    def add(self, gid, invitee, now):
        """False if that invitation already waits."""
        if any(e[0] == gid and e[1] == invitee for e in self._entries):
            return False
        self._entries.append([gid, invitee, now])
        return True

    def take_linked(self, linked):
        """[(gid, invitee)] of those whose invitee's chat is up (*linked*), removed."""
        ready = [e for e in self._entries if e[1] in linked]
        self._entries = [e for e in self._entries if e[1] not in linked]
        return [(gid, invitee) for gid, invitee, _ in ready]

    def drop(self, gid):
        self._entries = [e for e in self._entries if e[0] != gid]

    def expire(self, now):
        """[(gid, invitee)] of those that waited LINK_WITHIN, removed."""
        late = [e for e in self._entries if e[2] + LINK_WITHIN <= now]
        self._entries = [e for e in self._entries if e[2] + LINK_WITHIN > now]
        return [(gid, invitee) for gid, invitee, _ in late]

    def next_deadline(self):
        return min((e[2] + LINK_WITHIN for e in self._entries), default=None)


def invitation_refused(groups, sender, msg):
    """Why *groups* (a Groups) refuses GroupStart or GroupInvite *msg* from
    *sender* (the stats key), or None. A start is of exactly the sender and
    us: anyone else is brought in only by GroupAdded, which every member sees."""
    members = set(msg.members)
    if msg.group in groups.groups or msg.group in groups.invites or \
            groups.us not in members or sender not in members:
        return "group_bad_invite"
    if type(msg) is GroupStart and members != {groups.us, sender}:
        return "group_bad_start"
    if type(msg) is GroupStart and len(groups.groups) >= MAX_GROUPS:
        return "group_too_many"
    brought = [g for g in groups.groups.values() if g.by == sender] + \
        [i for i in groups.invites.values() if i.by == sender]
    return "group_too_many_from" if len(brought) >= MAX_GROUPS_FROM else None


def unique_name(name, taken):
    """*name*, or *name* with ``~2``, ``~3`` ... if it is *taken*."""
    base, n = name, 2
    while name in taken:
        suffix = "~%d" % n
        name, n = base[:MAX_NAME - len(suffix)] + suffix, n + 1
    return name
