"""Two :class:`peerpunch.stream.Stream` ends joined by a simulated link with
a fake clock, for the stream's tests (h11's ConnectionPair, for datagrams).

The link loses (seeded random), delays (a base plus random jitter, so
datagrams overtake each other) and duplicates datagrams, or is cut. Time
moves only when ``run_until`` advances it to the next arrival or deadline,
so minutes of protocol time take milliseconds. Every datagram sent is kept
in ``wire`` (time, sender name, payload) for the tests to inspect.
"""

import heapq
import random

from peerpunch import streamwire as W
from peerpunch.stream import Delivered, NotDelivered, Received, Stream, StreamError


class Channel:
    def __init__(self, loss=0.0, delay=0.010, jitter=0.0, duplicate=0.0, seed=1,
                 drop=None, tolerate=False, **options):
        self.a, self.b = Stream(**options), Stream(**options)
        self.names = {id(self.a): "a", id(self.b): "b"}
        self.loss, self.delay, self.jitter, self.duplicate = loss, delay, jitter, duplicate
        self.drop = drop                  # drop(sender name, payload) -> True to lose it
        self.tolerate = tolerate          # drop datagrams a stream refuses, as a shell does
        self.refused = 0
        self.random = random.Random(seed)
        self.now = 0.0
        self.cut = False
        self.air = []                     # (arrival, seq, receiver, payload)
        self.seq = 0
        self.wire = []                    # (time, sender name, payload)
        self.arrivals = []                # (time, receiver name, payload)
        self.events = {"a": [], "b": []}  # (time, event)
        self.counts = {"lost": 0, "duplicated": 0, "reordered": 0}
        self._last_arrival = {}

    def other(self, stream):
        return self.b if stream is self.a else self.a

    def name(self, stream):
        return self.names[id(stream)]

    def send(self, stream, data):
        message_id = stream.send(data, self.now)
        self.pump(stream)
        return message_id

    def pump(self, stream):
        """Transmit what *stream* has to send now; collect its events."""
        name = self.name(stream)
        for payload in stream.packets(self.now):
            self.wire.append((self.now, name, payload))
            self._transmit(stream, name, payload)
        self.events[name].extend((self.now, e) for e in stream.events())

    def _transmit(self, stream, name, payload):
        if self.cut or (self.drop is not None and self.drop(name, payload)):
            return
        if self.random.random() < self.loss:
            self.counts["lost"] += 1
            return
        copies = 2 if self.random.random() < self.duplicate else 1
        self.counts["duplicated"] += copies - 1
        for _ in range(copies):
            arrival = self.now + self.delay + self.random.random() * self.jitter
            self.seq += 1
            heapq.heappush(self.air, (arrival, self.seq, self.other(stream), payload))

    def step(self):
        """Deliver the next datagram due, or advance the clock to the next
        arrival or deadline and serve the streams whose deadline passed."""
        if self.air and self.air[0][0] <= self.now:
            arrival, seq, receiver, payload = heapq.heappop(self.air)
            name = self.name(receiver)
            if seq < self._last_arrival.get(name, 0):
                self.counts["reordered"] += 1
            self._last_arrival[name] = max(seq, self._last_arrival.get(name, 0))
            self.arrivals.append((self.now, name, payload))
            try:
                receiver.datagram_received(payload, self.now)
            except StreamError:
                if not self.tolerate:
                    raise
                self.refused += 1
            self.pump(receiver)
            return True
        due = [(s.next_deadline(), s) for s in (self.a, self.b)]
        times = [t for t, _ in due if t is not None] + ([self.air[0][0]] if self.air else [])
        if not times:
            return False
        self.now = max(self.now, min(times))
        for deadline, stream in due:
            if deadline is not None and deadline <= self.now:
                self.pump(stream)
        return True

    def run_until(self, condition, limit=600.0):
        """Step until *condition()* holds; fail if simulated time passes *limit*."""
        while not condition():
            if self.now > limit:
                raise AssertionError("condition not met by t=%.1f s" % self.now)
            if not self.step():
                raise AssertionError("the link went idle at t=%.3f s" % self.now)

    def next_time(self):
        times = [t for t in (self.a.next_deadline(), self.b.next_deadline()) if t is not None]
        if self.air:
            times.append(self.air[0][0])
        return min(times) if times else None

    def run_for(self, seconds):
        """Let *seconds* of simulated time pass."""
        end = self.now + seconds
        while True:
            upcoming = self.next_time()
            if upcoming is None or upcoming > end:
                self.now = end
                return
            self.step()

    # -------------------------------------------------------- event views

    def received(self, name):
        return [e for _, e in self.events[name] if isinstance(e, Received)]

    def delivered_ids(self, name):
        return [i for _, e in self.events[name] if isinstance(e, Delivered) for i in e.message_ids]

    def not_delivered(self, name):
        return [(t, e) for t, e in self.events[name] if isinstance(e, NotDelivered)]


def frames_of(payload):
    return W.decode(payload)[1]


def stream_ids(payload):
    """Message ids a packet carries data of."""
    return {f[1] for f in frames_of(payload) if f[0] == W.STREAM}
