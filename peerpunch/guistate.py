"""What the GUI shows, as a model with no Tk in it (so it is tested alone).

Theory of operation
-------------------
The window (:mod:`peerpunch.gui`) hands the model every event the network
thread reports, every log line and every line the user types; the model
keeps the chats and groups (from :class:`~peerpunch.events.ChatList`), one
conversation per chat or group plus a home one (key ``""``) for what
belongs to none, the file transfers and the chat requests waiting for an
answer, and returns the *changes* the window must redraw:

    ("line", key, text, tag)   a line appended to conversation *key*
    ("chats",)                 the list of chats (or the unread counts) changed
    ("shown",)                 another conversation is shown
    ("transfer", tid)          transfer *tid* appeared or changed
    ("transfer_gone", tid)     transfer *tid* is no longer shown (ended long ago)
    ("requests",)              the chat requests changed
    ("dialog", title, text)    a dialog to show (the safety code)

Every word comes from :func:`peerpunch.console.format_event`, so the GUI
reads like the terminal. An event that names a chat goes to that chat's
conversation; one that names none (or a chat not listed) goes to the one
shown. Until the core's first ChatList (older cores emit none) the list is
kept from Connected and the ends of chats.
"""

import collections

from . import events as E
from . import securing as SC
from . import transfer as T
from .chatfiles import FileNews
from .console import format_event, sanitize
from .groupstate import GroupMessage
from .lineview import is_progress

HOME = ""
MAX_LINES = 2000            # per conversation; older lines are forgotten
KEEP_ENDED = 3              # finished transfers still shown

Transfer = collections.namedtuple("Transfer", "tid partner names outgoing state done total")
Transfer.__doc__ = """One file transfer as the GUI shows it: *state* "offered" (an incoming
offer waits for /accept or /decline), "waiting" (ours waits for theirs),
"moving", "done" or "failed"; *done* and *total* in bytes."""

# Chat requests are worded by the console; until the core gives them an
# event of their own they are recognised by their words.
_ANSWERED = ("chat_accepted", "chat_declined", "chat_request_expired")
_ENDS = (E.PeerLeft, E.ConnectionLost)
_UP = ("connected", "joined")
_SWITCHED = ("switched", "now_current")      # the Notices that name the new current chat
_TAGS = {E.Alert: "alert", SC.KeyChanged: "alert", E.Message: "theirs", GroupMessage: "theirs",
         E.Delivered: "mark"}
_STATES = {T.FileAccepted: "moving", T.FileProgress: "moving", T.FileSent: "done",
           T.FileReceived: "done", T.FileFailed: "failed"}


