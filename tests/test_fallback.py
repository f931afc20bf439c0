"""The relay fallback: the forwarder's quotas, and sessions that fall back to
the relay when punching fails and move to the direct path when it opens."""

from peerpunch import events as E
from peerpunch import protocol as P
from peerpunch import session as S
from peerpunch.effects import Send
from peerpunch.forwarder import CHANNEL_BYTES, RELAYED, RELAYED_TO, Forwarder, Limits
from peerpunch.registry import Registry
from peerpunch.session import State

from .cookies import join, padded

from .simnet import RELAY, SimNet
from .test_secure_session import secure_options

ALICE = ("198.51.100.10", 40000)
BOB = ("198.51.100.20", 41000)
CAROL = ("198.51.100.30", 42000)


def relayed_pair(net, **options):
    """bob and alice whose direct path is blocked both ways."""
    net.block(ALICE, BOB)
    bob = net.add_peer("bob", BOB, **options)
    net.run(1)
    alice = net.add_peer("alice", ALICE, target="bob", **options)
    net.run(6)
    return alice, bob


def texts(net, addr):
    return [e.text for e in net.shown(addr, S.ChatMessage)]


def test_fallback_relays_an_encrypted_chat_when_punching_fails():
    net = SimNet()
    alice, bob = relayed_pair(net, **secure_options())
    assert alice.state is State.CONNECTED and bob.state is State.CONNECTED
    (conn,) = net.shown(ALICE, S.Connected)
    assert conn.path == "relayed" and conn.key is not None
    assert 2.5 <= conn.seconds <= 4.5
    net.line(ALICE, "through the relay, sealed")
    net.line(BOB, "and back")
    net.run(1)
    assert texts(net, BOB) == ["through the relay, sealed"] and texts(net, ALICE) == ["and back"]
    to_relay = net.sent(ALICE, RELAY)
    assert any(d[0] == RELAYED_TO for d in to_relay)              # several chats: it names the session
    assert not any(b"sealed" in d for d in to_relay)              # the relay sees ciphertext
    assert net.registry.forwarder.stats["datagrams"] > 0


def test_fallback_plain_peers_relay_too_and_keepalive_holds():
    net = SimNet()
    alice, bob = relayed_pair(net, keepalive=5.0)
    assert net.shown(ALICE, S.Connected)[0].path == "relayed"
    net.run(60)
    assert alice.state is State.CONNECTED and net.shown(ALICE, S.ConnectionLost) == []


def test_fallback_moves_to_direct_when_the_path_opens_without_loss_or_duplicates():
    net = SimNet()
    alice, bob = relayed_pair(net, **secure_options())
    for i in range(5):
        net.line(ALICE, "relayed %d" % i)
    net.blocked.clear()                          # the NATs relent
    for i in range(5):
        net.line(ALICE, "during %d" % i)
        net.run(0.3)
    net.run(3)
    notices = [e.text for e in net.shown(ALICE, S.Notice)]
    assert "now direct with bob at 198.51.100.20:41000" in notices
    for i in range(5):
        net.line(ALICE, "direct %d" % i)
    net.run(1)
    expected = ["relayed %d" % i for i in range(5)] + ["during %d" % i for i in range(5)] + \
        ["direct %d" % i for i in range(5)]
    assert texts(net, BOB) == expected
    before = net.registry.forwarder.stats["datagrams"]
    net.line(ALICE, "last")
    net.run(1)
    assert net.registry.forwarder.stats["datagrams"] == before   # no longer through the relay


def test_fallback_not_used_when_the_relay_refuses_it():
    net = SimNet(forwarder=Forwarder(enabled=False))
    alice, bob = relayed_pair(net)
    net.run(6)
    assert net.shown(ALICE, S.Connected) == []
    assert net.shown(ALICE, S.Failed)[0].reason.startswith("could not reach bob")
    assert not any(d[0] == RELAYED for d in net.sent(ALICE, RELAY))


