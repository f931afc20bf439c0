"""The peer's sans-I/O core, driven through an in-memory network and a fake clock."""

import pytest

from peerpunch import events as E
from peerpunch.console import format_event
from peerpunch import protocol as P
from peerpunch.forwarder import Forwarder
from peerpunch import session as S
from peerpunch.session import State

from .simnet import RELAY, SimNet

ALICE = ("198.51.100.10", 40000)
BOB = ("198.51.100.20", 41000)
CAROL = ("198.51.100.30", 42000)
MALLORY = ("192.0.2.66", 6666)


def chat_pair(net=None, **options):
    """bob waits, alice connects to him; returns the net once both are connected."""
    net = net or SimNet()
    bob = net.add_peer("bob", BOB, **options)
    net.run(1)
    alice = net.add_peer("alice", ALICE, target="bob", **options)
    net.run(3)
    assert alice.state is State.CONNECTED and bob.state is State.CONNECTED
    return net, alice, bob


def texts(net, addr):
    return [(e.username, e.text) for e in net.shown(addr, S.ChatMessage)]


def test_session_registers_and_waits():
    net = SimNet()
    bob = net.add_peer("bob", BOB)
    net.run(1)
    assert bob.state is State.IDLE
    assert net.shown(BOB, S.Registered) == [S.Registered("bob", "203.0.113.1:8080")]
    first = net.sent(BOB, RELAY)[0]
    assert first.startswith(b'{"Register":{"username":"bob","features":["ext","relay1"],"nonce":"')
    assert P.decode(first) == P.Register("bob", features=("ext", "relay1"), nonce=bob.relay.auth.nonce,
                                         max_chats=16)
    assert len(first) == 200 and first.endswith(b'"max_chats":16,"pad":"' + b" " * 74 + b'"}}')


def test_session_chat_crosses_both_ways():
    net, alice, bob = chat_pair()
    net.line(ALICE, "hello bob")
    net.line(BOB, "hi alice")
    net.run(1)
    assert texts(net, BOB) == [("alice", "hello bob")]
    assert texts(net, ALICE) == [("bob", "hi alice")]
    connected = net.shown(ALICE, S.Connected)[0]
    assert connected[:3] == ("bob", "198.51.100.20:41000", "direct")
    assert b'{"DirectMessage":{"content":"hello bob"}}' in net.sent(ALICE, BOB)


def test_session_connected_side_is_told_who_connected():
    net, alice, bob = chat_pair()
    assert [e.username for e in net.shown(BOB, S.Connected)] == ["alice"]


def test_session_lines_typed_before_connect_are_queued_then_sent():
    net = SimNet()
    net.add_peer("bob", BOB)
    net.run(1)
    net.add_peer("alice", ALICE, target="bob")
    net.line(ALICE, "early one")
    net.line(ALICE, "early two")
    net.run(3)
    assert texts(net, BOB) == [("alice", "early one"), ("alice", "early two")]


def test_session_target_not_found_and_busy():
    net, alice, bob = chat_pair(max_chats=1)                 # one chat each: bob is busy
    net.add_peer("carol", CAROL, target="bob")
    net.run(2)
    net.line(CAROL, "/connect nobody")
    net.run(2)
    assert [e.reason for e in net.shown(CAROL, S.Failed)] == ["Target user is busy.",
                                                              "Target user not found."]
    assert net.sessions[CAROL].state is State.WAITING     # for nobody to come online


def test_session_goodbye_frees_both_sides():
    net, alice, bob = chat_pair()
    net.line(ALICE, "/quit")
    net.run(1)
    assert net.shown(BOB, S.PeerLeft) == [S.PeerLeft("alice")]
    assert net.shown(ALICE, S.Closed) == [S.Closed(0, "bye")]
    assert bob.state is State.IDLE
    assert net.sent(ALICE, BOB).count(b'"Goodbye"') == S.GOODBYE_COPIES
    assert net.registry.user("bob").partner is None
    # bob is available again: carol can reach him
    net.add_peer("carol", CAROL, target="bob")
    net.run(3)
    assert net.sessions[CAROL].state is State.CONNECTED


