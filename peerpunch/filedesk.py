"""All file transfers with one partner, by id.

Theory of operation
-------------------
A :class:`Desk` belongs to one chat. It holds that chat's transfers -- the
offers we made (:class:`~peerpunch.filesend.Sender`) and those we received
(:class:`~peerpunch.filerecv.Receiver`) -- and routes each file message from
the partner's stream (:func:`~peerpunch.filewire.is_file_message`) to the
one its id names: FileOffer opens a Receiver; FileMore and data go to
receivers, FileAccept, FileDecline and FileDone to senders, FileCancel to
either. A message for an id we do not hold (unknown, or a transfer that
ended) is ignored; so is an offer reusing a live id, and offers beyond
MAX_UNANSWERED waiting for the user (each can hold MAX_FILES entries). A
message that does not decode raises FileWireError: drop it.

:meth:`messages` and :meth:`events` drain every transfer's outbox;
transfers that ended are forgotten when both are drained.
:meth:`partner_gone` ends them all (the chat ended).
"""

import logging

from . import filewire as FW
from . import transfer as T
from .filerecv import Receiver
from .filesend import Sender

log = logging.getLogger(__name__)

MAX_UNANSWERED = 4
TO_RECEIVER = (FW.FileMore, FW.Chunk)
TO_SENDER = (FW.FileAccept, FW.FileDecline, FW.FileDone)


class Desk:
    """The file transfers of one chat."""

    def __init__(self):
        self.transfers = {}          # id -> Sender or Receiver, in the order made

    def offer(self, entries, tid=None, chunk_size=FW.CHUNK, group=None):
        """A new offer of *entries* (to the group of id *group*, if any): its
        Sender (its messages wait in messages())."""
        sender = Sender(entries, tid=tid, chunk_size=chunk_size, group=group)
        self.transfers[sender.id] = sender
        return sender

    def received(self, message, now):
        """A file message (bytes) from the partner: (the transfer it was for,
        or None if ignored, the Receiver's effects). Raises FileWireError."""
        decoded = FW.decode(message)
        kind = type(decoded)
        if kind is FW.FileOffer:
            return self._offered(decoded), []
        transfer = self.transfers.get(decoded.id)
        wanted = Receiver if kind in TO_RECEIVER else Sender if kind in TO_SENDER else None
        if transfer is None or (wanted is not None and type(transfer) is not wanted):
            log.debug("file message %s for no transfer of ours ignored", kind.__name__)
            return None, []
        return transfer, transfer.received(decoded, now) or []

    def get(self, tid):
        return self.transfers.get(tid)

    def partner_gone(self):
        """The chat ended: every live transfer fails (PARTNER_GONE)."""
        for transfer in self.transfers.values():
            transfer.partner_gone()

    def messages(self):
        """Every transfer's messages (bytes) to send, since last asked."""
        return [m for t in list(self.transfers.values()) for m in t.messages()]

    def events(self):
        """Every transfer's events since last asked; ended ones are
        forgotten once their messages are drained too."""
        out = [e for t in list(self.transfers.values()) for e in t.events()]
        for tid, transfer in list(self.transfers.items()):
            if transfer.state in T.ENDED and not transfer.out.pending():
                del self.transfers[tid]
        return out

    def _offered(self, offer):
        if offer.id in self.transfers:
            log.debug("offer %s repeated while live: ignored", offer.id)
            return None
        unanswered = sum(1 for t in self.transfers.values()
                         if type(t) is Receiver and t.state in (T.ASSEMBLING, T.OFFERED))
        if unanswered >= MAX_UNANSWERED:
            log.info("offer %s ignored: %d unanswered already", offer.id, unanswered)
            return None
        receiver = Receiver(offer)
        self.transfers[offer.id] = receiver
        return receiver
