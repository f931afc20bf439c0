"""Path MTU discovery for a stream (peerpunch.pmtu, RFC 8899 reduced): one
probe of the larger size once there is an RTT sample, confirmed by its
acknowledgment; failures retried, then given up; a black hole takes the
stream back to the base size and cuts what it still has to send again.
Fake clock and simulated links (tests/streamsim.py)."""

import os

import pytest

from peerpunch import pmtu
from peerpunch import streamwire as W
from peerpunch.pmtu import PathMtu
from peerpunch.stream import Stream

from .streamsim import Channel

BASE, TARGET = 1174, 1446


def test_pmtu_probes_once_there_is_an_rtt_and_an_ack_confirms():
    m = PathMtu(BASE, TARGET)
    assert not m.probe_due(0.0, has_rtt=False) and m.probe_due(0.0, has_rtt=True)
    m.sent(7, 0.0, 0.02)
    assert not m.probe_due(0.01, True)                   # one probe at a time
    assert not m.on_ack([(0, 6), (8, 9)]) and m.size == BASE
    assert m.on_ack([(5, 9)]) and m.size == TARGET and not m.probe_due(1.0, True)


def test_pmtu_failed_probes_are_retried_then_the_search_stops():
    m, now = PathMtu(BASE, TARGET), 0.0
    for failure in range(pmtu.MAX_PROBES):
        assert m.probe_due(now, True)
        m.sent(failure, now, 0.01)
        m.on_timers(now + pmtu.PROBE_TIMEOUT_MIN - 1e-3)
        assert m.pn == failure                            # not yet
        now += pmtu.PROBE_TIMEOUT_MIN
        m.on_timers(now)
        assert not m.probe_due(now, True)                 # waits RETRY_AFTER
        now += pmtu.RETRY_AFTER
    assert not m.searching and m.size == BASE and not m.probe_due(now + 100, True)


def test_pmtu_black_hole_drops_to_base_and_searches_again_later():
    m = PathMtu(BASE, TARGET)
    assert not m.black_hole(0.0, 5)                       # at the base already
    m.sent(1, 0.0, 0.01)
    m.on_ack([(1, 1)])
    for timeouts in range(1, pmtu.BLACK_HOLE_PTOS):      # a few: random loss
        assert not m.black_hole(5.0, timeouts) and m.size == TARGET
    assert m.black_hole(5.0, pmtu.BLACK_HOLE_PTOS) and m.size == BASE
    assert not m.probe_due(5.0 + pmtu.RAISE_AFTER - 1, True)
    assert m.probe_due(5.0 + pmtu.RAISE_AFTER, True)


def test_pmtu_without_a_larger_target_never_probes():
    assert not PathMtu(BASE, None).probe_due(0.0, True)
    assert not PathMtu(BASE, BASE).probe_due(0.0, True)


def test_pmtu_pad_frame_round_trips_and_only_acks_the_probe():
    packet = W.encode(3, [(W.ACK_NOW,), (W.PAD, 100)])
    assert len(packet) == W.HEADER_LEN + 101
    assert W.decode(packet) == (3, [(W.ACK_NOW,), (W.PAD, 100)], True)
    assert W.decode(W.encode(3, [(W.PAD, 1)]))[2] is False         # PAD alone: not eliciting


def _transfer(drop=None, messages=60, size=60000, at=None, outstanding=16, loss=0.0):
    """*messages* sent as ChatFiles does (at most *outstanding* unresolved);
    *at(channel)* runs at each step."""
    ch = Channel(delay=0.01, drop=drop, delivery_timeout=3600.0, max_payload=BASE,
                 probe_payload=TARGET, loss=loss, seed=4)
    data = [os.urandom(size) for _ in range(messages)]
    sent = 0
    while len(ch.received("b")) < messages:
        while sent < messages and sent - len(ch.delivered_ids("a")) < outstanding:
            ch.send(ch.a, data[sent])
            sent += 1
        if at is not None:
            at(ch)
        assert ch.step(), "the link went idle at t=%.3f s" % ch.now
        assert ch.now < 600
    assert [e.data for e in ch.received("b")] == data
    return ch


def _sizes(ch, name="a", after=0.0):
    return [len(p) for t, who, p in ch.wire if who == name and t >= after]


def test_pmtu_stream_grows_its_packets_where_the_path_carries_them():
    ch = _transfer()
    sizes = _sizes(ch)
    big = [s for s in sizes if s > BASE]
    assert max(sizes) == TARGET and len(big) > len(sizes) // 2   # data: TARGET less SKIP's room
    assert min(big) >= TARGET - W.SKIP_LEN - 1 and ch.a.stats()["mtu probes"] == 1


def test_pmtu_stream_stays_at_the_base_size_where_the_path_does_not():
    ch = _transfer(lambda who, p: len(p) > BASE)
    sizes = _sizes(ch)
    assert max(s for s in sizes if s != TARGET) <= BASE
    assert 1 <= sizes.count(TARGET) == ch.a.stats()["mtu probes"] <= pmtu.MAX_PROBES


