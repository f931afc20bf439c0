"""Several chats at once (issue 11, section 2), end to end through the real
relay core (tests/simnet.py, fake clock): three peers in two chats each,
/msg, /switch, /chats, /leave NAME; two relayed chats of one client, told
apart by their channel; a restarted relay relearns both chats; a refusal
that names its target ends that request only; a seed relay keeps us at one."""

from peerpunch import events as E
from peerpunch import forwarder as F
from peerpunch import protocol as P
from peerpunch.registry import Registry
from peerpunch.effects import Send
from peerpunch.relayclient import RequestEnded
from peerpunch.session import State

from .simnet import RELAY, SimNet
from .test_secure_session import secure_options
from .test_waiting import connected, until

ALICE = ("198.51.100.10", 40000)
BOB = ("198.51.100.20", 41000)
CAROL = ("198.51.100.30", 42000)
DAVE = ("198.51.100.40", 43000)


def lines(net, addr):
    return [(e.partner, e.text) for e in net.shown(addr, E.Message)]


def notices(net, addr):
    return [e.text for e in net.shown(addr, E.Notice)]


def chatting(*pairs):
    """Every (session, partner) pair has a connected chat."""
    return lambda: all(partner in s.chats and s.chats[partner].state is State.CONNECTED
                       for s, partner in pairs)


def triangle(net=None, **options):
    """alice, bob and carol, each in a chat with the other two."""
    net = net or SimNet()
    alice = net.add_peer("alice", ALICE, **secure_options(**options))
    bob = net.add_peer("bob", BOB, **secure_options(**options))
    carol = net.add_peer("carol", CAROL, **secure_options(**options))
    net.run(1)
    net.line(ALICE, "/connect bob")
    net.line(BOB, "/connect carol")
    net.line(CAROL, "/connect alice")
    until(net, chatting((alice, "bob"), (alice, "carol"), (bob, "alice"), (bob, "carol"),
                        (carol, "alice"), (carol, "bob")), 10)
    return net, alice, bob, carol


def test_multichat_three_peers_hold_two_chats_each_through_the_real_relay():
    net, alice, bob, carol = triangle()
    assert net.registry.sessions() == 3
    for session in (alice, bob, carol):
        assert session.relay.max_chats == 16 and len(session.chats) == 2
    net.line(ALICE, "/msg bob to bob only")
    net.line(ALICE, "/msg carol to carol only")
    net.line(BOB, "/msg carol bob to carol")
    net.run(1)
    assert lines(net, BOB) == [("alice", "to bob only")]
    assert lines(net, CAROL) == [("alice", "to carol only"), ("bob", "bob to carol")]
    # plain lines go to the chat alice asked for, then where /switch says
    assert alice.table.current == "bob"
    net.line(ALICE, "plain one")
    net.line(ALICE, "/switch carol")
    net.line(ALICE, "plain two")
    net.run(1)
    other = "carol"
    assert lines(net, BOB)[-1] == ("alice", "plain one")
    assert lines(net, CAROL)[-1] == ("alice", "plain two")
    rows = net.shown(ALICE, E.Notice)
    net.line(ALICE, "/chats")
    (listing,) = [e.fields["rows"] for e in net.shown(ALICE, E.Notice)[len(rows):]
                  if e.what == "chats"]
    assert sorted(r[0] for r in listing) == ["bob", "carol"]
    assert all(r[1] == "connected" and not r[2] and r[3] and r[5] > 0 for r in listing)  # direct, sealed
    assert [r[0] for r in listing if r[4]] == [other]                                    # the current one
    text = net.shown(ALICE, E.Notice)[-1].text
    assert "bob: connected, direct, encrypted, rtt" in text and "* " + other in text


def test_multichat_leave_one_chat_keeps_the_other_and_the_relay_ends_only_that_one():
    net, alice, bob, carol = triangle()
    net.line(ALICE, "/leave bob")
    until(net, lambda: "alice" not in bob.chats, 5)
    assert list(alice.chats) == ["carol"] and alice.table.current == "carol"
    assert "plain lines now go to carol" in notices(net, ALICE)[-1]
    assert net.registry.sessions() == 2            # bob-carol and carol-alice live on
    net.line(ALICE, "still here?")
    net.run(1)
    assert lines(net, CAROL)[-1] == ("alice", "still here?")
    assert net.shown(CAROL, E.PeerLeft) == [] and carol.chats["alice"].state is State.CONNECTED
    assert net.shown(BOB, E.PeerLeft) == [E.PeerLeft("alice")]


