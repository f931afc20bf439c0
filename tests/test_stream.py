"""The reliable stream end to end: two Streams over a simulated lossy,
reordering, duplicating link with a fake clock (tests/streamsim.py)."""

import ast
import os
import random

import pytest

from peerpunch import protocol as P
from peerpunch import secure
from peerpunch import streamwire as W
from peerpunch.recovery import MAX_ACK_DELAY
from peerpunch.stream import (DEFAULT_MAX_PAYLOAD, DELIVERY_TIMEOUT, MAX_MESSAGE, Delivered,
                              NotDelivered, Received, Stream, StreamError, is_packet)
from peerpunch.streamqueue import GIVEN_UP, SendQueue
from peerpunch.streamrecv import MAX_PENDING_MESSAGES, RECV_WINDOW

from .streamsim import Channel, frames_of, stream_ids

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def utf8_message(rng, size):
    """Exactly *size* bytes of UTF-8 text with one- to four-byte characters."""
    alphabet = "abc xyz 0123 éü ĳ → 中文 😀"
    text = "".join(rng.choice(alphabet) for _ in range(size))
    data = text.encode()[:size]
    return data.decode("utf-8", "ignore").encode().ljust(size, b".")


def messages(rng, count, big_every):
    out = []
    for i in range(count):
        if big_every and i % big_every == big_every // 2:
            out.append(utf8_message(rng, MAX_MESSAGE))
        else:
            out.append(("line %d " % i).encode() + utf8_message(rng, rng.randint(0, 300)))
    return out


