"""The chat client: ``python bin/peer.py`` or ``python -m peerpunch.peer``.

Four threads around one :class:`peerpunch.session.PeerSession`:

* the network thread owns the UDP socket (and the extra ones a birthday
  search opens) and the session, and runs a ``selectors`` loop over them
  and a wake-up socketpair;
* the keep-alive timer thread sleeps until the session's next deadline and
  then posts a tick to the network thread;
* the stdin reader thread posts each line the user types;
* the main thread prints: it is the only writer to stdout and stderr, so
  lines never interleave, and it turns SIGINT/SIGTERM into a polite quit.

They share nothing but ``queue.Queue`` objects and the wake-up socket.
"""

import logging
import os
import queue
import selectors
import signal
import socket
import sys
import threading
import time

from . import cli, crypto, natcheck
from . import families as F
from . import identity as ID
from . import protocol as P
from . import session as S
from .console import format_event
from .effects import CloseSocket, Log, OpenSocket, Send

RECV_SIZE = 65535
JOIN_TIMEOUT = 3.0


class NetworkThread(threading.Thread):
    """Runs the session: datagrams in, effects out. Owns the sockets:
    number 0 is the one bound at start, the others the session opens."""

    def __init__(self, session, sock, output, *, verbose=False, known_peers=None,
                 clock=time.monotonic):
        super().__init__(name="network", daemon=True)
        self.session = session
        self.sock = sock
        self.output = output
        self.verbose = verbose
        self.known_peers = known_peers
        self.clock = clock
        self.inbox = queue.Queue()
        self.timer = KeepAliveTimer(self)
        self._wake_r, self._wake_w = socket.socketpair()
        for s in (sock, self._wake_r, self._wake_w):
            s.setblocking(False)
        self._closed = False
        self._deadline = None
        self._socks = {0: sock}        # via -> socket
        self._open_failures = 0
        self._selector = None

    def post(self, *item):
        """Hand the network thread work from any thread."""
        self.inbox.put(item)
        try:
            self._wake_w.send(b"\0")
        except OSError:        # buffer full (it is awake anyway) or closed
            pass

    def run(self):
        self.timer.start()
        selector = self._selector = selectors.DefaultSelector()
        selector.register(self.sock, selectors.EVENT_READ, (self._read_datagrams, 0))
        selector.register(self._wake_r, selectors.EVENT_READ, (self._read_inbox, None))
        try:
            self._apply(self.session.start(self.clock()))
            while not self._closed:
                self._reschedule()
                for key, _ in selector.select():
                    handler, via = key.data
                    if via is None:
                        handler()
                    elif via in self._socks:    # not closed by an earlier handler
                        handler(via)
        except Exception as exc:    # a bug: say so, and still exit cleanly
            logging.getLogger("peerpunch").exception("network thread failed")
            self.output.put(("exit", 1, "internal error: %r" % exc))
        finally:
            self.timer.stop()
            selector.close()
            for s in list(self._socks.values()) + [self._wake_r, self._wake_w]:
                s.close()

    def _read_datagrams(self, via):
        sock = self._socks[via]
        for _ in range(256):
            try:
                data, addr = sock.recvfrom(RECV_SIZE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:       # ICMP errors surface here on some systems
                continue
            self._apply(self.session.datagram_received(data, P.canonical_addr(addr), self.clock(),
                                                       via))
            if via not in self._socks:    # the session closed this socket
                return

    def _read_inbox(self):
        try:
            while self._wake_r.recv(512):
                pass
        except (BlockingIOError, InterruptedError):
            pass
        while not self._closed:
            try:
                kind, *args = self.inbox.get_nowait()
            except queue.Empty:
                return
            now = self.clock()
            if kind == "line":
                self._apply(self.session.handle_line(args[0], now))
            elif kind == "tick":
                self._apply(self.session.tick(now))
            elif kind == "quit":
                self._apply(self.session.quit(now))

    def _reschedule(self):
        deadline = self.session.next_deadline()
        if deadline != self._deadline:
            self._deadline = deadline
            self.timer.set(deadline)

    def _apply(self, effects):
        for effect in effects:
            kind = type(effect)
            if kind is Send:
                self._send(effect)
            elif kind is Log:
                if self.verbose or effect.level >= logging.WARNING:
                    self.output.put(("log", effect.text))
            elif kind is S.Closed:
                self._closed = True
                self.output.put(("exit", effect.exit_code, format_event(effect)))
            elif kind is S.PinKey:
                self._pin(effect)
            elif kind is OpenSocket:
                self._open(effect.via)
            elif kind is CloseSocket:
                self._close(effect.via)
            else:
                line = format_event(effect)
                if line is not None:
                    self.output.put(("line", line))

    def _pin(self, effect):
        if self.known_peers is None:
            return
        try:
            self.known_peers.pin(effect.username, effect.key)
        except ID.IdentityError as exc:
            self.output.put(("log", "warning: %s" % exc))

    def _open(self, via):
        """Another socket like socket 0: same family and address, any port."""
        if via in self._socks:
            return
        sock = None
        try:
            sock = udp_socket(self.sock.family, dual_stack=is_dual_stack(self.sock))
            sock.bind(self.sock.getsockname()[:1] + (0,) + self.sock.getsockname()[2:])
            sock.setblocking(False)
            self._selector.register(sock, selectors.EVENT_READ, (self._read_datagrams, via))
        except (OSError, ValueError) as exc:   # out of file descriptors, say
            if sock is not None:
                sock.close()
            self._open_failures += 1
            if self._open_failures == 1 or self.verbose:     # say it once: the search is smaller
                self.output.put(("log", "warning: cannot open another socket (%s): the search"
                                 " for a direct path uses fewer" % (exc.strerror or exc)))
            return
        self._socks[via] = sock

    def _close(self, via):
        sock = self._socks.pop(via, None) if via else None
        if sock is not None:
            self._selector.unregister(sock)
            sock.close()

    def _send(self, effect):
        sock = self._socks.get(effect.via)
        if sock is None:
            return                        # a socket that could not be opened, or closed
        try:
            sendto(sock, effect.data, effect.addr)
        except OSError as exc:
            if self.verbose:
                self.output.put(("log", "send to %s failed: %s" % (P.format_endpoint(effect.addr), exc)))


def sendto(sock, data, addr):
    """Send to the canonical *addr* (IPv4 as IPv4-mapped IPv6 on an IPv6
    socket); raises OSError."""
    host, port = addr
    if sock.family == socket.AF_INET6 and ":" not in host:
        host = "::ffff:" + host
    sock.sendto(data, (host, port))


class KeepAliveTimer(threading.Thread):
    """Sleeps until the session's next deadline, then ticks the network thread."""

    def __init__(self, network, clock=time.monotonic):
        super().__init__(name="keepalive", daemon=True)
        self.network = network
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
                self.network.post("tick")
                continue
            if item is self._stopped:
                return
            deadline = item


def read_stdin(network, stream):
    """The stdin reader thread's body: post every line, then EOF as quit."""
    for line in iter(stream.readline, ""):
        network.post("line", line.rstrip("\r\n"))
    network.post("quit")


# -------------------------------------------------------------- the command


def parse_args(argv, prog="peerpunch-peer"):
    parser = cli.ArgumentParser(prog=prog, description="peerpunch chat peer", epilog=_epilog(prog),
                                formatter_class=cli.argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--relay", default=("127.0.0.1", 8080), type=cli.host_port,
                        metavar="HOST:PORT", help="the relay (default 127.0.0.1:8080)")
    parser.add_argument("--name", type=_username, help="your username (asked if missing)")
    who = parser.add_mutually_exclusive_group()
    who.add_argument("--connect", type=_username, metavar="NAME", help="chat with NAME")
    who.add_argument("--wait", action="store_true", help="wait for someone to connect")
    parser.add_argument("--bind", type=cli.host_port, metavar="HOST:PORT",
                        help="local address (default 0.0.0.0:0, or [::]:0 for an IPv6 relay)")
    parser.add_argument("--keepalive", type=_seconds, default=S.KEEPALIVE, metavar="SECONDS",
                        help="ping interval; the peer is lost after 3 silent ones (default %(default)g)")
    parser.add_argument("--punch-timeout", type=_seconds, default=S.PUNCH_TIMEOUT, metavar="SECONDS",
                        help="give up punching after this long (default %(default)g)")
    parser.add_argument("--identity", metavar="FILE",
                        help="your key (default %s; created if missing)"
                        % os.path.join("~/.config/peerpunch", "identity"))
    parser.add_argument("--known-peers", metavar="FILE",
                        help="pinned keys of peers (default beside the default identity)")
    parser.add_argument("--strict", action="store_true",
                        help="refuse peers whose key is not pinned yet")
    parser.add_argument("--require-encryption", action="store_true",
                        help="refuse peers that cannot encrypt")
    parser.add_argument("--crypto-backend", choices=("auto",) + crypto.BACKEND_NAMES, default="auto",
                        help="libcrypto (fast, through ctypes), python (pure), or auto (default)")
    parser.add_argument("--nat-check", action="store_true",
                        help="ask the relay (STUN) what our NAT does, print it and exit")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every ignored datagram")
    parser.add_argument("--version", action=_Version, nargs=0, help="show versions and exit")
    return parser, parser.parse_args(argv)


def _epilog(prog):
    return ("in-chat " + S.HELP + "\n\n"
            "examples:\n"
            "  a relay, on a server with UDP ports 8080 and 8081 open:\n"
            "    %s --port 8080\n"
            "  bob waits for a chat, alice connects to him (each on their own machine):\n"
            "    %s --relay relay.example.org:8080 --name bob --wait\n"
            "    %s --relay relay.example.org:8080 --name alice --connect bob\n"
            % (_relay_command(prog), prog, prog))


_RELAY_OF = (("peer.py", "relay.py"), ("peerpunch-peer", "peerpunch-relay"), (" peer", " relay"),
             (".pyz", ".pyz relay"), ("-m peerpunch.peer", "-m peerpunch.relay"),
             ("-m peerpunch", "-m peerpunch.relay"))


def _relay_command(prog):
    """The relay, started the way this peer was (bin/peer.py: bin/relay.py)."""
    for mine, relays in _RELAY_OF:
        if prog.endswith(mine):
            return prog[:-len(mine)] + relays
    return "python -m peerpunch.relay"


class _Version(cli.argparse.Action):
    """--version: ours, and which crypto backend would be used."""

    def __call__(self, parser, namespace, values, option_string=None):
        from . import __version__
        lines = ["peerpunch %s" % __version__]
        wanted = getattr(namespace, "crypto_backend", "auto")
        for name, backend in crypto.available_backends().items():
            state = backend.detail if isinstance(backend, crypto.Backend) else "unavailable: " + backend
            lines.append("crypto backend %s: %s" % (name, state))
        try:
            lines.append("in use: %s" % crypto.get_backend(wanted).name)
        except (RuntimeError, ValueError) as exc:
            lines.append("in use: none (%s)" % exc)
        sys.stdout.write("\n".join(lines) + "\n")
        parser.exit(0)


def _username(text):
    try:
        return P.check_username(text)
    except ValueError as exc:
        raise cli.argparse.ArgumentTypeError("%r: %s" % (text, exc))


def _seconds(text):
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0.01 <= value <= 86400:
        raise cli.argparse.ArgumentTypeError("%r is not a number of seconds (0.01-86400)" % text)
    return value


def nat_check(args, prog):
    """``--nat-check``: run :class:`peerpunch.natcheck.NatCheck` over a socket
    bound like the chat's; print its report; return the exit code."""
    if args.connect or args.wait:
        return cli.usage_error(prog, "--nat-check cannot be combined with --connect or --wait")
    try:
        sock, relay_sockaddr = open_socket(args.relay, args.bind)
    except socket.gaierror as exc:
        return cli.usage_error(prog, "cannot resolve %s: %s" % (args.relay[0], exc.strerror))
    except OSError as exc:
        return cli.usage_error(prog, "cannot bind %s: %s" % (
            "%s:%d" % args.bind if args.bind else "a UDP socket", exc.strerror or exc))
    with sock:
        check = natcheck.NatCheck(relay_sockaddr)
        run_check(check, sock)
        local = lan_candidates(sock, relay_sockaddr)
        local_port = sock.getsockname()[1]
    if check.obs.error:
        print("nat-check: %s" % check.obs.error, file=sys.stderr, flush=True)
        return 1
    for line in natcheck.report(check.obs, local, local_port):
        print(line, flush=True)
    return 0


def run_check(check, sock, clock=time.monotonic):
    """Drive a sans-I/O *check* over the bound UDP socket *sock* until it is done."""
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
        sock.bind(bind_sockaddr)
    except OSError:
        sock.close()
        raise
    return sock, relay_sockaddr


def udp_socket(family, dual_stack=False):
    """A UDP socket; with *dual_stack*, an IPv6 one asked to reach IPv4 too
    (a system that refuses keeps it IPv6 only: see socket_families)."""
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


def ask(prompt, validate):
    """Prompt on stdout until *validate* accepts the answer; None at EOF."""
    while True:
        try:
            answer = input(prompt + " ").strip()
        except EOFError:
            return None
        try:
            return validate(answer)
        except (ValueError, cli.argparse.ArgumentTypeError) as exc:
            print(exc, flush=True)


def main(argv=None, prog=None):
    """Run the peer with *argv* (default sys.argv[1:]); *prog* is the name its
    --help and errors show (default: how sys.argv[0] was started)."""
    parser, args = parse_args(argv, prog or cli.program_name("peerpunch-peer"))
    if args.nat_check:
        return nat_check(args, parser.prog)
    for stream in (sys.stdout, sys.stderr, sys.stdin):
        _tolerant(stream)
    try:
        sock, relay_sockaddr = open_socket(args.relay, args.bind)
    except socket.gaierror as exc:
        return cli.usage_error(parser.prog, "cannot resolve %s: %s" % (args.relay[0], exc.strerror))
    except OSError as exc:
        return cli.usage_error(parser.prog, "cannot bind %s: %s"
                               % ("%s:%d" % args.bind if args.bind else "a UDP socket",
                                  exc.strerror or exc))
    name = args.name or ask("Please enter your username:", P.check_username)
    target = args.connect
    if name is not None and target is None and not args.wait:
        target = ask("Enter the username of the peer you want to connect to (empty to wait):",
                     lambda text: P.check_username(text) if text else "")
    if name is None or target is None and not args.wait:
        sock.close()
        print("no username given; bye", file=sys.stderr)
        return 1
    try:
        backend = crypto.get_backend(args.crypto_backend)
        folder = ID.config_dir()
        identity = ID.load_or_create(args.identity or os.path.join(folder, "identity"),
                                     backend, crypto.generate_private_key)
        known = ID.KnownPeers(args.known_peers or os.path.join(folder, "known_peers"))
    except (RuntimeError, ID.IdentityError) as exc:
        sock.close()
        print("error: %s" % exc, file=sys.stderr)
        return 1
    relay_addr = P.canonical_addr(relay_sockaddr)
    session = S.PeerSession(name, relay_addr, target=target or None,
                            local=lan_candidates(sock, relay_sockaddr),
                            families=socket_families(sock),
                            keepalive=args.keepalive, punch_timeout=args.punch_timeout,
                            identity=identity, backend=backend, known_keys=known.keys,
                            strict=args.strict, require_encryption=args.require_encryption)
    print("bound to %s; relay %s" % (P.format_endpoint(sock.getsockname()),
                                     P.format_endpoint(relay_addr)), flush=True)
    print("your key %s (crypto: %s)" % (identity.fingerprint, backend.name), flush=True)
    return run(session, sock, verbose=args.verbose, known_peers=known)


def run(session, sock, verbose=False, known_peers=None):
    """Run the four threads until the session closes; return the exit code."""
    output = queue.Queue()
    network = NetworkThread(session, sock, output, verbose=verbose, known_peers=known_peers)
    previous = _install_signals(network)
    network.start()
    threading.Thread(target=read_stdin, args=(network, sys.stdin), name="stdin", daemon=True).start()
    try:
        while True:
            kind, *args = output.get()
            if kind == "line":
                print(args[0], flush=True)
            elif kind == "log":
                print(args[0], file=sys.stderr, flush=True)
            elif kind == "exit":
                if args[1]:
                    print(args[1], file=sys.stderr, flush=True)
                network.join(JOIN_TIMEOUT)
                return args[0]
    finally:
        _restore_signals(previous)


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


def _tolerant(stream):
    """Never die on an unencodable character or undecodable byte."""
    try:
        stream.reconfigure(errors="backslashreplace" if stream is not sys.stdin else "replace")
    except (AttributeError, ValueError):
        pass


if __name__ == "__main__":
    sys.exit(main(prog="python -m peerpunch.peer"))