def test_multichat_two_relayed_chats_of_one_client_are_told_apart_by_their_channel():
    net = SimNet()
    net.block(ALICE, BOB)
    net.block(ALICE, CAROL)
    alice = net.add_peer("alice", ALICE, **secure_options())
    bob = net.add_peer("bob", BOB, **secure_options())
    carol = net.add_peer("carol", CAROL, **secure_options())
    net.run(1)
    net.line(ALICE, "/connect bob")
    net.line(ALICE, "/connect carol")
    until(net, chatting((alice, "bob"), (alice, "carol")), 15)
    assert all(chat.peer.via_relay for chat in alice.chats.values())
    net.line(ALICE, "/msg bob relayed to bob")
    net.line(ALICE, "/msg carol relayed to carol")
    net.line(BOB, "from bob")
    net.line(CAROL, "from carol")
    net.run(1)
    assert lines(net, BOB) == [("alice", "relayed to bob")]
    assert lines(net, CAROL) == [("alice", "relayed to carol")]
    assert sorted(lines(net, ALICE)) == [("bob", "from bob"), ("carol", "from carol")]
    channels = {bytes(d[1:1 + F.CHANNEL_BYTES]) for d in net.sent(ALICE, RELAY)
                if d[:1] == bytes([F.RELAYED_TO])}
    assert channels == {F.channel_id(alice.chats[n].peer.secret) for n in ("bob", "carol")}
    assert not any(d[:1] == bytes([F.RELAYED]) for d in net.sent(ALICE, RELAY))


def test_multichat_a_restarted_relay_relearns_both_chats():
    net, alice, bob, carol = triangle(keepalive=4.0)
    net.registry = Registry()                      # restarted: every pairing forgotten
    until(net, lambda: net.registry.sessions() == 3, 4 * 3 * 4.0)
    register = [P.decode(d) for d in net.sent(ALICE, RELAY) if d.startswith(b'{"Register"')][-1]
    assert sorted(register.chats) == sorted(alice.relay.chats.items())     # both, with secrets
    assert (register.partner, register.session) == register.chats[0]      # for older relays
    assert register.max_chats == 16
    net.line(ALICE, "/msg bob after the restart")
    net.line(ALICE, "/msg carol after the restart too")
    net.run(2)
    assert lines(net, BOB)[-1] == ("alice", "after the restart")
    assert lines(net, CAROL)[-1] == ("alice", "after the restart too")
    assert net.shown(ALICE, E.ConnectionLost) == [] and len(net.shown(ALICE, E.Connected)) == 2


def test_multichat_a_refusal_naming_its_target_ends_that_request_only():
    net = SimNet()
    bob = net.add_peer("bob", BOB, max_chats=1)     # one chat: with dave he is busy
    dave = net.add_peer("dave", DAVE, target="bob")
    carol = net.add_peer("carol", CAROL)
    until(net, connected(bob, dave), 5)
    alice = net.add_peer("alice", ALICE)
    net.run(1)
    net.line(ALICE, "/connect nobody")             # not found: a wait
    net.line(ALICE, "/connect bob")                # busy
    net.line(ALICE, "/connect carol")              # introduced
    until(net, chatting((alice, "carol")), 5)
    assert [e.reason for e in net.shown(ALICE, E.Failed)] == ["Target user not found.",
                                                              "Target user is busy."]
    assert list(alice.relay.requests) == ["nobody", "carol"] and alice.relay.waits_for() == "nobody"
    assert "alice" in carol.chats and "alice" not in bob.chats


def test_multichat_a_refusal_without_target_is_for_the_only_request_asking():
    from .test_relayclient import NONCE, events, registered
    relay = registered()
    relay.max_chats = 16
    relay.ask("bob", 3.0)
    relay.ask("carol", 3.0)
    busy = P.encode(P.TargetBusy(nonce=NONCE))
    assert events(relay.datagram_received(busy, 3.1)) == []          # which one? neither
    assert list(relay.requests) == ["bob", "carol"]
    out = relay.datagram_received(P.encode(P.TargetBusy(nonce=NONCE, target="carol")), 3.2)
    assert events(out) == [E.Failed("target_busy"), RequestEnded("carol")]
    relay.chat_finished("carol", 3.2)
    assert events(relay.datagram_received(busy, 3.3)) == [E.Failed("target_busy"),
                                                          RequestEnded("bob")]


