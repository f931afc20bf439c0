"""The sender's fast path (Outbox._burst) against its general loop: two
identical simulated links, one with the fast path turned off, must put the
same datagrams on the wire at the same times and end in the same state."""

import random

import pytest

from peerpunch import streamwire as W
from peerpunch.bulkcc import LossTolerant
from peerpunch.recovery import NewReno
from peerpunch.streamsend import Outbox

from .streamsim import Channel


def general_only(channel):
    """*channel* with both ends' fast path turned off."""
    for end in (channel.a, channel.b):
        end._outbox._plain = lambda: False
    return channel


def watched(channel, cuts):
    """*channel* with each fast burst's ending recorded in *cuts*: why it
    stopped, and whether it carried an ACK frame."""
    for name, end in (("a", channel.a), ("b", channel.b)):
        outbox = end._outbox
        outbox._burst = _watch(outbox, outbox._burst, cuts)
    return channel


def _watch(outbox, burst, cuts):
    def watching(now, inbox, out):
        start = len(out)
        burst(now, inbox, out)
        cc, pacer = outbox.cc, outbox.pacer
        if not outbox._fresh:
            cuts.add("end of data")
        elif cc.bytes_in_flight + cc.max_datagram > cc.cwnd:
            cuts.add("window")
        elif pacer.credit < pacer.quantum:
            cuts.add("pacer")
        for packet in out[start:]:
            _, frames, _ = W.decode(packet, outbox.mark)
            if any(frame[0] == W.ACK for frame in frames):
                cuts.add("ack")
            if any(frame[0] == W.ACK_NOW for frame in frames):
                cuts.add("ack now")
    return watching


def traffic(channel, seed, rounds):
    """Both ends send messages of mixed sizes (a packet's worth and less,
    several packets, many) now and then; the link runs in between."""
    rng = random.Random(seed)
    for _ in range(rounds):
        for end in (channel.a, channel.b):
            for _ in range(rng.randrange(8)):
                size = rng.choice((0, 1, 700, 1300, 4000, 20000, 60000, 60000, 60000))
                channel.send(end, bytes([rng.randrange(256)]) * size)
        channel.run_for(rng.choice((0.0005, 0.003, 0.02, 0.05)))
    channel.run_until(lambda: not channel.air and all(
        not end._outbox.live for end in (channel.a, channel.b)), limit=channel.now + 300)


def state(end):
    o = end._outbox
    return (o._pn, o._seq, o.packets_sent, o._limited, o.cc.cwnd, o.cc.bytes_in_flight,
            o.pacer.credit, o.pacer.updated, list(o.flight.order), o.flight.last_sent_time)


CUTS = {"end of data", "window", "ack now"}


@pytest.mark.parametrize("loss, jitter, controller, seed, cut", [
    (0.0, 0.0, NewReno, 1, CUTS | {"pacer", "ack"}), (0.0, 0.005, NewReno, 2, CUTS),
    (0.02, 0.0, LossTolerant, 3, CUTS | {"pacer", "ack"}), (0.1, 0.001, NewReno, 4, CUTS),
    (0.3, 0.0, NewReno, 5, CUTS)])
def test_stream_burst_equals_the_general_loop_packet_for_packet(loss, jitter, controller, seed,
                                                                cut):
    options = dict(loss=loss, delay=0.02, jitter=jitter, seed=seed, controller=controller)
    cuts = set()
    fast = watched(Channel(**options), cuts)
    slow = general_only(Channel(**options))
    for channel in (fast, slow):
        traffic(channel, seed, 60)
    assert len(fast.wire) > 1000
    assert fast.wire == slow.wire
    assert fast.events == slow.events
    for a, b in ((fast.a, slow.a), (fast.b, slow.b)):
        assert state(a) == state(b)
    assert cuts >= cut


def test_stream_burst_is_taken_when_nothing_but_fresh_data_waits():
    channel = Channel()
    outbox = channel.a._outbox
    calls = []
    burst = outbox._burst
    outbox._burst = lambda *args: calls.append(burst(*args))
    channel.send(channel.a, b"x" * 30000)
    assert calls and len(channel.wire) > 1
    outbox._retx.append(outbox.flight.sent[outbox.flight.order[0]].frags[0])
    assert not outbox._plain()


class OwedAck:
    """An inbox that owes an ACK (*frame*, once it fits) or nothing."""

    def __init__(self, frame=None):
        self.frame = frame
        self.ack_at = None if frame is None else 0.0

    def ack_frame(self, now, room):
        if len(self.frame) > room:
            return None
        self.ack_at = None
        return self.frame


def outbox_pair(cwnd, credit, sizes):
    """Two Outboxes (the second without the fast path) with *cwnd* and
    pacer *credit* set, holding messages of *sizes*."""
    pair = []
    for _ in range(2):
        o = Outbox(1200, 0.1, 30.0, 12000, lambda ids: None, lambda ids, why: None)
        o.cc.cwnd = cwnd
        o.pacer.credit = o.pacer.burst = credit
        for size in sizes:
            o.send(b"m" * size, 0.0)
        pair.append(o)
    pair[1]._plain = lambda: False
    return pair


@pytest.mark.parametrize("ack", [None, b"\x02" + bytes(15), b"\x02" + bytes(1000)],
                         ids=["no ack", "small ack", "large ack"])
def test_stream_burst_cut_at_every_window_and_credit_edge_as_the_general_loop(ack):
    sizes, cuts = [1195 * 3, 100, 300, 2000], set()
    for limit in range(1200, 8400):            # every byte: each edge hit exactly
        for cwnd, credit in ((limit, 1e9), (1e9, float(limit))):
            fast, slow = outbox_pair(cwnd, credit, sizes)
            got = [o.packets(1.0, OwedAck(ack)) for o in (fast, slow)]
            assert got[0] == got[1], (cwnd, credit)
            assert state_of(fast) == state_of(slow), (cwnd, credit)
            cuts.add(len(got[0]))
    assert len(cuts) >= 5                      # bursts cut after 2, 3, ... packets


def state_of(o):
    return (o._pn, o._seq, o.packets_sent, o._limited, o.cc.bytes_in_flight, o.pacer.credit,
            o.pacer.updated, [(p.pn, p.size, [f.offset for f in p.frags])
                              for p in map(o.flight.sent.get, o.flight.order)])
