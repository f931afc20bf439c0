"""How far a transfer is: bytes, rate and time left, as data.

Theory of operation
-------------------
A :class:`Meter` counts the bytes of one transfer (those already there at a
resume count as done, but not towards the rate). :meth:`Meter.add` takes the
bytes just done and the caller's ``now`` (seconds, monotonic) and returns a
:class:`Progress` at most every MIN_INTERVAL seconds (always at the end), or
None: a shell can draw every Progress it gets without flooding a terminal.
The rate is measured over the last RATE_WINDOW seconds (a rate since the
start would hide a stall); the time left follows from it (None while the
rate is unknown or zero). Sans-I/O: no clock of its own.
"""

import collections

MIN_INTERVAL = 0.1          # seconds between two Progress reports at most ~10/s
RATE_WINDOW = 3.0           # seconds of history the rate is measured over

Progress = collections.namedtuple("Progress", "done total rate eta")
"""*done* of *total* bytes; *rate* in bytes/s and *eta* in seconds, or None."""


class Meter:
    """The progress of *total* bytes, *done* of them there at *now*."""

    def __init__(self, total, done, now):
        self.total = total
        self.done = done
        self._samples = collections.deque([(now, done)])
        self._shown = None               # when the last Progress was returned

    def add(self, nbytes, now):
        """*nbytes* more are done at *now*: a Progress to show, or None."""
        self.done = min(self.total, self.done + nbytes)
        self._samples.append((now, self.done))
        while len(self._samples) > 2 and now - self._samples[1][0] >= RATE_WINDOW:
            self._samples.popleft()
        finished = self.done >= self.total
        if not finished and self._shown is not None and now - self._shown < MIN_INTERVAL:
            return None
        self._shown = now
        return self.progress(now)

    def rate(self, now):
        """Bytes per second over the window ending *now*, or None."""
        since, done_then = self._samples[0]
        if now - since <= 0:
            return None
        return (self.done - done_then) / (now - since)

    def progress(self, now):
        """The Progress at *now*."""
        rate = self.rate(now)
        eta = (self.total - self.done) / rate if rate else None
        return Progress(self.done, self.total, rate, eta)
