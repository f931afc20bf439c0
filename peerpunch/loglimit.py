"""A per-kind rate limit on log lines, without clocks or I/O.

Theory of operation
-------------------
The relay logs one line per event (a registration, a refusal, an
introduction...). Events come from the network, so without a bound a flood
of forged datagrams writes the operator's disk full. Each :class:`Log`
effect may carry a ``kind``; lines of one kind share a budget of
``per_window`` lines per ``window`` seconds. The window of a kind opens at
its first line; the lines beyond the budget are counted, not written, and
when the window ends one summary line says how many there were::

    ... and 12,345 more refused registrations (relay full) in the last 60 s

A kind that stayed within its budget needs no timer: its window simply
restarts with its next line. So ``next_deadline()`` is the end of the
earliest window that has lines to summarize, and ``tick(now)`` returns the
summaries due. A line that arrives after its window ended but before the
tick gets the summary ahead of it, so the counts are exact and in order.

Lines without a kind (start, stop, warnings about the configuration) are
never limited. Memory is one small record per kind, and kinds are names in
the code (see KINDS), never anything taken from a datagram: a flood from a
million sources costs the same few records as one from a single source.
Limiting per kind (not one budget for all) means a flood of one kind of
event cannot hide the lines of another: refused registrations do not
suppress the log of real introductions.
"""

import logging

from .effects import Log

PER_WINDOW = 10         # lines of one kind written per window
WINDOW = 60.0           # seconds

# kind -> what its summary line calls the lines it stands for (plural)
KINDS = {
    "registered": "registrations",
    "full": "refused registrations (relay full)",
    "name_taken": "refused registrations (name taken)",
    "moved": "moved registrations",
    "expired": "expired registrations",
    "evicted": "registrations evicted for a lighter block",
    "left": "users leaving",
    "introduced": "introductions",
    "ended": "ended sessions",
    "restored": "restored sessions",
    "not_relayed": "refusals to relay",
    "online": "online notifications",
    "dropped": "dropped datagrams",
    "internal": "internal errors",
}


class _Window:
    __slots__ = ("ends", "written", "suppressed", "level")

    def __init__(self, ends):
        self.ends = ends
        self.written = 0
        self.suppressed = 0
        self.level = logging.NOTSET     # the highest level among the suppressed lines


class LogLimiter:
    """Pass each :class:`Log` through :meth:`admit`; call :meth:`tick` by
    :meth:`next_deadline` for the summaries, and :meth:`flush` when stopping."""

    def __init__(self, per_window=PER_WINDOW, window=WINDOW, enabled=True):
        self.per_window = per_window
        self.window = window
        self.enabled = enabled
        self.suppressed = 0             # lines not written, in all (for the stats)
        self._windows = {}              # kind -> _Window

    def admit(self, effect, now):
        """The lines to write for the Log *effect* at time *now*: itself,
        nothing (it is counted for a summary), or a due summary and itself."""
        kind = getattr(effect, "kind", None)
        if kind is None or not self.enabled:
            return [effect]
        win = self._windows.get(kind)
        out = []
        if win is None or now >= win.ends:
            if win is not None:
                out += self._summarize(kind, win)
            win = self._windows[kind] = _Window(now + self.window)
        if win.written < self.per_window:
            win.written += 1
            return out + [effect]
        win.suppressed += 1
        win.level = max(win.level, effect.level)
        self.suppressed += 1
        return out

    def next_deadline(self):
        """When :meth:`tick` next has a summary to write (None: never)."""
        due = [w.ends for w in self._windows.values() if w.suppressed]
        return min(due) if due else None

    def tick(self, now):
        """The summaries of the windows that ended by *now*."""
        out = []
        for kind, win in list(self._windows.items()):
            if now >= win.ends:
                out += self._summarize(kind, win)
                del self._windows[kind]
        return out

    def flush(self, now):
        """The summaries of every open window (the program is stopping)."""
        out = []
        for kind, win in self._windows.items():
            out += self._summarize(kind, win, min(self.window, now - win.ends + self.window))
        self._windows.clear()
        return out

    def _summarize(self, kind, win, seconds=None):
        if not win.suppressed:
            return []
        what = KINDS.get(kind, "%s lines" % kind)
        seconds = self.window if seconds is None else max(1, round(seconds))
        return [Log(win.level, "... and {:,} more {} in the last {:g} s".format(
            win.suppressed, what, seconds))]
