"""Datagrams read together (PeerSession.datagrams_received, the shell's
batch read): a run of sealed frames from a chat's partner is opened
together, its streams answer once in the same call, forged or foreign
datagrams in the run are dropped one by one as before; and the link's own
run opener (Secure.open_run). Simulated network, fake clock."""

import logging
import os

import pytest

from peerpunch import chatfiles as CF
from peerpunch import protocol as P
from peerpunch import transfer as T
from peerpunch.effects import Log, Send
from peerpunch.events import ChatMessage, PeerLeft
from peerpunch.filecommands import collected
from peerpunch.filedisk import Disk

from .simnet import SimNet
from .test_multichat import ALICE, BOB
from .test_secure_session import connect, secure_options
from .test_securing import S, chat, machine, new_identity, secured_pair
from .test_waiting import until


def _pair(tmp_path, loss=0.0):
    net = SimNet(loss=loss, seed=3, batched=True)
    alice, bob = connect(net, secure_options(disk=Disk(str(tmp_path / "a"))),
                         secure_options(disk=Disk(None, auto_accept=str(tmp_path / "b"))))
    return net, alice, bob


def _send(net, alice, path):
    net.line(ALICE, "/send %s" % path)
    for effect in net.shown(ALICE, CF.Collect):
        net.events[ALICE].remove(effect)
        net._emit(ALICE, collected(alice, effect.partner, alice.disk.collect(effect.paths),
                                   net.now))


def _received(net):
    return [e for e in net.shown(BOB, CF.FileNews) if type(e.event) is T.FileReceived]


@pytest.mark.parametrize("loss", [0.0, 0.05])
def test_session_batch_file_arrives_byte_identical_in_runs(tmp_path, loss):
    net, alice, bob = _pair(tmp_path, loss)
    data = os.urandom(700000)
    (tmp_path / "f.bin").write_bytes(data)
    _send(net, alice, tmp_path / "f.bin")
    until(net, lambda: _received(net), 60)
    assert (tmp_path / "b" / "f.bin").read_bytes() == data
    assert max(n for who, n in net.batches if who == BOB) >= 10     # runs, not one by one


def test_session_batch_run_of_file_data_is_acknowledged_in_the_same_call(tmp_path):
    net, alice, bob = _pair(tmp_path)
    calls = []
    take = bob.datagrams_received

    def spy(items, now, via=0):
        out = take(items, now, via)
        calls.append((len(items), sum(1 for e in out if type(e) is Send and e.addr == ALICE)))
        return out
    bob.datagrams_received = spy
    (tmp_path / "f.bin").write_bytes(os.urandom(400000))
    _send(net, alice, tmp_path / "f.bin")
    until(net, lambda: _received(net), 60)
    runs = [sends for n, sends in calls if n >= 8]
    assert runs and all(1 <= sends <= CF.ACK_COPIES for sends in runs)  # answered at once, once


def test_session_batch_forged_and_foreign_datagrams_in_a_run_are_dropped_alone(tmp_path):
    net, alice, bob = _pair(tmp_path)
    held = []
    net.drop = lambda src, dst, data: dst == BOB and held.append(data) is None
    net.line(ALICE, "first")
    net.line(ALICE, "second")
    net.run(0.01)
    net.drop = None
    frames = [d for d in held if d[:1] == bytes((0xE4,))]
    assert len(frames) >= 2
    forged = frames[0][:-1] + bytes([frames[0][-1] ^ 1])
    dropped = bob.stats["dropped"]
    run = [(forged, ALICE), (frames[0], ALICE), (b"junk", ALICE)] + \
        [(f, ALICE) for f in frames[1:]] + [(frames[0], ALICE)]          # a replay at the end
    net._emit(BOB, bob.datagrams_received(run, net.now))
    net.run(1)
    lines = [e.text for e in net.shown(BOB, ChatMessage)]
    assert lines == ["first", "second"]
    assert bob.stats["dropped"] - dropped == 3          # the forgery, the junk, the replay


