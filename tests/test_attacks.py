"""Attacks on real relay and peer processes, on loopback.

Each test prints its figure (run pytest with -s to see them); the README
quotes them. Forging source addresses and capturing traffic need root (raw
sockets); those tests skip elsewhere, and fail in CI, which runs as root.
"""

import dataclasses
import os
import itertools
import random
import re
import socket
import tempfile
import time

import pytest

from peerpunch import protocol as P
from peerpunch import registry as RG
from peerpunch.identity import encode_key

from . import rawudp
from .procs import bound_port, chatting, peer

pytestmark = pytest.mark.timeout(90)



def cpu_seconds(pid):
    """User + system CPU time of a process so far."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def figure(text):
    print("\nFIGURE " + text)


def shown_after_a_flood(src, dst, name, text, wait=30.0):
    """Type *text* (numbered) on *src* until *dst* shows a copy. A copy
    typed into a flood can be lost while the flood fills *dst*'s socket
    buffer; the one that is shown was handled after every datagram of the
    flood, which was sent before it."""
    deadline = time.monotonic() + wait
    for i in itertools.count():
        src.send("%s %d" % (text, i))
        try:
            return dst.expect(r"^\[%s\]> %s \d+$" % (name, re.escape(text)), timeout=1.0)
        except AssertionError:
            if time.monotonic() > deadline:
                raise


def forged_frames(rng, count):
    """Well-formed plain messages and frames that look like our encrypted ones."""
    plain = [b'{"DirectMessage":{"content":"forged"}}', b'"Goodbye"', b'"Ping"', b'"Pong"']
    out = []
    for i in range(count):
        if i % 2:
            out.append(plain[i % len(plain)])
        else:
            kind = rng.choice([0xE1, 0xE2, 0xE3, 0xE4])
            out.append(bytes([kind]) + bytes(rng.getrandbits(8) for _ in range(rng.randrange(8, 200))))
    return out


def test_attack_injection_spoofing_the_peer_is_ignored(procs, relay, raw):
    """A third process that knows both endpoints forges datagrams from bob's
    endpoint to alice: plain messages and fake encrypted frames."""
    # keep-alives far apart, so that nothing alice's timers send falls into
    # the flood (and the handshake's tail is over before it starts)
    alice, bob = chatting(procs, relay, a_args=("-v", "--keepalive", "60"),
                          b_args=("--keepalive", "60"))
    a_port, b_port = bound_port(alice), bound_port(bob)
    capture = rawudp.Capture({a_port, b_port})
    spoofer = rawudp.Spoofer()
    rng = random.Random(1)
    frames = forged_frames(rng, 1000)
    try:
        capture.quiet(a_port, b_port)
        for data in frames:
            spoofer.send(data, ("127.0.0.1", b_port), ("127.0.0.1", a_port))
        # queued behind the forgeries on alice's socket: once she shows it,
        # she has handled (and answered, if she would) every one of them
        shown_after_a_flood(bob, alice, "bob", "the real bob")
    finally:
        spoofer.close()
        packets = capture.stop()
    forged = set(frames)
    # the capture saw the whole flood, so "nothing answered" is a finding
    assert capture.dropped == 0
    assert sum(p[0] == b_port and p[2] in forged for p in packets) == len(frames)
    real = [i for i, p in enumerate(packets) if p[0] == b_port and p[2] not in forged]
    answers = [i for i, p in enumerate(packets) if p[0] == a_port]
    answered = [i for i in answers if not real or i < real[0]]
    figure("injection: %d forged datagrams as bob -> %d shown, %d answered"
           % (len(frames), sum("forged" in l for l in alice.lines["stdout"]), len(answered)))
    assert not alice.has("forged") and not alice.has("has left")
    # alice answered none of them: all she sent meanwhile came after bob's
    # real lines, at most one (its stream's acknowledgment) for each
    assert answered == [] and len(answers) <= len(real)
    alice.expect(r"dropped a datagram from 127\.0\.0\.1:%d that did not authenticate" % b_port,
                 stream="stderr")


def test_attack_injection_from_a_stranger_is_ignored(procs, relay):
    alice, bob = chatting(procs, relay)
    port = bound_port(alice)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for data in forged_frames(random.Random(2), 500):
            s.sendto(data, ("127.0.0.1", port))
        # handled after all 500: any answer to them would be waiting here by now
        shown_after_a_flood(bob, alice, "bob", "after the noise")
        s.setblocking(False)
        with pytest.raises(BlockingIOError):
            s.recvfrom(2048)
    assert not alice.has("forged")


def test_attack_replay_of_a_whole_session_is_refused(procs, relay, raw):
    """Capture everything bob sent alice, then replay all of it into a new
    session between the same two: none of it is accepted."""
    alice, bob = chatting(procs, relay, a_args=("-v",))
    a_port, b_port = bound_port(alice), bound_port(bob)
    capture = rawudp.Capture({a_port, b_port})
    for i in range(20):
        bob.send("original %d" % i)
    alice.expect(r"^\[bob\]> original 19$")
    bob.send("/leave")
    alice.expect(r"^\[bob\] has left the chat\.$")
    captured = [p[2] for p in capture.stop() if p[0] == b_port]
    marks = len(alice.lines["stdout"]), len(bob.lines["stdout"])
    alice.send("/connect bob")
    alice.expect(r"^connected to bob .* encrypted", start=marks[0])      # the new session
    bob.expect(r"^connected to alice .* encrypted", start=marks[1])
    spoofer = rawudp.Spoofer()
    try:
        for data in captured:
            spoofer.send(data, ("127.0.0.1", b_port), ("127.0.0.1", a_port))
    finally:
        spoofer.close()
    shown_after_a_flood(bob, alice, "bob", "fresh")    # handled after every replayed one
    lines = alice.lines["stdout"]                  # beyond the first session's own: replays
    accepted = [l for l in lines if re.match(r"^\[bob\]> original", l)][20:] + \
        [l for l in lines if re.match(r"^\[bob\] has left", l)][1:] + \
        [l for l in lines if re.match(r"^connected to bob", l)][2:]
    figure("replay: %d captured datagrams replayed -> %d accepted" % (len(captured), len(accepted)))
    assert len(captured) >= 20 and accepted == []


def test_attack_impostor_with_another_key_gets_a_warning_and_nothing(procs, relay):
    alice_home = tempfile.mkdtemp(prefix="peerpunch-test-alice-")
    alice, bob = chatting(procs, relay, a_config=alice_home)
    alice.expect(r"first chat with bob: key pinned")
    bob.send("/quit")
    alice.expect(r"^\[bob\] has left the chat\.$")
    alice.send("/quit")
    assert alice.wait() == 0 and bob.wait() == 0
    impostor = peer(procs, relay, "--name", "bob", "--wait")
    impostor.expect("^registered as bob")
    alice2 = peer(procs, relay, "--name", "alice", "--connect", "bob", config=alice_home)
    alice2.send("my password is hunter2")
    alice2.expect(r"WARNING: bob's key has CHANGED: pinned [0-9a-f-]+, presented [0-9a-f-]+")
    impostor.expect(r"^connected to alice")
    impostor.send("trust me")
    impostor.send("/leave")                        # its Goodbye follows "trust me"
    alice2.expect(r"^\[bob\] has left the chat\.$")
    alice2.expect(r"^1 line not delivered to bob \(the chat ended\)$")   # hunter2 never left
    assert not impostor.has("hunter2") and not alice2.has("trust me")
    figure("impostor: key change detected, 0 lines delivered either way before /trust")


def test_attack_takeover_of_a_live_name_is_refused(procs, relay):
    """1,000 Registers for a live name from other addresses (which earn
    cookies: the attacker is there), without the owner's token and key:
    none accepted; the owner moving ports: accepted."""
    owner = peer(procs, relay, "--name", "alice", "--wait")
    owner.expect("^registered as alice")
    accepted = refused = 0
    socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(50)]
    try:
        cookies = [cookie(s, P.Register("alice", features=("ext",), token="0" * 32), relay.port)
                   for s in socks]
        for i in range(1000):
            s = socks[i % 50]
            key = encode_key(bytes([i % 256]) * 32) if i % 2 else None   # a guess, or none
            reg = P.Register("alice", features=("ext",), token="%032x" % i, key=key,
                             cookie=cookies[i % 50])
            s.sendto(P.encode(reg), ("127.0.0.1", relay.port))
        # then one Register each that earns a Cookie: once it is back, the
        # relay has answered everything that socket sent before it
        marker = P.Register("nobody-yet", features=("ext",), token="0" * 32)
        for s in socks:
            s.sendto(P.encode(marker), ("127.0.0.1", relay.port))
            s.settimeout(10)
            while True:
                data = s.recv(2048)
                if data.startswith(b'{"Cookie"'):
                    break
                accepted += data.startswith(b'{"RegisterAck"')
                refused += data.startswith(b'{"Error":{"code":"name-taken"')
    finally:
        for s in socks:
            s.close()
    figure("takeover: 1000 attempts -> %d accepted, %d refused (Errors budgeted per /24)"
           % (accepted, refused))
    assert accepted == 0 and 1 <= refused <= RG.ERROR_BURST + 30 * RG.ERROR_RATE
    relay.expect(r"refused 'alice' from 127\.0\.0\.1:\d+: name held by .* \(wrong token or key\)",
                 stream="stderr")
    # the owner is still reachable by name
    bob = peer(procs, relay, "--name", "bob", "--connect", "alice")
    bob.expect(r"^connected to alice ")


def test_attack_owner_moving_to_a_new_port_keeps_its_name(procs, relay):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as first, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as moved:
        key = encode_key(bytes(range(32)))
        first.settimeout(5)
        moved.settimeout(5)
        register = P.Register("carol", features=("ext",), key=key)
        register = dataclasses.replace(register, cookie=cookie(first, register, relay.port))
        first.sendto(P.encode(register), ("127.0.0.1", relay.port))
        ack = P.decode(first.recv(2048))
        register = dataclasses.replace(register, token=ack.token, cookie=None)
        assert cookie(moved, register, relay.port)          # the new address proves itself first
        register = dataclasses.replace(register, cookie=cookie(moved, register, relay.port))
        moved.sendto(P.encode(register), ("127.0.0.1", relay.port))
        assert moved.recv(2048).startswith(b'{"RegisterAck"')
    relay.expect(r"'carol' moved from 127\.0\.0\.1:\d+ to 127\.0\.0\.1:\d+", stream="stderr")


def cookie(sock, register, port):
    """The relay's cookie for *register* from *sock* (one round trip)."""
    sock.settimeout(5)
    sock.sendto(P.encode(register), ("127.0.0.1", port))
    return P.decode(sock.recv(2048)).cookie


