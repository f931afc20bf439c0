"""The peer's I/O shell: threads and sockets around a sans-I/O core.

Four threads around one core (:class:`peerpunch.session.PeerSession`):

* the network thread owns the UDP socket (and the extra ones a birthday
  search opens) and the core, and runs a :class:`peerpunch.shell.DatagramLoop`
  over them and a wake-up socketpair;
* the timer thread sleeps until the core's next deadline and then posts a
  tick to the network thread;
* the stdin reader thread posts each line the user types;
* the main thread shows: it hands what the network thread puts on the
  output queue to a *view* (:class:`peerpunch.lineview.LineView` on a
  terminal or a pipe), the only writer to stdout and stderr, so lines never
  interleave, and it turns SIGINT/SIGTERM into a polite quit.

They share nothing but ``queue.Queue`` objects and the wake-up socket. The
core is driven through ``start(now)``, ``datagram_received(data, addr, now,
via)``, ``handle_line(text, now)``, ``tick(now)``, ``quit(now)`` and
``next_deadline()``; what it returns is carried out by the loop, except its
events: Closed ends the program, PinKey is written to known_peers, Collect
hashes files in a worker thread, and the others go to the view as data (the
network thread words nothing: a terminal, ``--json`` and a GUI each render
the same events their own way).
"""

import logging
import queue
import signal
import socket
import sys
import threading
import time
import traceback

from . import cli
from . import families as F
from . import identity as ID
from . import protocol as P
from .chatfiles import Collect
from .filecommands import collected
from .events import Closed, PinKey
from .lineview import LineView
from .shell import RECV_SIZE, DatagramLoop, is_dual_stack, sendto, udp_socket

JOIN_TIMEOUT = 3.0
RCVBUF = 1 << 20     # bytes: a burst of file data while the thread is busy (~45 ms of it)
BATCH = 256     # datagrams read per readiness event (~6 GRO reads): a run of file data is
                # answered once; 64 was 7-10 % slower in the lab (per-run work: ACKs, pumps)


class NetworkThread(threading.Thread):
    """Runs the *core*: datagrams in, effects out. Its loop owns the sockets:
    number 0 is *sock*, the others the core opens. Puts what the user sees
    on *output*: ``("event", event)`` (the core's events, as data),
    ``("log", text)`` and last ``("exit", code, closed)`` (the Closed event)."""

    def __init__(self, core, sock, output, *, verbose=False, known_peers=None,
                 clock=time.monotonic):
        super().__init__(name="network", daemon=True)
        self.core = core
        self.output = output
        self.verbose = verbose
        self.known_peers = known_peers
        self.clock = clock
        self.inbox = queue.Queue()
        self.timer = DeadlineTimer(lambda: self.post("tick"), clock)
        self.loop = DatagramLoop(sock, self._datagram_received, OutputLog(output, verbose),
                                 on_event=self._event, on_wake=self._read_inbox,
                                 on_open_error=self._open_failed, clock=clock, batch=BATCH,
                                 handle_batch=self._datagrams_received
                                 if hasattr(core, "datagrams_received") else None, offload=True)
        self._deadline = None

    def post(self, *item):
        """Hand the network thread work from any thread: ``("line", text)``,
        ``("tick",)`` or ``("quit",)``."""
        self.inbox.put(item)
        self.loop.wake()

    def run(self):
        self.timer.start()
        try:
            self.loop.apply(self.core.start(self.clock()))
            while not self.loop.stopped:
                self._reschedule()
                self.loop.poll()
        except Exception as exc:    # a bug outside one datagram: say so, and still exit cleanly
            logging.getLogger("peerpunch").exception("network thread failed")
            self.output.put(("exit", 1, "internal error: %r" % exc))
        finally:
            self.timer.stop()
            self.loop.close()

    def _datagram_received(self, data, addr, via):
        return self.core.datagram_received(data, addr, self.clock(), via)

    def _datagrams_received(self, items, via):
        return self.core.datagrams_received(items, self.clock(), via)

    def _read_inbox(self):
        while not self.loop.stopped:
            try:
                kind, *args = self.inbox.get_nowait()
            except queue.Empty:
                return
            now = self.clock()
            if kind == "line":
                self._typed(args[0], lambda: self.core.handle_line(args[0], now))
            elif kind == "tick":
                self._deadline = None          # the timer fired: it waits for a new one
                self.loop.tick(now)
                self.loop.apply(self.core.tick(now))
            elif kind == "quit":
                self.loop.apply(self.core.quit(now))
            elif kind == "collected":
                self._typed("/send", lambda: collected(self.core, args[0], args[1], now))

    def _typed(self, line, handle):
        """Carry out what a typed *line* asks; a bug there is logged with
        its traceback and counted, and the peer goes on (the line is lost,
        and the user is told so)."""
        try:
            self.loop.apply(handle())
        except Exception:
            self.loop.internal_errors += 1
            command = line.split(None, 1)[0] if line.startswith("/") and line.strip() else "a line"
            self.output.put(("log", "internal error on %s (ignored; please report it):\n%s"
                             % (command[:40], traceback.format_exc().rstrip())))

    def _reschedule(self):
        """Give the timer thread a deadline sooner than the one it waits for
        (a later one waits until it fires: that tick finds nothing due, and
        the deadline is given then), so a busy loop whose deadlines keep
        moving wakes that thread once per deadline, not once per turn."""
        due = [t for t in (self.core.next_deadline(), self.loop.next_deadline()) if t is not None]
        deadline = min(due) if due else None
        if deadline is not None and (self._deadline is None or deadline < self._deadline):
            self._deadline = deadline
            self.timer.set(deadline)

    def _event(self, effect):
        kind = type(effect)
        if kind is Closed:
            self.loop.stop()
            self.output.put(("exit", effect.exit_code, effect))
        elif kind is PinKey:
            self._pin(effect)
        elif kind is Collect:
            threading.Thread(target=self._collect, args=effect, name="collect",
                             daemon=True).start()
        else:
            self.output.put(("event", effect))

    def _collect(self, partner, paths):
        """A worker thread: hash what /send offers, hand it to the network thread."""
        try:
            result = self.core.disk.collect(paths)
        except OSError as exc:
            result = exc
        self.post("collected", partner, result)

    def _pin(self, effect):
        if self.known_peers is None:
            return
        try:
            self.known_peers.pin(effect.username, effect.key)
        except ID.IdentityError as exc:
            self.output.put(("log", "warning: %s" % exc))

    def _open_failed(self, exc):
        if self.loop.open_errors == 1 or self.verbose:     # say it once: the search is smaller
            self.output.put(("log", "warning: cannot open another socket (%s): the search"
                             " for a direct path uses fewer" % (getattr(exc, "strerror", None) or exc)))


