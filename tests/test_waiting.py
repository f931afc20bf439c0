"""Waiting for someone who is not online yet, a relay that goes silent or
restarts, and the lines shown while registering and punching: the peer's
sans-I/O core on a fake clock (tests/simnet.py) or fed directly."""

import pytest

from peerpunch import console
from peerpunch import events as E
from peerpunch import protocol as P
from peerpunch import session as S
from peerpunch.forwarder import Forwarder
from peerpunch.registry import Registry
from peerpunch.session import State

from .simnet import RELAY, SimNet

ALICE = ("198.51.100.10", 40000)
BOB = ("198.51.100.20", 41000)
CAROL = ("198.51.100.30", 42000)
STEP = 0.01


def until(net, condition, limit):
    """Run *net* until *condition()* holds; return the fake seconds it took
    (fails after *limit*)."""
    start = net.now
    while not condition():
        assert net.now - start < limit, "not within %g s" % limit
        net.run(STEP)
    return net.now - start


def connected(*sessions):
    return lambda: all(s.state is State.CONNECTED for s in sessions)


def sent_kinds(net, src, dst, prefix):
    return [d for d in net.sent(src, dst) if d.startswith(prefix)]


def waiting_alice(net=None, **options):
    """alice asks for bob, who is not online: she waits."""
    net = net or SimNet()
    alice = net.add_peer("alice", ALICE, target="bob", **options)
    until(net, lambda: alice.state is State.WAITING, 5)
    return net, alice


# -- waiting for someone with a relay that keeps watches


def test_waiting_connects_when_the_target_registers_without_polling():
    net, alice = waiting_alice()
    assert [e.reason for e in net.shown(ALICE, S.Failed)] == ["Target user not found."]
    assert net.shown(ALICE, E.Waiting) == [E.Waiting("bob")]
    assert net.registry.user("alice").watching == ("bob",)
    before = len(net.sent(ALICE, RELAY))
    net.run(60)                                     # a minute of waiting
    later = net.sent(ALICE, RELAY)[before:]
    connects = [d for d in later if d.startswith(b'{"Connect"')]     # no hard polling:
    assert 1 <= len(connects) <= 60 / E.WATCHED_WAIT_RETRY             # one now and then
    every = min(S.REREGISTER_INTERVAL, S.KEEPALIVE)
    registers = [d for d in later if d.startswith(b'{"Register"')]
    assert len(registers) <= 60 / every + 1 and len(registers) + len(connects) == len(later)
    bob = net.add_peer("bob", BOB)
    assert until(net, connected(alice, bob), 3) < 0.5
    assert [e.username for e in net.shown(ALICE, S.Connected)] == ["bob"]
    assert [e.reason for e in net.shown(ALICE, S.Failed)] == ["Target user not found."]  # once
    assert len(net.shown(ALICE, E.Waiting)) == 1
    assert net.registry.stats["notifications"] == 1 and net.registry.watches() == 0


def test_waiting_after_connect_typed_while_idle_connects_when_the_target_registers():
    """/connect typed by an idle peer waits the same way as --connect."""
    net = SimNet()
    alice = net.add_peer("alice", ALICE)
    until(net, lambda: alice.state is State.IDLE, 5)
    net.line(ALICE, "/connect bob")
    until(net, lambda: alice.state is State.WAITING, 5)
    assert [e.reason for e in net.shown(ALICE, S.Failed)] == ["Target user not found."]
    assert net.shown(ALICE, E.Waiting) == [E.Waiting("bob")]
    net.run(30)
    bob = net.add_peer("bob", BOB)
    assert until(net, connected(alice, bob), 3) < 0.5
    assert [e.username for e in net.shown(ALICE, S.Connected)] == ["bob"]
    assert len(net.shown(ALICE, S.Failed)) == 1 and len(net.shown(ALICE, E.Waiting)) == 1


