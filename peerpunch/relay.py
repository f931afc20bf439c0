"""The rendezvous relay: ``python -m peerpunch.relay``.

A single-threaded loop (:class:`peerpunch.shell.DatagramLoop`, shared with
the peer) around :class:`peerpunch.registry.Registry`. The loop owns the
sockets and the clock; the registry decides everything.
When it stops, it sends what :meth:`Registry.farewell` returns (clients
then find the relay that replaces it within seconds).
Signals reach the loop through ``signal.set_wakeup_fd`` on a socketpair, so
SIGINT/SIGTERM stop it promptly without polling.

STUN Binding requests (a first byte of 0-3, which no JSON document has) go to
:class:`peerpunch.stunserver.BindingServer` instead, on the main port and on the
alternate port (by default the main one + 1; ``--alt-port``, ``--no-alt-port``),
which speaks nothing but STUN.

Every Log effect goes through a :class:`peerpunch.loglimit.LogLimiter`, so
that a flood of datagrams cannot fill the operator's disk (lines of one kind
beyond a budget become one summary line a minute), and every
``--stats-interval`` seconds one line of counters is logged.
"""

import logging
import signal
import socket
import sys
import time

from . import cli
from . import forwarder as F
from .loglimit import PER_WINDOW, LogLimiter
from .protocol import format_endpoint
from .registry import EXPIRE_AFTER, MAX_SEED_USERS, MAX_USERS, MAX_USERS_PER_IP, Registry
from .shell import DatagramLoop, udp_socket
from .stun import is_stun
from .stunserver import BindingServer

log = logging.getLogger("peerpunch.relay")

BATCH = 256              # datagrams handled before timers get a look in
RCVBUF = 4 << 20
STATS_INTERVAL = 3600    # seconds between lines of counters (0: none)
# registry counters that count dropped or refused requests, for the stats line
DROPPED = ("malformed", "unexpected", "unregistered", "unproven", "full", "seed_full", "full_for_ip",
           "name_taken", "cookie_too_large", "errors_limited", "seed_to_proven", "seed_vs_proven",
           "seed_introductions_limited", "reintroductions_limited", "stale_reintroductions",
           "relay_without_session", "relay_ambiguous", "relay_unverified", "relay_not_offered",
           "relay_refused", "relay_too_short", "relay_unnamed",
           "watches_refused")


class RelayServer:
    """Serve *registry* on the bound UDP socket *sock* until :meth:`stop`;
    answer STUN there and on *alt_sock* (the alternate port), if given.
    Log lines pass through *limiter* (default: a LogLimiter with its
    defaults); with a *stats_interval* (seconds), a line of counters is
    logged that often."""

    def __init__(self, sock, registry, clock=time.monotonic, alt_sock=None, limiter=None,
                 stats_interval=0):
        self.sock = sock
        socks = [sock] + ([alt_sock] if alt_sock is not None else [])
        self.stun = BindingServer([s.getsockname() for s in socks])
        self.registry = registry
        self.clock = clock
        self.limiter = limiter if limiter is not None else LogLimiter()
        self.loop = DatagramLoop(sock, self._datagram_received, log, limiter=self.limiter,
                                 clock=clock, batch=BATCH)
        if alt_sock is not None:
            self.loop.add_socket(1, alt_sock)
        self.traffic = self.loop.traffic     # datagrams and bytes, in and out
        self.stats_interval = stats_interval
        self._next_stats = clock() + stats_interval if stats_interval else None

    internal_errors = property(lambda self: self.loop.internal_errors)
    send_errors = property(lambda self: self.loop.send_errors)

    def wakeup_fd(self):
        """A file descriptor for ``signal.set_wakeup_fd``."""
        return self.loop.wakeup_fd()

    def stop(self):
        self.loop.stop()

    def serve_forever(self):
        """Serve until :meth:`stop`; then tell the clients we are stopping
        (so that they register with whatever relay replaces us at once)."""
        while not self.loop.stopped:
            deadline = self._next_deadline()
            timeout = None if deadline is None else max(0.0, deadline - self.clock())
            self.loop.poll(timeout)
            self._tick(self.clock())
        self.loop.apply(self.registry.farewell())
        self.loop.flush()

    def _next_deadline(self):
        due = [t for t in (self.registry.next_deadline(), self.loop.next_deadline(),
                           self._next_stats) if t is not None]
        return min(due) if due else None

    def _tick(self, now):
        self.loop.apply(self.registry.tick(now))
        self.loop.tick(now)
        if self._next_stats is not None and now >= self._next_stats:
            self._next_stats = now + self.stats_interval
            log.info("%s", stats_line(self))

    def close(self):
        self.loop.close()

    def _datagram_received(self, data, addr, via):
        """One datagram from the canonical *addr* on socket *via*: STUN on
        the alternate port, or where the first byte says so; else the registry's."""
        if via or is_stun(data):
            answers = self.stun.datagram_received(data, addr, via, self.clock())
            if answers and log.isEnabledFor(logging.DEBUG):
                for answer in answers:
                    log.debug("STUN answer to %s from port %d", format_endpoint(answer.addr),
                              self.stun.addresses[answer.via][1])
            return answers
        return self.registry.datagram_received(data, addr, self.clock())


