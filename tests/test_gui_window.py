"""The GUI's window on Xvfb, fed events directly: what its buttons, list
and input post (the command lines the terminal takes), and how it ends.
The real peer under the GUI is tests/test_gui.py's.

Each case runs in a child Python of its own: a Tk interpreter must be
deleted by the thread that made it, and in this process (threads of the
other tests come and go) the garbage collector may free it in any thread,
which makes Tcl abort the whole run. A child has one thread, and a case
that hangs in a Tk wait is killed by the timeout instead of hanging pytest.
"""

import queue
import subprocess
import sys
import traceback

import pytest

from peerpunch import events as E
from peerpunch import guistate as G
from peerpunch import transfer as T
from peerpunch.chatfiles import FileNews

from .procs import ROOT, env
from .xserver import xvfb_or_skip

BOB = E.ChatRow("bob", "chat", "connected", "direct", True, "1ecc-f82c-f3db-ddd7")
CAROL = E.ChatRow("carol", "chat", "connected", "relayed", False, None)
CHILD = "import sys; from tests.test_gui_window import child; sys.exit(child(*sys.argv[1:]))"


@pytest.fixture(scope="module")
def display():
    server = xvfb_or_skip()
    yield server.display
    server.stop()


def child(case, display):
    """The child's body: run *case* on *display*; the exit code says how it went."""
    try:
        globals()[case](display)
    except BaseException:
        traceback.print_exc()
        return 1
    return 0


def _window(display):
    import tkinter as tk
    from peerpunch.gui import Window
    root = tk.Tk(screenName=display)
    posted = []
    win = Window(root, "alice", lambda *item: posted.append(item), err=_Sink())
    win.posted = posted
    win.event(E.ChatList((BOB, CAROL), "bob"))
    root.update()
    return win


class _Sink:
    def __init__(self):
        self.text = ""

    def write(self, text):
        self.text += text

    def flush(self):
        pass


def _settle(win):
    win.root.update()


def case_enter_posts_the_line_and_echoes_it(display):
    window = _window(display)
    window.entry.insert(0, "hello bob")
    window.entry.focus_force()
    window.entry.update()   # the FocusIn first: Tk hands a key event to the focus window only
    window.entry.event_generate("<Return>", when="now")
    assert window.posted == [("line", "hello bob")]
    assert window.entry.get() == ""
    assert window.conversation.content().endswith("[alice]> hello bob\n")


def case_picking_a_chat_switches_to_it(display):
    window = _window(display)
    window.event(E.Message("carol", "psst", 1))
    _settle(window)
    assert ("carol (1)", "relayed, unencrypted") in window.chats.items()
    window.chats.tree.selection_set("carol")
    _settle(window)                                  # Tk delivers <<TreeviewSelect>>
    assert window.posted == [("line", "/switch carol")]
    assert window.conversation.content() == "[carol]> psst\n"
    assert ("carol", "relayed, unencrypted") in window.chats.items()     # read now
    window.event(E.Message("bob", "and me", 2))
    _settle(window)
    assert window.chats.items()[1] == ("bob (1)", "direct, encrypted")


def case_send_file_button_posts_send_with_quoted_paths(display):
    window = _window(display)
    from peerpunch import gui
    monkeypatch = _Patch()
    monkeypatch.setattr(gui.filedialog, "askopenfilenames",
                        lambda **kw: ("/tmp/my photo.jpg", "/tmp/b.txt"))
    window.send_file.invoke()
    assert window.posted == [("line", "/send '/tmp/my photo.jpg' /tmp/b.txt")]
    monkeypatch.setattr(gui.filedialog, "askopenfilenames", lambda **kw: "")     # cancelled
    window.send_file.invoke()
    assert len(window.posted) == 1


def case_offer_buttons_post_accept_and_decline(display):
    window = _window(display)
    tid = "a92036c1fbc13ac9"
    window.event(FileNews("bob", T.FileOffered(tid, ("f.txt",), 1, 10), False, ("f.txt",), 0))
    _settle(window)
    window.transfers.button(tid, "decline").invoke()
    window.transfers.button(tid, "accept").invoke()
    assert window.posted == [("line", "/decline " + tid), ("line", "/accept " + tid)]
    assert window.transfers.shown() == [(tid, "f.txt from bob: offered", 0.0, True)]
    for n in range(G.KEEP_ENDED + 1):            # finished ones push it out
        other = "%016x" % n
        window.event(FileNews("bob", T.FileOffered(other, ("g",), 1, 10), True, ("g",), 0))
        window.event(FileNews("bob", T.FileSent(other, ("g",), 1, 10), True, ("g",), 10))
    window.event(FileNews("bob", T.FileFailed(tid, T.DECLINED_REASON, False), False, ("f",), 0))
    _settle(window)
    shown = window.transfers.shown()
    assert len(shown) == G.KEEP_ENDED and tid not in [row[0] for row in shown]
    assert all(row[1] == "g to bob: done" and row[2] == 100.0 for row in shown)


