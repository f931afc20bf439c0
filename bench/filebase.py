#!/usr/bin/env python3
"""The baselines of file_bench.py, one role per process:

    python bench/filebase.py udp-recv PORT PEER_IP PEER_PORT [gro]
    python bench/filebase.py udp-send PORT PEER_IP PEER_PORT BYTES DATAGRAM [gso]
    python bench/filebase.py tcp-recv PORT OUT
    python bench/filebase.py tcp-send IP PORT FILE

Theory of operation
-------------------
``udp-*``: the encrypted-UDP ceiling of a path in Python. Both ends bind a
fixed port and punch toward each other's public address (a home router
keeps the port) until the other's punch arrives; then the sender seals
DATAGRAM-byte datagrams with the project's AEAD backend (ChaCha20-Poly1305,
an 8-byte counter header as associated data and nonce, one ``sendto``
each) within a window of WINDOW datagrams; the receiver opens each and
acknowledges every ACK_EVERY with the count it holds. No repetition: a
datagram lost is lost (a stalled window is released after STALL). The
receiver prints ``udp BYTES SECONDS`` (plaintext opened, first to last).

With ``gso`` and ``gro``, the same with Linux UDP segmentation offload
(:mod:`peerpunch.batchio`) and the AEAD as fast as our peers have it: the
key bound once, the associated data in the record layout two of our peers
agree on (``backend.keyed(KEY, "record")``, two libcrypto calls a
datagram); the sender seals up to GSO_BATCH datagrams in one call
(``seal_counted``, as the secure channel does) and pushes them in one
``sendmsg`` (UDP_SEGMENT), the receiver asks for UDP_GRO, cuts what each
``recvmsg`` hands over at its segment size and opens each datagram in place
(``open_counted``). Where the system
refuses either, that side goes on one datagram per call, and the line says
so (``udp BYTES SECONDS gso refused``, ``... gro refused``), sealing and
opening as it was asked to (the two ends agree on the layout whatever the
system refuses).

``tcp-*``: a plain TCP copy: ``sendfile`` on one side, ``recv_into`` and
``write`` on the other; the receiver prints ``tcp BYTES SECONDS`` from
accepting the connection to the file written and closed.
"""

import os
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from peerpunch import batchio, crypto     # noqa: E402
from peerpunch.crypto.keyed import RECORD_AD  # noqa: E402

KEY = bytes(range(32))
WINDOW = 1024
ACK_EVERY = 64
STALL = 0.05
PUNCH, DATA, ACK, END = b"P", b"D", b"A", b"E"
HEADER = struct.Struct("!cQ")     # kind, counter
RCVBUF = 8 << 20
GSO_BATCH = 44                    # datagrams per GSO send (about 64 KB of 1,472-byte ones)


def _udp(port):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
    sock.bind(("0.0.0.0", port))
    return sock


def _punch(sock, peer):
    """Punch toward *peer* until the peer's punch (or data) arrives."""
    sock.settimeout(0.05)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        sock.sendto(PUNCH, peer)
        try:
            data, _ = sock.recvfrom(2048)
        except socket.timeout:
            continue
        if data[:1] in (PUNCH, DATA):
            for _ in range(3):
                sock.sendto(PUNCH, peer)
            return data
    raise SystemExit("filebase: no punch from %s:%d" % peer)


def _nonce(counter):
    return bytes(4) + counter.to_bytes(8, "little")


def udp_recv(port, peer, gro=False):
    sock = _udp(port)
    backend = crypto.get_backend()
    keyed = backend.keyed(KEY, RECORD_AD) if gro else None    # as asked: the sender's layout
    refused = gro and not batchio.enable_gro(sock)
    gro = gro and not refused
    first = _punch(sock, peer)
    sock.settimeout(5.0)
    opened, count, start, last = 0, 0, None, None
    datagrams = [first]
    while True:
        for data in datagrams:
            kind = data[:1]
            if kind == DATA:
                header = data[:HEADER.size]
                counter = HEADER.unpack(header)[1]
                if keyed is not None:
                    opened += len(keyed.open_counted(counter, data, HEADER.size))
                else:
                    opened += len(backend.aead_decrypt(KEY, _nonce(counter), data[HEADER.size:],
                                                       header))
                count += 1
                last = time.monotonic()
                start = start or last
                if count % ACK_EVERY == 0:
                    sock.sendto(HEADER.pack(ACK, count), peer)
            elif kind == END:
                datagrams = None
                break
        if datagrams is None:
            break
        try:
            datagrams = batchio.receive(sock, 65536)[0] if gro else [sock.recv(65536)]
        except socket.timeout:
            break
    print("udp %d %.6f%s" % (opened, (last - start) if start else 0.0,
                             " gro refused" if refused else ""))


