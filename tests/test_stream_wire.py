"""The stream's bytes: golden packet, the remote misbehaviour a Stream
refuses with StreamError, and a fuzz that finds nothing else and no way to
grow its state.

    PEERPUNCH_STREAM_FUZZ=N    packets in the fuzz (default DEFAULT_FUZZ)
"""

import os
import random

import pytest

from peerpunch import protocol as P
from peerpunch import streamwire as W
from peerpunch.stream import MAX_MESSAGE, Received, Stream, StreamError
from peerpunch.streamrecv import MAX_FRAGMENT_RANGES, MAX_PENDING_MESSAGES, RECV_WINDOW

from .streamsim import Channel

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
DEFAULT_FUZZ = 30000
FUZZ = int(os.environ.get("PEERPUNCH_STREAM_FUZZ", DEFAULT_FUZZ))

GOLDEN_FRAMES = [(W.SKIP, 5),
                 (W.STREAM, 7, 1145, 2000, b"chunk"),
                 (W.ACK, 1000, 0.0125, [(990, 1000), (980, 985), (0, 10)]),
                 (W.ACK_NOW,)]


def test_stream_golden_packet_encodes_and_decodes_both_ways():
    with open(os.path.join(DATA, "stream1_packet.bin"), "rb") as f:
        golden = f.read()
    assert golden.hex().startswith(
        "c1" "0000000102030405"                                   # type, packet number
        "03" "00000005"                                           # SKIP below 5
        "01" "00000007" "00000479" "000007d0" "0005" "6368756e6b"  # STREAM 7 @1145 of 2000
        "02" "00000000000003e8" "04e2" "02" "0000000a"            # ACK 1000, 12.5 ms, 990..1000
        "00000003" "00000005" "000003c8" "0000000a"               # 980..985, 0..10
        "04")                                                     # ACK_NOW
    assert W.encode(0x0102030405, GOLDEN_FRAMES) == golden
    pn, frames, eliciting = W.decode(golden)
    assert pn == 0x0102030405 and eliciting
    assert [(f[0], *f[1:4], bytes(f[4])) if f[0] == W.STREAM else f for f in frames] == [
        (W.SKIP, 5), (W.STREAM, 7, 1145, 2000, b"chunk"),
        (W.ACK, 1000, pytest.approx(0.0125), [(990, 1000), (980, 985), (0, 10)]), (W.ACK_NOW,)]
    assert W.encode(pn, frames) == golden
    assert not W.decode(W.encode(3, [GOLDEN_FRAMES[2]]))[2]    # ACK alone elicits nothing


def packet(*frames, pn=0):
    return W.encode(pn, list(frames))


def stream_frame(message_id, offset, total, data):
    return (W.STREAM, message_id, offset, total, data)


def raw_stream_frame(message_id, offset, total, length, data):
    return bytes((W.STREAM,)) + message_id.to_bytes(4, "big") + offset.to_bytes(4, "big") + \
        total.to_bytes(4, "big") + length.to_bytes(2, "big") + data


