"""Several chats at once in the NAT lab (issue 11 section 2): alice behind a
full-cone NAT, bob behind a home router (port-restricted) and carol behind a
symmetric NAT each hold two chats at once -- alice with bob, bob with carol
(a birthday search, or the relay until it lands) and carol with alice --
and every line reaches the one partner it was typed for.
Needs root, ip, iptables, nft and conntrack."""

import re
import time

import pytest

from .natlab import require_lab, runner, topology

pytestmark = [pytest.mark.natlab, pytest.mark.timeout(120)]

PROFILES = ("full-cone", "port-restricted", "symmetric")       # alice, bob, carol
CONNECT_WAIT = runner.REGISTER_WAIT + runner.PUNCH_TIMEOUT + 5
PAIRS = (("alice", "bob"), ("bob", "carol"), ("carol", "alice"))


def test_natlab_multichat_three_peers_behind_three_nats_hold_two_chats_each():
    require_lab()
    a, b, c = PROFILES
    with topology.Lab(a, b, profile_c=c) as lab, runner.Chat(lab) as chat:
        chat.start()                                          # the relay; bob waits
        peers = {"bob": chat.bob}
        carol = chat._peer("carol", "--wait")
        try:
            chat.alice = peers["alice"] = chat._peer("alice", "--wait")
            peers["carol"] = carol
            for name in ("alice", "carol"):
                chat._expect(peers[name], r"^registered as %s " % name, runner.REGISTER_WAIT,
                             "%s registers" % name)
            started = time.monotonic()
            for asker, target in PAIRS:
                peers[asker].send("/connect " + target)
            paths = {}
            for asker, target in PAIRS:
                for me, other in ((asker, target), (target, asker)):
                    m = chat._expect(peers[me], runner.CONNECTED.format(peer=other), CONNECT_WAIT,
                                     "%s connects to %s" % (me, other))
                    paths[me, other] = m.group("path")
            connect_seconds = time.monotonic() - started
            assert paths["alice", "bob"] == paths["carol", "alice"] == "direct", paths
            for asker, target in PAIRS:
                for me, other in ((asker, target), (target, asker)):
                    peers[me].send("/msg %s from %s to %s" % (other, me, other))
            for asker, target in PAIRS:
                for me, other in ((asker, target), (target, asker)):
                    chat._expect(peers[other], r"^\[%s\]> from %s to %s$" % (me, me, other),
                                 runner.LINE_WAIT, "%s's line reaches %s" % (me, other))
            for name, proc in peers.items():
                got = [line for line in proc.lines["stdout"] if re.match(r"^\[\w+\]> from ", line)]
                assert sorted(got) == sorted("[%s]> from %s to %s" % (o, o, name)
                                             for o in peers if o != name), (name, got)
                assert not proc.has(r"not delivered|connection to \S+ lost"), chat.transcript()
            print("\nFIGURE natlab, %s / %s / %s: three peers, two chats each, all six connect"
                  " lines %.2f s after the three /connect; bob-carol %s"
                  % (a, b, c, connect_seconds, paths["bob", "carol"]))
        finally:
            carol.stop()
