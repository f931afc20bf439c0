"""The bulk receiver's fast path (Stream.datagrams_received, streamwire.decode_data,
Inbox.on_data) against datagram_received of each packet (the general path)
on the same packets: fragments in order and out of order, duplicates,
malformed packets in the middle, other frames. Same errors, events, state."""

import random

import pytest

from peerpunch import stream as ST
from peerpunch import streamwire as W
from peerpunch.streamrecv import MAX_PENDING_MESSAGES, MAX_PN_JUMP

MARK = 0xF8


def packet(pn, message_id, offset, total, data, mark=MARK):
    return W.pack_header(mark, pn) + W.stream_frame(message_id, offset, total, data)


def new_stream():
    return ST.Stream(mark=MARK, max_payload=1400)


def state(stream):
    inbox = stream._inbox
    pending = {i: e if isinstance(e, bytes) else (bytes(e.buf), list(e.edges))
               for i, e in inbox._pending.items()}
    return (inbox.next_id, inbox.buffered, pending, list(inbox._edges), inbox._largest,
            inbox._largest_time, inbox.pn_limit, inbox._eliciting, inbox.ack_at,
            stream.events())


def one_by_one(stream, packets, now):
    errors = []
    for payload in packets:
        try:
            stream.datagram_received(payload, now)
        except ST.StreamError as exc:
            errors.append(str(exc))
    return errors


def fragments(message_id, data, size, pn):
    """The packets of one message cut into *size*-byte pieces, from packet number *pn*."""
    pieces = range(0, len(data), size)
    return [packet(pn + k, message_id, at, len(data), data[at:at + size])
            for k, at in enumerate(pieces)]


def scenario():
    rng = random.Random(4)
    one, two, three = (bytes(rng.randrange(256) for _ in range(n)) for n in (3000, 2500, 900))
    first = fragments(1, one, 1000, 0)               # pn 0..2
    second = fragments(2, two, 1000, 3)              # pn 3..5
    frames = [first[0], first[1], first[0],          # a duplicate
              second[1], second[0],                  # out of order
              first[2], second[2],
              packet(6, 3, 0, 900, three),           # whole in one packet
              packet(7, 1, 0, 3000, one[:1000]),     # a message already delivered
              first[1][:-1],                         # cut short: malformed
              packet(8, 0, 0, 10, bytes(10)),        # message id 0
              packet(9, 4, 0, W.MAX_MESSAGE + 1, bytes(10)),
              packet(10, 4, 5, 10, bytes(10)),       # beyond its message
              packet(11, 4, 0, 2000, bytes(1000)),
              packet(12, 4, 1000, 2001, bytes(1000)),  # the size changed
              packet(13, 4, 1000, 2000, b""),        # empty data
              packet(14, 4 + MAX_PENDING_MESSAGES, 0, 10, bytes(10)),   # beyond the window
              packet(15 + 2 * MAX_PN_JUMP, 4, 1000, 2000, bytes(1000)),  # pn far ahead
              packet(16, 4, 1000, 2000, bytes(1000), mark=W.PACKET_TYPE),  # the other stream's
              W.pack_header(MARK, 17) + W.skip_frame(5) + W.ACK_NOW_FRAME,
              W.pack_header(MARK, 18) + b"\x09",     # unknown frame type
              packet(19, 5, 0, 2000, bytes(1000)) + W.ACK_NOW_FRAME,   # two frames
              packet(21, 5, 1000, 2000, bytes(1000)),  # a gap below it
              packet(20, 6, 0, 5, b"hello"),
              packet(20, 6, 0, 5, b"hello")]         # a repeated packet number
    return frames


def test_stream_run_equals_datagram_received_of_each():
    frames = scenario()
    fast, slow = new_stream(), new_stream()
    errors = one_by_one(slow, frames, 1.0)
    assert [str(e) for e in fast.datagrams_received(frames, 1.0)] == errors
    assert state(fast) == state(slow)
    assert len(errors) == 9 and fast._inbox.next_id == 7


@pytest.mark.parametrize("seed", range(20))
def test_stream_run_equals_datagram_received_on_shuffled_damaged_runs(seed):
    rng = random.Random(seed)
    messages = [bytes(rng.randrange(256) for _ in range(rng.randint(1, 5000))) for _ in range(6)]
    frames, pn = [], 0
    for message_id, data in enumerate(messages, 1):
        cut = fragments(message_id, data, rng.choice((700, 1000, 1400)), pn)
        pn += len(cut)
        frames += cut
    for _ in range(rng.randint(0, 8)):               # reorder, repeat, damage
        i, j = rng.randrange(len(frames)), rng.randrange(len(frames))
        choice = rng.random()
        if choice < 0.4:
            frames[i], frames[j] = frames[j], frames[i]
        elif choice < 0.7:
            frames.insert(i, frames[j])
        else:
            at = rng.randrange(len(frames[i]))
            frames[i] = frames[i][:at] + bytes([frames[i][at] ^ 1 << rng.randrange(8)]) + \
                frames[i][at + 1:]
    fast, slow, now = new_stream(), new_stream(), 0.0
    while frames:
        run = frames[:rng.randint(1, 10)]
        frames = frames[len(run):]
        now += 0.001
        expected = one_by_one(slow, run, now)
        assert [str(e) for e in fast.datagrams_received(run, now)] == expected
        assert state(fast) == state(slow)


def test_stream_run_decode_data_is_decode_of_a_data_packet():
    rng = random.Random(1)
    for _ in range(300):
        frame = packet(rng.randrange(1 << 40), rng.randrange(3), rng.randrange(3000),
                       rng.randrange(3000), bytes(rng.randrange(1400)))
        frame = frame[:rng.randrange(len(frame) + 1)] if rng.random() < 0.3 else frame
        frame += W.ACK_NOW_FRAME if rng.random() < 0.1 else b""
        fast = W.decode_data(frame, MARK)
        try:
            pn, frames, eliciting = W.decode(frame, MARK)
        except W.StreamError:
            assert fast is None
            continue
        single = len(frames) == 1 and frames[0][0] == W.STREAM
        assert (fast is not None) == single
        if single:
            assert (pn,) + frames[0][1:4] == fast[:4] and eliciting
            assert bytes(frames[0][4]) == bytes(fast[4])
