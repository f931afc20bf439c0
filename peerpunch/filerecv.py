"""The receiving end of one file transfer.

Theory of operation
-------------------
A :class:`Receiver` is made from the FileOffer that opens a transfer; the
FileMore messages that follow complete its entries (ASSEMBLING), and when
all ``count`` are there and the offer checks out
(:func:`~peerpunch.transfer.check_entries`) it tells FileOffered and waits
for the user. :meth:`accept` takes the resume points the disk side found
(``have``: file index -> bytes already verified, see
:mod:`peerpunch.filestore`) and answers FileAccept; :meth:`decline` answers
FileDecline. Refusing for lack of space is :meth:`fail` with DISK_FULL.

Data then comes in offer order, each file from its resume point: a Chunk
must be for the current file, at exactly the next offset, and not past its
end; anything else fails the transfer (PROTOCOL), since the stream never
reorders or duplicates. Each good Chunk comes back as a
:class:`~peerpunch.transfer.Write` for the shell to do; when a file is whole
(at once, for those already complete or empty) a
:class:`~peerpunch.transfer.Verify`. The shell checks the file's SHA-256 and
reports with :meth:`verified`: a mismatch fails the transfer
(HASH_MISMATCH), never keeping the file; when every file is verified the
receiver answers FileDone and tells FileReceived.
"""

import logging

from . import filewire as FW
from . import transfer as T
from .progress import Meter

log = logging.getLogger(__name__)

OFFERED, ACCEPT, DECLINE, DONE, CANCEL, FAIL = (
    "offered", "accept", "decline", "done", T.CANCEL, T.FAIL)
LIVE = (T.ASSEMBLING, T.OFFERED, T.RECEIVING)
TRANSITIONS = {
    (T.ASSEMBLING, OFFERED): T.OFFERED,
    (T.OFFERED, ACCEPT): T.RECEIVING,
    (T.OFFERED, DECLINE): T.DECLINED,
    (T.RECEIVING, DONE): T.DONE,
}
TRANSITIONS.update({(state, CANCEL): T.CANCELLED for state in LIVE})
TRANSITIONS.update({(state, FAIL): T.FAILED for state in LIVE})


class Receiver(T.Machine):
    """One offer from the partner, opened by *offer* (a decoded FileOffer)."""

    TRANSITIONS = TRANSITIONS

    def __init__(self, offer):
        self.id = offer.id
        self.group = offer.group         # the group id it says it was offered to, or None
        self.count = offer.count
        self.total = offer.total
        self.entries = []
        self.state = T.ASSEMBLING
        self.meter = None
        self.where = []
        self._index = 0                  # the file being received...
        self._offset = 0                 # ...and how much of it is here
        self._have = {}                  # resume points: file index -> bytes
        self._verified = 0
        self.cost = 0                    # entry bytes so far (at most MAX_OFFER_BYTES)
        self.out = T.Outbox()
        self._add(offer.files)

    @property
    def names(self):
        return T.top_names(self.entries)

    def received(self, message, now):
        """A decoded message of this transfer from the partner: the effects
        (Write, Verify) for the shell to do, in order."""
        kind = type(message)
        if kind is FW.Chunk:
            return self._chunk(message, now)
        if kind is FW.FileMore and self.state == T.ASSEMBLING:
            self._add(message.files)
        elif kind is FW.FileCancel:
            self._end(message.reason, remote=True)
        else:
            log.debug("transfer %s: %s ignored in %s", self.id, kind.__name__, self.state)
        return []

    def accept(self, have, now):
        """The user accepts; *have*: file index -> bytes already verified
        on disk. Returns the effects (Verify of files already whole)."""
        have = {i: n for i, n in have.items() if n and i < len(self.entries)}
        if any(n > self.entries[i].size for i, n in have.items()):
            raise ValueError("more bytes than the file has")
        if not self._fire(ACCEPT):
            return []
        self._have = have
        self._offset = have.get(0, 0)
        resumed = sum(have.values())
        self.meter = Meter(self.total, resumed, now)
        self.out.send(FW.FileAccept(self.id, have))
        self.out.tell(T.FileAccepted(self.id, resumed))
        return self._whole()

    def decline(self):
        if self._fire(DECLINE):
            self.out.send(FW.FileDecline(self.id))

    def verified(self, index, ok, where=None):
        """The shell checked file *index*: *ok* if its SHA-256 matched;
        *where*: the path it was saved as, if that finished a top-level name."""
        if self.state != T.RECEIVING:
            return
        if not ok:
            self._end(T.HASH_MISMATCH, remote=False)
            return
        if where is not None:
            self.where.append(where)
        self._verified += 1
        if self._verified == len(self.entries) and self._fire(DONE):
            self.out.send(FW.FileDone(self.id))
            self.out.tell(T.FileReceived(self.id, self.names, self.count, self.total,
                                         tuple(self.where)))

    def _add(self, files):
        self.entries.extend(files)
        self.cost += sum(FW.entry_cost(e.parts) for e in files)
        if len(self.entries) > self.count or self.cost > FW.MAX_OFFER_BYTES:
            self._end(T.PROTOCOL, remote=False)
        elif len(self.entries) == self.count:
            try:
                T.check_entries(self.entries, self.total)
            except FW.FileWireError as e:
                log.info("transfer %s: offer refused: %s", self.id, e)
                self._end(T.PROTOCOL, remote=False)
                return
            if self._fire(OFFERED):
                self.out.tell(T.FileOffered(self.id, self.names, self.count, self.total))

    def _chunk(self, chunk, now):
        if self.state != T.RECEIVING:
            log.debug("transfer %s: data ignored in %s", self.id, self.state)
            return []
        size = self.entries[self._index].size if self._index < len(self.entries) else 0
        if (chunk.index != self._index or chunk.offset != self._offset
                or not chunk.data or self._offset + len(chunk.data) > size):
            log.info("transfer %s: data out of place (%d@%d)", self.id, chunk.index, chunk.offset)
            self._end(T.PROTOCOL, remote=False)
            return []
        self._offset += len(chunk.data)
        progress = self.meter.add(len(chunk.data), now)
        if progress is not None:
            self.out.tell(T.FileProgress(self.id, *progress))
        return [T.Write(chunk.index, chunk.offset, chunk.data)] + self._whole()

    def _whole(self):
        """Verify for each file that is now whole, moving on to the next."""
        out = []
        while self._index < len(self.entries) and self._offset >= self.entries[self._index].size:
            out.append(T.Verify(self._index))
            self._index += 1
            self._offset = self._have.get(self._index, 0)
        return out
