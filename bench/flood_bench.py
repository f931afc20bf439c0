#!/usr/bin/env python3
"""Relay under a forged flood: python bench/flood_bench.py [--seconds 10] [--sources 4096]

Theory of operation
-------------------
The real relay (``python -m peerpunch.relay --host 127.0.0.1 --port 0``,
default limits) is started once. Then, in the same run:

1. **baseline**: two real peers (``bin/peer.py --name alice --wait`` and
   ``--name bob --connect alice``, each with its own temporary
   XDG_CONFIG_HOME) register, connect and exchange a line, then quit;
2. **flood**: a separate process (this script with ``--flooder``) sends,
   for ``--seconds`` at full speed, from ``--sources`` UDP sockets bound to
   distinct addresses 127.B.C.D (16 per /24, so 4096 sources span 256
   blocks: the whole of 127/8 is local on Linux, so no raw sockets and no
   root are needed, and what the relay answers arrives on the very socket
   that sent), a fixed mix of forgeries cycled over the sources:
   extension Registers with random names (half of them padded so that a
   Cookie may be answered, some naming alice or bob), seed-form Registers
   with random names, Connects (to random names, to names the flood
   registered in seed form, to alice and bob), 20-byte STUN Binding
   requests (RFC 8489 and RFC 3489 forms), relayed frames (``0xD0`` and
   ``0xD1`` with a guessed channel), junk bytes and empty datagrams. The
   flooder never reacts to a reply (it is a forger: a real
   one cannot read them); it only counts them, by kind;
3. during the flood (from min(2 s, seconds / 5) in), the same two peers
   register, connect and exchange a line again.

Reported: each phase's time to connect (wall clock from starting bob to
both peers printing "connected to"; the peers' own "in N s" too), the
relay's peak RSS (VmHWM) after the baseline and after the flood, the
datagrams and bytes the flooder sent against what came back to its sources
(amplification = bytes back / bytes sent; the relay's guarantee is <= 1.0,
and per kind, the answers of each kind against what that kind sent: STUN
answers longer than their request are allowed within a per-/24 budget),
the relay's own stop-line counters (bytes_in, bytes_out: the whole run,
peers included), and how much the relay logged during the flood.
"""

import argparse
import collections
import json
import os
import random
import re
import selectors
import shutil
import socket
import string
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from peerpunch import protocol as P  # noqa: E402
from peerpunch.registration import padded  # noqa: E402  (as our peer pads a Register)
from relayproc import RelayProcess, child_env, mb, raise_fd_limit, terminate  # noqa: E402

PEER = os.path.join(ROOT, "bin", "peer.py")
PER_BLOCK = 16              # flood sources per /24
POOL = 20_011               # distinct forged datagrams (prime: pairs with sources vary)
BURST = 512                 # sends between two looks at the replies
SETTLE_QUIET = 0.5          # after the flood: stop counting replies after this much silence...
SETTLE_MAX = 5.0            # ...or this long in all
PEER_TIMEOUT = 30.0         # a peer step that takes longer counts as failed
KINDS = ("ext_register", "seed_register", "connect", "stun", "relayed", "junk", "empty")
ANSWERS = {"Cookie": "ext_register", "RegisterAck": "seed_register", "TargetNotFound": "connect",
           "PeerInfo": "connect", "TargetBusy": "connect", "stun": "stun", "relayed": "relayed"}
CONNECTED = r"^connected to %s at \S+ .* in (\d+\.\d+) s$"    # the peer's own timing


# --------------------------------------------------------------- flooder

