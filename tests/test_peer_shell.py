"""The peer's network thread (peershell.NetworkThread) with a scripted core: the
extra sockets a birthday search asks for are opened, used, closed -- also
while their datagrams wait in the same select batch -- and running out of
file descriptors shrinks the search with one warning instead of failing.

Nothing here waits for a time: the core's effects are carried out in
order, so a datagram sent after them ("started", "kept") proves the ones
before it are done, and the thread's exit proves everything it sent is in
our receive buffer."""

import logging
import queue
import socket
import subprocess
import sys
import time

from peerpunch import session as S
from peerpunch.effects import CloseSocket, Log, OpenSocket, Send
from peerpunch.peershell import NetworkThread

from .procs import ROOT, env

EXTRA = 300
WAIT = 30.0                  # upper bound for anything below; normally milliseconds
STARTED = "started: every socket opened and every hi sent"


class ScriptedCore:
    """Opens EXTRA sockets and sends from each to *target*; the first
    datagram on any of them closes all the others and is answered from it."""

    def __init__(self, target):
        self.target = target
        self.got = []

    def start(self, now):
        return [OpenSocket(v) for v in range(1, EXTRA + 1)] + \
            [Send(b"hi", self.target, v) for v in range(1, EXTRA + 1)] + \
            [Log(logging.WARNING, STARTED)]

    def datagram_received(self, data, addr, now, via=0):
        self.got.append(via)
        if data == b"quit":
            return [S.Closed(0, "bye")]
        if len(self.got) == 1:
            return [CloseSocket(v) for v in range(1, EXTRA + 1) if v != via] + \
                [Send(b"kept", addr, via), Send(b"stale", addr, EXTRA + 5)]
        return []

    def next_deadline(self):
        return None

    def handle_line(self, line, now):
        return []

    def tick(self, now):
        return []

    def quit(self, now):
        return [S.Closed(0, "bye")]


def run_scripted():
    """Returns (extra sockets open, how many of them we heard 'hi' from
    (a loaded machine may drop some), sockets left open after the hit,
    datagrams the core received, what came back to the hit, exit items,
    warnings, whether the thread still runs)."""
    recv = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    recv.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)   # 300 at once
    recv.bind(("127.0.0.1", 0))
    recv.settimeout(WAIT)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    core, out = ScriptedCore(recv.getsockname()), queue.Queue()
    thread = NetworkThread(core, sock, out)
    thread.start()
    items = _items_until(out, ("log", STARTED))
    opened = len(thread.loop.sockets) - 1       # settled: the core asks for nothing more until a hit
    sources = {addr for data, addr in _drain(recv) if data == b"hi"}   # all sent already
    for addr in sorted(sources):          # all at once: many wait in one select batch
        recv.sendto(b"probe", addr)
    answers = [recv.recvfrom(100)[0]]     # the hit's answer; it follows its CloseSockets
    left = len(thread.loop.sockets) - 1
    recv.sendto(b"quit", sock.getsockname())
    thread.join(WAIT)
    answers += [data for data, _ in _drain(recv)]   # anything else it sent before it ended
    while not out.empty():
        items.append(out.get())
    recv.close()
    exits = [i for i in items if i[0] == "exit"]
    warnings = [i for i in items if i[0] == "log" and "cannot open another socket" in i[1]]
    return opened, len(sources), left, len(core.got), answers, exits, warnings, thread.is_alive()


def _items_until(out, last):
    """Items from the queue *out*, up to and including *last*."""
    deadline = time.monotonic() + WAIT
    items = []
    while not items or items[-1] != last:
        items.append(out.get(timeout=max(0.0, deadline - time.monotonic())))
    return items


def _drain(sock):
    """Every datagram already waiting on *sock*, without waiting for more."""
    sock.setblocking(False)
    got = []
    try:
        while True:
            got.append(sock.recvfrom(100))
    except BlockingIOError:
        pass
    finally:
        sock.settimeout(WAIT)
    return got


def test_network_thread_opens_uses_and_closes_extra_sockets():
    opened, sources, left, received, answers, exits, warnings, alive = run_scripted()
    assert opened == EXTRA and sources > EXTRA // 2 and warnings == []
    assert left == 1                       # the one the first datagram landed on
    assert received == 2                   # the hit and the quit: the rest were closed unread
    assert answers == [b"kept"]            # the Send via a socket never opened is dropped
    assert exits == [("exit", 0, exits[0][2])] and not alive


def test_network_thread_out_of_descriptors_shrinks_the_search_with_one_warning():
    code = ("import resource, sys; resource.setrlimit(resource.RLIMIT_NOFILE, (100, 100));"
            "from tests.test_peer_shell import run_scripted; r = run_scripted();"
            "print(r[0], r[2], len(r[6]), r[5][0][1], r[7])")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env(), timeout=60,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)
    assert proc.returncode == 0, proc.stderr
    opened, left, warnings, status, alive = proc.stdout.split()
    assert 10 < int(opened) < 100 and left == "1" and warnings == "1"
    assert status == "0" and alive == "False"
