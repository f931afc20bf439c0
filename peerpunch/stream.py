"""Reliable, ordered messages to one partner: the stream (feature ``stream1``).

Theory of operation
-------------------
One :class:`Stream` per chat partner, at each end, carried inside the
partner's secure channel: each packet it produces is the plaintext of one
sealed datagram, and each such plaintext that :func:`is_packet` recognises
goes back into the partner's Stream. Sans-I/O: no sockets, threads or
clocks; every call that depends on time takes ``now`` (seconds, any
monotonic origin, never going back).

A Stream lives exactly as long as one secure session: both ends create
theirs when the handshake completes and drop it (after :meth:`abandon`)
when the session ends. The path under it may change (roaming, relay
fallback) without touching it. Never pair a fresh Stream with an old one:
message ids and packet numbers both start again at the beginning, and the
old receiver would take the new messages for duplicates.

The caller's loop::

    message_id = stream.send(data, now)        # queue a whole message
    stream.datagram_received(payload, now)     # one packet from the partner
    stream.datagrams_received(payloads, now)   # or a run: a StreamError per one refused
    for payload in stream.packets(now): seal and send it
    for event in stream.events(): show it
    sleep until stream.next_deadline(), then call packets(now) again

Call ``packets(now)`` after every ``send``, every ``datagram_received`` and
whenever ``next_deadline()`` has passed: it runs the timers (loss
detection, probe timeout, delivery deadlines) and returns what to transmit
now -- data, repetitions, probes, acknowledgments -- within the congestion
window and the pacing rate. ``tick(now)`` runs the timers alone.

Events, drained by ``events()``:

* ``Received(message_id, data)``: a message from the partner, whole, in the
  partner's order, exactly once. Ids of messages the partner gave up on are
  skipped.
* ``Delivered(message_ids)``: the partner's Stream holds every byte of
  these and will hand them out in order (at once, or as soon as the
  messages before them arrive or are given up).
* ``NotDelivered(message_ids, reason)``: given up, ``"timeout"`` when not
  acknowledged within ``delivery_timeout`` of ``send`` (the clock starts when
  the user typed, so "not delivered" arrives within that time of typing
  even when the line could not leave at once), ``"abandoned"`` by
  :meth:`abandon`. Each message ends in exactly one Delivered or
  NotDelivered (never both; Delivered always means the partner has it).

Errors: local misuse (a message over MAX_MESSAGE, sending after
``abandon``) raises ValueError at the call; anything the partner sent that
we cannot accept raises :class:`StreamError`, a
:class:`~peerpunch.protocol.RemoteProtocolError`: drop that datagram and go
on. Remote input cannot grow memory without bound (see
:mod:`peerpunch.streamrecv`): reassembly within RECV_WINDOW bytes and
MAX_PENDING_MESSAGES ids, at most MAX_ACK_RANGES acknowledgment ranges; our
own packets in flight stay within the window of what we sent.

The halves: :mod:`peerpunch.streamsend` (window, packets, RFC 9002 loss
recovery and giving up), :mod:`peerpunch.streamrecv` (reassembly, order,
acknowledgments), :mod:`peerpunch.recovery` (RTT, NewReno, pacing),
:mod:`peerpunch.streamwire` (the bytes).
"""

import dataclasses
from typing import Tuple

from . import streamwire as W
from .recovery import INITIAL_RTT, MAX_ACK_DELAY, NewReno
from .streamrecv import ACK_EVERY, MAX_PENDING_MESSAGES, RECV_WINDOW, Inbox
from .streamsend import Outbox

StreamError = W.StreamError
is_packet = W.is_packet
FEATURE = W.FEATURE
MAX_MESSAGE = W.MAX_MESSAGE

DEFAULT_MAX_PAYLOAD = 1200 - 1 - 25
"""Stream packet size that keeps the UDP payload within 1,200 bytes: minus
the relay marker (1) and the secure channel's header and tag (25)."""
MIN_PAYLOAD = 256
MAX_PAYLOAD = 65507 - 1 - 25
DELIVERY_TIMEOUT = 8.0
BURST_PACKETS = 10

