"""Linux UDP GSO and GRO in the shell's loop (peerpunch.batchio): runs found
in what a core returns, one send per run, segments cut apart on receive,
and a clean fallback to one datagram per call wherever the system refuses
(forced here with sockets that refuse)."""

import errno
import socket
import struct

import pytest

from peerpunch import batchio
from peerpunch.effects import Log, Send

from .test_shell import ListLog, bound_loop, client, poll_until

A, B = ("127.0.0.1", 1000), ("127.0.0.1", 2000)


def sends(sizes, addr=A, via=0):
    return [Send(bytes([i % 256]) * size, addr, via) for i, size in enumerate(sizes)]


# -- finding runs

def test_batchio_run_is_one_address_one_socket_one_size_but_a_shorter_last():
    effects = sends([100] * 5 + [40, 100])
    assert batchio.run_length(effects, 0) == 6              # the shorter one ends it
    assert batchio.run_length(effects, 6) == 1
    effects = sends([100] * 3) + sends([100], B) + sends([100], via=1) + [Log(10, "x")]
    assert batchio.run_length(effects, 0) == 3
    assert batchio.run_length(effects, 3) == 1
    assert batchio.run_length(sends([100, 120, 100]), 0) == 1   # a larger one is not segmented


def test_batchio_run_stops_at_the_kernels_limits():
    assert batchio.run_length(sends([10] * 100), 0) == batchio.MAX_SEGMENTS
    fit = batchio.MAX_RUN_BYTES // 1400
    assert fit < batchio.MAX_SEGMENTS
    assert batchio.run_length(sends([1400] * (fit + 5)), 0) == fit


# -- GRO: cutting a batch apart

class FakeGroSocket:
    def __init__(self, data, segment):
        self.data, self.segment = data, segment

    def recvmsg(self, size, ancillary):
        cmsg = [] if self.segment is None else [
            (batchio.SOL_UDP, batchio.UDP_GRO, struct.pack("=i", self.segment))]
        return self.data, cmsg, 0, A


def test_batchio_receive_cuts_a_gro_batch_at_its_segment_size():
    data = b"a" * 100 + b"b" * 100 + b"c" * 30
    assert batchio.receive(FakeGroSocket(data, 100), 65535) == ([b"a" * 100, b"b" * 100,
                                                                 b"c" * 30], A)
    assert batchio.receive(FakeGroSocket(data, None), 65535) == ([data], A)
    assert batchio.receive(FakeGroSocket(data, 500), 65535) == ([data], A)


# -- the loop, on real sockets

class Refusing(socket.socket):
    """A UDP socket whose GSO send fails with *error* and whose GRO option is refused."""
    error = errno.EIO

    def __init__(self, *args):
        super().__init__(*args)
        self.sendmsgs = self.sendtos = 0

    def sendmsg(self, *args):
        self.sendmsgs += 1
        raise OSError(self.error, "refused here")

    def sendto(self, *args):
        self.sendtos += 1
        return super().sendto(*args)

    def setsockopt(self, level, option, value):
        if level == batchio.SOL_UDP:
            raise OSError(errno.ENOPROTOOPT, "no such option")
        return super().setsockopt(level, option, value)


def offload_loop(handle_batch, sock=None):
    log = ListLog()
    if sock is None:
        loop, port = bound_loop(None, log, handle_batch=handle_batch, offload=True)
    else:
        sock.bind(("127.0.0.1", 0))
        from peerpunch.shell import DatagramLoop
        loop, port = DatagramLoop(sock, None, log, handle_batch=handle_batch,
                                  offload=True), sock.getsockname()[1]
    return loop, port, log


def receive_all(sock, count):
    return [sock.recv(2000) for _ in range(count)]


needs_linux = pytest.mark.skipif(not batchio.linux(), reason="UDP GSO/GRO are Linux's")


@needs_linux
def test_batchio_loop_sends_a_run_in_one_call_and_the_partner_gets_each_datagram():
    loop, port, _ = offload_loop(lambda items, via: [])
    with client() as c:
        effects = sends([300] * 7 + [120], ("127.0.0.1", c.getsockname()[1]))
        loop.apply(effects)
        assert receive_all(c, 8) == [e.data for e in effects]
    assert loop.traffic["datagrams_out"] == 8 and loop.traffic["bytes_out"] == 7 * 300 + 120
    assert loop.send_errors == 0
    assert loop.sockets[0].getsockopt(batchio.IPPROTO_IP, batchio.IP_MTU_DISCOVER) == \
        batchio.PMTUDISC_PROBE                             # DF, never fragmented here
    loop.close()


@needs_linux
def test_batchio_loop_hands_the_core_each_datagram_of_a_gro_batch():
    got = []
    loop, port, _ = offload_loop(lambda items, via: got.extend(items) or [])
    if not loop._gro:
        pytest.skip("this kernel refuses UDP_GRO")
    payloads = [bytes([i]) * 200 for i in range(9)] + [b"z" * 50]
    with client() as c:
        batchio.send(c, payloads, ("127.0.0.1", port))   # one GSO send: GRO keeps it whole
        poll_until(loop, lambda: len(got) == 10)
        assert [d for d, _ in got] == payloads
        assert {a for _, a in got} == {("127.0.0.1", c.getsockname()[1])}
    loop.close()


def test_batchio_loop_falls_back_for_good_when_segmentation_is_refused():
    sock = Refusing(socket.AF_INET, socket.SOCK_DGRAM)
    got = []
    loop, port, log = offload_loop(lambda items, via: got.extend(items) or [], sock)
    assert not loop._gro                                   # refused: plain reads
    with client() as c:
        to = ("127.0.0.1", c.getsockname()[1])
        first, second = sends([200] * 5, to), sends([200] * 5, to)
        loop.apply(first)
        loop.apply(second)
        assert receive_all(c, 10) == [e.data for e in first + second]
        c.sendto(b"hello", ("127.0.0.1", port))
        poll_until(loop, lambda: got)
    assert sock.sendmsgs == (1 if batchio.linux() else 0) and sock.sendtos == 10
    assert got == [(b"hello", to)] and loop.send_errors == 0
    assert not loop._gso
    loop.close()


@needs_linux
def test_batchio_loop_counts_a_run_that_fails_otherwise_and_keeps_segmenting():
    sock = Refusing(socket.AF_INET, socket.SOCK_DGRAM)
    sock.error = errno.ENOBUFS                             # the buffer is full: lost, not refused
    loop, _, _ = offload_loop(lambda items, via: [], sock)
    loop.apply(sends([100] * 4, A))
    assert loop.send_errors == 4 and sock.sendtos == 0 and loop._gso == {0}
    loop.close()


def test_batchio_loop_without_offload_never_segments(monkeypatch):
    monkeypatch.setattr(batchio, "linux", lambda: False)
    sock = Refusing(socket.AF_INET, socket.SOCK_DGRAM)
    loop, _, _ = offload_loop(lambda items, via: [], sock)
    with client() as c:
        loop.apply(sends([100] * 4, ("127.0.0.1", c.getsockname()[1])))
        assert len(receive_all(c, 4)) == 4
    assert sock.sendmsgs == 0 and sock.sendtos == 4 and not loop._gro
    loop.close()
