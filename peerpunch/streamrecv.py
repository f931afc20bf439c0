"""The receiving half of the stream: reassembly, ordering and acknowledgments.

Theory of operation
-------------------
:class:`Inbox` takes the frames of packets the partner's stream sent and
turns them into ``Received(message_id, data)`` events, each message once,
in id order, and into the ACK frames the sender needs.

Messages. ``next_id`` is the message the application gets next. Data for a
lower id is a duplicate and ignored. Data for an id in the receive window
``[next_id, next_id + MAX_PENDING_MESSAGES)`` is kept: a message that fits
one frame is complete at once, a longer one is written into a buffer of
its ``total`` size while the ranges received are kept as sorted edges (at
most MAX_FRAGMENT_RANGES of them: a sender that fragments a 64-KiB message
into 1,000-byte pieces needs at most ~33 even when every other piece is
lost). Buffered bytes, complete or not, stay within RECV_WINDOW, which the
sender respects too (it never has more than RECV_WINDOW bytes of messages
in the window it cannot prove we resolved), so data beyond either bound is
remote misbehaviour and raises StreamError. When ``next_id`` is complete it
is handed out, and the ones after it that are waiting. A SKIP to ``below``
hands out the complete messages below it in order, drops the incomplete
ones and moves ``next_id`` to ``below``.

Acknowledgments. A packet number more than MAX_PN_JUMP past the largest
received is refused. Received packet numbers are kept as at most
MAX_ACK_RANGES ranges (the oldest forgotten: they have long been
acknowledged, or the sender repeats the data). An ack-eliciting packet
makes an acknowledgment owed within MAX_ACK_DELAY; it is owed at once for
every ACK_EVERY-th ack-eliciting packet, for one that is out of order
(a gap below it, or older than the largest) and for one with ACK_NOW. The sender half puts the ACK
frame into whatever packet leaves first, or a packet of its own when due.

A packet of one STREAM frame -- nearly every packet of a bulk transfer --
may come through ``on_data``: the three calls in one, the next piece of a
message being assembled under the next packet number done inline.
"""

import bisect

from . import streamwire as W
from .recovery import MAX_ACK_DELAY

RECV_WINDOW = 4 * 1024 * 1024
"""Bytes of messages a receiver buffers, at most (both sides honour it)."""

MAX_PENDING_MESSAGES = 4096
"""Message ids a receiver accepts beyond the next one it delivers."""

MAX_FRAGMENT_RANGES = 256
ACK_EVERY = 2
MAX_PN_JUMP = 1 << 20
"""How far past the largest packet number received the next may be. A
sender cannot leave a bigger hole: it has at most its congestion window
(8 MiB, 256-byte packets at least) and a few probes unacknowledged."""


def add_range(edges, low, high, limit=None):
    """Add ``[low, high)`` to *edges*, a flat sorted list ``[s0, e0, s1, e1,
    ...]`` of disjoint, non-adjacent half-open ranges, merging as needed;
    False (and *edges* unchanged) if that would leave more than *limit* ranges."""
    i = bisect.bisect_left(edges, low)
    j = bisect.bisect_right(edges, high)
    new = []
    if not i & 1:
        new.append(low)
    if not j & 1:
        new.append(high)
    if limit is not None and len(edges) - (j - i) + len(new) > 2 * limit:
        return False
    edges[i:j] = new
    return True


class _Partial:
    """A message whose fragments are still arriving."""
    __slots__ = ("buf", "edges")

    def __init__(self, total):
        self.buf = bytearray(total)
        self.edges = []

    def add(self, offset, data):
        """Write *data* at *offset*; True once every byte is there. Refuses
        (before storing anything) a piece that would leave more than
        MAX_FRAGMENT_RANGES separate ranges."""
        if not data:
            return False
        end = offset + len(data)
        edges = self.edges
        if edges and edges[-1] == offset:
            edges[-1] = end
        elif not add_range(edges, offset, end, MAX_FRAGMENT_RANGES):
            raise W.StreamError("message arrives in more than %d pieces" % MAX_FRAGMENT_RANGES)
        self.buf[offset:end] = data
        return len(edges) == 2 and not edges[0] and edges[1] == len(self.buf)


