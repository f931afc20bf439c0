"""The line view: the peer's events as lines on a terminal or a pipe.

The main thread hands it what the network thread reports (events as data,
log lines, the end); it is the only writer to stdout and stderr. Events are
worded by :func:`peerpunch.console.format_event`. On a terminal (*tty*) a
transfer's progress is one line redrawn in place and a delivered mark
follows the lines typed; on a pipe, progress is quiet and lines are plain.

Other views take the same three calls: ``event(event)``, ``log(text)`` and
``closed(code, closed)`` (the Closed event that ends the program).
"""

import os

from .chatfiles import FileNews
from .console import format_event
from .transfer import FileProgress


class LineView:
    """Lines on *out*, logs and the closing error on *err*."""

    def __init__(self, out, err, tty=False):
        self.out = out
        self.err = err
        self.tty = tty
        self._drawn = False            # a progress line is on the screen

    def event(self, event):
        line = format_event(event, tty=self.tty)
        if line is None:
            return
        if is_progress(event):
            self.out.write("\r" + line[:_width()] + "\x1b[K")
            self.out.flush()
            self._drawn = True
            return
        self._line(self.out, line)

    def log(self, text):
        self._line(self.err, text)

    def closed(self, code, closed):
        line = format_event(closed) if closed is not None else None
        if line is not None:
            self._line(self.err, line)

    def _line(self, stream, text):
        if self._drawn:
            self.out.write("\r\x1b[K")
            self.out.flush()
            self._drawn = False
        print(text, file=stream, flush=True)


def is_progress(event):
    """A transfer's progress: a line redrawn in place (only on a terminal)."""
    return type(event) is FileNews and type(event.event) is FileProgress


def _width():
    """The progress line's room: the terminal's width (79 if unknown)."""
    try:
        columns = os.get_terminal_size().columns
    except OSError:
        columns = 0
    return columns - 1 if columns >= 20 else 79