def test_session_leave_keeps_user_online():
    net, alice, bob = chat_pair()
    net.line(BOB, "/leave")
    net.run(1)
    assert net.shown(ALICE, S.PeerLeft) == [S.PeerLeft("bob")]
    assert bob.state is State.IDLE and alice.state is State.IDLE
    net.line(ALICE, "/connect bob")
    net.run(3)
    assert alice.state is State.CONNECTED


def test_session_punch_gives_up_when_peer_unreachable():
    net = SimNet(forwarder=Forwarder(enabled=False))     # no fallback to save it
    net.block(ALICE, BOB)
    bob = net.add_peer("bob", BOB)
    net.run(1)
    alice = net.add_peer("alice", ALICE, target="bob")
    net.line(ALICE, "lost line")
    net.run(S.PUNCH_TIMEOUT + 1)
    failed = net.shown(ALICE, S.Failed)
    assert len(failed) == 1 and failed[0].reason.startswith("could not reach bob at 198.51.100.20:41000")
    assert [format_event(e) for e in net.shown(ALICE, E.NotDelivered)] == [
        "1 line not delivered to bob (the chat ended)"]
    assert alice.state is State.IDLE and bob.state is State.IDLE
    assert net.registry.user("alice").partner is None
    probes = net.sent(ALICE, BOB).count(b'"Ping"')
    assert S.PUNCH_TIMEOUT / S.PUNCH_INTERVAL - 2 <= probes <= S.PUNCH_TIMEOUT / S.PUNCH_INTERVAL + 2


def test_session_keepalive_pings_and_holds():
    net, alice, bob = chat_pair(keepalive=15.0)
    before = len(net.sent(ALICE, BOB))
    net.run(120)
    assert alice.state is State.CONNECTED
    pings = net.sent(ALICE, BOB)[before:]
    assert pings.count(b'"Ping"') == 8           # one every 15 s
    assert b'"Pong"' in net.sent(BOB, ALICE)


def test_session_keepalive_declares_loss_after_three_silent_intervals():
    net, alice, bob = chat_pair(SimNet(forwarder=Forwarder(enabled=False)), keepalive=5.0)
    net.line(BOB, "last words")
    net.line(ALICE, "last words")
    net.run(0.001)
    net.block(ALICE, BOB)
    net.run(14.9)
    assert net.shown(ALICE, S.ConnectionLost) == []
    net.run(5.2)
    assert net.shown(ALICE, S.ConnectionLost) == [S.ConnectionLost("bob")]
    assert net.shown(BOB, S.ConnectionLost) == [S.ConnectionLost("alice")]
    assert net.registry.user("alice").partner is None


def test_session_reregisters_so_the_relay_keeps_it():
    net, alice, bob = chat_pair()
    net.run(300)                                  # far past the 90 s expiry
    assert net.registry.user("alice") is not None and net.registry.user("bob") is not None
    registers = [d for d in net.sent(ALICE, RELAY) if d.startswith(b'{"Register"')]
    every = min(S.REREGISTER_INTERVAL, S.KEEPALIVE)      # so a silent relay is noticed in time
    # (the first Register is answered with a Cookie, and repeated with it)
    assert 300 / every - 1 <= len(registers) - 2 <= 300 / every + 1


def test_session_register_times_out_without_relay():
    net = SimNet()
    net.block(ALICE, RELAY)
    alice = net.add_peer("alice", ALICE)
    net.run(S.REGISTER_TIMEOUT - 0.1)
    assert alice.state is State.REGISTERING
    net.run(1)
    closed = net.shown(ALICE, S.Closed)
    assert [format_event(c) for c in closed] == [
        "error: no answer from the relay at 203.0.113.1:8080 after 10 s (is a relay running there,"
        " and can UDP reach it?)"] and closed[0].exit_code == 1
    attempts = net.sent(ALICE, RELAY)
    assert 8 <= len(attempts) <= 12               # backoff, not a flood


