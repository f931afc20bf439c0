"""Group chat with the real relay and three peers on 127.0.0.1 (issue 12):
alice invites carol into her chat with bob; every line reaches each other
member once; /members; bob quits and alice and carol are told."""

import re

import pytest

from .procs import CONNECTED, peer

pytestmark = pytest.mark.timeout(60)

GROUP = r"#alice-[0-9a-f]{4}"


def test_integration_groups_alice_invites_carol_into_her_chat_with_bob(procs, relay):
    bob = peer(procs, relay, "--name", "bob", "--wait")
    carol = peer(procs, relay, "--name", "carol", "--wait")
    bob.expect("^registered as bob")
    carol.expect("^registered as carol")
    alice = peer(procs, relay, "--name", "alice", "--connect", "bob")
    alice.expect(CONNECTED % "bob")

    alice.send("/invite carol")
    group = re.match(r"group (\S+): you and bob", alice.expect(
        r"^group %s: you and bob; plain lines now go to " % GROUP).group(0)).group(1)
    bob.expect(r"^alice made group %s of your chat" % group)
    carol.expect(r"^alice invites you into group %s \(with bob\); joining$" % group)
    carol.expect(r"^joined group %s with alice, bob; plain lines now go to " % group)
    bob.expect(r"^group %s: alice invited carol$" % group)
    alice.expect(r"^group %s: carol joined$" % group)
    bob.expect(r"^group %s: carol joined$" % group)            # over carol's own chat with bob

    for sender in (alice, bob, carol):
        name = sender.argv[sender.argv.index("--name") + 1]
        for n in range(3):
            sender.send("%s says %d" % (name, n))
    for receiver, others in ((alice, ("bob", "carol")), (bob, ("alice", "carol")),
                             (carol, ("alice", "bob"))):
        for other in others:
            receiver.expect(r"^\[%s\] \[%s\]> %s says 2$" % (re.escape(group), other, other))
        for other in others:
            got = [line for line in receiver.lines["stdout"]
                   if re.match(r"^\[%s\] \[%s\]> " % (re.escape(group), other), line)]
            assert got == ["[%s] [%s]> %s says %d" % (group, other, other, n)
                           for n in range(3)], got           # once each, in the sender's order

    alice.send("/members")
    alice.expect(r"^group %s:$" % group)
    alice.expect(r"^  alice: joined, you$")
    alice.expect(r"^  bob: joined, direct, rtt \d+ ms$")
    alice.expect(r"^  carol: joined, direct, rtt \d+ ms$")

    bob.send("/quit")
    for member in (alice, carol):
        member.expect(r"^group %s: bob (left|is gone \(.*\))$" % group)
    alice.send("after bob")
    carol.expect(r"^\[%s\] \[alice\]> after bob$" % re.escape(group))
    assert len([l for l in carol.lines["stdout"] if re.match(r"^group \S+: bob (left|is gone)",
                                                               l)]) == 1