def test_attack_handshake_flood_costs_bounded_cpu(procs, relay, raw):
    """Thousands of handshake initiations per second at alice, forged from
    bob's endpoint while they chat: alice spends little CPU (a MAC check each,
    no Diffie-Hellman) and the chat goes on."""
    alice, bob = chatting(procs, relay)
    a_port, b_port = bound_port(alice), bound_port(bob)
    rng = random.Random(3)
    hellos = [bytes([0xE1]) + bytes(rng.getrandbits(8) for _ in range(48)) for _ in range(256)]
    spoofer = rawudp.Spoofer()
    sent, seconds = 0, 3.0
    cpu_before = cpu_seconds(alice.popen.pid)
    start = time.monotonic()
    try:
        while time.monotonic() - start < seconds:
            for data in hellos[:64]:
                spoofer.send(data, ("127.0.0.1", b_port), ("127.0.0.1", a_port))
            sent += 64
            rng.shuffle(hellos)
            time.sleep(0.005)
    finally:
        spoofer.close()
    elapsed = time.monotonic() - start
    cpu = cpu_seconds(alice.popen.pid) - cpu_before
    figure("handshake flood: %d forged HELLOs in %.1f s (%.0f/s) -> alice used %.2f s CPU (%.0f %% of one core)"
           % (sent, elapsed, sent / elapsed, cpu, 100 * cpu / elapsed))
    assert sent / elapsed > 1000
    assert cpu / elapsed < 0.9                     # far from a core busy with Diffie-Hellman
    bob.send("still here")
    alice.expect(r"^\[bob\]> still here$")