def test_session_name_taken_closes_with_reason():
    net = SimNet()
    net.add_peer("alice", ALICE)
    net.run(1)
    imposter = net.add_peer("alice", CAROL)
    net.run(1)
    assert imposter.state is State.CLOSED
    closed = net.shown(CAROL, S.Closed)
    assert closed == [S.Closed(1, E.RelayRefused("name-taken", "alice", E.REFUSED_REGISTERING))]
    assert format_event(closed[0]) == "error: the relay says the name alice is in use"


@pytest.mark.parametrize("loss", [0.2, 0.3])
def test_session_survives_random_loss(loss):
    """20 runs of 2 minutes each. At 30 % loss a chat can still, rarely and
    rightly, be lost: every datagram one side sent for 45 s lost (about
    0.3 ** 5; seen once in 260 runs). So at most one of the 20 may end that
    way -- but each must register and connect."""
    lost = []
    for seed in range(20):
        net = SimNet(loss=loss, seed=seed)
        bob = net.add_peer("bob", BOB)
        net.run(8)
        assert bob.state is State.IDLE, seed
        alice = net.add_peer("alice", ALICE, target="bob", keepalive=15.0)
        for _ in range(200):          # registering takes two round trips (the cookie)
            if alice.state is State.CONNECTED:
                break
            net.run(0.1)
        assert alice.state is State.CONNECTED, seed
        net.run(120)
        if net.shown(ALICE, S.ConnectionLost):
            lost.append(seed)
    assert len(lost) <= 1, lost


def test_session_ignores_strangers():
    net, alice, bob = chat_pair()
    for data in (b'{"DirectMessage":{"content":"forged"}}', b'"Goodbye"', b'"Ping"'):
        net.inject(MALLORY, ALICE, data)
    net.run(1)
    assert texts(net, ALICE) == [] and alice.state is State.CONNECTED
    assert net.sent(ALICE, MALLORY) == []
    assert alice.stats["ignored_strangers"] == 3


def test_session_survives_garbage_from_peer_and_relay():
    net, alice, bob = chat_pair()
    for data in (b"", b"\xff" * 2000, b"[]", b'{"Nope":1}', b'{"DirectMessage":{"content":5}}',
                 b'"Register"', b'{"PeerInfo":{"peer":"example.com:1","username":"x"}}'):
        net.inject(BOB, ALICE, data)
        net.inject(RELAY, ALICE, data)
    net.line(BOB, "still here")
    net.run(1)
    assert texts(net, ALICE) == [("bob", "still here")]


def test_session_long_line_is_split_under_the_seed_limit():
    net, alice, bob = chat_pair()
    text = "ü" * 3000
    net.line(ALICE, text)
    net.run(1)
    pieces = [d for d in net.sent(ALICE, BOB) if d.startswith(b'{"DirectMessage"')]
    assert len(pieces) > 1 and all(len(d) <= P.MAX_DATAGRAM for d in pieces)
    assert "".join(t for _, t in texts(net, BOB)) == text


def test_session_commands():
    net, alice, bob = chat_pair()
    net.line(ALICE, "/help")
    net.line(ALICE, "/bogus")
    net.line(ALICE, "//slash")
    net.line(ALICE, "/status")
    net.run(1)
    notices = [e.text for e in net.shown(ALICE, S.Notice)]
    assert any("/quit" in n for n in notices)
    assert "unknown command '/bogus': /help lists them" in notices
    assert "you are alice at relay 203.0.113.1:8080 (connected); peer bob at 198.51.100.20:41000" in notices
    assert texts(net, BOB) == [("alice", "/slash")]


def test_session_refuses_bad_connect_targets():
    net = SimNet()
    alice = net.add_peer("alice", ALICE)
    net.run(1)
    net.line(ALICE, "/connect alice")
    net.line(ALICE, "/connect " + "x" * 40)
    reasons = [e.reason for e in net.shown(ALICE, S.Failed)]
    assert reasons[0] == "you cannot connect to yourself"
    assert reasons[1].startswith("cannot connect to 'xxxx")
    assert alice.state is State.IDLE