def test_waiting_for_a_seed_form_client_finds_it_by_asking_again():
    """A seed-form registration is never announced (it cannot prove its
    address): the waiting peer still finds it, by its gentle Connect."""
    net, alice = waiting_alice()
    net.run(3)
    net.inject(BOB, RELAY, b'{"Register":{"username":"bob"}}')      # the seed's own form
    net.run(0.1)
    assert net.sent(RELAY, BOB) == [b'"RegisterAck"']
    assert not [d for d in net.sent(RELAY, ALICE) if d.startswith(b'{"Online"')]
    start = net.now
    until(net, lambda: any(d.startswith(b'{"PeerInfo"') for d in net.sent(RELAY, ALICE)),
          E.WATCHED_WAIT_RETRY + 1)
    assert net.now - start <= E.WATCHED_WAIT_RETRY
    assert b'"PeerInfo"' in b"".join(net.sent(RELAY, BOB))        # both were introduced


LOSSES = {
    "the watch": lambda net, src, dst, data: dst == RELAY and b'"watch"' in data,
    "one Online": lambda net, src, dst, data: data.startswith(b'{"Online"'),
    "the Connect": lambda net, src, dst, data: src == ALICE and data.startswith(b'{"Connect"')
    and net.registry.user("bob") is not None,
    "alice's PeerInfo": lambda net, src, dst, data: dst == ALICE and data.startswith(b'{"PeerInfo"'),
    "bob's Register": lambda net, src, dst, data: src == BOB and data.startswith(b'{"Register"'),
}


@pytest.mark.parametrize("lost", sorted(LOSSES))
@pytest.mark.parametrize("bob_after", [0.5, 1.5, 10.0])
def test_waiting_survives_one_lost_datagram(lost, bob_after):
    net = SimNet()
    dropped = []

    def drop(src, dst, data):
        if not dropped and LOSSES[lost](net, src, dst, data):
            dropped.append(data)
            return True
        return False
    net.drop = drop
    net, alice = waiting_alice(net)
    net.run(bob_after)
    bob = net.add_peer("bob", BOB)
    assert until(net, connected(alice, bob), 3) <= 3
    assert dropped, "nothing of the kind was sent"


def test_waiting_both_onlines_lost_connects_at_the_next_reregistration():
    net = SimNet()
    net.drop = lambda src, dst, data: data.startswith(b'{"Online"') and \
        net.registry.stats["notifications"] == 1           # both copies of the notification
    net, alice = waiting_alice(net)
    bob = net.add_peer("bob", BOB)
    assert until(net, connected(alice, bob), S.KEEPALIVE + 1) > 1    # the watch's answer did it


def test_waiting_leave_stops_and_clears_the_watch():
    net, alice = waiting_alice()
    net.line(ALICE, "/leave")
    net.run(1)
    assert net.shown(ALICE, E.StoppedWaiting) == [E.StoppedWaiting("bob")]
    assert alice.state is State.IDLE and net.registry.watches() == 0
    connects = len(sent_kinds(net, ALICE, RELAY, b'{"Connect"'))
    bob = net.add_peer("bob", BOB)
    net.run(30)
    assert alice.state is State.IDLE and bob.state is State.IDLE
    assert len(sent_kinds(net, ALICE, RELAY, b'{"Connect"')) == connects
    assert net.registry.stats["notifications"] == 0


def test_waiting_shows_in_status_and_connect_again_explains():
    net, alice = waiting_alice()
    net.line(ALICE, "/status")
    net.line(ALICE, "/connect bob")
    texts = [e.text for e in net.shown(ALICE, S.Notice)]
    assert texts[-2] == "you are alice at relay 203.0.113.1:8080 (waiting); waiting for bob to come online"
    assert texts[-1] == "already waiting for bob (/leave to stop)"
    assert alice.state is State.WAITING


def test_waiting_connect_to_someone_else_stops_waiting_for_the_first():
    net = SimNet()
    carol = net.add_peer("carol", CAROL)
    net, alice = waiting_alice(net, max_chats=1)            # one at a time (else: both)
    net.line(ALICE, "/connect carol")
    assert net.shown(ALICE, E.StoppedWaiting) == [E.StoppedWaiting("bob")]
    until(net, connected(alice, carol), 3)
    assert net.registry.watches() == 0


