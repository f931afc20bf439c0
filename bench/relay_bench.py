#!/usr/bin/env python3
"""Relay throughput and memory: python bench/relay_bench.py [--quick] [--sizes 1000,10000]

Theory of operation
-------------------
Two layers are measured, single-threaded, timed with ``time.perf_counter``,
reporting the median of a few repetitions:

* **core**: :class:`peerpunch.registry.Registry` fed pre-encoded datagrams
  through ``datagram_received`` (JSON decode, handling, JSON encode of the
  replies, the Log effects it builds). Per user count, one fresh
  subprocess measures

  - registrations/s: extension clients (``ext``, a nonce, padded to
    MIN_REGISTER_BYTES as our peer pads) from new addresses into an empty
    registry, until it holds N users; each registration is the cookie round
    trip (issue 10): Register -> Cookie, Register with the cookie ->
    RegisterAck with the token, i.e. two datagrams per registration;
  - refreshes/s: Register again with the token from registered users (the
    steady load: clients re-register every 20-25 s);
  - introductions/s: Connect (with the asker's token) from a random user to
    another random user (PeerInfo to both) followed by SessionFinished
    (with the token), so both are free again;
  - peak RSS (``ru_maxrss``) of the process once it holds N users, measured
    before anything else is allocated.

  The cookies are prepared before the timed fill: every Registry of a
  worker draws its random bytes from the same seeded generator, so it has
  the same cookie key (cookies are stateless: any registry with the key
  answers the same). Only extension clients are measured here: the
  seed-form pool is separate and small (``--max-seed-users``).

  A second fresh subprocess per size measures the same introductions against
  :class:`LinearRegistry`, the baseline: the same datagrams, codec calls, token
  check, replies and log texts, but users kept in a list and found by a
  linear scan, as the original Rust relay did. The ratio of the two isolates the data structure. At large
  sizes the baseline is sampled with fewer operations.

* **loopback**: the real relay, started by its real command line, driven over
  UDP on 127.0.0.1 by a few hundred client sockets with a window of
  outstanding requests. A registration there is the whole cookie round trip
  (then an Unregister with the token, so that the next round starts from an
  unregistered address); an introduction is a Connect and a SessionFinished
  with the token of the socket's last registration. Lost requests are resent a few times, then counted
  as lost; every loop is bounded in count and in time.

Addresses in the core benchmark come from 198.18.0.0/15 (RFC 2544,
benchmarking) and are never sent to; the loopback benchmark only ever sends
to 127.0.0.1.
"""

import argparse
import collections
import dataclasses
import gc
import hmac
import json
import os
import random
import re
import selectors
import socket
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from peerpunch import protocol as P  # noqa: E402
from peerpunch.effects import Log, Send  # noqa: E402
from peerpunch.registration import padded  # noqa: E402  (as our peer pads a Register)
from peerpunch.registry import MAX_USERS, Registry  # noqa: E402
from relayproc import RelayProcess, mb, own_peak_rss_mb  # noqa: E402

SIZES = (1_000, 10_000, 100_000)
QUICK_SIZES = (1_000, 10_000)

# name -> (full run, --quick)
PLAN = {
    "reps": (3, 1),
    "intro_ops": (20_000, 1_000),
    "refresh_ops": (20_000, 1_000),
    "linear_visits": (20_000_000, 1_000_000),  # baseline ops = this / users ...
    "linear_min_ops": (200, 20),               # ... but at least this many
    "lb_sockets": (400, 40),
    "lb_rounds": (5, 2),                       # Register rounds per socket per rep
    "lb_connects": (5_000, 200),
    "lb_window": (64, 16),
    "lb_time_limit": (10.0, 3.0),              # seconds per loopback phase
}

RETRY_AFTER = 0.25      # loopback: resend an unanswered request after this long
MAX_TRIES = 4           # ... this many sends in all, then count it lost
SETTLE = 0.3            # loopback: wait this long for stragglers before stopping the relay
RUST_ANCHOR = "Rust seed relay (LAB-FACTS): Connect 139,812/s @1k, 18,090/s @10k, 2,565/s @50k; 12 MB RSS @50k"