def test_session_typing_while_idle_explains():
    net = SimNet()
    net.add_peer("alice", ALICE)
    net.run(1)
    net.line(ALICE, "anyone?")
    assert net.shown(ALICE, S.Notice)[-1].text.startswith("not in a chat")


def test_session_lost_peerinfo_to_target_is_recovered():
    # The relay's first PeerInfo to bob is lost: alice keeps asking while
    # punching, the relay repeats the introduction, and the chat comes up.
    net = SimNet()
    bob = net.add_peer("bob", BOB)
    net.run(1)
    net.block(RELAY, BOB)
    alice = net.add_peer("alice", ALICE, target="bob")
    net.run(0.5)
    net.blocked.clear()
    net.run(3)
    assert alice.state is State.CONNECTED and bob.state is State.CONNECTED
    assert net.registry.stats["reintroductions"] >= 1


def _introduced(local=None):
    """alice, registered and waiting, gets a PeerInfo for bob."""
    alice = S.PeerSession("alice", RELAY, local=[("10.0.0.2", 5000)])
    first = [e for e in alice.start(0.0) if isinstance(e, S.Send)]
    alice.datagram_received(b'{"RegisterAck":{"features":["ext"]}}', RELAY, 0.1)
    info = P.PeerInfo(peer="198.51.100.20:41000", username="bob", features=("ext",), local=local)
    alice.datagram_received(P.encode(info), RELAY, 0.2)
    return alice, first


def _probe_targets(effects):
    return [e.addr for e in effects if isinstance(e, S.Send) and e.data == b'"Ping"']


def test_session_announces_lan_candidates_but_never_public_or_loopback():
    alice, first = _introduced()
    assert P.decode(first[0].data).local == ("10.0.0.2:5000",)
    other = S.PeerSession("x", RELAY, local=[("127.0.0.1", 5000), ("8.8.8.8", 53)])
    sent = [P.decode(e.data) for e in other.start(0.0) if isinstance(e, S.Send)]
    assert [(m.username, m.local) for m in sent] == [("x", None)]


def test_session_probes_every_candidate_and_keeps_the_first_that_answers():
    alice, _ = _introduced(local=("192.168.1.7:41000",))
    targets = _probe_targets(alice.tick(0.2))
    assert targets == [("198.51.100.20", 41000), ("192.168.1.7", 41000)]
    out = alice.datagram_received(b'"Pong"', ("192.168.1.7", 41000), 0.3)
    connected = [e for e in out if isinstance(e, S.Connected)]
    assert connected and connected[0].endpoint == "192.168.1.7:41000"
    # from now on only the chosen path counts
    out = alice.datagram_received(b'{"DirectMessage":{"content":"x"}}', ("198.51.100.20", 41000), 0.4)
    assert not [e for e in out if isinstance(e, S.ChatMessage)]
    out = alice.datagram_received(b'{"DirectMessage":{"content":"y"}}', ("192.168.1.7", 41000), 0.5)
    assert [e.text for e in out if isinstance(e, S.ChatMessage)] == ["y"]


def test_session_accepts_a_peer_reflexive_port_while_punching():
    alice, _ = _introduced()
    out = alice.datagram_received(b'"Ping"', ("198.51.100.20", 53111), 0.3)
    assert [e.endpoint for e in out if isinstance(e, S.Connected)] == ["198.51.100.20:53111"]
    assert [e.addr for e in out if isinstance(e, S.Send)] == [("198.51.100.20", 53111)]   # the Pong


def test_session_does_not_take_other_addresses_while_punching():
    alice, _ = _introduced(local=("10.9.9.9:1",))
    for addr in (("198.51.100.21", 41000), ("10.9.9.9", 2), ("192.0.2.1", 41000)):
        out = alice.datagram_received(b'"Ping"', addr, 0.3)
        assert not [e for e in out if isinstance(e, (S.Connected, S.Send))]
    assert alice.state is State.PUNCHING


