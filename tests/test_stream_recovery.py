"""The stream's loss recovery against RFC 9002's formulas: RTT estimation
(section 5), loss detection and the probe timeout (section 6), NewReno and
pacing (section 7), driven through the public API by a scripted partner
that acknowledges exactly what a test says, when it says."""

import random

import pytest

from peerpunch import streamwire as W
from peerpunch.recovery import (INITIAL_RTT, MAX_ACK_DELAY, MAX_PTO_INTERVAL, Flight, Pacer,
                                RttEstimator)
from peerpunch.stream import DEFAULT_MAX_PAYLOAD, Stream

MTU = DEFAULT_MAX_PAYLOAD
ONE_PACKET = 1100          # a message that fills one packet on its own


class Partner:
    """The far end, scripted: ACK packets with the ranges a test gives."""

    def __init__(self):
        self.pn = 0

    def ack(self, *ranges, delay=0.0):
        ranges = [(r, r) if isinstance(r, int) else r for r in ranges]
        packet = W.encode(self.pn, [(W.ACK, ranges[0][1], delay, ranges)])
        self.pn += 1
        return packet


def sent_pns(packets):
    return [W.decode(p)[0] for p in packets]


def stream_ids(packets):
    return sorted({f[1] for p in packets for f in W.decode(p)[1] if f[0] == W.STREAM})


def test_stream_rtt_estimate_hand_computed_from_rfc9002_section_5():
    s, partner = Stream(), Partner()
    samples = [   # (rtt, reported ack delay) -> (smoothed, rttvar, min) by hand
        (0.100, 0.005, (0.100, 0.050, 0.100)),           # first sample: delay unused
        (0.150, 0.010, (0.105, 0.0475, 0.100)),          # adjusted 0.140
        (0.105, 0.020, (0.105, 0.035625, 0.100)),        # 0.105 < min + delay: delay ignored
        (0.200, 0.100, (0.11375, 0.04421875, 0.100)),    # delay capped at 25 ms: adjusted 0.175
        (0.080, 0.000, (0.10953125, 0.0416015625, 0.080)),  # new minimum
    ]
    now = 0.0
    for rtt, delay, (smoothed, rttvar, min_rtt) in samples:
        s.send(b"ping", now)
        (pn,) = sent_pns(s.packets(now))
        now += rtt
        s.datagram_received(partner.ack(pn, delay=delay), now)
        stats = s.stats()
        assert stats["latest_rtt"] == pytest.approx(rtt)
        assert stats["smoothed_rtt"] == pytest.approx(smoothed, abs=1e-6)
        assert stats["rttvar"] == pytest.approx(rttvar, abs=1e-6)
        assert stats["min_rtt"] == pytest.approx(min_rtt)
        now += 1.0
    assert s.rtt == pytest.approx(0.10953125)


class ReferenceRtt:
    """RFC 9002 appendix A.7, UpdateRtt, written out separately."""

    def __init__(self):
        self.smoothed, self.rttvar, self.min, self.first = INITIAL_RTT, INITIAL_RTT / 2, 0.0, True

    def update(self, latest, ack_delay):
        if self.first:
            self.min, self.smoothed, self.rttvar, self.first = latest, latest, latest / 2, False
            return
        self.min = min(self.min, latest)
        ack_delay = min(ack_delay, MAX_ACK_DELAY)
        adjusted = latest - ack_delay if latest >= self.min + ack_delay else latest
        self.rttvar = 3 / 4 * self.rttvar + 1 / 4 * abs(self.smoothed - adjusted)
        self.smoothed = 7 / 8 * self.smoothed + 1 / 8 * adjusted


def test_stream_rtt_samples_only_from_newly_acknowledged_largest():
    s, partner, ref = Stream(), Partner(), ReferenceRtt()
    rng = random.Random(11)
    now = 0.0
    for _ in range(60):
        s.send(b"a", now)
        (first,) = sent_pns(s.packets(now))
        now += 0.01
        s.send(b"b", now)
        (second,) = sent_pns(s.packets(now))
        rtt, delay = rng.uniform(0.02, 0.3), rng.choice([0.0, 0.002, 0.015, 0.04])
        now += rtt
        s.datagram_received(partner.ack((first, second), delay=delay), now)
        ref.update(rtt, round(delay / W.ACK_DELAY_UNIT) * W.ACK_DELAY_UNIT)
        s.datagram_received(partner.ack((first, second), delay=0.0), now + 0.5)   # old news
        s.datagram_received(partner.ack(first, delay=0.0), now + 0.6)             # older
        assert s.stats()["smoothed_rtt"] == pytest.approx(ref.smoothed)
        assert s.stats()["rttvar"] == pytest.approx(ref.rttvar)
        now += 1.0


