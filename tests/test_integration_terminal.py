"""The chat in a real terminal: alice runs bin/peer.py on a pseudo-terminal
(stdin, stdout and stderr), bob on pipes. What alice's screen shows is
rendered by a small terminal model (tests/ptyterm.py); what bob receives is
what his stdout prints. Every wait is for a condition, with a deadline."""

import importlib
import os
import re
import select
import stat
import sys
import termios
import time

import pytest

from peerpunch.termview import name_colour

from .procs import PEER, ROOT, peer
from .ptyterm import PtyProc, ScreenModel

LEFT, RIGHT, UP, HOME, END = "\x1b[D", "\x1b[C", "\x1b[A", "\x1b[H", "\x1b[F"
PROMPT = r"^[^\[]*> "                  # "> " now, "bob (direct, encrypted)> " with a ChatList

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="pty tests: Linux")


@pytest.fixture
def chat(procs, relay, tmp_path):
    """Start bob (pipes, waiting) and return a function starting alice on a
    pty connected to him (and, with *prompt*, showing a prompt):
    ``alice = chat(*args, extra_env=None, config=None, prompt=True)``."""
    bob = peer(procs, relay, "--name", "bob", "--wait")
    bob.expect("^registered as bob")
    started = []

    def start(*args, extra_env=None, config=None, prompt=True):
        seen = len(bob.lines["stdout"])
        alice = PtyProc([sys.executable, PEER, "--relay", relay.addr, "--name", "alice",
                         "--connect", "bob"] + list(args),
                        config=config or str(tmp_path / "alice"), extra_env=extra_env)
        started.append(alice)
        alice.expect(r"connected to bob ")
        bob.expect(r"^connected to alice ", start=seen)
        if prompt:                  # readline has the terminal: keys are no longer echoed by it
            input_line(alice, "")
        start.bob = bob
        return alice
    yield start
    for alice in started:
        alice.stop()


def input_line(alice, text, cursor=None):
    """Wait until the cursor is on the input line showing *text* after a
    prompt, at *cursor* characters into it (default: its end)."""
    def check(t):
        m = re.match(PROMPT + r"(.*)$", "".join(t.screen.rows[t.screen.row]))
        typed = cursor if cursor is not None else len(text)
        return m and m.group(1).rstrip() == text and t.screen.col == m.start(1) + typed
    return alice.wait_for(check, what="input line %r, cursor at %r" % (text, cursor))


def received(bob, text):
    bob.expect(r"^\[alice\]> %s$" % re.escape(text))


def test_integration_terminal_message_above_half_typed_line(chat):
    alice = chat()
    bob = chat.bob
    alice.type("half a li")
    input_line(alice, "half a li")
    bob.send("hello from bob")
    alice.expect(r"^\[bob\]> hello from bob$")
    input_line(alice, "half a li")
    lines = alice.screen.lines()
    row = lines.index("[bob]> hello from bob")
    assert row == alice.screen.row - 1                  # just above the input line
    assert not any("half a li" in line for line in lines[:row])   # the half line moved, not copied
    alice.type("ne\r")
    received(bob, "half a line")


def test_integration_terminal_arrow_keys_edit_and_the_cursor_survives_a_message(chat):
    alice = chat()
    bob = chat.bob
    alice.type("abc" + LEFT + LEFT)
    input_line(alice, "abc", cursor=1)
    bob.send("while you edit")
    alice.expect(r"^\[bob\]> while you edit$")
    input_line(alice, "abc", cursor=1)                  # redrawn, the cursor where it was
    alice.type("X\r")
    received(bob, "aXbc")
    alice.type("world" + HOME + "hello " + END + "!\r")
    received(bob, "hello world!")
    alice.type("one two\x17three\r")                    # Ctrl+W: the word before the cursor
    received(bob, "one three")
    alice.type("hi b\t\r")                                # Tab: a partner's name
    bob.expect(r"^\[alice\]> hi bob ?$")
    alice.type("/whoa\t\r")                               # Tab: a command
    alice.expect(r"^you are alice, key ")


def test_integration_terminal_up_arrow_recalls_history_also_in_the_next_run(chat, tmp_path):
    alice = chat()
    bob = chat.bob
    alice.type("first line\r")
    received(bob, "first line")
    alice.type("second\r")
    received(bob, "second")
    alice.type(UP + UP + " again\r")
    received(bob, "first line again")
    alice.type("/quit\r")
    assert alice.popen.wait(15) == 0
    history = tmp_path / "alice" / "peerpunch" / "history"
    assert history.read_text().splitlines() == ["first line", "second", "first line again",
                                                "/quit"]
    assert stat.S_IMODE(history.stat().st_mode) == 0o600
    bob.expect(r"^\[alice\] has left the chat\.$")
    again = chat(config=str(tmp_path / "alice"))
    again.type(UP + UP)
    input_line(again, "first line again")
    seen = len(bob.lines["stdout"])
    again.type("\r")
    bob.expect(r"^\[alice\]> first line again$", start=seen)