class OutputLog:
    """Where the loop writes log lines (a ``logging.Logger`` stand-in): onto
    the main thread's output queue, warnings and errors always, the rest
    with ``--verbose``."""

    def __init__(self, output, verbose):
        self.output = output
        self.verbose = verbose

    def isEnabledFor(self, level):        # noqa: N802 (logging.Logger's name)
        return self.verbose or level >= logging.WARNING

    def log(self, level, msg, *args):
        self.output.put(("log", msg % args if args else msg))


class DeadlineTimer(threading.Thread):
    """Sleeps until the deadline it was last given (None: none), then calls
    *due()* once; :meth:`set` a new deadline from any thread."""

    def __init__(self, due, clock=time.monotonic):
        super().__init__(name="timer", daemon=True)
        self.due = due
        self.clock = clock
        self._deadlines = queue.Queue()
        self._stopped = object()

    def set(self, deadline):
        self._deadlines.put(deadline)

    def stop(self):
        self._deadlines.put(self._stopped)

    def run(self):
        deadline = None
        while True:
            timeout = None if deadline is None else max(0.0, deadline - self.clock())
            try:
                item = self._deadlines.get(timeout=timeout)
            except queue.Empty:
                deadline = None
                self.due()
                continue
            if item is self._stopped:
                return
            deadline = item


def read_stdin(network, stream):
    """The stdin reader thread's body: post every line, then EOF as quit."""
    for line in iter(stream.readline, ""):
        network.post("line", line.rstrip("\r\n"))
    network.post("quit")


def run(core, sock, verbose=False, known_peers=None, view=None, reader=None):
    """Run the four threads until the core closes; return the exit code.
    *view* shows what happens (default: a LineView on stdout/stderr);
    *reader(network)* is the stdin thread's body (default: read_stdin)."""
    output = queue.Queue()
    network = NetworkThread(core, sock, output, verbose=verbose, known_peers=known_peers)
    if view is None:
        view = LineView(sys.stdout, sys.stderr, tty=_isatty(sys.stdout))
    previous = _install_signals(network)
    network.start()
    if reader is None:
        reader = lambda network: read_stdin(network, sys.stdin)      # noqa: E731
    threading.Thread(target=reader, args=(network,), name="stdin", daemon=True).start()
    try:
        code = pump(output, view)
        network.join(JOIN_TIMEOUT)
        return code
    finally:
        _restore_signals(previous)


