"""Encrypted chats between PeerSessions, through the in-memory network:
the connect line, trust on first use, and the attacks the issue lists."""

import pytest

from peerpunch import crypto
from peerpunch import identity as ID
from peerpunch import session as S
from peerpunch.console import format_event
from peerpunch.session import State

from .simnet import RELAY, SimNet

ALICE = ("198.51.100.10", 40000)
BOB = ("198.51.100.20", 41000)
MALLORY = ("192.0.2.66", 6666)
BACKEND = crypto.get_backend("auto")


def lines(net, addr):
    """What *addr*'s terminal shows, line by event."""
    return [line for line in map(format_event, net.events[addr]) if line is not None]


def alerts(net, addr):
    """The loud warnings among them."""
    return [line for line in lines(net, addr) if line.startswith("!! ")]


def new_identity():
    private = crypto.generate_private_key()
    return ID.Identity(private, BACKEND.x25519_public(private))


def secure_options(ident=None, **extra):
    return dict(identity=ident or new_identity(), backend=BACKEND, **extra)


def connect(net, alice_opts, bob_opts, seconds=3):
    bob = net.add_peer("bob", BOB, **bob_opts)
    net.run(1)
    alice = net.add_peer("alice", ALICE, target="bob", **alice_opts)
    net.run(seconds)
    return alice, bob


def texts(net, addr):
    return [e.text for e in net.shown(addr, S.ChatMessage)]


def test_secure_session_encrypts_and_says_so():
    net = SimNet()
    a_id, b_id = new_identity(), new_identity()
    alice, bob = connect(net, secure_options(a_id), secure_options(b_id))
    assert alice.state is State.CONNECTED and bob.state is State.CONNECTED
    (conn,) = net.shown(ALICE, S.Connected)
    assert conn.key == ID.fingerprint(b_id.public)
    net.line(ALICE, "the secret word is swordfish")
    net.line(BOB, "got it")
    net.run(1)
    assert texts(net, BOB) == ["the secret word is swordfish"]
    assert texts(net, ALICE) == ["got it"]
    assert not any(b"swordfish" in d for d in net.sent(ALICE, BOB))
    assert not any(b"got it" in d for d in net.sent(BOB, ALICE))
    # first chat: each pins the other's key
    assert net.shown(ALICE, S.PinKey) == [S.PinKey("bob", b_id.public)]
    assert net.shown(BOB, S.PinKey) == [S.PinKey("alice", a_id.public)]


def test_secure_session_verify_codes_match_and_whoami():
    net = SimNet()
    a_id = new_identity()
    connect(net, secure_options(a_id), secure_options())
    net.line(ALICE, "/verify")
    net.line(BOB, "/verify")
    net.line(ALICE, "/whoami")
    code_a = lines(net, ALICE)[-2].split(": ")[1].split("\n")[0]
    code_b = lines(net, BOB)[-1].split(": ")[1].split("\n")[0]
    assert code_a == code_b and len(code_a.replace(" ", "")) == 30
    assert lines(net, ALICE)[-1] == "you are alice, key %s" % ID.fingerprint(a_id.public)


def test_secure_session_with_plain_peer_warns_on_both_sides():
    net = SimNet()
    alice, bob = connect(net, secure_options(), {})
    assert alice.state is State.CONNECTED and bob.state is State.CONNECTED
    assert net.shown(ALICE, S.Connected)[0].key is None
    assert net.shown(BOB, S.Connected)[0].key is None
    assert "does not encrypt" in alerts(net, ALICE)[0]
    net.line(ALICE, "plain hello")
    net.run(1)
    assert texts(net, BOB) == ["plain hello"]


def test_secure_session_require_encryption_refuses_plain_peer():
    net = SimNet()
    alice, bob = connect(net, secure_options(require_encryption=True), {})
    assert "bob's client does not encrypt: refused (--require-encryption)" in lines(net, ALICE)
    assert net.shown(ALICE, S.Connected) == [] and alice.state is State.IDLE
    net.run(1)
    assert net.shown(BOB, S.PeerLeft) == [S.PeerLeft("alice")]