def source_addr(k):
    """The *k*-th flood source: 127.B.C.D, PER_BLOCK of them per /24."""
    block = k // PER_BLOCK
    return "127.%d.%d.%d" % (1 + block // 256, block % 256, 2 + k % PER_BLOCK)


def random_name(rng):
    return "".join(rng.choice(string.ascii_lowercase + string.digits)
                   for _ in range(rng.randint(3, 20)))


def forged_pool(rng, size=POOL):
    """[(kind, datagram)]: the flood's mix, the same for every run."""
    seeded = [random_name(rng) for _ in range(64)]      # names the flood takes in seed form
    pool = []
    for i in range(size):
        kind = KINDS[i % len(KINDS)]
        pool.append((kind, _forgery(kind, rng, seeded)))
    return pool


def _forgery(kind, rng, seeded):
    if kind == "ext_register":
        name = rng.choice(("alice", "bob")) if rng.random() < 0.1 else random_name(rng)
        data = P.encode(P.Register(name, features=P.OUR_FEATURES,
                                   nonce="%032x" % rng.getrandbits(128)))
        return padded(data) if rng.random() < 0.5 else data
    if kind == "seed_register":
        name = rng.choice(seeded) if rng.random() < 0.5 else random_name(rng)
        return P.encode(P.Register(name))
    if kind == "connect":
        roll = rng.random()
        target = rng.choice(seeded) if roll < 0.5 else \
            rng.choice(("alice", "bob")) if roll < 0.6 else random_name(rng)
        return P.encode(P.Connect(target))
    if kind == "stun":               # what turnutils_stunclient and stun 0.97 send
        cookie = b"\x21\x12\xa4\x42" if rng.random() < 0.5 else bytes(rng.getrandbits(8) for _ in range(4))
        return b"\x00\x01\x00\x00" + cookie + bytes(rng.getrandbits(8) for _ in range(12))
    if kind == "relayed":            # the one-byte form, or a guessed channel
        payload = b'"Ping"' if rng.random() < 0.5 else bytes(rng.getrandbits(8) for _ in range(40))
        if rng.random() < 0.5:
            return b"\xd0" + payload
        return b"\xd1" + bytes(rng.getrandbits(8) for _ in range(8)) + payload
    if kind == "junk":
        return bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 200)))
    return b""


def open_sources(count):
    """Non-blocking UDP sockets bound to *count* distinct 127/8 addresses."""
    socks = []
    for k in range(count):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.bind((source_addr(k), 0))
        except OSError:
            sock.close()
            raise
        sock.setblocking(False)
        socks.append(sock)
    return socks


class Counts:
    def __init__(self):
        self.sent = collections.Counter()           # kind -> datagrams
        self.sent_bytes = collections.Counter()     # kind -> bytes
        self.back = collections.Counter()           # reply variant -> datagrams
        self.back_by = collections.Counter()        # reply variant -> bytes
        self.back_bytes = 0
        self.send_errors = 0

    def as_dict(self):
        return {"sent": dict(self.sent), "sent_bytes": dict(self.sent_bytes),
                "back": dict(self.back), "back_bytes": self.back_bytes, "back_by": dict(self.back_by),
                "send_errors": self.send_errors}


def drain(selector, counts, timeout=0.0):
    got = 0
    for key, _ in selector.select(timeout):
        while True:
            try:
                data = key.fileobj.recv(2048)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:         # e.g. an ICMP error queued on the socket
                continue
            got += 1
            variant = _variant(data)
            counts.back[variant] += 1
            counts.back_by[variant] += len(data)
            counts.back_bytes += len(data)
    return got


def _variant(data):
    if data[:1] in (b"\x00", b"\x01"):
        return "stun"
    if data[:1] in (b"\xd0", b"\xd1"):
        return "relayed"
    found = re.match(rb'\{?"(\w+)"', data[:40])
    return found.group(1).decode() if found else "other"