def plan(quick):
    return {name: values[1 if quick else 0] for name, values in PLAN.items()}


# ------------------------------------------------------------------ inputs

def user_name(i):
    return "user%06d" % i


def user_addr(i):
    """A distinct address in 198.18.0.0/15 for user *i* (never sent to)."""
    return ("198.%d.%d.%d" % (18 + (i >> 16 & 1), i >> 8 & 255, i & 255), 40000 + (i >> 17))


def user_nonce(i):
    return "%032x" % (i * 0x9E3779B97F4A7C15 % (1 << 128))


def register_msg(i, **fields):
    return P.Register(user_name(i), features=P.OUR_FEATURES, nonce=user_nonce(i), **fields)


def register_datagram(i, **fields):
    """User *i*'s Register (*fields*: cookie, token), padded, and its address."""
    return padded(P.encode(register_msg(i, **fields))), user_addr(i)


def seeded_random_bytes(seed=0):
    """A Registry's random_bytes: the same bytes (cookie key first) in every
    registry made with the same *seed*, so cookies can be prepared."""
    rng = random.Random(seed)
    return lambda n: rng.getrandbits(8 * n).to_bytes(n, "big")


def new_registry(n):
    return Registry(max_users=max(n, MAX_USERS), random_bytes=seeded_random_bytes())


def cookie_of(out):
    """The cookie in the Cookie a registry returned."""
    (cookie,) = [P.decode(e.data).cookie for e in out
                 if isinstance(e, Send) and e.data.startswith(b'{"Cookie"')]
    return cookie


def join(registry, i, now=1000.0):
    """Register user *i* through the cookie round trip."""
    data, addr = register_datagram(i)
    cookie = cookie_of(registry.datagram_received(data, addr, now))
    registry.datagram_received(register_datagram(i, cookie=cookie)[0], addr, now)


def intro_datagrams(n, ops, rng, tokens):
    """Connect a->b then SessionFinished from a (with a's token), for *ops*
    random pairs."""
    out = []
    for _ in range(ops):
        a, b = rng.sample(range(n), 2)
        addr = user_addr(a)
        out += [(P.encode(P.Connect(user_name(b), token=tokens[a])), addr),
                (P.encode(P.SessionFinished(token=tokens[a])), addr)]
    return out


def feed(registry, datagrams, now=1000.0):
    """Seconds taken to hand every (data, addr) to *registry*."""
    gc.collect()
    received = registry.datagram_received
    start = time.perf_counter()
    for data, addr in datagrams:
        received(data, addr, now)
    return time.perf_counter() - start


def expect(what, got, wanted):
    if got != wanted:
        raise SystemExit("relay_bench: %s: got %r, expected %r" % (what, got, wanted))


# ---------------------------------------------------------------- baseline

class LinearUser:
    __slots__ = ("name", "addr", "features", "last_seen", "partner", "token", "nonce", "secret")

    def __init__(self, name, addr, features, now, token, nonce):
        self.name, self.addr, self.features = name, addr, features
        self.last_seen, self.partner = now, None
        self.token, self.nonce, self.secret = token, nonce, None


