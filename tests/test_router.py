"""The router alone: a real RelayClient fed scripted relay datagrams, and a
scripted Chat in place of the real one, to see what the router hands to
which machine (with which Origin) and what it does with their events."""

from peerpunch import events as E
from peerpunch import protocol as P
from peerpunch import session as S
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
        self.queue = []
        self.peer = None

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
    def _new_chat(self, partner):
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
    assert to_relay(out) == [P.SessionFinished(token=TOKEN)]
    assert r.made.calls[-1] == ("close",) and r.chats == {} and r.relay.chats == {}
    assert r.state is E.State.IDLE
