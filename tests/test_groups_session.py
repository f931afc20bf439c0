"""Group chat through the session router (peerpunch.grouptable's hooks),
the real relay core and a lossy simulated network with a fake clock
(tests/simnet.py): /invite in a chat, auto-join, lines once and in order,
a non-member's forged line refused, an unencrypted chat refused."""

from peerpunch import events as E
from peerpunch import groupwire as W
from peerpunch.groups import HOLD_FOR, GroupMessage
from peerpunch.session import State

from .simnet import SimNet
from .test_multichat import ALICE, BOB, CAROL, DAVE
from .test_secure_session import secure_options
from .test_waiting import until


def _words(net, addr):
    return [(e.what, e.fields) for e in net.shown(addr, E.Notice)]


def _group(net, alice, bob, carol):
    net.line(ALICE, "/connect bob")
    until(net, lambda: "bob" in alice.chats and alice.chats["bob"].state is State.CONNECTED, 10)
    net.line(ALICE, "/invite carol")
    group = alice.groups.current_group()
    gid = group.gid

    def joined():
        return all(gid in s.groups.machine.groups and
                   len(s.groups.machine.groups[gid].joined()) == 2 for s in (alice, bob, carol))
    until(net, joined, 20)
    return group.name


def test_groups_session_three_peers_over_a_lossy_network_see_every_line_once_in_order():
    net = SimNet(loss=0.1, seed=3)
    alice = net.add_peer("alice", ALICE, **secure_options())
    bob = net.add_peer("bob", BOB, **secure_options(auto_join=True))
    carol = net.add_peer("carol", CAROL, **secure_options(auto_join=True))
    net.run(2)
    name = _group(net, alice, bob, carol)
    for n in range(20):
        for addr in (ALICE, BOB, CAROL):
            net.line(addr, "%s line %d" % (net.sessions[addr].username, n))
        net.run(0.01)
    peers = {ALICE: "alice", BOB: "bob", CAROL: "carol"}

    def got(addr):
        return [(e.sender, e.text) for e in net.shown(addr, GroupMessage) if e.group == name]
    until(net, lambda: all(len(got(a)) == 40 for a in peers), 30)
    net.run(5)
    for addr, me in peers.items():
        for other in peers.values():
            if other != me:
                assert [t for s, t in got(addr) if s == other] == \
                    ["%s line %d" % (other, n) for n in range(20)]
        assert len(got(addr)) == 40
        assert not [w for w in _words(net, addr) if w[0] in ("group_refused", "group_gone")]


def test_groups_session_a_line_forged_by_a_non_member_is_refused():
    net = SimNet()
    alice = net.add_peer("alice", ALICE, **secure_options())
    bob = net.add_peer("bob", BOB, **secure_options(auto_join=True))
    carol = net.add_peer("carol", CAROL, **secure_options(auto_join=True))
    dave = net.add_peer("dave", DAVE, **secure_options())
    net.run(2)
    name = _group(net, alice, bob, carol)
    gid = alice.groups.current_group().gid
    net.line(DAVE, "/connect bob")                # dave has a chat with bob; not a member
    until(net, lambda: "bob" in dave.chats and dave.chats["bob"].state is State.CONNECTED, 10)
    forged = W.encode(W.GroupLine(gid, 1, "I am in your group"))
    net._emit(DAVE, dave.chats["bob"].post(forged, net.now))
    net.run(HOLD_FOR + 1)
    assert not net.shown(BOB, GroupMessage)
    assert ("group_refused", dict(name="dave", count=1, group=name)) in _words(net, BOB)


def test_groups_session_an_unencrypted_chat_cannot_be_made_a_group():
    net = SimNet()
    alice = net.add_peer("alice", ALICE, **secure_options())
    net.add_peer("bob", BOB)                      # no identity: the chat is plain
    net.run(2)
    net.line(ALICE, "/connect bob")
    until(net, lambda: "bob" in alice.chats and alice.chats["bob"].state is State.CONNECTED, 10)
    net.line(ALICE, "/invite carol")
    assert ("group_cannot", dict(name="bob", why="plain")) in _words(net, ALICE)
    assert alice.groups.machine.groups == {}
    assert not [d for d in net.sent(ALICE, BOB) if b"Group" in d]
