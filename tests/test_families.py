"""IPv4 and IPv6 peers: a relay bound to '::' introduces one to the other.
The session probes only what its socket can reach, says so when it can
reach nothing instead of blaming NATs, goes through the relay at once when
that is the only way, and a dual-stack peer announces both families."""

import queue
import socket

import pytest

from peerpunch import peershell
from peerpunch.shell import sendto
from peerpunch import protocol as P
from peerpunch import session as S
from peerpunch.effects import OpenSocket, Send
from peerpunch.forwarder import RELAYED

from .procs import CONNECTED, has_ipv6_loopback, start_peer, start_relay

RELAY = ("203.0.113.1", 8080)
RELAY6 = ("2001:db8::1", 8080)
LOOPBACK_RELAY = ("127.0.0.1", 8080)
PING = P.encode(P.Ping())


def introduced(peer, *, relay=RELAY, families=(4,), local=None, features=("ext",),
               relay_features=("ext",), mine=(), punch_timeout=10.0):
    """alice (with *families*) asks for bob and the relay introduces him at
    *peer* with LAN candidates *local*: (session, effects of the PeerInfo)."""
    alice = S.PeerSession("alice", relay, target="bob", families=families, local=mine,
                          punch_timeout=punch_timeout)
    alice.start(0.0)
    alice.datagram_received(P.encode(P.RegisterAck(features=relay_features)), relay, 0.1)
    info = P.PeerInfo(peer=peer, username="bob", features=features, local=local)
    return alice, alice.datagram_received(P.encode(info), relay, 0.2)


def run(session, until, start=0.2, step=0.05):
    """Every effect of ticking *session* from *start* to *until*."""
    out, now = [], start
    while now < until:
        now += step
        out += session.tick(now)
    return out


def sent_to(effects, relay):
    return [e for e in effects if isinstance(e, Send) and e.addr != relay]


def shown(effects, kind):
    return [e for e in effects if isinstance(e, kind)]


def test_session_peer_of_the_other_family_fails_at_once_with_the_true_reason():
    alice, out = introduced("[2001:db8::20]:41000")
    failed = shown(out, S.Failed)
    assert failed and failed[0].reason.startswith(
        "cannot reach bob: bob is reachable only over IPv6 and this client's socket is IPv4 only")
    assert "NAT" not in failed[0].reason
    assert alice.state is S.State.IDLE
    assert sent_to(out + run(alice, 12.0), RELAY) == []       # no probes, no late failure
    assert shown(run(alice, 12.0), S.Failed) == []


def test_session_ipv6_only_socket_and_an_ipv4_peer_fail_at_once_too():
    bob, out = introduced("198.51.100.10:40000", relay=RELAY6, families=(6,))
    assert [e.reason.split(" (")[0] for e in shown(out, S.Failed)] == [
        "cannot reach bob: bob is reachable only over IPv4 and this client's socket is IPv6 only"]


def test_session_no_shared_family_goes_through_the_relay_at_once_when_it_forwards():
    alice, out = introduced("[2001:db8::20]:41000", features=("ext", "relay1"),
                            relay_features=("ext", "relay1"))
    assert shown(out, S.Failed) == [] and alice.state is S.State.PUNCHING
    assert any("trying through the relay" in n.text for n in shown(out, S.Notice))
    later = run(alice, 0.5)
    assert sent_to(later, RELAY) == []                       # nothing aimed at IPv6
    assert Send(bytes([RELAYED]) + PING, RELAY) in later      # from the first probe, not after 3 s


def test_session_probes_only_the_candidates_of_its_family():
    alice, out = introduced("[2001:db8::20]:41000", local=("192.168.1.20:41000", "[fd00::20]:41000"),
                            punch_timeout=2.0)
    assert shown(out, S.Failed) == []
    probes = sent_to(run(alice, 1.0), RELAY)
    assert probes and {e.addr for e in probes} == {("192.168.1.20", 41000)}
    reason = shown(run(alice, 3.0, start=1.0), S.Failed)[0].reason
    assert reason.startswith("could not reach bob at [2001:db8::20]:41000: ")
    assert "its endpoint is IPv6, which this client's IPv4 socket cannot reach, and" \
        " 192.168.1.20:41000 did not answer" in reason and "NAT" not in reason