def test_waiting_lines_typed_meanwhile_are_sent_once_connected():
    net, alice = waiting_alice()
    net.line(ALICE, "are you there?")
    bob = net.add_peer("bob", BOB)
    until(net, connected(alice, bob), 3)
    net.run(0.5)
    assert [e.text for e in net.shown(BOB, S.ChatMessage)] == ["are you there?"]


def test_waiting_someone_else_connecting_first_is_accepted():
    net, alice = waiting_alice(max_chats=1)                  # one chat (else: a second one)
    carol = net.add_peer("carol", CAROL, target="alice")
    until(net, connected(alice, carol), 3)
    assert "carol connected to you first; no longer waiting for bob" in \
        [e.text for e in net.shown(ALICE, S.Notice)]
    assert net.registry.watches() == 0
    bob = net.add_peer("bob", BOB)
    net.run(10)
    assert alice.table.current_chat().peer.username == "carol" and bob.state is State.IDLE


def test_waiting_for_each_other_the_two_requests_meet():
    net, alice = waiting_alice()
    bob = net.add_peer("bob", BOB, target="alice")          # bob wants alice too
    until(net, connected(alice, bob), 3)
    assert net.registry.stats["introductions"] == 1
    assert net.shown(BOB, S.Failed) == []


def test_waiting_both_at_once_for_each_other():
    net = SimNet()
    alice = net.add_peer("alice", ALICE, target="bob")
    bob = net.add_peer("bob", BOB, target="alice")
    until(net, connected(alice, bob), 3)


def test_waiting_for_someone_busy_is_said_and_ends():
    net = SimNet()
    net, alice = waiting_alice(net)
    net.drop = lambda src, dst, data: data.startswith(b'{"Online"') and dst == ALICE
    bob = net.add_peer("bob", BOB, max_chats=1)            # one chat: carol's makes him busy
    carol = net.add_peer("carol", CAROL, target="bob")     # she gets him first
    until(net, connected(bob, carol), 3)
    net.drop = None
    net.run(S.KEEPALIVE + 2)                               # alice's watch is answered, she asks
    assert [e.reason for e in net.shown(ALICE, S.Failed)] == ["Target user not found.",
                                                              "Target user is busy."]
    assert alice.state is State.IDLE and net.registry.watches() == 0


def test_waiting_survives_a_relay_restart_and_connects_when_the_target_reregisters():
    """The relay restarts and knows nobody: alice's --connect bob finds no
    bob until his next re-registration; she waits and is connected within
    3 s of it, with no action from either."""
    net = SimNet()
    bob = net.add_peer("bob", BOB)
    net.run(5)
    net.registry = Registry()                              # restarted: nobody is known
    restarted = net.now
    net, alice = waiting_alice(net)
    until(net, lambda: net.registry.user("bob") is not None, S.KEEPALIVE + 1)
    back = net.now - restarted
    assert back <= min(S.REREGISTER_INTERVAL, S.KEEPALIVE) + 0.1
    assert until(net, connected(alice, bob), 3) < 1


def test_waiting_relay_restarting_under_a_waiting_peer_relearns_the_watch():
    net, alice = waiting_alice()
    net.registry = Registry()
    until(net, lambda: net.registry.watches() == 1, S.KEEPALIVE + 3)
    bob = net.add_peer("bob", BOB)
    until(net, connected(alice, bob), 3)


# -- waiting with a relay that keeps no watches


