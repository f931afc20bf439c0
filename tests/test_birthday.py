"""Birthday-paradox probing: the arithmetic, the Prober and Spray, and whole
sessions behind simulated NATs (tests/simnet.py's SimNat) with a fake clock.
The real thing, through Linux NATs, is in test_natlab.py."""

import random
import types

import pytest

from peerpunch import birthday as B
from peerpunch import protocol as P
from peerpunch import session as S
from peerpunch.effects import CloseSocket, OpenSocket, Send
from peerpunch.link import PING
from peerpunch.session import State

from .simnet import RELAY, SimNat, SimNet
from .test_secure_session import secure_options

HARD_LAN = ("10.0.0.2", 5000)       # behind the symmetric NAT
EASY_LAN = ("10.0.1.2", 6000)       # behind a port-restricted, endpoint-independent one
HARD_IP, EASY_IP = "198.51.100.1", "198.51.100.2"


# -- the arithmetic


def spray(session):
    """The Spray of *session*'s chat's birthday search, if it runs one."""
    chat = session.table.current_chat()
    return chat.path.search.spray if chat is not None else None


def prober(session):
    chat = session.table.current_chat()
    return chat.path.search.prober if chat is not None else None


def test_hit_probability_matches_the_closed_form_and_the_issue():
    assert B.hit_probability(256, 0) == 0.0
    # without replacement it is a little better than (1 - K/N)^n
    for probes in (100, 600, 1000, 2000):
        approx = 1 - (1 - 256 / 64512) ** probes
        assert approx <= B.hit_probability(256, probes) <= approx + 0.002
    assert 0.97 < B.hit_probability(256, 1000) < 0.99      # "about 1,000 probes: ~98 %"
    assert B.hit_probability(256, B.PROBES) > 0.999
    assert B.hit_probability(10, 64512) == 1.0


def test_hit_probability_by_simulation():
    rng = random.Random(5)
    trials, hits = 400, 0
    for _ in range(trials):
        open_ports = set(rng.sample(range(1024, 65536), 64))
        probes = rng.sample(range(1024, 65536), 500)
        hits += any(p in open_ports for p in probes)
    assert abs(hits / trials - B.hit_probability(64, 500)) < 0.07


# -- Prober and Spray


def test_prober_paces_distinct_ports_and_stops_at_its_budget():
    prober = B.Prober("198.51.100.9", 100.0, rng=random.Random(1), probes=500)
    sent, now = [], 100.0
    while not prober.done:
        sent += [(now, addr) for addr in prober.due(now)]
        now = prober.next_deadline() or now
    ports = [addr[1] for _, addr in sent]
    assert len(ports) == 500 == len(set(ports))
    assert all(B.PORT_FIRST <= p <= B.PORT_LAST for p in ports)
    assert {addr[0] for _, addr in sent} == {"198.51.100.9"}
    assert sent[-1][0] - 100.0 == pytest.approx(499 / B.RATE, abs=B.BATCH / B.RATE)
    for second in range(2):       # never more than RATE a second
        assert sum(1 for t, _ in sent if 100 + second <= t < 101 + second) <= B.RATE + B.BATCH
    assert prober.next_deadline() is None and prober.due(now + 5) == []
    assert prober.probed(("198.51.100.9", ports[0])) and not prober.probed(("198.51.100.8", ports[0]))


def test_prober_tries_the_ports_above_the_relays_first_then_random_ones():
    prober = B.Prober("198.51.100.9", 0.0, rng=random.Random(1), near=65500)
    assert prober.ports[:36] == list(range(65501, 65536)) + [1024]       # wraps around
    assert prober.ports[:B.NEAR] == [1024 + (65500 - 1024 + k) % 64512 for k in range(1, B.NEAR + 1)]
    assert len(prober.ports) == B.PROBES == len(set(prober.ports))
    assert 65500 not in prober.ports[:B.NEAR]


def test_prober_catches_up_without_a_burst_after_a_stall():
    prober = B.Prober("198.51.100.9", 0.0, rng=random.Random(1))
    prober.due(0.0)
    late = prober.due(30.0)                  # the process was stopped for 30 s
    assert len(late) == 2 * B.BATCH
    assert prober.next_deadline() > 30.0 and len(prober.due(30.0)) == 0


