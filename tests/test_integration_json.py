"""--json for real: a peer process that speaks JSON lines for a whole
session with a real relay and a real partner (connect, lines both ways and
their delivery, a file each way, the partner leaving, the end), every line
of its stdout checked against docs/json.md; and its command line."""

import json
import os
import subprocess
import sys
import time

import pytest

from .jsondoc import parse_line
from .procs import CONNECTED, PEER, ROOT, env, peer

pytestmark = pytest.mark.timeout(90)


def expect_event(proc, kind, start=0, timeout=20.0, **fields):
    """Wait for the first object of *kind* (with *fields*) on *proc*'s stdout
    from line *start*; return (its index, the object)."""
    deadline = time.monotonic() + timeout
    seen = start
    while True:
        lines = proc.lines["stdout"]
        for index in range(seen, len(lines)):
            obj = json.loads(lines[index])
            if obj["event"] == kind and all(obj.get(k) == v for k, v in fields.items()):
                return index, obj
        seen = len(lines)
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError("no %s %r within %gs:\n%s" % (kind, fields, timeout,
                                                              proc.transcript()))
        proc.expect(".", start=seen, timeout=left)     # the next line, whatever it is


def in_order(kinds, wanted):
    """True if *wanted* appear in *kinds* in this order (others between)."""
    rest = iter(kinds)
    return all(any(k == w for k in rest) for w in wanted)


def test_integration_json_whole_session_is_documented_json_lines(procs, relay, tmp_path):
    bob_down, alice_down = tmp_path / "bob-down", tmp_path / "alice-down"
    bob = peer(procs, relay, "--name", "bob", "--wait", "--json", "-v", "--auto-accept",
               str(bob_down))            # -v: its logs must stay off stdout
    expect_event(bob, "registered", username="bob")
    alice = peer(procs, relay, "--name", "alice", "--connect", "bob", "--auto-accept",
                 str(alice_down))
    alice.expect(CONNECTED % "bob")
    _, up = expect_event(bob, "connected", partner="alice")
    assert up["path"] == "direct" and up["encrypted"] and up["key"]

    alice.send("hi bob \x1b[2J \u00e9")
    expect_event(bob, "message", partner="alice", text="hi bob \x1b[2J \u00e9", id=1)
    bob.send("hello alice")
    alice.expect(r"^\[bob\]> hello alice$")
    expect_event(bob, "delivered", partner="alice", ids=[1])

    incoming = tmp_path / "to bob.bin"
    incoming.write_bytes(os.urandom(2 * 1024 * 1024 + 3))
    alice.send('/send "%s"' % incoming)
    _, offer = expect_event(bob, "file_offer", partner="alice", names=["to bob.bin"])
    assert offer["total"] == 2 * 1024 * 1024 + 3 and offer["outgoing"] is False
    _, got = expect_event(bob, "file_done", id=offer["id"], outgoing=False, timeout=30)
    assert (bob_down / "to bob.bin").read_bytes() == incoming.read_bytes()
    assert got["where"] == [str(bob_down / "to bob.bin")]

    outgoing = tmp_path / "to alice.txt"
    outgoing.write_bytes(b"one file the other way\n")
    bob.send('/send "%s"' % outgoing)
    _, sent = expect_event(bob, "file_done", outgoing=True, names=["to alice.txt"], timeout=30)
    assert sent["total"] == len(b"one file the other way\n")
    assert (alice_down / "to alice.txt").read_bytes() == outgoing.read_bytes()

    alice.send("/leave")
    expect_event(bob, "left", partner="alice", by="partner")
    bob.close_stdin()                      # end of input: quit
    assert bob.wait() == 0
    objects = [parse_line(line) for line in bob.lines_when_done()]
    kinds = [o["event"] for o in objects]
    assert in_order(kinds, ["start", "registered", "connected", "message", "delivered",
                            "file_offer", "file_accepted", "file_progress", "file_done",
                            "file_accepted", "file_done", "left", "exit"]), kinds
    assert kinds[0] == "start" and kinds[-1] == "exit" and objects[-1]["code"] == 0
    progress = [o for o in objects if o["event"] == "file_progress" and o["id"] == offer["id"]]
    assert progress[-1]["done"] == progress[-1]["total"] == offer["total"]
    assert not any(line.startswith("{") for line in bob.lines["stderr"])


def run(argv):
    return subprocess.run([sys.executable, PEER] + argv, cwd=ROOT, env=env(),
                          stdin=subprocess.DEVNULL, capture_output=True, timeout=30)


@pytest.mark.parametrize("argv,words", [
    (["--json", "--relay", "127.0.0.1:9"], "--json needs --name"),
    (["--json", "--name", "a", "--nat-check"], "--json cannot be combined with --nat-check"),
])
def test_integration_json_usage_errors_are_one_line_and_exit_2(argv, words):
    result = run(argv)
    lines = result.stderr.decode().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and words in lines[0], result
    assert result.stdout == b""


def test_integration_json_with_gui_is_refused_whoever_adds_gui():
    import argparse
    from peerpunch.peer import _json_conflict
    args = argparse.Namespace(json=True, gui=True, nat_check=False, name="a")
    assert _json_conflict(args) == "--json cannot be combined with --gui"
    args.gui = False
    assert _json_conflict(args) is None


def test_integration_json_without_connect_or_wait_starts_idle_and_never_asks(relay):
    result = subprocess.run([sys.executable, PEER, "--json", "--relay", relay.addr, "--name",
                             "carol"], input=b"/status\n", cwd=ROOT, env=env(),
                            capture_output=True, timeout=30)
    objects = [parse_line(line) for line in result.stdout.decode().splitlines()]
    assert result.returncode == 0 and objects[0]["event"] == "start"
    assert objects[0]["username"] == "carol" and objects[-1]["event"] == "exit"
    status = [o for o in objects if o["event"] == "notice" and o["what"] == "status"]
    assert status and status[0]["fields"]["name"] == "carol"
    assert "username" not in result.stderr.decode().lower()


def test_integration_json_refused_name_ends_with_an_error_and_exit_1(procs, relay):
    first = peer(procs, relay, "--name", "dave", "--wait", "--json")
    expect_event(first, "registered", username="dave")
    second = peer(procs, relay, "--name", "dave", "--wait", "--json")
    assert second.wait(20) == 1
    objects = [parse_line(line) for line in second.lines_when_done()]
    last = objects[-1]
    assert (last["event"], last["code"], last["what"]) == ("exit", 1, "relay_refused")
    assert "in use" in last["text"]