def _fake_relay(session, answer, seconds, ack):
    """Drive *session* for *seconds* against a relay that acks Registers with
    *ack* and answers each Connect with *answer*; return (what was sent as
    (time, bytes), the events shown)."""
    now, sent, shown = 0.0, [], []
    pending = list(session.start(now))
    while True:
        while pending:
            effect = pending.pop(0)
            if not isinstance(effect, S.Send):
                shown.append(effect)
                continue
            sent.append((now, effect.data))
            reply = ack if effect.data.startswith(b'{"Register"') else \
                answer if effect.data.startswith(b'{"Connect"') else None
            if reply is not None:
                pending += session.datagram_received(reply, RELAY, now)
        deadline = session.next_deadline()
        if deadline is None or deadline > seconds:
            return sent, shown
        now = max(now, deadline)
        pending = list(session.tick(now))


EXT_ACK_WITHOUT_WATCHES = b'{"RegisterAck":{"features":["ext","relay1"],"token":"%s"}}' % (b"ab" * 16)


@pytest.mark.parametrize("ack", [b'"RegisterAck"', EXT_ACK_WITHOUT_WATCHES],
                         ids=["seed relay", "ext relay without watches"])
def test_waiting_without_watches_asks_again_gently(ack):
    alice = S.PeerSession("alice", RELAY, target="bob")
    sent, shown = _fake_relay(alice, b'"TargetNotFound"', 60, ack)
    assert alice.state is State.WAITING
    connects = [t for t, d in sent if d.startswith(b'{"Connect"')]
    gaps = [b - a for a, b in zip(connects, connects[1:])]
    assert len(connects) >= 10 and all(E.WAIT_RETRY - 0.01 <= g <= E.WAIT_RETRY + 0.5 for g in gaps)
    assert not [d for t, d in sent if b'"watch"' in d]
    if ack == b'"RegisterAck"':
        assert {d for t, d in sent if d.startswith(b'{"Connect"')} == \
            {b'{"Connect":{"target_username":"bob"}}'}
    assert [e.reason for e in shown if isinstance(e, S.Failed)] == ["Target user not found."]
    info = P.encode(P.PeerInfo(peer="198.51.100.20:41000", username="bob"))
    alice.datagram_received(info, RELAY, 61.0)
    assert alice.state is State.PUNCHING


# -- a relay that stops answering


@pytest.mark.parametrize("keepalive", [1.0, 2.0, 5.0, 15.0])
def test_relay_not_answering_is_said_within_three_keepalives_and_back_when_it_answers(keepalive):
    net = SimNet()
    alice = net.add_peer("alice", ALICE, keepalive=keepalive)
    net.run(0.001)                     # just acknowledged: the worst moment for the relay to go
    net.block(ALICE, RELAY)
    took = until(net, lambda: net.shown(ALICE, E.RelayNotAnswering), 3 * keepalive + 0.01)
    assert took <= 3 * keepalive
    net.line(ALICE, "/status")
    assert net.shown(ALICE, S.Notice)[-1].text.endswith("(idle); the relay is not answering")
    before = len(net.sent(ALICE, RELAY))
    net.run(60)
    assert len(net.shown(ALICE, E.RelayNotAnswering)) == 1
    assert len(net.sent(ALICE, RELAY)) - before <= 60 / min(keepalive, E.RELAY_RETRY_MAX) + 1
    net.blocked.clear()
    assert until(net, lambda: net.shown(ALICE, E.RelayBack), E.RELAY_RETRY_MAX + 0.1)
    assert net.shown(ALICE, E.RelayBack) == [E.RelayBack("203.0.113.1:8080")]
    net.line(ALICE, "/status")
    assert net.shown(ALICE, S.Notice)[-1].text.endswith("(idle)")


def test_relay_not_answering_one_lost_ack_says_nothing():
    net = SimNet()
    net.add_peer("alice", ALICE)
    dropped = []

    def drop(src, dst, data):
        if src == RELAY and data.startswith(b'{"RegisterAck"') and net.now > 1010 and not dropped:
            dropped.append(data)
            return True
        return False
    net.drop = drop
    net.run(120)
    assert dropped and net.shown(ALICE, E.RelayNotAnswering) == []