def test_spray_opens_sends_keeps_one_and_closes_the_rest():
    spray = B.Spray(count=4)
    out = spray.start(("198.51.100.2", 7000), PING, 0.0)
    assert out[:4] == [OpenSocket(v) for v in (1, 2, 3, 4)]
    assert out[4:] == [Send(PING, ("198.51.100.2", 7000), v) for v in (1, 2, 3, 4)]
    assert spray.searching(3) and not spray.searching(5)
    assert spray.keep(3) == [CloseSocket(v) for v in (1, 2, 4)]
    assert not spray.searching(1) and spray.kept == 3 and spray.open == {3}
    assert spray.close() == [CloseSocket(3)] and spray.close() == []


def test_search_a_second_chat_never_opens_or_closes_the_socket_another_chat_kept():
    history = B.SearchHistory()
    peer = types.SimpleNamespace(username="bob", addr=("198.51.100.2", 7000), endpoint="x",
                                 mapping=P.MAPPING_INDEPENDENT, candidates=[("198.51.100.2", 7000)])
    first = B.Search(history, random.Random(1), lambda: True)
    first.start(peer, P.MAPPING_DEPENDENT, 0.0, lambda addr: True)
    assert first.landed(PING, peer.addr, 5, peer.addr)[0] == "hit" and history.kept == {5}
    carol = types.SimpleNamespace(username="carol", addr=("198.51.100.3", 8000), endpoint="y",
                                  mapping=P.MAPPING_INDEPENDENT, candidates=[("198.51.100.3", 8000)])
    second = B.Search(history, random.Random(2), lambda: True)
    out = second.start(carol, P.MAPPING_DEPENDENT, B.SEARCH_AGAIN_AFTER, lambda addr: True)
    opened = {e.via for e in out if isinstance(e, OpenSocket)}
    assert len(opened) == B.SOCKETS and 5 not in opened and B.SOCKETS + 1 in opened
    assert CloseSocket(5) not in second.stop()
    assert first.stop() == [CloseSocket(5)] and history.kept == set()


# -- sessions behind NATs


def nat_pair(hard="dependent", easy="independent", alt_port=True, easy_filtering="port",
             sequential=False):
    net = SimNet(alt_port=alt_port)
    net.add_nat(SimNat(HARD_IP, mapping=hard, filtering="port", seed=3, sequential=sequential),
                HARD_LAN[0])
    net.add_nat(SimNat(EASY_IP, mapping=easy, filtering=easy_filtering, seed=4), EASY_LAN[0])
    return net


def start(net, a_lan=EASY_LAN, b_lan=HARD_LAN, seconds=12, **options):
    """bob (at *b_lan*) waits; alice (at *a_lan*) connects."""
    bob = net.add_peer("bob", b_lan, rng=random.Random(11), **secure_options(**options))
    net.run(1)
    alice = net.add_peer("alice", a_lan, target="bob", rng=random.Random(12),
                         **secure_options(**options))
    net.run(seconds)
    return alice, bob


def connected(net, addr):
    return net.shown(addr, S.Connected)


@pytest.mark.parametrize("hard_side", ["bob", "alice"])
def test_birthday_connects_symmetric_and_port_restricted_directly(hard_side):
    net = nat_pair()
    a_lan, b_lan = (EASY_LAN, HARD_LAN) if hard_side == "bob" else (HARD_LAN, EASY_LAN)
    alice, bob = start(net, a_lan, b_lan)
    hard, easy = (bob, alice) if hard_side == "bob" else (alice, bob)
    assert hard.relay.mapping == P.MAPPING_DEPENDENT and easy.relay.mapping == P.MAPPING_INDEPENDENT
    for lan in (a_lan, b_lan):
        (conn,) = connected(net, lan)
        assert conn.path == "direct" and conn.key is not None, conn
        assert conn.seconds < 3.0         # before the relay fallback
    # the hard side kept one extra socket and closed the other 255
    assert spray(hard).open == {spray(hard).kept} and hard.table.current_chat().peer.via == spray(hard).kept
    assert easy.table.current_chat().peer.addr[0] == HARD_IP and easy.table.current_chat().peer.addr != P.parse_endpoint(
        net.registry.user(hard.username).endpoint)
    assert prober(easy) is None               # probing stopped with the hit
    easy_lan = a_lan if hard is bob else b_lan
    probes = [d for s, t, d in net.wire if s == easy_lan and t[0] == HARD_IP and d == PING]
    assert 10 < len(probes) < 1000
    net.line(a_lan, "over the birthday path")
    net.line(b_lan, "and back")
    net.run(1)
    assert [e.text for e in net.shown(b_lan, S.ChatMessage)] == ["over the birthday path"]
    assert [e.text for e in net.shown(a_lan, S.ChatMessage)] == ["and back"]
    assert net.registry.forwarder.stats["datagrams"] == 0
    net.line(a_lan, "/leave")
    net.run(1)
    assert not spray(hard) and not any(owner for owner in net.owners.values()
                                       if owner and owner[1])      # every extra socket closed


