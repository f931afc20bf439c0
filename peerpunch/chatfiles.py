"""One chat's file transfers: their own stream, their desk, their pace.

Theory of operation
-------------------
A :class:`ChatFiles` belongs to one :class:`~peerpunch.chat.Chat`. File
messages (:mod:`peerpunch.filewire`) never share the chat's line stream:
they travel on a SECOND :class:`~peerpunch.stream.Stream` of the same
secure session, whose packets carry FILES_MARK (0xF8, never a UTF-8 start
byte, never JSON, distinct from the line stream's 0xC1) in place of the
stream's own first byte. So a line never waits behind file data in a
stream's queue, and a lost file packet never holds a line back.

That stream is opened with the line stream (keys agreed) when the partner
announced ``files1`` on an encrypted link (:meth:`open`); it ends with the
session or the chat (:meth:`end`: every live transfer fails PARTNER_GONE,
partial files are kept for a resume). Its delivery timeout is
DELIVERY_TIMEOUT: since at most IN_FLIGHT data messages are on it at once,
each is acknowledged within a few round trips on a healthy path however
long the transfer; one not acknowledged in that time means the partner
stopped answering, and every live transfer fails (LOST).

Disk work is the shell's. Hashing what ``/send`` offers can take seconds:
:meth:`offer` returns a :class:`Collect` effect, the shell runs
``disk.collect(paths)`` in a worker thread and hands the result to
:meth:`collected`. The rest is bounded per call, through the shell's
*disk* (:mod:`peerpunch.filedisk`): one data message (CHUNK bytes) read or
written at a time, at most IN_FLIGHT outstanding. Over a relayed path the
sender also paces its data to RELAYED_RATE bytes/s, below the relay's
default per-session rate (the peer is not told the relay's quota; a
stricter relay shows as loss, and the stream backs off). The files stream
runs :class:`~peerpunch.bulkcc.LossTolerant` (NewReno that forgives
isolated random losses) and a MAX_ACK_DELAY of 5 ms at both ends; its
datagrams are acknowledged once per batch read (see ``Chat``), in
ACK_COPIES ACK-only packets. Its packets start at 1,200 bytes and grow to a
full frame (PROBE_PAYLOAD; PROBE_PAYLOAD_V6 over IPv6) once a probe is
acknowledged (:mod:`peerpunch.pmtu`), never through the relay. Events
(data; the console words them): ``FileNews(partner, event)`` for each
:mod:`peerpunch.transfer` event, ``FileSkipped(partner, skipped)`` for what
an offer left out, ``FileRefused(partner, why)``.
"""

import collections
import logging

from . import filewire as FW
from . import stream as ST
from . import transfer as T
from .bulkcc import LossTolerant
from .filedesk import Desk, budget_for
from .filerecv import Receiver
from .filework import Backlog, is_full as _is_full
from .filestore import StagingBusy, TooMany
from .streamwire import PACKET_TYPE

log = logging.getLogger(__name__)

FILES_MARK = 0xF8
_LINES = bytes((PACKET_TYPE,))           # the line stream's first byte, as bytes
PROBE_PAYLOAD = 1500 - 20 - 8 - 1 - 25   # a full Ethernet frame: minus IPv4, UDP, relay, channel
PROBE_PAYLOAD_V6 = PROBE_PAYLOAD - 20   # the same over IPv6 (a 40-byte header)
DELIVERY_TIMEOUT = 15.0       # s: a file message unacknowledged this long: the partner is gone
IN_FLIGHT = 16                # data messages outstanding at most (about 1 MB)
RELAYED_IN_FLIGHT = 4
ACK_EVERY = 2                 # as lines; a batch of datagrams read gets one acknowledgment anyway
ACK_COPIES = 2                # one ACK per batch read: sent twice, so one loss costs no PTO
MAX_ACK_DELAY = 0.005         # s, both ends: a probe timeout is ~RTT + 5 ms, not + 25 ms
RELAYED_RATE = 192 * 1024     # file bytes/s over a relayed path (the relay's default: 256 KiB/s)
MAX_RECEIVING = 2             # transfers receiving at once from one partner
IDLE_TIMEOUT = 60.0           # s: a receiving transfer with no data this long fails (kept)

