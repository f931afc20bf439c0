#!/usr/bin/env python3
"""Chat delivery latency: python bench/chat_latency_bench.py [--quick] [--lines N] [--lab]

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

``--lab`` (root): the same chat on the NAT lab's path (:mod:`tests.natlab`,
its own code): alice and bob each behind a ``port-restricted`` home router,
the relay started with its defaults (only ``--host``) in the lab's public
namespace, a fresh lab per case. Loss there is the lab's own rule
(``Lab.add_loss``) on both home routers' WAN side, both ways, so a datagram
crosses two lossy hops (10 % each: about 19 % end to end). Only ``stream1``
chats; each loss is also measured on loopback in the same run (the
baseline), and the table gives lab / loopback.
"""

import argparse
import contextlib
import math
import os
import queue
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from relayproc import child_env, terminate    # noqa: E402
from tests.natlab import runner, topology     # noqa: E402  (the lab's own code)

PEER = os.path.join(ROOT, "bin", "peer.py")
NETNS = "ppchatbench-%d" % os.getpid()
WAIT = 20.0                    # for a process to say what we wait for
SETTLE = 10.0                  # after the last line: the stream may take 8 s to give up
LAB_PROFILE = "port-restricted"   # a home router, for both peers

BASELINE = (
    "import sys; sys.path.insert(0, %r)\n"
    "from peerpunch import protocol as P\n"
    "P.SECURE_FEATURES = tuple(f for f in P.SECURE_FEATURES if f != P.FEATURE_STREAM)\n"
    "from peerpunch.peer import main\n"
    "sys.exit(main(sys.argv[1:]))\n" % ROOT)


class Proc:
    """A child whose stdout lines are read with the time they were read."""

    def __init__(self, argv, prefix, config=None):
        self.popen = subprocess.Popen(prefix + argv, cwd=ROOT, env=child_env(config),
                                      stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.lines = queue.Queue()
        self.err = []
        self.seen = []                 # stdout lines expect() read, for a failure's message
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
            self.seen.append(line)
            if regex.search(line):
                return regex.search(line)
        raise SystemExit("chat_latency_bench: no %r within %g s; %s said:\n%s" % (
            pattern, seconds, " ".join(self.popen.args[-4:]) if isinstance(self.popen.args, list)
            else "it", "\n".join(["out| " + l for l in self.seen[-15:]] +
                                  ["err| " + l for _, l in self.err[-15:]])))

    def send(self, line):
        self.popen.stdin.write((line + "\n").encode())
        self.popen.stdin.flush()

    def stop(self):
        terminate(self.popen)


class Loopback:
    """Where the processes run: a namespace of our own (root), else the host."""

    label = "loopback"
    relay_host = "127.0.0.1"
    relay_args = ["--port", "0"]

    def __init__(self, isolated):
        self.isolated = isolated
        self.prefix = ["ip", "netns", "exec", NETNS] if isolated else []
        if isolated:
            subprocess.run(["ip", "netns", "add", NETNS], check=True)
            self.run("ip", "link", "set", "lo", "up")

    @contextlib.contextmanager
    def case(self):
        try:
            yield
        finally:
            self.clear()

    def command(self, role):
        return self.prefix

    def run(self, *argv):
        subprocess.run(self.prefix + list(argv), check=True, stdout=subprocess.DEVNULL)

    def lossy(self, loss, port):
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


class LabPath:
    """The NAT lab's path: a fresh lab per case, the relay with its defaults."""

    label = "lab"
    relay_host = topology.RELAY_IP
    relay_args = []
    lab = None

    @contextlib.contextmanager
    def case(self):
        with topology.Lab(LAB_PROFILE, LAB_PROFILE) as self.lab:
            yield

    def command(self, role):
        ns = self.lab.relay if role == "relay" else self.lab.sites[role].host
        return ns.command()

    def lossy(self, loss, port):
        for site in ("alice", "bob"):
            self.lab.add_loss(site, loss)

    def close(self):
        pass


def can_isolate():
    return os.geteuid() == 0 and shutil.which("ip") and shutil.which("iptables")


def chat_case(place, stream, loss, lines, rate):
    """One case: fresh relay and peers; a Case."""
    homes = [tempfile.mkdtemp(prefix="ppbench-") for _ in range(2)]
    try:
        with place.case():
            procs = []
            try:
                return Case(place.label, stream, loss, lines,
                            *run_chat(place, stream, loss, lines, rate, homes, procs))
            finally:
                for proc in reversed(procs):
                    proc.stop()
    finally:
        for home in homes:
            shutil.rmtree(home, ignore_errors=True)


def run_chat(place, stream, loss, lines, rate, homes, procs):
    """Start relay, bob and alice (into *procs*); (latencies, connect match)."""
    relay = Proc([sys.executable, "-m", "peerpunch.relay", "--host", place.relay_host]
                 + place.relay_args, place.command("relay"))
    procs.append(relay)
    port = relay.expect(r"relay listening on %s:(\d+)" % re.escape(place.relay_host),
                        where=relay.err).group(1)
    peer = [PEER] if stream else ["-c", BASELINE]
    common = ["--relay", "%s:%s" % (place.relay_host, port)]
    bob = Proc([sys.executable] + peer + common + ["--name", "bob", "--wait"],
               place.command("bob"), homes[0])
    procs.append(bob)
    bob_port = int(bob.expect(r"^bound to \S+:(\d+);").group(1))
    bob.expect(r"^registered as bob")
    alice = Proc([sys.executable] + peer + common + ["--name", "alice", "--connect", "bob"],
                 place.command("alice"), homes[1])
    procs.append(alice)
    connected = alice.expect(runner.CONNECTED.format(peer="bob"))
    bob.expect(runner.CONNECTED.format(peer="alice"))
    if loss:
        place.lossy(loss, bob_port)
    return measure(alice, bob, lines, rate), connected


class Case:
    """What one case gave."""

    def __init__(self, place, stream, loss, sent, latency, connected):
        self.place, self.stream, self.loss, self.sent = place, stream, loss, sent
        self.latency = sorted(latency.values())
        self.path = connected.group("path")
        self.encrypted = connected.group("security").startswith("encrypted")

    def name(self, placed):
        kind = "stream1" if self.stream else "DirectMessage"
        return "%s%s, %d %% loss%s" % (self.place + " " if placed else "", kind,
                                       round(self.loss * 100), "" if self.stream else " (baseline)")

    def ms(self, p):
        return percentile(self.latency, p) * 1000


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
    return latency


def percentile(values, p):
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100.0 * len(ordered)) - 1)] if ordered else float("nan")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--lines", type=int, default=None, help="lines per case (default 300)")
    parser.add_argument("--rate", type=float, default=25.0, help="lines per second (default 25)")
    parser.add_argument("--lab", action="store_true",
                        help="on the NAT lab's path (two home routers), against loopback; root")
    args = parser.parse_args(argv)
    count = args.lines or (40 if args.quick else 300)
    if count < 1 or not 0 < args.rate <= 1000:
        parser.exit(2, "chat_latency_bench: --lines must be >= 1 and --rate in (0, 1000]\n")
    if args.lab and topology.missing_requirements():
        parser.exit(2, "chat_latency_bench: --lab: %s\n" % topology.missing_requirements())
    isolated = bool(can_isolate())
    losses = (0.0, 0.10) if isolated else (0.0,)
    loopback = Loopback(isolated)
    if args.lab:
        plan = [(place, True, loss) for loss in losses for place in (loopback, LabPath())]
    else:
        plan = [(loopback, stream, loss) for loss in losses for stream in (True, False)]
    try:
        cases = [chat_case(place, stream, loss, count, args.rate) for place, stream, loss in plan]
    finally:
        loopback.close()
    report(cases, count, args.rate, isolated, args.lab)
    return 0