def test_session_batch_open_run_refuses_forgeries_and_replays_alone():
    wire, _, _ = secured_pair()
    a, b = wire.a, wire.b
    one, two = b.seal(chat("one")), b.seal(chat("two"))
    tampered = one[:-1] + bytes([one[-1] ^ 1])
    output, rest = a.open_run([tampered, one, two, one], wire.now)
    assert output.messages == [chat("one")]           # the run stops at its first message
    assert rest == [tampered, two, one]               # taken one by one: two, then a replay
    assert a.receive(two, wire.now).messages == [chat("two")]
    with pytest.raises(P.RemoteProtocolError):
        a.receive(one, wire.now)
    assert a.state is S.SECURE


def test_session_batch_open_run_skips_a_sealed_frame_that_does_not_decode():
    wire, _, _ = secured_pair()
    a, b = wire.a, wire.b
    packets = [b"\xf8files %d" % i for i in range(3)] + [b"\xc1lines"]
    junk, line = b.seal_packet(b"{not json"), b.seal(chat("one"))
    frames = [b.seal_packet(packets[0]), junk, b.seal_packet(packets[1]), line,
              b.seal_packet(packets[2]), b.seal_packet(packets[3])]
    output, rest = a.open_run(frames, wire.now)
    assert output.packets == packets[:2] and output.messages == [chat("one")]
    assert rest == [junk] + frames[4:]                # after the message: one by one
    assert a.receive(frames[4], wire.now).packets == [packets[2]]
    with pytest.raises(P.RemoteProtocolError):
        a.receive(junk, wire.now)                     # authentic once, now a replay


def test_session_batch_open_run_only_on_a_secure_link():
    idle = machine("alice", "bob", new_identity())
    with pytest.raises(P.LocalProtocolError):
        idle.open_run([], 0.0)


@pytest.mark.parametrize("batched", [True, False], ids=["run", "one_by_one"])
def test_session_batch_a_line_before_goodbye_in_one_run_is_shown(tmp_path, batched):
    """alice types a line and quits; bob reads both in one run: the line is
    shown, then alice leaves, as one by one (a run stops at its first
    protocol message, and its stream packets come before that message)."""
    net, alice, bob = _pair(tmp_path)
    held = []
    net.drop = lambda src, dst, data: dst == BOB and held.append(data) is None
    net.line(ALICE, "last words")
    net._emit(ALICE, alice.quit(net.now))
    net.run(0.01)
    net.drop = None
    assert len(held) >= 2
    if batched:
        net._emit(BOB, bob.datagrams_received([(d, ALICE) for d in held], net.now))
    else:
        for data in held:
            net._emit(BOB, bob.datagram_received(data, ALICE, net.now))
    assert [e.text for e in net.shown(BOB, ChatMessage)] == ["last words"]
    assert [e.username for e in net.shown(BOB, PeerLeft)] == ["alice"]


def test_session_batch_a_datagram_that_raises_loses_only_its_own_effects(tmp_path):
    """A bug met on one datagram of a batch (here the relay client raising)
    drops that datagram with an ERROR Log; the chat lines around it are shown."""
    net, alice, bob = _pair(tmp_path)
    held = []
    net.drop = lambda src, dst, data: dst == BOB and held.append(data) is None
    net.line(ALICE, "before")
    net.run(0.01)
    net.line(ALICE, "after")
    net.run(0.01)
    net.drop = None
    frames = [d for d in held if d[:1] == bytes((0xE4,))]
    assert len(frames) >= 2

    def broken(data, now):
        raise RuntimeError("a bug")
    bob.relay.datagram_received = broken
    batch = [(frames[0], ALICE), (b'"Ping"', bob.relay.addr)] + [(f, ALICE) for f in frames[1:]]
    out = bob.datagrams_received(batch, net.now)
    assert [e.text for e in out if type(e) is ChatMessage] == ["before", "after"]
    errors = [e for e in out if type(e) is Log and e.level == logging.ERROR]
    assert len(errors) == 1 and "RuntimeError: a bug" in errors[0].text
