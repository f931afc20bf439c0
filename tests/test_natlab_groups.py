"""Group chat in the NAT lab (issue 12): alice behind a full-cone NAT, bob
behind a home router (port-restricted) and carol behind a symmetric NAT;
alice invites carol into her chat with bob, the three exchange lines (each
pair on its own path: direct, or a birthday search, or the relay), and
killing carol is announced to alice and bob.
Needs root, ip, iptables, nft and conntrack."""

import re
import signal
import time

import pytest

from .natlab import require_lab, runner, topology

pytestmark = [pytest.mark.natlab, pytest.mark.timeout(150)]

PROFILES = ("full-cone", "port-restricted", "symmetric")       # alice, bob, carol
CONNECT_WAIT = runner.REGISTER_WAIT + runner.PUNCH_TIMEOUT + 5
GONE_WAIT = 8.0 + 4.0          # the stream's delivery timeout, and the news crossing a path


def test_natlab_groups_three_members_behind_three_nats_and_one_killed():
    require_lab()
    a, b, c = PROFILES
    with topology.Lab(a, b, profile_c=c) as lab, runner.Chat(lab) as chat:
        chat.start()                                          # the relay; bob waits
        carol = chat._peer("carol", "--wait")
        try:
            _group_chat(chat, carol, lab)
        finally:
            carol.stop()


def _group_chat(chat, carol, lab):
    chat._expect(carol, r"^registered as carol ", runner.REGISTER_WAIT, "carol registers")
    chat.connect()
    peers = {"alice": chat.alice, "bob": chat.bob, "carol": carol}
    started = time.monotonic()
    chat.alice.send("/invite carol")
    group = chat._expect(chat.alice, r"^group (#alice-[0-9a-f]{4}): you and bob", runner.LINE_WAIT,
                         "alice makes a group").group(1)
    for me, other in (("alice", "carol"), ("bob", "carol")):
        chat._expect(peers[me], r"^group %s: %s joined$" % (group, other), CONNECT_WAIT,
                     "%s sees %s join" % (me, other))
    join_seconds = time.monotonic() - started
    for name, proc in peers.items():
        proc.send("hello from %s" % name)
    for name, proc in peers.items():
        for other in peers:
            if other != name:
                chat._expect(proc, r"^\[%s\] \[%s\]> hello from %s$" % (group, other, other),
                             runner.LINE_WAIT, "%s's line reaches %s" % (other, name))
    for name, proc in peers.items():
        got = [line for line in proc.lines["stdout"] if re.match(r"^\[#\S+\] \[\w+\]> ", line)]
        assert sorted(got) == sorted("[%s] [%s]> hello from %s" % (group, o, o)
                                     for o in peers if o != name), (name, got)
    chat.bob.send("/members")
    paths = {m.group(1): m.group(2) for m in (
        chat._expect(chat.bob, r"^  (%s): joined, (direct|relayed)(, rtt \d+ ms)?$" % other,
                     runner.LINE_WAIT, "bob lists %s" % other) for other in ("alice", "carol"))}

    carol.signal(signal.SIGKILL)
    killed = time.monotonic()
    chat.alice.send("carol, are you there?")
    for name in ("alice", "bob"):
        chat._expect(peers[name], r"^group %s: (\w+ says )?carol is gone \(" % group, GONE_WAIT,
                     "%s is told carol is gone" % name)
    gone_seconds = time.monotonic() - killed
    chat._expect(chat.bob, r"^\[%s\] \[alice\]> carol, are you there\?$" % group,
                 runner.LINE_WAIT, "alice's line reaches bob")
    print("\nFIGURE natlab, %s / %s / %s: group of three joined %.2f s after /invite (bob's"
          " paths: %s); a killed member announced to both others %.2f s after the kill"
          % (PROFILES + (join_seconds, paths, gone_seconds)))
