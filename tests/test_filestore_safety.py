"""The receiver's staging on a shared or hostile disk: one writer per
staging in the process (so what was hashed is what is on disk), no link
followed, private staging directories, a partial named after its file."""

import hashlib
import os
import stat

import pytest

from peerpunch import chatfiles as CF
from peerpunch import filesafe
from peerpunch import filewire as FW
from peerpunch import safename as S
from peerpunch import transfer as T
from peerpunch.filestore import StagingBusy, Store, staging_name, top_key

from .test_chatfiles import Pair


class Big:
    free = 1 << 50


def _entry(parts, data):
    return FW.Entry(tuple(parts), len(data), hashlib.sha256(data).hexdigest())


def _store(root, entries):
    return Store(str(root), entries, disk_usage=lambda _: Big)


def test_filestore_second_store_of_the_same_staging_is_busy_until_the_first_closes(tmp_path):
    good = os.urandom(6 * FW.CHUNK)
    entries = [_entry(["f.bin"], good)]
    first = _store(tmp_path, entries)
    first.write(0, 0, good[:FW.CHUNK])
    with pytest.raises(StagingBusy):
        _store(tmp_path, entries)
    first.close()
    second = _store(tmp_path, entries)
    assert second.have() == {0: FW.CHUNK}
    second.write(0, FW.CHUNK, good[FW.CHUNK:])
    ok, where = second.verify(0)
    assert ok and open(where, "rb").read() == good


def test_filestore_partial_replaced_on_disk_is_not_placed(tmp_path):
    data = b"x" * 1000
    entries = [_entry(["f.bin"], data)]
    store = _store(tmp_path, entries)
    store.write(0, 0, data)
    staging = tmp_path / staging_name("f.bin", top_key(entries))
    os.remove(str(staging))
    staging.write_bytes(b"y" * 1000)            # someone else's file at the name
    assert store.verify(0) == (False, None)
    assert not (tmp_path / "f.bin").exists()


def test_filestore_single_file_staging_symlink_is_not_followed(tmp_path):
    root = tmp_path / "down"
    root.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"precious contents\n")
    entries = [_entry(["x.txt"], b"attacker\n")]
    os.symlink(str(victim), str(root / staging_name("x.txt", top_key(entries))))
    store = _store(root, entries)
    assert store.have() == {}
    with pytest.raises(OSError):
        store.write(0, 0, b"attacker\n")
    assert victim.read_bytes() == b"precious contents\n"


def test_filestore_tree_staging_symlink_is_not_followed(tmp_path):
    root, outside = tmp_path / "down", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    entries = [_entry(["T", "a"], b"aaa"), _entry(["T", "b"], b"bbb")]
    os.symlink(str(outside), str(root / staging_name("T", top_key(entries))))
    store = _store(root, entries)
    with pytest.raises(OSError):
        store.write(0, 0, b"aaa")
    assert os.listdir(str(outside)) == []


def test_filestore_hard_linked_partial_is_refused(tmp_path):
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep")
    root = tmp_path / "down"
    root.mkdir()
    entries = [_entry(["x"], b"data")]
    os.link(str(victim), str(root / staging_name("x", top_key(entries))))
    with pytest.raises(OSError):
        _store(root, entries).write(0, 0, b"data")
    assert victim.read_bytes() == b"keep"


def test_filestore_staging_directories_are_private(tmp_path):
    entries = [_entry(["T", "sub", "a"], b"aaa")]
    store = _store(tmp_path, entries)
    store.write(0, 0, b"aaa")
    staging = tmp_path / staging_name("T", top_key(entries))
    for folder in (staging, staging / "sub"):
        assert stat.S_IMODE(os.stat(str(folder)).st_mode) == 0o700