def stats_line(server):
    """One line of the relay's counters, totals since it started:
    ``stats: users=... sessions=... datagrams_in=... dropped(reason=N ...) ...``."""
    registry, relayed = server.registry, server.registry.forwarder.stats
    pairs = [("users", len(registry)), ("proven", registry.proven_users()),
             ("seed", registry.seed_users())]
    pairs += [("sessions", registry.sessions())]
    pairs += [(k, server.traffic[k]) for k in ("datagrams_in", "bytes_in", "datagrams_out", "bytes_out")]
    pairs += [("relayed_datagrams", relayed["datagrams"]), ("relayed_bytes", relayed["bytes"])]
    dropped = " ".join("%s=%d" % (k, registry.stats[k]) for k in DROPPED if registry.stats[k])
    pairs += [("internal_errors", server.internal_errors), ("send_errors", server.send_errors),
              ("log_lines_suppressed", server.limiter.suppressed),
              ("limited_sources", registry.limited_blocks(server.clock()) + server.stun.limited(server.clock()))]
    return "stats: %s dropped(%s)" % (" ".join("%s=%d" % kv for kv in pairs), dropped)


EPILOG = """example, on a server with UDP ports 8080 and 8081 open in its firewall:
  %(prog)s --port 8080
peers then use --relay SERVER:8080; logs go to stderr, nothing is kept on disk."""


def parse_args(argv, prog="peerpunch-relay"):
    parser = cli.ArgumentParser(prog=prog, description="peerpunch rendezvous relay (UDP)",
                                epilog=EPILOG,
                                formatter_class=cli.argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="0.0.0.0", type=cli.host_name,
                        help="address to listen on (default 0.0.0.0; '::' for IPv6)")
    parser.add_argument("--port", default=8080, type=cli.port_number,
                        help="UDP port (default 8080; 0 picks a free one)")
    parser.add_argument("--expire", default=EXPIRE_AFTER, type=_positive_float, metavar="SECONDS",
                        help="forget users silent this long (default %(default)s)")
    parser.add_argument("--max-users", default=MAX_USERS, type=_positive_int, metavar="N",
                        help="proven (extension) registrations at most (default %(default)s)")
    parser.add_argument("--max-seed-users", default=MAX_SEED_USERS, type=_positive_int, metavar="N",
                        help="seed-form registrations (clients that cannot prove their address)"
                        " at most, in a pool of their own (default %(default)s)")
    parser.add_argument("--max-users-per-ip", default=MAX_USERS_PER_IP, type=_positive_int,
                        metavar="N", help="registered users per IP address or IPv6 /64"
                        " (default %(default)s)")
    fallback = parser.add_argument_group("relay fallback (forwarding for peers that cannot punch)")
    fallback.add_argument("--no-relay-fallback", action="store_true", help="do not forward at all")
    fallback.add_argument("--relay-sessions", type=_positive_int, default=F.MAX_SESSIONS,
                          metavar="N", help="relayed sessions at once (default %(default)s)")
    fallback.add_argument("--relay-rate", type=_positive_int, default=F.RATE, metavar="BYTES",
                          help="bytes per second per session (default %(default)s)")
    fallback.add_argument("--relay-bytes", type=_positive_int, default=F.SESSION_BYTES,
                          metavar="BYTES", help="bytes in total per session (default %(default)s)")
    fallback.add_argument("--relay-per-ip", type=_positive_int, default=F.MAX_PER_SOURCE,
                          metavar="N", help="relayed sessions one IP may open (default %(default)s)")
    fallback.add_argument("--relay-idle", type=_positive_float, default=F.IDLE_TIMEOUT,
                          metavar="SECONDS", help="free an idle session's allocation (default %(default)s)")
    alt = parser.add_mutually_exclusive_group()
    alt.add_argument("--alt-port", type=cli.port_number, metavar="PORT",
                     help="the STUN alternate UDP port, where clients compare the mappings two"
                     " destinations see (which finds symmetric NATs); default: --port + 1, or"
                     " a free one with --port 0; 0 picks a free one")
    alt.add_argument("--no-alt-port", action="store_true",
                     help="open no alternate port (peers then cannot tell a symmetric NAT)")
    parser.add_argument("--stats-interval", type=_whole_number, default=STATS_INTERVAL,
                        metavar="SECONDS", help="log a line of counters (users, sessions, traffic,"
                        " drops) this often; 0: never (default %(default)s)")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="log every datagram and every event, without the rate limit that"
                        " otherwise keeps each kind of event to %d lines a minute plus a summary"
                        " (for debugging: a flood then fills the log)" % PER_WINDOW)
    cli.version_action(parser)
    args = parser.parse_args(argv)
    if args.alt_port is not None and args.alt_port == args.port != 0:
        parser.error("--alt-port must differ from --port")
    return args