def test_relay_not_answering_during_a_chat_is_said_and_the_chat_goes_on():
    net = SimNet(forwarder=Forwarder(enabled=False))
    bob = net.add_peer("bob", BOB, keepalive=5.0)
    net.run(1)
    alice = net.add_peer("alice", ALICE, target="bob", keepalive=5.0)
    until(net, connected(alice, bob), 3)
    net.block(ALICE, RELAY)
    net.block(BOB, RELAY)
    net.run(20)
    for addr in (ALICE, BOB):
        assert len(net.shown(addr, E.RelayNotAnswering)) == 1
    net.line(ALICE, "still here?")
    net.line(BOB, "yes")
    net.run(1)
    assert [e.text for e in net.shown(BOB, S.ChatMessage)] == ["still here?"]
    assert [e.text for e in net.shown(ALICE, S.ChatMessage)] == ["yes"]
    assert net.shown(ALICE, S.ConnectionLost) == [] and alice.state is State.CONNECTED
    net.blocked.clear()
    net.run(E.RELAY_RETRY_MAX + 0.1)
    assert net.shown(ALICE, E.RelayBack) and net.shown(BOB, E.RelayBack)


def test_relay_restart_idle_peer_is_registered_again_within_one_interval():
    net = SimNet()
    net.add_peer("bob", BOB)
    net.run(3)
    net.registry = Registry()
    took = until(net, lambda: net.registry.user("bob") is not None, 20)
    assert took <= min(S.REREGISTER_INTERVAL, S.KEEPALIVE)


# -- registering and punching say what they are doing


def test_registering_says_it_starts_and_when_it_is_slow():
    net = SimNet()
    net.block(ALICE, RELAY)
    net.add_peer("alice", ALICE)
    assert net.shown(ALICE, E.Registering) == [E.Registering("alice", "203.0.113.1:8080")]
    net.run(E.SLOW_AFTER - 0.01)
    assert net.shown(ALICE, E.StillRegistering) == []
    net.run(S.REGISTER_TIMEOUT)
    assert net.shown(ALICE, E.StillRegistering) == [E.StillRegistering("203.0.113.1:8080", E.SLOW_AFTER)]
    assert net.shown(ALICE, S.Closed)[0].reason.text.startswith("no answer from the relay at 203.0.113.1:8080")


def test_registering_quickly_says_nothing_more():
    net = SimNet()
    net.add_peer("alice", ALICE)
    net.run(30)
    assert net.shown(ALICE, E.StillRegistering) == []


def test_punching_says_when_it_is_slow_and_why_it_failed():
    net = SimNet(forwarder=Forwarder(enabled=False))
    net.block(ALICE, BOB)
    net.add_peer("bob", BOB)
    net.run(1)
    net.add_peer("alice", ALICE, target="bob")
    net.run(S.PUNCH_TIMEOUT + 2)
    assert net.shown(ALICE, E.StillPunching) == [E.StillPunching("bob", E.SLOW_AFTER)]
    assert net.shown(ALICE, S.Failed)[0].reason.startswith("could not reach bob at ")


def test_punching_quickly_says_nothing_more():
    net = SimNet()
    net.add_peer("bob", BOB)
    net.run(1)
    net.add_peer("alice", ALICE, target="bob")
    net.run(10)
    assert net.shown(ALICE, E.StillPunching) == [] and net.shown(BOB, E.StillPunching) == []


# -- how it reads


