"""The I/O skeleton (peerpunch.shell.DatagramLoop) and the two shells on it:
one datagram that trips a bug in the core is logged once with its
traceback, counted, and the next datagram is served -- in the loop itself,
in the relay (RelayServer) and in the peer's network thread; a
RemoteProtocolError is a drop, not an internal error; addresses reach the
core canonical and go back out through the same socket; STUN answers leave
from the socket their Send names.

Real sockets on loopback; nothing waits for a fixed time: every wait is for
a datagram or a condition, bounded by WAIT."""

import logging
import queue
import socket
import threading
import time

import pytest

from peerpunch import protocol as P
from peerpunch import relay as R
from peerpunch import stun
from peerpunch.effects import Log, Send
from peerpunch.events import Closed
from peerpunch.loglimit import PER_WINDOW, LogLimiter
from peerpunch.peershell import DeadlineTimer, NetworkThread
from peerpunch.shell import DatagramLoop, canonical6, sockaddr6, udp_socket

from .procs import has_ipv6_loopback

WAIT = 30.0
BUG = "the core tripped over this datagram"


class ListLog:
    """A logging.Logger stand-in that keeps (level, text)."""

    def __init__(self):
        self.lines = []

    def isEnabledFor(self, level):          # noqa: N802
        return True

    def log(self, level, msg, *args):
        self.lines.append((level, msg % args))


def core_answer(data, addr, via=0):
    """The scripted core: b'boom' is a bug, b'junk' a remote error, b'ping'
    gets b'pong' (saying where it came from), anything else nothing."""
    if data == b"boom":
        raise KeyError(BUG)
    if data == b"junk":
        raise P.RemoteProtocolError("not a message")
    if data == b"ping":
        return [Send(b"pong " + P.format_endpoint(addr).encode(), addr, via)]
    return []


def client(family=socket.AF_INET, host="127.0.0.1"):
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.bind((host, 0))
    sock.settimeout(WAIT)
    return sock


def bound_loop(handle, log, host="127.0.0.1", family=socket.AF_INET, **kw):
    sock = udp_socket(family, dual_stack=host == "::")
    sock.bind((host, 0))
    return DatagramLoop(sock, handle, log, **kw), sock.getsockname()[1]


def poll_until(loop, condition):
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, "condition not met within %s s" % WAIT
        loop.poll(0.1)


def test_loop_internal_error_is_logged_once_counted_and_the_next_datagram_served():
    log = ListLog()
    loop, port = bound_loop(lambda d, a, v: core_answer(d, a, v), log)
    with client() as c:
        me = c.getsockname()[1]
        for data in (b"boom", b"junk", b"ping"):
            c.sendto(data, ("127.0.0.1", port))
        poll_until(loop, lambda: loop.traffic["datagrams_out"] == 1)
        assert c.recv(100) == b"pong 127.0.0.1:%d" % me
    loop.close()
    errors = [text for level, text in log.lines if level == logging.ERROR]
    assert len(errors) == 1
    assert errors[0].startswith("internal error on a datagram from 127.0.0.1:%d (dropped)\n"
                                "Traceback (most recent call last):" % me)
    assert BUG in errors[0]
    assert (loop.internal_errors, loop.dropped, loop.traffic["datagrams_in"]) == (1, 1, 3)
    assert any("dropped a datagram" in text and "not a message" in text for _, text in log.lines)


def test_loop_internal_errors_are_rate_limited_then_summarized():
    now = [100.0]
    log = ListLog()
    loop, port = bound_loop(lambda d, a, v: core_answer(d, a, v), log,
                            limiter=LogLimiter(window=60.0), clock=lambda: now[0])
    with client() as c:
        for _ in range(PER_WINDOW + 5):
            c.sendto(b"boom", ("127.0.0.1", port))
        poll_until(loop, lambda: loop.internal_errors == PER_WINDOW + 5)
    assert len(log.lines) == PER_WINDOW and loop.next_deadline() == 160.0
    now[0] = 160.0
    loop.tick(now[0])
    loop.close()
    assert log.lines[-1] == (logging.ERROR, "... and 5 more internal errors in the last 60 s")


