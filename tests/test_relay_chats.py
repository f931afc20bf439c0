"""One client in two chats at once through the real relay process (issue
11, section 2), spoken to from raw UDP sockets."""

import socket

import pytest

from peerpunch import forwarder as F
from peerpunch import protocol as P
from peerpunch.effects import Send

from .cookies import join
from .procs import start_relay

NONCE = "cd" * 16


class RawClient:
    """A UDP socket on loopback speaking to the real relay. It stands in for
    the relay core in :func:`tests.cookies.join`: ``datagram_received``
    sends the datagram and returns the relay's answer as a Send to us."""

    def __init__(self, port):
        self.relay = ("127.0.0.1", port)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(5.0)
        self.addr = self.sock.getsockname()
        self.token = None

    def datagram_received(self, data, addr, now):
        assert addr == self.addr
        self.sock.sendto(data, self.relay)
        return [Send(self.recv(), addr)]

    def recv(self):
        data, source = self.sock.recvfrom(4096)
        assert source == self.relay
        return data

    def join(self, name, **fields):
        self.name = name
        self.token = join(self, name, self.addr, features=("ext", "relay1"), nonce=NONCE, **fields)
        return self

    def send(self, msg):
        self.sock.sendto(P.encode(msg) if not isinstance(msg, bytes) else msg, self.relay)

    def reply(self):
        return P.decode(self.recv())


@pytest.fixture
def relay():
    proc, port = start_relay("--no-alt-port")
    clients = []
    yield proc, (lambda: clients.append(RawClient(port)) or clients[-1])
    proc.stop()
    for c in clients:
        c.sock.close()


def test_relay_one_client_holds_two_chats_at_once(relay):
    proc, client = relay
    alice = client().join("alice", max_chats=2)
    bob, carol, dave = client().join("bob"), client().join("carol", max_chats=2), client().join("dave")

    secrets = {}
    for partner in (bob, carol):
        alice.send(P.Connect(partner.name, token=alice.token))
        to_alice, to_partner = alice.reply(), partner.reply()
        assert to_alice.username == partner.name and to_partner.username == "alice"
        assert to_alice.session == to_partner.session and to_alice.nonce == NONCE
        secrets[partner.name] = bytes.fromhex(to_alice.session)
        proc.expect(r"introduced 'alice' at 127\.0\.0\.1:\d+ to '%s'" % partner.name, stream="stderr")
    assert secrets["bob"] != secrets["carol"]

    dave.send(P.Connect("alice", token=dave.token))
    assert dave.reply() == P.TargetBusy(nonce=NONCE, target="alice")              # alice is at her bound
    alice.send(P.Connect("dave", token=alice.token))
    refusal = alice.reply()
    assert (refusal.code, refusal.nonce) == (P.ERROR_TOO_MANY_CHATS, NONCE)

    # relayed datagrams: each partner's reach alice named by its session
    to, one = bytes([F.RELAYED_TO]), bytes([F.RELAYED])
    ab, ac = F.channel_id(secrets["bob"]), F.channel_id(secrets["carol"])
    bob.send(one + b"hello from bob")                              # bob holds one chat: old form
    assert alice.recv() == to + ab + b"hello from bob"
    carol.send(to + ac + b"hello from carol")
    assert alice.recv() == to + ac + b"hello from carol"
    alice.send(to + ab + b"to bob")
    assert bob.recv() == one + b"to bob"
    alice.send(to + ac + b"to carol")
    assert carol.recv() == to + ac + b"to carol"

    # alice ends her chat with bob only: room for dave, carol's chat goes on
    alice.send(P.SessionFinished(token=alice.token, partner="bob"))
    proc.expect(r"session of 'alice' and 'bob' ended", stream="stderr")
    dave.send(P.Connect("alice", token=dave.token))
    assert dave.reply().username == "alice" and alice.reply().username == "dave"
    carol.send(to + ac + b"still here")
    assert alice.recv() == to + ac + b"still here"
