"""File transfer between real peer processes on 127.0.0.1 (issue 12): a
file and a directory tree arrive byte-identical, decline, cancel, the
receiver killed, resume, chat during a transfer, and a partner that takes
no files."""

import os
import signal
import sys
import time
import types

import pytest

from .procs import PEER, ROOT, Proc, chatting, peer, start_relay
from .test_integration_delivery import Terminal

pytestmark = pytest.mark.timeout(90)


def figure(text):
    print("\nFIGURE " + text)


def random_file(path, size):
    with open(str(path), "wb") as f:
        f.write(os.urandom(size))
    return str(path)


def tree(root):
    """relative path -> bytes of every file under *root*."""
    out = {}
    for folder, _, files in os.walk(str(root)):
        for name in files:
            path = os.path.join(folder, name)
            if os.path.islink(path):
                continue
            with open(path, "rb") as f:
                out[os.path.relpath(path, str(root))] = f.read()
    return out


WRITERS = pytest.mark.parametrize("writer", ["auto", "on"])
"""The receiver's disk writer thread as this machine chooses (none on 2
CPUs), and forced on (PEERPUNCH_DISK_WRITER), as a machine of 3 or more has it."""


@WRITERS
def test_integration_files_file_and_tree_arrive_byte_identical(procs, relay, tmp_path, writer,
                                                                monkeypatch):
    monkeypatch.setenv("PEERPUNCH_DISK_WRITER", writer)
    down = tmp_path / "down"
    alice, bob = chatting(procs, relay, b_args=("--auto-accept", str(down)))
    source = random_file(tmp_path / "data one.bin", 3 * 1024 * 1024 + 7)
    alice.send('/send "%s"' % source)
    bob.expect(r"^alice offers data one\.bin \(1 file, 3\.1 MB\) \[[0-9a-f]{8}\]")
    bob.expect(r"^received data one\.bin \(3145735 bytes\) from alice, saved as .*data one\.bin$",
               timeout=30)
    alice.expect(r"^sent data one\.bin to bob \(3145735 bytes, 3145735 sent this time\)$")
    assert not any("%" in line for line in alice.lines["stdout"] + bob.lines["stdout"])  # pipes
    with open(source, "rb") as f:
        assert (down / "data one.bin").read_bytes() == f.read()
    src = tmp_path / "project"
    (src / "sub" / "deeper").mkdir(parents=True)
    (src / "a.txt").write_text("alpha\n")
    (src / "sub" / "b.bin").write_bytes(os.urandom(200000))
    (src / "sub" / "deeper" / "empty").write_bytes(b"")
    os.symlink("/etc/passwd", str(src / "link"))
    alice.send("/send %s bob" % src)
    alice.expect(r"^skipped \(not sent\): .*link \(symlink\)$")
    bob.expect(r"^received project \(200006 bytes\) from alice, saved as .*project$", timeout=30)
    alice.expect(r"^sent project to bob")
    got = tree(down / "project")
    assert got == tree(src) and len(got) == 3
    assert not os.path.lexists(str(down / "project" / "link"))


def test_integration_files_decline_and_cancel(procs, relay, tmp_path):
    down = tmp_path / "down"
    alice, bob = chatting(procs, relay, b_args=("--download-dir", str(down)))
    source = random_file(tmp_path / "big.bin", 64 * 1024 * 1024)
    alice.send("/send %s" % source)
    tid = bob.expect(r"^alice offers big\.bin .*\[([0-9a-f]{8})\]").group(1)
    bob.send("/decline " + tid)
    alice.expect(r"^transfer of big\.bin to bob failed: declined by bob$")
    assert not down.exists()
    seen = len(bob.lines["stdout"])
    alice.send("/send %s" % source)
    bob.expect(r"^alice offers big\.bin .*\[([0-9a-f]{8})\]", start=seen)
    bob.send("/files")
    bob.expect(r"^\[[0-9a-f]{8}\] from alice big\.bin: offered, 0 B of 67\.1 MB$")
    bob.send("/accept alice")
    alice.expect(r"^bob accepted big\.bin")
    bob.expect(r"^receiving big\.bin from alice")
    wait_for(lambda: partial_size(down) > 0)
    alice.send("/cancel")
    bob.expect(r"^transfer of big\.bin from alice failed: cancelled by alice$", timeout=20)
    alice.expect(r"^transfer of big\.bin to bob failed: cancelled$")
    wait_for(lambda: os.listdir(str(down)) == [])


def partial_size(folder):
    if not folder.exists():
        return 0
    return sum(os.path.getsize(str(folder / n)) for n in os.listdir(str(folder)))


