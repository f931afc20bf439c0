"""A chat dialled for a group never takes our plain lines (peerpunch.chattable's
``for_groups``), through the session router over a simulated network:
mallory, in a chat with alice who is talking to bob, makes alice dial zed;
alice's next line for bob must reach bob, never zed."""

import types

from peerpunch import events as E
from peerpunch import groupwire as W
from peerpunch.effects import Log
from peerpunch.relayclient import RequestState

from .simnet import SimNet
from .test_chattable import ScriptedRelay, info, table
from .test_multichat import ALICE, BOB, CAROL, DAVE, chatting
from .test_secure_session import connect, secure_options
from .test_waiting import until

GID = "00112233445566ff"


def _alice_talking_to_bob_and_mallory():
    net = SimNet()
    alice = net.add_peer("alice", ALICE, **secure_options())
    bob = net.add_peer("bob", BOB, **secure_options())
    mallory = net.add_peer("mallory", CAROL, **secure_options())
    zed = net.add_peer("zed", DAVE, **secure_options())        # mallory's friend
    net.run(1)
    net.line(ALICE, "/connect bob")
    until(net, chatting((alice, "bob")), 10)
    net.line(ALICE, "hello bob")
    net.line(CAROL, "/connect alice")
    until(net, chatting((mallory, "alice"), (alice, "mallory")), 10)
    return net, alice, bob, mallory, zed


def _mallory_says(net, mallory, *msgs):
    chat = mallory.chats["alice"]
    for msg in msgs:
        net._emit(CAROL, chat.post(W.encode(msg), net.now))


def _bob_only(net, alice):
    assert alice.table.current == "bob"
    net.line(ALICE, "for bob only")
    until(net, lambda: "for bob only" in [e.text for e in net.shown(BOB, E.Message)], 10)
    assert "for bob only" not in [e.text for e in net.shown(DAVE, E.Message)]


def test_groups_dialled_a_joined_list_naming_a_stranger_dials_no_one():
    net, alice, bob, mallory, zed = _alice_talking_to_bob_and_mallory()
    _mallory_says(net, mallory, W.GroupStart(GID, "#m", ["mallory", "alice"]),
                  W.GroupJoined(GID, False, ["zed"]))
    net.run(5)
    assert "zed" not in alice.chats and "zed" not in alice.relay.requests
    assert alice.stats["group_unannounced"] == 1
    _bob_only(net, alice)


def test_groups_dialled_chat_of_an_announced_member_never_becomes_current():
    """mallory announces zed (alice sees it) and names it in an answer:
    alice (the smaller name) dials zed, whose chat never takes her lines."""
    net, alice, bob, mallory, zed = _alice_talking_to_bob_and_mallory()
    _mallory_says(net, mallory, W.GroupStart(GID, "#m", ["mallory", "alice"]),
                  W.GroupAdded(GID, "zed"), W.GroupJoined(GID, True, ["zed"]))
    until(net, chatting((alice, "zed")), 15)
    assert ("group_added", {"group": "#m", "name": "mallory", "member": "zed"}) in [
        (e.what, dict(e.fields)) for e in net.shown(ALICE, E.Notice)]
    _bob_only(net, alice)
    net.line(ALICE, "/leave bob")                   # the one chat left is zed's: still not current
    until(net, lambda: "bob" not in alice.chats, 10)
    assert alice.table.current is None


class SeveralRequests(ScriptedRelay):
    """A relay client that holds several requests, each with its state."""

    def __init__(self):
        super().__init__(max_chats=4)

    def asking(self, *states):
        return next((r for r in reversed(list(self.requests.values()))
                     if not states or r.state in states), None)

    def waiting_for(self):
        return []

    def ask(self, target, now):
        self.requests[target] = types.SimpleNamespace(target=target,
                                                      state=RequestState.REQUESTING)
        return []


def test_groups_dialled_chat_never_takes_lines_typed_for_the_users_request():
    chats = table(SeveralRequests())
    chats.ask("bob", 0.0, registering=False)
    assert chats.typed("for bob", E.State.REQUESTING) == [E.Notice("queued")]
    chats.ask("zed", 0.5, registering=False, for_group=True)     # the latest request
    assert chats.asked_for() == "bob"
    chats.introduced(info("zed"), 1.0)
    assert chats.chats["zed"].outbox.lines == [] and chats.current is None
    chats.introduced(info("bob"), 2.0)
    assert chats.chats["bob"].outbox.lines == ["for bob"] and chats.current == "bob"


def test_group_member_named_like_a_group_is_not_dialled_and_no_word_is_shown():
    """A member list (the network's) may name "#x", which no chat of ours
    may have (such names are groups'): it is passed over with a log line,
    not reported as if the user had typed it."""
    net = SimNet(seed=3)
    alice, bob = connect(net, secure_options(), secure_options())
    out = alice.groups._dial("#x", net.now)
    assert [type(e) for e in out] == [Log] and "#x" in out[0].text
    assert "#x" not in alice.table.relay.requests
