"""The Route machine alone (direct or through the relay, for one path):
the fallback, the way back, and where datagrams go, with a fake clock and
a stub relay client."""

from peerpunch import protocol as P
from peerpunch.candidates import RELAYED_ORIGIN, Origin, Peer
from peerpunch.effects import Send
from peerpunch.forwarder import RELAYED
from peerpunch.link import PING, PONG
from peerpunch.route import TRANSITIONS, Route, RouteState
from peerpunch.timers import fire

RELAY = ("203.0.113.1", 8080)
BOB = ("198.51.100.20", 41000)
MOVED = ("198.51.100.20", 52000)


class StubRelay:
    addr = RELAY
    endpoint = "203.0.113.1:8080"
    several = False
    forwards = True


class Link:
    encrypted = False
    ready = True


def route(now=0.0):
    directly = []
    r = Route(StubRelay(), 10.0, can_send=lambda addr: True, known=lambda addr: False,
              on_direct=lambda when: directly.append(when) or [])
    peer = Peer(P.PeerInfo(peer=P.format_endpoint(BOB), username="bob",
                           features=("ext", "relay1"), session="5e" * 16))
    r.start(peer, now)
    return r, directly


def test_route_probing_then_relayed_retries_direct_and_a_pong_brings_it_back():
    r, directly = route()
    assert r.state is RouteState.DIRECT and r.possible()
    r.probe_relay()
    assert r.probing and not r.peer.via_relay
    r.punched_relayed()
    assert r.found(3.0)[0].what == "relayed_for_now" and r.peer.via_relay
    assert r.send(b"x") == Send(bytes([RELAYED]) + b"x", RELAY)
    retries = []
    while r.direct_retry.when is not None and r.direct_retry.when <= 40.0:
        now = r.direct_retry.when
        retries += [(now, e.addr) for e in fire([r.direct_retry], now)]
    assert [t for t, _ in retries][:2] == [4.0, 5.0] and all(a == BOB for _, a in retries)
    assert retries[-1][0] - retries[-2][0] == 5.0        # slower after 30 s
    assert r.direct_probe(PING, Origin(BOB, 0, False), Link(), 41.0) == [Send(PONG, BOB, 0)]
    assert r.direct_probe(PONG, Origin(MOVED, 0, False), Link(), 41.0) == []   # not a candidate
    notes = r.direct_probe(PONG, Origin(BOB, 0, False), Link(), 41.0)
    assert notes[0].what == "now_direct" and directly == [41.0]
    assert r.state is RouteState.DIRECT and r.direct_retry.when is None
    assert r.send(b"x") == Send(b"x", BOB, 0)


def test_route_relayed_datagram_while_direct_is_quiet_moves_a_connected_chat():
    r, _ = route()
    r.connected(1.0)
    assert r.heard(RELAYED_ORIGIN, True, 3.0, connected=True) == []      # direct heard lately
    assert r.heard(RELAYED_ORIGIN, True, 6.5, connected=True)[0].what == "now_relayed"
    assert r.relayed and r.direct_retry.when == 7.5
    assert r.reply(PONG, Origin(BOB, 0, False)) == Send(bytes([RELAYED]) + PONG, RELAY)


def test_route_authentic_datagram_from_a_new_address_follows_the_peer():
    r, directly = route()
    r.probe_relay()
    assert r.heard(Origin(MOVED, 0, False), False, 2.0, connected=True) == []   # not proven
    assert r.state is RouteState.DIRECT                                      # heard directly
    notes = r.heard(Origin(MOVED, 0, False), True, 2.5, connected=True)
    assert notes[0].what == "moved" and r.peer.addr == MOVED and directly == [2.5]
    assert r.reply(PONG, RELAYED_ORIGIN) == Send(bytes([RELAYED]) + PONG, RELAY)


def test_route_transitions_name_only_its_states_and_start_is_always_direct():
    assert all(isinstance(v, RouteState) and (k[0] is None or isinstance(k[0], RouteState))
               for k, v in TRANSITIONS.items())
    assert {v for (_, t), v in TRANSITIONS.items() if t in ("start", "direct")} == {
        RouteState.DIRECT}


def test_route_every_trigger_is_defined_from_every_state():
    """A timer firing in any state must not raise inside tick(): e.g. the
    relay probe asked for while already relayed stays relayed."""
    triggers = {t for (_, t) in TRANSITIONS}
    assert {(s, t) for s in RouteState for t in triggers} <= set(TRANSITIONS)
    r, _ = route()
    r.punched_relayed()
    r.probe_relay()
    assert r.relayed and r.peer.via_relay


def test_route_send_all_is_send_of_each_direct_and_relayed():
    r, _ = route()
    datas = [b"a", b"bb", b"ccc"]
    assert r.send_all(datas) == [r.send(d) for d in datas] == [Send(d, BOB, 0) for d in datas]
    assert {type(s) for s in r.send_all(datas)} == {Send}
    assert r.send_all(datas)[0].via == 0
    r.probe_relay()
    r.punched_relayed()
    r.found(3.0)
    assert r.send_all(datas) == [Send(bytes([RELAYED]) + d, RELAY) for d in datas]
    assert r.send_all([]) == []