@pytest.mark.parametrize("event, line", [
    (E.Waiting("bob"), "waiting for bob to come online (/leave or Ctrl+C to stop)"),
    (E.StoppedWaiting("bob"), "stopped waiting for bob"),
    (E.Registering("alice", "192.0.2.1:8080"), "registering as alice with relay 192.0.2.1:8080 ..."),
    (E.StillRegistering("192.0.2.1:8080", 2.0), "still registering with relay 192.0.2.1:8080 (2 s) ..."),
    (E.StillPunching("bob", 2.0), "still trying to reach bob (2 s) ..."),
    (E.RelayNotAnswering("192.0.2.1:8080", 6.0),
     "relay 192.0.2.1:8080 is not answering (nothing for 6 s); still trying"),
    (E.RelayBack("192.0.2.1:8080"), "relay 192.0.2.1:8080 is back"),
    (E.RelayStopping("192.0.2.1:8080"),
     "relay 192.0.2.1:8080 says it is stopping; registering again as soon as it is back"),
    (E.Waiting("b\x1b[2Jb"), "waiting for b\\x1b[2Jb to come online (/leave or Ctrl+C to stop)"),
])
def test_console_words_the_new_events(event, line):
    assert console.format_event(event) == line


# -- a relay that stops cleanly says so


def _restart_with_farewell(net):
    net._emit(RELAY, net.registry.farewell())        # what relay.py sends as it stops
    net.registry = Registry()                        # ...and a new one takes its place
    return net.now


def test_relay_stopping_cleanly_has_its_clients_back_within_seconds():
    """A clean restart: bob is told, and is registered with the new relay
    within a second or two; alice, asking for him right after the restart,
    waits that long and is connected."""
    net = SimNet()
    bob = net.add_peer("bob", BOB)
    net.run(5)
    restarted = _restart_with_farewell(net)
    alice = net.add_peer("alice", ALICE, target="bob")
    until(net, connected(alice, bob), E.RELAY_STOPPING_RETRY[1] + 1)
    assert net.shown(BOB, E.RelayStopping) == [E.RelayStopping("203.0.113.1:8080")]
    assert net.shown(BOB, E.RelayBack) == [E.RelayBack("203.0.113.1:8080")]
    assert net.shown(BOB, E.RelayNotAnswering) == []
    assert net.now - restarted <= E.RELAY_STOPPING_RETRY[1] + 1


def test_relay_stopping_for_long_says_once_and_retries_steadily():
    net = SimNet()
    net.add_peer("bob", BOB)
    net.run(5)
    net._emit(RELAY, net.registry.farewell())
    net.run(0)
    net.block(BOB, RELAY)                            # and it stays away for a minute
    before = len(net.sent(BOB, RELAY))
    net.run(60)
    assert len(net.shown(BOB, E.RelayStopping)) == 1 and net.shown(BOB, E.RelayNotAnswering) == []
    assert len(net.sent(BOB, RELAY)) - before <= 60 / E.RELAY_RETRY_MAX + 4
    net.blocked.clear()
    net.registry = Registry()
    until(net, lambda: net.registry.user("bob") is not None, E.RELAY_RETRY_MAX + 0.1)


def test_waiting_lines_typed_for_the_target_never_go_to_someone_else():
    net, alice = waiting_alice(max_chats=1)
    net.line(ALICE, "bob, here is the door code")
    carol = net.add_peer("carol", CAROL, target="alice")
    until(net, connected(alice, carol), 3)
    net.run(1)
    assert "1 queued line(s) for bob were not sent" in [e.text for e in net.shown(ALICE, S.Notice)]
    assert net.shown(CAROL, S.ChatMessage) == []


@pytest.mark.parametrize("with_nonce", [False, True])
def test_relay_stopping_again_and_again_is_said_once_a_minute(with_nonce):
    """Forged (no nonce): never heeded. A relay that says it again and again
    (with the nonce: a relay restarting in a loop) is heeded once a minute."""
    net = SimNet()
    bob = net.add_peer("bob", BOB)
    net.run(5)
    stopping = P.encode(P.Error(code=P.ERROR_RELAY_STOPPING, message="stopping",
                                nonce=bob.relay.auth.nonce if with_nonce else None))
    for _ in range(60):                              # one a second for a minute
        net._emit(BOB, bob.datagram_received(stopping, RELAY, net.now))
        net.run(1)
    said = len(net.shown(BOB, E.RelayStopping))
    assert (1 <= said <= 2) if with_nonce else said == 0
    assert len(net.shown(BOB, E.RelayBack)) <= said
