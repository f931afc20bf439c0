"""Group chat with the real relay and three peers on 127.0.0.1 (issue 12):
alice invites carol into her chat with bob; every line reaches each other
member once; /members; bob quits and alice and carol are told."""

import re
import signal
import sys

import pytest

from .procs import CONNECTED, ROOT, Proc, peer

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
    alice.expect(r"^  bob: joined, direct(, rtt \d+ ms)?$")
    alice.expect(r"^  carol: joined, direct(, rtt \d+ ms)?$")

    bob.send("/quit")
    for member in (alice, carol):
        member.expect(r"^group %s: bob (left|is gone \(.*\))$" % group)
    alice.send("after bob")
    carol.expect(r"^\[%s\] \[alice\]> after bob$" % re.escape(group))
    assert not carol.has(r"plain lines now go to alice")      # they go to the group
    assert len([l for l in carol.lines["stdout"] if re.match(r"^group \S+: bob (left|is gone)",
                                                               l)]) == 1


def _group_of_three(procs, relay):
    """alice, bob, carol in one group, alice's; (peers, group name)."""
    bob = peer(procs, relay, "--name", "bob", "--wait")
    carol = peer(procs, relay, "--name", "carol", "--wait")
    bob.expect("^registered as bob")
    carol.expect("^registered as carol")
    alice = peer(procs, relay, "--name", "alice", "--connect", "bob")
    alice.expect(CONNECTED % "bob")
    alice.send("/invite carol")
    group = alice.expect(r"^group (%s): you and bob" % GROUP).group(1)
    alice.expect(r"^group %s: carol joined$" % group)
    bob.expect(r"^group %s: carol joined$" % group)
    return alice, bob, carol, group


def test_integration_groups_a_killed_member_is_announced_to_the_others(procs, relay):
    alice, bob, carol, group = _group_of_three(procs, relay)
    carol.signal(signal.SIGKILL)
    carol.wait()
    alice.send("is anyone there?")
    bob.expect(r"^\[%s\] \[alice\]> is anyone there\?$" % re.escape(group))
    # alice's own stream gives up on carol within its delivery timeout (8 s), unless
    # bob's chat with carol ended first and he said so (a race both ways)
    alice.expect(r"^group %s: (carol is gone \(group lines were not delivered to them|bob says"
                 r" carol is gone \(bob lost them)\)$" % group, timeout=15)
    bob.expect(r"^group %s: (alice says carol is gone \(alice lost them|carol is gone \((group lines"
               r" were not delivered to them|the chat with them ended))\)$" % group, timeout=5)
    bob.send("just us")
    alice.expect(r"^\[%s\] \[bob\]> just us$" % re.escape(group))
    assert not alice.has(r"not delivered to carol \(")     # group lines: reported as above


def test_integration_groups_a_seed_peer_cannot_be_invited(procs, relay):
    seed = Proc([sys.executable, ROOT + "/tests/seed.py", "peer", "--relay", relay.addr,
                 "--name", "oldtimer"])
    procs.append(seed)
    seed.expect("^registered$")
    bob = peer(procs, relay, "--name", "bob", "--wait")
    bob.expect("^registered as bob")
    alice = peer(procs, relay, "--name", "alice", "--connect", "bob")
    alice.expect(CONNECTED % "bob")
    alice.send("/invite oldtimer")
    alice.expect(r"^connected to oldtimer at ")
    alice.expect(r"^cannot make a group with oldtimer: its client is a seed peer \(no"
                 r" extensions\): it cannot be in a group$")
    alice.send("/members")
    alice.expect(r"^  bob: joined, direct")
    assert not alice.has(r"^  oldtimer") and not seed.has(r"group|panicked")


def test_integration_groups_switch_between_chat_and_group_then_leave_the_group(procs, relay):
    alice, bob, carol, group = _group_of_three(procs, relay)
    bob.send("/switch alice")
    bob.expect(r"^plain lines now go to alice$")
    bob.send("just to alice")
    alice.expect(r"^\[bob\]> just to alice$")
    bob.send("/switch " + group)
    bob.expect(r"^plain lines now go to %s$" % group)
    bob.send("to the group again")
    alice.expect(r"^\[%s\] \[bob\]> to the group again$" % re.escape(group))
    carol.expect(r"^\[%s\] \[bob\]> to the group again$" % re.escape(group))
    assert not carol.has("just to alice")

    carol.send("/leave " + group)
    carol.expect(r"^left group %s$" % group)
    alice.expect(r"^group %s: carol left$" % group)
    bob.expect(r"^group %s: carol left$" % group)
    alice.send("without carol")
    bob.expect(r"^\[%s\] \[alice\]> without carol$" % re.escape(group))
    carol.send("/members " + group)
    carol.expect(r"^no chat with %s" % group)
    assert not carol.has("without carol")


def test_integration_groups_a_group_made_of_your_chat_does_not_take_what_you_were_typing(
        procs, relay):
    """bob was talking to alice when she invited carol: bob's plain lines
    still go to alice alone until he switches to the group."""
    bob = peer(procs, relay, "--name", "bob", "--wait")
    carol = peer(procs, relay, "--name", "carol", "--wait")
    bob.expect("^registered as bob")
    carol.expect("^registered as carol")
    alice = peer(procs, relay, "--name", "alice", "--connect", "bob")
    alice.expect(CONNECTED % "bob")
    bob.send("just between us")
    alice.expect(r"^\[bob\]> just between us$")
    alice.send("/invite carol")
    group = alice.expect(r"^group (%s): you and bob" % GROUP).group(1)
    bob.expect(r"^alice made group %s of your chat \(/switch %s to talk to the group\)$"
               % (group, group))
    bob.expect(r"^group %s: carol joined$" % group)
    bob.send("still just us")
    alice.expect(r"^\[bob\]> still just us$")
    bob.send("/switch " + group)
    bob.send("now to all")
    carol.expect(r"^\[%s\] \[bob\]> now to all$" % re.escape(group))
    assert not carol.has("still just us") and not carol.has("just between us")
