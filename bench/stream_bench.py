#!/usr/bin/env python3
"""The reliable stream's cost: python bench/stream_bench.py [--quick]

Theory of operation
-------------------
Two :class:`peerpunch.stream.Stream` objects, one thread, joined by an
in-memory link: every packet one produces reaches the other after a fixed
one-way delay unless the link's seeded random loss drops it (both ways).
The link's clock is virtual -- it jumps to the next arrival or the next
stream deadline -- so the figures are the Python cost of the protocol, not
of waiting. The loop is an event loop of the shape a shell has: a stream
is asked for packets after a datagram reached it, after its application
sent, and when its deadline passed. The sender keeps a window of messages
outstanding (sending more as Delivered / NotDelivered come back), the
receiver drains its Received events.

Per case: messages/s and MB/s of message bytes delivered, per wall-clock
second of the whole loop (both ends' work: sending, acknowledging,
reassembling, plus the loop itself); microseconds per data packet; what the
simulated path carried per simulated second (NewReno's own rate on that
path, were the CPU free); and packets lost and given up.

The baseline, measured in the same run on the same messages: the bare
framing any datagram protocol needs -- each message cut into the stream's
chunk size, a header packed and joined to each piece, then each packet's
header unpacked and its piece written into a reassembly buffer -- without
acknowledgments, timers, windows or loss. The ratio stream/baseline is the
price of reliability in Python. Each figure is the median of a few runs;
nothing here asserts a speed.
"""

import argparse
import collections
import os
import random
import statistics
import struct
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from peerpunch.stream import Delivered, NotDelivered, Received, Stream  # noqa: E402

# name, message bytes, messages (full run, --quick), window of messages, loss,
# one-way delay, Stream options
CASES = (
    ("chat 100 B, 0 % loss", 100, (40000, 3000), 64, 0.0, 0.001, {}),
    ("chat 100 B, 10 % loss", 100, (20000, 2000), 64, 0.10, 0.001, {}),
    ("64 KiB, 0 % loss", 65536, (600, 60), 16, 0.0, 0.001, {}),
    ("64 KiB, 10 % loss", 65536, (200, 20), 16, 0.10, 0.001, {}),
    ("64 KiB, 0 %, 20 ms delay", 65536, (600, 60), 64, 0.0, 0.020, {}),
    ("64 KiB, 0 %, ack every 8", 65536, (600, 60), 16, 0.0, 0.001, {"ack_every": 8}),
)
SEED = 20261130


class Link:
    """Two streams, a virtual clock and the datagrams on their way."""

    def __init__(self, loss, delay, seed, options):
        self.a, self.b = Stream(**options), Stream(**options)
        self.loss, self.delay = loss, delay
        self.random = random.Random(seed)
        self.now = 0.0
        self.air = collections.deque()   # (arrival, stream, payload): one delay, so FIFO
        self.sent = 0

    def pump(self, stream):
        other = self.b if stream is self.a else self.a
        for payload in stream.packets(self.now):
            self.sent += 1
            if self.loss and self.random.random() < self.loss:
                continue
            self.air.append((self.now + self.delay, other, payload))

    def step(self):
        """Deliver what is due, or move the clock to the next event."""
        air = self.air
        if air and air[0][0] <= self.now:
            _, stream, payload = air.popleft()
            stream.datagram_received(payload, self.now)
            self.pump(stream)
            return
        due = [(stream.next_deadline(), stream) for stream in (self.a, self.b)]
        times = [t for t, _ in due if t is not None] + ([air[0][0]] if air else [])
        if not times:
            raise SystemExit("stream_bench: the link went idle with work left")
        self.now = max(self.now, min(times))
        for deadline, stream in due:
            if deadline is not None and deadline <= self.now:
                self.pump(stream)