def test_fallback_peer_without_relay_feature_is_not_relayed():
    net = SimNet()
    net.block(ALICE, BOB)
    net.add_peer("bob", BOB)
    net.run(1)
    # bob registers as a seed client would: no features
    net.inject(CAROL, RELAY, b'{"Register":{"username":"seedy"}}')
    net.run(0.1)
    alice = net.add_peer("alice", ALICE, target="seedy")
    net.run(12)
    assert net.shown(ALICE, S.Connected) == [] and alice.state is State.IDLE


# -- the forwarder and the relay's side


def _register(registry, name, addr, now=0.0, features=("ext", "relay1"), echo=True):
    """Register *name* through the cookie (which proves its address); with
    *echo*, echo the token too, as the peer does."""
    token = join(registry, name, addr, now, features=features)
    if echo:
        registry.datagram_received(
            P.encode(P.Register(name, features=features, token=token)), addr, now)


def _pair(registry, echo=True):
    for name, addr in (("alice", ALICE), ("bob", BOB)):
        _register(registry, name, addr, echo=echo)
    token = registry.user("alice").token if echo else None    # a proven client proves each request
    registry.datagram_received(P.encode(P.Connect("bob", token=token)), ALICE, 0.0)


def _forwarded(effects):
    return [(e.addr, e.data) for e in effects if isinstance(e, Send)]


def test_forwarder_sends_only_to_the_partner_unchanged():
    reg = Registry()
    _pair(reg)
    frame = bytes([RELAYED]) + b"\xe4" + bytes(40)
    assert _forwarded(reg.datagram_received(frame, ALICE, 1.0)) == [(BOB, frame)]
    assert _forwarded(reg.datagram_received(frame, BOB, 1.0)) == [(ALICE, frame)]
    # a registered user with no session, and a stranger: nothing
    reg.datagram_received(b'{"Register":{"username":"carol","features":["ext"]}}', CAROL, 1.0)
    assert _forwarded(reg.datagram_received(frame, CAROL, 1.0)) == []
    assert _forwarded(reg.datagram_received(frame, ("192.0.2.9", 9), 1.0)) == []


def test_forwarder_quotas():
    limits = Limits(max_sessions=1, rate=10000, burst=10000, session_bytes=25000, idle_timeout=60.0)
    reg = Registry(forwarder=Forwarder(limits))
    _pair(reg)
    frame = bytes([RELAYED]) + bytes(999)
    passed = sum(bool(_forwarded(reg.datagram_received(frame, ALICE, 1.0))) for _ in range(20))
    assert passed == 10                                   # the burst, then the rate limit
    passed = sum(bool(_forwarded(reg.datagram_received(frame, ALICE, 3.0))) for _ in range(20))
    assert passed == 10
    passed = sum(bool(_forwarded(reg.datagram_received(frame, ALICE, 10.0))) for _ in range(20))
    assert passed == 5                                    # the 25,000-byte budget is spent
    assert reg.stats["relay_refused"] == 10 + 10 + 15
    # a second session is refused while the first holds the only allocation
    for name, addr in (("carol", CAROL), ("dave", ("198.51.100.40", 1))):
        _register(reg, name, addr, 11.0)
    reg.datagram_received(P.encode(P.Connect("dave", token=reg.user("carol").token)), CAROL, 11.0)
    assert _forwarded(reg.datagram_received(frame, CAROL, 11.0)) == []
    # ending the first session frees its allocation
    reg.datagram_received(P.encode(P.SessionFinished(token=reg.user("alice").token)), ALICE, 12.0)
    assert _forwarded(reg.datagram_received(frame, CAROL, 12.0)) != []


