"""The I/O skeleton under the relay and the peer: numbered UDP sockets in one
``selectors`` loop, carrying out what a sans-I/O core returns.

Theory of operation
-------------------
A core (the relay's Registry and BindingServer, the peer's session) takes
datagrams and returns effects (:mod:`peerpunch.effects`). A
:class:`DatagramLoop` is the one place that touches the sockets for it:

* Sockets are numbered (``via``): 0 is the one bound at start, the relay
  adds its STUN alternate port as 1, a peer's core opens and closes more
  with OpenSocket and CloseSocket (each like socket 0, on a port of the
  system's choice).
* When a socket is readable, up to ``batch`` datagrams are read without
  blocking and each goes to ``handle(data, addr, via)``, which returns
  effects. Addresses are canonical (:func:`peerpunch.protocol.canonical_addr`)
  on both sides of the core: :func:`canonical6` is the only conversion on
  the way in, :func:`sockaddr6` the only one on the way out (an IPv4 client
  of a dual-stack socket is plain IPv4 to the core). An IPv4 socket needs
  neither: what it receives is already canonical.
* One datagram never takes the loop down. A
  :class:`~peerpunch.protocol.RemoteProtocolError` out of the core is a
  drop (counted in ``dropped``); any other exception is a bug of ours: it is
  counted in ``internal_errors`` and logged with its traceback as a Log of
  kind ``internal``, which the :class:`~peerpunch.loglimit.LogLimiter` keeps
  to a few lines a minute plus a summary. The loop then reads on.
* Effects are carried out in order: Send (from socket ``via``; one that is
  not open drops it), Log (through the limiter to a ``logging.Logger``, or
  anything with its ``isEnabledFor`` and ``log``), OpenSocket, CloseSocket;
  every other effect goes to ``on_event``.
* Other threads, and signal handlers through ``signal.set_wakeup_fd``, wake
  the loop with :meth:`DatagramLoop.wake`; the loop drains the wake-up
  socketpair and calls ``on_wake``.

Only the thread that calls :meth:`DatagramLoop.poll` may use the loop, but
any thread may call :meth:`DatagramLoop.wake`.
"""

import collections
import functools
import logging
import selectors
import socket
import time
import traceback

from . import batchio
from . import protocol as P
from .effects import CloseSocket, Log, OpenSocket, Send
from .loglimit import LogLimiter

RECV_SIZE = 65535        # read whole datagrams, however large, then judge them
BATCH = 256              # datagrams read per readiness event before timers get a look in
MAPPED = "::ffff:"       # an IPv4 address as an IPv6 socket writes it


