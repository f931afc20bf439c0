"""The GUI for real: ``bin/peer.py --gui`` under Xvfb, against a real relay
and a second real peer on a pipe, driven through Tk by its test hook
(peerpunch.guitest): typing into the real input and pressing Enter,
invoking the real buttons. Without tkinter or a display: one line, exit 2.

Xvfb is Debian's ``xvfb`` (and ``xwd`` from ``x11-apps`` for the
screenshot), installed by run-tests; without them these tests skip, in CI
they fail. The screenshot is saved under the test's tmp dir and, when
PEERPUNCH_SCREENSHOT_DIR is set, copied there too.
"""

import os
import re
import shutil
import signal
import subprocess
import sys

import pytest

from .procs import CONNECTED, PEER, ROOT, Proc, env, peer, start_peer
from .xserver import ENV, GuiDriver, screenshot, xvfb_or_skip

pytestmark = pytest.mark.timeout(90)

NO_DISPLAY = ("env", "-u", "DISPLAY", "-u", "WAYLAND_DISPLAY")


@pytest.fixture(scope="module")
def display():
    server = xvfb_or_skip()
    yield server.display
    server.stop()


@pytest.fixture
def gui(procs, relay, display, tmp_path):
    """Start ``bin/peer.py --gui ARGS`` on the virtual display with the hook
    at a socket of our own; return (proc, driver)."""
    drivers = []

    def start(*args):
        path = str(tmp_path / ("hook%d" % len(drivers)))
        driver = GuiDriver(path)
        drivers.append(driver)
        proc = start_peer(relay.addr, "--gui", *args,
                          prefix=("env", "DISPLAY=" + display, "%s=%s" % (ENV, path)))
        procs.append(proc)
        driver.accept()
        return proc, driver
    yield start
    for driver in drivers:
        driver.close()


def _chat(gui, procs, relay, tmp_path):
    """bob on a pipe waits; alice's GUI connects to him."""
    bob = peer(procs, relay, "--name", "bob", "--wait")
    bob.expect("^registered as bob")
    alice, window = gui("--name", "alice", "--connect", "bob",
                        "--download-dir", str(tmp_path))
    bob.expect(CONNECTED % "alice")
    window.wait_for(lambda s: _listed(s, "bob", "direct, encrypted"), what="bob in the list")
    return alice, window, bob


def test_gui_window_title_chat_list_and_key_on_hover(gui, procs, relay, tmp_path):
    alice, window, bob = _chat(gui, procs, relay, tmp_path)
    state = window.ask("state")
    assert state["title"] == "peerpunch \u2014 alice"
    assert state["shown"] == "bob"
    assert re.search(r"^connected to bob at 127\.0\.0\.1:\d+ \(direct\) encrypted, key ",
                     state["conversation"], re.M)
    key = re.search(r"encrypted, key (\S+),", state["conversation"]).group(1)
    assert window.ask("hover", name="bob")["tooltip"] == "key %s" % key


def test_gui_a_typed_line_reaches_the_partner_and_theirs_is_shown(gui, procs, relay, tmp_path):
    alice, window, bob = _chat(gui, procs, relay, tmp_path)
    window.ask("type", text="hello from the window")
    bob.expect(r"^\[alice\]> hello from the window$")
    state = window.wait_for(lambda s: "[alice]> hello from the window" in s["conversation"])
    assert state["input"] == ""                        # Enter emptied the input line
    bob.send("and hello from the pipe")
    window.wait_for(lambda s: "[bob]> and hello from the pipe\n" in s["conversation"],
                    what="bob's line in the conversation")
    window.ask("type", text="/quit")                 # a command, as in the terminal
    bob.expect(r"^\[alice\] has left the chat\.$")
    assert alice.wait() == 0, alice.transcript()


def test_gui_picking_a_chat_in_the_list_sends_plain_lines_there(gui, procs, relay, tmp_path):
    alice, window, bob = _chat(gui, procs, relay, tmp_path)
    carol = peer(procs, relay, "--name", "carol", "--wait")
    carol.expect("^registered as carol")
    window.ask("type", text="/connect carol")
    carol.expect(CONNECTED % "alice")
    window.wait_for(lambda s: _listed(s, "carol", "direct, encrypted"), what="carol listed")
    for name in ("carol", "bob", "carol"):
        window.ask("select", name=name)
        window.wait_for(lambda s: s["shown"] == name, what="%s shown" % name)
        them = bob if name == "bob" else carol
        start = len(them.lines["stdout"])
        window.ask("type", text="only for %s" % name)
        them.expect(r"^\[alice\]> only for %s$" % name, start=start)
    assert not bob.has("only for carol") and not carol.has("only for bob")


def _listed(state, name, status):
    """*name* is in the window's list with *status* (an unread count may follow the name)."""
    return any(re.match(r"%s( \(\d+\))?$" % re.escape(name), label) and shown == status
               for label, shown in state["chats"])


