"""Every line delivered or reported, with the real relay and peers on
127.0.0.1 (issue 11 section 3): the partner killed outright, a line of
60,000 characters, the delivered mark on a terminal only."""

import os
import re
import signal
import subprocess
import sys
import threading
import time

import pytest

from .procs import PEER, chatting, env, peer, terminate

pytestmark = pytest.mark.timeout(60)

REPORT_WITHIN = 10.0


def figure(text):
    print("\nFIGURE " + text)


def test_integration_delivery_partner_killed_line_reported_within_10_s(procs, relay):
    alice, bob = chatting(procs, relay)
    alice.send("before")
    bob.expect(r"^\[alice\]> before$")
    bob.send("got it")                 # carries bob's ack of "before" (or follows it)
    alice.expect(r"^\[bob\]> got it$")   # so only the next line can be outstanding
    bob.signal(signal.SIGKILL)                       # no goodbye: it just vanishes
    bob.wait()
    typed = time.monotonic()
    alice.send("are you still there?")
    alice.expect(r"^1 line not delivered to bob \(no answer\)$", timeout=REPORT_WITHIN + 2)
    seconds = time.monotonic() - typed
    assert seconds <= REPORT_WITHIN, seconds
    assert not alice.has(r"not delivered.*before")
    figure("partner SIGKILLed: 'not delivered' %.2f s after the line was typed" % seconds)


def test_integration_delivery_60000_characters_arrive_as_one_line(procs, relay):
    alice, bob = chatting(procs, relay)
    text = "".join("%05d " % i for i in range(10000))          # 60,000 characters, in order
    alice.send(text)
    m = bob.expect(r"^\[alice\]> 00000 ", timeout=20)
    assert m.string == "[alice]> " + text
    alice.send("x" * 65537)                                   # over 64 KiB: refused, not sent
    alice.expect(r"^not sent: a line may be 64 KiB of UTF-8 at most$")
    alice.send("end-marker")
    bob.expect(r"^\[alice\]> end-marker$")
    assert [line for line in bob.lines["stdout"] if line.startswith("[alice]> ")] == [
        "[alice]> " + text, "[alice]> end-marker"]
    assert not any("\u2713" in line for line in alice.lines["stdout"])   # a pipe: no marks


def test_integration_delivery_mark_on_a_terminal(procs, relay):
    """With stdout on a terminal the sender sees a check mark once the
    partner has the line."""
    bob = peer(procs, relay, "--name", "bob", "--wait")
    bob.expect("^registered as bob")
    alice = Terminal([sys.executable, PEER, "--relay", relay.addr, "--name", "alice",
                      "--connect", "bob"])
    try:
        alice.expect(r"connected to bob ")
        alice.send("hello over a tty")
        bob.expect(r"^\[alice\]> hello over a tty$")
        alice.expect("\u2713")
    finally:
        alice.stop()


class Terminal:
    """A peer whose stdout is a pseudo-terminal (stdin a pipe)."""

    def __init__(self, argv, config=None):
        master, slave = os.openpty()
        self.popen = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=slave,
                                      stderr=subprocess.DEVNULL, env=env(config))
        os.close(slave)
        self.master = master
        self.text = ""
        self._lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        while True:
            try:
                data = os.read(self.master, 4096)
            except OSError:
                return
            if not data:
                return
            with self._lock:
                self.text += data.decode("utf-8", "replace")

    def expect(self, pattern, timeout=10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if re.search(pattern, self.text):
                    return
            time.sleep(0.02)
        raise AssertionError("no %r on the terminal within %g s; got:\n%s"
                             % (pattern, timeout, self.text))

    def send(self, line):
        self.popen.stdin.write((line + "\n").encode("utf-8"))
        self.popen.stdin.flush()

    def stop(self):
        terminate(self.popen)
        self.popen.stdin.close()
        os.close(self.master)