def test_integration_terminal_no_escape_code_reaches_the_partner(chat):
    alice = chat()
    bob = chat.bob
    keys = [LEFT, RIGHT, UP, "\x1b[B", "\x1bOP", "\x1b[2~", "\x1b[4~", "\x1b[1;2D",
            "\x1b[1;5C"] + ["\x1b[%d~" % n for n in (15, 17, 18, 19, 20, 21, 23, 24)]
    alice.type("a" + "".join(keys) + "b\r")
    alice.type("c\x1b[3~d\r")                           # Delete at the end: nothing to delete
    alice.type("end\r")
    received(bob, "end")
    said = [line for line in bob.lines["stdout"] if line.startswith("[alice]> ")]
    assert said == ["[alice]> ab", "[alice]> cd", "[alice]> end"]


def test_integration_terminal_plain_lines_without_readline(chat, tmp_path):
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    (shadow / "readline.py").write_text("raise ImportError('no readline here (a test)')\n")
    alice = chat(extra_env={"PYTHONPATH": os.pathsep.join((str(shadow), ROOT))}, prompt=False)
    bob = chat.bob
    notices = [line for line in alice.screen.lines() if "no readline module" in line]
    assert notices == ["no readline module: plain line input (no editing, history or Tab)"]
    alice.type("ab" + LEFT + "c\r")                      # the terminal passes the escape on
    alice.type(UP + "\r")                                # nothing left: nothing sent
    alice.type("after\r")
    received(bob, "after")
    said = [line for line in bob.lines["stdout"] if line.startswith("[alice]> ")]
    assert said == ["[alice]> abc", "[alice]> after"]
    assert not any(re.match(PROMPT, line) for line in alice.screen.lines())     # no prompt


def test_integration_terminal_basic_readline_redraws_the_half_line(chat, tmp_path):
    """A readline module ctypes cannot reach (as with libedit): input(),
    and the prompt and half line redrawn after a message."""
    real = importlib.import_module("readline").__file__
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    (shadow / "readline.py").write_text(
        "import importlib.machinery, importlib.util, sys\n"
        "_me = sys.modules[__name__]\n"
        "_loader = importlib.machinery.ExtensionFileLoader('readline', %r)\n"
        "_spec = importlib.util.spec_from_loader('readline', _loader)\n"
        "_real = importlib.util.module_from_spec(_spec)\n"
        "_loader.exec_module(_real)\n"
        "globals().update((k, v) for k, v in vars(_real).items() if not k.startswith('__'))\n"
        "sys.modules['readline'] = _me\n" % real)
    alice = chat(extra_env={"PYTHONPATH": os.pathsep.join((str(shadow), ROOT))})
    bob = chat.bob
    alice.type("half")
    input_line(alice, "half")
    bob.send("meanwhile")
    alice.expect(r"^\[bob\]> meanwhile$")
    input_line(alice, "half")
    alice.type(" done\r")
    received(bob, "half done")


def test_integration_terminal_ctrl_d_quits_and_gives_the_terminal_back(chat):
    alice = chat()
    modes = alice.initial_modes
    alice.type("\x04")
    assert alice.popen.wait(15) == 0
    chat.bob.expect(r"^\[alice\] has left the chat\.$")
    assert alice.slave_modes() == modes
    assert alice.slave_modes()[3] & termios.ECHO and alice.slave_modes()[3] & termios.ICANON


def test_integration_terminal_options_on_pipes_change_nothing(procs, relay):
    """Not a terminal: plain lines, no prompt, no escape code, no bell, no
    timestamp, even when asked for colours' cousins."""
    bob = peer(procs, relay, "--name", "bob", "--wait", "--timestamps", "--bell")
    bob.expect("^registered as bob")
    alice = peer(procs, relay, "--name", "alice", "--connect", "bob", "--timestamps", "--bell")
    alice.expect(r"^connected to bob ")
    alice.send("hi \x1b[D there")
    bob.expect(r"^\[alice\]> hi \\x1b\[D there$")
    bob.send("back")
    alice.expect(r"^\[bob\]> back$")
    alice.send("/quit")
    assert alice.wait() == 0
    output = alice.lines_when_done("stdout") + alice.lines["stderr"] + bob.lines["stdout"]
    assert not any("\x1b" in line or "\x07" in line for line in output)
    assert not any(re.match(r"^> |^\w+ \([a-z, ]+\)> |^\d\d:\d\d ", line) for line in output)


