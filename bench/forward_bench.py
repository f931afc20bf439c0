#!/usr/bin/env python3
"""The relay fallback's forwarding throughput: python bench/forward_bench.py [--quick]

Theory of operation
-------------------
Two UDP clients on 127.0.0.1 register with the real relay (started by its
real command line, with quotas raised so they do not limit the measurement),
one connects to the other, and the first then sends RELAYED datagrams of
1200 bytes of payload (what a sealed chat or file datagram looks like) that
the relay forwards to the second. The sender keeps at most WINDOW datagrams
in flight: it waits for the receiver to catch up before sending more, so the
figure is what the relay sustains, not how fast a queue overflows.

The baseline, measured in the same run with the same loop, sends the same
datagrams straight from one client to the other: the ratio is what going
through the relay costs. Each figure is the median of a few runs; every loop
is bounded in time and count, and only 127.0.0.1 is ever sent to.
"""

import argparse
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from peerpunch import protocol as P  # noqa: E402
from peerpunch.forwarder import RELAYED  # noqa: E402
from relayproc import child_env, terminate  # noqa: E402

PAYLOAD = 1200
WINDOW = 256
RCVBUF = 8 << 20


class Relay:
    def __init__(self):
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "peerpunch.relay", "--host", "127.0.0.1", "--port", "0",
             "--relay-rate", "1000000000", "--relay-bytes", "1000000000000"],
            cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self.log,
            env=child_env())
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            self.log.seek(0)
            m = re.search(rb"relay listening on 127\.0\.0\.1:(\d+)", self.log.read())
            if m:
                self.addr = ("127.0.0.1", int(m.group(1)))
                return
            time.sleep(0.02)
        self.stop()
        raise SystemExit("forward_bench: the relay did not start")

    def cpu(self):
        with open("/proc/%d/stat" % self.proc.pid) as f:
            fields = f.read().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self):
        terminate(self.proc)


def client():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
    s.bind(("127.0.0.1", 0))
    s.settimeout(2.0)
    return s


def pair_through(relay):
    """Two clients the relay has introduced to each other."""
    a, b = client(), client()
    tokens = []
    for sock, name in ((a, "fwd-a"), (b, "fwd-b")):
        # the relay stores a registration only with the cookie it sent to our address
        sock.sendto(P.encode(P.Register(name, features=P.OUR_FEATURES)), relay.addr)
        cookie = P.decode(sock.recv(2048)).cookie
        sock.sendto(P.encode(P.Register(name, features=P.OUR_FEATURES, cookie=cookie)), relay.addr)
        ack = P.decode(sock.recv(2048))
        tokens.append(ack.token)
    a.sendto(P.encode(P.Connect("fwd-b", token=tokens[0])), relay.addr)   # proven: ask with it
    assert a.recv(2048).startswith(b'{"PeerInfo"') and b.recv(2048).startswith(b'{"PeerInfo"')
    return a, b


def pump(sender, receiver, dest, datagram, seconds, budget):
    """Send *datagram* to *dest* for ~*seconds*, WINDOW in flight; return
    (payload bytes received per second, datagrams lost)."""
    receiver.setblocking(False)
    sent = received = 0
    start = time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline and sent < budget:
        while sent - received < WINDOW and sent < budget:
            sender.sendto(datagram, dest)
            sent += 1
        waited = time.perf_counter()
        while sent - received >= WINDOW // 2:
            try:
                receiver.recv(2048)
                received += 1
            except BlockingIOError:
                if time.perf_counter() - waited > 0.05:   # the rest were lost
                    break
    elapsed = time.perf_counter() - start
    end = time.perf_counter() + 0.2
    while time.perf_counter() < end and received < sent:
        try:
            receiver.recv(2048)
            received += 1
        except BlockingIOError:
            time.sleep(0.001)
    receiver.setblocking(True)
    return received * PAYLOAD / elapsed, sent - received


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    args = parser.parse_args(argv)
    seconds, runs, budget = (0.3, 1, 20000) if args.quick else (2.0, 3, 500000)
    payload = os.urandom(PAYLOAD)
    relay = Relay()
    try:
        a, b = pair_through(relay)
        b_addr = b.getsockname()
        relayed, direct, lost_relayed, cpu_share = [], [], 0, []
        for _ in range(runs):
            cpu0, t0 = relay.cpu(), time.perf_counter()
            rate, lost = pump(a, b, relay.addr, bytes([RELAYED]) + payload, seconds, budget)
            cpu_share.append((relay.cpu() - cpu0) / (time.perf_counter() - t0))
            relayed.append(rate)
            lost_relayed += lost
            direct.append(pump(a, b, b_addr, payload, seconds, budget)[0])
        a.close()
        b.close()
    finally:
        relay.stop()
    r, d = statistics.median(relayed), statistics.median(direct)
    print("forwarding through python -m peerpunch.relay on 127.0.0.1, %d-byte payloads, "
          "window %d, median of %d run(s) of %.1f s (Python %s)"
          % (PAYLOAD, WINDOW, runs, seconds, sys.version.split()[0]))
    print("%-28s %10s %12s" % ("path", "MB/s", "datagrams/s"))
    print("%-28s %10.1f %12.0f" % ("through the relay", r / 1e6, r / PAYLOAD))
    print("%-28s %10.1f %12.0f" % ("direct (baseline)", d / 1e6, d / PAYLOAD))
    print("relay/direct: %.2fx; relay CPU %.0f %% of one core while forwarding; %d lost"
          % (r / d, 100 * statistics.median(cpu_share), lost_relayed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
