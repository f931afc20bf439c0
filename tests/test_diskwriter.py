"""The receiver's writes on the disk writer's thread: order kept, checks
wait for the writes, a failed write fails the transfer (disk full, I/O
error), a discard leaves no partial, the queue is bounded, the thread ends
when idle."""

import errno
import hashlib
import io
import os
import random
import threading
import time

import pytest

from peerpunch import diskwriter as DW
from peerpunch import filestore as FST
from peerpunch import transfer as T
from peerpunch.filedisk import Disk
from peerpunch.filewire import CHUNK, Entry

from .test_chatfiles import Pair

WAIT = 10.0                     # s: a condition that must come true comes true by then


@pytest.fixture(autouse=True)
def _writers_closed(monkeypatch):
    """Every Writer a test makes has its thread ended afterwards: no thread
    outlives its test (a later test forks, which wants none)."""
    made, init = [], DW.Writer.__init__

    def tracked(self, *args, **kwargs):
        init(self, *args, **kwargs)
        made.append(self)
    monkeypatch.setattr(DW.Writer, "__init__", tracked)
    yield
    for writer in made:
        writer.close()
    assert not any(writer.alive() for writer in made)


def _entry(name, data):
    return Entry((name,), len(data), hashlib.sha256(data).hexdigest())


def _until(condition):
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline
        time.sleep(0.001)


class Gate(io.BytesIO):
    """A file whose writes wait until ``gate`` is set."""

    def __init__(self):
        super().__init__()
        self.gate = threading.Event()
        self.entered = threading.Event()

    def write(self, data):
        self.entered.set()
        assert self.gate.wait(WAIT)
        return super().write(data)


def _in_thread(call):
    done = threading.Event()
    thread = threading.Thread(target=lambda: (call(), done.set()), daemon=True)
    thread.start()
    return done, thread


@pytest.mark.parametrize("batch", [1, 100000, DW.BATCH])
def test_diskwriter_many_small_writes_are_written_and_hashed_in_order(tmp_path, batch):
    rng = random.Random(5)
    pieces = [os.urandom(rng.randrange(1, 5000)) for _ in range(2000)]
    data = b"".join(pieces)
    store = FST.Store(str(tmp_path), [_entry("f.bin", data)],
                      writer=DW.Writer(depth=3, batch=batch))
    offset = 0
    for piece in pieces:
        store.write(0, offset, piece)
        offset += len(piece)
    assert store.verify(0) == (True, str(tmp_path / "f.bin"))
    store.close()
    assert (tmp_path / "f.bin").read_bytes() == data


def test_diskwriter_verify_waits_for_the_writes_queued():
    writer = DW.Writer(batch=1)
    lane = writer.lane()
    handle, digest = Gate(), hashlib.sha256()
    lane.write(handle, digest, b"abc")
    lane.write(handle, digest, b"def")
    assert handle.entered.wait(WAIT)
    done, thread = _in_thread(lane.wait)
    assert not done.wait(0.05)                  # the first write is held: wait has not returned
    handle.gate.set()
    thread.join(WAIT)
    assert done.is_set() and handle.getvalue() == b"abcdef"
    assert digest.hexdigest() == hashlib.sha256(b"abcdef").hexdigest()


def test_diskwriter_bounded_queue_makes_write_wait():
    writer = DW.Writer(depth=2, batch=1)
    lane = writer.lane()
    handle, digest = Gate(), hashlib.sha256()
    lane.write(handle, digest, b"1")             # taken by the thread, held at the gate
    assert handle.entered.wait(WAIT)
    lane.write(handle, digest, b"2")
    lane.write(handle, digest, b"3")             # the queue is full now
    done, thread = _in_thread(lambda: lane.write(handle, digest, b"4"))
    assert not done.wait(0.05)
    handle.gate.set()
    thread.join(WAIT)
    lane.wait()
    assert done.is_set() and handle.getvalue() == b"1234"


def test_diskwriter_failed_write_is_raised_by_the_next_call_and_later_jobs_skipped():
    lane = DW.Writer(batch=1).lane()

    class Full(io.BytesIO):
        def write(self, data):
            if self.tell() + len(data) > 4:
                raise OSError(errno.ENOSPC, "No space left on device")
            return super().write(data)
    handle = Full()
    lane.write(handle, hashlib.sha256(), b"ab")
    lane.write(handle, hashlib.sha256(), b"cde")          # fails
    with pytest.raises(OSError) as caught:
        lane.wait()
    assert caught.value.errno == errno.ENOSPC
    with pytest.raises(OSError):
        lane.write(handle, hashlib.sha256(), b"g")
    assert handle.getvalue() == b"ab"


