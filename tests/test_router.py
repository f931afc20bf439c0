"""The router alone: a real RelayClient fed scripted relay datagrams, and a
scripted Chat in place of the real one, to see what the router hands to
which machine (with which Origin) and what it does with their events."""

import types

from peerpunch import events as E
from peerpunch import protocol as P
from peerpunch import session as S
from peerpunch.chattable import ChatTable
from peerpunch.console import format_event
from peerpunch.effects import Send
from peerpunch.forwarder import RELAYED
from peerpunch.path import RELAYED_ORIGIN, EndChat, Origin
from peerpunch.stun import is_stun

RELAY = ("203.0.113.1", 8080)
BOB = ("198.51.100.20", 41000)
STRANGER = ("192.0.2.99", 5555)
NONCE = "5a" * 16
TOKEN = "ab" * 16
SECRET = "5e" * 16


class ScriptedChat:
    """Records what it is handed; answers as told."""

    def __init__(self, partner):
        self.partner = partner
        self.calls = []
        self.answer = []
        self.state = E.State.PUNCHING
        self.outbox = types.SimpleNamespace(lines=[])
        self.peer = None
        self.secure = None           # the router's ChatList reads it

    def timers(self):
        return ()

    def start(self, info, now):
        self.calls.append(("start", info.username))
        return [E.Notice("punching", name=info.username, endpoint=info.peer)]

    def accepts(self, addr, data):
        return addr == BOB

    def received(self, data, origin, now):
        self.calls.append(("received", data, origin))
        return list(self.answer)

    def close(self):
        self.calls.append(("close",))
        return []

    def goodbye(self):
        return []


