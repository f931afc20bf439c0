#!/usr/bin/env python3
"""The peer cores' CPU per file datagram: python bench/core_bench.py [--quick] [--size MB]

Theory of operation
-------------------
A file transfer's speed on a fast path is the Python work each peer's
network thread does per datagram. This bench measures that work without
sockets, kernels or a second process in the way: two real
:class:`peerpunch.session.PeerSession` cores (alice sends, bob receives
with ``--auto-accept``), the real relay core, encrypted with the libcrypto
backend, joined by the tests' in-memory network (``tests/simnet.py``,
batched: each peer gets the datagrams in flight in ``datagrams_received``
calls of at most ``--batch`` datagrams, by default what the peer's shell
hands its core at most from one readiness event, ``peershell.BATCH``; 44 is
one 64-KB GRO read) and a fake clock. alice offers one random file of
``--size`` MB with ``/send``; the run ends when bob has written it, and
the copy is compared byte for byte.

Each side's cost is the thread CPU time (``time.thread_time``) spent inside
its core's calls (datagrams in, timers, typed lines), divided by the file's
datagrams (its bytes over 1,440, a full datagram's file data). Not counted:
the shell (system calls, GSO/GRO), the simulated network, hashing the file
before the offer, and, where bob writes through a disk writer's thread,
his file writes and their SHA-256 (:mod:`peerpunch.diskwriter`). ``--writes
auto`` (the default) does as the peer does on this machine
(``diskwriter.writer_for``: a thread only with 3 or more CPUs); ``inline``
and ``thread`` choose.

Baseline, measured in the same run: the AEAD alone, the part no Python
change removes: one datagram's plaintext sealed (alice's side) or opened
(bob's side) with the key bound (:mod:`peerpunch.crypto.keyed`), in the
layout of associated data two of our peers agree on (``record``: both
offer ``seal2`` in the handshake), as the secure channel does. The ratio core/AEAD says how
much Python work there is around the cipher. Each figure is the best of
``--rounds`` runs (least disturbed by other jobs on a shared machine); the
bench asserts nothing about speed.

``--profile alice|bob`` also prints a cProfile (thread CPU time) of that
side's calls in the last round.
"""

import argparse
import cProfile
import os
import pstats
import shutil
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from peerpunch import chatfiles as CF  # noqa: E402  (after the path is set)
from peerpunch import crypto  # noqa: E402
from peerpunch.crypto.keyed import RECORD_AD  # noqa: E402
from peerpunch.effects import Send  # noqa: E402
from peerpunch.filecommands import collected  # noqa: E402
from peerpunch.diskwriter import Writer, writer_for  # noqa: E402
from peerpunch.filedisk import Disk  # noqa: E402
from peerpunch.peershell import BATCH  # noqa: E402
from tests.simnet import SimNet  # noqa: E402
from tests.test_multichat import ALICE, BOB  # noqa: E402
from tests.test_secure_session import secure_options  # noqa: E402

FILE_BYTES = 1440              # file data in one full datagram (1,472-byte payload)
SIDES = ("alice", "bob")
CALLS = ("datagrams_received", "datagram_received", "tick", "handle_line")
LIMIT = 600.0                  # fake seconds a transfer may take


class Meter:
    """Thread CPU time spent in each side's core calls, and its Sends."""

    def __init__(self, profile_side=None, batch=BATCH):
        self.batch = batch
        self.cpu = dict.fromkeys(SIDES, 0.0)
        self.sends = dict.fromkeys(SIDES, 0)
        self.profile_side = profile_side
        self.profile = cProfile.Profile(time.thread_time)

    def wrap(self, side, session):
        for name in CALLS:
            setattr(session, name, self._timed(side, getattr(session, name)))
        timed = session.datagrams_received

        def in_reads(batch, *args):             # as the shell's reads hand them over
            out = []
            for i in range(0, len(batch), self.batch):
                out += timed(batch[i:i + self.batch], *args)
            return out
        session.datagrams_received = in_reads

    def _timed(self, side, call):
        def timed(*args, **kwargs):
            profiled = side == self.profile_side
            if profiled:
                self.profile.enable()
            start = time.thread_time()
            effects = call(*args, **kwargs)
            self.cpu[side] += time.thread_time() - start
            if profiled:
                self.profile.disable()
            effects = list(effects)
            self.sends[side] += sum(1 for e in effects if type(e) is Send)
            return effects
        return timed


