"""Filling the sender's packets, and its fast path: a burst of fresh data.

Theory of operation
-------------------
A file transfer sends tens of thousands of packets a second, nearly all of
them in the plainest state the :class:`~peerpunch.streamsend.Outbox` knows:
no PTO probe due, no fragment to repeat, no SKIP pending, no packet allowed
past the window (NewReno's recovery allowance), only fresh fragments. Its
general loop decides each packet through a dozen small calls (is there
work, may the window and the pacer send, what goes in, is it the last for
now, record it); at a few microseconds a datagram that was a third of the
sender's CPU. :func:`send_burst` makes the same decisions in one loop, the window
and pacer kept in locals and written back once.

It must equal the general loop packet for packet -- the same bytes, packet
numbers, flight records, window and pacer accounting, ACK_NOW on the same
packets (the last before the window or the pacer holds more data back), an
owed ACK in the first packet it fits -- and tests/test_stream_burst.py
compares the two on simulated links and at every byte of the window and
credit edges. Whoever changes what the general loop decides (the
controller's ``can_send``/``on_sent``, the pacer's ``ready``, ``_build``)
changes this too.
"""

import collections

from . import streamwire as W
from .streamqueue import SENDING

Sent = collections.namedtuple("Sent", "pn time size frags skip seq")
"""A packet in flight: the fragments and the SKIP value it carried; *seq*
counts ack-eliciting packets (for persistent congestion)."""

_new_tuple = tuple.__new__          # a Sent without its Python-level __new__
_ACK_NOW = W.ACK_NOW_FRAME
_pack_header = W.pack_packet_header
_pack_first = W.pack_packet_and_stream_header


def send_burst(fresh, chunk, cc, pacer, inbox, now, max_payload, mark, pn, seq, out):
    """Packets of the fragments in *fresh* (cut to *chunk* bytes) while the
    window of *cc* and the credit of *pacer* allow, numbered from *pn* (*seq*
    the last ack-eliciting one), appended to *out*; the window and pacer
    charged. Returns their ``Sent`` records, and whether the window or the
    pacer held data back (None: left as it was, when only stale fragments
    were left)."""
    cwnd, most, inflight = cc.cwnd, cc.max_datagram, cc.bytes_in_flight
    if not fresh or inflight + most > cwnd:
        return [], bool(fresh)
    pacer.ready(now)                        # refilled once, as when the general loop first asks
    credit, quantum = pacer.credit, pacer.quantum
    room0, owed, sent, limited = max_payload - W.HEADER_LEN, inbox.ack_at is not None, [], None
    while True:
        if credit < quantum:
            limited = True
            break
        frag = fresh[0]
        msg = frag.msg
        if frag.acked or msg.state is not SENDING or frag.size > room0:
            parts, frags = [_pack_header(mark, pn)], []
            room = take(fresh, room0, parts, frags, True, chunk)
            if not frags:
                break                       # only stale fragments were left
        else:                               # take's first step, and its last if nothing more fits
            fresh.popleft()
            frag.queued = False
            offset, length = frag.offset, frag.length
            parts = [_pack_first(mark, pn, W.STREAM, msg.id, offset, len(msg.data), length),
                     msg.view[offset:offset + length]]
            frags, room = [frag], room0 - frag.size
            if fresh:
                frag = fresh[0]             # take stops here unless stale, fitting or to cut
                if frag.size <= room or frag.acked or frag.msg.state is not SENDING or \
                        frag.length > chunk:
                    room = take(fresh, room, parts, frags, True, chunk)
        size = max_payload - room
        if fresh and (inflight + size + most > cwnd or credit - size < quantum):
            parts.append(_ACK_NOW)          # the last for now: ask for the ACK at once
            room -= 1
        if owed:
            ack = inbox.ack_frame(now, room)
            if ack is not None:
                parts.append(ack)
                owed = inbox.ack_at is not None
        packet = b"".join(parts)
        n = len(packet)
        seq += 1
        sent.append(_new_tuple(Sent, (pn, now, n, frags, 0, seq)))
        for frag in frags:
            frag.last_pn = pn
        inflight += n
        credit -= n
        pn += 1
        out.append(packet)
        if not fresh or inflight + most > cwnd:
            limited = bool(fresh)
            break
    if sent:
        cc.on_sent(inflight - cc.bytes_in_flight)      # no allowance to count down: exact
        pacer.credit = credit
    return sent, limited


def take(queue, room, parts, frags, owned, chunk):
    """Move fragments from *queue* into the packet while they fit in *room*
    bytes (frame headers and data onto *parts*, the fragments onto *frags*);
    the room left. *owned*: the queue holds the fragment's ``queued`` mark.
    One too big for any packet now (the path MTU dropped) is cut again, to
    *chunk* bytes, in place."""
    while queue:
        frag = queue[0]
        if frag.acked or frag.msg.state is not SENDING or (not owned and frag.queued):
            queue.popleft()
            if owned:
                frag.queued = False
            continue
        if frag.size > room:
            if frag.length > chunk and owned:
                queue.popleft()
                for piece in reversed(frag.split(chunk)):
                    piece.queued = True
                    queue.appendleft(piece)
                continue
            break
        queue.popleft()
        if owned:
            frag.queued = False
        parts.append(frag.header)
        parts.append(frag.data)
        frags.append(frag)
        room -= frag.size
    return room