class Model:
    """The GUI's state for user *me*."""

    def __init__(self, me):
        self.me = me
        self.rows = ()
        self.current = None
        self.shown = HOME
        self.conversations = {HOME: []}
        self.unread = collections.Counter()
        self.transfers = collections.OrderedDict()
        self.requests = []
        self._listed = False        # a ChatList came: the list is the core's

    # -- what the window asks

    def lines(self, key=None):
        """The lines of conversation *key* (default: the one shown), (text, tag) each."""
        return list(self.conversations.get(self.shown if key is None else key, ()))

    def row(self, name):
        return next((r for r in self.rows if r.name == name), None)

    def show(self, key):
        """Show conversation *key* (a chat's name or HOME)."""
        if key == self.shown:
            return []
        self.shown = key
        self.conversations.setdefault(key, [])
        self.unread.pop(key, None)
        return [("shown",), ("chats",)]

    def typed(self, text):
        """The user typed *text*: a plain line is echoed in the current chat."""
        if text.startswith("/") and not text.startswith("//"):
            return []
        line = text[1:] if text.startswith("//") else text
        if not line or self.current is None:
            return []
        return self._add(self.current, "[%s]> %s" % (sanitize(self.me), sanitize(line)), "mine")

    def log(self, text):
        return self._add(self.shown, text, "log")

    def closed(self, text):
        return self._add(self.shown, text, "error") if text else []

    # -- events

    def event(self, event):
        kind = type(event)
        if kind is E.ChatList:
            return self._chat_list(event)
        if kind is FileNews:
            return self._file(event) + self._worded(event, event.partner)
        if kind is SC.SafetyCode:
            return [("dialog", "safety code", format_event(event))] + \
                self._worded(event, event.partner)
        if kind is E.Message:
            return self._worded(event, event.partner, always=True)
        if kind is GroupMessage:
            return self._worded(event, event.group, always=True)
        changes = self._before_list(event)
        return changes + self._worded(event, _named(event)) + self._request(event)

    def _worded(self, event, name, always=False):
        text = format_event(event, tty=True)
        if text is None or is_progress(event):        # a progress bar shows that
            return []
        known = name in self.conversations or self.row(name) is not None
        key = name if name is not None and (always or known) else self.shown
        tag = _TAGS.get(type(event), "info")
        return self._add(key, text, tag)

    def _add(self, key, text, tag):
        lines = self.conversations.setdefault(key, [])
        changes = []
        for line in text.split("\n"):
            lines.append((line, tag))
            changes.append(("line", key, line, tag))
        del lines[:-MAX_LINES]
        if key != self.shown:
            self.unread[key] += len(changes)
            changes.append(("chats",))
        return changes

    # -- the list of chats

    def _chat_list(self, event):
        self._listed = True
        self.rows = tuple(event.rows)
        pending = {r.name for r in self.rows if r.kind == "chat" and r.state == "pending"}
        gone = [name for name in self.requests if name not in pending]
        for name in gone:              # the stranger left, or was blocked: no question left
            self.requests.remove(name)
        return self._current(event.current) + [("chats",)] + ([("requests",)] if gone else [])

    def _current(self, name):
        """The core's current chat changed (or not): show it."""
        changes = []
        if name != self.current:
            self.current = name
            if name is not None:
                changes += self.show(name)
        return changes

    def _before_list(self, event):
        """Older cores emit no ChatList: keep the list from their events."""
        if self._listed:
            return []
        if type(event) is E.Connected:
            row = E.ChatRow(event.username, "chat", "connected", event.path,
                            event.key is not None, event.key)
            self.rows = tuple(r for r in self.rows if r.name != row.name) + (row,)
            self.conversations.setdefault(row.name, [])
            return self._current(self.current or row.name) + [("chats",)]
        if isinstance(event, E.Notice) and event.what in _SWITCHED:
            return self._current(event.fields.get("name"))
        if isinstance(event, _ENDS):
            self.rows = tuple(r for r in self.rows if r.name != event.username)
            left = [r.name for r in self.rows]
            return self._current(self.current if self.current in left else      # as the core:
                                 (left[0] if len(left) == 1 else None)) + [("chats",)]  # one left
        return []

    # -- files and chat requests

    def _file(self, news):
        event = news.event
        tid = event.id
        old = self.transfers.get(tid)
        if type(event) is T.FileOffered:
            state = "waiting" if news.outgoing else "offered"
            total = event.total
        elif old is None or type(event) not in _STATES:
            return []
        else:
            state, total = _STATES[type(event)], old.total
        done = event.done if type(event) is T.FileProgress else \
            total if state == "done" else (old.done if old else 0)
        self.transfers[tid] = Transfer(tid, news.partner, tuple(news.names), news.outgoing,
                                       state, done, total)
        return [("transfer", tid)] + self._forget_ended()

    def _forget_ended(self):
        """Keep the last KEEP_ENDED finished transfers (the live ones all)."""
        ended = [t.tid for t in self.transfers.values() if t.state in ("done", "failed")]
        for tid in ended[:-KEEP_ENDED]:
            del self.transfers[tid]
        return [("transfer_gone", tid) for tid in ended[:-KEEP_ENDED]]

    def _request(self, event):
        """A chat request from someone new is asked (its buttons appear) or
        answered, however: the buttons, a typed /accept, 60 s of silence."""
        if not isinstance(event, E.Words):
            return []
        name = event.fields.get("name")
        if event.what == "chat_request" and name not in self.requests:
            self.requests.append(name)
            return [("requests",)]
        if event.what in _ANSWERED and name in self.requests:
            self.requests.remove(name)
            return [("requests",)]
        return []

    def answered(self, name):
        """The user answered *name*'s chat request (the buttons)."""
        if name in self.requests:
            self.requests.remove(name)
        return [("requests",)]


def _named(event):
    """The chat an event names, if any (it may be ours: then none is listed)."""
    if isinstance(event, E.Words):
        name = event.fields.get("name")
        return name if isinstance(name, str) else None
    return getattr(event, "partner", None) or getattr(event, "username", None)


def row_status(row):
    """A chat's status as the list shows it: ``direct, encrypted`` (its state
    too while it is not up: ``punching, unencrypted``; a group: ``group, ...``)."""
    parts = [] if row.state in _UP else [row.state]
    parts.append(row.path or ("group" if row.kind == "group" else "no path yet"))
    parts.append("encrypted" if row.encrypted else "unencrypted")
    return ", ".join(parts)


def transfer_label(transfer):
    """A transfer's line beside its progress bar."""
    names = ", ".join(sanitize(n) for n in transfer.names[:3]) or "?"
    way = "to" if transfer.outgoing else "from"
    return "%s %s %s: %s" % (names, way, sanitize(transfer.partner), transfer.state)


def percent(transfer):
    return 100.0 * transfer.done / transfer.total if transfer.total else 100.0
