"""A whole transfer through the cores and the disk sides, in memory: a
random tree arrives byte-identical, and an interrupted one resumes."""

import filecmp
import os
import random

from peerpunch import transfer as T

from .filelink import Link


def make_tree(root, rng, files=25):
    """A random tree of *files* files (some empty, some of several chunks)."""
    paths = []
    for n in range(files):
        depth = rng.randint(0, 3)
        folder = os.path.join(root, *("d%d" % rng.randint(0, 3) for _ in range(depth)))
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, "f%d.bin" % n)
        size = rng.choice([0, 1, 100, 4095, 4096, 4097, 30000])
        with open(path, "wb") as f:
            f.write(bytes(rng.getrandbits(8) for _ in range(size)))
        paths.append(path)
    return paths


def same_tree(a, b):
    cmp = filecmp.dircmp(a, b)
    if cmp.left_only or cmp.right_only or cmp.funny_files:
        return False
    _, mismatch, errors = filecmp.cmpfiles(a, b, cmp.common_files, shallow=False)
    return not mismatch and not errors and all(
        same_tree(os.path.join(a, d), os.path.join(b, d)) for d in cmp.common_dirs)


def visible(root):
    return sorted(n for n in os.listdir(root) if not n.startswith("."))


def test_transfer_random_tree_and_file_arrive_byte_identical(tmp_path):
    rng = random.Random(12)
    tree = tmp_path / "send" / "photos"
    make_tree(str(tree), rng)
    single = tmp_path / "send" / "notes.txt"
    single.write_bytes(b"hello\n" * 5000)
    down = tmp_path / "down"
    link = Link([str(tree), str(single)], str(down), chunk_size=4096)
    link.accept()
    link.run()
    assert link.kinds(link.received_events)[-1] == "FileReceived"
    assert link.kinds(link.sent_events)[-1] == "FileSent"
    assert visible(str(down)) == ["notes.txt", "photos"]
    assert os.listdir(str(down)) == visible(str(down))          # no partial left
    assert same_tree(str(tree), str(down / "photos"))
    assert (down / "notes.txt").read_bytes() == single.read_bytes()
    done = link.received_events[-1]
    assert done.where == (str(down / "photos"), str(down / "notes.txt"))
    assert (done.count, done.total) == (26, sum(e.size for e in link.entries))


def test_transfer_tree_with_taken_top_name_is_numbered(tmp_path):
    tree = tmp_path / "send" / "docs"
    make_tree(str(tree), random.Random(3), files=5)
    down = tmp_path / "down"
    (down / "docs").mkdir(parents=True)
    (down / "docs" / "mine.txt").write_text("keep me")
    link = Link([str(tree)], str(down))
    link.accept()
    link.run()
    assert visible(str(down)) == ["docs", "docs (1)"]
    assert (down / "docs" / "mine.txt").read_text() == "keep me"
    assert same_tree(str(tree), str(down / "docs (1)"))


def test_transfer_interrupted_resumes_from_what_is_on_disk(tmp_path):
    rng = random.Random(7)
    tree = tmp_path / "send" / "album"
    make_tree(str(tree), rng, files=12)
    down = tmp_path / "down"
    first = Link([str(tree)], str(down), chunk_size=1000)
    first.accept()
    assert first.run(chunks=40) == 40
    first.store.close()                     # the session is lost: the part stays
    first.receiver.partner_gone()
    first.sender.partner_gone()
    assert first.receiver.state == first.sender.state == T.FAILED
    assert visible(str(down)) == []
    again = Link([str(tree)], str(down), chunk_size=1000)     # same offer, new id
    again.accept()
    accepted = [e for e in again.received_events if type(e) is T.FileAccepted][0]
    assert accepted.resumed == first.receiver.meter.done > 0
    sent = again.run()
    total_chunks = sum(-(-e.size // 1000) for e in again.entries)
    assert sent == total_chunks - 40          # nothing sent twice
    assert again.receiver.state == again.sender.state == T.DONE
    assert visible(str(down)) == ["album"]
    assert same_tree(str(tree), str(down / "album"))


def test_transfer_single_file_resumes_after_a_restart_of_the_receiver(tmp_path):
    source = tmp_path / "big.bin"
    source.write_bytes(os.urandom(50000))
    down = tmp_path / "down"
    first = Link([str(source)], str(down), chunk_size=4096)
    first.accept()
    first.run(chunks=5)
    first.store.close()
    again = Link([str(source)], str(down), chunk_size=4096)
    again.accept()
    assert again.receiver.meter.done == 5 * 4096
    assert again.run() == -(-50000 // 4096) - 5
    assert (down / "big.bin").read_bytes() == source.read_bytes()
    assert os.listdir(str(down)) == ["big.bin"]
