"""The terminal view (what goes above the input line, the prompt, colours,
timestamps, the bell), the history file, Tab completion and the cleaning
of typed lines; the view is driven with a recording screen and a fake
clock. The real terminal: test_integration_terminal.py."""

import io
import os
import stat

import pytest

from peerpunch import events as E
from peerpunch import rlctypes
from peerpunch import termhistory as TH
from peerpunch.chatfiles import FileNews
from peerpunch.groups import GroupMessage
from peerpunch.termshell import PlainScreen, typed_lines
from peerpunch.termview import NEUTRAL_PROMPT, TerminalView, name_colour, prompt_for, use_colour
from peerpunch.transfer import FileProgress

BOB_UP = E.ChatRow("bob", "chat", "connected", "direct", True, "ab12")


class RecordingScreen:
    def __init__(self):
        self.shown = []
        self.prompts = []
        self.typed = 0
        self.closed = 0

    def show(self, text, err=False, bell=False, progress=False):
        self.shown.append((text, err, bell, progress))

    def prompt(self, text):
        self.prompts.append(text)

    def close(self):
        self.closed += 1


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def view(**options):
    screen, clock, names = RecordingScreen(), Clock(), []
    v = TerminalView(screen, clock=clock, hhmm=lambda: "09:07", learn=names.append, **options)
    return v, screen, clock, names


def test_termview_prompt_shows_where_plain_lines_go_and_the_path():
    assert prompt_for(None) == NEUTRAL_PROMPT == "> "
    assert prompt_for(E.ChatList((BOB_UP,), "bob")) == "bob (direct, encrypted)> "
    relayed = BOB_UP._replace(path="relayed", encrypted=False)
    assert prompt_for(E.ChatList((relayed,), "bob")) == "bob (relayed, unencrypted)> "
    punching = BOB_UP._replace(state="punching", path=None)
    assert prompt_for(E.ChatList((punching,), "bob")) == "bob (punching)> "
    group = E.ChatRow("#team-01ab", "group", "joined", None, True, None)
    assert prompt_for(E.ChatList((BOB_UP, group), "#team-01ab")) == "#team-01ab> "
    assert prompt_for(E.ChatList((BOB_UP,), None)) == "> "
    assert prompt_for(E.ChatList((), "bo\x1bb")) == "bo\\x1bb> "     # never a raw escape


def test_termview_chat_list_sets_the_prompt_and_prints_nothing():
    v, screen, _, names = view()
    v.event(E.ChatList((BOB_UP,), "bob"))
    assert screen.prompts == ["bob (direct, encrypted)> "] and screen.shown == []
    assert names == ["bob"]


def test_termview_message_plain_without_colour_or_timestamps():
    v, screen, _, _ = view()
    v.event(E.Message("bob", "hi", 1))
    assert screen.shown == [("[bob]> hi", False, False, False)]


def test_termview_colours_names_stably_and_timestamps_messages():
    v, screen, _, _ = view(colour=True, timestamps=True)
    v.event(E.Message("bob", "hi", 1))
    v.event(GroupMessage("#team-01ab", "carol", "yo"))
    code = name_colour("bob")
    assert screen.shown[0][0] == "\x1b[2m09:07\x1b[0m [\x1b[%dmbob\x1b[0m]> hi" % code
    assert screen.shown[1][0] == "\x1b[2m09:07\x1b[0m [\x1b[%dm#team-01ab\x1b[0m] [\x1b[%dmcarol" \
        "\x1b[0m]> yo" % (name_colour("#team-01ab"), name_colour("carol"))
    assert name_colour("bob") == 33        # the same in every run: a CRC, not hash()
    assert len({name_colour(n) for n in ("alice", "bob", "carol", "dave", "erin", "frank")}) > 2


def test_termview_timestamps_without_colour_are_plain_and_only_on_messages():
    v, screen, _, _ = view(timestamps=True)
    v.event(E.Message("bob", "hi", 1))
    v.event(E.PeerLeft("bob"))
    assert [s[0] for s in screen.shown] == ["09:07 [bob]> hi", "[bob] has left the chat."]


