"""The relay client alone: registration, requests, watches and what its
Registers say, driven by scripted relay datagrams and a fake clock (no
session, no peer)."""

import collections
import random

from peerpunch import events as E
from peerpunch import protocol as P
from peerpunch.effects import Send
from peerpunch.relayclient import TRANSITIONS, Introduction, RelayClient, RelayState
from peerpunch.request import TRANSITIONS as REQUEST_TRANSITIONS
from peerpunch.request import RequestEnded, RequestState
from peerpunch.stun import is_stun

RELAY = ("203.0.113.1", 8080)
NONCE = "5a" * 16
TOKEN = "ab" * 16


def client(**options):
    settings = dict(features=P.OUR_FEATURES, keepalive=15.0, register_timeout=10.0,
                    rng=random.Random(1), random_bytes=lambda n: b"\x5a" * n,
                    stats=collections.Counter())
    settings.update(options)
    return RelayClient("alice", RELAY, **settings)


def to_relay(effects):
    return [P.decode(e.data) for e in effects
            if isinstance(e, Send) and e.addr == RELAY and not is_stun(e.data)]


def events(effects):
    return [e for e in effects if not isinstance(e, Send) and type(e).__name__ != "Log"]


def ack(features=("ext", "relay1", "watch1")):
    return P.encode(P.RegisterAck(features=features, token=TOKEN, nonce=NONCE))


def registered(features=("ext", "relay1", "watch1")):
    relay = client()
    relay.start(0.0)
    out = relay.datagram_received(ack(features), 0.1)
    assert relay.state is RelayState.REGISTERED and relay.token == TOKEN
    assert events(out) == [E.Registered("alice", "203.0.113.1:8080")]
    relay.tick(2.0)              # the mapping check gives up: nobody answers its STUN
    return relay


def test_relayclient_retries_register_with_backoff_then_gives_up():
    relay = client()
    assert [type(m) for m in to_relay(relay.start(0.0))] == [P.Register]
    times = []
    while relay.state is RelayState.REGISTERING:
        now = relay.next_deadline()
        out = relay.tick(now)
        times.append(round(now, 2))
    assert times[:4] == [0.5, 1.5, 2.0, 2.5]          # 0.5, doubling to 1.0 ... and the 2-s line
    assert relay.state is RelayState.CLOSED and relay.next_deadline() is None
    assert isinstance(events(out)[-1], E.Closed) and events(out)[-1].exit_code == 1


def test_relayclient_request_becomes_a_watch_and_online_asks_again():
    relay = registered()
    assert [m.target_username for m in to_relay(relay.ask("bob", 3.0))] == ["bob"]
    out = relay.datagram_received(P.encode(P.TargetNotFound(nonce=NONCE)), 3.1)
    assert events(out) == [E.Failed("target_not_found"), E.Waiting("bob")]
    assert [m.watch for m in to_relay(out)] == [("bob",)]      # the watch, at once
    assert relay.request.state is RequestState.WAITING and relay.waits_for() == "bob"
    out = relay.datagram_received(P.encode(P.Online(username="bob", nonce=NONCE)), 9.0)
    assert to_relay(out) == [P.Connect("bob", token=TOKEN)]
    assert relay.request.state is RequestState.REQUESTING


def test_relayclient_introduction_is_handed_over_and_repeats_connect_while_punching():
    relay = registered()
    relay.ask("bob", 3.0)
    info = P.PeerInfo(peer="198.51.100.20:41000", username="bob", session="5e" * 16, nonce=NONCE)
    out = relay.datagram_received(P.encode(info), 3.2)
    assert [type(e) for e in events(out)] == [Introduction]
    assert relay.introduced("bob", 3.2) is None
    relay.chat_began("bob", info.session)
    assert to_relay(relay.tick(4.2)) == [P.Connect("bob", token=TOKEN)]   # no Register in front
    relay.settled("bob", 4.5)
    assert relay.request.connect.when is None
    register = to_relay(relay.reintroduce("bob", info.session))[0]
    assert (register.partner, register.session) == ("bob", info.session)
    out = relay.chat_finished("bob", 5.0)
    assert to_relay(out) == [P.SessionFinished(token=TOKEN, partner="bob")] and relay.request is None
    assert to_relay(relay.tick(relay.liveness.timer.when))[0].partner is None


def test_relayclient_busy_ends_the_request_and_an_introduction_of_another_drops_it():
    relay = registered()
    relay.ask("bob", 3.0)
    out = relay.datagram_received(P.encode(P.TargetBusy(nonce=NONCE)), 3.1)
    assert events(out) == [E.Failed("target_busy"), RequestEnded("bob")]
    relay.chat_finished("bob", 3.1)
    relay.ask("bob", 4.0)
    relay.introduced("carol", 4.1)
    assert relay.request is None


def test_relayclient_transition_tables_name_only_their_states():
    assert all(isinstance(s, RelayState) for pair in TRANSITIONS.items()
               for s in (pair[0][0], pair[1]))
    assert all(isinstance(s, RequestState) for pair in REQUEST_TRANSITIONS.items()
               for s in (pair[0][0], pair[1]))
