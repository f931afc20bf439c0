"""The line view (what the main thread shows on a terminal or a pipe) and
pump (the main thread's loop from the output queue to a view): events come
as data from the network thread and are worded only here."""

import io
import queue

from peerpunch import events as E
from peerpunch.chatfiles import FileNews
from peerpunch.lineview import LineView, is_progress
from peerpunch.peershell import pump
from peerpunch.transfer import FileProgress

PROGRESS = FileNews("bob", FileProgress("0123456789ab", 500, 1000, 100.0, 5.0), False, ("a.bin",), 0)


def view(tty):
    out, err = io.StringIO(), io.StringIO()
    return LineView(out, err, tty=tty), out, err


def test_a_message_is_one_plain_line_on_a_pipe():
    v, out, err = view(tty=False)
    v.event(E.Message("bob", "hi\x1b[2J", 1))
    v.event(E.Delivered("bob", (1,)))               # the mark is for a person watching
    assert out.getvalue() == "[bob]> hi\\x1b[2J\n" and err.getvalue() == ""


def test_progress_is_redrawn_in_place_on_a_terminal_and_cleared_before_the_next_line():
    v, out, _ = view(tty=True)
    v.event(PROGRESS)
    v.event(PROGRESS)
    v.event(E.Message("bob", "hi", 1))
    text = out.getvalue()
    assert text.count("\r") == 3 and text.count("\x1b[K") == 3
    assert "\n" not in text[:text.rindex("\r")]     # both progress draws on one line
    assert text.endswith("\r\x1b[K[bob]> hi\n")
    assert is_progress(PROGRESS) and not is_progress(E.Message("bob", "hi", 1))


def test_progress_is_quiet_on_a_pipe():
    v, out, _ = view(tty=False)
    v.event(PROGRESS)
    assert out.getvalue() == ""


def test_logs_and_the_closing_error_go_to_stderr():
    v, out, err = view(tty=False)
    v.log("warning: something")
    v.closed(1, E.Closed(1, "relay unreachable"))
    v.closed(0, E.Closed(0, None))                   # a clean end says nothing
    assert out.getvalue() == ""
    assert err.getvalue() == "warning: something\nerror: relay unreachable\n"


def test_pump_hands_items_to_the_view_in_order_and_returns_the_exit_code():
    seen = []

    class Recorder:
        def event(self, event):
            seen.append(("event", event))

        def log(self, text):
            seen.append(("log", text))

        def closed(self, code, closed):
            seen.append(("closed", code))

    output = queue.Queue()
    assert pump(output, Recorder(), block=False) is None      # nothing yet
    for item in (("event", E.PeerLeft("bob")), ("log", "x"), ("exit", 3, E.Closed(3, "bye")),
                 ("log", "after the end")):
        output.put(item)
    assert pump(output, Recorder()) == 3
    assert seen == [("event", E.PeerLeft("bob")), ("log", "x"), ("closed", 3)]
    assert output.get_nowait() == ("log", "after the end")     # left for nobody


def test_the_chat_list_is_for_prompts_and_lists_not_a_line():
    v, out, err = view(tty=True)
    v.event(E.ChatList((E.ChatRow("bob", "chat", "connected", "direct", True, "ab12"),), "bob"))
    assert out.getvalue() == err.getvalue() == ""
