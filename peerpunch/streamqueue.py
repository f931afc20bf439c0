"""Messages waiting to be sent, and the receive window they must fit.

Theory of operation
-------------------
:class:`SendQueue` numbers the messages the application sends (1, 2, ...)
and lets them into the window -- cut into :class:`Fragment` s of ``chunk``
bytes, one per packet at most -- only while the partner's receiver is sure
to have room for them (:mod:`peerpunch.streamrecv` refuses data beyond its
window as misbehaviour): ids below ``base + MAX_PENDING_MESSAGES`` and at
most RECV_WINDOW bytes of messages from ``base`` on. ``base`` is the oldest
message not known to be resolved at the receiver: acknowledged whole, or
below a SKIP the receiver acknowledged. The receiver's next expected id is
never below it, so the sender's window always lies inside the receiver's.

Ids and admission both follow sending order, so both queues are deques
worked from the front: admission and moving ``base`` cost O(1) per message.
"""

import collections

from . import streamwire as W
from .streamrecv import MAX_PENDING_MESSAGES, RECV_WINDOW

QUEUED, SENDING, ACKED, GIVEN_UP = "queued", "sending", "acked", "given up"
_pack_stream_header = W.pack_stream_header


class Message:
    __slots__ = ("id", "data", "view", "deadline", "state", "unacked")

    def __init__(self, message_id, data, deadline):
        self.id, self.data, self.deadline = message_id, data, deadline
        self.view = memoryview(data)      # its fragments' bytes are slices of it
        self.state = QUEUED
        self.unacked = 0                  # fragments not yet acknowledged


class Fragment:
    """Bytes ``offset..offset + length`` of a message. Its STREAM frame
    ``header`` and its bytes (``data``, a view) are made when asked for, as
    the fragment is sent: a fragment is made for every datagram, and made
    lighter that way (kept, the view would also be one more object for the
    garbage collector to count and, while in flight, to traverse)."""
    __slots__ = ("msg", "offset", "length", "size", "acked", "last_pn", "queued")

    def __init__(self, msg, offset, length):
        self.msg = msg
        self.offset = offset
        self.length = length
        self.size = W.STREAM_HEADER_LEN + length
        self.acked = self.queued = False  # queued: waiting in the retransmission queue
        self.last_pn = -1                 # the packet that carried it last

    @property
    def header(self):
        msg = self.msg
        return _pack_stream_header(W.STREAM, msg.id, self.offset, len(msg.data), self.length)

    @property
    def data(self):
        return self.msg.view[self.offset:self.offset + self.length]

    def live(self):
        return not self.acked and self.msg.state == SENDING

    def split(self, chunk):
        """This fragment's bytes as fragments of *chunk* bytes at most, to
        send in its place (a smaller packet size): the message counts them."""
        offset, end = self.offset, self.offset + self.length
        pieces = [Fragment(self.msg, at, min(chunk, end - at)) for at in range(offset, end, chunk)]
        self.msg.unacked += len(pieces) - 1
        return pieces


class SendQueue:
    def __init__(self, chunk):
        self.chunk = chunk
        self.next_id = 1
        self.waiting = collections.deque()     # messages not yet admitted
        self.admitted = collections.deque()    # in the window, oldest first
        self.window_bytes = 0

    def push(self, data, deadline):
        if self.next_id > W.MAX_ID:
            raise ValueError("message ids exhausted")
        msg = Message(self.next_id, data, deadline)
        self.next_id += 1
        self.waiting.append(msg)
        return msg

    def base(self, skip_acked, skip_target):
        """The oldest message id the receiver may still be waiting for."""
        admitted = self.admitted
        while admitted and (admitted[0].state == ACKED or admitted[0].id < skip_acked):
            self.window_bytes -= len(admitted.popleft().data)
        if admitted:
            base = admitted[0].id
        else:
            base = self.waiting[0].id if self.waiting else self.next_id
        return min(base, skip_acked) if skip_acked < skip_target else base

    def admit(self, skip_acked, skip_target):
        """Fragments of the waiting messages that now fit the window."""
        waiting, fragments = self.waiting, []
        base = self.base(skip_acked, skip_target)
        while waiting:
            msg = waiting[0]
            if msg.state == GIVEN_UP:
                waiting.popleft()
                continue
            if (msg.id >= base + MAX_PENDING_MESSAGES
                    or self.window_bytes + len(msg.data) > RECV_WINDOW):
                break
            waiting.popleft()
            msg.state = SENDING
            self.admitted.append(msg)
            self.window_bytes += len(msg.data)
            fragments += self._fragments(msg)
        return fragments

    def _fragments(self, msg):
        chunk, size = self.chunk, len(msg.data)
        offsets = range(0, size - chunk, chunk)
        frags = list(map(Fragment, [msg] * len(offsets), offsets, [chunk] * len(offsets)))
        last = len(frags) * chunk                 # the rest: chunk bytes at most, maybe none
        frags.append(Fragment(msg, last, size - last))
        msg.unacked = len(frags)
        return frags

    def clear(self):
        self.waiting.clear()
        self.admitted.clear()
        self.window_bytes = 0