def test_attack_flood_from_strangers_does_not_stop_a_connect(procs, relay):
    """A waiting peer flooded with handshake initiations from another address
    still accepts the real peer."""
    bob = peer(procs, relay, "--name", "bob", "--wait")
    bob.expect("^registered as bob")
    port = bound_port(bob)
    rng = random.Random(4)
    hellos = [bytes([0xE1]) + bytes(rng.getrandbits(8) for _ in range(48)) for _ in range(64)]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        alice = peer(procs, relay, "--name", "alice", "--connect", "bob")
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline and not alice.has(r"^connected to bob"):
            for data in hellos:
                s.sendto(data, ("127.0.0.1", port))
            time.sleep(0.002)
    alice.expect(r"^connected to bob .* encrypted")
    bob.expect(r"^connected to alice .* encrypted")


def test_attack_forged_registers_from_a_live_endpoint_change_nothing(procs, relay, raw):
    """Issue 10, findings A and B against the real relay: Registers forged
    from alice's endpoint (another name; alice in seed form) and one for
    "alice" from elsewhere neither take her name nor downgrade her: bob
    still reaches her, encrypted."""
    alice = peer(procs, relay, "--name", "alice", "--wait")
    alice.expect("^registered as alice")
    a_port = bound_port(alice)
    spoofer = rawudp.Spoofer()
    try:
        for data in (b'{"Register":{"username":"someone-else"}}', b'{"Register":{"username":"alice"}}',
                     b'{"Register":{"username":"someone-else","features":["ext"]}}', b""):
            spoofer.send(data, ("127.0.0.1", a_port), ("127.0.0.1", relay.port))
    finally:
        spoofer.close()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as marker:
        s.sendto(b'{"Register":{"username":"alice"}}', ("127.0.0.1", relay.port))
        marker.settimeout(30.0)              # the relay answers in order: once the marker's
        marker.sendto(b'{"Register":{"username":"marker"}}', ("127.0.0.1", relay.port))
        assert marker.recv(2048) == b'"RegisterAck"'   # ack is here, s's answer would be too
        s.setblocking(False)
        with pytest.raises(BlockingIOError):
            s.recv(2048)                         # no RegisterAck: the name is hers
    bob = peer(procs, relay, "--name", "bob", "--connect", "alice")
    bob.expect(r"^connected to alice .* encrypted")
    alice.expect(r"^connected to bob .* encrypted")
    assert not alice.has("someone else registered your name")