@pytest.mark.skipif(not has_ipv6_loopback(), reason="this host has no IPv6 loopback")
def test_loop_dual_stack_socket_hands_the_core_canonical_addresses_both_ways():
    seen = []

    def handle(data, addr, via):
        seen.append(addr)
        return core_answer(data, addr, via)
    loop, port = bound_loop(handle, ListLog(), host="::", family=socket.AF_INET6)
    with client() as v4, client(socket.AF_INET6, "::1") as v6:
        ports = v4.getsockname()[1], v6.getsockname()[1]
        v4.sendto(b"ping", ("127.0.0.1", port))
        v6.sendto(b"ping", ("::1", port))
        poll_until(loop, lambda: loop.traffic["datagrams_out"] == 2)
        assert v4.recv(100) == b"pong 127.0.0.1:%d" % v4.getsockname()[1]
        assert v6.recv(100) == b"pong [::1]:%d" % v6.getsockname()[1]
    loop.close()
    assert sorted(seen) == [("127.0.0.1", ports[0]), ("::1", ports[1])]


def test_address_conversions_are_mirrored():
    assert canonical6(("::ffff:192.0.2.1", 5, 0, 0)) == ("192.0.2.1", 5)
    assert canonical6(("2001:DB8:0:0::1%eth0", 5, 0, 3)) == ("2001:db8::1", 5)
    assert sockaddr6(("192.0.2.1", 5)) == ("::ffff:192.0.2.1", 5)
    assert sockaddr6(("2001:db8::1", 5)) == ("2001:db8::1", 5)
    assert canonical6(sockaddr6(("192.0.2.1", 5))) == ("192.0.2.1", 5)


# -- the relay


class BuggyRegistry:
    """Just enough of a Registry for RelayServer and its stats line,
    answering as core_answer."""

    stats = dict.fromkeys(R.DROPPED, 0)
    forwarder = type("Forwarder", (), {"stats": {"datagrams": 0, "bytes": 0}})

    def datagram_received(self, data, addr, now):
        return core_answer(data, addr)

    def next_deadline(self):
        return None

    def tick(self, now):
        return []

    def farewell(self):
        return [Log(logging.INFO, "farewell")]

    def __len__(self):
        return 0

    proven_users = seed_users = sessions = __len__

    def limited_blocks(self, now):
        return 0


def test_relay_survives_a_bug_on_one_datagram_and_answers_stun_from_the_socket_named(caplog):
    main, alt = client(), client()
    server = R.RelayServer(main, BuggyRegistry(), alt_sock=alt)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    caplog.set_level(logging.INFO, logger="peerpunch.relay")
    thread.start()
    port, alt_port = main.getsockname()[1], alt.getsockname()[1]
    with client() as c:
        me = c.getsockname()[1]
        for data in (b"boom", b"junk", b"ping"):
            c.sendto(data, ("127.0.0.1", port))
        assert c.recv(100) == b"pong 127.0.0.1:%d" % me
        request = stun.binding_request(change=stun.CHANGE_PORT)
        c.sendto(bytes(request), ("127.0.0.1", port))
        data, source = c.recvfrom(2048)
    server.stop()
    server.loop.wake()
    thread.join(WAIT)
    server.close()
    assert stun.parse_message(data).transaction_id == request.transaction_id
    assert source == ("127.0.0.1", alt_port)          # the change asked for: via 1
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and BUG in errors[0].getMessage()
    assert "internal error on a datagram from 127.0.0.1:%d" % me in errors[0].getMessage()
    assert (server.internal_errors, server.loop.dropped, server.send_errors) == (1, 1, 0)
    assert " internal_errors=1 send_errors=0 " in R.stats_line(server)
    assert caplog.records[-1].getMessage() == "farewell" and not thread.is_alive()


# -- the peer's network thread


class PeerCore:
    """The peer's core interface, answering datagrams as core_answer."""

    def start(self, now):
        return []

    def datagram_received(self, data, addr, now, via=0):
        if data == b"quit":
            return [Closed(0, None)]
        return core_answer(data, addr, via)

    def __init__(self):
        self.lines = []

    def handle_line(self, text, now):
        if text.startswith("/boom"):
            raise RuntimeError(BUG)
        self.lines.append(text)
        return [Closed(0, None)] if text == "/quit" else []

    def tick(self, now):
        return []

    def quit(self, now):
        return [Closed(0, None)]

    def next_deadline(self):
        return None


def test_peer_network_thread_survives_a_bug_on_one_datagram():
    sock = client()
    out = queue.Queue()
    thread = NetworkThread(PeerCore(), sock, out)
    thread.start()
    with client() as c:
        for data in (b"boom", b"junk", b"ping"):
            c.sendto(data, sock.getsockname())
        assert c.recv(100) == b"pong 127.0.0.1:%d" % c.getsockname()[1]
        assert thread.is_alive()
        c.sendto(b"quit", sock.getsockname())
        thread.join(WAIT)
    items = []
    while not out.empty():
        items.append(out.get())
    logs = [i[1] for i in items if i[0] == "log"]
    assert len(logs) == 1 and logs[0].startswith("internal error on a datagram from 127.0.0.1:")
    assert BUG in logs[0] and "Traceback" in logs[0]
    assert items[-1] == ("exit", 0, Closed(0, None)) and not thread.is_alive()
    assert (thread.loop.internal_errors, thread.loop.dropped) == (1, 1)