def test_stream_pto_and_its_exponential_backoff_follow_rfc9002_section_6_2():
    s = Stream(delivery_timeout=3600.0)
    s.send(b"are you there", 0.0)
    assert len(s.packets(0.0)) == 1
    pto = INITIAL_RTT + 4 * (INITIAL_RTT / 2) + MAX_ACK_DELAY             # 1.024 s
    sent_at, expected = 0.0, []
    for backoff in range(6):
        period = min(pto * 2 ** backoff, max(pto, MAX_PTO_INTERVAL))
        expected.append(period)
        deadline = s.next_deadline()
        assert deadline == pytest.approx(sent_at + period)
        assert s.packets(deadline - 1e-4) == []
        probes = s.packets(deadline)
        assert len(probes) == 2                                        # two probes, RFC 9002 6.2.4
        assert stream_ids(probes) == [1]                               # each repeats the data
        assert all(f[0] == W.ACK_NOW for p in probes for f in W.decode(p)[1][-1:])
        sent_at = deadline
    assert expected[:3] == pytest.approx([1.024, 2.048, 4.0])          # capped at 4 s
    assert s.stats()["pto"] == 6


def test_stream_pto_after_rtt_samples_and_granularity_floor():
    s, partner = Stream(), Partner()
    now = 0.0
    for _ in range(40):                      # identical samples: rttvar decays toward 0
        s.send(b"x", now)
        (pn,) = sent_pns(s.packets(now))
        now += 0.1
        s.datagram_received(partner.ack(pn), now)
        now += 1.0
    stats = s.stats()
    assert 4 * stats["rttvar"] < 0.001
    s.send(b"y", now)
    s.packets(now)
    assert s.next_deadline() == pytest.approx(now + 0.1 + 0.001 + MAX_ACK_DELAY)


def test_stream_loss_by_packet_threshold_then_time_threshold():
    s, partner = Stream(delivery_timeout=3600.0), Partner()
    for _ in range(6):
        s.send(bytes(ONE_PACKET), 0.0)
    assert sent_pns(s.packets(0.0)) == [0, 1, 2, 3, 4, 5]
    s.datagram_received(partner.ack(4), 0.1)                 # RTT sample 0.1
    repeat = s.packets(0.1)
    assert stream_ids(repeat) == [1, 2]                      # pn 0, 1: three or more below 4
    assert s.next_deadline() == pytest.approx(0.0 + 9 / 8 * 0.1)   # pn 2, 3 wait for time
    assert s.packets(0.1124) == []
    assert stream_ids(s.packets(0.1125)) == [3, 4]           # and pn 5 (above 4) is not lost
    assert s.stats()["lost"] == 4


