#!/usr/bin/env python3
"""File transfer throughput: python bench/file_bench.py [--quick] [--size MB] [--lab] [--wormhole-venv DIR]

Theory of operation
-------------------
Real processes: the relay (``python -m peerpunch.relay``) and two peers
(``bin/peer.py``), bob waiting with ``--auto-accept DIR``, alice connecting
and typing ``/send FILE`` (a fresh random file of ``--size`` MB). The time
is from bob's ``receiving NAME`` line (the offer accepted) to his
``received NAME`` line (the file hashed and renamed into place), both read
from his stdout; the file must then be byte-identical. Chat during the
transfer: from bob's ``receiving`` line until his ``received`` line, alice
types a line every PING_EVERY seconds (MAX_PINGS at most); each one's time
from alice's stdin to bob's stdout is in the row's note (median and
largest, in ms): a line must not wait behind file data.

Places: ``loopback`` (127.0.0.1; as root in a network namespace of its
own) and, with ``--lab`` (root), the NAT lab's path: alice and bob each
behind a home router (:mod:`tests.natlab`, its own code, a fresh lab per
case, as ``chat_latency_bench.py --lab`` uses it). Loss: iptables'
``statistic`` match drops that share of UDP both ways at bob's socket
(loopback) or on both routers' WAN (lab: a datagram crosses two lossy
hops). The loss rows need root.

Baselines of each place, in the same run, at 0 % loss (``filebase.py``):
the encrypted-UDP ceiling in Python (seal each 1,200-byte datagram with the
project's AEAD backend and push it, windowed, no repetition), the same
with 1,472-byte datagrams (a full frame, the size the files stream probes
for), Linux UDP GSO and GRO (up to 44 datagrams a send, the key bound once;
where the system refuses, one per call, and the row says so) and a plain
TCP copy of the same file (in the lab through a port forward on bob's
router: TCP cannot be punched through these NATs). magic-wormhole only
with ``--wormhole-venv DIR``, a separate virtualenv holding it, its
mailbox server and its transit relay (never a dependency of the project;
:mod:`wormholerow`): two rows per place, its offer-to-written time and its
whole receive command; otherwise the table says there is no such row.
"""

import argparse
import filecmp
import os
import queue
import re
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from chat_latency_bench import LabPath, Loopback, Proc, can_isolate   # noqa: E402
from tests.natlab import runner, topology                             # noqa: E402
import wormholerow                                                    # noqa: E402

PEER = os.path.join(ROOT, "bin", "peer.py")
BASE = os.path.join(ROOT, "bench", "filebase.py")
UDP_PORTS = (47001, 47002)       # receiver, sender (a home router keeps them)
TCP_PORT = 47003
DATAGRAM = 1200
FULL_DATAGRAM = 1472             # a 1,500-byte frame's UDP payload: what the files stream probes for
WAIT = 30.0
TRANSFER_WAIT = 900.0
MAX_PINGS, PING_EVERY = 1000, 0.1  # chat lines alice types during a transfer, seconds apart


class Row:
    def __init__(self, place, what, loss, nbytes, seconds, note=""):
        self.place, self.what, self.loss = place, what, loss
        self.nbytes, self.seconds, self.note = nbytes, seconds, note

    @property
    def rate(self):
        return self.nbytes / self.seconds / 1e6 if self.seconds else float("nan")


