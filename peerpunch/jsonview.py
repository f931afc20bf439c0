"""The JSON view (``--json``): one JSON object per line on stdout per event.

The main thread hands it what the network thread reports, as it does a
:class:`~peerpunch.lineview.LineView`: ``event(event)``, ``log(text)`` and
``closed(code, closed)``. Events become objects through
:func:`peerpunch.jsonevents.to_json`; each gets ``v`` (the schema version)
and ``time`` (Unix seconds) in front. Log lines (``-v``, warnings) stay
plain text on *err*, so *out* carries nothing but JSON lines. A transfer's
progress is written at most every PROGRESS_EVERY seconds per transfer (and
always when it is complete). The fields are documented in docs/json.md.
"""

import json
import traceback

from .jsonevents import VERSION, exit_json, to_json

PROGRESS_EVERY = 0.5          # seconds between two file_progress objects of one transfer


class JsonView:
    """JSON lines on *out*, logs on *err*. The shell's clocks: *clock* gives
    Unix time (each object's ``time``), *steady* the monotonic time that
    paces progress."""

    def __init__(self, out, err, clock, steady):
        self.out = out
        self.err = err
        self.clock = clock
        self.steady = steady
        self.pace = Pace(PROGRESS_EVERY)

    def event(self, event):
        try:
            obj = to_json(event)
        except Exception:         # a bug in mapping one event: say so, and keep the session
            self.log("jsonview: cannot write %s:\n%s" % (type(event).__name__,
                                                         traceback.format_exc().rstrip()))
            obj = {"event": "other", "type": type(event).__name__, "text": None}
        if obj is None:
            return
        if obj["event"] == "file_progress" and not self.pace.due(obj, self.steady()):
            return
        if obj["event"] in ("file_done", "file_failed"):
            self.pace.forget(obj)
        self.write(obj)

    def emit(self, kind, **fields):
        """An object the shell itself reports (``start``)."""
        obj = {"event": kind}
        obj.update(fields)
        self.write(obj)

    def log(self, text):
        print(text, file=self.err, flush=True)

    def closed(self, code, closed):
        self.write(exit_json(code, closed))

    def write(self, obj):
        line = {"v": VERSION, "time": round(self.clock(), 6)}
        line.update(obj)
        self.out.write(dumps(line) + "\n")
        self.out.flush()


def dumps(obj):
    """One line of ASCII JSON (every other character escaped, no NaN)."""
    return json.dumps(obj, ensure_ascii=True, allow_nan=False)


class Pace:
    """At most one progress object per transfer every *every* seconds;
    the one that completes the transfer always."""

    def __init__(self, every):
        self.every = every
        self._last = {}            # (partner, outgoing, id) -> when one was last written

    def due(self, obj, now):
        key = _key(obj)
        last = self._last.get(key)
        if obj["done"] < obj["total"] and last is not None and now - last < self.every:
            return False
        self._last[key] = now
        return True

    def forget(self, obj):
        self._last.pop(_key(obj), None)


def _key(obj):
    return obj["partner"], obj["outgoing"], obj["id"]
