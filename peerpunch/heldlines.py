"""The lines a chat holds back, ours and the partner's, and how they are reported.

Theory of operation
-------------------
Ours wait in an :class:`Outbox`: lines typed before the chat is up, while
it is blocked on a changed key, or (without the stream) while its path is
suspect. The chat sends them when it is up or heard again, and reports them
NotDelivered when it ends. The user is told once that lines are held, and
why; on a stream chat, where a line typed while the path is merely suspect
is sent at once, once per quiet spell that the partner has not been heard
for a while.

The partner's are :class:`Withheld` while the chat is blocked on a changed
key: its lines are held by the Secure (shown on /trust). Its stream packets
are handed to our stream (which acknowledges them: the partner sees them
Delivered) only while fewer than MAX_HELD lines are held; after that they
are dropped unacknowledged, so the partner's stream reports them
NotDelivered. A line the stream still hands out when the hold is full (one
waiting behind a gap), and the held lines of a chat that ends blocked
(/leave without /trust), are reported to the user as lines not shown (an
Alert): never lost silently.
"""

from . import protocol as P
from .events import MAX_HELD, MAX_QUEUED, Alert, Message, Notice


class Outbox:
    """Our lines for one partner, held until the chat can send them."""

    def __init__(self, partner):
        self.partner = partner
        self.lines = []
        self.told_quiet = False      # told that the path went quiet (stream chats)

    def hold(self, text, blocked, connected):
        """Queue *text*; the first line held says why (*blocked* on a changed
        key, the path quiet while *connected*, else the chat not up yet)."""
        if len(self.lines) >= MAX_QUEUED:
            return [Notice("queue_full", count=MAX_QUEUED)]
        self.lines.append(text)
        if len(self.lines) > 1:
            return []
        if blocked:
            return [Notice("held_blocked")]
        if connected:
            return [Notice("held_quiet", name=self.partner)]
        return [Notice("queued")]

    def take(self):
        """Every line held, now to be sent (or reported)."""
        lines, self.lines = self.lines, []
        return lines

    def quiet_notice(self, suspect):
        """Once per quiet spell (*suspect*): the partner has not been heard for a while."""
        if not suspect or self.told_quiet:
            return []
        self.told_quiet = True
        return [Notice("sent_quiet", name=self.partner)]


class Withheld:
    """The partner's lines the user has not seen while the chat is blocked."""

    def __init__(self, partner):
        self.partner = partner
        self.unshown = 0             # lines that could not be held

    def shown(self, events, secure):
        """*events* for the user; lines from the partner are held by *secure*
        while it is blocked (counted when it holds no more)."""
        out = []
        for event in events:
            if type(event) is Message and secure.blocked:
                if not secure.hold(P.DirectMessage(event.text)):
                    self.unshown += 1
            else:
                out.append(event)
        return out

    @staticmethod
    def full(secure):
        """True while blocked with MAX_HELD lines held: stream packets are
        not taken (nor acknowledged) then."""
        return secure.blocked and secure.held_count() >= MAX_HELD

    def report(self, why, secure):
        """The lines the user never saw, as an Alert (*why*: "full" on
        /trust; "left" when the pairing ends, counting those still held)."""
        count = self.unshown + (secure.held_count() if why == "left" and secure is not None
                                and secure.blocked else 0)
        self.unshown = 0
        if not count:
            return []
        return [Alert("unshown_" + why, count=count, name=self.partner, limit=MAX_HELD)]
