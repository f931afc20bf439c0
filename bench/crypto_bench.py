#!/usr/bin/env python3
"""Crypto speed per backend: python bench/crypto_bench.py [--quick] [--seconds S]

Theory of operation
-------------------
For every crypto backend that loads (peerpunch.crypto.available_backends),
single-threaded, timed with ``time.perf_counter``:

* X25519 ops/s: ``x25519(private, peer_public)`` with fixed random keys
  (the Diffie-Hellman step a Noise handshake does three times per side);
* AEAD MB/s: ``aead_encrypt`` (seal) and ``aead_decrypt`` (open) of a
  1200-byte message (one datagram) and of a 64 KiB one, with 16 bytes of
  associated data; MB are 10^6 bytes of plaintext;
* Noise XX handshakes/s: a whole ``Noise_XX_25519_ChaChaPoly_BLAKE2s``
  handshake, both sides' work (three messages, each side's key generation
  and Diffie-Hellmans), through peerpunch.noise;
* secure channel MB/s: a 1000-byte message sealed by one
  peerpunch.secure.SecureChannel and opened by the other (framing, replay
  window and AEAD: what a chat or file datagram costs end to end, less I/O).

Each figure is the median of a few runs; a run repeats the operation until
a time budget is spent, so the slow backend never stalls the benchmark.
The table has one column per backend and, when both load, the ratio
libcrypto/python. A backend that does not load is listed with its reason.
"""

import argparse
import os
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from peerpunch import crypto, noise, secure  # noqa: E402  (after the path is set)

SIZES = ((1200, "1200 B"), (65536, "64 KiB"))


def rate(operation, budget, repeats):
    """Median operations per second of `operation` over `repeats` runs of ~budget seconds."""
    rates = []
    for _ in range(repeats):
        count, start = 0, time.perf_counter()
        deadline = start + budget
        while True:
            operation()
            count += 1
            now = time.perf_counter()
            if now >= deadline:
                break
        rates.append(count / (now - start))
    return statistics.median(rates)


def measure(backend, budget, repeats):
    """[(metric name, value)] for one backend."""
    private, peer = crypto.generate_private_key(), crypto.generate_private_key()
    peer_public = backend.x25519_public(peer)
    key, nonce, ad = os.urandom(32), os.urandom(12), os.urandom(16)
    rows = [("X25519 ops/s", rate(lambda: backend.x25519(private, peer_public), budget, repeats))]
    for size, label in SIZES:
        plaintext = os.urandom(size)
        sealed = backend.aead_encrypt(key, nonce, plaintext, ad)
        seal = rate(lambda: backend.aead_encrypt(key, nonce, plaintext, ad), budget, repeats)
        open_ = rate(lambda: backend.aead_decrypt(key, nonce, sealed, ad), budget, repeats)
        rows.append(("seal %s MB/s" % label, seal * size / 1e6))
        rows.append(("open %s MB/s" % label, open_ * size / 1e6))
    rows.append(("Noise XX handshakes/s", rate(lambda: handshake(backend), budget, repeats)))
    sender, receiver = channel_pair(backend)
    message = os.urandom(1000)
    per_s = rate(lambda: receiver.receive(sender.seal(message), 0.0), budget, repeats)
    rows.append(("secure channel 1000 B MB/s", per_s * 1000 / 1e6))
    return rows


def handshake(backend):
    """One full XX handshake between fresh parties."""
    a = noise.HandshakeState("XX", initiator=True, static_private=crypto.generate_private_key(),
                             backend=backend)
    b = noise.HandshakeState("XX", initiator=False, static_private=crypto.generate_private_key(),
                             backend=backend)
    b.read_message(a.write_message())
    a.read_message(b.write_message())
    b.read_message(a.write_message())


def channel_pair(backend):
    """Two SecureChannels with the handshake done, carried by hand."""
    a = secure.SecureChannel(initiator=True, static_private=crypto.generate_private_key(),
                             backend=backend)
    b = secure.SecureChannel(initiator=False, static_private=crypto.generate_private_key(),
                             backend=backend)
    b.start(0.0)
    reply = b.receive(a.start(0.0)[0], 0.0)[0][0]
    confirm = b.receive(a.receive(reply, 0.0)[0][0], 0.0)[0][0]
    a.receive(confirm, 0.0)
    assert a.ready and b.ready
    return a, b


def table(results):
    """The report: one column per backend, plus libcrypto/python when both ran."""
    names = list(results)
    both = "libcrypto" in results and "python" in results
    header = ["metric"] + names + (["ratio libcrypto/python"] if both else [])
    lines = [header]
    for i, (metric, _) in enumerate(results[names[0]]):
        row = [metric] + ["{:,.1f}".format(results[name][i][1]) for name in names]
        if both:
            row.append("{:,.1f}x".format(results["libcrypto"][i][1] / results["python"][i][1]))
        lines.append(row)
    widths = [max(len(line[c]) for line in lines) for c in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) if c == 0 else cell.rjust(w)
                               for c, (cell, w) in enumerate(zip(line, widths)))
                     for line in lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="one short run per figure (a smoke test)")
    parser.add_argument("--seconds", type=float,
                        help="time budget per run (default 0.5, with --quick 0.05)")
    args = parser.parse_args(argv)
    budget = args.seconds or (0.05 if args.quick else 0.5)
    repeats = 1 if args.quick else 3

    results = {}
    for name, backend in crypto.available_backends().items():
        if isinstance(backend, crypto.Backend):
            where = " at %s" % backend.path if hasattr(backend, "path") else ""
            print("%-9s  %s%s" % (name, backend.detail, where))
            results[name] = measure(backend, budget, repeats)
        else:
            print("%-9s  unavailable: %s" % (name, backend))
    print("%-9s  Python %s, %d run(s) of %.2f s per figure, median" % ("timing",
        sys.version.split()[0], repeats, budget))
    print()
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
