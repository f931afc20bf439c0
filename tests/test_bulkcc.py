"""The files stream's congestion controller (peerpunch.bulkcc): isolated
random losses take a little off the window and never pin it at NewReno's
minimum; sustained loss halves it as NewReno does."""

import random

from peerpunch import bulkcc as B
from peerpunch import chatfiles as CF
from peerpunch.filedisk import Disk
from peerpunch.recovery import NewReno

MD = 1174


def grown(cls, packets, acked_packets=200):
    """A controller whose window is *packets* datagrams after a clean run."""
    cc = cls(MD, 1 << 22)
    cc.ssthresh = cc.cwnd = packets * MD
    cc.on_sent(acked_packets * MD)
    cc.on_acked(acked_packets * MD, 0, False)
    return cc


def lose(cc, packets, now):
    cc.on_sent(packets * MD)
    cc.on_lost(packets * MD, now, now)


def test_bulkcc_isolated_loss_takes_fifteen_percent_where_newreno_halves():
    tolerant, reno = grown(B.LossTolerant, 40), grown(NewReno, 40)
    for cc in (tolerant, reno):
        lose(cc, 1, 1.0)
    assert tolerant.cwnd == int(40 * MD * B.MILD_REDUCTION)
    assert reno.cwnd == 20 * MD


def test_bulkcc_random_loss_never_pins_the_window_below_ten_datagrams():
    rng = random.Random(5)
    tolerant, reno = grown(B.LossTolerant, 40), grown(NewReno, 40)
    for round_trip in range(200):                 # 10 % of each round's datagrams lost
        for cc in (tolerant, reno):
            window = cc.cwnd // MD
            lost = sum(rng.random() < 0.10 for _ in range(window))
            cc.on_sent(window * MD)
            cc.on_acked((window - lost) * MD, (window - lost) * MD, True)
            if lost:
                cc.on_lost(lost * MD, round_trip + 0.5, round_trip + 1.0)
    assert tolerant.loss_rate < B.TOLERATED_LOSS
    assert tolerant.cwnd >= B.TOLERANT_MIN_PACKETS * MD
    assert reno.cwnd < 4 * MD


def test_bulkcc_sustained_loss_halves_down_to_newrenos_minimum():
    cc = grown(B.LossTolerant, 40, acked_packets=20)
    for i in range(12):
        lose(cc, 20, float(i + 1))
    assert cc.loss_rate > B.TOLERATED_LOSS
    assert cc.cwnd == 2 * MD


def test_bulkcc_a_cut_never_grows_a_small_window():
    cc = grown(B.LossTolerant, 3)
    lose(cc, 1, 1.0)
    assert 2 * MD <= cc.cwnd <= 3 * MD


def test_bulkcc_is_the_files_streams_controller(tmp_path):
    files = CF.ChatFiles("bob", Disk(str(tmp_path)), MD)
    files.start((CF.FW.FEATURE,))
    assert type(files.stream._outbox.cc) is B.LossTolerant