def udp_send(port, peer, total, datagram, gso=False):
    sock = _udp(port)
    _punch(sock, peer)
    sock.setblocking(False)
    backend = crypto.get_backend()
    keyed = backend.keyed(KEY, RECORD_AD) if gso else None
    plain = os.urandom(datagram - HEADER.size - 16)
    sent, acked, stalled = 0, 0, time.monotonic()
    target = -(-total // len(plain))
    refused = False
    while sent < target:
        while sent - acked < WINDOW and sent < target:
            if gso:
                count = min(WINDOW - (sent - acked), target - sent, GSO_BATCH, 65000 // datagram)
                counters = range(sent, sent + count)
                batch = keyed.seal_counted(counters, [plain] * count,
                                           [HEADER.pack(DATA, c) for c in counters])
                try:
                    batchio.send(sock, batch, peer)
                except BlockingIOError:
                    break
                except OSError as exc:
                    if not batchio.refused(exc):
                        raise
                    gso, refused = False, True      # one datagram per sendto from now on
                    continue
                sent += count
                continue
            header = HEADER.pack(DATA, sent)
            frame = keyed.seal_counted((sent,), (plain,), (header,))[0] if keyed is not None \
                else header + backend.aead_encrypt(KEY, _nonce(sent), plain, header)
            try:
                sock.sendto(frame, peer)
            except BlockingIOError:
                break
            sent += 1
        acked, stalled = _acks(sock, acked, stalled, sent)
    for _ in range(20):
        sock.sendto(END, peer)
        time.sleep(0.01)
    if refused:
        print("gso refused", file=sys.stderr)


def _acks(sock, acked, stalled, sent):
    """Read the acknowledgments waiting; (acked, when acked last moved)."""
    while True:
        try:
            data = sock.recv(2048)
        except BlockingIOError:
            break
        if data[:1] == ACK:
            acked, stalled = max(acked, HEADER.unpack(data[:HEADER.size])[1]), time.monotonic()
    if sent - acked >= WINDOW and time.monotonic() - stalled > STALL:
        acked, stalled = sent - WINDOW // 2, time.monotonic()   # lost: let the window go on
    return acked, stalled


def tcp_recv(port, out):
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("0.0.0.0", port))
    server.listen(1)
    print("listening", flush=True)
    conn, _ = server.accept()
    start, total = time.monotonic(), 0
    buf = bytearray(1 << 20)
    view = memoryview(buf)
    with open(out, "wb") as f:
        while True:
            n = conn.recv_into(buf)
            if not n:
                break
            f.write(view[:n])
            total += n
    print("tcp %d %.6f" % (total, time.monotonic() - start))


def tcp_send(ip, port, path):
    deadline = time.monotonic() + 10
    while True:
        try:
            conn = socket.create_connection((ip, port), timeout=5)
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    with open(path, "rb") as f:
        conn.sendfile(f)
    conn.close()


def main(argv):
    role, args = argv[0], argv[1:]
    if role == "udp-recv":
        udp_recv(int(args[0]), (args[1], int(args[2])), args[3:] == ["gro"])
    elif role == "udp-send":
        udp_send(int(args[0]), (args[1], int(args[2])), int(args[3]), int(args[4]),
                 args[5:] == ["gso"])
    elif role == "tcp-recv":
        tcp_recv(int(args[0]), args[1])
    elif role == "tcp-send":
        tcp_send(args[0], int(args[1]), args[2])
    else:
        raise SystemExit("filebase: unknown role %r" % role)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