class Inbox:
    def __init__(self, on_message, ack_every=ACK_EVERY, max_ack_delay=MAX_ACK_DELAY):
        self._on_message = on_message      # called (message_id, data) in order, once each
        self.ack_every = ack_every
        self.max_ack_delay = max_ack_delay
        self.next_id = 1
        self.buffered = 0
        self._pending = {}                 # id -> bytes (complete) or _Partial
        self._edges = []                   # packet numbers received, as add_range edges
        self._largest = -1
        self._largest_time = 0.0
        self.pn_limit = MAX_PN_JUMP
        self._eliciting = 0                # ack-eliciting packets since the last ACK
        self.ack_at = None                 # an ACK is owed by then (None: none owed)

    # ------------------------------------------------------------ messages

    def on_stream(self, message_id, offset, total, data):
        if message_id < self.next_id:
            return
        if message_id >= self.next_id + MAX_PENDING_MESSAGES:
            raise W.StreamError("message %d beyond the receive window (next %d)"
                                % (message_id, self.next_id))
        entry = self._pending.get(message_id)
        if entry is None:
            if self.buffered + total > RECV_WINDOW:
                raise W.StreamError("message %d overflows the receive window" % message_id)
            self.buffered += total
            if offset == 0 and len(data) == total:
                entry = bytes(data)
            else:
                entry = _Partial(total)
                if entry.add(offset, data):
                    entry = bytes(entry.buf)
            self._pending[message_id] = entry
        elif isinstance(entry, bytes):
            if len(entry) != total:
                raise W.StreamError("message %d changed its size" % message_id)
            return
        else:
            if len(entry.buf) != total:
                raise W.StreamError("message %d changed its size" % message_id)
            if entry.add(offset, data):
                self._pending[message_id] = bytes(entry.buf)
        if message_id == self.next_id:
            self._deliver()

    def on_data(self, pn, message_id, offset, total, data, now):
        """A packet of one STREAM frame (:func:`streamwire.decode_data`):
        ``check_packet_number(pn)``, ``on_stream(...)`` and ``on_packet(pn,
        True, now)``, and must equal them. It exists for the bulk receiver:
        the next piece of a message being assembled, appended where its
        last piece ended, is inline; anything else goes to ``on_stream``."""
        if pn > self.pn_limit:
            raise W.StreamError("packet number %d far beyond %d" % (pn, self._largest))
        entry = self._pending.get(message_id)
        if type(entry) is _Partial and data and entry.edges and entry.edges[-1] == offset \
                and len(entry.buf) == total:
            end = offset + len(data)    # _Partial.add's in-order case, within the window
            entry.edges[-1] = end
            entry.buf[offset:end] = data
            if end == total and len(entry.edges) == 2 and not entry.edges[0]:
                self._pending[message_id] = bytes(entry.buf)
                if message_id == self.next_id:
                    self._deliver()
        else:
            self.on_stream(message_id, offset, total, data)
        edges = self._edges
        if edges and edges[-1] == pn:   # on_packet, in order (the last range ends at the largest)
            edges[-1] = pn + 1
            self._largest, self._largest_time, self.pn_limit = pn, now, pn + MAX_PN_JUMP
            self._eliciting += 1
            if self._eliciting >= self.ack_every:
                self.ack_at = now
            elif self.ack_at is None:
                self.ack_at = now + self.max_ack_delay
        else:
            self.on_packet(pn, True, now)

    def on_skip(self, below):
        if below <= self.next_id:
            return
        pending = self._pending
        for message_id in sorted(i for i in pending if i < below):
            entry = pending.pop(message_id)
            if isinstance(entry, bytes):
                self.buffered -= len(entry)
                self._on_message(message_id, entry)
            else:
                self.buffered -= len(entry.buf)
        self.next_id = below
        self._deliver()

    def _deliver(self):
        pending, next_id = self._pending, self.next_id
        entry = pending.get(next_id)
        while isinstance(entry, bytes):
            del pending[next_id]
            self.buffered -= len(entry)
            self._on_message(next_id, entry)
            next_id += 1
            entry = pending.get(next_id)
        self.next_id = next_id

    def pending(self):
        return len(self._pending)

    # ------------------------------------------------------- acknowledgments

    def check_packet_number(self, pn):
        if pn > self.pn_limit:
            raise W.StreamError("packet number %d far beyond %d" % (pn, self._largest))

    def on_packet(self, pn, eliciting, now, ack_now=False):
        """Packet *pn*, whose frames were all accepted, arrived at *now*;
        *ack_now*: it asked for an immediate acknowledgment."""
        edges = self._edges
        if edges and pn == edges[-1]:
            edges[-1] = pn + 1
        else:
            add_range(edges, pn, pn + 1)
            if len(edges) > 2 * W.MAX_ACK_RANGES:
                del edges[:2]
        in_order = pn == self._largest + 1
        if pn > self._largest:
            self._largest, self._largest_time = pn, now
            self.pn_limit = pn + MAX_PN_JUMP
        if eliciting:
            self._eliciting += 1
            if ack_now or not in_order or self._eliciting >= self.ack_every:
                self.ack_at = now
            elif self.ack_at is None:
                self.ack_at = now + self.max_ack_delay

    def ack_frame(self, now, room):
        """The ACK frame for what we received, at most *room* bytes (None if
        nothing was received or it cannot fit); sending it settles what is owed."""
        edges = self._edges
        count = min(W.MAX_ACK_RANGES, len(edges) // 2, (room - W.ACK_LEN) // W.RANGE_LEN + 1)
        if count < 1:
            return None
        if count == 1:
            ranges = [(edges[-2], edges[-1] - 1)]
        else:
            ranges = [(edges[i - 2], edges[i - 1] - 1)
                      for i in range(len(edges), len(edges) - 2 * count, -2)]
        self.ack_at = None
        self._eliciting = 0
        return W.ack_frame(ranges, now - self._largest_time)

    def ack_ranges(self):
        return len(self._edges) // 2
