"""The terminal view: the peer's events above a line being edited.

Used when stdin and stdout are both a terminal (see
:mod:`peerpunch.termshell`, which builds it). Like
:class:`peerpunch.lineview.LineView` it takes ``event``, ``log`` and
``closed`` from the main thread and words events with
:func:`peerpunch.console.format_event`; what differs is where the words go:
to a *screen* (a termshell editor), which prints them above the input line
and redraws the line being typed, and which shows the prompt this view
computes from :class:`~peerpunch.events.ChatList`:

* ``bob (direct, encrypted)> `` -- plain lines go to bob's chat, which is up;
* ``bob (punching)> `` -- bob's chat, not up yet (its state word);
* ``#team> `` -- a group (its name already starts with ``#``);
* ``> `` -- before any ChatList, or when plain lines go nowhere.

Options: *colour* (names in a stable colour each, from a CRC of the name
into six colours; warnings in red), *timestamps* (``HH:MM`` before message
lines), *bell* (one bell per burst of incoming messages: not again until
the messages pause for BELL_QUIET seconds or the user types a line).

A screen has ``show(text, err=False, bell=False, progress=False)``,
``prompt(text)``, ``typed`` (lines typed so far) and ``close()``.
"""

import zlib

from . import events as E
from .console import format_event, sanitize
from .groups import GroupMessage
from .lineview import is_progress

NEUTRAL_PROMPT = "> "
COLOURS = (31, 32, 33, 34, 35, 36)   # red, green, yellow, blue, magenta, cyan
ALERT = "1;31"
DIM = "2"
BELL_QUIET = 5.0                      # seconds without a message: the next one rings again
MESSAGES = (E.Message, GroupMessage)


def name_colour(name):
    """The colour (an SGR number) of *name*: the same in every run."""
    return COLOURS[zlib.crc32(name.encode("utf-8", "replace")) % len(COLOURS)]


def paint(text, code):
    return "\x1b[%sm%s\x1b[0m" % (code, text)


def use_colour(environ):
    """Colours, on a terminal: not with NO_COLOR set (https://no-color.org)
    nor on a dumb terminal."""
    return not environ.get("NO_COLOR") and environ.get("TERM", "") != "dumb"


def prompt_for(chat_list):
    """The prompt for a :class:`~peerpunch.events.ChatList` (or None)."""
    if chat_list is None or chat_list.current is None:
        return NEUTRAL_PROMPT
    name = sanitize(chat_list.current)
    row = next((r for r in chat_list.rows if r.name == chat_list.current), None)
    if row is None:
        return "%s> " % name
    if row.kind == "group":
        return "%s> " % (name if name.startswith("#") else "#" + name)
    if row.state == "connected" and row.path:
        return "%s (%s, %s)> " % (name, row.path, "encrypted" if row.encrypted else "unencrypted")
    return "%s (%s)> " % (name, sanitize(str(row.state)))


class TerminalView:
    """Events as lines on a *screen*; *clock* (monotonic seconds) times the
    bell, *hhmm()* gives the time of day for --timestamps; *learn(name)* is
    told every partner and group name seen (for Tab)."""

    def __init__(self, screen, *, colour=False, timestamps=False, bell=False,
                 clock=None, hhmm=None, learn=None):
        self.screen = screen
        self.colour = colour
        self.timestamps = timestamps
        self.bell = bell
        self.clock = clock
        self.hhmm = hhmm
        self.learn = learn or (lambda name: None)
        self._last_heard = None          # when the last message came (for the bell)
        self._typed_then = 0

    def event(self, event):
        if type(event) is E.ChatList:
            self._learn_rows(event)
            self.screen.prompt(prompt_for(event))
            return
        self._learn(event)
        line = format_event(event, tty=True)
        if line is None:
            return
        if is_progress(event):
            self.screen.show(line, progress=True)
            return
        self.screen.show(self._decorate(event, line), bell=self._ring(event))

    def log(self, text):
        self.screen.show(text, err=True)

    def closed(self, code, closed):
        self.screen.close()
        line = format_event(closed) if closed is not None else None
        if line is not None:
            self.screen.show(line, err=True)

    def finish(self):
        """The program ends: give the terminal back as it was."""
        self.screen.close()

    # -- words

    def _decorate(self, event, line):
        kind = type(event)
        if self.colour and kind is E.Message:
            line = self._paint_names(line, [event.partner])
        elif self.colour and kind is GroupMessage:
            line = self._paint_names(line, [event.group, event.sender])
        elif self.colour and kind is E.Alert:
            line = "\n".join(paint(part, ALERT) for part in line.split("\n"))
        if self.timestamps and kind in MESSAGES:
            stamp = self.hhmm()
            line = "%s %s" % (paint(stamp, DIM) if self.colour else stamp, line)
        return line

    @staticmethod
    def _paint_names(line, names):
        """``[a] [b]> text`` with a and b painted (the line as format_event made it)."""
        prefix = " ".join("[%s]" % sanitize(name) for name in names) + "> "
        if not line.startswith(prefix):
            return line
        painted = " ".join("[%s]" % paint(sanitize(n), name_colour(n)) for n in names)
        return painted + "> " + line[len(prefix):]

    def _ring(self, event):
        """A bell for this message? Once per burst (see the module's doc)."""
        if not self.bell or type(event) not in MESSAGES:
            return False
        now, typed = self.clock(), self.screen.typed
        ring = self._last_heard is None or now - self._last_heard >= BELL_QUIET \
            or typed != self._typed_then
        self._last_heard, self._typed_then = now, typed
        return ring

    # -- names for Tab

    def _learn(self, event):
        kind = type(event)
        if kind is E.Message:
            self.learn(event.partner)
        elif kind is GroupMessage:
            self.learn(event.group)
            self.learn(event.sender)
        elif kind in (E.Connected, E.PeerLeft, E.Waiting):
            self.learn(event.username)
        elif isinstance(event, E.Words):
            for key in ("name", "group"):
                self.learn(event.fields.get(key))

    def _learn_rows(self, chat_list):
        for row in chat_list.rows:
            self.learn(row.name)