def test_forwarder_idle_allocations_are_freed():
    limits = Limits(max_sessions=1, rate=10 ** 6, burst=10 ** 6, session_bytes=10 ** 9, idle_timeout=30.0)
    fwd = Forwarder(limits)
    assert fwd.admit("a", 100, 0.0) is None
    assert fwd.admit("b", 100, 10.0) == "too many relayed sessions"
    assert fwd.admit("b", 100, 31.0) is None and fwd.stats["idle_freed"] == 1


def test_forwarder_refuses_oversized_and_disabled():
    assert Forwarder().admit("a", 5000, 0.0) == "datagram too large"
    assert Forwarder(enabled=False).admit("a", 10, 0.0) == "relay fallback is off"


def test_relay_announces_fallback_only_when_enabled():
    on, off = Registry(), Registry(forwarder=Forwarder(enabled=False))
    reg = P.encode(P.Register("alice", features=("ext",), token=join(on, "alice", ALICE)))
    assert P.decode(_forwarded(on.datagram_received(reg, ALICE, 0.0))[0][1]).features == \
        ("ext", "relay1", "watch1")
    reg = P.encode(P.Register("alice", features=("ext",), token=join(off, "alice", ALICE)))
    assert P.decode(_forwarded(off.datagram_received(reg, ALICE, 0.0))[0][1]).features == ("ext", "watch1")


def test_fallback_direct_path_dying_mid_chat_moves_to_the_relay():
    net = SimNet()
    bob = net.add_peer("bob", BOB, keepalive=4.0, **secure_options())
    net.run(1)
    alice = net.add_peer("alice", ALICE, target="bob", keepalive=4.0, **secure_options())
    net.run(3)
    assert net.shown(ALICE, S.Connected)[0].path == "direct"
    net.block(ALICE, BOB)                        # the NATs forget the direct path
    net.run(4 * 1.5 + 2)
    assert alice.state is State.CONNECTED and bob.state is State.CONNECTED
    notices = [e.text for e in net.shown(ALICE, S.Notice) + net.shown(BOB, S.Notice)]
    assert any("went quiet: going through the relay" in n for n in notices)
    net.line(ALICE, "after the outage")
    net.run(1)
    assert texts(net, BOB) == ["after the outage"]
    assert net.shown(ALICE, S.ConnectionLost) == [] and net.shown(BOB, S.ConnectionLost) == []


def test_forwarder_needs_both_sides_to_have_proved_their_address():
    """A spoofed Register (an extension one gets only a Cookie, which goes to
    the victim; a seed-form one lands in the seed pool) must not let the relay
    forward an attacker's bytes there."""
    reg = Registry()
    _register(reg, "attacker", ALICE)
    victim = ("192.0.2.53", 53)
    reg.datagram_received(padded(P.encode(P.Register("victim", features=("ext", "relay1"))), 200),
                          victim, 0.0)
    assert reg.user("victim") is None
    reg.datagram_received(P.encode(P.Register("victim", features=("relay1",))), victim, 0.0)
    reg.datagram_received(P.encode(P.Connect("victim", token=reg.user("attacker").token)), ALICE, 0.0)
    assert reg.user("attacker").partner is reg.user("victim")
    frame = bytes([RELAYED]) + bytes(1000)
    assert _forwarded(reg.datagram_received(frame, ALICE, 1.0)) == []
    assert reg.stats["relay_unverified"] == 1


def test_forwarder_needs_both_sides_to_ask_for_it():
    reg = Registry()
    _register(reg, "alice", ALICE)
    _register(reg, "bob", BOB, features=("ext",))                 # did not offer relay1
    reg.datagram_received(P.encode(P.Connect("bob", token=reg.user("alice").token)), ALICE, 0.0)
    assert reg.user("alice").partner is reg.user("bob")
    assert _forwarded(reg.datagram_received(bytes([RELAYED]) + b"\"Ping\"", ALICE, 1.0)) == []


