"""Issue 10, findings C-F against the real relay (and peer) processes: every
attack needs only a forged source address (raw sockets on loopback, root
only; the tests skip elsewhere and fail in CI, like tests/test_attacks.py).
Findings A and B are in tests/test_attacks.py, G in tests/test_relay_logs.py.

Victims and the forger's sources live on other 127.x addresses (other /24s
than the relay's 127.0.0.1): a real socket bound at a victim's address sees
every byte the relay sends it. After the forgeries, a real client's request
and its answer show that the relay has read everything sent before it (one
thread, one socket, in order), so nothing is read after a fixed sleep.

``PEERPUNCH_ATTACKED_CHECKOUT=/path/to/an/older/checkout`` runs the relay
and the peers from there instead (to see these tests fail against the relay
the issue was reported on).
"""

import dataclasses
import os
import re
import select
import signal
import socket
import sys
import threading
import time

import pytest

from peerpunch import protocol as P
from peerpunch import registry as RG
from peerpunch.registration import padded     # as our peer pads a Register

from . import rawudp
from .procs import CONNECTED, ROOT, Proc, bound_port

pytestmark = pytest.mark.timeout(60)

CHECKOUT = os.environ.get("PEERPUNCH_ATTACKED_CHECKOUT", ROOT)
BATCH = 200                    # forged datagrams sent before waiting for the relay to read them
NONCE = "ab" * 16
BIG = 1 << 23                  # receive buffers: nothing the relay sends may be lost to a full one
SO_RCVBUFFORCE = 33            # Linux; not in every Python's socket module


@pytest.fixture
def closing():
    """``closing(thing)`` returns *thing* and closes it after the test
    (last opened, first closed), whatever happened."""
    opened = []

    def keep(thing):
        opened.append(thing)
        return thing
    yield keep
    for thing in reversed(opened):
        thing.close()


def figure(text):
    print("\nFIGURE " + text)


def start_relay(procs, *flags):
    """The relay of CHECKOUT on 127.0.0.1 and an ephemeral port; its port."""
    argv = [sys.executable, "-m", "peerpunch.relay", "--host", "127.0.0.1", "--port", "0"]
    proc = Proc(argv + list(flags), stdin=False, cwd=CHECKOUT, pythonpath=CHECKOUT)
    procs.append(proc)
    proc.port = int(proc.expect(r"relay listening on \S+:(\d+)$", stream="stderr").group(1))
    proc.addr = "127.0.0.1:%d" % proc.port
    return proc


def start_peer(procs, relay, *args):
    proc = Proc([sys.executable, os.path.join(CHECKOUT, "bin", "peer.py"), "--relay", relay.addr]
                + list(args), cwd=CHECKOUT, pythonpath=CHECKOUT)
    procs.append(proc)
    return proc


def udp(host="127.0.0.1"):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, BIG)
    sock.bind((host, 0))
    sock.settimeout(5)
    return sock


def drain(sock):
    """Every datagram waiting on *sock* now."""
    sock.setblocking(False)
    got = []
    try:
        while True:
            got.append(sock.recv(65535))
    except BlockingIOError:
        pass
    sock.settimeout(5)
    return got


def join(sock, port, name):
    """Register *name* from *sock* as our peer does (through the Cookie, if
    the relay sends one); return the token."""
    register = P.Register(name, features=("ext", "relay1"), nonce=NONCE)
    sock.sendto(padded(P.encode(register)), ("127.0.0.1", port))
    reply = P.decode(sock.recv(2048))
    if isinstance(reply, P.Cookie):
        register = dataclasses.replace(register, cookie=reply.cookie)
        sock.sendto(padded(P.encode(register)), ("127.0.0.1", port))
        reply = P.decode(sock.recv(2048))
    assert isinstance(reply, P.RegisterAck) and reply.token, reply
    return reply.token


class Sync:
    """A real client whose request the relay answers: once the answer is
    back, the relay has read every datagram sent to it before."""

    def __init__(self, port):
        self.port, self.sock = port, udp()
        join(self.sock, port, "sync-marker")      # registered, where a relay stores it without a cookie

    def __call__(self):
        drain(self.sock)
        self.sock.sendto(padded(P.encode(P.Register("sync-marker", features=("ext",), nonce=NONCE))),
                         ("127.0.0.1", self.port))
        self.sock.recv(2048)

    def close(self):
        self.sock.close()