def test_gui_accepting_a_file_offer_brings_the_file(gui, procs, relay, tmp_path):
    alice, window, bob = _chat(gui, procs, relay, tmp_path / "in")
    data = os.urandom(300000)
    (tmp_path / "photo.bin").write_bytes(data)
    bob.send("/send %s" % (tmp_path / "photo.bin"))
    state = window.wait_for(lambda s: s["transfers"] and s["transfers"][0][3],
                            what="an offer with Accept")
    tid, label, percent, _ = state["transfers"][0]
    assert label == "photo.bin from bob: offered" and percent == 0.0
    window.ask("click", tid=tid, button="accept")
    bob.expect(r"^sent photo\.bin to alice \(300000 bytes")
    state = window.wait_for(lambda s: s["transfers"][0][1] == "photo.bin from bob: done")
    assert state["transfers"][0][2:] == [100.0, False]          # full bar, no buttons left
    assert (tmp_path / "in" / "photo.bin").read_bytes() == data
    assert "received photo.bin (300000 bytes) from bob" in state["conversation"]


def test_gui_safety_code_in_a_dialog_and_a_screenshot(gui, procs, relay, tmp_path, display):
    alice, window, bob = _chat(gui, procs, relay, tmp_path)
    window.ask("type", text="/verify")
    state = window.wait_for(lambda s: s["dialogs"], what="the safety code dialog")
    bob.send("/verify")
    code = bob.expect(r"^safety code with alice: ([\d ]+)$").group(1)
    assert state["dialogs"][0].startswith("safety code with bob: %s\n" % code)
    window.ask("ok")
    window.wait_for(lambda s: not s["dialogs"], what="the dialog closed")
    bob.send("hi alice! here are the photos from Saturday")
    window.wait_for(lambda s: "Saturday" in s["conversation"])
    window.ask("type", text="thanks, bob!")
    bob.expect(r"^\[alice\]> thanks, bob!$")
    (tmp_path / "beach.jpg").write_bytes(os.urandom(2345678))
    bob.send("/send %s" % (tmp_path / "beach.jpg"))
    state = window.wait_for(lambda s: s["transfers"] and s["transfers"][0][3],
                            what="an offer with its buttons")
    shot = tmp_path / "gui.png"
    screenshot(display, state["frame"], str(shot))
    _check_png(shot.read_bytes(), state["geometry"][2:])
    if os.environ.get("PEERPUNCH_SCREENSHOT_DIR"):
        os.makedirs(os.environ["PEERPUNCH_SCREENSHOT_DIR"], exist_ok=True)
        shutil.copy(str(shot), os.path.join(os.environ["PEERPUNCH_SCREENSHOT_DIR"], "gui.png"))


def _check_png(data, size):
    import struct
    import zlib
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert [width, height] == size
    raw = zlib.decompress(data[data.index(b"IDAT") + 4:data.index(b"IEND") - 8])
    assert len(set(raw[1:1 + width * 3 * height:7])) > 4      # not one flat colour


def test_gui_sigterm_says_goodbye_like_the_close_button(gui, procs, relay, tmp_path):
    alice, window, bob = _chat(gui, procs, relay, tmp_path)
    alice.signal(signal.SIGTERM)
    bob.expect(r"^\[alice\] has left the chat\.$")
    assert alice.wait() == 0, alice.transcript()


def test_gui_a_refused_name_stays_shown_until_the_window_is_closed(gui, procs, relay):
    peer(procs, relay, "--name", "alice", "--wait").expect("^registered as alice")
    alice, window = gui("--name", "alice")
    state = window.wait_for(lambda s: "error: the relay says the name alice is in use"
                            in s["conversation"], what="the refusal shown")
    assert state["title"] == "peerpunch \u2014 alice"
    assert alice.popen.poll() is None                      # the window is still up
    alice.expect("^error: the relay says the name alice is in use", stream="stderr")
    alice.signal(signal.SIGTERM)
    assert alice.wait() == 1


# -- where there can be no window

def test_gui_without_a_display_says_so_in_one_line_and_exits_2(procs, relay):
    proc = start_peer(relay.addr, "--gui", "--name", "alice", prefix=NO_DISPLAY)
    procs.append(proc)
    assert proc.wait() == 2
    err = proc.lines_when_done("stderr")
    assert len(err) == 1 and re.match(
        r"python \S+peer\.py: error: --gui needs a display, and there is none \(", err[0]), err
    assert proc.lines["stdout"] == []


def test_gui_without_tkinter_says_so_in_one_line_and_exits_2(procs, relay, tmp_path):
    fake = tmp_path / "fake"
    fake.mkdir()          # shadows the real _tkinter, as a Python built without Tk lacks it
    (fake / "_tkinter.py").write_text("raise ImportError(\"No module named '_tkinter'\")\n")
    proc = Proc([sys.executable, PEER, "--relay", relay.addr, "--gui", "--name", "alice"],
                pythonpath=os.pathsep.join([str(fake), ROOT]))
    procs.append(proc)
    assert proc.wait() == 2
    err = proc.lines_when_done("stderr")
    assert err == ["python %s: error: --gui needs tkinter, which this Python lacks"
                   " (No module named '_tkinter')" % PEER], err


def test_gui_console_script_and_help_name_the_gui():
    result = subprocess.run([sys.executable, "-c", "import sys; from peerpunch.peer import"
                             " gui_main; sys.argv[0] = 'peerpunch-gui'; sys.exit(gui_main())",
                             "--help"], env=env(), capture_output=True, timeout=30)
    assert result.returncode == 0, result
    out = result.stdout.decode()
    assert out.startswith("usage: peerpunch-gui [-h]") and "--gui" in out
    assert re.search(r"^ +peerpunch-relay --port 8080$", out, re.M), out