class Router(S.PeerSession):
    """A router whose table makes scripted chats (the last one: ``made``)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.table.new_chat = self._scripted

    def _scripted(self, partner, request=None):
        self.made = ScriptedChat(partner)
        return self.made


def to_relay(effects):
    return [P.decode(e.data) for e in effects
            if isinstance(e, Send) and e.addr == RELAY and not is_stun(e.data)]


def router():
    r = Router("alice", RELAY, random_bytes=lambda n: b"\x5a" * n)
    r.start(0.0)
    ack = P.RegisterAck(features=("ext", "relay1", "watch1"), token=TOKEN, nonce=NONCE)
    assert [type(e) for e in r.datagram_received(P.encode(ack), RELAY, 0.1)
            if not isinstance(e, Send)].count(E.Registered) == 1
    return r


def introduce(r, now=1.0):
    info = P.PeerInfo(peer="198.51.100.20:41000", username="bob", session=SECRET, nonce=NONCE)
    return r.datagram_received(P.encode(info), RELAY, now)


def test_router_an_introduction_makes_a_chat_and_tells_the_relay_client():
    r = router()
    out = introduce(r)
    assert r.made.calls == [("start", "bob")] and r.chats == {"bob": r.made}
    assert [e.what for e in out if isinstance(e, E.Notice)] == ["punching"]
    assert r.relay.chats == {"bob": SECRET}          # the next Register says so


def test_router_passes_each_datagram_with_its_origin():
    r = router()
    introduce(r)
    r.datagram_received(b"direct", BOB, 2.0)
    r.datagram_received(bytes([RELAYED]) + b"relayed", RELAY, 2.1)
    r.datagram_received(b"from a stranger", STRANGER, 2.2)
    assert r.made.calls[1:] == [("received", b"direct", Origin(BOB, 0, False)),
                                ("received", b"relayed", RELAYED_ORIGIN)]
    assert r.stats["ignored_strangers"] == 1


def test_router_ends_a_chat_its_machine_says_is_over():
    r = router()
    introduce(r)
    r.made.answer = [E.PeerLeft("bob"), EndChat("bob")]
    out = r.datagram_received(b"goodbye", BOB, 3.0)
    assert [e for e in out if isinstance(e, E.PeerLeft)] == [E.PeerLeft("bob")]
    assert not any(isinstance(e, EndChat) for e in out)          # the router's own business
    assert to_relay(out) == [P.SessionFinished(token=TOKEN, partner="bob")]
    assert r.made.calls[-1] == ("close",) and r.chats == {} and r.relay.chats == {}
    assert r.state is E.State.IDLE


CAROL = ("198.51.100.30", 42000)


def sends_to(effects, addr):
    return [P.decode(e.data) for e in effects if isinstance(e, Send) and e.addr == addr]


def plain_chat_with(r, name, addr, now):
    """The relay introduces *name* at *addr*; its first probe picks the path."""
    info = P.PeerInfo(peer=P.format_endpoint(addr), username=name, session=SECRET,
                      features=("ext", "relay1"), nonce=NONCE)
    r.datagram_received(P.encode(info), RELAY, now)
    out = r.datagram_received(P.encode(P.Ping()), addr, now + 0.1)
    assert [e.username for e in out if isinstance(e, E.Connected)] == [name]


def test_router_holds_two_chats_when_the_relay_allows_it():
    """Section 2 of issue 11: the relay lets us hold two chats (its ack's
    max_chats, set here as it will read it); /msg, /switch, /chats and
    /leave NAME act on one chat each, plain lines go to the current one."""
    r = S.PeerSession("alice", RELAY, random_bytes=lambda n: b"\x5a" * n)
    r.start(0.0)
    r.datagram_received(P.encode(P.RegisterAck(features=("ext", "relay1", "watch1"),
                                               token=TOKEN, nonce=NONCE)), RELAY, 0.1)
    r.relay.max_chats = 2
    plain_chat_with(r, "bob", BOB, 1.0)
    assert [m.target_username for m in to_relay(r.handle_line("/connect carol", 2.0))] == ["carol"]
    plain_chat_with(r, "carol", CAROL, 3.0)
    assert set(r.chats) == {"bob", "carol"} and r.table.current == "carol"
    out = r.handle_line("hello carol", 4.0)
    assert sends_to(out, CAROL) == [P.DirectMessage("hello carol")] and not sends_to(out, BOB)
    out = r.handle_line("/msg bob hello bob", 4.1)
    assert sends_to(out, BOB) == [P.DirectMessage("hello bob")] and not sends_to(out, CAROL)
    assert format_event(r.handle_line("/switch bob", 4.2)[0]) == "plain lines now go to bob"
    assert sends_to(r.handle_line("to bob", 4.3), BOB) == [P.DirectMessage("to bob")]
    assert format_event(r.handle_line("/chats", 4.4)[0]) == (
        "* bob: connected, direct, unencrypted\n  carol: connected, direct, unencrypted")
    shown = r.datagram_received(P.encode(P.DirectMessage("hi from carol")), CAROL, 4.5)
    assert [format_event(e) for e in shown] == ["[carol]> hi from carol"]
    out = r.handle_line("/leave carol", 5.0)
    assert sends_to(out, CAROL) == [P.Goodbye()] * 3 and not sends_to(out, BOB)
    assert set(r.chats) == {"bob"} and r.table.current == "bob" and r.state is E.State.CONNECTED
    assert format_event(r.handle_line("/leave carol", 5.1)[0]) == \
        "no chat with carol (/chats lists them)"


def test_router_with_one_chat_allowed_ignores_a_second_introduction():
    r = S.PeerSession("alice", RELAY, random_bytes=lambda n: b"\x5a" * n)
    r.start(0.0)
    r.datagram_received(P.encode(P.RegisterAck(features=("ext", "relay1"), token=TOKEN,
                                               nonce=NONCE)), RELAY, 0.1)
    plain_chat_with(r, "bob", BOB, 1.0)
    assert format_event(r.handle_line("/connect carol", 2.0)[0]) == \
        "already in a chat; /leave it first"
    info = P.PeerInfo(peer=P.format_endpoint(CAROL), username="carol", session=SECRET,
                      nonce=NONCE)
    r.datagram_received(P.encode(info), RELAY, 2.5)
    assert set(r.chats) == {"bob"} and r.table.current == "bob"


def test_router_connect_to_a_partner_already_in_a_chat_says_so():
    r = S.PeerSession("alice", RELAY, random_bytes=lambda n: b"\x5a" * n)
    r.start(0.0)
    r.datagram_received(P.encode(P.RegisterAck(features=("ext", "relay1"), token=TOKEN,
                                               nonce=NONCE)), RELAY, 0.1)
    r.relay.max_chats = 2
    plain_chat_with(r, "bob", BOB, 1.0)
    out = r.handle_line("/connect bob", 2.0)
    assert [format_event(e) for e in out] == ["already in a chat with bob"] and not to_relay(out)


def test_router_stops_asking_the_relay_once_the_path_is_found():
    r = router()
    r.handle_line("/connect bob", 0.5)
    plain = ChatTable.new_chat(r.table, "bob")        # a real chat, this once
    r.table.new_chat = lambda partner, request=None: plain
    introduce(r, 1.0)
    assert [type(m) for m in to_relay(r.tick(2.0))] == [P.Connect]   # repeated while punching
    r.datagram_received(P.encode(P.Ping()), BOB, 2.5)                # the path is found
    assert r.state is E.State.CONNECTED
    later = []
    while r.next_deadline() < 40.0:
        later += r.tick(r.next_deadline())
    asks = [m for m in to_relay(later) if type(m) is P.Connect]
    assert asks and all(m.session == SECRET for m in asks)   # only when bob goes quiet