def test_secure_session_changed_key_blocks_until_trust():
    net = SimNet()
    old, new = new_identity(), new_identity()
    alice, bob = connect(net, secure_options(known_keys={"bob": old.public}), secure_options(new))
    shown = alerts(net, ALICE)
    assert len(shown) == 1 and "bob's key has CHANGED: pinned %s, presented %s" % (
        ID.fingerprint(old.public), ID.fingerprint(new.public)) in shown[0]
    net.line(BOB, "it's me, really")
    net.line(ALICE, "who are you?")
    net.run(1)
    assert texts(net, ALICE) == [] and texts(net, BOB) == []       # nothing shown, nothing sent
    assert net.shown(ALICE, S.PinKey) == []
    net.line(ALICE, "/trust")
    net.run(1)
    assert texts(net, ALICE) == ["it's me, really"] and texts(net, BOB) == ["who are you?"]
    assert net.shown(ALICE, S.PinKey) == [S.PinKey("bob", new.public)]


def test_secure_session_impostor_after_bob_left_gets_nothing():
    """bob chats with alice and leaves; someone else registers as bob with
    another key: alice is warned and sends nothing."""
    net = SimNet()
    a_id, b_id = new_identity(), new_identity()
    alice, bob = connect(net, secure_options(a_id), secure_options(b_id))
    net.line(BOB, "/quit")                   # bob leaves and unregisters
    net.run(1)
    assert net.registry.user("bob") is None
    impostor_addr = ("203.0.113.99", 5555)
    net.add_peer("bob", impostor_addr, **secure_options())
    net.run(1)
    net.line(ALICE, "/connect bob")
    net.line(ALICE, "my password is hunter2")
    net.run(3)
    assert any("CHANGED" in line for line in alerts(net, ALICE))
    assert not any(b"hunter2" in d for d in net.sent(ALICE))
    assert net.shown(impostor_addr, S.ChatMessage) == []


def test_secure_session_strict_refuses_unknown_key():
    net = SimNet()
    alice, bob = connect(net, secure_options(strict=True), secure_options())
    assert any(line.startswith("refused bob: key ") for line in lines(net, ALICE))
    assert alice.state is State.IDLE and net.shown(ALICE, S.Connected) == []


def test_secure_session_injection_shows_nothing_and_answers_nothing():
    net = SimNet()
    alice, bob = connect(net, secure_options(), secure_options())
    replies_before = len(net.sent(ALICE))
    forged = [b'{"DirectMessage":{"content":"forged"}}', b'"Goodbye"', b'"Ping"',
              b"\xe4" + bytes(8) + bytes(40), b"\xe1" + bytes(64), b"\xe3" + bytes(64)]
    for data in forged:
        net.inject(MALLORY, ALICE, data)     # a stranger
        net.inject(BOB, ALICE, data)         # spoofing bob's endpoint
    net.run(0.5)
    assert texts(net, ALICE) == [] and net.shown(ALICE, S.PeerLeft) == []
    assert len(net.sent(ALICE)) == replies_before
    assert alice.state is State.CONNECTED


def test_secure_session_replayed_datagrams_are_all_refused():
    net = SimNet()
    alice, bob = connect(net, secure_options(), secure_options())
    for i in range(20):
        net.line(BOB, "message %d" % i)
    net.line(BOB, "/leave")          # the goodbye is captured too
    net.run(1)
    assert len(texts(net, ALICE)) == 20
    captured = net.sent(BOB, ALICE)
    net.line(ALICE, "/connect bob")
    net.run(3)
    shown = len(net.events[ALICE])
    for data in captured:                    # into the new session...
        net.inject(BOB, ALICE, data)
    net.run(1)
    assert texts(net, ALICE) == ["message %d" % i for i in range(20)]
    assert len(net.events[ALICE]) == shown and alice.state is State.CONNECTED


def test_secure_session_survives_loss():
    for seed in range(10):
        net = SimNet(loss=0.2, seed=seed)
        bob = net.add_peer("bob", BOB, **secure_options())
        net.run(8)
        alice = net.add_peer("alice", ALICE, target="bob", **secure_options())
        net.run(12)
        assert alice.state is State.CONNECTED and bob.state is State.CONNECTED, seed
        assert net.shown(ALICE, S.Connected)[0].key is not None, seed


