"""Named timers for the sans-I/O machines.

Theory of operation
-------------------
A machine keeps each of its timers as a member (``self.connect =
Timer(self._connect_due)``), sets it with ``timer.at(when)`` and cancels it
with ``timer.stop()``. Its ``next_deadline()`` is :func:`earliest` of its
timers and its ``tick(now)`` is :func:`fire`, which runs every timer due by
*now* in the order of their deadlines; a timer that an earlier one moved or
stopped is not run. No clock is read here: *now* is always passed in.
"""


class Timer:
    """One deadline and what to do when it passes (*due(now)* -> effects)."""

    __slots__ = ("when", "due")

    def __init__(self, due):
        self.when = None
        self.due = due

    def at(self, when):
        self.when = when

    def stop(self):
        self.when = None

    def earlier(self, when):
        """Run at *when* unless already due sooner."""
        if self.when is None or when < self.when:
            self.when = when

    @property
    def set(self):
        return self.when is not None


def earliest(timers):
    """The soonest deadline among *timers*, or None."""
    return min((t.when for t in timers if t.when is not None), default=None)


def fire(timers, now, then=None):
    """Run each of *timers* due by *now*, soonest first; the effects in
    order. *then* (effects -> effects), if given, acts on each timer's
    effects before the next timer runs (an owner ending a chat stops timers
    that would otherwise still run)."""
    pending = sorted(((t.when, i, t) for i, t in enumerate(timers) if t.when is not None),
                     key=lambda entry: entry[:2])
    out = []
    for when, _, timer in pending:
        if when <= now and timer.when == when:
            timer.when = None
            effects = timer.due(now)
            out += then(effects) if then is not None else effects
    return out