def peer_transfer(place, source, loss, work, peer=PEER, what="peerpunch"):
    """One transfer between real peers on *place*; a Row (named *what*)."""
    down = os.path.join(work, "down-%d" % time.monotonic_ns())
    homes = [tempfile.mkdtemp(prefix="ppfilebench-", dir=work) for _ in range(2)]
    procs = []
    try:
        relay = Proc([sys.executable, "-m", "peerpunch.relay", "--host", place.relay_host]
                     + place.relay_args, place.command("relay"))
        procs.append(relay)
        port = relay.expect(r"relay listening on %s:(\d+)" % re.escape(place.relay_host),
                            where=relay.err).group(1)
        common = ["--relay", "%s:%s" % (place.relay_host, port)]
        bob = Proc([sys.executable, peer] + common + ["--name", "bob", "--wait",
                                                      "--auto-accept", down],
                   place.command("bob"), homes[0])
        procs.append(bob)
        bob_port = int(bob.expect(r"^bound to \S+:(\d+);").group(1))
        bob.expect(r"^registered as bob")
        alice = Proc([sys.executable, peer] + common + ["--name", "alice", "--connect", "bob"],
                     place.command("alice"), homes[1])
        procs.append(alice)
        path = alice.expect(runner.CONNECTED.format(peer="bob")).group("path")
        bob.expect(runner.CONNECTED.format(peer="alice"))
        if loss:
            place.lossy(loss, bob_port)
        name = os.path.basename(source)
        overflow_before = rcvbuf_errors(place)
        alice.send("/send %s" % source)
        t0 = read_at(bob, r"^receiving %s from alice" % re.escape(name), WAIT)
        end, lags = chat_during(alice, bob, r"^received %s \(%d bytes\)" % (
            re.escape(name), os.path.getsize(source)))
        seconds = end - t0
        overflow = rcvbuf_errors(place)
        overflow = overflow - overflow_before if overflow is not None else None
        same = filecmp.cmp(source, os.path.join(down, name), shallow=False)
        if not same:
            raise SystemExit("file_bench: the received file differs")
        return Row(place.label, what, loss, os.path.getsize(source), seconds,
                   "%s, byte-identical, %s, %s" % (
                       path, "receive-buffer drops: %d" % overflow if overflow is not None
                       else "drops not counted", lags))
    finally:
        for proc in reversed(procs):
            proc.stop()
        shutil.rmtree(down, ignore_errors=True)