def test_filestore_resume_points_follow_the_file_not_its_index(tmp_path):
    x, a, b = os.urandom(100), os.urandom(5000), os.urandom(3000)
    first = _store(tmp_path, [_entry(["x"], x), _entry(["T", "a"], a), _entry(["T", "b"], b)])
    first.write(1, 0, a[:2000])                 # T/a half received, then lost
    first.close()
    second = _store(tmp_path, [_entry(["T", "a"], a), _entry(["T", "b"], b)])
    assert second.have() == {0: 2000}


def test_safename_unsafe_path_is_an_oserror():
    with pytest.raises(OSError):
        S.safe_join("/tmp", [".."])


def test_chatfiles_same_files_offered_twice_second_accept_refused_busy(tmp_path):
    pair = Pair(tmp_path)
    pair.bob.disk.auto_accept = False
    data = os.urandom(3 * FW.CHUNK)
    entry = _entry(["f.bin"], data)
    for tid in ("%016x" % 1, "%016x" % 2):
        pair.alice.stream.send(FW.encode(FW.FileOffer(tid, 1, len(data), (entry,))), pair.now)
    pair.run_until(lambda: pair.kinds("bob").count("FileOffered") == 2, limit=5.0)
    assert pair.bob.accept("%016x" % 1, pair.now)
    assert pair.bob.accept("%016x" % 2, pair.now)
    assert [e.why for e in pair.bob.events() if type(e) is CF.FileRefused] == [CF.BUSY]
    assert pair.bob.desk.get("%016x" % 2).state == T.OFFERED


def test_chatfiles_transfer_onto_a_hostile_staging_fails_without_raising(tmp_path):
    pair = Pair(tmp_path)
    down, outside = tmp_path / "down", tmp_path / "outside"
    down.mkdir()
    outside.mkdir()
    (tmp_path / "src" / "T").mkdir(parents=True)
    (tmp_path / "src" / "T" / "a").write_bytes(b"aaa")
    entries = (_entry(["T", "a"], b"aaa"),)
    os.symlink(str(outside), str(down / staging_name("T", top_key(entries))))
    assert pair.offer(tmp_path / "src" / "T") == []
    pair.run_until(lambda: "FileFailed" in pair.kinds("bob"), limit=5.0)
    [failed] = [n.event for n in pair.news["bob"] if type(n.event) is T.FileFailed]
    assert failed.reason == T.IO_ERROR
    assert os.listdir(str(outside)) == []


def test_filestore_staging_swapped_before_placing_is_not_placed(tmp_path, monkeypatch):
    data = b"x" * 1000
    entries = [_entry(["f.bin"], data)]
    store = _store(tmp_path, entries)
    store.write(0, 0, data)
    staging = tmp_path / staging_name("f.bin", top_key(entries))
    checked = filesafe.Folder.same

    def swapped_after_the_check(folder, name, handle):
        answer = checked(folder, name, handle)
        (tmp_path / "theirs").write_bytes(data)
        os.replace(str(tmp_path / "theirs"), str(staging))
        return answer
    monkeypatch.setattr(filesafe.Folder, "same", swapped_after_the_check)
    with pytest.raises(OSError):
        store.verify(0)
    assert not (tmp_path / "f.bin").exists()


def test_filestore_without_dir_fd_still_refuses_links(tmp_path, monkeypatch):
    monkeypatch.setattr(filesafe, "RELATIVE", False)      # as on Windows
    data = b"tree file"
    entries = [_entry(["T", "sub", "a"], data), _entry(["T", "b"], b"")]
    store = _store(tmp_path / "down", entries)
    store.prepare({})
    store.write(0, 0, data)
    assert store.verify(0) == (True, None)
    assert store.verify(1) == (True, str(tmp_path / "down" / "T"))
    assert (tmp_path / "down" / "T" / "sub" / "a").read_bytes() == data
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep")
    single = [_entry(["x"], b"data")]
    os.symlink(str(victim), str(tmp_path / "down" / staging_name("x", top_key(single))))
    with pytest.raises(OSError):
        _store(tmp_path / "down", single).write(0, 0, b"data")
    assert victim.read_bytes() == b"keep"
