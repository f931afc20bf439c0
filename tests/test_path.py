"""The Path machine alone, and two Chats joined by an in-memory wire: no
relay client, no router, a fake clock. The relay is a stub that says where
it is and whether it forwards."""

import collections
import random

from peerpunch import events as E
from peerpunch import protocol as P
from peerpunch.birthday import SearchHistory
from peerpunch.chat import Chat
from peerpunch.effects import Send
from peerpunch.forwarder import RELAYED
from peerpunch.link import PING, PONG
from peerpunch.path import RELAYED_ORIGIN, EndChat, KeepAlive, Origin, Path
from peerpunch import securing as SC
from peerpunch.securing import Pins
from peerpunch.timers import fire

RELAY = ("203.0.113.1", 8080)
ALICE = ("198.51.100.10", 40000)
BOB = ("198.51.100.20", 41000)
SECRET = "5e" * 16


class StubRelay:
    """What a Path asks of the relay client."""
    addr = RELAY
    endpoint = "203.0.113.1:8080"
    mapping = None
    several = False

    def __init__(self, forwards=True):
        self.forwards = forwards
        self.asked = []

    def is_loopback(self):
        return False

    def reintroduce(self, partner, session):
        self.asked.append((partner, session))
        return []


def info(name, addr, features=("ext", "relay1")):
    return P.PeerInfo(peer=P.format_endpoint(addr), username=name, features=features,
                      session=SECRET)


def path(forwards=True, keepalive=15.0, punch_timeout=10.0):
    return Path(relay=StubRelay(forwards), families=(4,), local=None, keepalive=keepalive,
                punch_timeout=punch_timeout, rng=random.Random(1), stats=collections.Counter(),
                history=SearchHistory())


def run(machine, start, end):
    """Every effect of *machine*'s timers from *start* to *end*, with its time."""
    out, now = [], start
    while True:
        deadline = machine.next_deadline()
        if deadline is None or deadline > end:
            return out
        now = max(now, deadline)
        out += [(now, e) for e in fire(machine.timers(), now)]
        if any(isinstance(e, EndChat) for _, e in out):
            return out                  # its owner would stop every timer now


def test_path_probes_every_candidate_then_gives_up_with_the_reason():
    p = path(forwards=False)
    out = p.start(info("bob", BOB), 0.0)
    assert [e.what for e in out if isinstance(e, E.Notice)] == ["punching"]
    later = run(p, 0.0, 10.0)
    probes = [(t, e) for t, e in later if isinstance(e, Send) and e.data == PING]
    assert {e.addr for _, e in probes} == {BOB} and len(probes) >= 50
    assert [round(t, 1) for t, _ in probes[:3]] == [0.0, 0.2, 0.4]       # every 0.2 s
    assert [type(e) for _, e in later if not isinstance(e, Send)] == [
        E.StillPunching, E.Failed, EndChat]
    failed = [e for _, e in later if isinstance(e, E.Failed)][0]
    assert failed.text.startswith("could not reach bob at 198.51.100.20:41000: no answer to %d"
                                  " probes in 10 s (the NATs in between" % len(probes))


def test_path_falls_back_to_the_relay_and_answers_the_way_a_datagram_came():
    p = path()
    p.start(info("bob", BOB), 0.0)
    later = run(p, 0.0, 3.5)
    assert [e.what for _, e in later if isinstance(e, E.Notice)] == ["fallback"]
    assert Send(bytes([RELAYED]) + PING, RELAY) in [e for _, e in later]
    p.punched(RELAYED_ORIGIN)                  # the first answer came through the relay
    assert p.found(3.6, secure=False)[0].what == "relayed_for_now"
    assert p.state is E.State.CONNECTED and p.peer.via_relay
    assert p.reply(PONG, RELAYED_ORIGIN) == Send(bytes([RELAYED]) + PONG, RELAY)
    direct = Origin(BOB, 0, False)
    assert p.early(PONG, direct, _Plain(), 4.0)[0].what == "now_direct"   # a Pong proves it
    assert not p.peer.via_relay and p.reply(PONG, RELAYED_ORIGIN) == Send(bytes([RELAYED]) + PONG,
                                                                          RELAY)
    assert p.send(PONG) == Send(PONG, BOB, 0)


