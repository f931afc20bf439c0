"""File transfer between real peer processes on 127.0.0.1 (issue 12): a
file and a directory tree arrive byte-identical, decline, cancel, the
receiver killed, resume, chat during a transfer, and a partner that takes
no files."""

import os
import re
import signal
import time

import pytest

from .procs import chatting, peer

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


def test_integration_files_file_and_tree_arrive_byte_identical(procs, relay, tmp_path):
    down = tmp_path / "down"
    alice, bob = chatting(procs, relay, b_args=("--auto-accept", str(down)))
    source = random_file(tmp_path / "data one.bin", 3 * 1024 * 1024 + 7)
    alice.send('/send "%s"' % source)
    bob.expect(r"^alice offers data one\.bin \(1 file, 3\.1 MB\) \[[0-9a-f]{8}\]")
    bob.expect(r"^received data one\.bin \(3145735 bytes\) from alice, saved as .*data one\.bin$",
               timeout=30)
    alice.expect(r"^sent data one\.bin to bob \(3145735 bytes, 3145735 sent this time\)$")
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
    assert got == tree(src) and len(got) == 3 and not os.path.lexists(str(down / "project" / "link"))


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
    bob.send("/accept")
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