FileNews = collections.namedtuple("FileNews", "partner event outgoing names sent group",
                                  defaults=(None,))
"""A transfer *event* with *partner*: *outgoing* (we send), the offer's top
*names*, *sent*: file bytes this process put on the stream for it, and
*group*: the id of the group it was offered to (None: to this chat)."""
FileSkipped = collections.namedtuple("FileSkipped", "partner skipped")
FileRefused = collections.namedtuple("FileRefused", "partner why detail")
Collect = collections.namedtuple("Collect", "partner paths")
"""Shell's work: hash and list *paths* (``disk.collect``), then ``collected``."""
NOT_ENCRYPTED, NO_FILES, NOTHING, UNREADABLE = "not_encrypted", "no_files", "nothing", "unreadable"
BLOCKED, BUSY, TOO_MANY = "blocked", "busy", "too_many"


def is_files_packet(plaintext):
    return len(plaintext) > 1 and plaintext[0] == FILES_MARK


def is_stream_packet(plaintext):
    """Not JSON: a packet of the files stream or of the lines' (streamwire's ``is_packet``)."""
    return len(plaintext) > 1 and plaintext[0] == FILES_MARK or plaintext[:1] == _LINES


class ChatFiles:
    """A chat's file transfers (*disk*: the shell's disk side; *max_payload*: packet size)."""

    def __init__(self, partner, disk, max_payload):
        self.partner = partner
        self.disk = disk
        self.max_payload = max_payload
        self.stream = None
        self.desk = Desk(budget_for(disk) if disk is not None else None)
        self.relayed = False
        self._sources = {}                # transfer id -> the shell's source
        self._stores = {}                 # transfer id -> the shell's store
        self._data = {}                   # stream message id -> (transfer id, bytes)
        self._names = {}                  # transfer id -> (outgoing, top names)
        self._sent = collections.Counter()  # transfer id -> file bytes put on the stream
        self._paced_until = None          # relayed: no data before this time
        self._events = []
        self.offered = None               # the id of the last offer made
        self._link = None                 # the secure link: no file traffic while it is blocked
        self._heard = {}                  # receiving transfer id -> when data last came
        self._backlog = Backlog()         # receivers' disk work, a batch per turn
        self._turn = None                 # when we last served (due again while work waits)

    @property
    def open(self):
        return self.stream is not None

    @property
    def blocked(self):
        """The partner's key is not the pinned one (until /trust): no file traffic either way."""
        return self._link is not None and bool(self._link.blocked)

    def start(self, features, link=None):
        """Keys agreed: a fresh files stream if the partner takes file
        messages; *link* (its ``blocked``) gates every file packet."""
        self.stream = None
        self._link = link
        if FW.FEATURE in features and self.disk is not None:
            self.stream = ST.Stream(max_payload=self.max_payload,
                                    delivery_timeout=DELIVERY_TIMEOUT, ack_every=ACK_EVERY,
                                    max_ack_delay=MAX_ACK_DELAY, controller=LossTolerant,
                                    ack_copies=ACK_COPIES, mark=FILES_MARK,
                                    probe_payload=PROBE_PAYLOAD)
            self._data = {}

    # -- the user

    def offer(self, paths):
        """/send: a Collect for the shell (it hashes *paths* off the network
        thread and hands the result to :meth:`collected`), or a refusal."""
        if self.stream is None:
            return [FileRefused(self.partner, NOT_ENCRYPTED, None)]
        if self.blocked:
            return [FileRefused(self.partner, BLOCKED, None)]
        return [Collect(self.partner, tuple(paths))]

    def collected(self, result, now, group=None):
        """What the shell collected for an offer (to the group of id *group*,
        if any): (entries, source, skipped), or the OSError that stopped it.
        Returns events (refusals, skipped); the offer's id is :attr:`offered`."""
        if isinstance(result, OSError):
            return [FileRefused(self.partner, UNREADABLE, str(result))]
        entries, source, skipped = result
        out = [FileSkipped(self.partner, tuple(skipped))] if skipped else []
        if self.blocked:
            source.close()
            return out + [FileRefused(self.partner, BLOCKED, None)]
        if self.stream is None or not entries:
            source.close()
            return out + [FileRefused(self.partner, NOT_ENCRYPTED if entries else NOTHING, None)]
        sender = self.desk.offer(entries, group=group)
        self._sources[sender.id] = source
        self._names[sender.id] = (True, sender.names, group)
        self.offered = sender.id
        return out

    def accept(self, tid, now):
        receiver = self._receiver(tid)
        if receiver is None or receiver.state != T.OFFERED:
            return False
        if self._receiving() >= MAX_RECEIVING:
            self._events.append(FileRefused(self.partner, TOO_MANY, None))
            return True
        try:
            store, have = self.disk.opened(receiver.entries)
        except (StagingBusy, TooMany) as exc:
            why = BUSY if type(exc) is StagingBusy else TOO_MANY
            self._events.append(FileRefused(self.partner, why, None))
            return True
        except OSError as exc:
            receiver.fail(T.DISK_FULL if _is_full(exc) else T.IO_ERROR)
            return True
        self._stores[tid] = store
        self._heard[tid] = now
        self._apply(receiver, receiver.accept(have, now))
        return True

    def decline(self, tid):
        receiver = self._receiver(tid)
        if receiver is None or receiver.state != T.OFFERED:
            return False
        receiver.decline()
        return True

    def cancel(self, tid):
        transfer = self.desk.get(tid)
        if transfer is None or transfer.state in T.ENDED:
            return False
        transfer.cancel()
        return True

    def transfers(self):
        """(id, Sender or Receiver) of the live transfers."""
        return [(tid, t) for tid, t in self.desk.transfers.items() if t.state not in T.ENDED]

    # -- the stream

    def received_run(self, packets, now):
        """Packets read together, ours (marked) to the stream: (StreamErrors, other packets)."""
        ours = [p for p in packets if len(p) > 1 and p[0] == FILES_MARK]   # is_files_packet
        others = [p for p in packets if not is_files_packet(p)] if len(ours) < len(packets) else []
        stream = self.stream
        why = "no files stream open" if stream is None else "key not trusted" if self.blocked else ""
        if why:
            return [ST.StreamError(why) for _ in ours], others
        return stream.datagrams_received(ours, now), others

    def packets(self, now, relayed=False, ipv6=False):
        """Serve the stream's news and the senders (the path goes through the
        relay: base-size packets; is IPv6: less in a frame); what to send."""
        if self.stream is None or self.blocked:
            return []
        self.relayed = relayed
        self.stream.cap_size(relayed, now, PROBE_PAYLOAD_V6 if ipv6 else PROBE_PAYLOAD)
        self._serve(now)
        return self.stream.packets(now)

    def next_deadline(self):
        if self.stream is None or self.blocked:
            return None
        due = sooner(self.stream.next_deadline(), self.desk.next_deadline(),
                     self._turn if self._backlog else None,
                     *(h + IDLE_TIMEOUT for h in self._heard.values()))
        if self._paced_until is not None and self._sending():
            due = self._paced_until if due is None else min(due, self._paced_until)
        return due

    def events(self):
        out, self._events = self._events, []
        return out

    def end(self):
        """The session or the chat ended: live transfers fail (partner gone)."""
        self.desk.partner_gone()
        self._settle()
        if self.stream is not None:
            self.stream.abandon(None)
            self.stream = None
        return self.events()

    # -- inside

    def _serve(self, now):
        for event in self.stream.events():
            kind = type(event)
            if kind is ST.Received:
                self._message(event.data, now)
            elif kind is ST.Delivered:
                self._delivered(event.message_ids, now)
            else:
                log.info("file message to %s not delivered: transfers fail", self.partner)
                for _, transfer in self.transfers():
                    transfer.fail(T.LOST)
        self._backlog.run(self._stores)
        self._turn = now
        self._idle(now)
        self._settle(now)
        self._push(now)
        self._settle(now)

    def _idle(self, now):
        """Receiving transfers with no data for IDLE_TIMEOUT fail (LOST: kept);
        offers waiting too long expire."""
        self.desk.expire(now)
        if self._backlog:
            return                        # our disk work is behind, not their data
        for tid, heard in list(self._heard.items()):
            receiver = self._receiver(tid)
            if receiver is not None and now - heard >= IDLE_TIMEOUT:
                log.info("transfer %s: no data for %g s", tid, now - heard)
                receiver.fail(T.LOST)

    def _receiving(self):
        return sum(1 for _, t in self.transfers() if type(t) is Receiver and t.state == T.RECEIVING)

    def _message(self, data, now):
        try:
            transfer, effects = self.desk.received(data, now)
        except FW.FileWireError as exc:
            log.info("file message from %s dropped: %s", self.partner, exc)
            return
        if transfer is not None and effects:
            self._heard[transfer.id] = now
            self._apply(transfer, effects)

    def _delivered(self, ids, now):
        for i in ids:
            tid, length = self._data.pop(i, (None, 0))
            sender = self.desk.get(tid) if tid is not None else None
            if sender is not None and length:
                sender.delivered(length, now)

    def _apply(self, receiver, effects):
        """The receiver's Write and Verify, queued for its store (done in turn)."""
        self._backlog.add(receiver, effects)

    def _push(self, now):
        """Data messages for the senders, while the stream has room."""
        limit = RELAYED_IN_FLIGHT if self.relayed else IN_FLIGHT
        for sender in [t for t in self.desk.transfers.values() if t.state == T.SENDING]:
            while self.stream.outstanding() < limit and self._paced(now):
                read = sender.next_read()
                if read is None:
                    break
                try:
                    message = sender.chunk(read, self._sources[sender.id].read(read))
                except OSError as exc:
                    log.warning("transfer %s: %s", sender.id, exc)
                    sender.fail(T.IO_ERROR)
                    break
                self._data[self.stream.send(message, now)] = (sender.id, read.length)
                self._sent[sender.id] += read.length
                if self.relayed:
                    start = max(now, self._paced_until or now)
                    self._paced_until = start + read.length / RELAYED_RATE

    def _paced(self, now):
        return not self.relayed or self._paced_until is None or now >= self._paced_until

    def _sending(self):
        return any(t.state == T.SENDING for t in self.desk.transfers.values())

    def _settle(self, now=None):
        """Send the desk's messages (none once the stream ended); its events
        out; ended transfers' disk closed."""
        messages = self.desk.messages()
        if now is not None and self.stream is not None:
            for message in messages:
                self.stream.send(message, now)
        freed = False
        for event in self.desk.events():
            self._events.append(self._news(event))
            if type(event) in (T.FileFailed, T.FileSent, T.FileReceived):
                freed = self._closed(event) or freed
            elif type(event) is T.FileOffered and now is not None and self.disk.auto_accept:
                self.accept(event.id, now)
                self._settle(now)
        if freed and now is not None and self.disk.auto_accept:
            for tid in [i for i, t in self.transfers() if t.state == T.OFFERED]:
                self.accept(tid, now)       # waiting for a free place: try again
            self._settle(now)

    def _news(self, event):
        if event.id not in self._names:
            transfer = self.desk.get(event.id)
            self._names[event.id] = (False, transfer.names if transfer is not None else (),
                                     getattr(transfer, "group", None))
        outgoing, names, group = self._names[event.id]
        if type(event) in (T.FileFailed, T.FileSent, T.FileReceived):
            del self._names[event.id]
        return FileNews(self.partner, event, outgoing, names, self._sent.pop(event.id, 0)
                        if type(event) in (T.FileFailed, T.FileSent) else self._sent[event.id],
                        group)

    def _closed(self, event):
        source = self._sources.pop(event.id, None)
        if source is not None:
            source.close()
        self._heard.pop(event.id, None)
        store = self._stores.pop(event.id, None)
        if store is None:
            return False
        if type(event) is T.FileFailed and not _kept(event):
            try:
                store.discard()
            except OSError as exc:
                log.warning("transfer %s: staging not removed: %s", event.id, exc)
        store.close()
        return True

    def _receiver(self, tid):
        transfer = self.desk.get(tid)
        return transfer if type(transfer) is Receiver else None


def sooner(*times):
    """The earliest of *times* that are not None, or None."""
    due = [t for t in times if t is not None]
    return min(due) if due else None


def _kept(failed):
    """A failed receiver's staging is kept for a resume only when we saw the
    partner go (never on its word: its reason could keep what should go)."""
    return not failed.remote and failed.reason in (T.LOST, T.PARTNER_GONE)