def test_path_keepalive_suspects_then_declares_the_path_lost():
    p = path(keepalive=10.0)
    p.start(info("bob", BOB), 0.0)
    p.punched(Origin(BOB, 0, False))
    p.found(0.1, secure=False)
    p.heard(Origin(BOB, 0, False), True, 0.1)
    later = run(p, 0.1, 40.0)
    pings = [t for t, e in later if isinstance(e, KeepAlive)]
    assert pings[0] == 10.1 and p.relay.asked == [("bob", SECRET)]   # suspect at 12.6 s
    assert [type(e) for t, e in later if not isinstance(e, (KeepAlive, Send))] == [
        E.ConnectionLost, EndChat]
    assert [t for t, e in later if isinstance(e, EndChat)] == [30.1]
    assert p.next_deadline() is None or p.next_deadline() > 30.1


class _Plain:
    """A plain link, as the path sees one."""
    encrypted = False
    ready = True


def chat(us, partner):
    p = path()
    secure_options = dict(identity=None, backend=None, pins=Pins(), strict=False,
                          require_encryption=False)
    return Chat(partner, us=us, path=p, secure_options=secure_options, stats=p.stats)


def test_two_chats_on_an_in_memory_wire_connect_and_exchange_a_line():
    """alice at ALICE and bob at BOB, no NAT in between: each punches, the
    first probe that arrives picks the path, both connect, a line goes over."""
    ends = {ALICE: chat("alice", "bob"), BOB: chat("bob", "alice")}
    shown = {ALICE: [], BOB: []}
    wire = []

    def emit(src, effects):
        for effect in effects:
            if isinstance(effect, Send):
                wire.append((src, effect))
            else:
                shown[src].append(effect)

    emit(ALICE, ends[ALICE].start(info("bob", BOB), 0.0))
    emit(BOB, ends[BOB].start(info("alice", ALICE), 0.0))
    now = 0.0
    while now < 1.0:
        while wire:
            src, send = wire.pop(0)
            emit(send.addr, ends[send.addr].received(send.data, Origin(src, 0, False), now))
        now += 0.1
        for addr, machine in ends.items():
            deadline = machine.next_deadline()
            if deadline is not None and deadline <= now:
                emit(addr, machine.tick(now))
    assert [e.username for e in shown[ALICE] if isinstance(e, E.Connected)] == ["bob"]
    assert [e.username for e in shown[BOB] if isinstance(e, E.Connected)] == ["alice"]
    assert all(isinstance(e, SC.Unencrypted) for e in shown[ALICE] if isinstance(e, tuple) and
               type(e).__module__ == "peerpunch.securing")
    line = ends[ALICE].send_line("hello bob", now)
    assert ends[BOB].received(line[0].data, Origin(ALICE, 0, False), now) == [
        E.ChatMessage("alice", "hello bob")]


class _PlainLink:
    encrypted = False
    ready = False


def test_path_back_direct_through_a_plain_pong_stops_pinging_through_the_relay():
    """A plain chat gone relayed that hears a Pong directly is direct again,
    and its keep-alives stop going through the relay as well (before the
    route was its own machine they kept a relay copy until the next datagram
    heard directly)."""
    p = path(forwards=True, keepalive=10.0)
    p.start(info("bob", BOB), 0.0)
    p.punched(Origin(BOB, 0, False))
    p.found(0.0, False)
    p.heard(Origin(BOB, 0, False), True, 0.0)
    before = [e for _, e in run(p, 0.0, 16.0) if isinstance(e, KeepAlive)]
    assert before[-1].also_relayed                      # silent 1.5 intervals: probing via relay
    assert [n.what for n in p.heard(RELAYED_ORIGIN, True, 16.0)] == ["now_relayed"]
    out = p.early(PONG, Origin(BOB, 0, False), _PlainLink(), 16.5)
    assert [n.what for n in out] == ["now_direct"] and not p.peer.via_relay
    after = [e for _, e in run(p, 16.5, 30.0) if isinstance(e, KeepAlive)]
    assert after and not any(e.also_relayed for e in after)
