"""Loss detection, RTT, congestion control and pacing for the stream (RFC 9002).

Theory of operation
-------------------
The pieces the :class:`~peerpunch.stream.Stream` sender consults; none of
them sees a clock or a socket -- times are passed in -- and none knows what
a packet carries.

:class:`Flight` is section 6 and appendix A with one packet number space:
the ack-eliciting packets in flight, as a list of packet numbers in sending
order plus a dict. An ACK range removes a slice found by bisection, so an
ACK costs O(log n + newly acknowledged) however many packets are in
flight, and yields an RTT sample when its largest packet is newly
acknowledged. A packet sent K_PACKET_THRESHOLD before the largest
acknowledged, or ``loss_delay()`` before now, is lost; both conditions hold
for a prefix of the list, so detection pops from the front and sets the
loss timer from the first survivor. Otherwise the timer is the probe
timeout after the last ack-eliciting packet, ``pto() * 2 ** pto_count``,
which grows until MAX_PTO_INTERVAL (or ``pto()`` itself if larger) and no
further: a partner who was away a minute is probed again within seconds
of coming back. The backoff resets on every acknowledgment.

:class:`RttEstimator` is RFC 9002 section 5: the first sample sets
``smoothed = latest`` and ``variance = latest / 2``; later ones subtract the
peer's acknowledgment delay (capped at its max_ack_delay) only when that
leaves at least ``min_rtt``, then move ``variance`` by a quarter and
``smoothed`` by an eighth toward the sample (the variance against the
smoothed value before this sample, as in RFC 6298 and RFC 9002's
appendix A). ``pto()`` is ``smoothed + max(4 * variance, granularity) +
max_ack_delay`` (section 6.2.1) and ``loss_delay()`` the time threshold
``max(9/8 * max(smoothed, latest), granularity)`` (section 6.1.2). Our
stream runs inside an established secure channel, so the handshake is
always "confirmed" in RFC 9002's sense.

:class:`NewReno` is section 7 and appendix B: slow start from
``min(10 * max_datagram, max(14720, 2 * max_datagram))`` bytes, a recovery
period entered once per round trip on loss (``ssthresh = cwnd / 2``, the
window cut at once, one packet allowed past it to speed recovery),
congestion avoidance adding one datagram per window acknowledged (byte
counting, no division per ack), and persistent congestion collapsing the
window to ``2 * max_datagram``. The window does not grow while the sender
is application-limited (section 7.8): a chat that sends a line a minute
never builds a window it has not tested.

:class:`Pacer` is the leaky bucket of section 7.7: bytes of credit refill
at ``gain * cwnd / smoothed_rtt`` (gain 2 in slow start, 1.25 after, as
Linux TCP paces) up to a burst; a packet may leave while a full datagram's
credit is there, and a blocked sender comes back when a millisecond's
worth has accrued (one datagram at least, the burst at most). The burst
is the configured one (RFC 9002's initial window) or, when the rate is
higher, a PACING_GRANULARITY's worth of it (the window at most): a sender
woken once a millisecond could otherwise never go faster than its burst
per millisecond (10 datagrams of 1,200 bytes: 12 MB/s), whatever its window.

:func:`persistent_congestion` decides section 7.6.2 for one batch of
packets declared lost at once.
"""

import bisect
import math

K_PACKET_THRESHOLD = 3
K_TIME_THRESHOLD = 9 / 8
K_GRANULARITY = 0.001
INITIAL_RTT = 0.333
MAX_ACK_DELAY = 0.025
K_PERSISTENT_CONGESTION_THRESHOLD = 3
K_LOSS_REDUCTION = 0.5
PACING_GAIN_SLOW_START = 2.0
PACING_GAIN = 1.25
PACING_GRANULARITY = 0.001
MAX_PTO_INTERVAL = 4.0
MAX_BACKOFF = 30