def test_without_the_alternate_port_nobody_knows_the_mapping_and_the_chat_is_relayed():
    net = nat_pair(alt_port=False)
    alice, bob = start(net)
    assert alice.relay.mapping is bob.relay.mapping is None
    assert connected(net, EASY_LAN)[0].path == "relayed"
    assert not any(isinstance(e, OpenSocket) for e in net.events[HARD_LAN])
    assert not [d for s, t, d in net.wire if s[0] == EASY_LAN[0] and t[0] == HARD_IP and
                t != alice.table.current_chat().peer.addr]          # no probes beyond the introduced endpoint


def test_two_symmetric_nats_do_not_search_and_are_relayed():
    net = nat_pair(easy="dependent")
    alice, bob = start(net)
    assert alice.relay.mapping == bob.relay.mapping == P.MAPPING_DEPENDENT
    assert prober(alice) is spray(alice) is prober(bob) is spray(bob) is None
    assert connected(net, EASY_LAN)[0].path == "relayed"
    assert len(net.wire) < 400


def test_a_probe_that_lands_after_the_fallback_moves_the_relayed_chat_direct():
    net = nat_pair()
    net.drop = lambda src, dst, data: net.now < 1004.5 and dst[0] == HARD_IP and data == PING
    alice, bob = start(net, seconds=15)
    (conn,) = connected(net, EASY_LAN)
    assert conn.path == "relayed"
    notices = [e.text for lan in (EASY_LAN, HARD_LAN) for e in net.shown(lan, S.Notice)]
    assert sum("now direct with" in n for n in notices) == 2, notices
    assert not alice.table.current_chat().peer.via_relay and not bob.table.current_chat().peer.via_relay
    before = net.registry.forwarder.stats["datagrams"]
    net.line(EASY_LAN, "direct again")
    net.run(1)
    assert [e.text for e in net.shown(HARD_LAN, S.ChatMessage)] == ["direct again"]
    assert net.registry.forwarder.stats["datagrams"] == before


def test_extra_sockets_ignore_strangers_and_the_relay():
    net = nat_pair()
    net.drop = lambda src, dst, data: dst[0] == HARD_IP and data == PING   # never a hit
    alice, bob = start(net, seconds=2)
    assert spray(bob) is not None and len(spray(bob).open) == B.SOCKETS
    ignored = bob.stats["ignored_strangers"]
    assert bob.datagram_received(PING, ("192.0.2.7", 9), net.now, via=5) == []
    assert bob.datagram_received(PING, RELAY, net.now, via=5) == []
    assert bob.datagram_received(PING, alice.table.current_chat().peer.addr, net.now, via=999) == []
    assert bob.stats["ignored_strangers"] == ignored + 3 and spray(bob).kept is None
    net.run(B.HOLD + 1)
    assert spray(bob) is None or not spray(bob).open         # the window closed them all