def test_deadline_timer_calls_due_at_each_deadline_it_is_given():
    fired = queue.Queue()
    timer = DeadlineTimer(lambda: fired.put(time.monotonic()))
    timer.start()
    start = time.monotonic()
    timer.set(start + 0.05)
    assert fired.get(timeout=WAIT) >= start + 0.05
    timer.set(start)                       # already due: at once
    fired.get(timeout=WAIT)
    timer.stop()
    timer.join(WAIT)
    assert timer.name == "timer" and not timer.is_alive() and fired.empty()


def test_peer_network_thread_survives_a_bug_on_a_typed_line():
    sock = client()
    out = queue.Queue()
    core = PeerCore()
    thread = NetworkThread(core, sock, out)
    thread.start()
    for line in ("/boom now", "hello", "/quit"):
        thread.post("line", line)
    thread.join(WAIT)
    items = []
    while not out.empty():
        items.append(out.get())
    logs = [i[1] for i in items if i[0] == "log"]
    assert len(logs) == 1 and logs[0].startswith("internal error on /boom (ignored; ")
    assert BUG in logs[0] and "Traceback" in logs[0]
    assert core.lines == ["hello", "/quit"]          # the lines after it were served
    assert items[-1] == ("exit", 0, Closed(0, None)) and not thread.is_alive()
    assert thread.loop.internal_errors == 1


def test_loop_batch_hands_the_core_every_datagram_read_at_once_and_survives_a_bug():
    log, runs = ListLog(), []

    def handle_batch(items, via):
        runs.append([data for data, _ in items])
        if any(data == b"boom" for data, _ in items):
            raise KeyError(BUG)
        return [Send(b"got %d" % len(items), items[0][1], via)]
    loop, port = bound_loop(None, log, handle_batch=handle_batch, batch=8)
    with client() as c:
        for i in range(5):
            c.sendto(b"d%d" % i, ("127.0.0.1", port))
        poll_until(loop, lambda: loop.traffic["datagrams_in"] == 5)
        c.sendto(b"boom", ("127.0.0.1", port))
        poll_until(loop, lambda: loop.internal_errors == 1)
        c.sendto(b"after", ("127.0.0.1", port))
        poll_until(loop, lambda: runs[-1] == [b"after"])
        answers = [c.recv(100) for _ in range(len(runs) - 1)]
    loop.close()
    assert [d for run in runs[:-2] for d in run] == [b"d%d" % i for i in range(5)]
    assert answers == [b"got %d" % len(run) for run in runs if run != [b"boom"]]
    assert loop.traffic["datagrams_in"] == 7 and loop.traffic["datagrams_out"] == len(answers)
    errors = [text for level, text in log.lines if level == logging.ERROR]
    assert len(errors) == 1 and errors[0].startswith("internal error on 1 datagrams from")


class MovingCore(PeerCore):
    """A core whose deadline moves later with every datagram, and sooner on b'soon'."""

    def __init__(self):
        self.deadline = time.monotonic() + 3600.0

    def datagram_received(self, data, addr, now, via=0):
        self.deadline += -1800.0 if data == b"soon" else 1.0
        return PeerCore.datagram_received(self, data, addr, now, via)

    def next_deadline(self):
        return self.deadline


class SpyTimer:
    def __init__(self):
        self.given = queue.Queue()

    def start(self):
        pass

    def stop(self):
        pass

    def set(self, deadline):
        self.given.put(deadline)


def test_peer_network_thread_wakes_the_timer_only_for_a_sooner_deadline():
    sock, out, core = client(), queue.Queue(), MovingCore()
    thread = NetworkThread(core, sock, out)
    thread.timer = spy = SpyTimer()
    thread.start()
    first = spy.given.get(timeout=WAIT)
    with client() as c:
        for _ in range(20):                               # later and later: not told
            c.sendto(b"later", sock.getsockname())
        c.sendto(b"ping", sock.getsockname())
        c.recv(100)
        assert spy.given.empty()
        c.sendto(b"soon", sock.getsockname())             # sooner: told at once
        assert spy.given.get(timeout=WAIT) == pytest.approx(first + 21 - 1800)
        thread.post("tick")                               # it fired: given the current one again
        assert spy.given.get(timeout=WAIT) == core.deadline
        c.sendto(b"quit", sock.getsockname())
        thread.join(WAIT)
    assert spy.given.empty()
