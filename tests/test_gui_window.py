"""The GUI's window in this process, on Xvfb, fed events directly: what its
buttons, list and input post (the command lines the terminal takes), and
how it ends. The real peer under the GUI is tests/test_gui.py's."""

import queue

import pytest

from peerpunch import events as E
from peerpunch import guistate as G
from peerpunch import transfer as T
from peerpunch.chatfiles import FileNews

from .xserver import xvfb_or_skip

tk = pytest.importorskip("tkinter")

BOB = E.ChatRow("bob", "chat", "connected", "direct", True, "1ecc-f82c-f3db-ddd7")
CAROL = E.ChatRow("carol", "chat", "connected", "relayed", False, None)


@pytest.fixture(scope="module")
def display():
    server = xvfb_or_skip()
    yield server.display
    server.stop()


@pytest.fixture
def window(display):
    from peerpunch.gui import Window
    root = tk.Tk(screenName=display)
    posted = []
    win = Window(root, "alice", lambda *item: posted.append(item), err=_Sink())
    win.posted = posted
    win.event(E.ChatList((BOB, CAROL), "bob"))
    root.update()
    yield win
    if not win.gone:
        win.destroy()


class _Sink:
    def __init__(self):
        self.text = ""

    def write(self, text):
        self.text += text

    def flush(self):
        pass


def _settle(win):
    win.root.update()


def test_gui_window_enter_posts_the_line_and_echoes_it(window):
    window.entry.insert(0, "hello bob")
    window.entry.focus_force()
    window.entry.event_generate("<Return>", when="now")
    assert window.posted == [("line", "hello bob")]
    assert window.entry.get() == ""
    assert window.conversation.content().endswith("[alice]> hello bob\n")


def test_gui_window_picking_a_chat_switches_to_it(window):
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


def test_gui_window_send_file_button_posts_send_with_quoted_paths(window, monkeypatch):
    from peerpunch import gui
    monkeypatch.setattr(gui.filedialog, "askopenfilenames",
                        lambda **kw: ("/tmp/my photo.jpg", "/tmp/b.txt"))
    window.send_file.invoke()
    assert window.posted == [("line", "/send '/tmp/my photo.jpg' /tmp/b.txt")]
    monkeypatch.setattr(gui.filedialog, "askopenfilenames", lambda **kw: "")     # cancelled
    window.send_file.invoke()
    assert len(window.posted) == 1


def test_gui_window_offer_buttons_post_accept_and_decline(window):
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


def test_gui_window_chat_request_buttons_post_accept_name(window):
    assert not window.requests.winfo_ismapped()
    window.event(E.Notice("accept chat from carol? /accept or /decline"))
    window.event(E.Notice("accept chat from dave? /accept or /decline"))
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


def test_gui_window_safety_code_button_asks_for_the_shown_chat(window):
    window.verify.invoke()
    assert window.posted == [("line", "/verify bob")]


def test_gui_window_an_error_ending_keeps_the_window_with_the_reason(window):
    window.closed(1, E.Closed(1, "the relay went away"))
    _settle(window)
    assert not window.gone and window.code == 1
    assert window.conversation.content().endswith("error: the relay went away\n")
    assert window.err.text == "error: the relay went away\n"
    assert window.entry.instate(["disabled"])
    window.close()                                   # the close button: now it goes
    assert window.gone and window.posted == []


def test_gui_window_closing_quits_first_and_goes_when_the_core_closed(window):
    window.close()
    assert window.posted == [("quit",)] and not window.gone
    window.closed(0, E.Closed(0, "bye"))
    assert window.gone


def test_gui_window_run_polls_the_queue_until_the_end(window):
    output = queue.Queue()
    output.put(("event", E.Message("bob", "last words", 2)))
    output.put(("log", "warning: a log line"))
    output.put(("exit", 0, E.Closed(0, "bye")))
    assert window.run(output) == 0                   # returns: the window went
    assert window.gone and window.err.text == "warning: a log line\n"


def test_gui_ask_name_dialog_until_a_valid_name(display):
    from peerpunch import guiapp
    root = tk.Tk(screenName=display)
    root.withdraw()                      # as guiapp.open_root leaves it
    prompts = []
    answers = ["x" * 40, "carol"]

    def answer():
        dialogs = [w for w in root.winfo_children() if isinstance(w, tk.Toplevel)]
        if not dialogs or not dialogs[-1].winfo_viewable():    # not up yet: keys would be lost
            root.after(20, answer)
            return
        dialog = dialogs[-1]
        prompts.append([w.cget("text") for w in _all(dialog) if isinstance(w, tk.Label)])
        entry = next(w for w in _all(dialog) if isinstance(w, tk.Entry))
        entry.insert(0, answers.pop(0))
        entry.focus_force()
        entry.event_generate("<Return>", when="now")
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