class Forger:
    """Sends datagrams from forged sources to the relay, BATCH at a time,
    each batch read by the relay before the next; counts what it sent."""

    def __init__(self, relay_port, sync):
        self.relay = ("127.0.0.1", relay_port)
        self.sync = sync
        self.spoofer = rawudp.Spoofer()
        self.sent = self.bytes = 0

    def send(self, items):
        """*items*: (data, source) pairs."""
        for data, src in items:
            self.spoofer.send(data, src, self.relay)
            self.sent += 1
            self.bytes += len(data)
            if self.sent % BATCH == 0:
                self.sync()
        self.sync()

    def close(self):
        self.spoofer.close()


def largest_register(name):
    """An ext Register as large as the relay lets a client make it: 16
    features of 32 characters, 4 IPv6 LAN candidates."""
    features = ("ext",) + tuple("f%02d" % i + "x" * 29 for i in range(15))
    local = tuple("[fd12:3456:789a:bcde:f012:3456:789a:bc%02d]:65535" % i for i in range(4))
    return P.encode(P.Register(name, features=features, local=local, nonce=NONCE))


# -- C: Connect reflection


def test_attack_finding_c_forged_registers_and_connects_reflect_nothing(procs, raw, closing):
    """Forged largest ext Registers for victims V, W1 and W2, then 1,000
    forged Connects from V alternating between W1 and W2: the relay sends
    the three victims no more bytes than the forger sent, and no PeerInfo
    (on the relay of the issue: two PeerInfos of ~850 bytes per Connect)."""
    relay = start_relay(procs, "-v")
    victims = {name: closing(udp(host)) for name, host in
               (("v", "127.40.0.1"), ("w1", "127.41.0.1"), ("w2", "127.42.0.1"))}
    forger = closing(Forger(relay.port, closing(Sync(relay.port))))
    forger.send((largest_register(name), s.getsockname()) for name, s in victims.items())
    v = victims["v"].getsockname()
    forger.send((P.encode(P.Connect("w%d" % (1 + i % 2))), v) for i in range(1000))
    received = {name: drain(s) for name, s in victims.items()}
    total = sum(len(d) for got in received.values() for d in got)
    figure("Connect reflection: forger sent %d datagrams, %d bytes -> victims got %d datagrams, "
           "%d bytes (amplification %.3f)" % (forger.sent, forger.bytes,
                                             sum(map(len, received.values())), total, total / forger.bytes))
    assert total <= forger.bytes
    infos = [d for got in received.values() for d in got if d.startswith(b'{"PeerInfo"')]
    assert infos == []
    assert not relay.has(r"introduced ", stream="stderr")
    # what the victims got: at most one answer per forged Register (a Cookie
    # to the address it claims, never larger than the Register)
    for name, got in received.items():
        assert len(got) <= 1 and all(len(d) <= len(largest_register(name)) for d in got), got


def test_attack_finding_c_seed_pool_reflects_at_most_its_stated_bound(procs, raw, closing):
    """The seed pool's residual risk, as docs/security.md states it: forged
    seed-form Registers for V, W1, W2 and 3,000 forged seed-form Connects
    from V: the relay sends them at most SEED_GAIN x the forger's bytes plus
    SEED_CREDIT_MAX, and each /24 at most SEED_INFO_BURST + SEED_INFO_RATE a
    second of PeerInfos."""
    relay = start_relay(procs)
    victims = {name: closing(udp(host)) for name, host in
               (("v", "127.43.0.1"), ("w1", "127.44.0.1"), ("w2", "127.45.0.1"))}
    forger = closing(Forger(relay.port, closing(Sync(relay.port))))
    start = time.monotonic()
    forger.send((P.encode(P.Register(name)), s.getsockname()) for name, s in victims.items())
    v = victims["v"].getsockname()
    forger.send((P.encode(P.Connect("w%d" % (1 + i % 2))), v) for i in range(3000))
    received = {name: drain(s) for name, s in victims.items()}
    elapsed = time.monotonic() - start
    total = sum(len(d) for got in received.values() for d in got)
    figure("seed-pool reflection: forger sent %d bytes in %.1f s -> victims got %d bytes "
           "(amplification %.3f), PeerInfos per /24: %s" % (
               forger.bytes, elapsed, total, total / forger.bytes,
               {n: sum(d.startswith(b'{"PeerInfo"') for d in got) for n, got in received.items()}))
    assert total <= RG.SEED_GAIN * forger.bytes + RG.SEED_CREDIT_MAX
    for got in received.values():
        infos = [d for d in got if d.startswith(b'{"PeerInfo"')]
        assert len(infos) <= RG.SEED_INFO_BURST + RG.SEED_INFO_RATE * elapsed + 1


