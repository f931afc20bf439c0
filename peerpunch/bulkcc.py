"""A congestion controller for bulk data on lossy paths (the files stream).

Theory of operation
-------------------
:class:`~peerpunch.recovery.NewReno` takes every loss for congestion: each
round trip with a loss halves the window, so random loss of a few percent
(a radio link, a lossy home router; the NAT lab's ``statistic`` rule) pins
it at its two-packet minimum, and probe timeouts then set the pace. A
stream that carries file data uses :class:`LossTolerant` instead, which is
NewReno (slow start, recovery once per round trip, congestion avoidance,
persistent congestion, pacing) with one difference: how much a loss event
takes off depends on the share of bytes recently lost.

* It keeps the bytes acknowledged and lost over the last WINDOW_PACKETS
  datagrams or so (both counters halve when their sum passes that), and
  lost over their sum is the recent loss rate (over MIN_SAMPLE_PACKETS at
  least, so that the first few packets' news is not taken for a rate).
* A loss event while that rate is at most TOLERATED_LOSS is taken for the
  path's own random loss: the window shrinks by MILD_REDUCTION, and not
  below TOLERANT_MIN_PACKETS datagrams (RFC 9002's initial window) unless
  it was smaller already -- a cut never grows it.
* Above TOLERATED_LOSS the loss is sustained, which is what an overflowing
  queue or a policing relay looks like: NewReno's halving, down to its
  two-datagram minimum. Persistent congestion collapses the window as in
  NewReno whatever the rate.

So it never sends faster than NewReno would on a clean path, and on a
congested one it backs off as NewReno does once loss passes a quarter of
what it sends; only isolated losses of a lossy path are forgiven. Over a
relayed path the files stream is paced below the relay's rate besides
(:mod:`peerpunch.chatfiles`).
"""

from .recovery import NewReno

TOLERATED_LOSS = 0.25
MILD_REDUCTION = 0.85
TOLERANT_MIN_PACKETS = 10
WINDOW_PACKETS = 128
MIN_SAMPLE_PACKETS = 32


class LossTolerant(NewReno):
    def __init__(self, max_datagram, max_window):
        super().__init__(max_datagram, max_window)
        self.tolerant_min = TOLERANT_MIN_PACKETS * max_datagram
        self._acked = 0
        self._lost = 0

    @property
    def loss_rate(self):
        """Share of the recent bytes that were lost (0 before any news)."""
        total = max(self._acked + self._lost, MIN_SAMPLE_PACKETS * self.max_datagram)
        return self._lost / total

    def _count(self, acked, lost):
        self._acked += acked
        self._lost += lost
        if self._acked + self._lost > WINDOW_PACKETS * self.max_datagram:
            self._acked //= 2
            self._lost //= 2

    def on_acked(self, acked, growth, limited):
        self._count(acked, 0)
        super().on_acked(acked, growth, limited)

    def on_lost(self, lost, last_sent_time, now):
        self._count(0, lost)
        super().on_lost(lost, last_sent_time, now)

    def reduced_window(self):
        if self.loss_rate > TOLERATED_LOSS:
            return super().reduced_window()
        floor = min(self.cwnd, self.tolerant_min)
        return max(int(self.cwnd * MILD_REDUCTION), floor, self.min_window)