def test_pmtu_random_loss_is_no_black_hole():
    ch = _transfer(messages=100, loss=0.1)
    sizes = _sizes(ch)
    assert ch.a.stats()["pto"] > 10 and ch.a.stats().get("mtu black hole", 0) <= 1
    assert len([s for s in sizes if s > BASE]) > len(sizes) // 2


def test_pmtu_black_hole_mid_transfer_falls_back_and_every_message_arrives():
    cut = []

    def at(ch):                                   # after 300 big packets, none passes
        if not cut and len([p for _, who, p in ch.wire if len(p) > BASE]) >= 300:
            cut.append(ch.now)

    ch = _transfer(lambda who, p: bool(cut) and len(p) > BASE, messages=150, at=at)
    assert cut and max(_sizes(ch)) == TARGET
    assert ch.a.stats()["mtu black hole"] == 1
    late = _sizes(ch, after=cut[0])
    assert len(late) > 1000 and max(late[-900:]) <= BASE     # after one PTO: base size


def test_pmtu_stream_refuses_a_probe_size_out_of_range():
    with pytest.raises(ValueError):
        Stream(probe_payload=70000)


def test_pmtu_cap_holds_the_base_size_through_the_relay_and_searches_again_after():
    m = PathMtu(BASE, TARGET)
    m.sent(1, 0.0, 0.01)
    m.on_ack([(1, 1)])
    assert m.size == TARGET
    assert m.cap(True, 5.0) and m.size == BASE            # relayed: shrink at once
    assert not m.cap(True, 5.1) and not m.probe_due(100.0, True)   # and no probe there
    assert not m.cap(False, 200.0) and m.size == BASE     # direct again: search anew...
    assert not m.probe_due(200.0 + pmtu.RAISE_AFTER - 1, True)
    assert m.probe_due(200.0 + pmtu.RAISE_AFTER, True)    # ...in a moment


def test_pmtu_stream_relayed_mid_transfer_sends_no_packet_above_the_base_size():
    """The relay forwards base-size packets only: once the path goes through
    it, nothing larger leaves (no waiting for a black hole to be noticed)."""
    relayed = []

    def at(ch):                                   # after 300 big packets, the path is relayed
        if not relayed and len([p for _, who, p in ch.wire if len(p) > BASE]) >= 300:
            relayed.append(ch.now)
            ch.a.cap_size(True, ch.now)

    ch = _transfer(lambda who, p: bool(relayed) and len(p) > BASE, messages=150, at=at)
    assert relayed and ch.a.stats().get("mtu black hole", 0) == 0
    late = _sizes(ch, after=relayed[0] + 1e-9)         # what left once it was relayed
    assert len(late) > 1000 and max(late) <= BASE


V6_TARGET = TARGET - 20


def test_pmtu_aim_retargets_the_search_and_drops_a_size_the_new_path_may_not_carry():
    m = PathMtu(BASE, TARGET)
    assert not m.aim(TARGET, 0.0) and m.target == TARGET        # the same: nothing changes
    m.sent(1, 0.0, 0.01)
    assert m.on_ack([(1, 1)]) and m.size == TARGET
    assert m.aim(V6_TARGET, 5.0) and m.size == BASE             # IPv6 now: back to the base...
    assert m.probe_due(5.0, True) and m.target == V6_TARGET     # ...and a search at once
    m.sent(2, 5.0, 0.01)
    assert m.on_ack([(2, 2)]) and m.size == V6_TARGET
    assert m.aim(BASE, 6.0) and m.size == BASE                  # none above the base: no search
    assert m.target is None and not m.probe_due(60.0, True) and m.size == BASE


def test_pmtu_aim_restarts_a_search_that_had_given_up():
    m, now = PathMtu(BASE, TARGET), 0.0
    for failure in range(pmtu.MAX_PROBES):                      # the IPv4 size never passes
        m.sent(failure, now, 0.01)
        now += pmtu.RETRY_AFTER
        m.on_timers(now)
    assert not m.searching and not m.probe_due(now + 100, True)
    assert not m.aim(V6_TARGET, now) and m.probe_due(now, True)  # at the base: no drop, a search


def test_pmtu_stream_aimed_at_the_ipv6_size_grows_where_only_that_passes():
    """A path that carries the IPv6 frame's datagram and nothing larger: aimed
    at the IPv4 size the stream stays at the base; aimed right, it grows."""
    wrong = _transfer(lambda who, p: len(p) > V6_TARGET)
    assert max(s for s in _sizes(wrong) if s != TARGET) <= BASE
    aimed = []

    def at(ch):
        if not aimed:
            aimed.append(ch.now)
            ch.a.cap_size(False, ch.now, V6_TARGET)

    right = _transfer(lambda who, p: len(p) > V6_TARGET, at=at)
    sizes = _sizes(right)
    assert max(sizes) == V6_TARGET and TARGET not in sizes
    assert len([s for s in sizes if s > BASE]) > len(sizes) // 2
