"""Holes an audit found in issue 10's hardening, forged against the real
relay (and peer) processes on loopback (raw sockets, root only; the tests
skip elsewhere and fail in CI, like tests/test_attacks_forged.py, whose
tools they use). The relay's core is attacked the same ways in
tests/test_registry_audit.py and tests/test_stun.py.

``PEERPUNCH_ATTACKED_CHECKOUT=/path/to/an/older/checkout`` runs the relay
and the peers from there instead.
"""

import re
import signal
import socket
import time

import pytest

from peerpunch import stun, stunserver

from .procs import CONNECTED, bound_port
from .test_attacks_forged import (BATCH, Catcher, Forger, Refresher, Sync, block, closing,  # noqa: F401
                                  cycled_sources, drain, figure, start_peer, start_relay, udp)

pytestmark = pytest.mark.timeout(90)


class StunSync:
    """A real client's padded Binding request to one of the relay's STUN
    ports: once it is answered, the relay has read everything sent there
    before (one socket, read in order)."""

    def __init__(self, port):
        self.port, self.sock = port, udp()

    def __call__(self):
        self.sock.sendto(bytes(stun.binding_request()), ("127.0.0.1", self.port))
        self.sock.recv(2048)

    def close(self):
        self.sock.close()


def bare_requests(rounds, sources):
    """20-byte Binding requests, RFC 8489 and RFC 3489 forms in turn, from
    every source, *rounds* times."""
    for r in range(rounds):
        for i, src in enumerate(sources):
            cookie = stun.COOKIE if (r + i) % 2 else 0x5A5A0000 + i
            message = stun.Message(stun.Method.BINDING, stun.Class.REQUEST, b"%012d" % i, cookie=cookie)
            yield bytes(message), src


def test_attack_stun_reflection_is_budgeted_per_block(procs, raw, closing):
    """4,400 forged sources (250 to a /24, all on the catcher's port) send
    20-byte Binding requests to the relay's main and alternate ports, twice
    each: an answer longer than its request (44 bytes) goes to each /24 at
    most within its budget (STUN_BURST, then STUN_RATE a second), and none
    is longer than the request plus the mapped addresses. On the relay of
    the audit every request got 44 bytes (2.2x)."""
    relay = start_relay(procs, "--alt-port", "0")
    alt = int(relay.expect(r"STUN alternate port \S+:(\d+)$", stream="stderr").group(1))
    catcher = closing(Catcher())
    sources = cycled_sources(4400, catcher.port)
    start = time.monotonic()
    forgers = [closing(Forger(port, closing(StunSync(port)))) for port in (relay.port, alt)]
    for forger in forgers:
        forger.send(bare_requests(2, sources))
    answers = catcher.drain()           # every answer was sent before the last sync's
    elapsed = time.monotonic() - start
    sent = sum(f.bytes for f in forgers)
    count = sum(f.sent for f in forgers)
    got = sum(len(a[0]) for a in answers)
    figure("STUN reflection: %d requests (%d B) from 4,400 forged sources to both ports in %.1f s -> "
           "%d answers, %d B (amplification %.3f)" % (count, sent, elapsed, len(answers), got, got / sent))
    assert count == 4 * 4400
    per_block = dict.fromkeys((block(s) for s in sources), 0)
    for data, dst in answers:
        assert len(data) <= 20 + stunserver.mapped_allowance((dst, 0))
        per_block[block((dst, 0))] += 1
    assert max(per_block.values()) <= stunserver.STUN_BURST + stunserver.STUN_RATE * elapsed + 1, per_block
    assert got <= sent
    relay.signal(signal.SIGTERM)
    stopped = relay.lines_when_done("stderr")[-1]
    assert int(re.search(r"\bstun_unanswered=(\d+)", stopped).group(1)) >= count - len(answers) - 10


def test_attack_a_forged_seed_form_name_cannot_keep_a_name_from_its_owner(procs, raw, closing):
    """alice waits for bob; a forger registers seed-form "bob" (from an
    address where it listens) and refreshes it every 0.3 s. alice is not
    told bob is online and sends the forger nothing; the real bob then
    registers and takes his name, and they chat encrypted. On the relay of
    the audit alice was told Online and paired with the forger, and bob got
    name-taken for as long as the forger kept refreshing."""
    relay = start_relay(procs, "-v")
    squatter = closing(udp("127.81.0.1"))
    alice = start_peer(procs, relay, "--name", "alice", "--connect", "bob", "--keepalive", "1")
    alice.expect(r"^Target user not found\.$")
    a_port = bound_port(alice)
    refresher = Refresher(relay.port, [(b'{"Register":{"username":"bob"}}', squatter.getsockname())])
    refresher.start()
    try:
        relay.expect(r"registered 'bob' at 127\.81\.0\.1:\d+ \(seed form\)", stream="stderr")
        mark = len(relay.lines["stderr"])
        for _ in range(3):       # alice's re-registrations (watching bob) after the squat
            relay.expect(r"\d+ bytes from 127\.0\.0\.1:%d$" % a_port, stream="stderr", start=mark)
            mark = len(relay.lines["stderr"])
        probes = [d for d in drain(squatter) if d != b'"RegisterAck"']
        assert probes == [] and not alice.has(r"^connected to bob"), probes
        bob = start_peer(procs, relay, "--name", "bob", "--wait")
        bob.expect("^registered as bob")
        alice.expect(CONNECTED % "bob")
        bob.expect(CONNECTED % "alice")
        bob.send("it is really me")
        alice.expect(r"^\[bob\]> it is really me$")
    finally:
        refresher.stop()
    relay.expect(r"'bob' at 127\.81\.0\.1:\d+ \(seed form\) gave its name up", stream="stderr")
    probes = [d for d in drain(squatter) if d != b'"RegisterAck"']
    figure("seed-form squat: %d forged refreshes; alice sent the squatter %d datagrams; the real bob "
           "registered and chatted" % (refresher.rounds, len(probes)))
    assert probes == []
