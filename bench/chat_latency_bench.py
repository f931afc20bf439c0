#!/usr/bin/env python3
"""Chat delivery latency: python bench/chat_latency_bench.py [--quick] [--lines N]

Theory of operation
-------------------
The real relay and two real peers (``python -m peerpunch.relay``,
``bin/peer.py``: their real command lines) on 127.0.0.1, encrypted, bob
waiting and alice connecting. Once both print their connect line, alice is
fed numbered lines on stdin at a steady pace; each line's latency is from
the moment it is written to alice's stdin to the moment bob's stdout line
carrying it is read here -- everything a person would wait for: the stdin
thread, the network thread, the stream or the plain datagram, the
receiver's printing thread and the pipes.

Loss: as root, every process runs in a network namespace of its own (its
own loopback), and once the chat is up iptables' ``statistic`` match drops
that share of UDP datagrams to and from bob's socket (both ways, at the
kernel; no netem on these machines). Without root only the 0 % rows run.

Two kinds of chat in the same run: ``stream1`` (our peers today: each line
one message on the reliable stream, retransmitted until acknowledged) and
the baseline, sealed DirectMessage datagrams as before the stream -- the
same peers with ``stream1`` left out of the features they announce (this
script patches the feature list before starting the peer's main). The
baseline loses what the network loses; its percentiles are over the lines
that arrived. Percentiles are nearest-rank over every line of the case.
"""

import argparse
import math
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PEER = os.path.join(ROOT, "bin", "peer.py")
NETNS = "ppchatbench-%d" % os.getpid()
WAIT = 20.0                    # for a process to say what we wait for
SETTLE = 10.0                  # after the last line: the stream may take 8 s to give up

BASELINE = (
    "import sys; sys.path.insert(0, %r)\n"
    "from peerpunch import protocol as P\n"
    "P.SECURE_FEATURES = tuple(f for f in P.SECURE_FEATURES if f != P.FEATURE_STREAM)\n"
    "from peerpunch.peer import main\n"
    "sys.exit(main(sys.argv[1:]))\n" % ROOT)