def wait_for(condition, timeout=20.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in %g s" % timeout
        time.sleep(0.05)


def test_integration_files_loopback_throughput_and_chat_during_transfer(procs, relay, tmp_path):
    """50 MB on loopback: the figure (offer accepted -> file in place), and
    a line typed during the transfer is shown before it ends."""
    down = tmp_path / "down"
    alice, bob = chatting(procs, relay, b_args=("--auto-accept", str(down)))
    source = random_file(tmp_path / "fifty.bin", 50 * 1000 * 1000)
    alice.send("/send %s" % source)
    bob.expect(r"^receiving fifty\.bin from alice", timeout=30)
    started = time.monotonic()
    alice.send("hello during the transfer")
    bob.expect(r"^\[alice\]> hello during the transfer$", timeout=10)
    latency = time.monotonic() - started
    bob.expect(r"^received fifty\.bin \(50000000 bytes\)", timeout=60)
    seconds = time.monotonic() - started
    lines = bob.lines["stdout"]
    said = lines.index("[alice]> hello during the transfer")
    done = [i for i, line in enumerate(lines) if line.startswith("received fifty.bin")][0]
    assert said < done, bob.transcript()
    with open(source, "rb") as f:
        assert (down / "fifty.bin").read_bytes() == f.read()
    figure("loopback, 50 MB: %.2f s from accepted to in place, %.1f MB/s; a line typed during"
           " it shown after %.0f ms" % (seconds, 50 / seconds, latency * 1000))


def test_integration_files_progress_line_on_a_terminal(procs, relay, tmp_path):
    bob = peer(procs, relay, "--name", "bob", "--wait", "--auto-accept", str(tmp_path / "down"))
    bob.expect("^registered as bob")
    config = tmp_path / "alice-config"          # its own known_peers: bob is new to it
    config.mkdir()
    alice = Terminal([sys.executable, PEER, "--relay", relay.addr, "--name", "alice",
                      "--connect", "bob"], config=str(config))
    try:
        alice.expect(r"connected to bob ")
        alice.send("/send %s" % random_file(tmp_path / "p.bin", 30 * 1000 * 1000))
        alice.expect(r"\rto bob p\.bin: +\d+% [\d.]+ [kMG]?B of 30\.0 MB, "
                     r"[\d.]+ [kMG]?B/s ETA \d+ s", timeout=20)
        alice.expect(r"\r\x1b\[Ksent p\.bin to bob", timeout=30)
    finally:
        alice.stop()


def test_integration_files_seed_partner_refused_in_one_line(procs, relay, tmp_path):
    seed = Proc([sys.executable, ROOT + "/tests/seed.py", "peer", "--relay", relay.addr,
                 "--name", "oldtimer"])
    procs.append(seed)
    seed.expect("^registered$")
    bob = peer(procs, relay, "--name", "bob", "--connect", "oldtimer")
    bob.expect(r"^connected to oldtimer at 127\.0\.0\.1:\d+ \(direct\)")
    source = random_file(tmp_path / "x.bin", 1000)
    bob.send("/send %s" % source)
    bob.expect(r"^cannot send files to oldtimer: that chat is not encrypted")
    bob.send("still plain")
    seed.expect(r"^\[bob\]> still plain$")
    assert not seed.has("panicked") and not seed.has("x.bin")


@WRITERS
def test_integration_files_receiver_killed_then_resumed(procs, tmp_path, writer, monkeypatch):
    monkeypatch.setenv("PEERPUNCH_DISK_WRITER", writer)
    proc, port = start_relay("--expire", "3")       # the killed bob's name is free again soon
    procs.append(proc)
    relay = types.SimpleNamespace(addr="127.0.0.1:%d" % port)
    down = tmp_path / "down"
    bob_config = str(tmp_path / "bobconf")
    keep = ("--keepalive", "2")
    alice, bob = chatting(procs, relay, a_args=keep, b_args=keep + ("--auto-accept", str(down)),
                          b_config=bob_config)
    size = 100 * 1000 * 1000
    source = random_file(tmp_path / "huge.bin", size)
    alice.send("/send %s" % source)
    bob.expect(r"^receiving huge\.bin from alice", timeout=30)
    wait_for(lambda: partial_size(down) > 20 * 1000 * 1000, timeout=30)
    bob.signal(signal.SIGKILL)
    bob.wait()
    killed = time.monotonic()
    have = partial_size(down)
    assert 0 < have < size, "the transfer ended before the kill: use a larger file"
    alice.expect(r"^transfer of huge\.bin to bob failed: partner gone", timeout=25)
    gone = time.monotonic() - killed
    bob = peer(procs, relay, "--name", "bob", "--connect", "alice", *keep, "--auto-accept",
               str(down), config=bob_config)
    bob.expect(r"^connected to alice", timeout=20)
    seen = len(alice.lines["stdout"])
    alice.send("/send %s" % source)
    m = alice.expect(r"^bob accepted huge\.bin \[[0-9a-f]{8}\], resuming after (\d+) bytes",
                     timeout=30, start=seen)
    resumed = int(m.group(1))
    m = alice.expect(r"^sent huge\.bin to bob \((\d+) bytes, (\d+) sent this time\)$", timeout=60)
    assert int(m.group(1)) == size and int(m.group(2)) == size - resumed, m.string
    assert resumed >= have - 4 * 1024 * 1024 and resumed > 0
    bob.expect(r"^received huge\.bin \(%d bytes\)" % size)
    assert os.listdir(str(down)) == ["huge.bin"]
    with open(source, "rb") as f:
        assert (down / "huge.bin").read_bytes() == f.read()
    figure("receiver SIGKILLed: sender said partner gone after %.1f s; the repeated offer"
           " resumed after %d of %d bytes" % (gone, resumed, size))
