"""The sending end of one file transfer.

Theory of operation
-------------------
A :class:`Sender` offers its entries (relative path parts, size, SHA-256:
:class:`~peerpunch.filewire.Entry`, made by
:mod:`peerpunch.filestore`'s reader) when created: the offer's messages wait
in its outbox. The partner's control messages for this transfer's id go to
:meth:`received`. On FileAccept it sends each file in offer order from the
receiver's resume point (its ``have``) to the end: the shell asks
:meth:`next_read` for the next :class:`~peerpunch.transfer.Read`, reads
those bytes and passes them to :meth:`chunk`, which returns the data message
to put on the stream. The shell asks only while the stream has room (so
chat lines are never stuck behind megabytes of file data): this machine
holds no data. When the last read is handed out it is SENT; FileDone from
the receiver (all verified and saved) makes it DONE with a FileSent event.

Progress counts the bytes the partner's stream holds: the shell reports
them with :meth:`delivered` as the stream acknowledges data messages.
:meth:`cancel` (the user), :meth:`fail` (the stream gave a data message up:
LOST; the file changed under us: IO_ERROR) and :meth:`partner_gone` end it.
"""

import logging

from . import filewire as FW
from . import transfer as T
from .progress import Meter

log = logging.getLogger(__name__)

ACCEPT, DECLINE, ALL_SENT, DONE, CANCEL, FAIL = (
    "accept", "decline", "all_sent", "done", T.CANCEL, T.FAIL)
LIVE = (T.OFFERED, T.SENDING, T.SENT)
TRANSITIONS = {
    (T.OFFERED, ACCEPT): T.SENDING,
    (T.OFFERED, DECLINE): T.DECLINED,
    (T.SENDING, ALL_SENT): T.SENT,
    (T.SENT, DONE): T.DONE,
}
TRANSITIONS.update({(state, CANCEL): T.CANCELLED for state in LIVE})
TRANSITIONS.update({(state, FAIL): T.FAILED for state in LIVE})


class Sender(T.Machine):
    """One offer of *entries* (a list of filewire.Entry) under id *tid*
    (*group*: the id of the group it is offered to, if any)."""

    TRANSITIONS = TRANSITIONS

    def __init__(self, entries, tid=None, chunk_size=FW.CHUNK, group=None):
        self.id = tid or T.new_id()
        self.group = group
        self.entries = tuple(entries)
        self.total = sum(e.size for e in self.entries)
        self.names = T.top_names(self.entries)
        self.state = T.OFFERED
        self.chunk_size = min(chunk_size, FW.CHUNK)
        self.meter = None
        self._index = 0                  # the file being read...
        self._offset = 0                 # ...and where
        self._have = {}                  # resume points: file index -> bytes
        self.out = T.Outbox()
        T.check_offer(self.entries)
        for message in FW.offer_messages(self.id, self.entries, group=group):
            self.out.send(message)

    def received(self, message, now):
        """A decoded control message of this transfer from the partner."""
        kind = type(message)
        if kind is FW.FileAccept:
            self._accepted(message.have, now)
        elif kind is FW.FileDecline and self._fire(DECLINE):
            self.out.tell(T.FileFailed(self.id, T.DECLINED_REASON, True))
        elif kind is FW.FileCancel:
            self._end(message.reason, remote=True)
        elif kind is FW.FileDone and self._fire(DONE):
            if self.meter.done < self.total:          # its acks may come after FileDone
                self.out.tell(T.FileProgress(self.id, *self.meter.add(self.total, now)))
            self.out.tell(T.FileSent(self.id, self.names, len(self.entries), self.total))
        else:
            log.debug("transfer %s: %s ignored in %s", self.id, kind.__name__, self.state)

    def next_read(self):
        """The next Read to do and pass to chunk(), or None (nothing now)."""
        if self.state != T.SENDING:
            return None
        size = self.entries[self._index].size
        length = min(self.chunk_size, size - self._offset)
        read = T.Read(self._index, self._offset, length)
        self._offset += length
        self._advance()
        return read

    def chunk(self, read, data):
        """The data message (bytes) carrying *data*, the bytes of *read*, or
        None if the transfer ended meanwhile (send nothing)."""
        if self.state not in (T.SENDING, T.SENT):
            return None
        if len(data) != read.length:
            raise ValueError("read %d bytes, wanted %d" % (len(data), read.length))
        return FW.encode(FW.Chunk(self.id, read.index, read.offset, data))

    def delivered(self, nbytes, now):
        """The partner's stream holds *nbytes* more of our data."""
        if self.meter is not None and self.state in (T.SENDING, T.SENT):
            progress = self.meter.add(nbytes, now)
            if progress is not None:
                self.out.tell(T.FileProgress(self.id, *progress))

    def _accepted(self, have, now):
        if any(i >= len(self.entries) or n > self.entries[i].size for i, n in have.items()):
            self._end(T.PROTOCOL, remote=False)
            return
        if not self._fire(ACCEPT):
            return
        self._have = have
        self._offset = have.get(0, 0)
        resumed = sum(have.values())
        self.meter = Meter(self.total, resumed, now)
        self.out.tell(T.FileAccepted(self.id, resumed))
        self._advance()

    def _advance(self):
        """Past the files sent to the end; SENT when that is all of them (the
        receiver may answer FileDone before we are asked for a read again)."""
        while (self._index < len(self.entries)
               and self._offset >= self.entries[self._index].size):
            self._index += 1
            self._offset = self._have.get(self._index, 0)
        if self._index >= len(self.entries):
            self._fire(ALL_SENT)