@pytest.mark.parametrize("loss", [0.0, 0.10, 0.30])
def test_stream_every_message_once_in_order_under_loss_reordering_and_duplication(loss):
    rng = random.Random(int(loss * 100) + 7)
    # The delivery timeout is out of the way here: this is about exactly-once and order.
    ch = Channel(loss=loss, delay=0.010, jitter=0.010, duplicate=0.05, seed=int(loss * 100),
                 delivery_timeout=3600.0)
    to_b, to_a = messages(rng, 300, 60), messages(rng, 150, 0)
    sends = sorted([(i * 0.004, ch.a, m) for i, m in enumerate(to_b)]
                   + [(i * 0.009, ch.b, m) for i, m in enumerate(to_a)], key=lambda s: s[0])
    ids = {"a": [], "b": []}
    for when, stream, data in sends:
        ch.run_for(max(0.0, when - ch.now))
        ids[ch.name(stream)].append(ch.send(stream, data))
    ch.run_until(lambda: ch.a.outstanding() == 0 and ch.b.outstanding() == 0)
    ch.run_for(1.0)

    for sender, receiver, sent in (("a", "b", to_b), ("b", "a", to_a)):
        got = ch.received(receiver)
        assert [e.message_id for e in got] == ids[sender] == list(range(1, len(sent) + 1))
        assert [e.data for e in got] == sent
        assert sorted(ch.delivered_ids(sender)) == ids[sender]
        assert ch.not_delivered(sender) == []
    assert ch.received("b")[len(to_b) // 60].data.decode("utf-8")       # a 64-KiB one, whole
    if loss:
        assert ch.counts["lost"] > 50
    assert ch.counts["duplicated"] > 20 and ch.counts["reordered"] > 20
    assert all(len(p) <= DEFAULT_MAX_PAYLOAD and is_packet(p) for _, _, p in ch.wire)


def test_stream_delivered_only_once_the_receiver_holds_the_message():
    ch = Channel(loss=0.2, delay=0.01, jitter=0.01, seed=3, delivery_timeout=3600.0)
    rng = random.Random(3)
    for i in range(60):
        ch.send(ch.a, utf8_message(rng, 3000 if i % 7 else 20000))
        ch.run_for(0.003)
    ch.run_until(lambda: ch.a.outstanding() == 0)
    completed = {}                 # message id -> when b had every byte (received or buffered)
    for t, name, payload in ch.arrivals:
        if name == "b":
            for i in stream_ids(payload):
                completed.setdefault(i, t)
    for t, event in ch.events["a"]:
        if isinstance(event, Delivered):
            assert all(i in completed and completed[i] <= t for i in event.message_ids)


def test_stream_64_kib_of_utf8_arrives_as_one_received_and_more_is_refused():
    ch = Channel(seed=2)
    data = utf8_message(random.Random(1), MAX_MESSAGE)
    assert len(data) == 64 * 1024
    ch.send(ch.a, data)
    ch.run_until(lambda: ch.a.outstanding() == 0)
    assert ch.received("b") == [Received(1, data)]
    assert len([p for _, n, p in ch.wire if n == "a" and stream_ids(p)]) >= 57   # fragmented
    with pytest.raises(ValueError):
        ch.a.send(data + b"x", ch.now)


def test_stream_duplicate_datagrams_are_dropped():
    a, b = Stream(), Stream()
    a.send(b"once", 0.0)
    a.send(b"twice", 0.0)
    (packet,) = a.packets(0.0)
    for t in (0.01, 0.02, 0.03):
        b.datagram_received(packet, t)
    assert b.events() == [Received(1, b"once"), Received(2, b"twice")]
    assert b.stats()["receive_pending"] == 0 and b.stats()["receive_buffered"] == 0


def data_packet(pn, message_id, data=b"hi", ack_now=False):
    frames = [(W.STREAM, message_id, 0, len(data), data)] + ([(W.ACK_NOW,)] if ack_now else [])
    return W.encode(pn, frames)


def acked(packets):
    return [f[3] for p in packets for f in frames_of(p) if f[0] == W.ACK]


def test_stream_ack_delay_rules():
    b = Stream()
    b.datagram_received(data_packet(0, 1), 1.0)            # one in order: may wait 25 ms
    assert b.packets(1.0) == [] and b.next_deadline() == pytest.approx(1.0 + MAX_ACK_DELAY)
    assert b.packets(1.0 + MAX_ACK_DELAY - 1e-4) == []
    (ack,) = b.packets(1.0 + MAX_ACK_DELAY)
    assert acked([ack]) == [[(0, 0)]] and b.next_deadline() is None

    b.datagram_received(data_packet(1, 2), 2.0)            # every second one: at once
    b.datagram_received(data_packet(2, 3), 2.0)
    assert acked(b.packets(2.0)) == [[(0, 2)]]
    b.datagram_received(data_packet(4, 5), 3.0)            # a gap below it: at once
    assert acked(b.packets(3.0)) == [[(4, 4), (0, 2)]]
    b.datagram_received(data_packet(3, 4), 4.0)            # older than the largest: at once
    assert acked(b.packets(4.0)) == [[(0, 4)]]
    b.datagram_received(data_packet(5, 6, ack_now=True), 5.0)   # asked for: at once
    assert acked(b.packets(5.0)) == [[(0, 5)]]
    b.datagram_received(data_packet(6, 7), 6.0)            # owed, and b has data: piggybacked
    b.send(b"reply", 6.01)
    (reply,) = b.packets(6.01)
    assert acked([reply]) == [[(0, 6)]] and {f[0] for f in frames_of(reply)} >= {W.STREAM}
    assert b.packets(6.0 + MAX_ACK_DELAY) == []               # nothing owed any more


def test_stream_acks_within_max_ack_delay_and_piggybacks():
    ch = Channel(loss=0.1, delay=0.01, jitter=0.005, seed=5, delivery_timeout=3600.0)
    for i in range(200):
        ch.send(ch.a, b"x" * (i % 50))
        if i % 3 == 0:
            ch.send(ch.b, b"reply %d" % i)
        ch.run_for(0.017)
    ch.run_until(lambda: ch.a.outstanding() == 0 and ch.b.outstanding() == 0)
    ch.run_for(0.1)
    for name in ("a", "b"):
        pending = {}               # eliciting packet number -> when it arrived
        acked_by, piggybacked = [], 0
        sends = [(t, 1, p) for t, n, p in ch.wire if n == name]
        arrivals = [(t, 0, p) for t, n, p in ch.arrivals if n == name]
        for t, kind, payload in sorted(sends + arrivals, key=lambda x: (x[0], x[1])):
            pn, frames, eliciting = W.decode(payload)
            if kind == 0:
                if eliciting:
                    pending.setdefault(pn, t)
                continue
            for frame in frames:
                if frame[0] == W.ACK:
                    piggybacked += any(f[0] == W.STREAM for f in frames)
                    for low, high in frame[3]:
                        for got in [p for p in pending if low <= p <= high]:
                            acked_by.append(t - pending.pop(got))
        assert acked_by and max(acked_by) <= MAX_ACK_DELAY + 1e-9
        assert not pending
        assert piggybacked > 0


def test_stream_not_delivered_within_the_timeout_when_the_partner_vanishes():
    ch = Channel(delay=0.02, seed=4)
    for i in range(3):
        ch.send(ch.a, b"hello %d" % i)
    ch.run_until(lambda: ch.a.outstanding() == 0)
    assert [e.data for e in ch.received("b")] == [b"hello 0", b"hello 1", b"hello 2"]

    ch.cut = True                                 # b is gone: nothing arrives either way
    typed = ch.now
    lost = ch.send(ch.a, b"anyone there?")
    ch.run_until(lambda: ch.not_delivered("a"))
    (when, event), = ch.not_delivered("a")
    assert event == NotDelivered((lost,), "timeout")
    assert typed + DELIVERY_TIMEOUT - 0.001 <= when <= typed + DELIVERY_TIMEOUT + 0.001

    ch.run_for(30.0)                              # much later, still gone: reported again in time
    typed = ch.now
    ch.send(ch.a, b"still there?")
    ch.run_until(lambda: len(ch.not_delivered("a")) == 2)
    assert ch.not_delivered("a")[1][0] <= typed + DELIVERY_TIMEOUT + 0.001

    ch.cut = False                                # b is back: later messages flow, in order
    back = ch.send(ch.a, b"welcome back")
    ch.run_until(lambda: back in ch.delivered_ids("a"), limit=ch.now + DELIVERY_TIMEOUT)
    ch.run_for(1.0)
    assert [e.data for e in ch.received("b")][3:] == [b"welcome back"]
    assert ch.received("b")[-1].message_id == back == 6


def test_stream_receiver_skips_a_message_the_sender_gave_up_on():
    blocked = {2}
    ch = Channel(delay=0.02, seed=6, drop=lambda name, p: name == "a" and stream_ids(p) & blocked)
    for text in (b"one", b"two", b"three", b"four"):
        ch.send(ch.a, text)
        ch.run_for(0.5)
    assert [e.data for e in ch.received("b")] == [b"one"]      # three and four wait for two
    ch.run_until(lambda: ch.a.outstanding() == 0)
    ch.run_for(1.0)
    assert [(t, e) for t, e in ch.not_delivered("a")] == [(8.5, NotDelivered((2,), "timeout"))]
    assert [e.message_id for e in ch.received("b")] == [1, 3, 4]
    assert sorted(ch.delivered_ids("a")) == [1, 3, 4]
    skips = [t for t, n, p in ch.wire if n == "a" and any(f[0] == W.SKIP for f in frames_of(p))]
    assert skips and skips[0] == 8.5
    blocked.clear()
    ch.send(ch.a, b"five")
    ch.run_until(lambda: ch.a.outstanding() == 0)
    assert [e.message_id for e in ch.received("b")] == [1, 3, 4, 5]
    last = [p for _, n, p in ch.wire if n == "a"][-1]      # the SKIP was acknowledged: retired
    assert stream_ids(last) == {5} and not any(f[0] == W.SKIP for f in frames_of(last))


def test_stream_sender_stays_within_the_receive_window():
    # b never gets message 1's first fragment: a may not run RECV_WINDOW bytes past it.
    def drop(name, payload):
        return name == "a" and any(f[0] == W.STREAM and f[1] == 1 and f[2] == 0
                                   for f in frames_of(payload))
    ch = Channel(delay=0.005, seed=8, drop=drop, delivery_timeout=3600.0)
    for _ in range(100):
        ch.send(ch.a, bytes(MAX_MESSAGE))
    ch.run_for(30.0)
    highest = max(max(stream_ids(p) or {0}) for _, n, p in ch.wire if n == "a")
    assert highest == RECV_WINDOW // MAX_MESSAGE          # 64 messages, not one more
    assert ch.b.stats()["receive_buffered"] <= RECV_WINDOW
    assert ch.received("b") == []


def test_stream_window_base_waits_for_an_unacknowledged_skip():
    queue = SendQueue(chunk=1000)
    first = queue.push(b"never sent", 8.0)
    first.state = GIVEN_UP                      # timed out while waiting for the window
    for _ in range(MAX_PENDING_MESSAGES + 10):
        queue.push(b"x", 9.0)
    admitted = {f.msg.id for f in queue.admit(skip_acked=1, skip_target=2)}
    # b may still wait for message 1 until the SKIP(2) is acknowledged
    assert queue.base(skip_acked=1, skip_target=2) == 1
    assert max(admitted) == MAX_PENDING_MESSAGES and min(admitted) == 2
    more = {f.msg.id for f in queue.admit(skip_acked=2, skip_target=2)}
    assert more == {MAX_PENDING_MESSAGES + 1}   # the SKIP is in: one more id fits


def test_stream_abandon_reports_what_is_outstanding_and_goes_quiet():
    ch = Channel(seed=9)
    ch.send(ch.a, b"delivered")
    ch.run_until(lambda: ch.a.outstanding() == 0)
    ch.cut = True
    pending = [ch.send(ch.a, b"pending %d" % i) for i in range(3)]
    assert ch.a.abandon(ch.now) == pending
    ch.pump(ch.a)
    assert ch.events["a"][-1][1] == NotDelivered(tuple(pending), "abandoned")
    assert ch.a.packets(ch.now + 5) == [] and ch.a.next_deadline() is None
    assert ch.a.outstanding() == 0
    with pytest.raises(ValueError):
        ch.a.send(b"after", ch.now)


def test_stream_idle_partner_costs_nothing():
    ch = Channel(seed=10)
    ch.send(ch.a, b"hi")
    ch.run_until(lambda: ch.a.outstanding() == 0)
    ch.run_for(0.1)
    sent = len(ch.wire)
    ch.run_for(120.0)
    assert len(ch.wire) == sent
    assert ch.a.next_deadline() is None and ch.b.next_deadline() is None


def test_stream_packets_never_look_like_json():
    assert DEFAULT_MAX_PAYLOAD + secure.OVERHEAD + 1 == 1200     # 1: the relay marker
    a = Stream()
    a.send(b'{"DirectMessage":"x"}', 0.0)
    for packet in a.packets(0.0):
        assert packet[0] == W.PACKET_TYPE and packet[:1] not in (b"{", b'"')
        with pytest.raises(UnicodeDecodeError):
            packet.decode("utf-8")
    assert not is_packet(b'{"Ping":null}') and not is_packet(b"")
    assert issubclass(StreamError, P.RemoteProtocolError)


CORE_MODULES = ("stream.py", "streamsend.py", "streamburst.py", "streamqueue.py", "streamrecv.py",
                "streamwire.py",
                "recovery.py")
FORBIDDEN = {"socket", "threading", "selectors", "time", "asyncio", "select"}


@pytest.mark.parametrize("module", CORE_MODULES)
def test_stream_modules_are_sans_io_and_small(module):
    path = os.path.join(ROOT, "peerpunch", module)
    with open(path, encoding="utf-8") as f:
        source = f.read()
    imported = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            imported.add(node.module.split(".")[0])
    assert not imported & FORBIDDEN
    assert len(source.splitlines()) <= 400


def test_stream_ack_copies_sends_the_owed_ack_in_that_many_packets():
    from peerpunch.stream import Stream
    a, b = Stream(), Stream(ack_copies=2, ack_every=1)
    a.send(b"x" * 3000, 0.0)
    for packet in a.packets(0.0):
        b.datagram_received(packet, 0.001)
    acks = b.packets(0.001)
    decoded = [W.decode(p) for p in acks]
    assert len(acks) == 2 and decoded[0][0] != decoded[1][0]            # two packet numbers
    assert [f for f in decoded[0][1]] == [f for f in decoded[1][1]]     # the same ACK
    assert all(f[0] == W.ACK for _, frames, _ in decoded for f in frames)
    for packet in acks:
        a.datagram_received(packet, 0.002)
    assert [type(e) for e in a.events()] == [Delivered]                  # once, not twice
    with pytest.raises(ValueError):
        Stream(ack_copies=0)


def test_stream_with_its_own_mark_sends_and_takes_only_packets_that_carry_it():
    a, b = Stream(mark=0xF8), Stream(mark=0xF8)
    a.send(b"over the second stream", 0.0)
    packets = a.packets(0.0)
    assert packets and all(p[0] == 0xF8 for p in packets)
    for p in packets:
        b.datagram_received(p, 0.0)
    assert [e.data for e in b.events() if isinstance(e, Received)] == [b"over the second stream"]
    with pytest.raises(W.StreamError):
        b.datagram_received(bytes((W.PACKET_TYPE,)) + packets[0][1:], 0.0)
    with pytest.raises(W.StreamError):
        Stream().datagram_received(packets[0], 0.0)
    acks = b.packets(1.0)
    assert acks and all(p[0] == 0xF8 for p in acks)
