"""``-v`` shows normal operation as normal: expected traffic (a punch
probe's late answer, a Goodbye copy after the chat ended, the second copy
of an Unregister) is logged as what it is, and a real authentication
failure is still worded as one."""

import re
import signal

from peerpunch import crypto
from peerpunch import identity as ID
from peerpunch import protocol as P
from peerpunch import session as S
from peerpunch.effects import Log
from peerpunch.link import PING, PONG
from peerpunch.registry import Registry
from peerpunch.secure import DATA

from .cookies import join
from .procs import CONNECTED, peer
from .simnet import SimNet

RELAY = ("203.0.113.1", 8080)
ALICE = ("198.51.100.10", 40000)
BOB = ("198.51.100.20", 41000)
BACKEND = crypto.get_backend("auto")

# Words that say something went wrong. Matched as whole words, so counters
# such as "internal_errors=0" in the relay's closing line do not count.
FAULT = re.compile(r"\b(dropped|did not authenticate|before register|errors?|fail(s|ed|ure)?|"
                   r"malformed|unexpected|refused|warning|traceback|exception|lost|not sent)\b",
                   re.IGNORECASE)


def logs(effects):
    return [e.text for e in effects if isinstance(e, Log)]


def test_fault_words_are_meaningful():
    assert FAULT.search("dropped a datagram from 127.0.0.1:5 that did not authenticate")
    assert FAULT.search("dropped unregistered datagram from 1.2.3.4:5: Unregister before Register")
    assert not FAULT.search("relay stopped: internal_errors=0, send_errors=0, relayed_dropped=0")
    assert not FAULT.search("ignored a late punch probe's answer from 127.0.0.1:5")


def test_registry_second_unregister_copy_is_logged_as_a_repeat():
    reg = Registry(verbose=True)
    token = join(reg, "alice", ALICE)
    first = logs(reg.datagram_received(P.encode(P.Unregister(token=token)), ALICE, 1.0))
    second = logs(reg.datagram_received(P.encode(P.Unregister(token=token)), ALICE, 1.0))
    assert "'alice' left" in first
    assert second[-1] == "repeated Unregister from 198.51.100.10:40000 (already gone)"
    assert not any(FAULT.search(line) for line in first + second)
    assert reg.stats["unregister_repeated"] == 1 and reg.stats["unregistered"] == 0


def test_registry_other_requests_before_register_are_still_dropped():
    reg = Registry(verbose=True)
    lines = logs(reg.datagram_received(P.encode(P.Connect("bob")), ALICE, 0.0))
    assert lines[-1].endswith("Connect before Register")


def secure_alice_introduced_to_bob():
    """alice (noise) punching to bob: the path is found by bob's probe, so
    alice is in the handshake, her own probe's Pong still on its way."""
    private = crypto.generate_private_key()
    alice = S.PeerSession("alice", RELAY, target="bob", backend=BACKEND,
                          identity=ID.Identity(private, BACKEND.x25519_public(private)))
    alice.start(0.0)
    alice.datagram_received(P.encode(P.RegisterAck(features=("ext",))), RELAY, 0.1)
    info = P.PeerInfo(peer="%s:%d" % BOB, username="bob", features=("ext", "noise1"),
                      session="ab" * 16)
    alice.datagram_received(P.encode(info), RELAY, 0.2)
    alice.tick(0.2)                                        # her first probes go out
    alice.datagram_received(PING, BOB, 0.25)               # bob's probe: the path
    assert alice.state is S.State.HANDSHAKING
    return alice


def test_session_late_pong_during_the_handshake_is_a_late_probe_not_a_forgery():
    alice = secure_alice_introduced_to_bob()
    lines = logs(alice.datagram_received(PONG, BOB, 0.26))
    assert lines == ["ignored a late punch probe's answer from 198.51.100.20:41000"]
    assert alice.stats["dropped"] == 0 and alice.stats["late_probes"] == 1


def test_session_frame_that_does_not_authenticate_is_still_called_so():
    alice = secure_alice_introduced_to_bob()
    forged = bytes([DATA]) + bytes(8) + b"x" * 40
    lines = logs(alice.datagram_received(forged, BOB, 0.26))
    assert lines == ["dropped a datagram from 198.51.100.20:41000 that did not authenticate"]


def test_session_datagram_from_the_peer_just_left_is_not_a_strangers():
    net = SimNet()
    bob = net.add_peer("bob", BOB)
    net.run(1)
    net.add_peer("alice", ALICE, target="bob")
    net.run(3)
    net.line(ALICE, "/leave")
    net.run(0.1)
    assert bob.state is S.State.IDLE
    late = logs(bob.datagram_received(P.encode(P.Goodbye()), ALICE, net.now))
    assert late == ["ignored 9 bytes from 198.51.100.10:40000, alice's address: that chat has ended"]
    much_later = logs(bob.datagram_received(P.encode(P.Goodbye()), ALICE, net.now + 60))
    assert much_later[0].endswith("not the relay or our peer")


def test_verbose_clean_connect_chat_and_quit_log_no_fault(procs, relay):
    """relay -v and two peers -v: connect, chat both ways, quit. Every
    line any of them writes must read as normal operation."""
    bob = peer(procs, relay, "--name", "bob", "--wait", "-v")
    bob.expect("^registered as bob")
    alice = peer(procs, relay, "--name", "alice", "--connect", "bob", "-v")
    alice.expect(CONNECTED % "bob")
    bob.expect(CONNECTED % "alice")
    alice.send("hello bob")
    bob.expect(r"^\[alice\]> hello bob$")
    bob.send("hi alice")
    alice.expect(r"^\[bob\]> hi alice$")
    alice.send("/quit")
    assert alice.wait() == 0
    bob.expect(r"^\[alice\] has left the chat\.$")
    relay.expect(r"'alice' left", stream="stderr")
    bob.send("/quit")
    assert bob.wait() == 0
    relay.expect(r"'bob' left", stream="stderr")
    relay.signal(signal.SIGTERM)                   # and its closing counters
    assert relay.wait() == 0
    relay.expect(r"relay stopped: ", stream="stderr")
    faults = ["%s: %s" % (name, line) for name, proc in (("relay", relay), ("alice", alice),
                                                          ("bob", bob))
              for stream in ("stdout", "stderr") for line in proc.lines[stream]
              if FAULT.search(line)]
    assert faults == []