def test_forwarder_caps_allocations_per_source_ip():
    limits = Limits(max_sessions=64, rate=10 ** 6, burst=10 ** 6, session_bytes=10 ** 9,
                    idle_timeout=60.0, max_per_source=2)
    reg = Registry(forwarder=Forwarder(limits))
    passed = 0
    for i in range(4):
        a, b = ("192.0.2.1", 1000 + i), ("198.51.100.%d" % (i + 1), 9)
        _register(reg, "a%d" % i, a)
        _register(reg, "b%d" % i, b)
        reg.datagram_received(P.encode(P.Connect("b%d" % i, token=reg.user("a%d" % i).token)), a, 0.0)
        passed += bool(_forwarded(reg.datagram_received(bytes([RELAYED]) + b"\"Ping\"", a, 1.0)))
    assert passed == 2


def test_a_direct_pong_during_a_relayed_handshake_waits_for_the_keys():
    """Punching failed, the relay carries the handshake, and it has not
    finished when a direct Pong arrives: nothing can be sealed yet, so the
    Pong is only a hint (it used to crash the session)."""
    net = SimNet()
    net.block(ALICE, BOB)
    def handshake(data):                                        # in either relayed form
        start = {RELAYED: 1, RELAYED_TO: 9}.get(data[0])
        return start is not None and data[start:start + 1] in (b"\xe2", b"\xe3")
    net.drop = lambda src, dst, data: handshake(data)           # the handshake never completes
    alice, bob = relayed_pair(net, **secure_options())
    assert alice.state is State.HANDSHAKING and alice.table.current_chat().peer.via_relay
    assert alice.datagram_received(P.encode(P.Pong()), BOB, net.now) == []
    assert alice.state is State.HANDSHAKING


def test_lines_typed_while_the_path_is_suspect_are_sent_and_delivered_once_it_is_back():
    """Issue 5, section 5: the direct path dies; a line typed once the peer
    has gone quiet goes on the stream anyway (the user told), and is
    delivered exactly once when the path is back -- here through the relay."""
    net = SimNet()
    bob = net.add_peer("bob", BOB, keepalive=4.0, **secure_options())
    net.run(1)
    alice = net.add_peer("alice", ALICE, target="bob", keepalive=4.0, **secure_options())
    net.run(3)
    net.block(ALICE, BOB)
    net.block(ALICE, RELAY)                      # nothing gets out for a while
    net.run(4 * S.SUSPECT_AFTER + 0.5)
    assert alice.table.current_chat().path.suspect
    net.line(ALICE, "typed into the silence")
    net.line(ALICE, "and another")
    notices = [e.text for e in net.shown(ALICE, S.Notice)]
    assert [n for n in notices if "has not been heard" in n] == [
        "(bob has not been heard for a while: sent anyway, reported if not delivered)"]
    net.run(1)
    assert texts(net, BOB) == []
    net.blocked -= {(ALICE, RELAY), (RELAY, ALICE)}
    net.run(4)
    assert texts(net, BOB) == ["typed into the silence", "and another"]
    assert not net.shown(ALICE, E.NotDelivered)
    net.run(10)
    assert texts(net, BOB) == ["typed into the silence", "and another"]     # once
    net.line(ALICE, "and now at once")
    net.run(1)
    assert texts(net, BOB)[-1] == "and now at once"


def test_lines_held_for_a_peer_that_never_comes_back_are_reported():
    net = SimNet()
    net.add_peer("bob", BOB, keepalive=4.0, **secure_options())
    net.run(1)
    alice = net.add_peer("alice", ALICE, target="bob", keepalive=4.0, **secure_options())
    net.run(3)
    net.block(ALICE, BOB)
    net.block(ALICE, RELAY)
    net.run(4 * S.SUSPECT_AFTER + 0.5)
    net.line(ALICE, "lost cause")
    net.run(4 * S.LOST_AFTER_INTERVALS)
    assert net.shown(ALICE, S.ConnectionLost)
    assert [(e.ids, e.reason) for e in net.shown(ALICE, E.NotDelivered)] == [
        ((1,), E.ENDED)]