def test_a_connect_waits_briefly_for_the_mapping_so_the_relay_can_pass_it_on():
    net = nat_pair()
    net.drop = lambda src, dst, data: dst == net.stun.addresses[-1] and src[0] == EASY_LAN[0]
    alice, bob = start(net, seconds=0.5)
    assert alice.state is State.REQUESTING and alice.table.asked_for() == "bob"   # alt port unanswered
    assert [e.text for e in net.shown(EASY_LAN, S.Notice)][-1] == "asking the relay for bob ..."
    assert not [d for d in net.sent(EASY_LAN, RELAY) if d.startswith(b'{"Connect"')]
    net.run(1)
    assert alice.state is not State.REQUESTING     # it went ahead after MAPPING_WAIT
    assert alice.relay.mapping is None
    (connect,) = {d for d in net.sent(EASY_LAN, RELAY) if d.startswith(b'{"Connect"')}
    assert P.decode(connect).token == alice.relay.token      # the relay can tell it is alice's


def test_a_deferred_connect_gives_way_to_someone_who_connects_first():
    """While alice's first Connect waits for her mapping, carol connects to
    her: alice takes carol's chat and never asks for bob (that would break
    up both pairings)."""
    net = nat_pair()
    carol_lan = ("10.0.2.2", 7000)
    bob = net.add_peer("bob", HARD_LAN, **secure_options())
    net.run(1)
    net.drop = lambda src, dst, data: dst == net.stun.addresses[-1] and src == EASY_LAN
    net.add_peer("carol", carol_lan, **secure_options())
    alice = net.add_peer("alice", EASY_LAN, target="bob", max_chats=1, **secure_options())
    net.run(0.3)
    assert alice.state is State.REQUESTING
    net.line(carol_lan, "/connect alice")
    net.run(6)
    assert alice.table.current_chat().peer is not None and alice.table.current_chat().peer.username == "carol"
    assert net.shown(EASY_LAN, S.Connected)[0].username == "carol"
    assert any("carol connected to you first; no longer asking for bob" in e.text
               for e in net.shown(EASY_LAN, S.Notice))
    assert not [d for d in net.sent(EASY_LAN, RELAY) if b'"target_username":"bob"' in d]
    assert bob.state is State.IDLE


def test_leave_cancels_a_deferred_connect():
    net = nat_pair()
    net.drop = lambda src, dst, data: dst == net.stun.addresses[-1] and src == EASY_LAN
    net.add_peer("bob", HARD_LAN, **secure_options())
    net.run(1)
    net.add_peer("alice", EASY_LAN, target="bob", **secure_options())
    net.run(0.3)
    net.line(EASY_LAN, "/leave")
    net.run(5)                  # past the end of the mapping check (3.75 s without answers)
    assert not [d for d in net.sent(EASY_LAN, RELAY) if d.startswith(b'{"Connect"')]
    assert "stopped asking for bob" in [e.text for e in net.shown(EASY_LAN, S.Notice)]


def test_the_mapping_check_runs_even_if_the_first_register_ack_was_lost():
    net = nat_pair()
    net.add_peer("bob", HARD_LAN, **secure_options())
    net.run(1)
    acks = []
    net.drop = lambda src, dst, data: dst[0] == EASY_IP and data.startswith(b'{"RegisterAck"') \
        and not acks and not acks.append(data)
    alice = net.add_peer("alice", EASY_LAN, **secure_options())
    net.run(0.2)
    net.line(HARD_LAN, "/connect alice")       # alice learns of the relay via a PeerInfo
    net.run(25)
    assert acks and alice.relay.mapping == P.MAPPING_INDEPENDENT


def test_a_new_pairing_with_another_endpoint_mid_search_closes_the_old_sockets():
    net = nat_pair()
    net.drop = lambda src, dst, data: dst[0] == HARD_IP and data == PING   # never a hit
    alice, bob = start(net, seconds=1)
    assert bob.state is State.PUNCHING and len(spray(bob).open) == B.SOCKETS
    info = P.PeerInfo(peer="192.0.2.1:4000", username="alice", features=bob.table.current_chat().peer.features,
                      session="ab" * 16, mapping=P.MAPPING_INDEPENDENT, nonce=bob.relay.auth.nonce)
    out = bob.datagram_received(P.encode(info), RELAY, net.now)
    assert len([e for e in out if isinstance(e, CloseSocket)]) == B.SOCKETS
    assert not [e for e in out if isinstance(e, OpenSocket)]     # and no new search so soon
    assert spray(bob) is None