# -- D: Error reflection


IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)     # Linux; Python names it only from 3.14


class Catcher:
    """One real socket bound at every local address on a free port: the
    forged sources all use that port, so every answer the relay sends them
    lands here, in the kernel's buffer (unlike a raw capture read by a
    Python thread, it loses nothing on a loaded machine). IP_PKTINFO gives
    each answer's destination address: (payload, dst_ip)."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, BIG)
        self.sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
        self.sock.bind(("0.0.0.0", 0))
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]

    def drain(self, wait=0):
        """What has arrived; with *wait*, block up to that long for the first."""
        got = []
        if wait:
            select.select([self.sock], [], [], wait)
        while True:
            try:
                data, ancdata, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(12))
            except BlockingIOError:
                return got
            dst = next(socket.inet_ntoa(c[2][8:12]) for c in ancdata
                       if c[0] == socket.IPPROTO_IP and c[1] == IP_PKTINFO)
            got.append((data, dst))

    def close(self):
        self.sock.close()


JUNK = b"x" * 200


def cycled_sources(count, port):
    """*count* forged sources, 250 to a /24, all on *port*."""
    return [("127.60.%d.%d" % (i // 250, 1 + i % 250), port) for i in range(count)]


def block(addr):
    return addr[0].rpartition(".")[0]


def budget(seconds):
    """The Errors one /24 may get in *seconds* (docs/security.md)."""
    return RG.ERROR_BURST + RG.ERROR_RATE * seconds + 1


def test_attack_finding_d_errors_are_never_larger_and_are_budgeted(procs, raw, closing):
    """Empty datagrams and junk forged from registered extension clients'
    addresses, then from 4,400 cycled forged sources (more than the relay's
    4,096-entry tables) that each sent an ext Register first: no answer to
    an empty datagram, no answer larger than its request, at most the /24's
    Error budget (on the relay of the issue: a 54-byte Error to each empty
    datagram, once per source, so cycling got one answer per datagram)."""
    relay = start_relay(procs)
    sync = closing(Sync(relay.port))
    clients = [closing(udp("127.50.0.%d" % i)) for i in (1, 2, 3)]
    for i, c in enumerate(clients):
        join(c, relay.port, "r%d" % i)
    forger = closing(Forger(relay.port, sync))
    catcher = closing(Catcher())
    probe = udp()          # the catcher sees what is sent to a forged source, with its address
    probe.sendto(b"probe", ("127.60.3.7", catcher.port))
    probe.close()
    assert catcher.drain(wait=5) == [(b"probe", "127.60.3.7")]
    start = time.monotonic()
    addrs = [c.getsockname() for c in clients]
    forger.send((b"", a) for _ in range(100) for a in addrs)
    to_empty = [d for c in clients for d in drain(c)]
    forger.send((JUNK, a) for _ in range(100) for a in addrs)
    to_junk = [d for c in clients for d in drain(c)]
    registered_seconds = time.monotonic() - start
    sources = cycled_sources(4400, catcher.port)
    before, sent_before = forger.bytes, forger.sent
    forger.send((P.encode(P.Register("c%d" % i, features=("ext",))), src)
                for i, src in enumerate(sources))
    for data in (b"", b"", b"", JUNK):
        forger.send((data, src) for src in sources)
    cycled_bytes, cycled = forger.bytes - before, forger.sent - sent_before
    answers = catcher.drain()       # the Sync's answer came after any of these
    elapsed = time.monotonic() - start
    figure("Error reflection: 300 empty datagrams from registered sources -> %d answers; "
           "300 x %d B junk -> %d answers, %d bytes; %d datagrams (%d bytes) from 4,400 cycled "
           "sources -> %d answers, %d bytes" % (len(to_empty), len(JUNK), len(to_junk),
                                               sum(map(len, to_junk)), cycled, cycled_bytes,
                                               len(answers), sum(len(a[0]) for a in answers)))
    assert cycled == 5 * 4400
    assert to_empty == []
    assert all(len(d) <= len(JUNK) for d in to_junk)
    assert len(to_junk) <= budget(registered_seconds)   # one /24: 127.50.0
    assert sum(len(a[0]) for a in answers) <= cycled_bytes
    # on the wire, answers go to the forged sources' addresses: each /24 within its budget
    per_block = {}
    for src in sources:
        per_block[block(src)] = 0
    for _, dst in answers:
        per_block[block((dst, 0))] += 1
    assert all(n <= budget(elapsed) for n in per_block.values()), per_block
    relay.signal(signal.SIGTERM)
    stopped = relay.lines_when_done("stderr")[-1]
    # the relay read every forged datagram (so the figures above are not vacuous)
    assert int(re.search(r"\bdatagrams_in=(\d+)", stopped).group(1)) >= forger.sent, stopped
    sent = re.search(r"\berrors=(\d+)", stopped)
    assert (int(sent.group(1)) if sent else 0) <= budget(elapsed) * (len(per_block) + 1), stopped


# -- E: forged relay datagrams at a peer


def test_attack_finding_e_forged_relay_datagrams_change_nothing_at_the_peer(procs, raw, closing):
    """A real peer in a chat gets datagrams forged from the relay's address
    (an Error with a phishing message, a PeerInfo naming its partner at a
    third endpoint, a RegisterAck with another token; without a nonce and
    with a wrong one): it shows nothing of them, sends the third address
    nothing, and its chat and the end of it (its SessionFinished, with its
    real token, accepted by the relay) still work."""
    relay = start_relay(procs, "-v")
    bob = start_peer(procs, relay, "--name", "bob", "--wait")
    bob.expect("^registered as bob")
    alice = start_peer(procs, relay, "--name", "alice", "--connect", "bob", "-v")
    alice.expect(CONNECTED % "bob")
    bob.expect(CONNECTED % "alice")
    alice.expect(r"^first chat with bob: key pinned")   # the last line a connect prints
    a_port = bound_port(alice)
    third = closing(udp("127.70.0.1"))
    mark = len(alice.lines["stdout"])
    forged = []
    for nonce in (None, "cd" * 16):
        forged += [
            P.Error(code="name-taken", message="your bank wants you at http://evil", nonce=nonce),
            P.PeerInfo(peer="127.70.0.1:%d" % third.getsockname()[1], username="bob",
                       features=("ext", "relay1", "noise1"), session="5e" * 16, nonce=nonce),
            P.RegisterAck(features=("ext", "relay1", "watch1"), token="ee" * 16, nonce=nonce)]
    spoofer = closing(rawudp.Spoofer())
    for msg in forged + [P.RegisterAck()]:
        spoofer.send(P.encode(msg), ("127.0.0.1", relay.port), ("127.0.0.1", a_port))
    bob.send("after the forgeries")                # queued behind them at alice's socket
    alice.expect(r"^\[bob\]> after the forgeries$", start=mark)
    assert alice.lines["stdout"][mark:] == ["[bob]> after the forgeries"]
    bob.popen.kill()                               # so that only alice tells the relay the chat ended
    bob.wait()
    alice.send("/leave")
    relay.expect(r"session of 'alice' and 'bob' ended$", stream="stderr")   # her token was good
    probes = drain(third)
    shown = [l for l in alice.lines["stdout"] if re.search(r"evil|bank|127\.70\.|e{32}", l)]
    figure("forged relay datagrams at a peer: %d sent -> %d lines shown of them, %d datagrams to the "
           "third address" % (len(forged) + 1, len(shown), len(probes)))
    assert probes == []
    assert shown == []
    assert not any(re.search(r"evil|bank", l) for l in alice.lines["stderr"] if "dropped" not in l)
    assert not relay.has(r"127\.0\.0\.1:%d: SessionFinished without the token" % a_port, stream="stderr")


# -- F: relay-full lockout


class Refresher(threading.Thread):
    """Forges one datagram per forged user, round after round, until stopped."""

    def __init__(self, relay_port, items):
        super().__init__(daemon=True)
        self.relay, self.items = ("127.0.0.1", relay_port), items
        self.rounds = 0
        self._stop_event = threading.Event()

    def run(self):
        spoofer = rawudp.Spoofer()
        try:
            while not self._stop_event.is_set():
                for data, src in self.items:
                    spoofer.send(data, src, self.relay)
                self.rounds += 1
                self._stop_event.wait(0.3)
        finally:
            spoofer.close()

    def stop(self):
        self._stop_event.set()
        self.join()


def test_attack_finding_f_a_full_relay_still_admits_others_and_forgeries_refresh_nobody(procs, raw,
                                                                                       closing):
    """Both pools full: 49 registrations the attacker proved from its own
    addresses in one /24 (and the sync client), 50 forged seed-form ones from two
    /24s, 100 forged ext Registers without cookies from two more; then one
    forged datagram per user every 0.3 s (Registers and Connects without the
    token, empty datagrams, seed-form Registers). Legitimate peers from
    another /24 still register and chat (fair share), so does a seed-form
    client, and the attacker's proven users expire all the same (on the
    relay of the issue: full, every legitimate Register refused)."""
    relay = start_relay(procs, "-v", "--max-users", "50", "--max-seed-users", "50", "--expire", "6")
    sync = closing(Sync(relay.port))
    own = [udp("127.34.0.%d" % (1 + i)) for i in range(49)]
    for i, s in enumerate(own):
        join(s, relay.port, "p%d" % i)
    owned = [s.getsockname() for s in own]
    for s in own:
        s.close()                                  # from now on it only forges
    seed_srcs = [("127.%d.0.%d" % (30 + i % 2, 1 + i), 5000) for i in range(60)]
    ext_srcs = [("127.%d.0.%d" % (32 + i % 2, 1 + i), 5000) for i in range(100)]
    forger = closing(Forger(relay.port, sync))
    forger.send((P.encode(P.Register("s%d" % i)), src) for i, src in enumerate(seed_srcs))
    forger.send((P.encode(P.Register("x%d" % i, features=("ext",), nonce=NONCE)), src)
                for i, src in enumerate(ext_srcs))
    refreshes = [(P.encode(P.Register("p%d" % i, features=("ext",), nonce=NONCE)), a)
                 for i, a in enumerate(owned)]
    refreshes += [(P.encode(P.Connect("s0")), a) for a in owned] + [(b"", a) for a in owned]
    refreshes += [(P.encode(P.Register("s%d" % i)), src) for i, src in enumerate(seed_srcs)]
    refreshes += [(P.encode(P.Register("x%d" % i, features=("ext",))), src)
                  for i, src in enumerate(ext_srcs)]
    refresher = Refresher(relay.port, refreshes)
    refresher.start()
    try:
        bob = start_peer(procs, relay, "--name", "bob", "--wait")
        bob.expect("^registered as bob")
        alice = start_peer(procs, relay, "--name", "alice", "--connect", "bob")
        alice.expect(CONNECTED % "bob")
        bob.expect(CONNECTED % "alice")
        bob.send("through a full relay")
        alice.expect(r"^\[bob\]> through a full relay$")
        seed_client = closing(udp())
        seed_client.sendto(P.encode(P.Register("legit-seed")), ("127.0.0.1", relay.port))
        assert seed_client.recv(2048) == P.encode(P.RegisterAck())
        for i in range(len(owned)):                # each gone: evicted, or expired while forged at
            relay.expect(r"(expired|evicted) 'p%d' at " % i, stream="stderr", timeout=15)
        assert refresher.is_alive()                # forging every 0.3 s all along (expiry: 6 s)
    finally:
        refresher.stop()
    relay.expect(r"evicted 'p\d+' at 127\.34\.0\.\d+:\d+ for a newcomer", stream="stderr")
    relay.expect(r"evicted 's\d+' at 127\.3[01]\.0\.\d+:\d+ for a newcomer", stream="stderr")
    lines = relay.lines["stderr"]
    figure("relay-full lockout: %d forged refresh rounds of %d datagrams; alice and bob chatted; "
           "%d of the attacker's 49 proven users expired, %d evicted; %d forged ext Registers stored"
           % (refresher.rounds, len(refreshes), sum(bool(re.search(r"expired 'p\d+'", l)) for l in lines),
              sum(bool(re.search(r"evicted 'p\d+'", l)) for l in lines),
              sum(bool(re.search(r"registered 'x\d+'", l)) for l in lines)))
    assert refresher.rounds >= 6 / 0.5
    assert not any(re.search(r"registered 'x\d+'", l) for l in lines)