def transfer(source, work, meter, writer=None):
    """One transfer of *source* from alice to bob (his writes through
    *writer*, None: in his core's calls); raises if it fails."""
    net = SimNet(batched=True)
    down = os.path.join(work, "down")
    shutil.rmtree(down, ignore_errors=True)
    os.makedirs(down)
    bob = net.add_peer("bob", BOB, **secure_options(disk=Disk(None, auto_accept=down,
                                                                    writer=writer)))
    net.run(1)
    alice = net.add_peer("alice", ALICE, target="bob", **secure_options(disk=Disk(None)))
    net.run(3)
    meter.wrap("alice", alice)
    meter.wrap("bob", bob)
    start = net.now
    net.line(ALICE, "/send %s" % source)
    for effect in net.shown(ALICE, CF.Collect):   # the shell's part: hash, hand back
        net.events[ALICE].remove(effect)
        net._emit(ALICE, collected(alice, effect.partner, alice.disk.collect(effect.paths),
                                   net.now))
    written = os.path.join(down, os.path.basename(source))
    while not os.path.exists(written):
        if net.now - start > LIMIT:
            raise RuntimeError("the file did not arrive within %g fake seconds" % LIMIT)
        net.run(0.05)
    with open(source, "rb") as a, open(written, "rb") as b:
        if a.read() != b.read():
            raise RuntimeError("the received file differs")


def aead_floor(count):
    """Microseconds to seal and to open one full datagram's plaintext, key bound."""
    backend = crypto.get_backend("libcrypto")
    keyed = backend.keyed(os.urandom(32), RECORD_AD)
    plaintext, header = os.urandom(FILE_BYTES + 25), b"\xe4" + bytes(8)
    start = time.thread_time()
    sealed = [keyed.seal_counted((i,), (plaintext,), (header,))[0] for i in range(count)]
    seal = time.thread_time() - start
    start = time.thread_time()
    for i, frame in enumerate(sealed):
        keyed.open_counted(i, frame, len(header))
    return seal * 1e6 / count, (time.thread_time() - start) * 1e6 / count


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run (2 MB, 1 round)")
    parser.add_argument("--size", type=int, default=30, help="file size in MB (default 30)")
    parser.add_argument("--rounds", type=int, default=3, help="runs; the best counts (default 3)")
    parser.add_argument("--batch", type=int, default=BATCH,
                        help="datagrams handed over per call at most (default %d, the peer's"
                             " shell's; 44: one GRO read)" % BATCH)
    parser.add_argument("--profile", choices=SIDES, help="print a cProfile of that side")
    parser.add_argument("--writes", choices=("auto", "inline", "thread"), default="auto",
                        help="bob's file writes and hashing: in his core's calls (inline), on a"
                             " disk writer thread, or as the peer on this machine (auto)")
    args = parser.parse_args(argv)
    if args.size < 1 or args.rounds < 1 or args.batch < 1:
        parser.error("--size, --rounds and --batch must be at least 1")
    if "libcrypto" not in crypto.available_backends():
        parser.exit(2, "core_bench: needs libcrypto (the libcrypto backend did not load)\n")
    size, rounds = (2, 1) if args.quick else (args.size, args.rounds)
    datagrams = (size << 20) / FILE_BYTES
    best, meter = dict.fromkeys(SIDES, float("inf")), None
    work = tempfile.mkdtemp(prefix="core-bench-")
    try:
        source = os.path.join(work, "file.bin")
        with open(source, "wb") as f:
            f.write(os.urandom(size << 20))
        for i in range(rounds):
            meter = Meter(args.profile if i == rounds - 1 else None, args.batch)
            writer = {"inline": None, "thread": Writer()}.get(args.writes,
                                                             writer_for(os.cpu_count()))
            transfer(source, work, meter, writer)
            for side in SIDES:
                best[side] = min(best[side], meter.cpu[side] * 1e6 / datagrams)
        floors = [min(pair) for pair in zip(*(aead_floor(int(min(datagrams, 20000)))
                                              for _ in range(rounds)))]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("Peer cores' thread CPU per file datagram, %d MB file, reads of %d at most, best of %d,"
          " writes %s, Python %s; %s UTC"
          % (size, args.batch, rounds, "on a writer thread" if writer else "inline",
             sys.version.split()[0], time.strftime("%Y-%m-%d %H:%M", time.gmtime())))
    print("%-6s %-30s %10s %10s %8s" % ("side", "work", "us/dgram", "AEAD us", "ratio"))
    for side, floor, what in zip(SIDES, floors, ("sends (seal)", "receives (open)")):
        print("%-6s %-30s %10.2f %10.2f %7.2fx" % (side, what + ", whole core", best[side], floor,
                                                   best[side] / floor))
    print("datagrams sent: alice %d, bob %d (last round)" % (meter.sends["alice"],
                                                             meter.sends["bob"]))
    if args.profile:
        pstats.Stats(meter.profile).sort_stats("tottime").print_stats(30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