class LinearRegistry:
    """The baseline: Registry's Connect/SessionFinished work, users in a list.

    Every lookup scans the list, as the Rust seed relay did. Only what the
    introduction benchmark needs is here; users are added directly.
    """

    def __init__(self):
        self.users = []
        self.stats = collections.Counter()

    def add(self, name, addr, features, now, token, nonce):
        self.users.append(LinearUser(name, addr, features, now, token, nonce))

    def by_addr(self, addr):
        for user in self.users:
            if user.addr == addr:
                return user
        return None

    def by_name(self, name):
        for user in self.users:
            if user.name == name:
                return user
        return None

    def datagram_received(self, data, addr, now):
        user = self.by_addr(addr)
        try:
            msg = P.decode(data)
        except P.RemoteProtocolError:
            return []
        if user is None or msg.token is None or not hmac.compare_digest(msg.token, user.token):
            return []
        user.last_seen = now
        if type(msg) is P.Connect:
            return self.connect(user, msg.target_username)
        if type(msg) is P.SessionFinished:
            return self.end_session(user)
        return []

    def connect(self, user, target_name):
        target = self.by_name(target_name)
        if target is None or target is user:
            return [Send(P.encode(P.TargetNotFound(nonce=user.nonce)), user.addr)]
        if user.partner is not target and target.partner is not None:
            return [Send(P.encode(P.TargetBusy(nonce=user.nonce)), user.addr)]
        out = self.end_session(user) if user.partner is not target else []
        user.partner, target.partner = target, user
        user.secret = target.secret = os.urandom(16).hex()
        self.stats["introductions"] += 1
        out.append(Log(20, "introduced %r at %s to %r at %s" % (
            user.name, P.format_endpoint(user.addr), target.name, P.format_endpoint(target.addr))))
        return out + [Send(_linear_peer_info(target, user), user.addr),
                      Send(_linear_peer_info(user, target), target.addr)]

    def end_session(self, user):
        partner = user.partner
        if partner is None:
            return []
        user.partner = partner.partner = None
        self.stats["sessions_ended"] += 1
        return [Log(20, "session of %r and %r ended" % (user.name, partner.name))]


def _linear_peer_info(about, to):
    features = (about.features or ()) if P.speaks_extensions(to.features) else None
    return P.encode(P.PeerInfo(peer=P.format_endpoint(about.addr), username=about.name,
                               features=features, session=about.secret, nonce=to.nonce))


# ----------------------------------------------------------------- workers

def core_worker(n, cfg):
    """Registry figures for *n* users; run in a fresh process."""
    result = {"bare_rss_mb": own_peak_rss_mb()}
    registry = new_registry(n)
    for i in range(n):                      # a few datagrams alive at a time
        join(registry, i)
    expect("proven users after filling", registry.proven_users(), n)
    result["rss_mb"] = own_peak_rss_mb()
    del registry

    registrations = []
    asked = new_registry(n)                 # the same cookie key; a Cookie stores nothing
    for i in range(n):
        first = register_datagram(i)
        cookie = cookie_of(asked.datagram_received(first[0], first[1], 1000.0))
        registrations += [first, register_datagram(i, cookie=cookie)]
    del asked
    fill = []
    for _ in range(cfg["reps"]):
        registry = None
        registry = new_registry(n)
        fill.append(n / feed(registry, registrations))
        expect("proven users after filling", registry.proven_users(), n)
    result["registrations"] = statistics.median(fill)
    tokens = [registry.user(user_name(i)).token for i in range(n)]

    rng = random.Random(n)
    refresh_ops = min(n, cfg["refresh_ops"])
    refreshes = [register_datagram(i, token=tokens[i]) for i in rng.sample(range(n), refresh_ops)]
    result["refreshes"] = _median_rate(registry, refreshes, refresh_ops, cfg["reps"])
    expect("users after refreshing", (len(registry), registry.stats["registrations"]), (n, n))
    expect("cookies sent", registry.stats["cookies"], n)

    intros = intro_datagrams(n, cfg["intro_ops"], rng, tokens)
    result["introductions"] = _median_rate(registry, intros, cfg["intro_ops"], cfg["reps"])
    _expect_introduced(registry, cfg["intro_ops"] * cfg["reps"])
    return result


