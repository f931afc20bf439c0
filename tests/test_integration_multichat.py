"""Several chats at once with the real relay and peers on 127.0.0.1 (issue
11 section 2): alice chats with bob and carol at once; /msg, /switch,
/chats; /leave bob leaves carol's chat up."""

import pytest

from .procs import CONNECTED, peer

pytestmark = pytest.mark.timeout(60)


def test_integration_multichat_alice_chats_with_bob_and_carol_at_once(procs, relay):
    bob = peer(procs, relay, "--name", "bob", "--wait")
    carol = peer(procs, relay, "--name", "carol", "--wait")
    bob.expect("^registered as bob")
    carol.expect("^registered as carol")
    alice = peer(procs, relay, "--name", "alice", "--connect", "bob")
    alice.expect(CONNECTED % "bob")
    alice.send("/connect carol")                       # while chatting with bob
    alice.expect(CONNECTED % "carol")
    carol.expect(CONNECTED % "alice")

    alice.send("to carol, the chat opened last")       # plain lines: the current chat
    carol.expect(r"^\[alice\]> to carol, the chat opened last$")
    alice.send("/msg bob to bob only")
    bob.expect(r"^\[alice\]> to bob only$")
    bob.send("bob here")
    carol.send("carol here")
    alice.expect(r"^\[bob\]> bob here$")
    alice.expect(r"^\[carol\]> carol here$")

    alice.send("/switch bob")
    alice.expect(r"^plain lines now go to bob$")
    alice.send("plain, to bob")
    bob.expect(r"^\[alice\]> plain, to bob$")

    alice.send("/chats")
    alice.expect(r"^\* bob: connected, direct, encrypted, rtt \d+ ms$")
    alice.expect(r"^  carol: connected, direct, encrypted, rtt \d+ ms$")

    alice.send("/leave bob")
    alice.expect(r"^left the chat with bob$")
    bob.expect(r"^\[alice\] has left the chat\.$")
    alice.send("still with you, carol")                # carol's chat is current now
    carol.expect(r"^\[alice\]> still with you, carol$")
    carol.send("and I with you")
    alice.expect(r"^\[carol\]> and I with you$")
    assert not carol.has(r"to bob only|plain, to bob|has left the chat")   # each line: one partner
    assert not bob.has(r"to carol|still with you")