def test_session_punch_timeout_names_a_peer_that_cannot_answer_our_family():
    bob, out = introduced("198.51.100.10:40000", relay=RELAY6, families=(4, 6), punch_timeout=2.0)
    assert {e.addr for e in sent_to(run(bob, 1.0), RELAY6)} == {("198.51.100.10", 40000)}
    reason = shown(run(bob, 3.0, start=1.0), S.Failed)[0].reason
    assert reason.endswith("(bob has only IPv4 addresses and knows this client only over IPv6:"
                           " it may not be able to answer)")


def test_session_punch_timeout_still_blames_nats_when_families_match():
    alice, out = introduced("198.51.100.20:41000", punch_timeout=2.0)
    reason = shown(run(alice, 3.0), S.Failed)[0].reason
    assert reason.endswith("(the NATs in between block a direct path)")


def test_session_dual_stack_peer_on_a_loopback_relay_is_probed_on_our_loopback():
    alice, out = introduced("[::1]:41000", relay=LOOPBACK_RELAY, features=("ext", "dual-stack"))
    assert shown(out, S.Failed) == []
    assert {e.addr for e in sent_to(run(alice, 0.5), LOOPBACK_RELAY)} == {("127.0.0.1", 41000)}


@pytest.mark.parametrize("relay,features", [
    (LOOPBACK_RELAY, ("ext",)),                 # not dual-stack: its socket is not there
    (RELAY, ("ext", "dual-stack")),             # a remote relay: ::1 is not the peer's host
])
def test_session_no_loopback_guess_without_a_dual_stack_peer_on_a_loopback_relay(relay, features):
    alice, out = introduced("[::1]:41000" if relay == LOOPBACK_RELAY else "[2001:db8::20]:41000",
                            relay=relay, features=features)
    assert shown(out, S.Failed) and sent_to(out + run(alice, 1.0), relay) == []


def test_session_dual_stack_announces_itself_and_both_families_lan_candidates():
    mine = [("192.168.1.10", 40000), ("fd00::10", 40000), ("2001:db8::10", 40000), ("::1", 40000)]
    alice = S.PeerSession("alice", RELAY6, families=(4, 6), local=mine)
    register = P.decode(first_send(alice.start(0.0)).data)
    assert "dual-stack" in register.features
    # a global IPv6 address is never a LAN candidate: a peer would probe it
    # without the relay having seen it, so an introduction could aim at anyone
    assert register.local == ("192.168.1.10:40000", "[fd00::10]:40000")


def test_session_single_family_does_not_claim_dual_stack():
    for families in ((4,), (6,)):
        register = P.decode(first_send(S.PeerSession("alice", RELAY, families=families).start(0.0)).data)
        assert "dual-stack" not in register.features


# -- the shell: which families a socket reaches, what it announces

needs_ipv6 = pytest.mark.skipif(not has_ipv6_loopback(), reason="this host has no IPv6 loopback")


@needs_ipv6
@pytest.mark.parametrize("relay,bind,families", [
    (("127.0.0.1", 9), None, (4,)),
    (("::1", 9), None, (4, 6)),
    (("127.0.0.1", 9), ("::", 0), (4, 6)),
    (("::1", 9), ("::1", 0), (6,)),
])
def test_open_socket_reaches_the_families_it_says(relay, bind, families):
    sock, relay_sockaddr = peershell.open_socket(relay, bind)
    with sock:
        assert peershell.socket_families(sock) == families
        port = sock.getsockname()[1]
        for host, cand_port in peershell.lan_candidates(sock, relay_sockaddr):
            assert cand_port == port and (6 if ":" in host else 4) in families
        if families == (4, 6):           # it really sends to both
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as v4:
                v4.bind(("127.0.0.1", 0))
                v4.settimeout(10)
                sendto(sock, b"x", v4.getsockname())
                assert v4.recvfrom(10)[0] == b"x"