def linear_worker(n, cfg):
    """LinearRegistry introductions for *n* users; run in a fresh process."""
    registry = LinearRegistry()
    tokens = [os.urandom(16).hex() for _ in range(n)]
    for i in range(n):
        registry.add(user_name(i), user_addr(i), P.OUR_FEATURES, 1000.0, tokens[i], user_nonce(i))
    ops = max(cfg["linear_min_ops"], min(cfg["intro_ops"], cfg["linear_visits"] // n))
    intros = intro_datagrams(n, ops, random.Random(n), tokens)
    rate = _median_rate(registry, intros, ops, cfg["reps"])
    _expect_introduced(registry, ops * cfg["reps"])
    return {"introductions": rate, "ops": ops}


def _median_rate(registry, datagrams, ops, reps):
    return statistics.median(ops / feed(registry, datagrams) for _ in range(reps))


def _expect_introduced(registry, count):
    expect("introductions, sessions ended",
           (registry.stats["introductions"], registry.stats["sessions_ended"]), (count, count))


WORKERS = {"core": core_worker, "linear": linear_worker}


def run_worker(mode, n, quick):
    argv = [sys.executable, os.path.abspath(__file__), "--worker", mode, "--sizes", str(n)]
    proc = subprocess.run(argv + (["--quick"] if quick else []), cwd=ROOT,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=600)
    if proc.returncode != 0:
        raise SystemExit("relay_bench: %s worker for %d users failed:\n%s"
                         % (mode, n, proc.stderr.decode(errors="replace")))
    return json.loads(proc.stdout.decode().strip().splitlines()[-1])


# ------------------------------------------------------------ the relay

# --------------------------------------------------------------- loopback

# One request from client socket *sender*, done when that socket receives a
# datagram starting with *prefix*; then *then* (if any) is sent from it, and
# the reply is sent into the lane (a generator) for its next job.
Job = collections.namedtuple("Job", "sender data prefix then")

ACK_PREFIX = b'{"RegisterAck"'
COOKIE_PREFIX = b'{"Cookie"'
PEER_INFO_PREFIX = b'{"PeerInfo"'


class LoopbackClients:
    """Client sockets on 127.0.0.1 that talk to the relay at *relay_addr* only."""

    def __init__(self, relay_addr, count):
        self.relay_addr = relay_addr
        self.selector = selectors.DefaultSelector()
        self.socks = []
        self.received = collections.Counter()       # reply variant -> count
        self.send_errors = 0
        for i in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.socks.append(sock)
            sock.bind(("127.0.0.1", 0))
            sock.setblocking(False)
            self.selector.register(sock, selectors.EVENT_READ, i)

    def close(self):
        self.selector.close()
        for sock in self.socks:
            sock.close()

    def send(self, index, data):
        try:
            self.socks[index].sendto(data, self.relay_addr)
        except OSError:
            self.send_errors += 1

    def run(self, lanes, window, time_limit):
        """Run each lane's jobs in order, at most *window* lanes at once.

        Returns (completed, lost, resent, seconds from start to last reply).
        """
        run = _Run(self, lanes, window)
        deadline = run.start + time_limit
        while run.active and time.perf_counter() < deadline:
            for key, _ in self.selector.select(RETRY_AFTER / 5):
                self._drain(key.fileobj, key.data, run)
            run.retry(time.perf_counter())
        run.lost += len(run.active)
        return run.completed, run.lost, run.resent, run.last - run.start

    def settle(self, seconds):
        """Count the replies still in flight, so the relay has seen everything."""
        run = _Run(self, (), 0)
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            for key, _ in self.selector.select(max(0.0, deadline - time.perf_counter())):
                self._drain(key.fileobj, key.data, run)

    def _drain(self, sock, index, run):
        while True:
            try:
                data = sock.recv(2048)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                continue
            self.received[_variant_name(data)] += 1
            run.reply(index, data)


class _Run:
    """Book-keeping of one LoopbackClients.run."""

    def __init__(self, clients, lanes, window):
        self.clients = clients
        self.waiting = collections.deque(lanes)
        self.active = {}          # sender -> [job, lane, sent_at, tries]
        self.completed = self.lost = self.resent = 0
        self.start = self.last = time.perf_counter()
        self.window = window
        self._fill(self.start)

    def _fill(self, now):
        while len(self.active) < self.window and self.waiting:
            self._next(self.waiting.popleft(), now)     # an empty lane is just dropped

    def _next(self, lane, now, reply=None):
        """Send the lane's next job (and any that await no reply after it)."""
        while True:
            try:
                job = lane.send(reply)
            except StopIteration:
                return False
            self.clients.send(job.sender, job.data)
            if job.prefix is not None:
                self.active[job.sender] = [job, lane, now, 1]
                return True
            reply = None

    def reply(self, index, data):
        entry = self.active.get(index)
        if entry is None or not data.startswith(entry[0].prefix):
            return
        del self.active[index]
        now = time.perf_counter()
        self.completed += 1
        self.last = now
        if entry[0].then is not None:
            self.clients.send(index, entry[0].then)
        if not self._next(entry[1], now, data):
            self._fill(now)

    def retry(self, now):
        for index, entry in list(self.active.items()):
            job, lane, sent_at, tries = entry
            if now - sent_at < RETRY_AFTER:
                continue
            if tries >= MAX_TRIES:
                del self.active[index]
                self.lost += 1
                lane.close()                    # a lane cannot go on without its reply
                if not self._next(lane, now):
                    self._fill(now)
            else:
                entry[2:] = [now, tries + 1]
                self.resent += 1
                self.clients.send(index, job.data)


def _variant_name(data):
    text = data[:40].decode("ascii", "replace")
    found = re.match(r'\{?"(\w+)"', text)
    return found.group(1) if found else "garbage"


def lb_name(rep, rnd, i):
    return "lb%d-%d-%d" % (rep, rnd, i)


def register_lane(i, rep, rounds, tokens, keep):
    """Socket *i* registers *rounds* names through the cookie round trip:
    Register -> Cookie, Register with it -> RegisterAck with the token; then
    it unregisters (with the token) unless it is the round that *keep*s its
    name; *tokens*[i] is its last token."""
    for rnd in range(rounds):
        register = P.Register(lb_name(rep, rnd, i), features=P.OUR_FEATURES, nonce=user_nonce(i))
        reply = yield Job(i, padded(P.encode(register)), COOKIE_PREFIX, None)
        with_cookie = dataclasses.replace(register, cookie=P.decode(reply).cookie)
        tokens[i] = None
        reply = yield Job(i, padded(P.encode(with_cookie)), ACK_PREFIX, None)
        tokens[i] = P.decode(reply).token
        if not (keep and rnd == rounds - 1):
            # no reply to wait for: the next Register from this socket follows it
            yield Job(i, P.encode(P.Unregister(token=tokens[i])), None, None)


def connect_lane(a, target, token, budget):
    """Connect from socket *a* to *target* until the shared *budget* is spent."""
    data = P.encode(P.Connect(target, token=token))
    finished = P.encode(P.SessionFinished(token=token))
    while budget[0] > 0:
        budget[0] -= 1
        yield Job(a, data, PEER_INFO_PREFIX, finished)


def loopback(cfg):
    relay = RelayProcess("relay_bench", "--max-users-per-ip", "1000000")
    clients = None
    try:
        relay_addr = relay.wait_listening()
        clients = LoopbackClients(relay_addr, cfg["lb_sockets"])
        result = {"relay": "%s:%d" % relay_addr}
        tokens = {}
        result["registrations"] = _lb_phase(relay, clients, cfg, _register_lanes, tokens)
        result["introductions"] = _lb_phase(relay, clients, cfg, _connect_lanes, tokens)
        clients.settle(SETTLE)
        result["received"] = dict(clients.received)
        result["send_errors"] = clients.send_errors
    finally:
        if clients is not None:
            clients.close()
        result_stats = relay.stop(timeout=5) or "no stats line (exit code %s)" % relay.proc.returncode
    result["relay_stats"] = result_stats
    return result


def _register_lanes(cfg, rep, tokens):
    keep = rep == cfg["reps"] - 1           # the last round of the last rep stays registered
    return [register_lane(i, rep, cfg["lb_rounds"], tokens, keep) for i in range(cfg["lb_sockets"])]


def _connect_lanes(cfg, rep, tokens):
    # Disjoint pairs (0,1), (2,3), ...: the even socket connects to the odd one
    # by the name it took in the last registration round.
    last = (cfg["reps"] - 1, cfg["lb_rounds"] - 1)
    budget = [cfg["lb_connects"]]
    return [connect_lane(a, lb_name(*last, a + 1), tokens.get(a), budget)
            for a in range(0, cfg["lb_sockets"] - 1, 2)]


def _lb_phase(relay, clients, cfg, make_lanes, tokens):
    runs = []
    for rep in range(cfg["reps"]):
        cpu = relay.cpu_seconds()
        done, lost, resent, seconds = clients.run(make_lanes(cfg, rep, tokens), cfg["lb_window"],
                                                  cfg["lb_time_limit"])
        cpu_after = relay.cpu_seconds()
        busy = None if cpu is None or not seconds else (cpu_after - cpu) / seconds
        runs.append({"rate": done / seconds if seconds else 0.0, "done": done, "lost": lost,
                     "resent": resent, "relay_cpu": busy})
    return sorted(runs, key=lambda r: r["rate"])[len(runs) // 2]


# ----------------------------------------------------------------- report

def print_report(sizes, core, linear, lb, cfg, elapsed):
    print("peerpunch relay benchmark: Python %s on %s, single thread, median of %d"
          % (sys.version.split()[0], sys.platform, cfg["reps"]))
    print()
    print("core: Registry.datagram_received fed encoded datagrams (JSON decode+encode included)")
    head = ("users", "registrations/s", "refreshes/s", "introductions/s",
            "baseline intro/s", "ratio", "peak RSS MB")
    print("%8s %16s %12s %16s %17s %7s %12s" % head)
    for n in sizes:
        c, b = core[n], linear[n]
        print("%8d %16.0f %12.0f %16.0f %17.0f %6.1fx %12s" % (
            n, c["registrations"], c["refreshes"], c["introductions"], b["introductions"],
            c["introductions"] / b["introductions"], mb(c["rss_mb"])))
    print("  registration = Register -> Cookie, Register with it -> RegisterAck (2 datagrams);"
          " refresh = Register with the token")
    print("  introduction = Connect -> PeerInfo to both -> SessionFinished (each with the token)")
    print("  baseline = the same work with users in a list found by linear scan; ops sampled: %s"
          % ", ".join("%d@%d" % (linear[n]["ops"], n) for n in sizes))
    print("  peak RSS = process holding N users; bare interpreter + imports: %s MB"
          % mb(core[sizes[0]]["bare_rss_mb"]))
    print("  " + RUST_ANCHOR)
    print()
    print("loopback UDP: python -m peerpunch.relay on %s, %d client sockets, window %d"
          % (lb["relay"], cfg["lb_sockets"], cfg["lb_window"]))
    # a registration is two requests (Register, then with the cookie)
    for label, key, per in (("registrations", "registrations", 2),
                            ("introductions", "introductions", 1)):
        r = lb[key]
        cpu = "" if r["relay_cpu"] is None else ", relay CPU %.0f%%" % (100 * r["relay_cpu"])
        if r["relay_cpu"] is not None and r["relay_cpu"] < 0.9:
            cpu += ": client-bound"
        print("  %-14s %9.0f/s  (%d requests done, %d lost, %d resent%s)"
              % (label, r["rate"] / per, r["done"], r["lost"], r["resent"], cpu))
    print("  registration = Register -> Cookie, Register with it -> RegisterAck, then Unregister;"
          " introduction = Connect -> PeerInfo to both -> SessionFinished (token in each)")
    print("  replies received: %s; send errors: %d" % (
        ", ".join("%s=%d" % kv for kv in sorted(lb["received"].items())), lb["send_errors"]))
    print("  relay stopped: %s" % lb["relay_stats"])
    print()
    print("total %.1f s" % elapsed)


# ------------------------------------------------------------------- main

def parse_sizes(text):
    try:
        sizes = tuple(int(part) for part in text.split(","))
    except ValueError:
        sizes = ()
    if not sizes or min(sizes) < 2:
        raise argparse.ArgumentTypeError("%r: expected user counts like 1000,10000" % text)
    return sizes


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="relay_bench.py", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small counts, a few seconds")
    parser.add_argument("--sizes", type=parse_sizes, help="user counts (default %s)"
                        % ",".join(map(str, SIZES)))
    parser.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    cfg = plan(args.quick)
    sizes = args.sizes or (QUICK_SIZES if args.quick else SIZES)
    if args.worker:
        print(json.dumps(WORKERS[args.worker](sizes[0], cfg)))
        return 0
    start = time.perf_counter()
    core = {n: run_worker("core", n, args.quick) for n in sizes}
    linear = {n: run_worker("linear", n, args.quick) for n in sizes}
    lb = loopback(cfg)
    print_report(sizes, core, linear, lb, cfg, time.perf_counter() - start)
    return 0


if __name__ == "__main__":
    sys.exit(main())