class DatagramLoop:
    """Serve socket 0 (*sock*, bound) and any added later with the core's
    *handle(data, addr, via)*; write Log effects to *log*. *on_event(effect)*
    gets the core's own events, *on_wake()* runs after each wake-up, and
    *on_open_error(exc)* hears of an OpenSocket that failed (the Sends via
    it are then dropped). With *handle_batch(items, via)*, the datagrams
    read on one readiness event go to it at once instead, a list of
    ``(data, addr)``; it drops what it refuses itself. *offload*: use
    Linux UDP GSO and GRO where the kernel has them (:mod:`peerpunch.batchio`)."""

    def __init__(self, sock, handle, log, *, on_event=None, on_wake=None, on_open_error=None,
                 limiter=None, clock=time.monotonic, batch=BATCH, handle_batch=None,
                 offload=False):
        self.handle = handle
        self.handle_batch = handle_batch
        self.offload = offload and batchio.linux()
        self._gro = set()                      # vias whose socket hands over GRO batches
        self._gso = set()                      # vias whose socket still takes GSO runs
        self.log = log
        self.on_event = on_event
        self.on_wake = on_wake
        self.on_open_error = on_open_error
        self.limiter = limiter if limiter is not None else LogLimiter()
        self.clock = clock
        self.batch = batch
        self.traffic = collections.Counter()   # datagrams and bytes, in and out
        self.internal_errors = 0
        self.dropped = 0                       # RemoteProtocolErrors out of the core
        self.send_errors = 0
        self.open_errors = 0
        self.stopped = False
        self.sockets = {}                      # via -> socket
        self._ipv6 = set()                     # vias of IPv6 sockets (see sockaddr6)
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        for s in (self._wake_r, self._wake_w):
            s.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, self._drain_wakeups)
        self.add_socket(0, sock)

    # -- the loop

    def poll(self, timeout=None):
        """Wait up to *timeout* seconds (None: until something happens) and
        handle whatever is ready."""
        for key, _ in self._selector.select(timeout):
            key.data()

    def stop(self):
        """Read no further datagrams; the owner's loop ends at its next check."""
        self.stopped = True

    def wake(self):
        """Make :meth:`poll` return and call on_wake (from any thread)."""
        try:
            self._wake_w.send(b"\0")
        except OSError:        # the buffer is full (so it is awake anyway), or closed
            pass

    def wakeup_fd(self):
        """A file descriptor for ``signal.set_wakeup_fd``."""
        return self._wake_w.fileno()

    def next_deadline(self):
        """When :meth:`tick` has log summaries to write (None: never)."""
        return self.limiter.next_deadline()

    def tick(self, now):
        self._write(self.limiter.tick(now))

    def flush(self):
        """Write every pending log summary (the program is stopping)."""
        self._write(self.limiter.flush(self.clock()))

    def close(self):
        self._selector.close()
        for s in list(self.sockets.values()) + [self._wake_r, self._wake_w]:
            s.close()
        self.sockets.clear()

    # -- datagrams in

    def _read(self, via):
        if self.handle_batch is not None:
            self._read_batch(via)
            return
        sock = self.sockets.get(via)
        canonical = canonical6 if via in self._ipv6 else None
        traffic = self.traffic
        for _ in range(self.batch):
            if sock is None or self.stopped or self.sockets.get(via) is not sock:   # closed
                return
            try:
                data, addr = sock.recvfrom(RECV_SIZE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:      # e.g. ICMP port unreachable surfacing on Windows
                self._log(Log(logging.DEBUG, "receive error: %s" % exc))
                continue
            traffic["datagrams_in"] += 1
            traffic["bytes_in"] += len(data)
            try:
                if canonical is not None:
                    addr = canonical(addr)
                self.apply(self.handle(data, addr, via))
            except P.RemoteProtocolError as exc:
                self.dropped += 1
                self._log(Log(logging.DEBUG, "dropped a datagram from %s: %s"
                              % (describe(addr), exc), "dropped"))
            except Exception:           # a bug: one datagram must not take the loop down
                self.internal_errors += 1
                self._log(Log(logging.ERROR, "internal error on a datagram from %s (dropped)\n%s"
                              % (describe(addr), traceback.format_exc().rstrip()), "internal"))

    def _read_batch(self, via):
        """Read up to ``batch`` datagrams, then hand them to the core at once."""
        sock = self.sockets.get(via)
        if sock is None or self.stopped:
            return
        canonical = canonical6 if via in self._ipv6 else None
        items, gro = [], via in self._gro
        while len(items) < self.batch:
            try:
                if gro:
                    datagrams, addr = batchio.receive(sock, RECV_SIZE)
                else:
                    datagrams, addr = sock.recvfrom(RECV_SIZE)
                    datagrams = (datagrams,)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:      # e.g. ICMP port unreachable surfacing on Windows
                self._log(Log(logging.DEBUG, "receive error: %s" % exc))
                continue
            if canonical is not None:
                addr = canonical(addr)
            items.extend((data, addr) for data in datagrams)
        if items:
            self.traffic["datagrams_in"] += len(items)
            self.traffic["bytes_in"] += sum(len(data) for data, _ in items)
            self._handle_batch(items, via)

    def _handle_batch(self, items, via):
        try:
            self.apply(self.handle_batch(items, via))
        except P.RemoteProtocolError as exc:      # the core drops one by one: not expected
            self.dropped += 1
            self._log(Log(logging.DEBUG, "dropped %d datagrams: %s" % (len(items), exc), "dropped"))
        except Exception:               # a bug: these datagrams are lost, the loop goes on
            self.internal_errors += 1
            self._log(Log(logging.ERROR, "internal error on %d datagrams from %s (dropped)\n%s"
                          % (len(items), describe(items[0][1]), traceback.format_exc().rstrip()),
                          "internal"))

    def _drain_wakeups(self):
        try:
            while self._wake_r.recv(512):
                pass
        except (BlockingIOError, InterruptedError):
            pass
        if self.on_wake is not None:
            self.on_wake()

    # -- effects out

    def apply(self, effects):
        """Carry out *effects* in order."""
        effects = effects if type(effects) is list else list(effects)
        i = 0
        while i < len(effects):
            effect = effects[i]
            kind = type(effect)
            i += 1
            if kind is Send:
                if effect.via in self._gso:
                    i += self._send_run(effects, i - 1) - 1
                else:
                    self._send(effect)
            elif kind is Log:
                self._log(effect)
            elif kind is OpenSocket:
                self.open_socket(effect.via)
            elif kind is CloseSocket:
                self.close_socket(effect.via)
            elif self.on_event is not None:
                self.on_event(effect)

    def _send(self, effect):
        via, addr = effect.via, effect.addr
        sock = self.sockets.get(via)
        if sock is None:
            return                      # a socket that could not be opened, or closed
        if via in self._ipv6:
            addr = sockaddr6(addr)
        try:
            sock.sendto(effect.data, addr)
        except OSError as exc:
            self.send_errors += 1
            self._log(Log(logging.DEBUG, "send to %s failed: %s" % (describe(effect.addr), exc)))
            return
        self.traffic["datagrams_out"] += 1
        self.traffic["bytes_out"] += len(effect.data)

    def _send_run(self, effects, start):
        """The Sends from *start* that go as one GSO send (at least one);
        how many there were."""
        first, count = effects[start], batchio.run_length(effects, start)
        sock = self.sockets.get(first.via)
        if count == 1 or sock is None:
            self._send(first)
            return 1
        run = effects[start:start + count]
        addr = sockaddr6(first.addr) if first.via in self._ipv6 else first.addr
        try:
            batchio.send(sock, [e.data for e in run], addr)
        except OSError as exc:
            if not batchio.refused(exc):
                self.send_errors += count
                self._log(Log(logging.DEBUG, "send to %s failed: %s" % (describe(first.addr), exc)))
                return count
            self._gso.discard(first.via)           # for good: one datagram per send
            self._log(Log(logging.DEBUG, "UDP segmentation refused: %s" % exc))
            for effect in run:
                self._send(effect)
            return count
        self.traffic["datagrams_out"] += count
        self.traffic["bytes_out"] += sum(len(e.data) for e in run)
        return count

    def _log(self, effect):
        if self.log.isEnabledFor(effect.level):
            self._write(self.limiter.admit(effect, self.clock()))

    def _write(self, lines):
        for line in lines:
            self.log.log(line.level, "%s", line.text)

    # -- sockets

    def add_socket(self, via, sock):
        """Serve *sock* (bound) as number *via*. Raises OSError or ValueError
        (the selector cannot take it) and then leaves it alone."""
        sock.setblocking(False)
        self._selector.register(sock, selectors.EVENT_READ, functools.partial(self._read, via))
        self.sockets[via] = sock
        if sock.family == socket.AF_INET6:
            self._ipv6.add(via)
        if self.offload:
            self._gso.add(via)
            if batchio.prepare(sock):
                self._gro.add(via)

    def open_socket(self, via):
        """OpenSocket: another socket like socket 0 as *via* (if not open yet)."""
        if via in self.sockets:
            return
        sock = None
        try:
            sock = socket_like(self.sockets[0])
            self.add_socket(via, sock)
        except (OSError, ValueError) as exc:     # out of file descriptors, say
            if sock is not None:
                sock.close()
            self.open_errors += 1
            if self.on_open_error is not None:
                self.on_open_error(exc)

    def close_socket(self, via):
        """CloseSocket: close *via* (never socket 0; a no-op if not open)."""
        sock = self.sockets.pop(via, None) if via else None
        if sock is not None:
            for vias in (self._ipv6, self._gro, self._gso):
                vias.discard(via)
            self._selector.unregister(sock)
            sock.close()


# ------------------------------------------------------------- addresses


def canonical6(addr):
    """The canonical ``(ip, port)`` of *addr* as an IPv6 socket gives it:
    an IPv4 client of a dual-stack socket (``::ffff:a.b.c.d``) becomes IPv4."""
    host = addr[0]
    if host.startswith(MAPPED) and "." in host:
        return host[len(MAPPED):], addr[1]
    return P.canonical_addr(addr)


def sockaddr6(addr):
    """What an IPv6 socket sends to for the canonical *addr*: IPv4 as
    IPv4-mapped IPv6 (which a dual-stack socket delivers as IPv4)."""
    host = addr[0]
    return addr if ":" in host else (MAPPED + host, addr[1])


def sendto(sock, data, addr):
    """Send *data* from *sock* to the canonical *addr*; raises OSError."""
    sock.sendto(data, sockaddr6(addr) if sock.family == socket.AF_INET6 else addr)


def describe(addr):
    """*addr* as a log line writes it, whatever it is."""
    try:
        return P.format_endpoint(addr)
    except (ValueError, IndexError, TypeError, AttributeError):
        return repr(addr)


# ------------------------------------------------------------- sockets


def udp_socket(family, dual_stack=False):
    """A UDP socket; with *dual_stack*, an IPv6 one asked to reach IPv4 too
    (a system that refuses keeps it IPv6 only)."""
    sock = socket.socket(family, socket.SOCK_DGRAM)
    if dual_stack and family == socket.AF_INET6:
        try:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        except (OSError, AttributeError):
            pass
    return sock


def is_dual_stack(sock):
    """True if *sock* is an IPv6 socket that also reaches IPv4."""
    if sock.family != socket.AF_INET6:
        return False
    try:
        return not sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY)
    except (OSError, AttributeError):
        return False


def socket_like(sock):
    """A new UDP socket of *sock*'s family, dual-stack if it is, bound to its
    address on a port of the system's choice. Raises OSError."""
    new = udp_socket(sock.family, dual_stack=is_dual_stack(sock))
    try:
        name = sock.getsockname()
        new.bind(name[:1] + (0,) + name[2:])
    except OSError:
        new.close()
        raise
    return new