def test_secure_session_keepalive_is_sealed():
    net = SimNet()
    alice, bob = connect(net, secure_options(keepalive=5.0), secure_options(keepalive=5.0))
    before = len(net.sent(ALICE, BOB))
    net.run(60)
    later = net.sent(ALICE, BOB)[before:]
    assert later and all(d[0] == 0xE4 for d in later)
    assert alice.state is State.CONNECTED


def test_secure_session_register_carries_key_and_token():
    net = SimNet()
    ident = new_identity()
    net.add_peer("alice", ALICE, **secure_options(ident))
    net.run(25)
    registers = [d for d in net.sent(ALICE, RELAY) if d.startswith(b'{"Register"')]
    assert ID.encode_key(ident.public).encode() in registers[0]
    assert b'"token"' not in registers[0] and b'"token"' in registers[-1]
    assert net.registry.user("alice").key == ID.encode_key(ident.public)


@pytest.mark.parametrize("drop", ["hello", "reply", "finish"])
def test_secure_session_lost_handshake_frame_is_recovered(drop):
    net = SimNet()
    kind = {"hello": 0xE1, "reply": 0xE2, "finish": 0xE3}[drop]
    dropped = []

    def drop_first(src, dst, data):
        if data[:1] == bytes([kind]) and not dropped:
            dropped.append(data)
            return True
        return False
    net.drop = drop_first
    alice, bob = connect(net, secure_options(), secure_options())
    assert dropped and alice.state is State.CONNECTED and bob.state is State.CONNECTED


def test_secure_session_spoofed_probe_from_another_port_cannot_hijack_the_path():
    """Someone on bob's IP (a CGNAT neighbour) sends probes and a fake HELLO
    from another port while alice and bob punch: the chat still comes up on
    bob's real endpoint."""
    net = SimNet()
    neighbour = (BOB[0], 6666)
    bob = net.add_peer("bob", BOB, **secure_options())
    net.run(1)
    net.block(ALICE, BOB)                      # hold both in PUNCHING for a moment
    alice = net.add_peer("alice", ALICE, target="bob", **secure_options())
    net.run(0.5)
    assert alice.state is State.PUNCHING
    for _ in range(5):
        net.inject(neighbour, ALICE, b'"Ping"')
        net.inject(neighbour, ALICE, b"\xe1" + bytes(48))
    net.run(0.1)
    net.blocked.clear()
    net.run(4)
    assert alice.state is State.CONNECTED and bob.state is State.CONNECTED
    assert net.shown(ALICE, S.Connected)[0].endpoint == "198.51.100.20:41000"
    net.line(ALICE, "to the real bob")
    net.run(1)
    assert texts(net, BOB) == ["to the real bob"]


def test_secure_session_stream_datagrams_stay_within_1200_bytes_and_a_line_arrives_whole():
    """Between two of our peers a long line is one stream message, cut
    into sealed datagrams that leave room for the relay's header within
    1,200 bytes, and shown as one line."""
    net = SimNet()
    alice, bob = connect(net, secure_options(), secure_options())
    net.line(ALICE, "x" * 5000)
    net.run(1)
    sizes = [len(d) for d in net.sent(ALICE, BOB) if d[:1] == b"\xe4"]
    assert len(sizes) > 4 and max(sizes) <= 1200 - 9 and texts(net, BOB) == ["x" * 5000]


def test_secure_session_strict_refuses_a_peer_that_cannot_encrypt():
    net = SimNet()
    alice, bob = connect(net, secure_options(strict=True), {})
    assert "bob's client does not encrypt: refused (--strict)" in lines(net, ALICE)


def test_secure_session_new_pairing_secret_restarts_the_punch():
    """The relay re-paired the two with a new secret (a stale SessionFinished
    ended the first pairing): the peer that already punched adopts it."""
    net = SimNet()
    bob = net.add_peer("bob", BOB, **secure_options())
    net.run(1)
    net.block(RELAY, ALICE)                    # alice misses the first introduction
    alice = net.add_peer("alice", ALICE, **secure_options())
    net.blocked.clear()
    net.run(1)
    net.line(BOB, "/connect alice")
    net.run(0.05)
    net.inject(ALICE, RELAY, b'"SessionFinished"')   # stale, from alice's earlier chat
    net.run(5)
    assert alice.state is State.CONNECTED and bob.state is State.CONNECTED