def test_repeated_introductions_cannot_make_the_symmetric_side_spray_again():
    """A PeerInfo is all it takes to restart a punch: ten of them (a relay
    gone bad, or someone spoofing it) must not open 256 sockets ten times."""
    net = nat_pair()
    net.drop = lambda src, dst, data: dst[0] == HARD_IP and data == PING   # never a hit
    alice, bob = start(net, seconds=1)
    sprayed = sum(1 for e in net.wire if e[0][0] == HARD_LAN[0] and e[2] == PING)
    assert sprayed >= B.SOCKETS                       # the one search this chat gets
    for i in range(10):
        same = P.PeerInfo(peer=bob.table.current_chat().peer.endpoint, username="alice", features=bob.table.current_chat().peer.features,
                          session="%02x" % i * 16, mapping=P.MAPPING_INDEPENDENT,
                          nonce=bob.relay.auth.nonce)     # from the relay itself, gone bad
        other = P.PeerInfo(peer="192.0.2.%d:4000" % (i + 1), username="alice",
                           features=bob.table.current_chat().peer.features, session="%02x" % (i + 100) * 16,
                           mapping=P.MAPPING_INDEPENDENT, nonce=bob.relay.auth.nonce)
        for info in (same, other):
            out = bob.datagram_received(P.encode(info), RELAY, net.now)
            assert not [e for e in out if isinstance(e, OpenSocket)]
            assert len([e for e in out if isinstance(e, Send) and e.data == PING]) <= 4


def test_garbage_from_the_peer_endpoint_does_not_end_the_search():
    net = nat_pair()
    net.drop = lambda src, dst, data: dst[0] == HARD_IP and data == PING
    alice, bob = start(net, seconds=1)
    assert spray(bob) is not None and spray(bob).kept is None
    bob.datagram_received(b"\x7fnot a probe", bob.table.current_chat().peer.candidates[0], net.now, via=7)
    assert spray(bob).kept is None and len(spray(bob).open) == B.SOCKETS


def test_status_says_what_the_nat_does_once_known():
    net = nat_pair()
    alice, bob = start(net, seconds=2)
    net.line(HARD_LAN, "/status")
    net.line(EASY_LAN, "/status")
    assert net.shown(HARD_LAN, S.Notice)[-1].text.endswith("; your NAT: symmetric")
    assert net.shown(EASY_LAN, S.Notice)[-1].text.endswith("; your NAT: one public endpoint per socket")


def test_a_sequential_symmetric_nat_is_found_in_the_first_probes():
    """A symmetric NAT that hands out ports one after another gave the
    search's sockets the ports just above the one the relay saw: the
    probes start there and land at once."""
    net = nat_pair(sequential=True)
    alice, bob = start(net, seconds=3)
    (conn,) = connected(net, EASY_LAN)
    assert conn.path == "direct" and conn.seconds < 0.3, conn
    probes = [d for s, t, d in net.wire if s == EASY_LAN and t[0] == HARD_IP and d == PING]
    assert len(probes) <= 2 * B.BATCH + 2


def test_a_mapping_learned_late_still_starts_the_search():
    """alice's mapping check outlasts the 1-s wait (its alternate-port
    answers are lost for 1.5 s), so the first introductions carry no mapping
    for her; the relay's repeats do once she knows it, and the search runs."""
    net = nat_pair()
    net.drop = lambda src, dst, data: dst == net.stun.addresses[-1] and src == EASY_LAN \
        and net.now < 1002.5
    alice, bob = start(net, seconds=12)
    assert alice.relay.mapping == P.MAPPING_INDEPENDENT
    (conn,) = connected(net, EASY_LAN)
    notices = [e.text for e in net.shown(EASY_LAN, S.Notice)]
    assert conn.path == "direct" or any("now direct with bob" in n for n in notices), notices
    assert spray(bob) is not None and spray(bob).kept is not None


def test_a_symmetric_nat_meets_address_dependent_filtering_directly_at_once():
    """The other NAT filters by address only (restricted cone): once it has
    sent to the symmetric side's IP, the symmetric side's probes from any
    port get in -- the plain punch or the first extra socket wins at once."""
    net = nat_pair(easy_filtering="address")
    alice, bob = start(net, seconds=3)
    (conn,) = connected(net, EASY_LAN)
    assert conn.path == "direct" and conn.seconds < 0.5, conn