MALFORMED = {
    "json": b'{"DirectMessage":"hi"}',
    "header only": W.packet_header(1),
    "empty": b"",
    "unknown frame": W.packet_header(1) + b"\x09",
    "stream header cut": W.packet_header(1) + raw_stream_frame(1, 0, 5, 5, b"")[:10],
    "stream data cut": W.packet_header(1) + raw_stream_frame(1, 0, 100, 100, b"short"),
    "message id 0": W.packet_header(1) + raw_stream_frame(0, 0, 2, 2, b"hi"),
    "message too big": W.packet_header(1) + raw_stream_frame(1, 0, MAX_MESSAGE + 1, 2, b"hi"),
    "data past the end": W.packet_header(1) + raw_stream_frame(1, 4, 5, 2, b"hi"),
    "ack cut": packet((W.ACK, 0, 0.0, [(0, 0)]))[:-3],
    "ack ranges cut": packet((W.ACK, 9, 0.0, [(8, 9), (0, 1)]))[:-2],
    "ack below zero": W.packet_header(1) + bytes((W.ACK,)) + (5).to_bytes(8, "big") + bytes(3)
    + (6).to_bytes(4, "big"),
    "ack too many ranges": W.packet_header(1) + bytes((W.ACK,)) + (1000).to_bytes(8, "big")
    + bytes(2) + bytes((W.MAX_ACK_RANGES,)) + bytes(4) + bytes(8) * W.MAX_ACK_RANGES,
    "skip cut": W.packet_header(1) + bytes((W.SKIP, 0, 0)),
    "packet number far ahead": packet((W.ACK_NOW,), pn=(1 << 20) + 1),
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_stream_refuses_malformed_packets(name):
    with pytest.raises(StreamError):
        Stream().datagram_received(MALFORMED[name], 0.0)


def test_stream_error_is_a_remote_protocol_error():
    assert issubclass(StreamError, P.RemoteProtocolError)
    assert not issubclass(StreamError, P.LocalProtocolError)


def test_stream_refuses_ack_for_a_packet_never_sent():
    s = Stream()
    with pytest.raises(StreamError, match="never sent"):
        s.datagram_received(packet((W.ACK, 0, 0.0, [(0, 0)])), 0.0)
    s.send(b"x", 0.0)
    s.packets(0.0)                                         # packet 0 now exists
    s.datagram_received(packet((W.ACK, 0, 0.0, [(0, 0)])), 0.1)
    with pytest.raises(StreamError, match="never sent"):
        s.datagram_received(packet((W.ACK, 1, 0.0, [(0, 1)]), pn=1), 0.2)


def test_stream_refuses_data_beyond_the_receive_window():
    s = Stream()
    with pytest.raises(StreamError, match="window"):
        s.datagram_received(packet(stream_frame(1 + MAX_PENDING_MESSAGES, 0, 1, b"x")), 0.0)
    s.datagram_received(packet(stream_frame(MAX_PENDING_MESSAGES, 0, 1, b"x")), 0.0)
    for i in range(2, 2 + RECV_WINDOW // MAX_MESSAGE - 1):       # fills the byte window
        s.datagram_received(packet(stream_frame(i, 0, MAX_MESSAGE, b"x"), pn=i), 0.0)
    with pytest.raises(StreamError, match="overflows"):
        s.datagram_received(packet(stream_frame(1000, 0, MAX_MESSAGE, b"x"), pn=1000), 0.0)
    assert s.stats()["receive_buffered"] <= RECV_WINDOW
    assert s.events() == []


def test_stream_refuses_a_message_that_changes_size_or_arrives_in_too_many_pieces():
    s = Stream()
    s.datagram_received(packet(stream_frame(2, 0, 10, b"ab")), 0.0)
    with pytest.raises(StreamError, match="size"):
        s.datagram_received(packet(stream_frame(2, 2, 12, b"cd"), pn=1), 0.0)
    for piece in range(MAX_FRAGMENT_RANGES):                   # 256 ranges, one more is too many
        s.datagram_received(packet(stream_frame(3, 2 * piece, 1000, b"x"), pn=2 + piece), 0.0)
    for k in range(50):                                        # refused, and nothing kept
        with pytest.raises(StreamError, match="pieces"):
            s.datagram_received(packet(stream_frame(3, 600 + 2 * k, 1000, b"x"), pn=999 + k), 0.0)
    assert len(s._inbox._pending[3].edges) == 2 * MAX_FRAGMENT_RANGES
    s.datagram_received(packet(stream_frame(3, 0, 1000, bytes(1000)), pn=2000), 0.0)   # whole
    assert s.events() == [] and s._inbox._pending[3] == bytes(1000)                  # waits for 1


def test_stream_reassembles_fragments_in_any_order_with_overlaps():
    rng = random.Random(5)
    data = bytes(rng.getrandbits(8) for _ in range(5000))
    pieces = [(o, data[o:o + n]) for o in range(0, 5000, 700) for n in (700, 350)]
    rng.shuffle(pieces)
    s = Stream()
    for pn, (offset, piece) in enumerate(pieces):
        s.datagram_received(packet(stream_frame(1, offset, 5000, piece), pn=pn), 0.0)
    assert s.events() == [Received(1, data)]


def mutate(rng, packets):
    base = bytearray(rng.choice(packets))
    kind = rng.randrange(7)
    if kind == 0:                                    # flip bits
        for _ in range(rng.randint(1, 4)):
            base[rng.randrange(len(base))] ^= 1 << rng.randrange(8)
    elif kind == 1:                                  # cut short
        del base[rng.randrange(1, len(base)):]
    elif kind == 2:                                  # splice two packets
        other = rng.choice(packets)
        base = base[:rng.randrange(1, len(base) + 1)] + other[rng.randrange(len(other)):]
    elif kind == 3:                                  # random tail
        base += bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 40)))
    elif kind == 4:                                  # random bytes, our first byte
        base = bytearray([W.PACKET_TYPE]) + bytes(rng.getrandbits(8)
                                                  for _ in range(rng.randint(0, 60)))
    else:                                            # well-formed frames with random fields
        base = bytearray(W.encode(rng.getrandbits(rng.choice((3, 16, 64))),
                                  [random_frame(rng) for _ in range(rng.randint(1, 4))]))
    return bytes(base)


def random_frame(rng):
    kind = rng.choice((W.STREAM, W.STREAM, W.ACK, W.SKIP, W.ACK_NOW))
    if kind == W.STREAM:
        total = rng.choice((0, 1, 700, MAX_MESSAGE))
        offset = rng.randint(0, total)
        data = bytes(rng.randint(0, min(total - offset, 600)))
        return (W.STREAM, rng.choice((1, 2, 3, rng.randint(1, 9000))), offset, total, data)
    if kind == W.ACK:
        largest = rng.choice((0, 1, 5, 40, rng.getrandbits(20)))
        ranges, low = [], largest
        for _ in range(rng.randint(1, 4)):
            high = low
            low = max(0, high - rng.randint(0, 5))
            ranges.append((low, high))
            low -= 2 + rng.randint(0, 5)
            if low < 0:
                break
        return (W.ACK, largest, rng.random() * 0.1, ranges)
    if kind == W.SKIP:
        return (W.SKIP, rng.choice((0, 1, 2, rng.getrandbits(32))))
    return (W.ACK_NOW,)


def test_stream_fuzz_raises_only_stream_error_and_stays_bounded():
    rng = random.Random(20261130)
    ch = Channel(loss=0.1, delay=0.01, jitter=0.01, seed=12, tolerate=True)
    for i in range(40):
        ch.send(ch.a, bytes(rng.choice((10, 3000, 70000 // 2))))
        ch.send(ch.b, b"back %d" % i)
        ch.run_for(0.05)
    packets = [p for _, _, p in ch.wire]
    refused = 0
    for i in range(FUZZ):
        target = ch.a if i % 2 else ch.b
        try:
            target.datagram_received(mutate(rng, packets), ch.now)
        except StreamError:
            refused += 1
        if i % 500 == 0:
            ch.run_for(0.2)                           # timers, acks and sends still work
            for s in (ch.a, ch.b):
                stats = s.stats()
                assert stats["receive_buffered"] <= RECV_WINDOW
                assert stats["receive_pending"] <= MAX_PENDING_MESSAGES
                assert stats["ack_ranges"] <= W.MAX_ACK_RANGES
                assert stats["in_flight"] <= 5000
    assert FUZZ // 10 < refused < FUZZ                 # both kinds were exercised
