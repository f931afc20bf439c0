"""The birthday search against a handshake: the symmetric side's own socket
and one of its extra sockets both reach the other peer, and the two peers
settle on different ones. Sessions behind simulated NATs with a fake clock
(tests/simnet.py); the order of arrival is forced to the one the NAT lab
showed (4-13 % of open, full-cone and restricted x symmetric chats started
relayed when the peer's network thread sent its punch at once)."""

import random

from peerpunch import session as S
from peerpunch.link import PING, PONG
from peerpunch.session import State

from .test_birthday import EASY_LAN, HARD_IP, HARD_LAN, connected, nat_pair, spray
from .test_secure_session import secure_options

HELLO, REPLY = b"\xe1", b"\xe2"


def settled_apart():
    """bob (symmetric) sprays from 256 sockets, then punches from his own.
    alice (full cone: she admits bob from any port) hears the first extra
    socket first, settles there, and offers her handshake to the first 8
    ports she heard: all extra sockets. bob reads alice's answer to his own
    socket's punch before what waits on his extra sockets (held back here)
    and settles on his own socket. Returns (net, bob, the held datagrams)."""
    net = nat_pair(easy_filtering="none")
    nat = net.public[HARD_IP]
    held = []

    def hold(src, dst, data):
        inside = nat._in.get(dst[1], [HARD_LAN])[0] if dst[0] == HARD_IP else HARD_LAN
        if inside != HARD_LAN:                  # for one of bob's extra sockets
            held.append((src, dst, data))
        return inside != HARD_LAN

    bob = net.add_peer("bob", HARD_LAN, rng=random.Random(11), **secure_options())
    net.run(1)
    net.drop = hold
    alice = net.add_peer("alice", EASY_LAN, target="bob", rng=random.Random(12),
                         **secure_options())
    net.run(0.1)
    net.drop = None
    bob_chat, alice_chat = bob.table.chats["alice"], alice.table.chats["bob"]
    assert bob_chat.state is State.HANDSHAKING and bob_chat.peer.via == 0
    assert alice_chat.state is State.HANDSHAKING and alice_chat.peer.addr[0] == HARD_IP
    assert nat._in[alice_chat.peer.addr[1]][0] != HARD_LAN
    assert any(d[:1] == HELLO for _, _, d in held)        # her HELLO waits there
    return net, alice, bob, held


def extra_socket(net, bob, public_port):
    """The number of bob's extra socket behind his NAT's *public_port*."""
    inside = net.public[HARD_IP]._in[public_port][0]
    return next(via for (owner, via), local in net.sockets.items()
                if owner == HARD_LAN and local == inside)


def test_a_handshake_on_an_extra_socket_after_the_punch_settled_on_the_own_socket_goes_through():
    """alice's handshake, on the extra socket, gets through directly (it used
    to be dropped as a stranger's, the search being over once bob left
    PUNCHING, and both fell back to the relay after 4 s); bob answers from
    that socket and keeps it."""
    net, alice, bob, held = settled_apart()
    for datagram in held:
        net.inject(*datagram)
    net.run(6)                     # past the handshake's relay fallback (4 s)
    for lan in (EASY_LAN, HARD_LAN):
        (conn,) = connected(net, lan)
        assert conn.path == "direct" and conn.seconds < 1.0, conn
    assert not any("handshake" in e.text for lan in (EASY_LAN, HARD_LAN)
                   for e in net.shown(lan, S.Notice))
    bob_chat, alice_chat = bob.table.chats["alice"], alice.table.chats["bob"]
    kept = extra_socket(net, bob, alice_chat.peer.addr[1])    # where alice settled
    assert spray(bob).kept == kept == bob_chat.peer.via and spray(bob).open == {kept}
    assert not [d for s, t, d in net.wire if s == HARD_LAN and d[:1] == REPLY]
    assert net.registry.forwarder.stats["datagrams"] == 0
    net.line(EASY_LAN, "over the extra socket")
    net.line(HARD_LAN, "and back")
    net.run(1)
    assert [e.text for e in net.shown(HARD_LAN, S.ChatMessage)] == ["over the extra socket"]
    assert [e.text for e in net.shown(EASY_LAN, S.ChatMessage)] == ["and back"]


def test_a_plain_probe_on_an_extra_socket_during_the_handshake_is_answered_there_and_moves_nothing():
    """A Ping from alice lands on the extra socket she settled on while bob
    waits for her handshake on his own: it is the search's hit (the socket
    is kept), answered from that socket, but only her handshake frame moves
    bob there."""
    net, alice, bob, held = settled_apart()
    alice_chat, bob_chat = alice.table.chats["bob"], bob.table.chats["alice"]
    kept = extra_socket(net, bob, alice_chat.peer.addr[1])
    local = net.sockets[(HARD_LAN, kept)]
    sent = len(net.wire)
    net.inject(EASY_LAN, alice_chat.peer.addr, PING)
    net.run(0.001)
    assert spray(bob).kept == kept and bob_chat.peer.via == 0
    assert (local, bob_chat.peer.addr, PONG) in net.wire[sent:]
    for datagram in held:
        net.inject(*datagram)
    net.run(1)
    assert connected(net, HARD_LAN)[0].path == "direct" and bob_chat.peer.via == kept