def run_case(size, count, window, loss, delay, options, seed):
    link = Link(loss, delay, seed, options)
    payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
    sent = resolved = received = given_up = 0
    start = time.perf_counter()
    while resolved < count:
        if sent < count and link.a.outstanding() < window:
            while sent < count and link.a.outstanding() < window:
                link.a.send(payload, link.now)
                sent += 1
            link.pump(link.a)
        for event in link.a.events():
            if isinstance(event, (Delivered, NotDelivered)):
                resolved += len(event.message_ids)
                if isinstance(event, NotDelivered):
                    given_up += len(event.message_ids)
        for event in link.b.events():
            received += isinstance(event, Received)
        if resolved < count:
            link.step()
    elapsed = time.perf_counter() - start
    stats = link.a.stats()
    return {"elapsed": elapsed, "messages": received, "bytes": received * size,
            "packets": stats["packets"], "lost": stats.get("lost", 0),
            "given_up": given_up, "sim": link.now}


def baseline(size, count, chunk):
    """Seconds to frame and unframe *count* messages of *size* bytes."""
    header = struct.Struct(">BQBIIIH")
    payload = memoryview(bytes(range(256)) * (size // 256) + bytes(size % 256))
    start = time.perf_counter()
    pn = 0
    for message_id in range(1, count + 1):
        packets = []
        for offset in range(0, size, chunk):
            piece = payload[offset:offset + chunk]
            packets.append(b"".join((header.pack(0xC1, pn, 1, message_id, offset, size,
                                                 len(piece)), piece)))
            pn += 1
        buf = bytearray(size)
        for packet in packets:
            _, _, _, _, offset, total, length = header.unpack_from(packet)
            buf[offset:offset + length] = memoryview(packet)[header.size:]
        bytes(buf)
    return time.perf_counter() - start


def measure(case, quick, repeats):
    name, size, counts, window, loss, delay, options = case
    count = counts[1 if quick else 0]
    runs = [run_case(size, count, window, loss, delay, options, SEED + i) for i in range(repeats)]
    elapsed = statistics.median(r["elapsed"] for r in runs)
    chunk = Stream().chunk
    base = statistics.median(baseline(size, count, chunk) for _ in range(repeats))
    r = runs[0]
    return {
        "case": name,
        "msg/s": r["messages"] / elapsed,
        "MB/s": r["bytes"] / elapsed / 1e6,
        "us/pkt": elapsed / r["packets"] * 1e6,
        "path MB/s": r["bytes"] / r["sim"] / 1e6 if r["sim"] else float("inf"),
        "lost": r["lost"],
        "given up": r["given_up"],
        "base MB/s": size * count / base / 1e6,
        "ratio": (r["bytes"] / elapsed) / (size * count / base),
    }


COLUMNS = (("case", "%s"), ("msg/s", "{:,.0f}"), ("MB/s", "{:,.2f}"), ("us/pkt", "{:,.1f}"),
           ("path MB/s", "{:,.1f}"), ("lost", "{:,}"), ("given up", "{:,}"),
           ("base MB/s", "{:,.1f}"), ("ratio", "{:.3f}"))


def table(rows):
    lines = [[name for name, _ in COLUMNS]]
    for row in rows:
        lines.append([row[name] if fmt == "%s" else fmt.format(row[name]) for name, fmt in COLUMNS])
    widths = [max(len(line[c]) for line in lines) for c in range(len(COLUMNS))]
    return "\n".join("  ".join(cell.ljust(w) if c == 0 else cell.rjust(w)
                               for c, (cell, w) in enumerate(zip(line, widths)))
                     for line in lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    args = parser.parse_args(argv)
    repeats = 1 if args.quick else 3
    rows = [measure(case, args.quick, repeats) for case in CASES]
    print("two peerpunch.stream.Stream objects over an in-memory link (virtual clock), "
          "one thread, median of %d run(s), Python %s" % (repeats, sys.version.split()[0]))
    print("MB/s and msg/s: delivered message bytes per wall-clock second, both ends' work; "
          "us/pkt: per data packet sent;")
    print("path MB/s: per simulated second on that path; base: bare framing of the same "
          "messages (chunk %d B); ratio = stream/base" % Stream().chunk)
    print()
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
