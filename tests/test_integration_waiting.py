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
    alice.expect(r"^you are alice at relay \S+ \(waiting\); waiting for bob to come online(;|$)")
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
    alice.expect(r"^you are alice at relay \S+ \(idle\)(; your NAT: [^;]*)?$")


def test_integration_relay_not_answering_is_said_and_back_when_it_answers(procs, relay):
    """The relay freezes (SIGSTOP: as good as a network outage) and thaws."""
    alice = peer(procs, relay, "--name", "alice", "--wait", "--keepalive", "1")
    alice.expect("^registered as alice")
    relay.signal(signal.SIGSTOP)
    try:
        alice.expect(r"^relay %s is not answering " % relay.addr.replace(".", r"\."),
                     timeout=3 + 1.5)                      # 3 keep-alive intervals, and slack
        alice.send("/status")
        alice.expect(r"\(idle\)(; your NAT: [^;]*)?; the relay is not answering$")
    finally:
        relay.signal(signal.SIGCONT)
    alice.expect(r"^relay %s is back$" % relay.addr.replace(".", r"\."), timeout=E.RELAY_RETRY_MAX + 2)
    alice.send("/status")
    alice.expect(r"^you are alice at relay \S+ \(idle\)(; your NAT: [^;]*)?$")


@pytest.mark.parametrize("stop", ["SIGTERM", "SIGKILL"])
def test_integration_relay_restart_a_waiting_connect_gets_connected(procs, stop):
    """The relay restarts and knows nobody; alice's --connect bob is not
    found until bob registers again, and then she is connected by herself.
    A relay stopped cleanly tells bob (he is back within a second or two);
    one that was killed is noticed at bob's next re-registration (every
    keep-alive interval: 2 s here)."""
    old, port = start_relay()
    procs.append(old)
    relay = "127.0.0.1:%d" % port
    keepalive = ("--keepalive", "2") if stop == "SIGKILL" else ()
    bob = start_peer(relay, "--name", "bob", "--wait", *keepalive)
    procs.append(bob)
    bob.expect("^registered as bob")
    old.signal(getattr(signal, stop))
    old.wait()
    new, _ = start_relay(port=port)
    procs.append(new)
    restarted = time.monotonic()
    alice = start_peer(relay, "--name", "alice", "--connect", "bob")
    procs.append(alice)
    alice.expect(CONNECTED % "bob", timeout=2 + 4 if keepalive else 4)
    print("relay restart (%s): a new --connect connected %.2f s after the relay listened"
          % (stop, time.monotonic() - restarted))
    bob.expect(CONNECTED % "alice")
    if stop == "SIGTERM":
        assert bob.has(r"^relay 127\.0\.0\.1:%d says it is stopping; " % port)
        bob.expect(r"^relay 127\.0\.0\.1:%d is back$" % port)


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