class Proc:
    """A child whose stdout lines are read with the time they were read."""

    def __init__(self, argv, prefix, config=None):
        env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=ROOT)
        if config:
            env["XDG_CONFIG_HOME"] = config
        self.popen = subprocess.Popen(prefix + argv, cwd=ROOT, env=env, stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.lines = queue.Queue()
        self.err = []
        threading.Thread(target=self._read, args=(self.popen.stdout, self.lines.put),
                         daemon=True).start()
        threading.Thread(target=self._read, args=(self.popen.stderr, self.err.append),
                         daemon=True).start()

    @staticmethod
    def _read(stream, put):
        for raw in stream:
            put((time.monotonic(), raw.decode("utf-8", "replace").rstrip("\n")))

    def expect(self, pattern, seconds=WAIT, where=None):
        """The first line of stdout (or of *where*, a list) matching *pattern*."""
        deadline = time.monotonic() + seconds
        regex = re.compile(pattern)
        while time.monotonic() < deadline:
            if where is not None:
                for _, line in list(where):
                    if regex.search(line):
                        return regex.search(line)
                time.sleep(0.02)
                continue
            try:
                _, line = self.lines.get(timeout=0.1)
            except queue.Empty:
                continue
            if regex.search(line):
                return regex.search(line)
        raise SystemExit("chat_latency_bench: no %r within %g s" % (pattern, seconds))

    def send(self, line):
        self.popen.stdin.write((line + "\n").encode())
        self.popen.stdin.flush()

    def stop(self):
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(5)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


class Place:
    """Where the processes run: a namespace of our own (root), else the host."""

    def __init__(self, isolated):
        self.isolated = isolated
        self.prefix = ["ip", "netns", "exec", NETNS] if isolated else []
        if isolated:
            subprocess.run(["ip", "netns", "add", NETNS], check=True)
            self.run("ip", "link", "set", "lo", "up")

    def run(self, *argv):
        subprocess.run(self.prefix + list(argv), check=True, stdout=subprocess.DEVNULL)

    def lossy(self, port, loss):
        """Drop *loss* of UDP to and from *port*, both ways."""
        drop = ["-m", "statistic", "--mode", "random", "--probability", "%.4f" % loss, "-j", "DROP"]
        for chain, side in (("INPUT", "--dport"), ("OUTPUT", "--sport")):
            self.run("iptables", "-w", "-A", chain, "-p", "udp", side, str(port), *drop)

    def clear(self):
        if self.isolated:
            self.run("iptables", "-w", "-F")

    def close(self):
        if self.isolated:
            subprocess.run(["ip", "netns", "del", NETNS], check=False)


def can_isolate():
    return os.geteuid() == 0 and shutil.which("ip") and shutil.which("iptables")


def chat_case(place, stream, loss, lines, rate):
    """One case: fresh relay and peers; {line: latency s} and lines sent."""
    homes = [tempfile.mkdtemp(prefix="ppbench-") for _ in range(2)]
    procs = []
    try:
        relay = Proc([sys.executable, "-m", "peerpunch.relay", "--host", "127.0.0.1", "--port",
                      "0"], place.prefix)
        procs.append(relay)
        port = relay.expect(r"relay listening on 127\.0\.0\.1:(\d+)", where=relay.err).group(1)
        peer = [PEER] if stream else ["-c", BASELINE]
        common = ["--relay", "127.0.0.1:" + port]
        bob = Proc([sys.executable] + peer + common + ["--name", "bob", "--wait"], place.prefix,
                   homes[0])
        procs.append(bob)
        bob_port = int(bob.expect(r"^bound to \S+:(\d+);").group(1))
        bob.expect(r"^registered as bob")
        alice = Proc([sys.executable] + peer + common + ["--name", "alice", "--connect", "bob"],
                     place.prefix, homes[1])
        procs.append(alice)
        alice.expect(r"^connected to bob .* encrypted")
        bob.expect(r"^connected to alice .* encrypted")
        if loss:
            place.lossy(bob_port, loss)
        return measure(alice, bob, lines, rate)
    finally:
        for proc in reversed(procs):
            proc.stop()
        place.clear()
        for home in homes:
            shutil.rmtree(home, ignore_errors=True)


def measure(alice, bob, count, rate):
    sent = {}
    for i in range(count):
        due = time.monotonic()
        tag = "L%05d" % i
        sent[tag] = time.monotonic()
        alice.send("%s the quick brown fox jumps over the lazy dog" % tag)
        time.sleep(max(0.0, due + 1.0 / rate - time.monotonic()))
    latency = {}
    deadline = time.monotonic() + SETTLE
    line = re.compile(r"^\[alice\]> (L\d{5}) ")
    while len(latency) < count and time.monotonic() < deadline:
        try:
            when, text = bob.lines.get(timeout=0.1)
        except queue.Empty:
            continue
        m = line.match(text)
        if m and m.group(1) in sent and m.group(1) not in latency:
            latency[m.group(1)] = when - sent[m.group(1)]
    return latency, count


def percentile(values, p):
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100.0 * len(ordered)) - 1)] if ordered else float("nan")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--lines", type=int, default=None, help="lines per case (default 300)")
    parser.add_argument("--rate", type=float, default=25.0, help="lines per second (default 25)")
    args = parser.parse_args(argv)
    count = args.lines or (40 if args.quick else 300)
    if count < 1 or not 0 < args.rate <= 1000:
        parser.exit(2, "chat_latency_bench: --lines must be >= 1 and --rate in (0, 1000]\n")
    isolated = bool(can_isolate())
    losses = (0.0, 0.10) if isolated else (0.0,)
    place = Place(isolated)
    rows = []
    try:
        for loss in losses:
            for stream in (True, False):
                latency, sent = chat_case(place, stream, loss, count, args.rate)
                rows.append((stream, loss, sent, latency))
    finally:
        place.close()
    report(rows, count, args.rate, isolated)
    return 0


def report(rows, count, rate, isolated):
    print("chat delivery latency, real relay and peers on 127.0.0.1%s, encrypted; %d lines per"
          " case at %g/s; stdin write -> stdout read (Python %s)"
          % (" (a namespace of their own)" if isolated else "", count, rate,
             sys.version.split()[0]))
    if not isolated:
        print("(the 10 % loss rows need root: iptables statistic loss in a network namespace)")
    print("%-36s %6s %6s %8s %8s %8s" % ("case", "sent", "shown", "p50 ms", "p99 ms", "max ms"))
    figures = {}
    for stream, loss, sent, latency in rows:
        values = list(latency.values())
        name = "%s, %d %% loss%s" % ("stream1" if stream else "DirectMessage", round(loss * 100),
                                     "" if stream else " (baseline)")
        p50, p99 = percentile(values, 50) * 1000, percentile(values, 99) * 1000
        figures[(stream, loss)] = (p50, p99)
        print("%-36s %6d %6d %8.2f %8.2f %8.2f" % (name, sent, len(values), p50, p99,
                                                  max(values) * 1000 if values else float("nan")))
    for loss in sorted({loss for _, loss, _, _ in rows}):
        s, b = figures[(True, loss)], figures[(False, loss)]
        print("ratio stream1/baseline at %d %% loss: p50 %.2fx, p99 %.2fx"
              % (round(loss * 100), s[0] / b[0], s[1] / b[1]))


if __name__ == "__main__":
    sys.exit(main())