class OneExtraSocket:
    """A core that opens one more socket, sends from it to *target*, and
    closes when anything comes back."""

    def __init__(self, target):
        self.target = target

    def start(self, now):
        return [OpenSocket(1), Send(b"from the extra socket", self.target, 1)]

    def datagram_received(self, data, addr, now, via=0):
        return [S.Closed(0, "bye")]

    def next_deadline(self):
        return None

    def tick(self, now):
        return []

    def quit(self, now):
        return [S.Closed(0, "bye")]


@needs_ipv6
def test_network_thread_extra_sockets_of_a_dual_stack_socket_reach_ipv4_too():
    sock, _ = peershell.open_socket(("::1", 9), None)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as v4:
        v4.bind(("127.0.0.1", 0))
        v4.settimeout(10)
        thread = peershell.NetworkThread(OneExtraSocket(v4.getsockname()), sock, queue.Queue())
        thread.start()
        data, source = v4.recvfrom(100)
        assert data == b"from the extra socket" and source[1] != sock.getsockname()[1]
        v4.sendto(b"bye", source)
        thread.join(10)
    assert not thread.is_alive()


# -- real processes: a relay on '::', alice over 127.0.0.1, bob over ::1

def _relay6(procs, *extra):
    proc, port = start_relay("-v", *extra, host="::")
    procs.append(proc)
    return port


def _pair(procs, port, bob_args=()):
    bob = start_peer("[::1]:%d" % port, "--name", "bob", "--wait", "--punch-timeout", "30",
                     *bob_args)
    procs.append(bob)
    bob.expect("^registered as bob")
    alice = start_peer("127.0.0.1:%d" % port, "--name", "alice", "--connect", "bob",
                       "--punch-timeout", "30")
    procs.append(alice)
    return alice, bob


@needs_ipv6
def test_ipv4_peer_and_dual_stack_ipv6_peer_connect_directly_over_ipv4(procs):
    alice, bob = _pair(procs, _relay6(procs))
    assert bob.expect(r"^bound to \[::\]:\d+;")
    alice.expect(CONNECTED % "bob")              # direct, at 127.0.0.1
    bob.expect(CONNECTED % "alice")
    alice.send("over IPv4")
    bob.expect(r"^\[alice\]> over IPv4$")


@needs_ipv6
def test_ipv4_peer_and_ipv6_only_peer_fail_at_once_saying_why(procs):
    alice, bob = _pair(procs, _relay6(procs, "--no-relay-fallback"), bob_args=("--bind", "[::1]:0"))
    # at once: well inside the 30 s punch timeout, and not blaming NATs
    alice.expect(r"^cannot reach bob: bob is reachable only over IPv6 and this client's socket"
                 r" is IPv4 only", timeout=10)
    bob.expect(r"^cannot reach alice: alice is reachable only over IPv4 and this client's socket"
               r" is IPv6 only", timeout=10)
    assert not alice.has("NAT|punching") and not bob.has("NAT|punching")


@needs_ipv6
def test_ipv4_peer_and_ipv6_only_peer_chat_through_the_relay_at_once(procs):
    alice, bob = _pair(procs, _relay6(procs), bob_args=("--bind", "[::1]:0"))
    alice.expect(r"^connected to bob at \[::1\]:\d+ \(relayed\) encrypted", timeout=10)
    bob.expect(r"^connected to alice at 127\.0\.0\.1:\d+ \(relayed\) encrypted", timeout=10)
    bob.send("over the relay")
    alice.expect(r"^\[bob\]> over the relay$")
    assert alice.has(r"^the chat goes through the relay at \S+ \(no address family in common")


def first_send(effects):
    return next(e for e in effects if isinstance(e, S.Send))
