"""Disk work per network-thread turn stays small: a free ``name (N)`` is
found in a logarithmic number of checks, and the files already whole at
an accept (empty ones, say) are verified and placed a batch per turn."""

import os

import pytest

from peerpunch import safename as S


def _taken(names):
    calls = []

    def exists(path):
        calls.append(path)
        return os.path.basename(path) in names
    return exists, calls


def test_safename_unique_name_with_many_taken_checks_few():
    names = {"a.txt"} | {S.numbered("a.txt", n) for n in range(1, 5001)}
    exists, calls = _taken(names)
    assert S.unique_name("/d", "a.txt", exists=exists) == "a (5001).txt"
    assert len(calls) <= 30


def test_safename_unique_name_with_a_gap_still_returns_a_free_name():
    names = {"a.txt"} | {S.numbered("a.txt", n) for n in (1, 2, 3, 5, 6, 7, 8)}
    exists, _ = _taken(names)
    assert S.unique_name("/d", "a.txt", exists=exists) not in names


def test_safename_unique_name_all_taken_raises():
    exists, _ = _taken(set())
    with pytest.raises(FileExistsError):
        S.unique_name("/d", "a", exists=lambda path: True, limit=50)


def test_chatfiles_accept_of_many_empty_files_is_placed_a_batch_per_turn(tmp_path):
    import hashlib

    from peerpunch import filewire as FW
    from peerpunch.filework import CHECKS_PER_TURN

    from .test_chatfiles import Pair
    pair = Pair(tmp_path)
    empty = hashlib.sha256(b"").hexdigest()
    entries = [FW.Entry(("e%05d" % i,), 0, empty) for i in range(3 * CHECKS_PER_TURN + 5)]
    for message in FW.offer_messages("%016x" % 3, entries):
        pair.alice.stream.send(message, pair.now)
    down = tmp_path / "down"
    counts = []
    while "FileReceived" not in pair.kinds("bob"):
        assert pair.now < 10.0
        pair.step()
        counts.append(len(os.listdir(str(down))) if down.exists() else 0)
    steps = [b - a for a, b in zip(counts, counts[1:])]
    assert max(steps) <= CHECKS_PER_TURN and counts[-1] == len(entries)


def test_chatfiles_resumed_prefix_is_hashed_a_bit_per_turn(tmp_path, monkeypatch):
    from peerpunch import filestore, filework
    from peerpunch.filewire import CHUNK

    from .test_chatfiles import Pair
    source = tmp_path / "big.bin"
    data = os.urandom(40 * CHUNK)
    source.write_bytes(data)
    pair = Pair(tmp_path)
    entries = pair.alice.disk.collect([str(source)])[0]
    first = filestore.Store(str(tmp_path / "down"), entries)
    first.prepare({})
    for offset in range(0, 30 * CHUNK, CHUNK):          # 30 of 40 chunks, then lost
        first.write(0, offset, data[offset:offset + CHUNK])
    first.close()
    hashed = []
    whole = filestore._hash_prefix

    def counted(handle, digest, start, length):
        hashed.append(length)
        return whole(handle, digest, start, length)
    monkeypatch.setattr(filestore, "_hash_prefix", counted)
    monkeypatch.setattr(filework, "HASH_PER_TURN", 4 * CHUNK)
    assert pair.offer(source) == []
    pair.run_until(lambda: "FileReceived" in pair.kinds("bob"), limit=30.0)
    assert (tmp_path / "down" / "big.bin").read_bytes() == data
    assert sum(hashed) == 30 * CHUNK and max(hashed) <= 4 * CHUNK