def test_termview_no_colour_means_no_escape_at_all():
    v, screen, _, _ = view(timestamps=True, bell=True)
    v.event(E.Message("bob", "red \x1b[31m", 1))
    v.event(E.Alert("x"))
    assert not any("\x1b" in text for text, *_ in screen.shown)


def test_termview_use_colour_follows_no_color_and_dumb_terminals():
    assert use_colour({"TERM": "xterm"})
    assert not use_colour({"TERM": "xterm", "NO_COLOR": "1"})
    assert not use_colour({"TERM": "xterm", "NO_COLOR": "anything"})
    assert not use_colour({"TERM": "dumb"})


def test_termview_bell_rings_once_per_burst():
    v, screen, clock, _ = view(bell=True)
    rings = []
    for step, typed in ((0, 0), (1, 0), (4.9, 0), (5.1, 0), (0.5, 1), (0.5, 1)):
        clock.now += step
        screen.typed = typed
        v.event(E.Message("bob", "hi", 1))
        rings.append(screen.shown[-1][2])
    # first; within the burst; within; after 5.1 s of quiet; after a line typed; within
    assert rings == [True, False, False, True, True, False]
    v.event(E.PeerLeft("bob"))
    assert screen.shown[-1][2] is False


def test_termview_without_bell_never_rings():
    v, screen, _, _ = view()
    v.event(E.Message("bob", "hi", 1))
    assert screen.shown[-1][2] is False


def test_termview_progress_logs_and_the_end():
    v, screen, _, _ = view()
    v.event(FileNews("bob", FileProgress("0123456789ab", 500, 1000, 100.0, 5.0), False,
                     ("a.bin",), 0))
    v.log("warning: x")
    v.closed(1, E.Closed(1, "relay unreachable"))
    assert screen.shown[0][3] is True
    assert screen.shown[1:] == [("warning: x", True, False, False),
                                ("error: relay unreachable", True, False, False)]
    assert screen.closed == 1


def test_termview_learns_names_for_tab():
    v, _, _, names = view()
    v.event(E.Connected("bob", "1.2.3.4:5", "direct", 0.1, None))
    v.event(E.Message("carol", "hi", 1))
    v.event(GroupMessage("#g-1", "dave", "x"))
    v.event(E.Notice("incoming_chat", name="erin", current="bob"))
    assert names == ["bob", "carol", "#g-1", "dave", "erin", None]


# -- Tab


def test_termhistory_completer_commands_then_names():
    c = TH.Completer()
    for name in ("bob", "bea", "bad name", "x" * 65, "\x1b", None, "#team-1"):
        c.add(name)
    assert "/connect" in TH.COMMANDS and "/quit" in TH.COMMANDS and "/send" in TH.COMMANDS
    assert c.matches("/co", 0, "/co") == ["/connect"]
    assert c.matches("/connect b", 9, "b") == ["bea", "bob"]
    assert c.matches("hi b", 3, "b") == ["bea", "bob"]
    assert c.matches("/switch #", 8, "#") == ["#team-1"]
    assert c.matches("x", 0, "q") == []


# -- the history file


def test_termhistory_round_trip_bounded_and_private(tmp_path):
    path = str(tmp_path / "history")
    h = TH.History(path)
    assert h.loaded == []
    for i in range(TH.HISTORY_LINES + 5):
        h.add("line %d" % i)
    h.add("   ")                        # blank lines are not kept
    assert h.save()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    again = TH.History(path)
    assert len(again.loaded) == TH.HISTORY_LINES
    assert again.loaded[0] == "line 5" and again.loaded[-1] == "line %d" % (TH.HISTORY_LINES + 4)


def test_termhistory_merges_what_another_run_wrote(tmp_path):
    path = str(tmp_path / "history")
    first, second = TH.History(path), TH.History(path)
    first.add("from the first")
    second.add("from the second")
    first.save()
    second.save()
    assert TH.History(path).loaded == ["from the first", "from the second"]