def case_a_chat_and_a_group_of_one_name_make_one_line_and_the_window_lives(display):
    """A stranger may register a name like one of our groups'."""
    window = _window(display)
    twin = E.ChatRow("#bob-a73b", "chat", "pending", "direct", True, None)
    group = E.ChatRow("#bob-a73b", "group", "joined", None, True, None)
    window.event(E.ChatList((BOB, twin, group), "#bob-a73b"))
    _settle(window)
    assert [name for name, _ in window.chats.items()].count("#bob-a73b") == 1
    window.event(E.Message("bob", "still alive", 3))
    _settle(window)


def case_chat_request_buttons_post_accept_name(display):
    window = _window(display)
    assert not window.requests.winfo_ismapped()
    window.event(E.Notice("chat_request", name="carol"))
    window.event(E.Notice("chat_request", name="dave"))
    _settle(window)
    assert window.requests.winfo_ismapped()
    assert window.requests.label.cget("text") == "carol asks to chat with you"
    window.requests.accept.invoke()
    _settle(window)
    assert window.requests.label.cget("text") == "dave asks to chat with you"
    window.requests.decline.invoke()
    _settle(window)
    assert window.posted == [("line", "/accept carol"), ("line", "/decline dave")]
    assert not window.requests.winfo_ismapped()


def case_safety_code_button_asks_for_the_shown_chat(display):
    window = _window(display)
    window.verify.invoke()
    assert window.posted == [("line", "/verify bob")]


def case_an_error_ending_keeps_the_window_with_the_reason(display):
    window = _window(display)
    window.closed(1, E.Closed(1, "the relay went away"))
    _settle(window)
    assert not window.gone and window.code == 1
    assert window.conversation.content().endswith("error: the relay went away\n")
    assert window.err.text == "error: the relay went away\n"
    assert window.entry.instate(["disabled"])
    window.close()                                   # the close button: now it goes
    assert window.gone and window.posted == []


def case_closing_quits_first_and_goes_when_the_core_closed(display):
    window = _window(display)
    window.close()
    assert window.posted == [("quit",)] and not window.gone
    window.closed(0, E.Closed(0, "bye"))
    assert window.gone


def case_run_polls_the_queue_until_the_end(display):
    window = _window(display)
    output = queue.Queue()
    output.put(("event", E.Message("bob", "last words", 2)))
    output.put(("log", "warning: a log line"))
    output.put(("exit", 0, E.Closed(0, "bye")))
    assert window.run(output) == 0                   # returns: the window went
    assert window.gone and window.err.text == "warning: a log line\n"


def case_ask_name_dialog_until_a_valid_name(display):
    import tkinter as tk
    from peerpunch import guiapp
    root = tk.Tk(screenName=display)
    root.withdraw()                      # as guiapp.open_root leaves it
    prompts = []
    answers = ["x" * 40, "carol"]

    answered = set()

    def answer():
        # a dialog not answered yet, up and holding its grab (simpledialog grabs
        # once it is visible: before that, keys would be lost or the dialog
        # destroyed under its own wait_visibility)
        dialogs = [w for w in root.winfo_children() if isinstance(w, tk.Toplevel)
                   and str(w) not in answered and w.winfo_viewable() and w.grab_status()]
        if not dialogs:
            root.after(20, answer)
            return
        dialog = dialogs[-1]
        answered.add(str(dialog))
        prompts.append([w.cget("text") for w in _all(dialog) if isinstance(w, tk.Label)])
        entry = next(w for w in _all(dialog) if isinstance(w, tk.Entry))
        entry.insert(0, answers.pop(0))
        # its OK button, not a generated <Return>: with no window manager a key
        # event reaches the dialog only if it got the keyboard focus
        next(w for w in _all(dialog) if isinstance(w, tk.Button) and w.cget("text") == "OK").invoke()
        if answers:
            root.after(20, answer)

    def give_up():                       # a dialog never answered fails the test, never hangs it
        for window in root.winfo_children():
            window.destroy()
    root.after(20, answer)
    root.after(20000, give_up)
    try:
        assert guiapp.ask_name(root) == "carol"
    finally:
        root.destroy()
    assert prompts[0] == ["Your username:"]
    assert prompts[1] == ["username must have 1 to 32 characters\nYour username:"]


def _all(widget):
    for child in widget.winfo_children():
        yield child
        yield from _all(child)


class _Patch:
    """monkeypatch.setattr for a child (which ends anyway)."""

    def setattr(self, target, name, value):
        setattr(target, name, value)


CASES = sorted(name for name in list(globals()) if name.startswith("case_"))


@pytest.mark.parametrize("case", CASES)
def test_gui_window(display, case):
    result = subprocess.run([sys.executable, "-c", CHILD, case, display], cwd=ROOT, env=env(),
                            stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr.decode(errors="replace")
