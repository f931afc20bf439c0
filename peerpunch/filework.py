"""The receivers' disk work, a bounded batch per network-thread turn.

Theory of operation
-------------------
A :class:`~peerpunch.filerecv.Receiver` asks for disk work as effects:
Write (a data message's bytes) and Verify (a whole file: check, rename,
place). ChatFiles queues them here, in order, and :meth:`Backlog.run`
does them on each turn of the network thread, at most CHECKS_PER_TURN
Verify per turn: an accept of 50,000 empty (or already received) files
would otherwise check and place them all in one call, and chat lines would
wait behind it. Writes are done as they come (one data message each,
already in memory); those behind a waiting Verify wait with it, so the
order of a file's bytes never changes. A file resumed from a partial
first has its prefix hashed (:meth:`Store.warm`), at most HASH_PER_TURN
bytes a turn, the effects behind it waiting. Effects of a receiver that ended
meanwhile are dropped. A disk error fails the receiver (DISK_FULL when the
disk is full, else IO_ERROR). A store given a disk writer by the shell
(:mod:`peerpunch.diskwriter`) only queues a Write (its bytes written and
hashed on the writer's thread, a MiB at a time) and tells a failed one
from a later Write or the file's Verify, some data messages later.
"""

import collections
import errno
import logging

from . import transfer as T

log = logging.getLogger(__name__)

CHECKS_PER_TURN = 256
HASH_PER_TURN = 4 << 20        # bytes of a resumed file's prefix hashed per turn


class Backlog:
    """Receivers' Write and Verify effects waiting to be done, in order."""

    def __init__(self):
        self._queue = collections.deque()

    def __len__(self):
        return len(self._queue)

    def add(self, receiver, effects):
        self._queue.extend((receiver, effect) for effect in effects)

    def run(self, stores, checks=CHECKS_PER_TURN):
        """Do the effects, up to *checks* Verify; *stores*: receiver id ->
        its store."""
        while self._queue:
            receiver, effect = self._queue[0]
            verify = type(effect) is T.Verify
            if verify and not checks:
                return
            if receiver.state == T.RECEIVING:
                if not _warm(receiver, effect, stores.get(receiver.id)):
                    return               # its resumed prefix: more hashing next turn
            if receiver.state == T.RECEIVING:
                checks -= verify
                _do(receiver, effect, stores.get(receiver.id))
            self._queue.popleft()


def _warm(receiver, effect, store):
    """True if *store* is ready for *effect* (or failed: nothing more to do)."""
    offset = effect.offset if type(effect) is T.Write else store.entries[effect.index].size
    try:
        return store.warm(effect.index, offset, HASH_PER_TURN)
    except OSError as exc:
        log.warning("transfer %s: %s", receiver.id, exc)
        receiver.fail(T.DISK_FULL if is_full(exc) else T.IO_ERROR)
        return True


def _do(receiver, effect, store):
    try:
        if type(effect) is T.Write:
            store.write(effect.index, effect.offset, effect.data)
        else:
            receiver.verified(effect.index, *store.verify(effect.index))
    except OSError as exc:
        log.warning("transfer %s: %s", receiver.id, exc)
        receiver.fail(T.DISK_FULL if is_full(exc) else T.IO_ERROR)


def is_full(exc):
    """True if *exc* says the disk (or the quota) is full."""
    return getattr(exc, "errno", None) in (errno.ENOSPC, errno.EDQUOT) or \
        type(exc).__name__ == "DiskFull"