def test_diskwriter_one_thread_started_with_the_first_job_serves_every_lane():
    writer = DW.Writer()
    assert not writer.alive()
    lanes, handles = [writer.lane(), writer.lane()], [io.BytesIO(), io.BytesIO()]
    for text in (b"x", b"y"):
        for lane, handle in zip(lanes, handles):
            lane.write(handle, hashlib.sha256(), text)
            lane.wait()
    assert writer.alive() and [h.getvalue() for h in handles] == [b"xy", b"xy"]
    assert sum(t.name == "disk writer" for t in threading.enumerate()) >= 1


def test_diskwriter_a_thread_that_cannot_start_fails_the_write_as_an_io_error(tmp_path,
                                                                               monkeypatch):
    """Thread.start raising ("can't start new thread"): the write raises an
    OSError (filework fails the transfer, IO_ERROR) and nothing waits for the
    job that never was; the next store tries again."""
    data = os.urandom(3 << 20)
    writer = DW.Writer()
    store = FST.Store(str(tmp_path), [_entry("f", data)], writer=writer)
    store.prepare({})

    def refuse(self):
        raise RuntimeError("can't start new thread")
    monkeypatch.setattr(threading.Thread, "start", refuse)
    with pytest.raises(OSError) as caught:
        store.write(0, 0, data)
    assert caught.value.errno == errno.EAGAIN and not writer.alive()
    monkeypatch.undo()
    done = threading.Event()
    threading.Thread(target=lambda: (store.discard(), done.set()), daemon=True).start()
    assert done.wait(WAIT), "discard waits for a job that was never queued"
    again = FST.Store(str(tmp_path / "again"), [_entry("f", data)], writer=writer)
    again.prepare({})
    again.write(0, 0, data)
    assert again.verify(0)[0] and writer.alive()


def test_diskwriter_chosen_by_the_cpus_the_process_may_use_or_the_environment():
    assert DW.writer_for(2, {}) is None and isinstance(DW.writer_for(4, {}), DW.Writer)
    assert isinstance(DW.writer_for(1, {DW.CHOICE: "on"}), DW.Writer)
    assert DW.writer_for(64, {DW.CHOICE: " OFF "}) is None
    assert DW.writer_for(1, {DW.CHOICE: "maybe"}) is None        # not a choice: the CPUs decide
    cpus = DW.usable_cpus()
    assert cpus >= 1 and cpus <= (os.cpu_count() or cpus)


class Counted(io.BytesIO):
    """A file that counts its write calls."""

    calls = 0

    def write(self, data):
        self.calls += 1
        return super().write(data)


def test_diskwriter_small_writes_are_held_and_written_as_one_job_when_waited_for():
    lane = DW.Writer().lane()
    handle, digest = Counted(), hashlib.sha256()
    for piece in (b"ab", b"cd", b"ef"):
        lane.write(handle, digest, piece)
    assert handle.getvalue() == b""                  # held: less than a batch
    lane.wait()
    assert (handle.getvalue(), handle.calls) == (b"abcdef", 1)
    assert digest.hexdigest() == hashlib.sha256(b"abcdef").hexdigest()


def test_diskwriter_writes_to_another_file_queue_what_is_held_first():
    lane = DW.Writer().lane()
    first, second = Counted(), Counted()
    lane.write(first, hashlib.sha256(), b"one")
    lane.write(second, hashlib.sha256(), b"two")
    lane.drain()
    assert (first.getvalue(), second.getvalue()) == (b"one", b"two")


def test_diskwriter_writable_buffer_is_copied_when_held():
    lane = DW.Writer().lane()
    handle, digest = io.BytesIO(), hashlib.sha256()
    lane.write(handle, digest, b"first")
    buffer = bytearray(b"second")
    lane.write(handle, digest, memoryview(buffer))
    buffer[:] = b"CHANGE"
    lane.wait()
    assert handle.getvalue() == b"firstsecond"


def test_diskwriter_drop_skips_what_is_held():
    lane = DW.Writer().lane()
    handle = io.BytesIO()
    lane.write(handle, hashlib.sha256(), b"never")
    lane.drop()
    lane.wait()
    assert handle.getvalue() == b""