__all__ = ["Stream", "Received", "Delivered", "NotDelivered", "StreamError", "is_packet",
           "FEATURE", "MAX_MESSAGE", "DELIVERY_TIMEOUT", "DEFAULT_MAX_PAYLOAD",
           "RECV_WINDOW", "MAX_PENDING_MESSAGES"]


@dataclasses.dataclass(frozen=True)
class Received:
    message_id: int
    data: bytes


@dataclasses.dataclass(frozen=True)
class Delivered:
    message_ids: Tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class NotDelivered:
    message_ids: Tuple[int, ...]
    reason: str


class Stream:
    """One end of a reliable, ordered message stream.

    *max_payload*: bytes per packet (MIN_PAYLOAD..MAX_PAYLOAD);
    *rtt_initial*: the RTT assumed before the first sample (RFC 9002: 333 ms);
    *delivery_timeout*: seconds from ``send`` to NotDelivered;
    *ack_every*: acknowledge at once every this many ack-eliciting packets
    (else within *max_ack_delay*); *burst_packets*: the pacer's burst;
    *max_ack_delay*: how long an acknowledgment may wait, at both ends (the
    partner's Stream must be made with the same); *controller*: the
    congestion controller's class (NewReno, or
    :class:`~peerpunch.bulkcc.LossTolerant` for bulk data); *ack_copies*:
    ACK-only packets sent each time one is owed (2 on a stream whose
    receiver acknowledges a whole batch at once: one lost ACK then does not
    leave the sender waiting for a probe timeout); *mark*: the first byte of
    its packets, PACKET_TYPE or another stream's of the same session (the
    partner's Stream must be made with the same); *probe_payload*: a larger
    packet size to try once the path has an RTT sample (:mod:`peerpunch.pmtu`;
    None: keep *max_payload*)."""

    def __init__(self, *, max_payload=DEFAULT_MAX_PAYLOAD, rtt_initial=INITIAL_RTT,
                 delivery_timeout=DELIVERY_TIMEOUT, ack_every=ACK_EVERY,
                 burst_packets=BURST_PACKETS, max_ack_delay=MAX_ACK_DELAY, controller=NewReno,
                 ack_copies=1, mark=W.PACKET_TYPE, probe_payload=None):
        if not all(MIN_PAYLOAD <= p <= MAX_PAYLOAD for p in (max_payload, probe_payload or
                                                           max_payload)):
            raise ValueError("max_payload must be %d..%d" % (MIN_PAYLOAD, MAX_PAYLOAD))
        if not rtt_initial > 0 or not delivery_timeout > 0 or ack_every < 1 or \
                burst_packets < 2 or not max_ack_delay > 0 or ack_copies < 1:
            raise ValueError("rtt_initial, delivery_timeout and max_ack_delay must be > 0, "
                             "ack_every and ack_copies >= 1, burst_packets >= 2")
        self._events = []
        self._inbox = Inbox(self._received, ack_every=ack_every, max_ack_delay=max_ack_delay)
        self._outbox = Outbox(max_payload, rtt_initial, delivery_timeout,
                              burst_packets * max_payload, self._delivered, self._given_up,
                              max_ack_delay, controller, ack_copies, mark, probe_payload)
        self.mark = mark
        self.closed = False

    def _received(self, message_id, data):
        self._events.append(Received(message_id, data))

    def _delivered(self, ids):
        self._events.append(Delivered(tuple(ids)))

    def _given_up(self, ids, reason):
        self._events.append(NotDelivered(tuple(ids), reason))

    def send(self, message, now):
        """Queue *message* (bytes, at most MAX_MESSAGE); its id (1, 2, ...).
        Raises ValueError if too long or after :meth:`abandon`."""
        if self.closed:
            raise ValueError("the stream was abandoned")
        return self._outbox.send(bytes(message), now)

    def datagram_received(self, payload, now):
        """Take one packet the partner's Stream produced (the plaintext of a
        sealed datagram). Raises StreamError if it is not acceptable; the
        frames before the offending one may have been taken."""
        if self.closed:
            return
        pn, frames, eliciting = W.decode(payload, self.mark)
        inbox, ack_now = self._inbox, False
        inbox.check_packet_number(pn)
        for frame in frames:
            kind = frame[0]
            if kind == W.STREAM:
                inbox.on_stream(frame[1], frame[2], frame[3], frame[4])
            elif kind == W.ACK:
                self._outbox.on_ack(frame[1], frame[2], frame[3], now)
            elif kind == W.SKIP:
                inbox.on_skip(frame[1])
            elif kind == W.ACK_NOW:
                ack_now = True
        inbox.on_packet(pn, eliciting, now, ack_now)

    def datagrams_received(self, payloads, now):
        """``datagram_received`` of each of *payloads* in turn: the
        StreamErrors of those refused (each drops only its own packet). A
        bulk receiver's run: a data packet (one STREAM frame, streamwire's
        fast case) goes straight to the inbox (``Inbox.on_data``), anything
        else through ``datagram_received``; the result must be the same."""
        errors = []
        if self.closed:
            return errors
        decode_data, mark, inbox = W.decode_data, self.mark, self._inbox
        for payload in payloads:
            try:
                data = decode_data(payload, mark)
                if data is None:
                    self.datagram_received(payload, now)
                else:
                    inbox.on_data(*data, now)
            except StreamError as exc:
                errors.append(exc)
        return errors

    def cap_size(self, capped, now, aim=None):
        """*capped*: the path goes through the relay, which carries packets
        of the base size only (no path MTU search there); *aim*, if given:
        the largest packet worth a search on the path now (its address
        family decides; at most the base: no search)."""
        self._outbox.cap_size(capped, now, aim)

    def packets(self, now):
        """Run the timers; the packets to transmit now, in order."""
        if self.closed:
            return []
        return self._outbox.packets(now, self._inbox)

    def tick(self, now):
        """Run the timers (packets() does too)."""
        if not self.closed:
            self._outbox.on_timers(now)

    def next_deadline(self):
        """When packets() should next be called without other cause, or None."""
        if self.closed:
            return None
        return self._outbox.next_deadline(self._inbox.ack_at)

    def events(self):
        """Received, Delivered and NotDelivered events since the last call."""
        events, self._events = self._events, []
        return events

    def abandon(self, now):
        """End the stream (the chat is over): every message not yet resolved
        is reported NotDelivered(ids, "abandoned"); returns those ids."""
        if self.closed:
            return []
        self.closed = True
        return self._outbox.abandon()

    def outstanding(self):
        """Messages sent and not yet Delivered or NotDelivered."""
        return self._outbox.live

    @property
    def rtt(self):
        """Smoothed round-trip time in seconds, None before the first sample."""
        rtt = self._outbox.rtt
        return rtt.smoothed if rtt.first_sample_time is not None else None

    @property
    def chunk(self):
        """Message bytes one packet carries: size messages in multiples of it."""
        return self._outbox.chunk

    def stats(self):
        """Counters and gauges for /chats and benchmarks."""
        out, rtt, cc = self._outbox, self._outbox.rtt, self._outbox.cc
        stats = dict(out.stats, packets=out.packets_sent)
        stats.update(cwnd=cc.cwnd, bytes_in_flight=cc.bytes_in_flight, ssthresh=cc.ssthresh,
                     smoothed_rtt=rtt.smoothed, rttvar=rtt.variance, min_rtt=rtt.min,
                     latest_rtt=rtt.latest, outstanding=out.live,
                     receive_buffered=self._inbox.buffered, receive_pending=self._inbox.pending(),
                     ack_ranges=self._inbox.ack_ranges(), in_flight=len(out.flight))
        return stats