def test_multichat_a_relay_that_grants_one_chat_keeps_us_at_one():
    net = SimNet()
    alice = net.add_peer("alice", ALICE)
    net.add_peer("bob", BOB)
    net.add_peer("carol", CAROL)
    net.run(1)
    alice.relay.max_chats = 1                       # as a relay of the previous version says
    net.line(ALICE, "/connect bob")
    until(net, chatting((alice, "bob")), 5)
    net.line(ALICE, "/connect carol")
    assert net.shown(ALICE, E.Notice)[-1].what == "in_chat"
    assert list(alice.chats) == ["bob"] and "carol" not in alice.relay.requests


def test_multichat_at_the_bound_a_connect_is_refused_here_and_a_repeat_said_once():
    net = SimNet()
    alice = net.add_peer("alice", ALICE, max_chats=2)          # the relay grants what we ask
    for name, addr in (("bob", BOB), ("carol", CAROL), ("dave", DAVE)):
        net.add_peer(name, addr)
    net.run(1)
    assert alice.relay.max_chats == 2
    net.line(ALICE, "/connect bob")
    net.line(ALICE, "/connect bob")
    assert net.shown(ALICE, E.Notice)[-1].text == "already asking the relay for bob"
    net.line(ALICE, "/connect carol")
    until(net, chatting((alice, "bob"), (alice, "carol")), 5)
    net.line(ALICE, "/connect dave")
    assert net.shown(ALICE, E.Notice)[-1].text == \
        "already in 2 chats (or asking), as many as the relay allows; /leave one first"
    net.line(DAVE, "/connect alice")                            # and the relay says she is busy
    net.run(2)
    assert [e.reason for e in net.shown(DAVE, E.Failed)] == ["Target user is busy."]
    assert sorted(alice.chats) == ["bob", "carol"]
    net.line(ALICE, "/leave carol")
    net.line(ALICE, "/connect dave")
    until(net, chatting((alice, "bob"), (alice, "dave")), 5)


def test_multichat_the_relays_too_many_chats_names_the_request_it_ends():
    from peerpunch.console import format_event
    from .test_relayclient import NONCE, events, registered
    relay = registered()
    relay.max_chats = 2
    relay.ask("dave", 3.0)
    error = P.Error(code=P.ERROR_TOO_MANY_CHATS, message="too many chats", nonce=NONCE, target="dave")
    out = events(relay.datagram_received(P.encode(error), 3.1))
    assert out[1] == RequestEnded("dave")
    assert format_event(out[0]) == \
        "the relay says you hold as many chats as you may (asking for dave)"


def test_multichat_a_register_names_as_many_chats_as_fit_in_a_datagram():
    from .test_relayclient import registered
    relay = registered()
    names = ["%s%02d" % ("n" * 30, i) for i in range(16)]        # the longest names there are
    for i, name in enumerate(names):
        relay.chat_began(name, "%032x" % i)
    data = relay.register_now().data
    assert len(data) <= P.MAX_DATAGRAM
    register = P.decode(data)
    assert 8 <= len(register.chats) < 16 and register.max_chats == 16
    assert register.chats == tuple((n, "%032x" % i) for i, n in enumerate(names))[:len(register.chats)]
    assert (register.partner, register.session) == register.chats[0]
    for name in names[4:]:
        relay.chat_finished(name, 5.0)
    assert len(P.decode(relay.register_now().data).chats) == 4          # all of them, once they fit


def test_multichat_an_incoming_chat_does_not_take_the_plain_lines():
    net = SimNet()
    alice = net.add_peer("alice", ALICE, **secure_options())
    bob = net.add_peer("bob", BOB, **secure_options())
    mallory = net.add_peer("mallory", DAVE, **secure_options())
    net.run(1)
    net.line(ALICE, "/connect bob")
    until(net, chatting((alice, "bob"), (bob, "alice")), 10)
    net.line(DAVE, "/connect alice")
    until(net, chatting((alice, "mallory"), (mallory, "alice")), 10)
    assert alice.table.current == "bob"
    assert "mallory is opening a chat with you (plain lines still go to bob): /switch mallory" \
        " or /msg mallory TEXT to talk to them" in notices(net, ALICE)
    net.line(ALICE, "for bob only")
    net.line(ALICE, "/msg mallory hello mallory")
    net.run(1)
    assert lines(net, BOB) == [("alice", "for bob only")]
    assert lines(net, DAVE) == [("alice", "hello mallory")]


