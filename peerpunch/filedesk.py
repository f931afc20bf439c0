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
:meth:`partner_gone` ends them all (the chat ended). :meth:`expire`
fails (EXPIRED) an offer whose entries are not all here ASSEMBLE_TIMEOUT
after it began, or that the user has not answered ANSWER_TIMEOUT after it
was shown. Memory: the unanswered offers of a chat hold MAX_HELD_BYTES of
entries together (by :func:`~peerpunch.filewire.entry_cost`; about 3 times
that in Python objects), and those of all the chats of one peer (the desks
sharing an :class:`OfferBudget`) MAX_ALL_HELD_BYTES; an offer that would
pass either fails (PROTOCOL).
"""

import logging
import weakref

from . import filewire as FW
from . import transfer as T
from .filerecv import Receiver
from .filesend import Sender

log = logging.getLogger(__name__)

MAX_UNANSWERED = 4
MAX_HELD_BYTES = FW.MAX_OFFER_BYTES  # entry bytes of all unanswered offers of a chat together
MAX_ALL_HELD_BYTES = 2 * FW.MAX_OFFER_BYTES   # ... and of all the chats of one peer together
ASSEMBLE_TIMEOUT = 30.0      # s: an offer whose entries are not all here by then fails
ANSWER_TIMEOUT = 600.0       # s: an offer the user has not answered by then fails
TO_RECEIVER = (FW.FileMore, FW.Chunk)
TO_SENDER = (FW.FileAccept, FW.FileDecline, FW.FileDone)
WAIT = {T.ASSEMBLING: ASSEMBLE_TIMEOUT, T.OFFERED: ANSWER_TIMEOUT}


class OfferBudget:
    """What the unanswered offers of all of one peer's chats may hold."""

    def __init__(self, limit=MAX_ALL_HELD_BYTES):
        self.limit = limit
        self.desks = weakref.WeakSet()     # a chat that ended takes its desk with it

    def spent(self):
        return sum(desk.held() for desk in list(self.desks)) > self.limit


_BUDGETS = weakref.WeakKeyDictionary()


def budget_for(owner):
    """The one OfferBudget of *owner* (a peer's disk side: one per peer)."""
    budget = _BUDGETS.get(owner)
    if budget is None:
        budget = _BUDGETS[owner] = OfferBudget()
    return budget


class Desk:
    """The file transfers of one chat; *budget*: the OfferBudget it shares
    with the peer's other chats (None: this chat's own bound only)."""

    def __init__(self, budget=None):
        self.transfers = {}          # id -> Sender or Receiver, in the order made
        self._since = {}             # receiver id -> (state in WAIT, since when)
        self.budget = budget
        if budget is not None:
            budget.desks.add(self)

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
            transfer = self._offered(decoded)
            self._mark(transfer, now)
            return transfer, []
        transfer = self.transfers.get(decoded.id)
        wanted = Receiver if kind in TO_RECEIVER else Sender if kind in TO_SENDER else None
        if transfer is None or (wanted is not None and type(transfer) is not wanted):
            log.debug("file message %s for no transfer of ours ignored", kind.__name__)
            return None, []
        effects = transfer.received(decoded, now) or []
        if kind is FW.FileMore and self._too_much():
            log.info("offer %s refused: unanswered offers hold too much", transfer.id)
            transfer.fail(T.PROTOCOL)
        self._mark(transfer, now)
        return transfer, effects

    def _too_much(self):
        return self.held() > MAX_HELD_BYTES or (self.budget is not None and self.budget.spent())

    def held(self):
        """Entry bytes of the offers not answered yet."""
        return sum(t.cost for t in self.transfers.values()
                   if type(t) is Receiver and t.state in (T.ASSEMBLING, T.OFFERED))

    def expire(self, now):
        """Offers still assembling after ASSEMBLE_TIMEOUT, or not answered
        after ANSWER_TIMEOUT, fail (EXPIRED)."""
        for tid, (state, since) in list(self._since.items()):
            transfer = self.transfers.get(tid)
            if transfer is not None and transfer.state == state and now >= since + WAIT[state]:
                log.info("offer %s expired (%s)", tid, state)
                transfer.fail(T.EXPIRED)

    def next_deadline(self):
        """When the next offer expires, or None."""
        due = [since + WAIT[state] for tid, (state, since) in self._since.items()
               if tid in self.transfers and self.transfers[tid].state == state]
        return min(due) if due else None

    def _mark(self, transfer, now):
        """Note when a receiver took a state that can expire."""
        if type(transfer) is Receiver and transfer.state in WAIT and \
                self._since.get(transfer.id, (None,))[0] != transfer.state:
            self._since[transfer.id] = (transfer.state, now)

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
                self._since.pop(tid, None)
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
        if self._too_much():
            log.info("offer %s refused: unanswered offers hold too much", offer.id)
            receiver.fail(T.PROTOCOL)
        return receiver
