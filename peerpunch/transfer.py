"""File transfers: what both ends share (states, events, offer checks).

Theory of operation
-------------------
One transfer moves one offer -- one or several files, or whole directory
trees -- from a :class:`~peerpunch.filesend.Sender` to a
:class:`~peerpunch.filerecv.Receiver`, over a chat's reliable stream, in the
messages of :mod:`peerpunch.filewire`. Both are sans-I/O machines: the shell
passes the messages from the stream in, sends what :meth:`messages` returns,
shows what :meth:`events` returns, and does the disk work they ask for (the
sender's reads, the receiver's writes and checks: :mod:`peerpunch.filestore`).
Time is passed in (``now``, seconds, monotonic) and only feeds progress.

Each machine's states change only through its TRANSITIONS table
``{(state, trigger): new state}``; a trigger its state has no entry for is
ignored (a late or repeated message), and the end states have none::

    sender    OFFERED --accept--> SENDING --all_sent--> SENT --done--> DONE
    receiver  ASSEMBLING --offered--> OFFERED --accept--> RECEIVING --done--> DONE
    both      OFFERED --decline--> DECLINED;  any live state --cancel--> CANCELLED,
              --fail--> FAILED (with a reason: REASONS of filewire)

Events (data; the console words them): FileOffered, FileAccepted,
FileProgress, FileSent (sender: the receiver saved everything),
FileReceived (receiver: saved, with where), FileFailed (reason, and whether
the partner said so). An offer is checked as a whole here
(:func:`check_entries`): safe names (the codec checked each), no path twice
(ignoring case and Unicode normalisation, as some disks do), no file that is
also a directory of another, sizes adding up to the total.
"""

import collections
import logging
import os

from . import filewire as FW
from .safename import fold, is_safe_part

# states
ASSEMBLING = "assembling"      # receiver: the offer's entries are still arriving
OFFERED = "offered"
SENDING = "sending"
SENT = "sent"                  # sender: every byte is on the stream; waiting for FileDone
RECEIVING = "receiving"
DONE = "done"
DECLINED = "declined"
CANCELLED = "cancelled"
FAILED = "failed"
ENDED = (DONE, DECLINED, CANCELLED, FAILED)

# reasons (FileFailed.reason, FileCancel.reason)
CANCELLED_REASON = "cancelled"
DECLINED_REASON = "declined"
HASH_MISMATCH = "hash_mismatch"
DISK_FULL = "disk_full"
IO_ERROR = "io_error"
PROTOCOL = "protocol"
PARTNER_GONE = "partner_gone"
LOST = "lost"                  # the stream gave up a data message
EXPIRED = "expired"            # an offer not completed, or not answered, in time

FileOffered = collections.namedtuple("FileOffered", "id names count total")
"""An offer arrived, whole: *names* are its top-level names (files or directories)."""
FileAccepted = collections.namedtuple("FileAccepted", "id resumed")
"""The receiver accepted; *resumed* bytes it already had."""
FileProgress = collections.namedtuple("FileProgress", "id done total rate eta")
FileSent = collections.namedtuple("FileSent", "id names count total")
FileReceived = collections.namedtuple("FileReceived", "id names count total where")
"""Everything verified and saved; *where*: the paths it was saved as."""
FileFailed = collections.namedtuple("FileFailed", "id reason remote")
"""The transfer ended without success; *remote*: the partner said so."""

Read = collections.namedtuple("Read", "index offset length")
"""Sender's disk work: read these bytes of file *index* and pass them to chunk()."""
Write = collections.namedtuple("Write", "index offset data")
"""Receiver's disk work: write *data* at *offset* of file *index*."""
Verify = collections.namedtuple("Verify", "index")
"""Receiver's disk work: file *index* is whole: check its SHA-256 and keep it."""


def new_id():
    """A fresh transfer id (16 hex digits)."""
    return os.urandom(8).hex()


def step(table, state, trigger):
    """The state after *trigger* in *state*, or None if the table has none."""
    return table.get((state, trigger))


def top_names(entries):
    """The offer's top-level names, in order, each once."""
    return tuple(collections.OrderedDict((e.parts[0], None) for e in entries))


def check_offer(entries):
    """Raise ValueError unless we can offer *entries* (local misuse)."""
    if not 1 <= len(entries) <= FW.MAX_FILES:
        raise ValueError("an offer has 1 to %d files" % FW.MAX_FILES)
    if sum(FW.entry_cost(e.parts) for e in entries) > FW.MAX_OFFER_BYTES:
        raise ValueError("an offer's entries hold at most %d bytes" % FW.MAX_OFFER_BYTES)
    if not all(is_safe_part(p) for e in entries for p in e.parts):
        raise ValueError("offered names must be safe parts")
    if sum(e.size for e in entries) > FW.MAX_SIZE:
        raise ValueError("an offer holds at most %d bytes" % FW.MAX_SIZE)
    try:
        check_entries(entries, sum(e.size for e in entries))
    except FW.FileWireError as e:
        raise ValueError(str(e)) from None


def check_entries(entries, total):
    """Raise FileWireError unless *entries* make one consistent offer of *total* bytes."""
    files, dirs = set(), set()
    for entry in entries:
        key = tuple(fold(p) for p in entry.parts)
        if key in files or key in dirs:
            raise FW.FileWireError("a path offered twice, or as file and directory")
        files.add(key)
        dirs.update(key[:n] for n in range(1, len(key)))
    if files & dirs:
        raise FW.FileWireError("a path offered as file and directory")
    if sum(e.size for e in entries) != total:
        raise FW.FileWireError("sizes do not add up to the total")


class Outbox:
    """What a machine has for the shell: messages to send, events to show."""

    def __init__(self):
        self._messages = []
        self._events = []

    def send(self, message):
        self._messages.append(FW.encode(message) if not isinstance(message, bytes) else message)

    def tell(self, event):
        self._events.append(event)

    def pending(self):
        """True if messages or events wait to be drained."""
        return bool(self._messages or self._events)

    def messages(self):
        """The stream messages (bytes) to send, in order, since last asked."""
        out, self._messages = self._messages, []
        return out

    def events(self):
        """The events since last asked."""
        out, self._events = self._events, []
        return out


CANCEL, FAIL = "cancel", "fail"      # the triggers both machines end by


class Machine:
    """What the Sender and the Receiver share: how a transfer ends, and the
    drains. A subclass has ``TRANSITIONS`` (with CANCEL and FAIL from every
    live state), ``id``, ``state`` and ``out`` (an :class:`Outbox`)."""

    TRANSITIONS = {}

    def cancel(self):
        """The user stops the transfer."""
        self._end(CANCELLED_REASON, remote=False)

    def fail(self, reason):
        """Stop on our side's failure *reason* (DISK_FULL, LOST, IO_ERROR, ...)."""
        self._end(reason, remote=False)

    def partner_gone(self):
        """The chat ended: nothing more can arrive or leave."""
        if self._fire(FAIL):
            self.out.tell(FileFailed(self.id, PARTNER_GONE, False))

    def messages(self):
        return self.out.messages()

    def events(self):
        return self.out.events()

    def _end(self, reason, remote):
        if not self._fire(CANCEL if reason == CANCELLED_REASON else FAIL):
            return
        if not remote:
            self.out.send(FW.FileCancel(self.id, reason))
        self.out.tell(FileFailed(self.id, reason, remote))

    def _fire(self, trigger):
        new = step(self.TRANSITIONS, self.state, trigger)
        if new is None:
            logging.getLogger(type(self).__module__).debug(
                "transfer %s: %s ignored in %s", self.id, trigger, self.state)
            return False
        self.state = new
        return True
