"""The disk sides: a hash mismatch never renames into place, a full disk is
refused before anything is written, nothing is overwritten, partial files
go on cancel and stay for a resume; the sender's walk skips and lists
links and special files."""

import collections
import hashlib
import os

import pytest

from peerpunch import filestore as FS
from peerpunch import transfer as T
from peerpunch.filesource import DUPLICATE, SPECIAL, SYMLINK, collect
from peerpunch.filewire import Entry

from .filelink import Link

Usage = collections.namedtuple("Usage", "total used free")


def entry(parts, data):
    return Entry(tuple(parts), len(data), hashlib.sha256(data).hexdigest())


def listing(root):
    out = []
    for folder, dirs, files in os.walk(str(root)):
        rel = os.path.relpath(folder, str(root))
        out += [os.path.normpath(os.path.join(rel, n)) for n in dirs + files]
    return sorted(out)


def test_filestore_whole_file_is_renamed_into_place_after_its_hash(tmp_path):
    store = FS.Store(str(tmp_path), [entry(["a.txt"], b"hello")])
    store.prepare({})
    store.write(0, 0, b"hel")
    assert listing(tmp_path) == [FS.staging_name("a.txt", FS.top_key(store.entries))]
    store.write(0, 3, b"lo")
    assert store.verify(0) == (True, str(tmp_path / "a.txt"))
    assert listing(tmp_path) == ["a.txt"]
    assert (tmp_path / "a.txt").read_bytes() == b"hello"


def test_filestore_hash_mismatch_never_renames_into_place(tmp_path):
    store = FS.Store(str(tmp_path), [entry(["a.txt"], b"hello")])
    store.prepare({})
    store.write(0, 0, b"HELLO")
    assert store.verify(0) == (False, None)
    assert listing(tmp_path) == []


def test_filestore_hash_mismatch_in_a_tree_keeps_the_tree_out_of_place(tmp_path):
    entries = [entry(["d", "x"], b"1"), entry(["d", "y"], b"2")]
    store = FS.Store(str(tmp_path), entries)
    store.prepare({})
    store.write(0, 0, b"1")
    assert store.verify(0) == (True, None)
    store.write(1, 0, b"3")
    assert store.verify(1) == (False, None)
    store.discard()
    assert listing(tmp_path) == []


def test_filestore_full_transfer_with_a_wrong_hash_fails_and_leaves_nothing(tmp_path):
    source = tmp_path / "f.bin"
    source.write_bytes(b"z" * 5000)
    link = Link([str(source)], str(tmp_path / "down"), chunk_size=1000)
    source.write_bytes(b"y" * 5000)          # changed after it was offered
    link.accept()
    link.run()
    assert link.receiver.state == link.sender.state == T.FAILED
    assert link.received_events[-1] == T.FileFailed(link.sender.id, T.HASH_MISMATCH, False)
    assert link.sent_events[-1] == T.FileFailed(link.sender.id, T.HASH_MISMATCH, True)
    assert listing(tmp_path / "down") == []


def test_filestore_disk_full_is_refused_before_anything_is_written(tmp_path):
    source = tmp_path / "f.bin"
    source.write_bytes(b"z" * 5000)
    down = tmp_path / "down"
    tiny = lambda path: Usage(10 ** 6, 10 ** 6 - 4096, 4096)   # noqa: E731
    link = Link([str(source)], str(down), disk_usage=tiny)
    link.accept()
    assert link.receiver.state == link.sender.state == T.FAILED
    assert link.sent_events[-1] == T.FileFailed(link.sender.id, T.DISK_FULL, True)
    assert link.sender.next_read() is None
    assert listing(down) == []


def test_filestore_space_check_counts_only_what_is_still_to_come(tmp_path):
    store = FS.Store(str(tmp_path), [entry(["a"], b"x" * 3000)],
                     disk_usage=lambda path: Usage(0, 0, FS.SPACE_MARGIN + 1000))
    with pytest.raises(FS.DiskFull) as info:
        store.prepare({})
    assert (info.value.needed, info.value.free) == (3000, FS.SPACE_MARGIN + 1000)
    store.prepare({0: 2000})


