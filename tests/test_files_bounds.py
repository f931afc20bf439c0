"""Bounds on what offers can make the receiver hold: receiving transfers
per chat and in the process, bytes reserved across all of them against the
free space, an idle receiving transfer fails, staging kept only when we saw
the partner go, stale staging removed at start."""

import hashlib
import os

import pytest

from peerpunch import chatfiles as CF
from peerpunch import filestore as FS
from peerpunch import filewire as FW
from peerpunch import transfer as T
from peerpunch.delivery import PACKET_SIZE
from peerpunch.filedisk import Disk, STALE_AFTER, sweep

from .test_chatfiles import Pair


class TwoGB:
    free = 2 * 10 ** 9


class Big:
    free = 1 << 50


def _entry(parts, data):
    return FW.Entry(tuple(parts), len(data), hashlib.sha256(data).hexdigest())


def _raw_offer(pair, tid, entries):
    """Alice's stream carries an offer no Sender of hers stands behind."""
    total = sum(e.size for e in entries)
    message = FW.FileOffer("%016x" % tid, len(entries), total, tuple(entries))
    pair.alice.stream.send(FW.encode(message), pair.now)


def _bob_states(pair):
    return [t.state for t in pair.bob.desk.transfers.values()]


def _staged(down):
    return [n for n in os.listdir(str(down)) if n.endswith(".peerpunch-part")]


def test_files_auto_accept_reserves_space_across_offers(tmp_path):
    pair = Pair(tmp_path)
    pair.bob = CF.ChatFiles("alice", Disk(None, auto_accept=str(tmp_path / "down"),
                                          disk_usage=lambda _: TwoGB), PACKET_SIZE)
    pair.bob.start(("files1",))
    for i in range(10):            # 10 offers of 1 GB: each fits alone, not together
        _raw_offer(pair, i, [FW.Entry(("f%d.bin" % i,), 10 ** 9, "%064x" % i)])
    pair.run_until(lambda: pair.kinds("bob").count("FileFailed") >= 1 and
                   pair.kinds("bob").count("FileOffered") == pair.kinds("bob").count(
                       "FileFailed") + 1, limit=10.0)
    assert _bob_states(pair) == [T.RECEIVING]
    failed = [n.event.reason for n in pair.news["bob"] if type(n.event) is T.FileFailed]
    assert set(failed) == {T.DISK_FULL}


def test_files_receiving_per_chat_capped_next_accepted_when_one_ends(tmp_path):
    pair = Pair(tmp_path)
    for i in range(3):
        _raw_offer(pair, i, [_entry(["f%d" % i], b"x" * (i + 1))])
    pair.run_until(lambda: _bob_states(pair).count(T.RECEIVING) == CF.MAX_RECEIVING
                   and T.OFFERED in _bob_states(pair), limit=5.0)
    assert [e.why for e in pair.news["bob"] if type(e) is CF.FileRefused] == [CF.TOO_MANY]
    start = pair.now        # no data comes: the two fail after IDLE_TIMEOUT, the third starts
    pair.run_until(lambda: pair.bob.desk.get("%016x" % 2) is not None and
                   pair.bob.desk.get("%016x" % 2).state == T.RECEIVING, limit=start + 100)
    assert CF.IDLE_TIMEOUT <= pair.now - start < CF.IDLE_TIMEOUT + 5
    failed = [n.event for n in pair.news["bob"]
              if type(n) is CF.FileNews and type(n.event) is T.FileFailed]
    assert [(f.reason, f.remote) for f in failed] == [(T.LOST, False)] * 2


def test_files_stores_in_the_process_capped(tmp_path):
    stores = []
    for i in range(FS.MAX_RECEIVING):
        store = FS.Store(str(tmp_path), [_entry(["f%d" % i], b"x")], disk_usage=lambda _: Big)
        store.prepare({})
        stores.append(store)
    extra = FS.Store(str(tmp_path), [_entry(["g"], b"x")], disk_usage=lambda _: Big)
    with pytest.raises(FS.TooMany):
        extra.prepare({})
    stores.pop().close()
    extra.prepare({})
    extra.close()
    for store in stores:
        store.close()


