"""The receiver's file writes and SHA-256 on a thread of their own.

Theory of operation
-------------------
A received data message costs the network thread a file write and a
SHA-256 update of its bytes (about 60 us for 60 KiB). Both release the GIL,
so done on another thread they run beside the network thread's Python work
on another core. A :class:`Writer` (one per peer process, made by the
shell where a core is left for it: :func:`writer_for`) owns a queue of at
most DEPTH jobs and one daemon thread that does them in order; the thread
starts with the first job and then waits for more (a thread that cannot
be started fails that transfer as an I/O error; the next one tries again).

The thread must take the GIL back after each write and each hash, and a
busy network thread gives it up only every few milliseconds (the
interpreter's switch interval): a job per 60-KiB message starves it, and
the network thread then waits on the full queue (measured: slower than
writing in place). So a lane joins a file's consecutive messages into one
job of BATCH bytes: three GIL hand-overs a MiB.

Each :class:`~peerpunch.filestore.Store` writes through a :class:`Lane` of
the writer: ``write(handle, digest, data)`` holds the data, queues a job
when BATCH bytes are held (or the file changes) and returns, or waits
while DEPTH jobs are queued (back-pressure: memory stays bounded, about
(DEPTH + 2) x BATCH -- queued, being done, one waiting to be queued --
plus BATCH and a data message held per store, twice that for a moment
while a job is joined; the network thread slows to the disk's pace). Jobs of
one lane are done in the order given, so the hash is of exactly the bytes
written, in order. What touches the handle or the digest from the store's
side first waits for the lane: ``wait()`` (queues what is held, waits for
the jobs, raises the lane's error), ``drain()`` (the same, raises nothing)
and ``drop()`` (what is held and the jobs not yet done are skipped:
nothing is written after it returns). A job that fails (disk full, I/O
error) keeps its error: every later ``write`` and ``wait`` of that lane
raises it and the jobs behind it are skipped, so a failure is told some
data messages later than a write in place would tell it (a few MiB at
most), at the latest by the file's check.

*data* must not change once given: bytes, or a read-only view of bytes
(anything else is copied).
"""

import errno
import os
import queue
import threading

MIN_CPUS = 3           # a writer thread only where a core is left for it (see writer_for)
DEPTH = 2              # jobs queued at most, all lanes
BATCH = 1 << 20        # bytes of one file joined into one job
CHOICE = "PEERPUNCH_DISK_WRITER"    # "on" or "off" overrides writer_for's choice


def usable_cpus():
    """The processors this process may run on (its affinity, where the
    system says; a container's CPU quota is not seen), else the machine's."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count()


def writer_for(cpus, environ=os.environ):
    """A Writer for a process that may use *cpus* processors (None:
    unknown), or None (write in place); *environ*'s CHOICE, "on" or "off",
    decides instead (any other value leaves it to *cpus*). The thread pays only where a core is free for it: at
    full speed the network thread takes one core and the kernel's UDP work
    much of another. Measured on the 2-core lab machine (both peers, their
    routers and the writer on it, 200 MB, nine same-run pairs, 2026-11-30):
    with the writer 8 % slower than without (98 vs 106 MB/s, six runs of
    each, alternating), though the receiving network thread used 14 % less
    CPU: there, three busy threads share two cores."""
    choice = environ.get(CHOICE, "").strip().lower()
    if choice in ("on", "off"):
        return Writer() if choice == "on" else None
    return Writer() if (cpus or 1) >= MIN_CPUS else None


class Writer:
    """A thread doing the lanes' jobs in order, at most *depth* queued; a
    lane queues what it holds once it is *batch* bytes or more."""

    def __init__(self, depth=DEPTH, batch=BATCH):
        self._jobs = queue.Queue(depth)
        self.batch = batch
        self._lock = threading.Lock()      # one thread started, however many lanes
        self._thread = None

    def lane(self):
        """A new lane (one per Store)."""
        return Lane(self)

    def alive(self):
        """True while the thread runs."""
        with self._lock:
            return self._thread is not None

    def _put(self, job):
        """Queue *job* (waits while DEPTH are queued); raises RuntimeError
        if the thread cannot be started."""
        with self._lock:
            if self._thread is None:
                thread = threading.Thread(target=self._run, name="disk writer", daemon=True)
                thread.start()
                self._thread = thread
        self._jobs.put(job)                # not under the lock: the thread never needs it

    def close(self):
        """End the thread once the jobs queued are done (a peer's ends with
        its process; tests end theirs); a later job starts a new one."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._jobs.put(None)
            thread.join()

    def _run(self):
        while True:
            job = self._jobs.get()
            if job is None:
                return
            job[0]._do(job[1], job[2], job[3])


class Lane:
    """One store's jobs on a :class:`Writer`, done in order."""

    def __init__(self, writer):
        self._writer = writer
        self._cond = threading.Condition(threading.Lock())
        self._pending = 0
        self._error = None
        self._dropped = False
        self._held = []                    # data not queued yet, all for _held_for
        self._held_size = 0
        self._held_for = None              # (handle, digest)

    def write(self, handle, digest, data):
        """Queue: *data* written to *handle*, then hashed into *digest*;
        raises the error of an earlier job."""
        if self._error is not None:
            raise self._error
        if self._held_for is not None and self._held_for[0] is not handle:
            self._flush()
        if type(data) is not bytes and not (type(data) is memoryview and data.readonly):
            data = bytes(data)
        self._held.append(data)
        self._held_size += len(data)
        self._held_for = (handle, digest)
        if self._held_size >= self._writer.batch:
            self._flush()

    def _flush(self):
        """Queue what is held as one job."""
        if not self._held:
            return
        data = self._held[0] if len(self._held) == 1 else b"".join(self._held)
        handle, digest = self._held_for
        self._held, self._held_size, self._held_for = [], 0, None
        with self._cond:
            self._pending += 1
        try:
            self._writer._put((self, handle, digest, data))
        except Exception as exc:           # no thread: this data is lost, the transfer fails
            with self._cond:
                self._pending -= 1
                self._error = OSError(errno.EAGAIN, "no disk writer thread: %s" % exc)
                self._cond.notify_all()
            raise self._error from None

    def wait(self):
        """Return when the jobs queued are done; raises the error of one."""
        self.drain()
        if self._error is not None:
            raise self._error

    def drain(self):
        """Return when the jobs queued are done (errors kept for ``wait``)."""
        self._flush()
        with self._cond:
            while self._pending:
                self._cond.wait()

    def drop(self):
        """Skip what is held and the jobs not yet done (this lane writes
        nothing more); return when none is being done."""
        self._held, self._held_size, self._held_for = [], 0, None
        with self._cond:
            self._dropped = True
        self.drain()

    def _do(self, handle, digest, data):
        with self._cond:
            skip = self._dropped or self._error is not None
        error = None
        if not skip:
            try:
                handle.write(data)
                digest.update(data)
            except Exception as exc:       # told to the store's thread, which fails the transfer
                error = exc
        with self._cond:
            if error is not None:
                self._error = error
            self._pending -= 1
            if not self._pending:
                self._cond.notify_all()
