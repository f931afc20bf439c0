"""The router emits events.ChatList when the chats, a row or the current
target changed, at most once per call and never when nothing did (issue
13), through the real relay core (tests/simnet.py, fake clock)."""

from peerpunch import chatlist
from peerpunch import events as E
from peerpunch.events import ChatRow

from .simnet import SimNet
from .test_consent import asked, chatting
from .test_fallback import relayed_pair
from .test_multichat import ALICE, BOB, CAROL
from .test_secure_session import secure_options
from .test_waiting import until


def lists(net, addr, start=0):
    return [e for e in net.shown(addr)[start:] if type(e) is E.ChatList]


def last(net, addr):
    seen = lists(net, addr)
    return seen[-1] if seen else E.ChatList((), None)


class Counting:
    """Every call of the router, and how many ChatLists each returned."""

    def __init__(self, session):
        self.per_call = []
        for name in ("datagram_received", "tick", "handle_line"):
            method = getattr(session, name)
            setattr(session, name, self._counted(method))

    def _counted(self, method):
        def call(*args, **kwargs):
            out = method(*args, **kwargs)
            self.per_call.append(sum(type(e) is E.ChatList for e in out))
            return out
        return call


def pair(**options):
    net = SimNet()
    bob = net.add_peer("bob", BOB, **secure_options(**options))
    alice = net.add_peer("alice", ALICE, **secure_options(**options))
    net.run(1)
    return net, alice, bob


def test_chatlist_follows_a_connect_from_punching_to_connected_and_at_most_once_per_call():
    net, alice, bob = pair()
    counting = Counting(alice)
    assert lists(net, ALICE) == []                     # registering changed no chat
    net.line(ALICE, "/connect bob")
    until(net, chatting(alice, "bob"), 10)
    net.run(1)
    seen = lists(net, ALICE)
    assert seen[0].rows == (ChatRow("bob", "chat", "punching", None, False, None),)
    assert seen[0].current == "bob"
    fingerprint = net.shown(ALICE, E.Connected)[0].key
    assert seen[-1] == E.ChatList((ChatRow("bob", "chat", "connected", "direct", True,
                                           fingerprint),), "bob")
    assert [r.rows[0].state for r in seen] == ["punching", "handshaking", "connected"]
    assert max(counting.per_call) == 1
    assert all(a != b for a, b in zip(seen, seen[1:]))          # each one a change
    (bobs,) = [e for e in lists(net, BOB) if e.rows[0].state == "connected"]
    assert bobs.current == "alice" and bobs.rows[0].key is not None


def test_chatlist_none_while_nothing_changes_over_keepalives_and_lines(monkeypatch):
    net, alice, bob = pair(keepalive=2.0)
    net.line(ALICE, "/connect bob")
    until(net, chatting(alice, "bob"), 10)
    net.run(1)
    before = len(lists(net, ALICE)), len(lists(net, BOB))
    built = []
    real = chatlist.listing
    monkeypatch.setattr(chatlist, "listing", lambda s: built.append(1) or real(s))
    net.run(60)                                        # keep-alives only: not even looked at
    assert built == []
    for i in range(200):
        net.line(ALICE, "line %d" % i)
        net.line(BOB, "answer %d" % i)
        net.run(0.05)
    net.run(2)
    assert (len(lists(net, ALICE)), len(lists(net, BOB))) == before
    assert len(net.shown(BOB, E.Message)) == 200


def test_chatlist_a_relayed_chat_turns_direct():
    net = SimNet()
    alice, bob = relayed_pair(net, **secure_options())
    assert last(net, ALICE).rows[0].path == "relayed"
    net.blocked.clear()                                # the NATs relent
    until(net, lambda: last(net, ALICE).rows[0].path == "direct", 10)
    assert [r.rows[0].path for r in lists(net, ALICE)][-2:] == ["relayed", "direct"]


def test_chatlist_a_second_chat_switch_and_chat_end():
    net, alice, bob = pair()
    carol = net.add_peer("carol", CAROL, **secure_options())
    net.run(1)
    net.line(ALICE, "/connect bob")
    until(net, chatting(alice, "bob"), 10)
    net.line(ALICE, "/connect carol")
    until(net, chatting(alice, "carol"), 10)
    net.run(1)
    assert [r.name for r in last(net, ALICE).rows] == ["bob", "carol"]   # the order opened
    assert last(net, ALICE).current == "carol"
    start = len(net.shown(ALICE))
    net.line(ALICE, "/switch bob")
    assert [e.current for e in lists(net, ALICE, start)] == ["bob"]
    net.line(ALICE, "/switch bob")                     # the same again: nothing new
    net.line(ALICE, "/chats")
    assert len(lists(net, ALICE, start)) == 1
    net.line(ALICE, "/leave bob")
    assert last(net, ALICE) == E.ChatList((last(net, ALICE).rows[0],), "carol")
    assert last(net, ALICE).rows[0].name == "carol"
    until(net, lambda: last(net, BOB).rows == (), 5)   # bob's ended with alice's Goodbye
    assert last(net, BOB).current is None


def test_chatlist_a_group_joined_and_left():
    net, alice, bob = pair(auto_join=True)
    carol = net.add_peer("carol", CAROL, **secure_options(auto_join=True))
    net.run(1)
    net.line(ALICE, "/connect bob")
    until(net, chatting(alice, "bob"), 10)
    net.line(ALICE, "/invite carol")
    until(net, lambda: any(r.kind == "group" for r in last(net, CAROL).rows), 15)
    group = last(net, ALICE).rows[-1]
    assert group.kind == "group" and group.state == "joined" and group.path is None
    assert last(net, ALICE).current == group.name
    assert [r.kind for r in last(net, ALICE).rows] == ["chat", "chat", "group"]
    net.line(ALICE, "/leave %s" % group.name)
    assert [r.kind for r in last(net, ALICE).rows] == ["chat", "chat"]
    assert last(net, ALICE).current == "bob"


def test_chatlist_a_chat_request_is_pending_until_accepted():
    net = SimNet()
    alice = net.add_peer("alice", ALICE, **secure_options(ask_strangers=True))
    carol = net.add_peer("carol", CAROL, **secure_options())
    net.run(1)
    net.line(CAROL, "/connect alice")
    until(net, asked(net, ALICE, "carol"), 10)
    row = last(net, ALICE).rows[0]
    assert (row.name, row.state, row.path, row.encrypted) == ("carol", "pending", "direct", True)
    assert row.key is not None and last(net, ALICE).current is None
    net.line(ALICE, "/accept carol")
    assert last(net, ALICE).rows[0].state == "connected" and last(net, ALICE).current == "carol"