def test_multichat_when_the_current_chat_ends_among_several_plain_lines_are_refused():
    net = SimNet()
    alice = net.add_peer("alice", ALICE, **secure_options())
    for name, addr in (("bob", BOB), ("carol", CAROL), ("dave", DAVE)):
        net.add_peer(name, addr, **secure_options())
    net.run(1)
    net.line(ALICE, "/connect bob")
    net.line(CAROL, "/connect alice")
    net.line(DAVE, "/connect alice")
    until(net, lambda: sorted(n for n, c in alice.chats.items()
                              if c.state is State.CONNECTED) == ["bob", "carol", "dave"], 10)
    assert alice.table.current == "bob"
    net.line(BOB, "/leave")
    until(net, lambda: "bob" not in alice.chats, 5)
    assert alice.table.current is None
    assert notices(net, ALICE)[-1] == \
        "plain lines now go to no one: /switch NAME or /msg NAME TEXT (chats: carol, dave)"
    net.line(ALICE, "to whom?")
    net.run(1)
    assert notices(net, ALICE)[-1].startswith("not sent: which chat?")
    assert lines(net, CAROL) == [] and lines(net, DAVE) == []
    net.line(ALICE, "/switch dave")
    net.line(ALICE, "to dave")
    net.run(1)
    assert lines(net, DAVE) == [("alice", "to dave")] and lines(net, CAROL) == []


def test_multichat_trust_and_verify_take_a_name():
    from peerpunch import securing as SC
    net, alice, bob, carol = triangle()
    net.line(ALICE, "/switch bob")
    net.line(ALICE, "/verify carol")
    net.line(ALICE, "/trust carol")
    net.line(ALICE, "/verify nobody")
    shown = net.shown(ALICE)
    code = [e for e in shown if isinstance(e, SC.SafetyCode)][-1]
    assert code == ("carol", carol.chats["alice"].verify().code)      # the code both see
    assert code.code != bob.chats["alice"].verify().code
    assert [e.partner for e in shown if isinstance(e, SC.NothingToTrust)] == ["carol"]
    assert notices(net, ALICE)[-1] == "no chat with nobody (/chats lists them)"


def test_multichat_the_second_partner_roams_and_the_chat_follows():
    net, alice, bob, carol = triangle()
    sessions = {"bob": bob, "carol": carol}
    for partner in list(alice.chats)[::-1]:            # the one tried last first
        chat = alice.chats[partner]
        new = (chat.peer.addr[0], chat.peer.addr[1] + 7)
        frame = sessions[partner].chats["alice"].secure.seal(P.Ping())
        dropped = alice.stats["dropped"]
        out = alice.datagram_received(frame, new, net.now)
        assert chat.peer.addr == new and alice.stats["dropped"] == dropped
        assert [e.addr for e in out if isinstance(e, Send)] == [new]
    forged = bytes([frame[0]]) + bytes(len(frame) - 1)
    dropped = alice.stats["dropped"]
    alice.datagram_received(forged, ("203.0.113.9", 5000), net.now)
    assert alice.stats["dropped"] == dropped + 1        # one drop, however many chats tried


def test_multichat_a_one_byte_relayed_datagram_from_a_relay_granting_several_is_dropped():
    net, alice, bob, carol = triangle()
    frame = bob.chats["alice"].secure.seal(P.Ping())
    out = alice.datagram_received(bytes([F.RELAYED]) + frame, RELAY, net.now)
    assert out == [] and alice.stats["forged_relayed"] == 1


def test_multichat_an_incoming_chat_while_we_ask_for_another_is_not_current():
    net = SimNet()
    alice = net.add_peer("alice", ALICE, **secure_options())
    net.add_peer("mallory", DAVE, **secure_options())
    net.run(1)
    net.line(ALICE, "/connect bob")                # not online yet: a wait
    net.run(1)
    net.line(DAVE, "/connect alice")
    until(net, chatting((alice, "mallory")), 10)
    assert alice.table.current is None and alice.relay.waits_for() == "bob"
    assert any("(plain lines still go to no one): /switch mallory" in t for t in notices(net, ALICE))
    net.line(ALICE, "meant for bob")
    assert notices(net, ALICE)[-1].startswith("not sent: which chat?")
    bob = net.add_peer("bob", BOB, **secure_options())
    until(net, chatting((alice, "bob"), (bob, "alice")), 10)
    assert alice.table.current == "bob"
    net.line(ALICE, "now for bob")
    net.run(1)
    assert lines(net, BOB) == [("alice", "now for bob")] and lines(net, DAVE) == []