def test_integration_terminal_timestamps_bell_and_colours(chat):
    alice = chat("--timestamps", "--bell")
    bob = chat.bob
    bob.send("one")
    bob.send("two")
    alice.expect(r"^\d\d:\d\d \[bob\]> two$")
    assert alice.screen.bells == 1                      # one burst, one bell
    assert b"[\x1b[%dmbob\x1b[0m]> one" % name_colour("bob") in alice.raw
    alice.type("reply\r")
    received(bob, "reply")
    bob.send("three")
    alice.expect(r"^\d\d:\d\d \[bob\]> three$")
    assert alice.screen.bells == 2                      # a new burst once alice answered


def test_integration_terminal_no_colour_with_no_color(chat):
    alice = chat(extra_env={"NO_COLOR": "1"})
    chat.bob.send("plain")
    alice.expect(r"^\[bob\]> plain$")
    assert not re.search(rb"\x1b\[[0-9;]*m", alice.raw)


def test_integration_terminal_a_pasted_block_is_one_line_each(chat):
    alice = chat()
    alice.type("\x1b[200~first\nsecond\x1b[201~\r")      # a bracketed paste, if readline asks
    received(chat.bob, "first")
    received(chat.bob, "second")


def test_integration_terminal_model_applies_sequences_also_cut_between_reads():
    """The terminal model the tests read the screen with (tests/ptyterm.py)."""
    whole = "ab\x1b[2D\u00e9\x1b[Kz\r\n> x\x1b[4h\x1b[1@y\x1b[4l\u2713\x07".encode()
    for cut in range(len(whole) + 1):
        model = ScreenModel()
        model.feed(whole[:cut])
        model.feed(whole[cut:])
        assert model.lines() == ["\u00e9z", "> xy\u2713"], cut
        assert (model.row, model.col, model.bells) == (1, 5, 1)


def test_integration_terminal_closed_terminal_ends_the_peer(chat):
    alice = chat()
    alice.type("half")
    input_line(alice, "half")
    alice.hang_up()                                    # the window is closed
    assert alice.popen.wait(15) == 0
    chat.bob.expect(r"^\[alice\] has left the chat\.$")


def read_post(fd, timeout=15.0):
    """The next line the driver's stdin thread posted (tests/termdriver.py)."""
    data = b""
    deadline = time.monotonic() + timeout
    while not data.endswith(b"\n"):
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        assert ready, "nothing posted within %g s (got %r)" % (timeout, data)
        byte = os.read(fd, 1)
        assert byte, "the driver ended"
        data += byte
    return data.decode().rstrip("\n")


def test_integration_terminal_prompt_follows_the_chat_list_and_keeps_the_half_line(tmp_path):
    events_r, events_w = os.pipe()
    posts_r, posts_w = os.pipe()
    term = PtyProc([sys.executable, "-m", "tests.termdriver", str(events_r), str(posts_w)],
                   config=str(tmp_path), pass_fds=(events_r, posts_w))
    os.close(events_r)
    os.close(posts_w)
    try:
        input_line(term, "")
        assert term.screen.cursor_line() == ">"                  # no chat yet: "> "
        term.type("half" + LEFT)
        input_line(term, "half", cursor=3)
        os.write(events_w, b"chats bob punching -\n")
        term.expect(r"^bob \(punching\)> half$")
        input_line(term, "half", cursor=3)
        os.write(events_w, b"chats bob connected direct\nmsg bob hi\n")
        term.expect(r"^\[bob\]> hi$")
        term.expect(r"^bob \(direct, encrypted\)> half$")
        input_line(term, "half", cursor=3)
        term.type("X\r")
        assert read_post(posts_r) == "line halXf"
        term.type("\x12hal")                                       # Ctrl+R: a search
        term.expect(r"\(reverse-i-search\)`hal': halXf$")
        os.write(events_w, b"chats carol connected relayed\nmsg carol during the search\n")
        term.expect(r"^\[carol\]> during the search$")
        term.expect(r"\(reverse-i-search\)`hal': halXf$")        # the search's prompt redrawn
        term.type("\r")
        assert read_post(posts_r) == "line halXf"
        term.expect(r"^carol \(relayed, encrypted\)>$")            # the new prompt, after
    finally:
        os.close(events_w)
        term.stop()
        os.close(posts_r)


def test_integration_terminal_prompt_says_where_a_line_goes_and_the_path(chat):
    """The core's ChatList reaches the prompt in a real chat."""
    alice = chat()
    alice.wait_for(lambda t: "".join(t.screen.rows[t.screen.row]).startswith(
        "bob (direct, encrypted)> "), what="the prompt naming bob, direct and encrypted")
    alice.type("/leave\r")
    alice.wait_for(lambda t: "".join(t.screen.rows[t.screen.row]).startswith("> "),
                   what="the neutral prompt once the chat ended")
