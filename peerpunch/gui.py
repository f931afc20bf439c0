"""The GUI's window: one more view of the peer's events (``peer.py --gui``).

Theory of operation
-------------------
The same network thread and core as the terminal
(:class:`peerpunch.peershell.NetworkThread`) put events, log lines and the
end on the output queue; Tk's ``after`` polls that queue every POLL_MS
with :func:`peerpunch.peershell.pump` (never blocking), so every Tk call
happens on this one thread. :class:`Window` is the view (``event``,
``log``, ``closed``): it hands each to :class:`peerpunch.guistate.Model`
and redraws the parts the model says changed.

What the user does becomes the command lines the terminal would take,
posted to the network thread with ``post("line", text)``: Enter sends the
input line, picking a chat posts ``/switch NAME``, the file button
``/send PATH``, an offer's buttons ``/accept ID`` or ``/decline ID``, a
chat request's ``/accept NAME`` or ``/decline NAME``, Verify ``/verify NAME``
(its safety code comes back as an event, shown in a dialog). Closing the
window posts quit and the window goes when the core has said goodbye.
"""

import shlex
import sys
import traceback
from tkinter import filedialog, ttk

from . import guistate as G
from .console import format_event, sanitize
from .guiparts import PAD, ChatPane, Conversation, Dialog, RequestBar, TransferPane
from .peershell import pump

POLL_MS = 50
SIZE = "860x520"
BAR = "#3584e4"
GIVE_UP_MS = 5000         # closing: the window goes this long after quit at the latest


def _style(root):
    """A plain modern look where Tk has it: the clam theme, blue bars."""
    style = ttk.Style(root)
    if "clam" in style.theme_names():
        style.theme_use("clam")
    style.configure("Horizontal.TProgressbar", background=BAR, lightcolor=BAR, darkcolor=BAR,
                    troughcolor="#f6f5f4")


