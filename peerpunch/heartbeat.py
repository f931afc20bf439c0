"""Is the partner still there? The keep-alive of one path.

Theory of operation
-------------------
Once a chat is connected its :class:`~peerpunch.path.Path` starts a
:class:`Heartbeat`, which says when to Ping and when the silence means
something (:data:`TRANSITIONS`)::

    ALIVE --silent SUSPECT_AFTER intervals--> SUSPECT --heard--> ALIVE
    ALIVE, SUSPECT --silent LOST_AFTER_INTERVALS intervals--> LOST

ALIVE pings every *interval* (the keep-alive) and wakes up in time to notice
the silence. On becoming SUSPECT the owner asks the relay to introduce us
again (our NAT or the peer's may have moved us), and pings go four times as
often. After RELAY_PROBE_AFTER intervals of silence the owner pings through
the relay as well, if it can. LOST ends the chat. Anything heard from the
peer (:meth:`Heartbeat.heard`) makes it ALIVE again.

What it needs of its owner, as callables: ``suspected()`` -> effects,
``silent_long()`` (no effects: the pings change), ``lost()`` -> effects and
``ping()`` -> effects (the keep-alive Ping, for the owner to seal and send).
"""

import enum

from .events import LOST_AFTER_INTERVALS, RELAY_PROBE_AFTER, SUSPECT_AFTER
from .timers import Timer


class Beat(enum.Enum):
    ALIVE = "alive"
    SUSPECT = "suspect"
    LOST = "lost"


TRANSITIONS = {
    (Beat.ALIVE, "quiet"): Beat.SUSPECT,
    (Beat.ALIVE, "heard"): Beat.ALIVE,
    (Beat.SUSPECT, "heard"): Beat.ALIVE,
    (Beat.LOST, "heard"): Beat.LOST,
    (Beat.ALIVE, "lost"): Beat.LOST,
    (Beat.SUSPECT, "lost"): Beat.LOST,
}


class Heartbeat:
    """The keep-alive of one path, a Ping every *interval* seconds."""

    def __init__(self, interval, *, suspected, silent_long, lost, ping):
        self.interval = interval
        self.state = Beat.ALIVE
        self.last_heard = 0.0
        self._last_ping = 0.0
        self._suspected = suspected
        self._silent_long = silent_long
        self._lost = lost
        self._ping = ping
        self.timer = Timer(self._due)

    @property
    def suspect(self):
        return self.state is Beat.SUSPECT

    def _move(self, trigger):
        self.state = TRANSITIONS[(self.state, trigger)]

    def start(self, now):
        """Connected: the first Ping an interval from *now*."""
        self._last_ping = now
        self.timer.at(now + self.interval)

    def stop(self):
        self.timer.stop()

    def heard(self, now):
        """The peer was heard from at *now*."""
        self.last_heard = now
        self._move("heard")

    def _due(self, now):
        # compared as the deadlines are built (last_heard + k * interval): a
        # difference can fall one float step short of the deadline it armed
        if now >= self.last_heard + LOST_AFTER_INTERVALS * self.interval:
            self._move("lost")
            return self._lost()
        out = []
        if now >= self.last_heard + SUSPECT_AFTER * self.interval and self.state is Beat.ALIVE:
            self._move("quiet")
            out += self._suspected()
        if now >= self.last_heard + RELAY_PROBE_AFTER * self.interval:
            self._silent_long()
        step = self.interval / 4 if self.suspect else self.interval
        send = now >= self._last_ping + step
        if send:
            self._last_ping = now
        self.timer.at(self._next(step))
        return out + (self._ping() if send else [])

    def _next(self, step):
        """The next Ping, or sooner the moment the silence means something."""
        nxt = self._last_ping + step
        if not self.suspect:
            nxt = min(nxt, self.last_heard + SUSPECT_AFTER * self.interval)
        return min(nxt, self.last_heard + LOST_AFTER_INTERVALS * self.interval)
