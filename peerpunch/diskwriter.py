"""The receiver's file writes and SHA-256 on a thread of their own.

Theory of operation
-------------------
A received data message costs the network thread a file write and a
SHA-256 update of its bytes (about 60 us for 60 KiB). Both release the GIL,
so done on another thread they run beside the network thread's Python work
on another core. A :class:`Writer` (one per peer process, made by the
shell) owns a queue of at most DEPTH jobs and one daemon thread that does
them in order; the thread starts with the first job and ends after IDLE
seconds without one.

Each :class:`~peerpunch.filestore.Store` writes through a :class:`Lane` of
the writer: ``write(handle, digest, data)`` queues the job and returns at
once, or waits while DEPTH jobs are queued (back-pressure: memory stays
bounded, the network thread slows to the disk's pace). Jobs of one lane
are done in the order given, so the hash is of exactly the bytes written,
in order. What touches the handle or the digest from the store's side
first waits for the lane's jobs: ``wait()`` (raises the lane's error),
``drain()`` (does not) and ``drop()`` (jobs not yet done are skipped:
nothing is written after it returns). A job that fails (disk full, I/O
error) keeps its error: every later ``write`` and ``wait`` of that lane
raises it, so a failure is told one data message (or a check) later than
a synchronous write would tell it, and the jobs behind it are skipped.

*data* must not change once given: bytes, or a read-only view of bytes
(anything else is copied).
"""

import queue
import threading

DEPTH = 8              # jobs queued at most, all lanes: 8 data messages, ~0.5 MB
IDLE = 2.0             # s without a job before the thread ends


class Writer:
    """A thread doing the lanes' jobs in order, at most *depth* queued."""

    def __init__(self, depth=DEPTH, idle=IDLE):
        self._jobs = queue.Queue(depth)
        self._idle = idle
        self._lock = threading.Lock()      # guards _thread against its ending
        self._thread = None

    def lane(self):
        """A new lane (one per Store)."""
        return Lane(self)

    def alive(self):
        """True while the thread runs."""
        with self._lock:
            return self._thread is not None

    def _put(self, job):
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="disk writer",
                                                daemon=True)
                self._thread.start()
            self._jobs.put(job)            # waits while DEPTH are queued

    def _run(self):
        while True:
            try:
                job = self._jobs.get(timeout=self._idle)
            except queue.Empty:
                with self._lock:
                    if self._jobs.empty():
                        self._thread = None
                        return
                continue
            job[0]._do(job[1], job[2], job[3])


class Lane:
    """One store's jobs on a :class:`Writer`, done in order."""

    def __init__(self, writer):
        self._writer = writer
        self._cond = threading.Condition(threading.Lock())
        self._pending = 0
        self._error = None
        self._dropped = False

    def write(self, handle, digest, data):
        """Queue: *data* written to *handle*, then hashed into *digest*;
        raises the error of an earlier job."""
        if type(data) is not bytes and not (type(data) is memoryview and data.readonly):
            data = bytes(data)
        with self._cond:
            if self._error is not None:
                raise self._error
            self._pending += 1
        self._writer._put((self, handle, digest, data))

    def wait(self):
        """Return when the jobs queued are done; raises the error of one."""
        self.drain()
        if self._error is not None:
            raise self._error

    def drain(self):
        """Return when the jobs queued are done (errors kept for ``wait``)."""
        with self._cond:
            while self._pending:
                self._cond.wait()

    def drop(self):
        """Skip the jobs not yet done; return when none is being done."""
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
