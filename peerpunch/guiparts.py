"""The GUI's widgets: the list of chats, the conversation, the transfers,
the chat requests, a tooltip and the safety-code dialog.

Each part draws what :class:`peerpunch.guistate.Model` holds and calls back
with the command line a click means (``/accept ID``, ``/decline NAME``...);
none of them posts anything itself, and all run on the Tk thread.
"""

import tkinter as tk
from tkinter import ttk

from . import guistate as G
from .console import sanitize

PAD = 4
HOME_ITEM = " home"     # the list's first line (no username begins with a blank)


class ChatPane(ttk.Frame):
    """The chats and groups, with their status; the key on hover.
    *on_select(name)* when the user picks one (HOME: the home line)."""

    def __init__(self, master, model, on_select):
        super().__init__(master)
        self.model = model
        self.on_select = on_select
        self.tree = ttk.Treeview(self, columns=("status",), selectmode="browse", height=10)
        self.tree.heading("#0", text="chat")
        self.tree.heading("status", text="status")
        self.tree.column("#0", width=120, stretch=False)
        self.tree.column("status", width=150)
        self.tree.pack(fill="both", expand=True)
        self.tree.bind("<<TreeviewSelect>>", self._selected)
        self.tip = Tooltip(self.tree, self._key_at)

    def draw(self):
        self.tree.delete(*self.tree.get_children())
        self.tree.insert("", "end", iid=HOME_ITEM, text="peerpunch", values=("",))
        for row in self.model.rows:
            if self.tree.exists(row.name):    # a stranger named like one of our groups: one line
                continue
            self.tree.insert("", "end", iid=row.name, text=self._label(row.name),
                             values=(G.row_status(row),))
        shown = HOME_ITEM if self.model.shown == G.HOME else self.model.shown
        if self.tree.exists(shown):
            self.tree.selection_set(shown)

    def _label(self, name):
        """*name*, and how many of its lines are not read yet."""
        unread = self.model.unread.get(name)
        return "%s (%d)" % (sanitize(name), unread) if unread else sanitize(name)

    def items(self):
        """What the list shows: (name, status) per line."""
        return [(self.tree.item(i, "text"), self.tree.set(i, "status"))
                for i in self.tree.get_children()]

    def _selected(self, _event):
        """Picked by the user (or by :meth:`draw`, which picks the one shown)."""
        chosen = self.tree.selection()
        key = (G.HOME if chosen[0] == HOME_ITEM else chosen[0]) if chosen else None
        if key is not None and key != self.model.shown:
            self.on_select(key)

    def _key_at(self, x, y):
        row = self.model.row(self.tree.identify_row(y))
        if row is None:
            return None
        return "key %s" % row.key if row.key else "no key (unencrypted)"


class Conversation(ttk.Frame):
    """The lines of the conversation shown, read-only."""

    TAGS = {"mine": "#1a5fb4", "alert": "#c01c28", "error": "#c01c28", "log": "#77767b",
            "info": "#5e5c64", "theirs": "#000000", "mark": "#26a269"}

    def __init__(self, master):
        super().__init__(master)
        self.text = tk.Text(self, wrap="word", width=60, height=18, state="disabled",
                            borderwidth=1, relief="sunken", font="TkTextFont", padx=PAD)
        scroll = ttk.Scrollbar(self, command=self.text.yview)
        self.text.configure(yscrollcommand=scroll.set)
        scroll.pack(side="right", fill="y")
        self.text.pack(side="left", fill="both", expand=True)
        for tag, colour in self.TAGS.items():
            self.text.tag_configure(tag, foreground=colour)

    def fill(self, lines):
        self.text.configure(state="normal")
        self.text.delete("1.0", "end")
        self.text.configure(state="disabled")
        for text, tag in lines:
            self.append(text, tag)

    def append(self, text, tag):
        self.text.configure(state="normal")
        self.text.insert("end", text + "\n", tag)
        self.text.configure(state="disabled")
        self.text.see("end")

    def content(self):
        return self.text.get("1.0", "end-1c")


