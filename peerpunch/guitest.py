"""The GUI's test hook: lets a test drive a GUI that runs in another process.

Only when ``PEERPUNCH_GUI_TEST`` names a Unix socket does the GUI connect
to it (the test listens there), and only if the listener runs as the same
user (SO_PEERCRED; Linux); nothing listens in the GUI, and without the
variable nothing here runs. The test writes one JSON object per line and
gets one back per line. Each request is carried out on the Tk thread, from
the window's poll, through Tk itself: text is put in the real input and
Enter generated on it, buttons are invoked, rows selected, the pointer
moved over the list; it can do nothing a user at the window could not.

    {"do": "type", "text": "hi"}                  type a line and press Enter
    {"do": "click", "tid": ID, "button": "accept"}  an offer's button (or "decline")
    {"do": "request", "button": "accept"}         the chat request's button
    {"do": "select", "name": "bob"}               pick a chat in the list ("" home)
    {"do": "hover", "name": "bob"}                rest the pointer on a chat
    {"do": "ok"}                                  press OK on every dialog
    {"do": "state"}                               what the window shows

Each answer is ``{"ok": true, ...}`` or ``{"ok": false, "error": "..."}``.
"""

import json
import os
import socket
import struct

from .guiparts import HOME_ITEM

MAX_REQUEST = 1 << 16
SEND_TIMEOUT = 5.0
ENV = "PEERPUNCH_GUI_TEST"


class Hook:
    """Connected to the test's socket at *path* (raises OSError)."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(SEND_TIMEOUT)
        try:
            self.sock.connect(path)
            _same_user(self.sock)
        except OSError:
            self.sock.close()
            raise
        self.sock.setblocking(False)       # a poll never waits for the test
        self.buffer = b""

    def poll(self, window):
        """Carry out the requests that arrived (on the Tk thread)."""
        for request in self._requests():
            try:
                answer = dict(ok=True, **_DO[request["do"]](window, request))
            except Exception as exc:           # a test's mistake: say it, keep the GUI up
                answer = {"ok": False, "error": "%s: %s" % (type(exc).__name__, exc)}
            self._send(json.dumps(answer).encode("utf-8") + b"\n")

    def _send(self, data):
        self.sock.settimeout(SEND_TIMEOUT)
        try:
            self.sock.sendall(data)
        finally:
            self.sock.setblocking(False)

    def _requests(self):
        try:
            data = self.sock.recv(MAX_REQUEST)
        except (BlockingIOError, InterruptedError):
            return []
        except OSError:
            data = b""
        if not data:            # the test is gone
            return []
        self.buffer += data
        *lines, self.buffer = self.buffer.split(b"\n")
        if len(self.buffer) > MAX_REQUEST:         # no end of line in sight: not a test of ours
            self.buffer = b""
        requests = []
        for line in lines:
            try:
                request = json.loads(line)
            except ValueError:
                continue
            if isinstance(request, dict):
                requests.append(request)
        return requests


def _same_user(sock):
    """Only a listener of our own user (or root) may drive the window: the
    socket's path may be in a shared folder such as /tmp."""
    if not hasattr(socket, "SO_PEERCRED"):
        raise OSError("cannot tell who listens there (no SO_PEERCRED here)")
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    uid = struct.unpack("3i", creds)[1]
    if uid not in (os.getuid(), 0):
        raise PermissionError("the test hook's listener runs as uid %d, not as us" % uid)


def _type(window, request):
    entry = window.entry
    entry.delete(0, "end")
    entry.insert(0, request["text"])
    entry.focus_force()
    entry.update()          # the FocusIn first: Tk hands a key event to the focus window only
    entry.event_generate("<Return>", when="now")
    return {}


def _click(window, request):
    window.transfers.button(request["tid"], request["button"]).invoke()
    return {}


def _request(window, request):
    bar = window.requests
    (bar.accept if request["button"] == "accept" else bar.decline).invoke()
    return {}


def _select(window, request):
    tree = window.chats.tree
    tree.selection_set(HOME_ITEM if request["name"] == "" else request["name"])
    return {}                   # Tk queues <<TreeviewSelect>>: the window picks it up


def _hover(window, request):
    tree = window.chats.tree
    x, y, width, height = tree.bbox(request["name"])
    tree.event_generate("<Motion>", x=x + width // 2, y=y + height // 2, when="now")
    return {"tooltip": window.chats.tip.text()}


def _ok(window, request):
    for dialog in window.dialogs:
        if dialog.winfo_exists():
            dialog.ok.invoke()
    return {}


def _state(window, request):
    root = window.root
    return {
        "title": root.title(),
        "frame": root.wm_frame(),
        "geometry": [root.winfo_rootx(), root.winfo_rooty(), root.winfo_width(),
                     root.winfo_height()],
        "shown": window.model.shown,
        "conversation": window.conversation.content(),
        "chats": window.chats.items(),
        "transfers": window.transfers.shown(),
        "requests": list(window.model.requests),
        "dialogs": [d.message.cget("text") for d in window.dialogs if d.winfo_exists()],
        "status": window.status.cget("text"),
        "input": window.entry.get(),
    }


_DO = {"type": _type, "click": _click, "request": _request, "select": _select,
       "hover": _hover, "ok": _ok, "state": _state}