def test_a_relayed_chat_survives_a_relay_restart_and_others_are_told_it_is_busy():
    """The relay restarts under a relayed chat: the new one knows nothing.
    The peers notice the silence, re-register naming their chat and its
    secret, the relay restores the pairing, and the relayed chat goes on
    in the same session; someone else asking for alice hears she is busy."""
    from peerpunch.registry import Registry
    net = SimNet()
    alice, bob = relayed_pair(net, keepalive=4.0, max_chats=1, **secure_options())   # one chat each
    assert net.shown(ALICE, S.Connected)[0].path == "relayed"
    net.registry = Registry()                        # restarted: every pairing forgotten
    net.run(4 * S.SUSPECT_AFTER + 2)
    assert net.registry.stats["restored"] == 1
    assert net.registry.user("alice").partner is net.registry.user("bob")
    net.line(ALICE, "after the restart")
    net.run(2)
    assert texts(net, BOB) == ["after the restart"]
    net.run(4 * S.LOST_AFTER_INTERVALS + 5)
    assert net.shown(ALICE, S.ConnectionLost) == [] and net.shown(BOB, S.ConnectionLost) == []
    assert len(net.shown(ALICE, S.Connected)) == 1       # the same session throughout
    carol = net.add_peer("carol", CAROL, target="alice", **secure_options())
    net.run(3)
    assert any("busy" in e.reason for e in net.shown(CAROL, S.Failed))
    assert alice.table.current_chat().peer.username == "bob"


def test_held_lines_go_out_as_soon_as_a_plain_chat_is_heard_again_directly():
    """A plain relayed chat whose relay goes dark: alice holds her line; when
    the direct path answers her probe (a Pong moves a plain chat), the line
    goes at once, not a keep-alive interval later."""
    net = SimNet()
    alice, bob = relayed_pair(net, keepalive=4.0)
    assert alice.table.current_chat().peer.via_relay and not alice.table.current_chat().secure.encrypted
    net.block(ALICE, RELAY)
    net.run(4 * S.SUSPECT_AFTER + 0.5)
    net.line(ALICE, "held for a while")
    net.run(0.1)
    assert texts(net, BOB) == []
    net.blocked -= {(ALICE, BOB), (BOB, ALICE)}          # the direct path opens
    net.run(S.DIRECT_RETRY + 0.5)
    assert any("now direct with bob" in e.text for e in net.shown(ALICE, S.Notice))
    assert texts(net, BOB) == ["held for a while"]


def test_a_relayed_datagram_while_requesting_asks_the_relay_again_at_once():
    """alice's PeerInfo was lost; bob, introduced, already probes through the
    relay. His relayed probe tells alice the pairing exists: she asks again
    now (at most every NUDGE_EVERY) instead of at her next retry."""
    net = SimNet()
    net.add_peer("bob", BOB, **secure_options())
    net.run(1)
    net.drop = lambda src, dst, data: dst == ALICE and data.startswith(b'{"PeerInfo"')
    alice = net.add_peer("alice", ALICE, target="bob", **secure_options())
    net.run(0.3)
    assert alice.state is State.REQUESTING
    probe = bytes([RELAYED_TO]) + bytes(CHANNEL_BYTES) + P.encode(P.Ping())   # no chat of hers
    out = alice.datagram_received(probe, RELAY, net.now)
    assert [P.decode(e.data) for e in out] == [P.Connect("bob", token=alice.relay.token)]
    assert alice.datagram_received(probe, RELAY, net.now + 0.1) == []        # rate-limited
    assert len(alice.datagram_received(probe, RELAY, net.now + S.NUDGE_EVERY)) == 1
    net.drop = None
    carol = net.add_peer("carol", CAROL, **secure_options())
    assert carol.datagram_received(probe, RELAY, net.now) == []                # not asking: ignored