def test_filestore_never_overwrites_an_existing_file(tmp_path):
    (tmp_path / "a.txt").write_bytes(b"mine")
    (tmp_path / "a (1).txt").write_bytes(b"mine too")
    store = FS.Store(str(tmp_path), [entry(["a.txt"], b"theirs")])
    store.write(0, 0, b"theirs")
    assert store.verify(0) == (True, str(tmp_path / "a (2).txt"))
    assert (tmp_path / "a.txt").read_bytes() == b"mine"
    assert (tmp_path / "a (1).txt").read_bytes() == b"mine too"
    assert (tmp_path / "a (2).txt").read_bytes() == b"theirs"


def test_filestore_discard_removes_the_partial_file_and_keeps_finished_ones(tmp_path):
    entries = [entry(["done.txt"], b"ok"), entry(["part.txt"], b"partial")]
    store = FS.Store(str(tmp_path), entries)
    store.write(0, 0, b"ok")
    store.verify(0)
    store.write(1, 0, b"par")
    store.discard()
    assert listing(tmp_path) == ["done.txt"]


def test_filestore_resume_points_survive_a_new_store(tmp_path):
    entries = [entry(["d", "a"], b"aaaa"), entry(["d", "b"], b"bbbbbb"), entry(["d", "c"], b"c")]
    store = FS.Store(str(tmp_path), entries)
    store.write(0, 0, b"aaaa")
    store.verify(0)
    store.write(1, 0, b"bbb")
    store.close()
    again = FS.Store(str(tmp_path), entries)
    assert again.have() == {0: 4, 1: 3}
    again.write(1, 3, b"bbb")
    assert again.verify(0) == (True, None)
    assert again.verify(1) == (True, None)
    again.write(2, 0, b"c")
    assert again.verify(2) == (True, str(tmp_path / "d"))
    assert listing(tmp_path) == ["d", "d/a", "d/b", "d/c"]


def test_filestore_other_content_with_the_same_name_does_not_resume(tmp_path):
    FS.Store(str(tmp_path), [entry(["a"], b"old content")]).write(0, 0, b"old")
    assert FS.Store(str(tmp_path), [entry(["a"], b"new content")]).have() == {}


def test_filestore_staging_name_stays_within_the_name_limit():
    name = FS.staging_name("\u00e9" * 200, "0" * 16)
    assert len(name.encode("utf-8")) <= 255 and name.endswith(".0000000000000000.peerpunch-part")


def test_filesource_walk_skips_and_lists_links_and_special_files(tmp_path):
    top = tmp_path / "top"
    (top / "sub").mkdir(parents=True)
    (top / "sub" / "f.txt").write_bytes(b"f")
    (top / "g.txt").write_bytes(b"gg")
    (top / "empty").mkdir()
    os.symlink("/etc/passwd", str(top / "link"))
    os.symlink(str(top / "sub"), str(top / "dirlink"))
    os.mkfifo(str(top / "fifo"))
    entries, source, skipped = collect([str(top)])
    assert [e.parts for e in entries] == [("top", "g.txt"), ("top", "sub", "f.txt")]
    assert [e.size for e in entries] == [2, 1]
    assert entries[0].sha256 == hashlib.sha256(b"gg").hexdigest()
    assert sorted((os.path.basename(p), why) for p, why in skipped) == [
        ("dirlink", SYMLINK), ("fifo", SPECIAL), ("link", SYMLINK)]
    assert source.read(T.Read(1, 0, 1)) == b"f"


def test_filesource_unsafe_and_clashing_local_names_are_made_safe(tmp_path):
    top = tmp_path / "CON"
    top.mkdir()
    (top / "a:b").write_bytes(b"1")
    (top / "a_b").write_bytes(b"2")
    (top / "x.").write_bytes(b"3")
    other = tmp_path / "other"
    other.mkdir()
    (other / "CON").write_bytes(b"4")
    entries, _, skipped = collect([str(top), str(other / "CON")])
    assert [e.parts for e in entries] == [("_CON", "a_b"), ("_CON", "x"), ("_CON (1)",)]
    assert [(os.path.basename(p), why) for p, why in skipped] == [("a_b", DUPLICATE)]


def test_filesource_file_that_shrank_cannot_be_read(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"12345")
    _, source, _ = collect([str(path)])
    path.write_bytes(b"12")
    with pytest.raises(OSError):
        source.read(T.Read(0, 0, 5))