class Window:
    """The main window on *root* for user *me*; *post(*item)* hands the
    network thread work (``("line", text)``, ``("quit",)``)."""

    def __init__(self, root, me, post, err=sys.stderr):
        self.root = root
        self.post = post
        self.err = err
        self.model = G.Model(me)
        self.code = None           # the exit code, once the core closed
        self.closing = False
        self.gone = False          # the window was destroyed
        self.interrupted = False   # SIGINT or SIGTERM came: close as the close button does
        self.dialogs = []
        root.title("peerpunch \u2014 %s" % me)
        root.geometry(SIZE)
        _style(root)
        root.protocol("WM_DELETE_WINDOW", self.close)
        self._build(root)
        self._draw([("chats",), ("requests",)])

    def _build(self, root):
        root.columnconfigure(1, weight=1)
        root.rowconfigure(0, weight=1)
        left = ttk.Frame(root)
        left.grid(row=0, column=0, sticky="ns", padx=PAD, pady=PAD)
        self.chats = ChatPane(left, self.model, self.select)
        self.chats.pack(fill="both", expand=True)
        self.verify = ttk.Button(left, text="Safety code", command=self.ask_safety_code)
        self.verify.pack(fill="x", pady=(PAD, 0))
        self.conversation = Conversation(root)
        self.conversation.grid(row=0, column=1, sticky="nsew", padx=PAD, pady=PAD)
        self.requests = RequestBar(root, self.model, self.answer_request)
        self.requests.grid(row=1, column=0, columnspan=2, sticky="we", padx=PAD)
        self.transfers = TransferPane(root, self.model, self.send_line)
        self.transfers.grid(row=2, column=0, columnspan=2, sticky="we", padx=PAD)
        bottom = ttk.Frame(root)
        bottom.grid(row=3, column=0, columnspan=2, sticky="we", padx=PAD, pady=PAD)
        self.send_file = ttk.Button(bottom, text="Send file\u2026", command=self.choose_files)
        self.send_file.pack(side="left")
        self.entry = ttk.Entry(bottom)
        self.entry.pack(side="left", fill="x", expand=True, padx=PAD)
        self.entry.bind("<Return>", self._enter)
        self.entry.focus_set()
        self.status = ttk.Label(root, anchor="w", foreground="#5e5c64")
        self.status.grid(row=4, column=0, columnspan=2, sticky="we", padx=PAD, pady=(0, PAD))

    # -- the view: what the network thread reports

    def event(self, event):
        self._draw(self.model.event(event))

    def log(self, text):
        print(text, file=self.err, flush=True)
        self._draw(self.model.log(text))

    def closed(self, code, closed):
        self.code = code
        line = format_event(closed) if closed is not None else None
        if line is not None:
            print(line, file=self.err, flush=True)
        if code == 0 or self.closing:
            self.destroy()
            return
        self._draw(self.model.closed(line or "the session ended"))
        for widget in (self.entry, self.send_file, self.verify):
            widget.state(["disabled"])

    # -- what the user does

    def send_line(self, text):
        """Post *text* as if typed in the terminal."""
        if self.code is None:
            self.post("line", text)

    def _enter(self, _event=None):
        text = self.entry.get()
        if not text.strip() or self.code is not None:
            return "break"
        self.entry.delete(0, "end")
        self.send_line(text)
        self._draw(self.model.typed(text))
        return "break"

    def select(self, key):
        """The user picked *key* in the list: show it, and make it current."""
        changes = self.model.show(key)
        if key != G.HOME:            # even if it seems current: the core's word decides
            self.send_line("/switch " + key)
        self._draw(changes)

    def choose_files(self):
        paths = filedialog.askopenfilenames(parent=self.root, title="Send files")
        if paths:
            self.send_line("/send " + " ".join(shlex.quote(p) for p in paths))

    def ask_safety_code(self):
        shown = self.model.shown
        self.send_line("/verify" + (" " + shown if shown != G.HOME else ""))

    def answer_request(self, verb):
        if self.model.requests:
            name = self.model.requests[0]
            self.send_line("%s %s" % (verb, name))
            self._draw(self.model.answered(name))

    def close(self):
        """The window's close button: quit politely, then go."""
        if self.code is not None:
            self.destroy()
            return
        self.closing = True
        self.post("quit")
        self.root.after(GIVE_UP_MS, self.destroy)

    def destroy(self):
        if not self.gone:
            self.gone = True
            self.root.destroy()

    # -- drawing

    def _draw(self, changes):
        refill = ("shown",) in changes        # the whole conversation, new lines included
        filled = False
        for change in changes:
            kind = change[0]
            if kind == "line":
                self._line(*change[1:], drawn=refill)
            elif kind == "chats":
                self.chats.draw()
            elif kind == "shown" and not filled:
                self.conversation.fill(self.model.lines())
                filled = True
            elif kind == "transfer":
                self.transfers.draw(change[1])
            elif kind == "transfer_gone":
                self.transfers.forget(change[1])
            elif kind == "requests":
                self.requests.draw()
            elif kind == "dialog":
                self.dialogs.append(Dialog(self.root, change[1], change[2]))

    def _line(self, key, text, tag, drawn=False):
        if key == self.model.shown and not drawn:
            self.conversation.append(text, tag)
        if tag not in ("mine", "theirs", "mark"):
            self.status.configure(text=sanitize(text)[:200])

    # -- running

    def run(self, output, hook=None):
        """Show the window until it is closed; return the core's exit code
        (1 if the window went before the core closed). *hook*: the test
        hook (:mod:`peerpunch.guitest`), polled with the queue."""
        self._poll(output, hook)
        self.root.mainloop()
        return 1 if self.code is None else self.code

    def _poll(self, output, hook):
        """Show what the network thread reported; again in POLL_MS, even if
        showing one thing failed (a bug must not freeze the window)."""
        try:
            if self.interrupted:
                self.interrupted = False
                self.close()
            if self.code is None and not self.gone:
                pump(output, self, block=False)
            if hook is not None and not self.gone:
                hook.poll(self)
        except Exception:
            traceback.print_exc()
        finally:
            if not self.gone:
                self.root.after(POLL_MS, self._poll, output, hook)
