"""One chat's lines, numbered and carried on the reliable stream.

Theory of operation
-------------------
A :class:`Lines` belongs to one :class:`~peerpunch.chat.Chat`. It numbers
the lines typed to the partner (1, 2, ... in the order they leave the chat:
the order typed, since held lines leave first), and while the chat's secure
session lasts it owns that session's :class:`~peerpunch.stream.Stream`:
opened when the keys are agreed (:meth:`open`, at both ends, so the two
Streams start together), ended when the session or the chat ends
(:meth:`end`: what was still outstanding is NotDelivered, ENDED).

The chat decides which lines travel on it (:meth:`carries`: a stream is
open and the partner announced ``stream1``; else a line is a plain
DirectMessage, as with the seed). The stream's packets are plaintexts the
chat seals and sends (:meth:`packets`); the partner's come back through
:meth:`received`, which raises :class:`~peerpunch.stream.StreamError` for
one the stream cannot accept. What the stream says is turned into the
chat's events (:meth:`events`): Message (a whole line from the partner,
in order, once), Delivered and NotDelivered (our line numbers). Every line
that entered the stream ends in exactly one of the last two. Sans-I/O: time
is passed in.
"""

import collections

from . import groupwire
from . import protocol as P
from . import stream as ST
from .events import ENDED, Delivered, Message, NotDelivered, Notice

GroupData = collections.namedtuple("GroupData", "partner data")
GroupData.__doc__ = "A group message (peerpunch.groupwire) from *partner*'s stream."
PostsNotDelivered = collections.namedtuple("PostsNotDelivered", "partner count reason")
PostsNotDelivered.__doc__ = "*count* messages posted to *partner* (groups) not delivered."

MAX_LINE = ST.MAX_MESSAGE
"""A typed line's UTF-8 bytes at most: one stream message."""

RELAYED_HEADER = 1 + 8
"""Room for the relay's marker and a session channel of 8 bytes, should the
relay's form that names a chat's session carry the datagram."""
PACKET_SIZE = 1200 - RELAYED_HEADER - 25
"""A stream packet's bytes: a sealed one (25 bytes more) stays within 1,200
bytes of UDP payload, relayed or not."""


def refused(text):
    """Why *text* cannot be a line (a Notice in a list: more than MAX_LINE
    bytes of UTF-8), or an empty list."""
    if len(text) > MAX_LINE // 4 and len(text.encode("utf-8")) > MAX_LINE:
        return [Notice("too_long", limit=MAX_LINE // 1024)]
    return []


class Lines:
    """The numbers of one chat's lines, and the stream of its secure session."""

    def __init__(self, partner):
        self.partner = partner
        self.stream = None
        self._numbered = 0
        self._ids = {}            # stream message id -> line number
        self._posted = set()      # stream message ids of group messages

    @property
    def rtt(self):
        """The stream's smoothed round-trip time (s), or None."""
        return self.stream.rtt if self.stream is not None else None

    @property
    def numbered(self):
        """How many line numbers were taken (lines typed, sent or not)."""
        return self._numbered

    def number(self, count=1):
        """The next *count* line numbers, taken."""
        first = self._numbered + 1
        self._numbered += count
        return tuple(range(first, first + count))

    def carries(self, features):
        """True if lines go on the stream to a partner with *features*."""
        return self.stream is not None and P.FEATURE_STREAM in features

    def open(self):
        """Keys agreed: a fresh Stream for this secure session."""
        self.stream = ST.Stream(max_payload=PACKET_SIZE)
        self._ids, self._posted = {}, set()

    def send(self, text, now):
        """Put *text* on the stream; its line number."""
        line = self.number()[0]
        self._ids[self.stream.send(text.encode("utf-8"), now)] = line
        return line

    def post(self, data, now):
        """Put a group message (bytes) on the stream."""
        self._posted.add(self.stream.send(data, now))

    def received(self, packet, now):
        """A stream packet from the partner; raises StreamError (drop it)."""
        if self.stream is None:
            raise ST.StreamError("a stream packet, and no stream open")
        self.stream.datagram_received(packet, now)

    def packets(self, now):
        """The stream's packets to seal and send now (its timers run too)."""
        return self.stream.packets(now) if self.stream is not None else []

    def next_deadline(self):
        return self.stream.next_deadline() if self.stream is not None else None

    def events(self):
        """What the stream said since last asked, as the chat's events."""
        if self.stream is None:
            return []
        out = []
        for event in self.stream.events():
            kind = type(event)
            if kind is ST.Received and groupwire.is_group_message(event.data):
                out.append(GroupData(self.partner, event.data))
                continue
            if kind is ST.Received:
                text = event.data.decode("utf-8", "replace")
                out.append(Message(self.partner, text, event.message_id))
                continue
            posted = self._posted.intersection(event.message_ids)
            self._posted -= posted
            if posted and kind is ST.NotDelivered:
                out.append(PostsNotDelivered(self.partner, len(posted), event.reason))
            lines = self._lines(event.message_ids)
            if not lines:
                continue
            if kind is ST.Delivered:
                out.append(Delivered(self.partner, lines))
            else:
                out.append(NotDelivered(self.partner, lines, event.reason))
        return out

    def end(self):
        """The session or the chat ended: the stream is dropped; its events
        (NotDelivered, ENDED, for what was outstanding) are returned."""
        if self.stream is None:
            return []
        self.stream.abandon(None)          # abandon reads no clock
        out = self.events()
        self.stream = None
        return out

    def _lines(self, message_ids):
        return tuple(self._ids.pop(i) for i in message_ids if i in self._ids)


def ended(partner, ids, events):
    """*events* with the lines *ids* that never left added to their
    NotDelivered (ENDED): one report for the chat's end."""
    ended_ids = tuple(ids)
    others = []
    for event in events:
        if type(event) is NotDelivered and event.reason == ENDED:
            ended_ids = event.ids + ended_ids
        else:
            others.append(event)
    return others + ([NotDelivered(partner, ended_ids, ENDED)] if ended_ids else [])