def report(cases, count, rate, isolated, lab):
    where = "127.0.0.1%s" % (" (a namespace of their own)" if isolated else "")
    if lab:
        where = ("the NAT lab (alice and bob each behind a %s home router, relay with its"
                 " defaults; loss on both routers' WAN) and on %s" % (LAB_PROFILE, where))
    print("chat delivery latency, real relay and peers on %s; %d lines per case at %g/s;"
          " stdin write -> stdout read (Python %s)" % (where, count, rate, sys.version.split()[0]))
    if not isolated:
        print("(the 10 % loss rows need root: iptables statistic loss in a network namespace)")
    print("%-36s %5s %5s %8s %8s %8s %8s  %s" % ("case", "sent", "shown", "p50 ms", "p90 ms",
                                                "p99 ms", "max ms", "path"))
    for c in cases:
        print("%-36s %5d %5d %8.2f %8.2f %8.2f %8.2f  %s, %s"
              % (c.name(lab), c.sent, len(c.latency), c.ms(50), c.ms(90), c.ms(99),
                 c.latency[-1] * 1000 if c.latency else float("nan"), c.path,
                 "encrypted" if c.encrypted else "unencrypted"))
    by = {(c.place, c.stream, c.loss): c for c in cases}
    for loss in sorted({c.loss for c in cases}):
        if lab:
            top, bottom, what = by[("lab", True, loss)], by[("loopback", True, loss)], \
                "lab/loopback"
        else:
            top, bottom, what = by[("loopback", True, loss)], by[("loopback", False, loss)], \
                "stream1/baseline"
        print("ratio %s at %d %% loss: p50 %.2fx, p90 %.2fx, p99 %.2fx"
              % (what, round(loss * 100), top.ms(50) / bottom.ms(50), top.ms(90) / bottom.ms(90),
                 top.ms(99) / bottom.ms(99)))


if __name__ == "__main__":
    sys.exit(main())
