"""Waiting for someone who is not online yet, and a relay that stops
answering or restarts: the real relay and peers (and the seed's relay
stand-in), started by their real command lines on 127.0.0.1."""

import signal
import sys
import time

import pytest

from peerpunch import events as E

from .procs import CONNECTED, ROOT, Proc, peer, start_peer, start_relay

pytestmark = pytest.mark.timeout(60)

WAITING = r"^waiting for bob to come online \(/leave or Ctrl\+C to stop\)$"


def test_integration_waiting_connect_gets_connected_when_the_target_registers(procs, relay):
    alice = peer(procs, relay, "--name", "alice", "--connect", "bob")
    alice.expect(r"^Target user not found\.$")
    alice.expect(WAITING)
    alice.send("/status")
    alice.expect(r"^you are alice at relay \S+ \(waiting\); waiting for bob to come online$")
    bob = peer(procs, relay, "--name", "bob", "--wait")
    bob.expect("^registered as bob")
    alice.expect(CONNECTED % "bob", timeout=3)            # by itself, within 3 s
    bob.expect(CONNECTED % "alice")
    alice.send("hello at last")
    bob.expect(r"^\[alice\]> hello at last$")
    assert sum(l == "Target user not found." for l in alice.lines["stdout"]) == 1, alice.transcript()
    registered = relay.expect(r"^(\S+ \S+) registered 'bob' at ", stream="stderr").group(1)
    introduced = relay.expect(r"^(\S+ \S+) introduced 'alice' .* to 'bob'", stream="stderr").group(1)
    took = _log_time(introduced) - _log_time(registered)
    assert took < 1.0
    print("waiting connect: the relay introduced alice to bob %.3f s after bob registered" % took)


def _log_time(text):
    """Seconds in a relay log line's time stamp ("2026-11-29 12:00:00,123")."""
    clock, millis = text.split(" ")[1].split(",")
    hours, minutes, seconds = (int(x) for x in clock.split(":"))
    return hours * 3600 + minutes * 60 + seconds + int(millis) / 1000


def test_integration_leave_stops_waiting(procs, relay):
    alice = peer(procs, relay, "--name", "alice", "--connect", "bob")
    alice.expect(WAITING)
    alice.send("/leave")
    alice.expect(r"^stopped waiting for bob$")
    alice.send("/status")
    alice.expect(r"^you are alice at relay \S+ \(idle\)$")


def test_integration_relay_not_answering_is_said_and_back_when_it_returns(procs):
    old, port = start_relay()
    procs.append(old)
    relay = "127.0.0.1:%d" % port
    alice = start_peer(relay, "--name", "alice", "--wait", "--keepalive", "1")
    procs.append(alice)
    alice.expect("^registered as alice")
    old.signal(signal.SIGTERM)
    assert old.wait() == 0
    alice.expect(r"^relay 127\.0\.0\.1:%d is not answering " % port, timeout=3 + 1.5)   # 3 keep-alives
    alice.send("/status")
    alice.expect(r"\(idle\); the relay is not answering$")
    new, _ = start_relay(port=port)
    procs.append(new)
    started = time.monotonic()
    alice.expect(r"^relay 127\.0\.0\.1:%d is back$" % port, timeout=E.RELAY_RETRY_MAX + 2)
    print("relay back: said %.2f s after the new relay listened" % (time.monotonic() - started))
    new.expect(r"registered 'alice' at ", stream="stderr")


def test_integration_relay_restart_a_waiting_connect_gets_connected(procs):
    """The relay restarts and knows nobody; alice's --connect bob is not
    found until bob re-registers (every keep-alive interval: 2 s here), and
    then she is connected by herself."""
    old, port = start_relay()
    procs.append(old)
    relay = "127.0.0.1:%d" % port
    bob = start_peer(relay, "--name", "bob", "--wait", "--keepalive", "2")
    procs.append(bob)
    bob.expect("^registered as bob")
    old.signal(signal.SIGTERM)
    assert old.wait() == 0
    new, _ = start_relay(port=port)
    procs.append(new)
    restarted = time.monotonic()
    alice = start_peer(relay, "--name", "alice", "--connect", "bob")
    procs.append(alice)
    alice.expect(CONNECTED % "bob", timeout=2 + 4)
    print("relay restart: a new --connect connected %.2f s after the relay listened"
          % (time.monotonic() - restarted))
    bob.expect(CONNECTED % "alice")


def test_integration_waiting_through_a_seed_relay(procs):
    """A relay that keeps no watches (the seed's): the waiting peer asks it
    again every few seconds, and nothing it sends makes the seed panic."""
    seed_relay = Proc([sys.executable, ROOT + "/tests/seed.py", "relay"], stdin=False)
    procs.append(seed_relay)
    relay = "127.0.0.1:" + seed_relay.expect(r"listening on 127\.0\.0\.1:(\d+)").group(1)
    alice = start_peer(relay, "--name", "alice", "--connect", "bob")
    procs.append(alice)
    alice.expect(r"^Target user not found\.$")
    alice.expect(WAITING)
    bob = start_peer(relay, "--name", "bob", "--wait")
    procs.append(bob)
    bob.expect("^registered as bob")
    alice.expect(r"^connected to bob ", timeout=E.WAIT_RETRY + 3)
    alice.send("through the old relay, at last")
    bob.expect(r"^\[alice\]> through the old relay, at last$")
    assert seed_relay.popen.poll() is None and not seed_relay.has("panicked")
    assert sum(l == "Target user not found." for l in alice.lines["stdout"]) == 1