def flood(relay, seconds, socks, pool, rate=0):
    """Send *pool* round-robin over *socks* to *relay* for *seconds*, at
    *rate* datagrams a second (0: as fast as we can)."""
    counts = Counts()
    selector = selectors.DefaultSelector()
    for sock in socks:
        selector.register(sock, selectors.EVENT_READ)
    i, n, m = 0, len(socks), len(pool)
    burst = min(BURST, max(1, rate // 100)) if rate else BURST
    start = time.monotonic()
    end = start + seconds
    while time.monotonic() < end:
        if rate:
            ahead = start + i / rate - time.monotonic()
            if ahead > 0:
                drain(selector, counts, ahead)
                continue
        for _ in range(burst):
            kind, data = pool[i % m]
            try:
                socks[i % n].sendto(data, relay)
                counts.sent[kind] += 1
                counts.sent_bytes[kind] += len(data)
            except OSError:
                counts.send_errors += 1
            i += 1
        drain(selector, counts)
    _settle(selector, counts)
    selector.close()
    return counts


def _settle(selector, counts):
    """Count the replies the relay still sends (its backlog), until quiet."""
    end = time.monotonic() + SETTLE_MAX
    quiet_since = time.monotonic()
    while time.monotonic() < end and time.monotonic() - quiet_since < SETTLE_QUIET:
        if drain(selector, counts, 0.05):
            quiet_since = time.monotonic()


def flooder_main(args):
    raise_fd_limit(args.sources + 64)
    socks = open_sources(args.sources)
    pool = forged_pool(random.Random(10))
    print("flooding from %d sources" % len(socks), flush=True)
    counts = flood(args.relay, args.seconds, socks, pool, args.rate)
    for sock in socks:
        sock.close()
    print(json.dumps(counts.as_dict()), flush=True)
    return 0


# ------------------------------------------------------------- processes

class Lines:
    """A child process whose stdout lines are collected by a thread."""

    def __init__(self, argv, config=None, stdin=True):
        self.proc = subprocess.Popen(argv, cwd=ROOT, env=child_env(config),
                                     stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.lines = []
        self._cond = threading.Condition()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self):
        for raw in self.proc.stdout:
            with self._cond:
                self.lines.append(raw.decode("utf-8", "replace").rstrip("\r\n"))
                self._cond.notify_all()
        with self._cond:
            self.lines.append(None)         # end of output
            self._cond.notify_all()

    def expect(self, pattern, timeout):
        """The first line matching *pattern* (a match), or None by *timeout*."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for line in self.lines:
                    found = line is not None and regex.search(line)
                    if found:
                        return found
                left = deadline - time.monotonic()
                if left <= 0 or (self.lines and self.lines[-1] is None):
                    return None
                self._cond.wait(left)

    def last_line(self):
        with self._cond:
            text = [line for line in self.lines if line]
        return text[-1] if text else "(nothing)"

    def send(self, line):
        try:
            self.proc.stdin.write((line + "\n").encode())
            self.proc.stdin.flush()
        except (OSError, ValueError):
            pass

    def stop(self):
        terminate(self.proc)
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream:
                try:
                    stream.close()
                except OSError:
                    pass


def start_relay():
    """The real relay, its stderr in a file (the log whose growth we measure)."""
    return RelayProcess("flood_bench")


def stop_counters(relay):
    """Stop *relay*; its stop line's counters as a dict."""
    stopped = relay.stop() or ""
    return dict((k, int(v)) for k, v in re.findall(r"(\w+)=(\d+)", stopped))


# ------------------------------------------------------------------ chat

def chat(relay_addr):
    """alice waits, bob connects, bob sends a line alice sees; both quit.
    Returns the timings (None where a step failed)."""
    relay = "%s:%d" % relay_addr
    configs = [tempfile.mkdtemp(prefix="flood_bench-peer-") for _ in range(2)]
    peers = []
    result = {"registered": None, "connected": None, "line": None, "peer_says": None, "why": None}
    try:
        start = time.monotonic()
        alice = Lines([sys.executable, PEER, "--relay", relay, "--name", "alice", "--wait"], configs[0])
        peers.append(alice)
        if not alice.expect(r"^registered as alice", PEER_TIMEOUT):
            result["why"] = "alice: " + alice.last_line()
            return result
        result["registered"] = time.monotonic() - start
        start = time.monotonic()
        bob = Lines([sys.executable, PEER, "--relay", relay, "--name", "bob", "--connect", "alice"],
                    configs[1])
        peers.append(bob)
        got = bob.expect(CONNECTED % "alice", PEER_TIMEOUT)
        if not got or not alice.expect(CONNECTED % "bob", PEER_TIMEOUT):
            result["why"] = "bob: %s / alice: %s" % (bob.last_line(), alice.last_line())
            return result
        result["connected"] = time.monotonic() - start
        result["peer_says"] = float(got.group(1))
        start = time.monotonic()
        bob.send("hello alice, through the flood")
        if alice.expect(r"^\[bob\]> hello alice, through the flood$", PEER_TIMEOUT):
            result["line"] = time.monotonic() - start
        for p in peers:
            p.send("/quit")
            try:
                p.proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
        return result
    finally:
        for p in peers:
            p.stop()
        for c in configs:
            shutil.rmtree(c, ignore_errors=True)


# ------------------------------------------------------------------ run

def run(args):
    relay = start_relay()
    flooder = None
    try:
        addr = relay.wait_listening()
        result = {"relay": "%s:%d" % addr, "baseline": chat(addr),
                  "rss_baseline_mb": relay.peak_rss_mb()}
        flooder = Lines([sys.executable, os.path.abspath(__file__), "--flooder",
                         "--relay", "%s:%d" % addr, "--seconds", str(args.seconds),
                         "--sources", str(args.sources), "--rate", str(args.rate)], stdin=False)
        if not flooder.expect(r"^flooding from \d+ sources", 60):
            raise SystemExit("flood_bench: the flooder did not start (out of addresses or files?)")
        log_before = relay.log_size()
        started = time.monotonic()
        time.sleep(min(2.0, args.seconds / 5))          # the relay under load first
        result["flooded"] = chat(addr)
        result["chat_ended_at"] = time.monotonic() - started
        got = flooder.expect(r"^\{", args.seconds + SETTLE_MAX + 60)
        if not got:
            raise SystemExit("flood_bench: the flooder gave no counts")
        result["flood"] = json.loads(got.string)
        result["flood_seconds"] = time.monotonic() - started
        log_after = relay.log_size()
        result["log"] = (log_after[0] - log_before[0], log_after[1] - log_before[1])
        result["rss_peak_mb"] = relay.peak_rss_mb()
    finally:
        if flooder is not None:
            flooder.stop()
        stop = stop_counters(relay)
    result["relay_stop"] = stop
    return result


def amplification(flood):
    sent = sum(flood["sent_bytes"].values())
    return flood["back_bytes"] / sent if sent else 0.0


def per_kind(flood):
    """{kind: (bytes back in the answers of that kind, bytes sent of it)}; the
    Errors, which answer several kinds, under "errors (any kind)"."""
    back = collections.Counter()
    for variant, size in flood.get("back_by", {}).items():
        back[ANSWERS.get(variant, "errors (any kind)")] += size
    out = {k: (back[k], flood["sent_bytes"].get(k, 0)) for k in KINDS}
    out["errors (any kind)"] = (back["errors (any kind)"], sum(flood["sent_bytes"].values()))
    return out


def print_report(r, args, elapsed):
    f = r["flood"]
    sent, sent_bytes = sum(f["sent"].values()), sum(f["sent_bytes"].values())
    back = sum(f["back"].values())
    print("peerpunch flood benchmark: Python %s on %s, relay %s" % (
        sys.version.split()[0], sys.platform, r["relay"]))
    print("flood: %d s from %d UDP sources bound to 127.B.C.D (%d per /24), one process, %s"
          % (args.seconds, args.sources, PER_BLOCK,
             "%d datagrams/s" % args.rate if args.rate else "full speed"))
    print()
    print("%-26s %12s %12s %12s %14s" % ("two real peers", "register s", "connect s",
                                          "peer says s", "line s"))
    for label, key in (("baseline (no flood)", "baseline"), ("during the flood", "flooded")):
        c = r[key]
        print("%-26s %12s %12s %12s %14s" % (label, _s(c["registered"]), _s(c["connected"]),
                                              _s(c["peer_says"]), _s(c["line"])))
        if c["why"]:
            print("  %s failed; last lines: %s" % (label, c["why"]))
    print("  register = starting alice to 'registered as'; connect = starting bob to both printing"
          " 'connected to' (encrypted, direct)")
    print("  the flooded chat started %.1f s into the flood and was done %.1f s into it (%s)" % (
        min(2.0, args.seconds / 5), r["chat_ended_at"],
        "while it ran" if r["chat_ended_at"] <= args.seconds else "after it ended"))
    print()
    print("flooder sent %d datagrams, %d bytes (%.0f/s); by kind: %s" % (
        sent, sent_bytes, sent / args.seconds,
        ", ".join("%s=%d" % (k, f["sent"].get(k, 0)) for k in KINDS)))
    print("back to the flood's sources: %d datagrams, %d bytes; by kind: %s" % (
        back, f["back_bytes"], ", ".join("%s=%d" % kv for kv in sorted(f["back"].items())) or "none"))
    amp = amplification(f)
    print("amplification (bytes back / bytes sent): %.4f  (<= 1.0: %s)" % (amp, "yes" if amp <= 1.0 else "NO"))
    print("  per kind (its answers' bytes / its bytes): " + ", ".join(
        "%s %.4f" % (k, b / s) if s else "%s -" % k for k, (b, s) in per_kind(f).items()))
    s = r["relay_stop"]
    print("relay stop line, whole run incl. peers: datagrams_in=%s bytes_in=%s datagrams_out=%s"
          " bytes_out=%s (out/in %.4f)" % (
              s.get("datagrams_in"), s.get("bytes_in"), s.get("datagrams_out"), s.get("bytes_out"),
              s.get("bytes_out", 0) / max(1, s.get("bytes_in", 0))))
    print("  the relay read %.1f%% of the flood's datagrams (the kernel dropped the rest at its socket)"
          % (100.0 * s.get("datagrams_in", 0) / max(1, sent)))
    print("relay peak RSS (VmHWM): %s MB after the baseline, %s MB after the flood" % (
        mb(r["rss_baseline_mb"]), mb(r["rss_peak_mb"])))
    print("relay log during the flood: %d bytes, %d lines" % r["log"])
    print()
    print("total %.1f s" % elapsed)


def _s(value):
    return "failed" if value is None else "%.2f" % value


# ------------------------------------------------------------------ main

class _Parser(argparse.ArgumentParser):
    def error(self, message):
        sys.stderr.write("flood_bench.py: %s\n" % message)
        sys.exit(2)


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError("%r: expected a whole number >= 1" % text)
    return value


def _whole_number(text):
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError("%r: expected a whole number >= 0" % text)
    return value


def _endpoint(text):
    host, _, port = text.rpartition(":")
    try:
        return host, int(port)
    except ValueError:
        raise argparse.ArgumentTypeError("%r: expected HOST:PORT" % text)


def parse_args(argv):
    parser = _Parser(prog="flood_bench.py", description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=_positive_int, default=10, help="flood duration (default 10)")
    parser.add_argument("--sources", type=_positive_int, default=4096,
                        help="forged source addresses (default 4096; at most %d)" % (255 * 256 * PER_BLOCK))
    parser.add_argument("--rate", type=_whole_number, default=0,
                        help="flood datagrams per second (default 0: full speed)")
    parser.add_argument("--flooder", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--relay", type=_endpoint, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.sources > 255 * 256 * PER_BLOCK:
        parser.error("--sources: at most %d" % (255 * 256 * PER_BLOCK))
    if args.flooder and args.relay is None:
        parser.error("--flooder needs --relay")
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.flooder:
        return flooder_main(args)
    start = time.monotonic()
    result = run(args)
    print_report(result, args, time.monotonic() - start)
    return 0 if amplification(result["flood"]) <= 1.0 else 1


if __name__ == "__main__":
    sys.exit(main())
