"""The real relay and real peers, started by their real command lines on
127.0.0.1 with ephemeral ports, driven through stdin and stdout."""

import signal
import socket
import sys

import pytest

from .procs import ROOT, Proc, bound_port, chatting, peer, start_peer, start_relay

pytestmark = pytest.mark.timeout(60)


def test_integration_chat_both_ways_and_goodbye(procs, relay):
    alice, bob = chatting(procs, relay)
    alice.send("hello bob")
    bob.expect(r"^\[alice\]> hello bob$")
    bob.send("hi alice, ünïcödé ✓")
    alice.expect(r"^\[bob\]> hi alice, ünïcödé ✓$")
    alice.send("/quit")
    bob.expect(r"^\[alice\] has left the chat\.$")
    assert alice.wait() == 0
    relay.expect(r"registered 'alice' at 127\.0\.0\.1:\d+", stream="stderr")
    relay.expect(r"introduced 'alice' .* to 'bob'", stream="stderr")
    relay.expect(r"session of .* ended", stream="stderr")


def test_integration_waiting_side_is_available_again(procs, relay):
    alice, bob = chatting(procs, relay)
    alice.close_stdin()                                     # EOF leaves gracefully
    bob.expect(r"^\[alice\] has left the chat\.$")
    assert alice.wait() == 0
    carol = peer(procs, relay, "--name", "carol", "--connect", "bob")
    carol.expect(r"^connected to bob ")
    carol.send("second chat")
    bob.expect(r"^\[carol\]> second chat$")


def test_integration_long_line_arrives_whole_as_one_line(procs, relay):
    alice, bob = chatting(procs, relay)
    text = "word " * 600                 # 3,000 bytes: three datagrams, one line (stream1)
    alice.send(text)
    bob.expect(r"^\[alice\]> word")
    alice.send("end-marker")
    bob.expect(r"^\[alice\]> end-marker$")
    pieces = [l[len("[alice]> "):] for l in bob.lines["stdout"] if l.startswith("[alice]> word")]
    assert pieces == [text]


def test_integration_target_not_found(procs, relay):
    alice = peer(procs, relay, "--name", "alice", "--connect", "nobody")
    alice.expect(r"^Target user not found\.$")


def test_integration_target_busy(procs, relay):
    chatting(procs, relay, b_args=("--max-chats", "1"))          # bob holds one chat
    carol = peer(procs, relay, "--name", "carol", "--connect", "bob")
    carol.expect(r"^Target user is busy\.$")


def test_integration_name_taken_is_refused(procs, relay):
    first = peer(procs, relay, "--name", "alice", "--wait")
    first.expect("^registered as alice")
    second = peer(procs, relay, "--name", "alice", "--wait")
    assert second.wait() == 1
    second.expect(r"the name alice is in use", stream="stderr")
    relay.expect(r"refused 'alice' from 127\.0\.0\.1:\d+: name held by", stream="stderr")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_integration_signal_says_goodbye(procs, relay, sig):
    alice, bob = chatting(procs, relay)
    alice.signal(sig)
    bob.expect(r"^\[alice\] has left the chat\.$")
    assert alice.wait() == 0


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_integration_relay_stops_cleanly_on_signal(procs, sig):
    proc, _ = start_relay()
    procs.append(proc)
    proc.signal(sig)
    assert proc.wait() == 0
    proc.expect("relay stopped", stream="stderr")


def test_integration_prompts_for_name_and_target(procs, relay):
    bob = peer(procs, relay)
    bob.send("bob")
    bob.send("")                                              # empty: wait
    bob.expect("^registered as bob")
    assert bob.has(r"Please enter your username:")
    assert bob.has(r"Enter the username of the peer you want to connect to \(empty to wait\):")
    alice = peer(procs, relay)
    alice.send("alice")
    alice.send("bob")
    alice.expect(r"^connected to bob ")