def pump(output, view, block=True):
    """Hand the items on *output* to *view* until the exit item; return its
    code (None if *block* is false and the queue ran dry first)."""
    while True:
        try:
            kind, *args = output.get(block)
        except queue.Empty:
            return None
        if kind == "event":
            view.event(args[0])
        elif kind == "log":
            view.log(args[0])
        elif kind == "exit":
            view.closed(args[0], args[1])
            return args[0]


def _isatty(stream):
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _install_signals(network):
    asked = []

    def handler(signum, frame):
        if asked:                     # a second Ctrl+C: stop waiting
            raise SystemExit(130)
        asked.append(signum)
        network.post("quit")
    return {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}


def _restore_signals(previous):
    for sig, old in previous.items():
        signal.signal(sig, old)


# -------------------------------------------------------------- sockets


def run_check(check, sock, clock=time.monotonic):
    """Drive a sans-I/O *check* (``--nat-check``) over the bound UDP socket
    *sock* until it is done."""
    def send(sends):
        for effect in sends:
            try:
                sendto(sock, effect.data, effect.addr)
            except OSError:
                pass               # as good as lost: the transaction retransmits
    send(check.start(clock()))
    while not check.done:
        sock.settimeout(max(0.0, check.next_deadline() - clock()))
        try:
            data, addr = sock.recvfrom(RECV_SIZE)
        except (socket.timeout, BlockingIOError):      # a zero timeout makes it non-blocking
            send(check.tick(clock()))
            continue
        except OSError:            # ICMP errors surface here on some systems
            continue
        send(check.datagram_received(data, P.canonical_addr(addr), clock()))
        if not check.done:
            send(check.tick(clock()))


def open_socket(relay, bind):
    """Resolve the relay and bind a UDP socket of its family: for an IPv6
    relay, or a bind to ``::``, one IPv6 socket that reaches IPv4 too
    (dual-stack) where the system allows it.

    Returns (socket, relay socket address); raises OSError.
    """
    family, relay_sockaddr = cli.resolve(*relay)
    if bind is None:
        bind = ("::" if family == socket.AF_INET6 else "0.0.0.0", 0)
    wildcard6 = bind[0].strip("[]") == "::"
    bind_family, bind_sockaddr = cli.resolve(*bind, family=socket.AF_INET6 if wildcard6 else family)
    sock = udp_socket(bind_family, dual_stack=wildcard6)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
    except OSError:            # a system that refuses keeps its default
        pass
    try:
        sock.bind(bind_sockaddr)
    except OSError:
        sock.close()
        raise
    return sock, relay_sockaddr


def socket_families(sock):
    """The address families the bound UDP socket *sock* can send to (4, 6)."""
    if sock.family != socket.AF_INET6:
        return (F.IPV4,)
    host = sock.getsockname()[0].split("%", 1)[0]
    if host == "::" and is_dual_stack(sock):
        return F.BOTH
    return (F.IPV4,) if host.startswith("::ffff:") else (F.IPV6,)


# Where a routing lookup for a family points when the relay is of the other
# one: documentation addresses (RFC 5737, RFC 3849); nothing is sent to them.
_ROUTE_PROBES = {F.IPV4: ("192.0.2.1", 9), F.IPV6: ("2001:db8::1", 9)}


def lan_candidates(sock, relay_sockaddr):
    """Our LAN endpoint(s): the bound address, or for a wildcard bind the
    source address the kernel would use towards the relay, and for a
    dual-stack socket also the one of the other family towards the
    internet (a connected UDP socket sends nothing). The session keeps only
    private-range ones: a global address is never announced, because a
    receiving peer would probe it without the relay having seen it."""
    host, port = sock.getsockname()[:2]
    if host not in ("0.0.0.0", "::"):
        return [P.canonical_addr((host, port))]
    relay = P.canonical_addr(relay_sockaddr)
    found = []
    for family in socket_families(sock):
        toward = relay if F.family(relay) == family else _ROUTE_PROBES[family]
        source = _source_address(family, toward)
        if source is not None:
            found.append(P.canonical_addr((source, port)))
    return found


def _source_address(family, addr):
    """The source address the kernel picks toward *addr*, or None."""
    try:
        with socket.socket(socket.AF_INET6 if family == F.IPV6 else socket.AF_INET,
                           socket.SOCK_DGRAM) as probe:
            probe.connect(addr)
            return probe.getsockname()[0]
    except OSError:
        return None