def test_termhistory_not_written_where_the_folder_is_not_writable(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        h = TH.History(str(folder / "history"))
        h.add("secret")
        if os.access(str(folder), os.W_OK):       # root writes anyway: a missing folder then
            h = TH.History(str(tmp_path / "missing" / "history"))
            h.add("secret")
        assert h.save() is False
        assert os.listdir(str(folder)) == []
        assert not (tmp_path / "missing").exists()
    finally:
        folder.chmod(0o700)


@pytest.mark.parametrize("content", [b"\x00\xff\xfe binary\x00\n", b"\xff" * 300000,
                                     b"ok\n" * 200000 + b"last\n"])
def test_termhistory_never_fails_on_a_bad_file(tmp_path, content):
    path = tmp_path / "history"
    path.write_bytes(content)
    lines = TH.History(str(path)).loaded
    assert len(lines) <= TH.HISTORY_LINES and all("\x00" not in line for line in lines)
    if content.endswith(b"last\n"):
        assert lines[-1] == "last" and len(lines) == TH.HISTORY_LINES


def test_termhistory_a_folder_in_place_of_the_file(tmp_path):
    (tmp_path / "history").mkdir()
    h = TH.History(str(tmp_path / "history"))
    h.add("x")
    assert h.loaded == [] and h.save() is False


# -- what is sent


@pytest.mark.parametrize("typed, sent", [
    ("abc", ["abc"]),
    ("ab\x1b[Dc\x1b[C", ["abc"]),                   # arrow keys in plain input
    ("\x1b[A", []),                                # nothing left: nothing sent
    ("x\x1b[15~y\x1bOPz", ["xyz"]),                # F5, F1
    ("a\x1b]0;title\x07b", ["ab"]),                # a title-setting OSC
    ("one\ntwo\r\nthree", ["one", "two", "three"]),  # a paste
    ("lone \x1b", ["lone "]),
    ("/send f", ["/send f"]),
])
def test_termshell_typed_lines_carry_no_escape_sequence(typed, sent):
    assert typed_lines(typed) == sent


# -- the screens' shared parts, and choosing one


def plain_screen(typed=""):
    out = io.StringIO()
    return PlainScreen(io.StringIO(typed), out, out, TH.History(None)), out


def test_termshell_progress_line_is_rewritten_in_place_until_something_comes_between():
    screen, out = plain_screen()
    screen.show("p1", progress=True)
    screen.show("p2", progress=True)
    screen.show("done")                 # takes the progress line's place
    screen.show("p3", progress=True)
    screen.typed += 1                   # a line typed since: p3 is no longer just above
    screen.show("p4", progress=True)
    assert out.getvalue() == "p1\n\x1b[A\r\x1b[Kp2\n\x1b[A\r\x1b[Kdone\np3\np4\n"


def test_termshell_plain_screen_posts_clean_lines_then_quit():
    class Network:
        def __init__(self):
            self.posted = []

        def post(self, *item):
            self.posted.append(item)
    screen, out = plain_screen("ab\x1b[Dc\n\x1b[A\nlast")
    network = Network()
    screen.run(network)
    assert network.posted == [("line", "abc"), ("line", "last"), ("quit",)]
    assert screen.typed == 3


def test_termshell_bind_refuses_libedit_and_what_ctypes_cannot_open(tmp_path):
    class Module:
        __doc__ = "Importing this module enables command line editing using libedit readline."
        __file__ = str(tmp_path / "readline.py")
    assert rlctypes.bind(Module) is None
    Module.__doc__ = "GNU readline"
    (tmp_path / "readline.py").write_text("not a library")
    assert rlctypes.bind(Module) is None


def test_termshell_bind_reaches_the_gnu_readline_the_module_loaded():
    """Where the readline module is GNU readline (as on Debian), ctypes
    reaches it: the pty tests then test the redraw, not the fallback."""
    readline = pytest.importorskip("readline")
    if "libedit" in (readline.__doc__ or ""):
        pytest.skip("libedit")
    rl = rlctypes.bind(readline)
    assert rl is not None and rl.point.value == 0