def chat_during(alice, bob, done):
    """Alice types a line every PING_EVERY s while bob receives; (when bob printed the
    line matching *done*, the lines' typed-to-shown times in words)."""
    typed, shown, end = {}, {}, None
    regex, ping = re.compile(done), re.compile(r"^\[alice\]> ping (\d+)$")
    deadline, due = time.monotonic() + TRANSFER_WAIT, time.monotonic()
    while end is None or len(shown) < len(typed):
        now = time.monotonic()
        if now >= deadline or (end is not None and now > end + WAIT):
            break
        if end is None and len(typed) < MAX_PINGS and now >= due:
            typed[len(typed)] = now
            alice.send("ping %d" % (len(typed) - 1))
            due = now + PING_EVERY
        try:
            when, line = bob.lines.get(timeout=0.01)
        except queue.Empty:
            continue
        found = ping.match(line)
        if found and int(found.group(1)) in typed:
            shown[int(found.group(1))] = when - typed[int(found.group(1))]
        elif end is None and regex.search(line):
            end = when
    if end is None:
        raise SystemExit("file_bench: no %r within %g s" % (done, TRANSFER_WAIT))
    if not shown:
        return end, "no chat line shown during it"
    lags = sorted(shown.values())
    return end, "chat lines during it: median %.1f ms, max %.1f ms (%d of %d shown)" % (
        lags[len(lags) // 2] * 1e3, lags[-1] * 1e3, len(lags), len(typed))


def read_at(proc, pattern, seconds):
    """When *proc* printed the first stdout line matching *pattern*."""
    regex, deadline = re.compile(pattern), time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            when, line = proc.lines.get(timeout=0.1)
        except queue.Empty:
            continue
        if regex.search(line):
            return when
    raise SystemExit("file_bench: no %r within %g s" % (pattern, seconds))


def rcvbuf_errors(place):
    """UDP datagrams the peers' namespaces dropped on a full receive buffer
    (None when the peers share the host's)."""
    roles = ("alice", "bob") if place.label == "lab" else ("bob",)
    if not place.command("bob"):
        return None
    total = 0
    for role in roles:
        out = subprocess.run(place.command(role) + ["cat", "/proc/net/snmp"],
                             capture_output=True, text=True).stdout.splitlines()
        udp = [line.split() for line in out if line.startswith("Udp:")]
        total += int(dict(zip(udp[0], udp[1]))["RcvbufErrors"]) if len(udp) == 2 else 0
    return total


def addresses(place):
    """(bob's address as alice sees it, alice's as bob sees it)."""
    if place.label == "lab":
        return topology.PUBLIC_IP["bob"], topology.PUBLIC_IP["alice"]
    return "127.0.0.1", "127.0.0.1"


def udp_ceiling(place, size, offload=False):
    """The encrypted-UDP ceiling's row; *offload*: with GSO and GRO."""
    bob_ip, alice_ip = addresses(place)
    recv_port, send_port = UDP_PORTS
    recv = _child(place, "bob", ["udp-recv", recv_port, alice_ip, send_port]
                  + (["gro"] if offload else []))
    send = _child(place, "alice", ["udp-send", send_port, bob_ip, recv_port, size,
                                   FULL_DATAGRAM if offload else DATAGRAM]
                  + (["gso"] if offload else []))
    out = _finish(recv, send)
    nbytes, seconds = out.split()[1:3]
    if not offload:
        return Row(place.label, CEILING, 0.0, int(nbytes), float(seconds),
                   "%d-B datagrams, one sendto each, %s" % (DATAGRAM, _backend()))
    refused = [side for side in ("gso", "gro") if "%s refused" % side in out + send.stderr_text]
    return Row(place.label, CEILING_GSO, 0.0, int(nbytes), float(seconds),
               "%d-B datagrams, up to %d a sendmsg (GSO), GRO, key bound once, %s%s"
               % (FULL_DATAGRAM, 44, _backend(), "; refused: %s" % ", ".join(refused) if refused
                  else ""))


def tcp_copy(place, source, work):
    bob_ip, _ = addresses(place)
    if place.label == "lab":
        _forward_tcp(place.lab)
    out_path = os.path.join(work, "tcp.out")
    recv = _child(place, "bob", ["tcp-recv", TCP_PORT, out_path])
    recv.stdout.readline()          # listening
    send = _child(place, "alice", ["tcp-send", bob_ip, TCP_PORT, source])
    out = _finish(recv, send)
    nbytes, seconds = out.split()[1:3]
    same = filecmp.cmp(source, out_path, shallow=False)
    os.unlink(out_path)
    return Row(place.label, "TCP copy", 0.0, int(nbytes), float(seconds),
               "sendfile -> recv_into, %s" % ("byte-identical" if same else "DIFFERS"))


def _forward_tcp(lab):
    nat, lan_ip = lab.sites["bob"].nats[0], lab.sites["bob"].lan_ip
    nat.run("iptables", "-w", "-t", "nat", "-I", "PREROUTING", "-i", "wan", "-p", "tcp",
            "--dport", str(TCP_PORT), "-j", "DNAT", "--to-destination", "%s:%d" % (lan_ip, TCP_PORT))
    nat.run("iptables", "-w", "-I", "FORWARD", "-p", "tcp", "-d", lan_ip, "--dport",
            str(TCP_PORT), "-j", "ACCEPT")


def _child(place, role, args):
    return subprocess.Popen(place.command(role) + [sys.executable, BASE] + [str(a) for a in args],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(recv, send):
    try:
        send.stderr_text = send.communicate(timeout=600)[1]
        out, err = recv.communicate(timeout=60)
    finally:
        for p in (send, recv):
            if p.poll() is None:
                p.kill()
                p.wait()
    if recv.returncode or send.returncode:
        raise SystemExit("file_bench: baseline failed: %s %s" % (err.strip(), send.stderr_text))
    return out.strip().splitlines()[-1]


def _backend():
    from peerpunch import crypto
    return crypto.get_backend().name


WORMHOLE, WORMHOLE_CMD = "magic-wormhole", "magic-wormhole command"
CEILING, CEILING_GSO = "encrypted UDP ceiling", "encrypted UDP GSO+GRO"
BEFORE = "peerpunch before"


def wormhole_rows(place, source, work, venv):
    """Its offer-to-written row and its whole-receive-command row."""
    nbytes, seconds, whole, note = wormholerow.transfer(place, source, work, venv)
    return [Row(place.label, WORMHOLE, 0.0, nbytes, seconds, note + ", offer to file written"),
            Row(place.label, WORMHOLE_CMD, 0.0, nbytes, whole, "wormhole receive, start to exit")]


def wormhole_note(venv):
    if not venv:
        return ("magic-wormhole: no row (give --wormhole-venv DIR, a separate virtualenv with %s;"
                " never a dependency)" % ", ".join(wormholerow.PACKAGES))
    return "magic-wormhole rows: %s, from %s" % (wormholerow.describe(venv), venv)


def run_place(place, source, losses, work, args):
    rows = []
    if not args.only_peers:
        with place.case():
            rows.append(udp_ceiling(place, os.path.getsize(source)))
        with place.case():
            rows.append(udp_ceiling(place, os.path.getsize(source), offload=True))
        with place.case():
            rows.append(tcp_copy(place, source, work))
        if args.wormhole_venv:
            with place.case():
                rows.extend(wormhole_rows(place, source, work, args.wormhole_venv))
    for loss in losses:
        with place.case():
            rows.append(peer_transfer(place, source, loss, work, args.peer))
        if args.before:
            with place.case():
                rows.append(peer_transfer(place, source, loss, work, args.before, BEFORE))
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run (2 MB, loopback)")
    parser.add_argument("--size", type=float, default=None, help="file size in MB (default 50)")
    parser.add_argument("--lab", action="store_true",
                        help="also on the NAT lab's path (two home routers); root")
    parser.add_argument("--peer", default=PEER,
                        help="the peer program to run (default bin/peer.py; a profiling wrapper)")
    parser.add_argument("--only-peers", action="store_true", help="no baseline rows")
    parser.add_argument("--before", metavar="PEER", default=None,
                        help="also an older peer program (bin/peer.py of another checkout),"
                        " in the same run: rows 'peerpunch before'")
    parser.add_argument("--loss", type=float, action="append", default=None,
                        help="loss percentages for peerpunch rows (default 0 and 5)")
    parser.add_argument("--wormhole-venv", metavar="DIR", default=None,
                        help="a separate virtualenv with %s: also measure it"
                        % ", ".join(wormholerow.PACKAGES))
    args = parser.parse_args(argv)
    size = args.size if args.size is not None else (2 if args.quick else 50)
    losses = [x / 100.0 for x in (args.loss if args.loss is not None else [0, 5])]
    if not 0 < size <= 10000 or any(not 0 <= x < 0.5 for x in losses):
        parser.exit(2, "file_bench: --size must be in (0, 10000] and --loss in [0, 50)\n")
    if args.lab and topology.missing_requirements():
        parser.exit(2, "file_bench: --lab: %s\n" % topology.missing_requirements())
    if args.wormhole_venv:
        args.wormhole_venv = os.path.abspath(args.wormhole_venv)
        problem = wormholerow.check_venv(args.wormhole_venv)
        if problem:
            parser.exit(2, "file_bench: %s\n" % problem)
    isolated = bool(can_isolate())
    if not isolated:
        losses = [x for x in losses if x == 0] or [0.0]
    work = tempfile.mkdtemp(prefix="ppfilebench-")
    loopback = Loopback(isolated)
    try:
        source = os.path.join(work, "random.bin")
        with open(source, "wb") as f:
            f.write(os.urandom(int(size * 1e6)))
        places = [loopback] + ([LabPath()] if args.lab else [])
        rows = [r for place in places for r in run_place(place, source, losses, work, args)]
    finally:
        loopback.close()
        shutil.rmtree(work, ignore_errors=True)
    report(rows, size, isolated, args.wormhole_venv)
    return 0


def report(rows, size, isolated, venv=None):
    print("file transfer, %g MB random file, real relay and peers (Python %s); %s"
          % (size, sys.version.split()[0], time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())))
    if not isolated:
        print("(loss rows need root: iptables statistic loss in a network namespace)")
    print("%-9s %-24s %6s %9s %8s  %s" % ("place", "what", "loss", "seconds", "MB/s", "note"))
    for r in rows:
        print("%-9s %-24s %5d%% %9.2f %8.2f  %s" % (r.place, r.what, round(r.loss * 100),
                                                   r.seconds, r.rate, r.note))
    for place in sorted({r.place for r in rows}, key=lambda p: p != "loopback"):
        by = {(r.what, r.loss): r for r in rows if r.place == place}
        if ("TCP copy", 0.0) not in by:
            continue
        ceiling, tcp = by[(CEILING, 0.0)], by[("TCP copy", 0.0)]
        offload = by.get((CEILING_GSO, 0.0))
        for (what, loss), r in sorted(by.items()):
            if what in ("peerpunch", BEFORE):
                print("ratio %s %s at %d %% loss: %.2fx the encrypted-UDP ceiling,%s"
                      " %.3fx TCP%s" % (place, what, round(loss * 100), r.rate / ceiling.rate,
                                        " %.2fx its GSO+GRO variant," % (r.rate / offload.rate)
                                        if offload else "", r.rate / tcp.rate,
                                        _versus_wormhole(r, by)))
    print(wormhole_note(venv))


def _versus_wormhole(row, by):
    """", A x magic-wormhole (offer to written), B x its whole command" or ""."""
    if (WORMHOLE, 0.0) not in by:
        return ""
    return ", %.2fx magic-wormhole (offer to written), %.2fx its whole command (target >= 2x)" % (
        row.rate / by[(WORMHOLE, 0.0)].rate, row.rate / by[(WORMHOLE_CMD, 0.0)].rate)


if __name__ == "__main__":
    sys.exit(main())