class RttEstimator:
    def __init__(self, initial=INITIAL_RTT, max_ack_delay=MAX_ACK_DELAY):
        self.max_ack_delay = max_ack_delay
        self.latest = 0.0
        self.smoothed = initial
        self.variance = initial / 2
        self.min = 0.0
        self.first_sample_time = None
        self.pto_base = self.pto()

    def on_sample(self, latest, ack_delay, now):
        """A new RTT sample *latest*, whose acknowledgment the peer says it
        held for *ack_delay*, taken at *now*."""
        self.latest = latest
        if self.first_sample_time is None:
            self.min = self.smoothed = latest
            self.variance = latest / 2
            self.first_sample_time = now
            self.pto_base = self.pto()
            return
        self.min = min(self.min, latest)
        ack_delay = min(ack_delay, self.max_ack_delay)
        adjusted = latest - ack_delay if latest >= self.min + ack_delay else latest
        self.variance = 0.75 * self.variance + 0.25 * abs(self.smoothed - adjusted)
        self.smoothed = 0.875 * self.smoothed + 0.125 * adjusted
        self.pto_base = self.pto()

    def pto(self):
        """The probe timeout period before backoff."""
        return self.smoothed + max(4 * self.variance, K_GRANULARITY) + self.max_ack_delay

    def loss_delay(self):
        """How long after a later packet was acknowledged an earlier one is lost."""
        return max(K_TIME_THRESHOLD * max(self.latest, self.smoothed), K_GRANULARITY)


class Flight:
    """Packets in flight: each has ``pn`` and ``time`` (when sent), nothing else is read."""

    def __init__(self, rtt):
        self.rtt = rtt
        self.sent = {}                  # pn -> packet
        self.order = []                 # their packet numbers, ascending
        self.largest_acked = -1
        self.loss_time = None
        self.pto_count = 0
        self.last_sent_time = 0.0

    def __len__(self):
        return len(self.order)

    def add(self, packet):
        self.sent[packet.pn] = packet
        self.order.append(packet.pn)
        self.last_sent_time = packet.time

    def add_run(self, first, packets):
        """``add`` of each of *packets*, numbered *first*, *first* + 1, ...
        and sent in this order at one time."""
        pns = range(first, first + len(packets))
        self.sent.update(zip(pns, packets))
        self.order += pns
        self.last_sent_time = packets[-1].time

    def on_ack(self, largest, ack_delay, ranges, now):
        """The packets an ACK (inclusive *ranges*, highest first) newly
        acknowledges, removed; takes the RTT sample it gives."""
        order, sent = self.order, self.sent
        newly, top = [], None
        for low, high in ranges:
            i = bisect.bisect_left(order, low)
            j = bisect.bisect_right(order, high)
            if i < j:
                if top is None:
                    top = sent[order[j - 1]]
                newly.extend(map(sent.pop, order[i:j]))
                del order[i:j]
        if newly:
            self.largest_acked = max(self.largest_acked, largest)
            if top.pn == largest:
                self.rtt.on_sample(now - top.time, ack_delay, now)
            self.pto_count = 0
        return newly

    def detect_lost(self, now):
        """The packets now lost, removed, oldest first; sets the loss timer."""
        largest, order, sent = self.largest_acked, self.order, self.sent
        delay = self.rtt.loss_delay()
        count, total = 0, len(order)
        while count < total:          # the same sum as the timer below: no rounding gap
            pn = order[count]
            if pn > largest or (pn + K_PACKET_THRESHOLD > largest and sent[pn].time + delay > now):
                break
            count += 1
        self.loss_time = None
        if count < total and order[count] < largest:
            self.loss_time = sent[order[count]].time + delay
        lost = [sent.pop(pn) for pn in order[:count]]
        del order[:count]
        return lost

    def pto_period(self):
        base = self.rtt.pto_base
        if not self.pto_count:
            return base
        return min(base * (1 << min(self.pto_count, MAX_BACKOFF)), max(base, MAX_PTO_INTERVAL))

    def timer(self):
        """When the loss timer or the probe timeout fires, None if neither is set."""
        if self.loss_time is not None:
            return self.loss_time
        if not self.order:
            return None
        return self.last_sent_time + self.pto_period()

    def clear(self):
        """Forget every packet in flight; them, oldest first."""
        packets = [self.sent[pn] for pn in self.order]
        self.sent.clear()
        del self.order[:]
        self.loss_time = None
        self.pto_count = 0
        return packets


def initial_window(max_datagram):
    return min(10 * max_datagram, max(14720, 2 * max_datagram))