def test_stream_newreno_slow_start_recovery_once_per_period_and_avoidance():
    s, partner = Stream(delivery_timeout=3600.0, burst_packets=1000), Partner()
    assert s.stats()["cwnd"] == 10 * MTU                     # min(10 * mtu, max(14720, 2 * mtu))
    for _ in range(200):
        s.send(bytes(ONE_PACKET), 0.0)
    first = s.packets(0.0)
    assert len(first) == 10
    flight = sum(len(p) for p in first)
    s.datagram_received(partner.ack((0, 9)), 0.1)            # slow start: + bytes acknowledged
    assert s.stats()["cwnd"] == 10 * MTU + flight

    second = s.packets(0.1)
    pns = sent_pns(second)
    cwnd = s.stats()["cwnd"]
    size = len(second[-1])
    s.datagram_received(partner.ack(pns[-1]), 0.2)           # all but the last lost: recovery
    assert s.stats()["cwnd"] == (cwnd + size) // 2
    halved = s.stats()["cwnd"]
    assert s.stats()["ssthresh"] == halved

    third = s.packets(0.21)                                  # sent after recovery began
    s.datagram_received(partner.ack(sent_pns(third)[0]), 0.3)   # ends recovery; no new cut
    assert s.stats()["cwnd"] == halved + 0                   # growth only in avoidance steps
    s.datagram_received(partner.ack(sent_pns(third)[-1]), 0.31)  # losses sent in recovery: cut
    assert s.stats()["cwnd"] == max(halved // 2, 2 * MTU)

    cwnd = s.stats()["cwnd"]                                 # congestion avoidance: + 1 MTU per cwnd
    now, acked = 0.4, 0
    while acked < cwnd:
        packets = s.packets(now)
        now += 0.1
        pns = sent_pns(packets)
        s.datagram_received(partner.ack((pns[0], pns[-1])), now)
        acked += sum(len(p) for p in packets)
    assert s.stats()["cwnd"] == cwnd + MTU


def test_stream_persistent_congestion_collapses_the_window():
    s, partner = Stream(delivery_timeout=3600.0), Partner()
    s.send(b"x", 0.0)
    (pn,) = sent_pns(s.packets(0.0))
    s.datagram_received(partner.ack(pn), 0.1)                # an RTT sample first
    s.send(b"y", 1.0)
    sent = sent_pns(s.packets(1.0))
    now = 1.0
    while s.next_deadline() < 4.0:                            # PTO probes, none acknowledged
        now = s.next_deadline()
        sent += sent_pns(s.packets(now))
    assert now - 1.0 > 3 * (0.1 + 4 * 0.05 + MAX_ACK_DELAY)  # longer than the PC duration
    s.datagram_received(partner.ack(sent[-1]), now + 0.1)
    assert s.stats()["cwnd"] == 2 * MTU
    assert s.stats()["persistent congestion"] == 1


def test_stream_window_does_not_grow_while_application_limited():
    s, partner = Stream(), Partner()
    now = 0.0
    for _ in range(50):
        s.send(b"a chat line", now)
        (pn,) = sent_pns(s.packets(now))
        now += 0.05
        s.datagram_received(partner.ack(pn), now)
        now += 2.0
    assert s.stats()["cwnd"] == 10 * MTU


def test_stream_pacer_spreads_packets_at_twice_the_window_per_rtt_in_slow_start():
    s, partner = Stream(burst_packets=2, delivery_timeout=3600.0), Partner()
    s.send(b"x", 0.0)
    (pn,) = sent_pns(s.packets(0.0))
    s.datagram_received(partner.ack(pn), 0.1)                # smoothed RTT 0.1
    for _ in range(8):
        s.send(bytes(ONE_PACKET), 1.0)
    times, now = [], 1.0
    while len(times) < 8:
        times += [now] * len(s.packets(now))
        now = s.next_deadline()
    rate = 2.0 * 10 * MTU / 0.1                               # gain 2 in slow start
    assert times[:2] == [1.0, 1.0]                            # the burst
    gaps = [b - a for a, b in zip(times[2:], times[3:])]
    size = ONE_PACKET + W.HEADER_LEN + W.STREAM_HEADER_LEN
    assert gaps == pytest.approx([size / rate] * len(gaps), rel=0.01)


def test_stream_flight_finds_acked_slices_without_scanning():
    rtt = RttEstimator()
    flight = Flight(rtt)

    class Packet:
        def __init__(self, pn, time):
            self.pn, self.time = pn, time

    for pn in range(0, 100000, 2):                            # odd numbers: ACK-only packets
        flight.add(Packet(pn, pn * 1e-6))
    newly = flight.on_ack(99998, 0.0, [(99990, 99998), (50000, 50010), (0, 4)], 1.0)
    assert sorted(p.pn for p in newly) == [0, 2, 4, 50000, 50002, 50004, 50006, 50008, 50010,
                                           99990, 99992, 99994, 99996, 99998]
    lost = flight.detect_lost(1.0)
    assert len(lost) == 50000 - 14 and lost[0].pn == 6 and len(flight) == 0


def test_stream_pacer_burst_is_a_millisecond_of_a_fast_rate_and_the_window_at_most():
    pacer = Pacer(1200, 12000)
    pacer.set_rate(100000, 0.1, False)                         # 1.25 MB/s: 1 ms is 1,250 B
    assert pacer.burst == 12000
    pacer.set_rate(8000000, 0.01, False)                       # 1 GB/s: 1 ms is 1 MB
    assert pacer.burst == pytest.approx(1e6)
    pacer.set_rate(500000, 0.0001, True)                       # 10 GB/s, but a 500-kB window
    assert pacer.burst == 500000
    pacer.credit, pacer.updated = 0.0, 5.0
    pacer.set_rate(8000000, 0.01, False)
    sent = 0
    assert pacer.release_time() == pytest.approx(5.0 + 1e-3, abs=1e-5)   # a millisecond's worth
    while pacer.ready(5.001 + 1e-6):
        pacer.on_sent(1200)
        sent += 1200
    assert sent >= 0.99e6                                       # not 10 datagrams