def test_diskwriter_discard_with_writes_pending_leaves_no_partial(tmp_path):
    writer = DW.Writer(depth=4, batch=1)
    held = Gate()
    writer.lane().write(held, hashlib.sha256(), b"x")      # the thread is held here
    assert held.entered.wait(WAIT)
    data = os.urandom(3 * CHUNK)
    store = FST.Store(str(tmp_path), [_entry("f.bin", data)], writer=writer)
    store.prepare({})
    for offset in range(0, len(data), CHUNK):
        store.write(0, offset, data[offset:offset + CHUNK])
    assert os.listdir(str(tmp_path)) != []                  # the partial file, empty yet
    done, thread = _in_thread(store.discard)
    assert not done.wait(0.05)                              # waits for the job being done
    held.gate.set()
    thread.join(WAIT)
    assert done.is_set() and os.listdir(str(tmp_path)) == []


def _pair_writing_through(tmp_path, fail_at, error):
    """A Pair whose bob writes through a disk writer, his disk failing with
    *error* once *fail_at* bytes are written."""
    pair = Pair(tmp_path)
    pair.bob.disk = Disk(None, auto_accept=str(tmp_path / "down"), writer=DW.Writer())
    opened = FST.Store._opened

    class Failing:
        def __init__(self, handle):
            self._handle, self._written = handle, 0

        def write(self, data):
            if self._written + len(data) > fail_at:
                raise OSError(error, os.strerror(error))
            self._written += len(data)
            return self._handle.write(data)

        def __getattr__(self, name):
            return getattr(self._handle, name)

    def failing(store, index, offset):
        current = opened(store, index, offset)
        current[1] = Failing(current[1])
        return current
    return pair, failing


@pytest.mark.parametrize("error, reason", [(errno.ENOSPC, T.DISK_FULL), (errno.EIO, T.IO_ERROR)])
def test_chatfiles_write_failing_on_the_writer_thread_fails_the_transfer(
        tmp_path, monkeypatch, error, reason):
    pair, failing = _pair_writing_through(tmp_path, 2 * CHUNK, error)
    monkeypatch.setattr(FST.Store, "_opened", failing)
    path = tmp_path / "f.bin"
    path.write_bytes(os.urandom(20 * CHUNK))
    assert pair.offer(path) == []
    pair.run_until(lambda: "FileFailed" in pair.kinds("bob"), limit=30.0)
    [failed] = [n.event for n in pair.news["bob"] if type(n.event) is T.FileFailed]
    assert failed.reason == reason and not failed.remote
    assert os.listdir(str(tmp_path / "down")) == []         # the partial removed


def test_chatfiles_file_through_the_disk_writer_arrives_byte_identical(tmp_path):
    pair = Pair(tmp_path)
    pair.bob.disk = Disk(None, auto_accept=str(tmp_path / "down"), writer=DW.Writer(depth=2))
    path = tmp_path / "f.bin"
    path.write_bytes(os.urandom(50 * CHUNK + 7))
    assert pair.offer(path) == []
    pair.run_until(lambda: "FileReceived" in pair.kinds("bob"), limit=60.0)
    assert (tmp_path / "down" / "f.bin").read_bytes() == path.read_bytes()
    assert [k for k in pair.kinds("bob") if k == "FileFailed"] == []


def test_writer_only_where_a_core_is_left_for_it():
    """Measured on 2 cores (both peers there): the thread costs more than it
    saves; with 3 or more it runs beside the network thread."""
    assert all(DW.writer_for(cpus, {}) is None for cpus in (None, 1, 2))
    assert all(isinstance(DW.writer_for(cpus, {}), DW.Writer) for cpus in (DW.MIN_CPUS, 8))


def test_diskwriter_close_ends_the_thread_after_the_jobs_and_a_later_job_starts_one():
    writer = DW.Writer()
    lane, handle = writer.lane(), io.BytesIO()
    lane.write(handle, hashlib.sha256(), b"a" * (writer.batch + 1))
    writer.close()
    assert not writer.alive() and handle.getvalue() == b"a" * (writer.batch + 1)
    lane.write(handle, hashlib.sha256(), b"b")
    lane.wait()
    assert writer.alive() and handle.getvalue().endswith(b"ab")