def test_integration_relay_survives_malformed_burst(procs, relay):
    bad = [b"", b"\x00" * 65000, b"\xff\xfe", b"[]", b'{"Nope":{}}', b'"PeerInfo"',
           b'{"Register":{"username":"' + b"x" * 60000 + b'"}}',
           b'{"Register":{"username":"a\\u001b[2Jb"}}', b'{"Connect":{"target_username":"bob"}}',
           b'{"PeerInfo":{"peer":"127.0.0.1:1","username":"x"}}', b"[" * 1000]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for _ in range(50):
            for data in bad:
                s.sendto(data, ("127.0.0.1", relay.port))
        # a registered sender gets the same treatment
        s.sendto(b'{"Register":{"username":"prober"}}', ("127.0.0.1", relay.port))
        s.settimeout(5)
        assert s.recvfrom(2048)[0] == b'"RegisterAck"'
        s.sendto(b'{"Connect":{"target_username":"prober"}}', ("127.0.0.1", relay.port))
        assert s.recvfrom(2048)[0] == b'"TargetNotFound"'
    relay.expect(r"dropped malformed datagram from 127\.0\.0\.1:\d+", stream="stderr")
    alice, bob = chatting(procs, relay)
    alice.send("still serving")
    bob.expect(r"^\[alice\]> still serving$")
    assert relay.popen.poll() is None


def test_integration_strangers_are_ignored(procs, relay):
    alice, bob = chatting(procs, relay, a_args=("-v",))
    port = bound_port(alice)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(b'{"DirectMessage":{"content":"forged"}}', ("127.0.0.1", port))
        s.sendto(b'"Goodbye"', ("127.0.0.1", port))
        alice.expect(r"ignored \d+ bytes from 127\.0\.0\.1:\d+ \(2 so far\)", stream="stderr")
        bob.send("real")                   # handled after both: an answer to them is here by now
        alice.expect(r"^\[bob\]> real$")
        s.setblocking(False)
        with pytest.raises(BlockingIOError):
            s.recvfrom(2048)
    assert not alice.has("forged") and not alice.has("has left")


def test_integration_control_characters_are_shown_harmlessly(procs, relay):
    alice, bob = chatting(procs, relay)
    alice.send("red \x1b[31m alert\x07")
    m = bob.expect(r"^\[alice\]> red ")
    assert "\x1b" not in m.string and "\\x1b[31m alert\\x07" in m.string


def test_integration_no_relay_gives_up_with_reason(procs):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))                              # a port nobody answers on
        port = s.getsockname()[1]
        alice = start_peer("127.0.0.1:%d" % port, "--name", "alice", "--wait")
        procs.append(alice)
        assert alice.wait(20) == 1
    alice.expect(r"^registering as alice with relay 127\.0\.0\.1:%d \.\.\.$" % port)
    alice.expect(r"^still registering with relay 127\.0\.0\.1:%d \(2 s\) \.\.\.$" % port)
    alice.expect(r"no answer from the relay at 127\.0\.0\.1:%d after 10 s" % port, stream="stderr")


def test_integration_plain_seed_peer_chats_with_ours(procs, relay):
    """A peer that knows only the seed's messages: plain chat, no panic."""
    seed = Proc([sys.executable, ROOT + "/tests/seed.py", "peer", "--relay", relay.addr,
                 "--name", "oldtimer"])
    procs.append(seed)
    seed.expect("^registered$")
    bob = peer(procs, relay, "--name", "bob", "--connect", "oldtimer")
    bob.expect(r"^connected to oldtimer at 127\.0\.0\.1:\d+ \(direct\)")
    bob.send("hello old friend " + "ø" * 1500)                 # must arrive in seed-sized pieces
    seed.expect(r"^\[bob\]> hello old friend")
    seed.send("hi from the seed")
    bob.expect(r"^\[oldtimer\]> hi from the seed$")
    bob.send("/quit")
    seed.expect(r"^\[bob\] has left the chat\.$")
    assert not seed.has("panicked")


def test_integration_our_peers_work_through_a_seed_relay(procs):
    seed_relay = Proc([sys.executable, ROOT + "/tests/seed.py", "relay"], stdin=False)
    procs.append(seed_relay)
    port = seed_relay.expect(r"listening on 127\.0\.0\.1:(\d+)").group(1)
    relay_addr = "127.0.0.1:" + port
    bob = start_peer(relay_addr, "--name", "bob", "--wait")
    procs.append(bob)
    bob.expect("^registered as bob")
    alice = start_peer(relay_addr, "--name", "alice", "--connect", "bob")
    procs.append(alice)
    alice.expect(r"^connected to bob ")
    alice.send("through the old relay")
    bob.expect(r"^\[alice\]> through the old relay$")
    alice.send("/quit")
    bob.expect(r"^\[alice\] has left the chat\.$")
    assert seed_relay.popen.poll() is None and not seed_relay.has("panicked")
