"""What the user types: /connect without a name, lines of nothing but
blanks, and /status once the peer has gone quiet."""

import re

from peerpunch import session as S
from peerpunch.session import State

from .simnet import RELAY, SimNet

ALICE = ("198.51.100.10", 40000)
BOB = ("198.51.100.20", 41000)


def chat_pair():
    net = SimNet()
    net.add_peer("bob", BOB)
    net.run(1)
    alice = net.add_peer("alice", ALICE, target="bob")
    net.run(3)
    assert alice.state is State.CONNECTED
    return net, alice


def notices(net, addr):
    return [e.text for e in net.shown(addr, S.Notice)]


def test_session_connect_without_a_name_prints_its_usage():
    net = SimNet()
    alice = net.add_peer("alice", ALICE)
    net.run(1)
    for line in ("/connect", "/connect   "):
        before = len(notices(net, ALICE))
        net.line(ALICE, line)
        assert notices(net, ALICE)[before:] == ["usage: /connect NAME"], line
    assert alice.state is State.IDLE


def test_session_blank_lines_are_not_sent_and_say_nothing():
    net, alice = chat_pair()
    before = (len(net.sent(ALICE, BOB)), len(notices(net, ALICE)))
    for line in ("", " ", "   \t ", "\u3000"):      # the last: an ideographic space
        net.line(ALICE, line)
    assert (len(net.sent(ALICE, BOB)), len(notices(net, ALICE))) == before
    net.line(ALICE, " a line with blanks around ")
    net.run(1)
    assert [(e.username, e.text) for e in net.shown(BOB, S.ChatMessage)] == \
        [("alice", " a line with blanks around ")]


def test_session_blank_lines_before_a_chat_are_not_queued():
    net = SimNet()
    alice = net.add_peer("alice", ALICE, target="bob")
    net.line(ALICE, "   ")
    assert alice.table.lines == [] and notices(net, ALICE) == []


def test_session_status_says_when_the_peer_has_gone_quiet():
    net, alice = chat_pair()
    net.line(ALICE, "/status")
    assert "(connected); peer bob at 198.51.100.20:41000" in notices(net, ALICE)[-1]
    net.block(ALICE, BOB)
    net.block(BOB, RELAY)            # bob is gone for good, relay fallback included
    while not alice.table.current_chat().path.suspect:
        net.run(1)
    net.line(ALICE, "/status")
    assert re.search(r"\(connected, but bob has not been heard for \d+ s\); peer bob at ",
                     notices(net, ALICE)[-1]), notices(net, ALICE)[-1]