def _positive_float(text):
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value < 1e9:
        raise cli.argparse.ArgumentTypeError("%r is not a positive number" % text)
    return value


def _whole_number(text):
    if not text.isdigit() or not text.isascii():
        raise cli.argparse.ArgumentTypeError("%r is not a whole number" % text)
    return int(text)


def _positive_int(text):
    if not text.isdigit() or not text.isascii() or int(text) < 1:
        raise cli.argparse.ArgumentTypeError("%r is not a positive whole number" % text)
    return int(text)


def bind(host, port):
    family, addr = cli.resolve(host, port)
    # '::' serves IPv4 clients too, whatever the system's default
    sock = udp_socket(family, dual_stack=addr[0] == "::")
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
    except OSError:
        pass
    try:
        sock.bind(addr)
    except OSError:
        sock.close()
        raise
    return sock


def bind_alternate(args, sock):
    """(the STUN alternate port's socket or None, why there is none or None).

    By default it is the main port + 1 (any free port when the main one was
    picked freely); if that cannot be bound, the relay goes on without it:
    peers then only miss the mapping check. A port asked for with
    ``--alt-port`` must be bound: raises OSError.
    """
    if args.no_alt_port:
        return None, None
    host, main_port = sock.getsockname()[:2]      # the address the main port got
    if args.alt_port is not None:
        return bind(host, args.alt_port), None
    port = 0 if args.port == 0 else main_port + 1
    reason = "port %d is beyond 65535" % port if port > 65535 else None
    if reason is None:
        try:
            return bind(host, port), None
        except OSError as exc:
            reason = "port %d: %s" % (port, exc.strerror or exc)
    return None, ("warning: no STUN alternate port (%s); peers cannot tell whether their NAT"
                  " is symmetric, so a symmetric NAT meeting a port-restricted one is relayed"
                  " instead of direct; --alt-port PORT picks another" % reason)


def main(argv=None, prog=None):
    """Run the relay with *argv* (default sys.argv[1:]); *prog* is the name its
    --help and errors show (default: how sys.argv[0] was started)."""
    args = parse_args(argv, prog or cli.program_name("peerpunch-relay"))
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(message)s", stream=sys.stderr)
    try:
        sock = bind(args.host, args.port)
    except OSError as exc:
        sys.stderr.write("relay: cannot listen on %s:%d: %s\n"
                         % (args.host, args.port, exc.strerror or exc))
        return 1
    try:
        alt, no_alt = bind_alternate(args, sock)
    except OSError as exc:
        sock.close()
        sys.stderr.write("relay: cannot listen on %s:%d: %s\n"
                         % (args.host, args.alt_port, exc.strerror or exc))
        return 1
    limits = F.Limits(max_sessions=args.relay_sessions, rate=args.relay_rate,
                      burst=2 * args.relay_rate, session_bytes=args.relay_bytes,
                      idle_timeout=args.relay_idle, max_per_source=args.relay_per_ip)
    forwarder = F.Forwarder(limits, enabled=not args.no_relay_fallback)
    registry = Registry(expire_after=args.expire, max_users=args.max_users,
                        max_seed_users=args.max_seed_users,
                        max_users_per_ip=args.max_users_per_ip, verbose=args.verbose,
                        forwarder=forwarder)
    server = RelayServer(sock, registry, alt_sock=alt, limiter=LogLimiter(enabled=not args.verbose),
                         stats_interval=args.stats_interval)
    previous = _install_signals(server)
    log.info("relay listening on %s", format_endpoint(sock.getsockname()))
    if alt is not None:
        log.info("STUN alternate port %s", format_endpoint(alt.getsockname()))
    elif no_alt:
        log.warning("%s", no_alt)
    try:
        server.serve_forever()
    finally:
        _restore_signals(previous)
        server.close()
    stats = server.registry.stats + prefixed(forwarder.stats, "relayed_") + server.stun.stats \
        + server.traffic
    stats.update(log_lines_suppressed=server.limiter.suppressed)
    stats.update(internal_errors=server.internal_errors, send_errors=server.send_errors)  # even at 0
    if server.loop.dropped:        # RemoteProtocolErrors the registry let through (none expected)
        stats.update(dropped=server.loop.dropped)
    log.info("relay stopped: %s", ", ".join("%s=%d" % kv for kv in sorted(stats.items())) or "idle")
    return 0


def prefixed(counter, prefix):
    return type(counter)({prefix + k: v for k, v in counter.items()})


def _install_signals(server):
    def handler(signum, frame):
        server.stop()
    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    previous["wakeup"] = signal.set_wakeup_fd(server.wakeup_fd())
    return previous


def _restore_signals(previous):
    signal.set_wakeup_fd(previous.pop("wakeup"))
    for sig, old in previous.items():
        signal.signal(sig, old)


if __name__ == "__main__":
    sys.exit(main(prog="python -m peerpunch.relay"))