class NewReno:
    def __init__(self, max_datagram, max_window):
        self.max_datagram = max_datagram
        self.min_window = 2 * max_datagram
        self.max_window = max(max_window, self.min_window)
        self.cwnd = initial_window(max_datagram)
        self.ssthresh = math.inf
        self.bytes_in_flight = 0
        self.recovery_start = None
        self.allowance = 0          # packets that may go past the window (entering recovery)
        self._credit = 0            # bytes acknowledged toward the next increase in avoidance

    @property
    def slow_start(self):
        return self.cwnd < self.ssthresh

    def can_send(self):
        return self.bytes_in_flight + self.max_datagram <= self.cwnd or self.allowance > 0

    def on_sent(self, size):
        self.bytes_in_flight += size
        if self.allowance and self.bytes_in_flight > self.cwnd:
            self.allowance -= 1

    def in_recovery(self, sent_time):
        return self.recovery_start is not None and sent_time <= self.recovery_start

    def on_acked(self, acked, growth, limited):
        """*acked* bytes left flight; *growth* of them were sent after the
        recovery period began; *limited* says the window was the limit."""
        self.bytes_in_flight -= acked
        self.allowance = 0
        if not growth or not limited:
            return
        if self.slow_start:
            self.cwnd = min(self.cwnd + growth, self.max_window)
            return
        self._credit += growth
        if self._credit >= self.cwnd:
            steps, self._credit = divmod(self._credit, self.cwnd)
            self.cwnd = min(self.cwnd + steps * self.max_datagram, self.max_window)

    def on_lost(self, lost, last_sent_time, now):
        """*lost* bytes were declared lost, the newest sent at *last_sent_time*."""
        self.bytes_in_flight -= lost
        if self.in_recovery(last_sent_time):
            return
        self.recovery_start = now
        self.ssthresh = self.reduced_window()
        self.cwnd = self.ssthresh
        self._credit = 0
        self.allowance = 1

    def reduced_window(self):
        """The window after a loss event (a controller for bulk data overrides it)."""
        return max(int(self.cwnd * K_LOSS_REDUCTION), self.min_window)

    def on_persistent_congestion(self):
        self.cwnd = self.min_window
        self.recovery_start = None
        self._credit = 0

    def forget(self, size):
        """*size* bytes leave flight without news of their fate."""
        self.bytes_in_flight -= size


def persistent_congestion(lost, rtt):
    """RFC 9002 section 7.6.2 for *lost*, ``(seq, sent_time)`` of the
    ack-eliciting packets just declared lost, oldest first, where *seq*
    counts ack-eliciting packets as they were sent. Only packets sent after
    the first RTT sample count; the two ends must lie further apart than the
    persistent congestion duration, and every packet sent between them must
    be in *lost* (so none of them was acknowledged; one declared lost
    earlier also breaks the run, which errs on the side of not declaring)."""
    first = rtt.first_sample_time
    if first is None:
        return False
    counted = [(seq, sent) for seq, sent in lost if sent > first]
    if len(counted) < 2:
        return False
    (seq0, t0), (seq1, t1) = counted[0], counted[-1]
    return (seq1 - seq0 + 1 == len(counted)
            and t1 - t0 > rtt.pto() * K_PERSISTENT_CONGESTION_THRESHOLD)


class Pacer:
    def __init__(self, quantum, burst):
        self.quantum = quantum      # credit a packet needs: one full datagram
        self.min_burst = self.burst = max(burst, 2 * quantum)
        self.credit = float(self.burst)
        self.rate = math.inf        # bytes per second
        self.updated = None

    def set_rate(self, cwnd, smoothed_rtt, slow_start):
        gain = PACING_GAIN_SLOW_START if slow_start else PACING_GAIN
        self.rate = gain * cwnd / max(smoothed_rtt, 1e-6)
        self.burst = max(self.min_burst, min(self.rate * PACING_GRANULARITY, cwnd))

    def _refill(self, now):
        if self.updated is not None and now > self.updated:
            self.credit = min(self.burst, self.credit + (now - self.updated) * self.rate)
        if self.updated is None or now > self.updated:
            self.updated = now

    def ready(self, now):
        self._refill(now)
        return self.credit >= self.quantum

    def on_sent(self, size):
        self.credit -= size

    def release_time(self):
        """When to come back for more: once a PACING_GRANULARITY's worth of
        credit is there (at least a datagram, at most the burst), so fast
        senders wake once a millisecond, not once a packet."""
        if self.credit >= self.quantum or self.updated is None:
            return self.updated
        need = min(self.burst, max(self.quantum, self.rate * PACING_GRANULARITY))
        return self.updated + (need - self.credit) / self.rate + 1e-6