def test_session_ignores_public_or_loopback_lan_candidates_from_the_relay():
    # protocol.decode refuses them outright: the relay cannot aim our probes
    with pytest.raises(P.RemoteProtocolError):
        P.decode(b'{"PeerInfo":{"peer":"198.51.100.20:1","username":"b","local":["127.0.0.1:22"]}}')
    with pytest.raises(P.RemoteProtocolError):
        P.decode(b'{"PeerInfo":{"peer":"198.51.100.20:1","username":"b","local":["8.8.8.8:53"]}}')


def test_session_introduction_from_someone_else_while_asking_cancels_the_ask():
    net = SimNet()
    net.add_peer("carol", CAROL)
    net.add_peer("bob", BOB)
    net.run(1)
    alice = net.add_peer("alice", ALICE, max_chats=1)          # one chat at a time
    net.run(1)
    net.line(BOB, "/connect alice")                 # bob's request lands first...
    alice.relay.ask("carol", net.now)               # ...while alice asks for carol (unsent)
    net.run(3)
    assert alice.state is State.CONNECTED and alice.table.current_chat().peer.username == "bob" and alice.table.asked_for() is None
    assert "bob connected to you first; no longer asking for carol" in \
        [e.text for e in net.shown(ALICE, S.Notice)]
    assert net.registry.user("carol").partner is None


def test_session_impossible_introduction_is_refused():
    for peer in ("127.0.0.1:631", "224.0.0.251:5353", "0.0.0.0:22", "255.255.255.255:9",
                 "[ff02::1]:9", "240.0.0.1:9"):
        alice = S.PeerSession("alice", RELAY, target="bob")
        alice.start(0.0)
        alice.datagram_received(b'"RegisterAck"', RELAY, 0.1)
        out = alice.datagram_received(P.encode(P.PeerInfo(peer=peer, username="bob")), RELAY, 0.2)
        assert any(isinstance(e, S.Failed) and "not an address a peer can have" in e.reason
                   for e in out), peer
        assert not any(isinstance(e, S.Send) and e.addr[0] != RELAY[0] for e in out + alice.tick(0.5))


def test_session_after_a_relay_restart_reregisters_and_connects_quickly():
    net = SimNet()
    alice = net.add_peer("alice", ALICE)
    net.run(5)
    net.registry = type(net.registry)()             # the relay restarts and forgets everyone
    net.add_peer("bob", BOB)                         # bob registers with the new relay
    net.run(1)
    net.line(ALICE, "/connect bob")                  # dropped: alice is unknown to the new relay
    net.run(2.5)
    assert alice.state is State.CONNECTED and net.registry.user("alice") is not None


def test_session_unanswered_reregistration_is_retried_steadily():
    net = SimNet()
    alice = net.add_peer("alice", ALICE)
    net.run(1)
    net.block(ALICE, RELAY)                          # the relay is down for a minute
    before = len(net.sent(ALICE, RELAY))
    net.run(60)
    retries = len(net.sent(ALICE, RELAY)) - before
    # every 15 s, then 2 s and 4 s apart while unanswered: not a flood
    assert 60 / E.RELAY_RETRY_MAX - 5 <= retries <= 60 / E.RELAY_RETRY_MAX + 1
    net.blocked.clear()
    net.registry = type(net.registry)()
    net.run(E.RELAY_RETRY_MAX + 0.1)                 # the relay is back: registered within seconds
    assert net.registry.user("alice") is not None


def test_session_a_seed_relay_in_place_of_ours_gets_only_seed_bytes():
    """Our relay gave us a token; then a seed relay answers at the same
    address (restarted as the Rust original). Nothing we send it may be a
    unit variant in map form -- it would panic -- so the token is dropped."""
    relay = ("203.0.113.1", 8080)
    session = S.PeerSession("alice", relay)
    session.start(0.0)
    session.datagram_received(P.encode(P.RegisterAck(features=("ext", "relay1"), token="ab" * 16)),
                              relay, 0.1)
    assert session.relay.token == "ab" * 16
    session.datagram_received(b'"RegisterAck"', relay, 1.0)
    out = session.connect("bob", 2.0) + session.table.leave(2.5)
    sent = [e.data for e in out if isinstance(e, S.Send)]
    assert sent == [b'{"Connect":{"target_username":"bob"}}', b'"SessionFinished"']
