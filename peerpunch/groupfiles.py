"""Files sent to a group: one offer to each joined member, one summary.

Theory of operation
-------------------
``/send PATH...`` while a group is current (or naming it: ``/send PATH...
#GROUP``, ``/sendto #GROUP PATH...``) is a group send. Each member JOINED
when it is typed, and whose chat takes files, is offered the files over
its own pairwise chat, as a two-party offer (:mod:`peerpunch.chatfiles`)
whose FileOffer carries the group's id; each accepts or declines for
themselves. Members who join later are not offered them; one whose chat
cannot take files is refused at once (a FileRefused each), the others
still get the offer.

The paths are hashed once: :func:`send` returns one Collect whose partner
is a :class:`GroupTarget`; the shell hands the result back through
:func:`peerpunch.filecommands.collected` to :func:`collected`, which gives
every member's chat the same entries and its own reader of the same files.

:class:`GroupSends` follows the offers made. The group table passes every
input's effects through :meth:`GroupSends.seen`: an outgoing FileNews of a
group send gets the group's name, and when every member's transfer ended
(sent, declined, cancelled, gone) one :class:`GroupSendDone` follows. An
incoming FileNews claiming a group id is shown with that group's name only
if the sender is a joined member of it (nothing from the network is
trusted); otherwise as a plain offer.
"""

import collections

from . import chatfiles as CF
from . import transfer as T
from .events import Notice

_NEWS = frozenset((CF.FileNews,))

GroupTarget = collections.namedtuple("GroupTarget", "gid name members refused")
"""A Collect's partner for a group send: the members to offer to, and
those refused already."""
GroupSendDone = collections.namedtuple("GroupSendDone", "group names sent failed")
"""Every member's transfer of a group send ended: *sent* (members), *failed*
((member, reason), ...)."""
NO_FILES = "no_files"          # a failed member's reason: its chat cannot take files


def send(session, group, paths):
    """/send *paths* to *group*: refusals, and a Collect for the shell."""
    joined = group.joined()
    if not joined:
        return [Notice("group_alone", group=group.name)]
    members = [m for m in joined if m in session.chats and session.chats[m].files.open]
    refused = [m for m in joined if m not in members]
    out = [CF.FileRefused(m, CF.NOT_ENCRYPTED, None) for m in refused]
    if members:
        target = GroupTarget(group.gid, group.name, tuple(members), tuple(refused))
        out.append(CF.Collect(target, tuple(paths)))
    return out


def collected(session, target, result, now):
    """What the shell collected for a group send: offer it to each member."""
    if isinstance(result, OSError):
        return [CF.FileRefused(target.name, CF.UNREADABLE, str(result))]
    entries, source, skipped = result
    out = [CF.FileSkipped(target.name, tuple(skipped))] if skipped else []
    if not entries:
        source.close()
        return out + [CF.FileRefused(target.name, CF.NOTHING, None)]
    offered, refused = [], list(target.refused)
    for member in target.members:
        chat = session.chats.get(member)
        events = chat.files.collected((entries, source.twin(), ()), now, target.gid) \
            if chat is not None else [CF.FileRefused(member, CF.NOT_ENCRYPTED, None)]
        if any(type(e) is CF.FileRefused for e in events):
            refused.append(member)
        else:
            offered.append((member, chat.files.offered))
            events = events + chat.pump(now)
        out += events
    source.close()
    session.groups.sends.started(target.name, T.top_names(entries), offered, refused)
    return out


class _Send:
    """One group send: what is still waiting, who got it, who did not."""

    def __init__(self, group, names, waiting, refused):
        self.group = group
        self.names = names
        self.waiting = set(waiting)
        self.sent = []
        self.failed = [(m, NO_FILES) for m in refused]

    def ended(self, key, event):
        """*key*'s transfer ended with *event*: the summary if it was the last."""
        self.waiting.discard(key)
        if type(event) is T.FileSent:
            self.sent.append(key[0])
        else:
            self.failed.append((key[0], event.reason))
        if self.waiting:
            return []
        return [GroupSendDone(self.group, self.names, tuple(self.sent), tuple(self.failed))]


class GroupSends:
    """The group sends under way, by (member, transfer id)."""

    def __init__(self):
        self._sends = {}             # (member, transfer id) -> _Send

    def started(self, group, names, offered, refused):
        """Offers of *names* to group *group* made: *offered* ((member, id),
        ...); *refused*: members that could not get them."""
        send = _Send(group, names, offered, refused)
        for key in offered:
            self._sends[key] = send

    def seen(self, effects, groups):
        """*effects* with group sends' FileNews named and their summaries
        added; *groups*: gid -> Group, the groups we are in."""
        if _NEWS.isdisjoint(map(type, effects)):         # a C-speed scan: nothing to name
            return list(effects)
        out = []
        for effect in effects:
            if type(effect) is not CF.FileNews or effect.group is None:
                out.append(effect)
            elif effect.outgoing:
                out += self._outgoing(effect)
            else:
                group = groups.get(effect.group)
                named = group is not None and effect.partner in group.joined()
                out.append(effect._replace(group=group.name if named else None))
        return out

    def _outgoing(self, news):
        key = (news.partner, news.event.id)
        send = self._sends.get(key)
        if send is None:
            return [news._replace(group=None)]
        out = [news._replace(group=send.group)]
        if type(news.event) in (T.FileSent, T.FileFailed):
            del self._sends[key]
            out += send.ended(key, news.event)
        return out