def test_filestore_reservation_shrinks_as_data_is_written(tmp_path):
    usage = lambda _: type("U", (), {"free": 10 ** 6 + FS.SPACE_MARGIN})
    data = os.urandom(600 * 1000)
    first = FS.Store(str(tmp_path), [_entry(["a"], data)], disk_usage=usage)
    first.prepare({})
    second = FS.Store(str(tmp_path), [_entry(["b"], data)], disk_usage=usage)
    with pytest.raises(FS.DiskFull):
        second.prepare({})
    first.write(0, 0, data[:300 * 1000])     # the disk's free space is what usage says
    second.prepare({})
    first.close()
    second.close()


def _partial_then(pair, message):
    """Bob receives 1000 of 5000 bytes of a tree's file, then *message* (or nothing)."""
    data = os.urandom(5000)
    entries = [_entry(["T", "a"], data), _entry(["T", "b"], b"bb")]
    _raw_offer(pair, 9, entries)
    pair.run_until(lambda: T.RECEIVING in _bob_states(pair), limit=5.0)
    pair.alice.stream.send(FW.encode(FW.Chunk("%016x" % 9, 0, 0, data[:1000])), pair.now)
    if message is not None:
        pair.alice.stream.send(FW.encode(message), pair.now)
    pair.run_until(lambda: "FileFailed" in pair.kinds("bob"), limit=pair.now + 100)


def test_files_partner_saying_lost_does_not_keep_the_staging(tmp_path):
    pair = Pair(tmp_path)
    _partial_then(pair, FW.FileCancel("%016x" % 9, T.LOST))
    assert _staged(tmp_path / "down") == []


def test_files_our_idle_timeout_keeps_the_staging_for_a_resume(tmp_path):
    pair = Pair(tmp_path)
    _partial_then(pair, None)
    assert len(_staged(tmp_path / "down")) == 1


def test_files_hash_mismatch_discards_the_whole_staging(tmp_path):
    pair = Pair(tmp_path)
    entries = [FW.Entry(("T", "a"), 3, "0" * 64), _entry(["T", "b"], b"bb")]
    _raw_offer(pair, 4, entries)
    pair.run_until(lambda: T.RECEIVING in _bob_states(pair), limit=5.0)
    pair.alice.stream.send(FW.encode(FW.Chunk("%016x" % 4, 0, 0, b"abc")), pair.now)
    pair.run_until(lambda: "FileFailed" in pair.kinds("bob"), limit=pair.now + 10)
    assert _staged(tmp_path / "down") == []


def test_filedisk_sweep_removes_only_stale_staging(tmp_path):
    now = 1e9
    old, fresh = now - STALE_AFTER - 60, now - 60
    names = {".a.0123.peerpunch-part": old, ".b.4567.peerpunch-part": fresh,
             "kept.peerpunch-part": old, ".c.89ab.peerpunch-part": old}
    for name, when in names.items():
        (tmp_path / name).write_bytes(b"x")
        os.utime(str(tmp_path / name), (when, when))
    tree = tmp_path / ".T.cdef.peerpunch-part"
    (tree / "sub").mkdir(parents=True)
    (tree / "sub" / "f").write_bytes(b"x")
    for path in (tree, tree / "sub"):
        os.utime(str(path), (old, old))
    os.utime(str(tree / "sub" / "f"), (fresh, fresh))     # still being resumed: kept
    assert sweep(str(tmp_path), now) == [".a.0123.peerpunch-part", ".c.89ab.peerpunch-part"]
    assert sorted(os.listdir(str(tmp_path))) == [
        ".T.cdef.peerpunch-part", ".b.4567.peerpunch-part", "kept.peerpunch-part"]
    os.utime(str(tree / "sub" / "f"), (old, old))
    assert Disk(str(tmp_path), now=now).swept == [".T.cdef.peerpunch-part"]


def test_filedisk_collect_takes_a_path_under_the_home_directory(tmp_path, monkeypatch):
    """/send ~/x.txt: the shell's ~ is expanded before the file is looked for."""
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "x.txt").write_bytes(b"home file")
    entries, source, skipped = Disk(str(tmp_path / "down")).collect(["~/x.txt"])
    source.close()
    assert [e[0] for e in entries] == [("x.txt",)] and not skipped