class TransferPane(ttk.Frame):
    """One row per transfer: what, a progress bar, and for an offer to us
    Accept and Decline. *post(line)* sends a click's command line."""

    def __init__(self, master, model, post):
        super().__init__(master)
        self.model = model
        self.post = post
        self.rows = {}          # tid -> (label, bar, accept, decline)
        self.lines = 0          # grid rows used so far

    def draw(self, tid):
        transfer = self.model.transfers.get(tid)
        if transfer is None:            # forgotten already: its row goes
            return
        if tid not in self.rows:
            self.rows[tid] = self._row(tid)
        label, bar, accept, decline = self.rows[tid]
        label.configure(text=G.transfer_label(transfer))
        bar.configure(value=G.percent(transfer))
        for button in (accept, decline):
            if transfer.state == "offered":
                button.grid()
            else:
                button.grid_remove()

    def forget(self, tid):
        for widget in self.rows.pop(tid, ()):
            widget.destroy()

    def _row(self, tid):
        line = self.lines
        self.lines += 1
        label = ttk.Label(self, anchor="w")
        bar = ttk.Progressbar(self, maximum=100.0, length=160)
        accept = ttk.Button(self, text="Accept", command=lambda: self.post("/accept " + tid))
        decline = ttk.Button(self, text="Decline", command=lambda: self.post("/decline " + tid))
        label.grid(row=line, column=0, sticky="we", padx=PAD)
        bar.grid(row=line, column=1, padx=PAD)
        accept.grid(row=line, column=2)
        decline.grid(row=line, column=3)
        self.columnconfigure(0, weight=1)
        return label, bar, accept, decline

    def button(self, tid, which):
        """The Accept or Decline button of transfer *tid* (for the test hook)."""
        return self.rows[tid][2 if which == "accept" else 3]

    def shown(self):
        """What the pane shows: (tid, label, percent, offered) per row."""
        return [(tid, label.cget("text"), float(bar.cget("value")), bool(accept.winfo_ismapped()))
                for tid, (label, bar, accept, _) in self.rows.items()]


class RequestBar(ttk.Frame):
    """The first chat request waiting for an answer, with Accept and Decline."""

    def __init__(self, master, model, answer):
        super().__init__(master)
        self.model = model
        self.label = ttk.Label(self)
        self.label.pack(side="left", padx=PAD)
        self.accept = ttk.Button(self, text="Accept", command=lambda: answer("/accept"))
        self.decline = ttk.Button(self, text="Decline", command=lambda: answer("/decline"))
        self.decline.pack(side="right")
        self.accept.pack(side="right")

    def draw(self):
        if self.model.requests:
            self.label.configure(text="%s asks to chat with you" % self.model.requests[0])
            self.grid()
        else:
            self.grid_remove()


class Tooltip:
    """A small window by the pointer while it rests over *widget*, with
    *text_at(x, y)* (None: nothing to say there)."""

    def __init__(self, widget, text_at):
        self.widget = widget
        self.text_at = text_at
        self.window = None
        widget.bind("<Motion>", self._moved, add="+")
        widget.bind("<Leave>", lambda _e: self.hide(), add="+")

    def _moved(self, event):
        text = self.text_at(event.x, event.y)
        if text is None:
            self.hide()
        else:
            self.show(text, event.x_root + 12, event.y_root + 12)

    def show(self, text, x, y):
        if self.window is None:
            self.window = tk.Toplevel(self.widget)
            self.window.wm_overrideredirect(True)
            self.label = tk.Label(self.window, background="#ffffe0", relief="solid",
                                  borderwidth=1, padx=PAD)
            self.label.pack()
        self.label.configure(text=text)
        self.window.wm_geometry("+%d+%d" % (x, y))

    def hide(self):
        if self.window is not None:
            self.window.destroy()
            self.window = None

    def text(self):
        return None if self.window is None else self.label.cget("text")


class Dialog(tk.Toplevel):
    """A small window with *text* and an OK button (not modal: the chat goes on)."""

    def __init__(self, master, title, text):
        super().__init__(master)
        self.title(title)
        self.transient(master)
        self.geometry("+%d+%d" % (master.winfo_rootx() + 80, master.winfo_rooty() + 80))
        self.message = ttk.Label(self, text=text, padding=2 * PAD, wraplength=420)
        self.message.pack()
        self.ok = ttk.Button(self, text="OK", command=self.destroy)
        self.ok.pack(pady=PAD)
        self.ok.focus_set()
        self.bind("<Return>", lambda _e: self.destroy())
