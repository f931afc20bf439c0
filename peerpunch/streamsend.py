"""The sending half of the stream: messages out, loss recovery, giving up.

Theory of operation
-------------------
:class:`Outbox` keeps each message the application sent until it is
acknowledged whole (``Delivered``) or given up (``NotDelivered``).

Messages. ``send`` gives a message a deadline, ``now + delivery_timeout``,
and queues it in a :class:`~peerpunch.streamqueue.SendQueue`, which lets
it into the receiver's window as fragments when there is room.

Packets. Each carries, in order: the SKIP while one is unacknowledged, lost
fragments, fresh fragments (several small messages share a packet), and
the ACK the receiving half owes if it still fits (else an ACK-only packet
follows). Data leaves while ``bytes_in_flight`` stays within the congestion
window and the pacer has credit; PTO probes pass both. ACK-only packets
take a packet number but are not tracked: they carry nothing to repeat,
and an ACK whose largest is one of them gives no RTT sample (nothing
bounds how long the partner held it). When nothing but fresh data waits,
:func:`~peerpunch.streamburst.send_burst` sends what this loop would, faster.

Loss recovery. :class:`~peerpunch.recovery.Flight` (RFC 9002 section 6)
says which packets an ACK newly acknowledges and which are lost. A lost
packet's fragments are queued again unless acknowledged since, given up,
or repeated in a later packet. A probe timeout sends PTO_PROBES packets:
new or lost data first, else the oldest fragments in flight, else just an
ACK_NOW. When nothing in flight is worth anything any more (every message
resolved, no SKIP pending) it forgets those packets instead of probing a
partner who may be gone for good.

Giving up. At its deadline a message still unacknowledged is reported
NotDelivered("timeout") and never repeated. Deadlines follow ids, so the
messages given up so far are all the unresolved ones below some id; one
cumulative SKIP(below) tells the receiver not to wait for them, and later
messages flow as before if the partner comes back. The receiver delivers
what it has complete below the SKIP (so a message we reported Delivered is
always delivered) and drops the rest. A message NotDelivered may still
have reached the partner if only its acknowledgments were lost: "not
delivered" means "not confirmed in time".
"""

import collections

from . import streamwire as W
from .pmtu import PathMtu
from .recovery import MAX_ACK_DELAY, Flight, NewReno, Pacer, RttEstimator, persistent_congestion
from .streamburst import Sent as _Sent, send_burst, take
from .streamqueue import ACKED, GIVEN_UP, SENDING, SendQueue
from .streamrecv import RECV_WINDOW

PTO_PROBES = 2

_new_tuple = tuple.__new__     # _new_tuple(_Sent, fields): a _Sent, without its Python-level __new__


class Outbox:
    def __init__(self, max_payload, rtt_initial, delivery_timeout, burst,
                 on_delivered, on_given_up, max_ack_delay=MAX_ACK_DELAY, controller=NewReno,
                 ack_copies=1, mark=W.PACKET_TYPE, probe_payload=None):
        self.mark = mark                        # the first byte of our packets
        self.mtu = PathMtu(max_payload, probe_payload)
        self.max_payload = max_payload
        self.chunk = max_payload - W.HEADER_LEN - W.SKIP_LEN - W.STREAM_HEADER_LEN
        self.delivery_timeout = delivery_timeout
        self._on_delivered, self._on_given_up = on_delivered, on_given_up
        self.rtt = RttEstimator(rtt_initial, max_ack_delay)
        self.flight = Flight(self.rtt)
        self.cc = controller(max_payload, 2 * RECV_WINDOW)
        self.pacer = Pacer(max_payload, burst)
        self.pacer.set_rate(self.cc.cwnd, self.rtt.smoothed, True)
        self.queue = SendQueue(self.chunk)
        self.live = 0                           # neither Delivered nor NotDelivered yet
        self._unresolved = collections.deque()  # by id (and deadline), front pruned
        self._retx = collections.deque()        # lost fragments to send again
        self._fresh = collections.deque()       # fragments never sent
        self._probe = collections.deque()       # old fragments a PTO probe repeats
        self._probes = 0
        self._skip_target = self._skip_acked = 1
        self._skip_sent = (0, -1)               # (value, packet number) of the last SKIP sent
        self._pn = 0
        self._seq = 0
        self._limited = False                   # the window, not the application, held us
        self._now = 0.0
        self.packets_sent = 0
        self.ack_copies = ack_copies            # ACK-only packets sent each time one is owed
        self.stats = collections.Counter()

    # ---------------------------------------------------------- messages in

    def send(self, data, now):
        if len(data) > W.MAX_MESSAGE:
            raise ValueError("message of %d bytes exceeds %d" % (len(data), W.MAX_MESSAGE))
        msg = self.queue.push(data, now + self.delivery_timeout)
        self.live += 1
        self._unresolved.append(msg)
        return msg.id

    def _admit(self):
        if self.queue.waiting:
            self._fresh.extend(self.queue.admit(self._skip_acked, self._skip_target))

    # ---------------------------------------------------------- packets out

    def packets(self, now, inbox):
        self._now = now
        self.on_timers(now)
        self._admit()
        out = []
        if self._probes or self._retx or self._fresh or self._skip_acked < self._skip_target:
            self._send(now, inbox, out)
        else:
            self._limited = False
        if (self._fresh or len(self.flight) >= PTO_PROBES * 4) and \
                self.mtu.probe_due(now, self.rtt.first_sample_time is not None):  # bulk data
            out.append(self._mtu_probe(now))
        if inbox.ack_at is not None and inbox.ack_at <= now:
            for _ in range(self.ack_copies):
                ack = inbox.ack_frame(now, self.max_payload - W.HEADER_LEN)
                out.append(W.packet_header(self._pn, self.mark) + ack)
                self._pn += 1
        return out

    def _send(self, now, inbox, out):
        if self._plain():
            return self._burst(now, inbox, out)
        cc, pacer = self.cc, self.pacer
        while True:
            if self._probes:
                self._probes -= 1
                out.append(self._build(now, inbox, True))
                continue
            if not self._has_work():
                self._limited = False
                return
            if not cc.can_send() or not pacer.ready(now):
                self._limited = True
                return
            packet = self._build(now, inbox, False)
            if packet is None:
                return
            out.append(packet)

    def _plain(self):
        """Whether the next packets can only be fresh data: no probe, no
        retransmission, no SKIP, no packet allowed past the window."""
        return not (self._probes or self._retx or self.cc.allowance) and \
            self._skip_acked >= self._skip_target

    def _burst(self, now, inbox, out):
        """``_send`` when ``_plain``, faster (:mod:`peerpunch.streamburst`)."""
        sent, limited = send_burst(self._fresh, self.chunk, self.cc, self.pacer, inbox, now,
                                   self.max_payload, self.mark, self._pn, self._seq, out)
        if limited is not None:
            self._limited = limited
        if sent:
            self.flight.add_run(self._pn, sent)
            self._pn += len(sent)
            self._seq += len(sent)
            self.packets_sent += len(sent)

    def cap_size(self, capped, now, aim=None):
        """The path goes through the relay (*capped*: base-size packets only)
        or not; *aim*: the size its MTU search aims for now (PathMtu.aim)."""
        dropped = self.mtu.cap(capped, now)
        if (aim is not None and self.mtu.aim(aim, now)) or dropped:
            self._resize(self.mtu.size)

    def _resize(self, max_payload):
        """Packets of *max_payload* bytes from now on (path MTU): fragments cut to fit."""
        self.max_payload = max_payload
        self.chunk = self.queue.chunk = max_payload - W.HEADER_LEN - W.SKIP_LEN - W.STREAM_HEADER_LEN

    def _mtu_probe(self, now):
        """A probe of the size the path MTU search tries: ACK_NOW, padded; not in flight."""
        pn = self._pn
        self._pn += 1
        self.mtu.sent(pn, now, self.rtt.smoothed)
        self.stats["mtu probes"] += 1
        pad = self.mtu.target - W.HEADER_LEN - len(W.ACK_NOW_FRAME)
        return W.packet_header(pn, self.mark) + W.ACK_NOW_FRAME + bytes((W.PAD,)) + bytes(pad - 1)

    def _has_work(self):
        return bool(self._retx or self._fresh) or self._skip_needed()

    def _skip_needed(self):
        return (self._skip_acked < self._skip_target
                and (self._skip_sent[0] != self._skip_target
                     or self._skip_sent[1] not in self.flight.sent))

    def _build(self, now, inbox, probe):
        room = self.max_payload - W.HEADER_LEN
        parts, frags, skip = [b""], [], 0
        if self._skip_acked < self._skip_target:
            skip = self._skip_target
            parts.append(W.skip_frame(skip))
            room -= W.SKIP_LEN
        if self._retx:
            room = take(self._retx, room, parts, frags, True, self.chunk)
        if self._fresh:
            room = take(self._fresh, room, parts, frags, True, self.chunk)
        if probe:
            room = take(self._probe, room, parts, frags, False, self.chunk)
        if not frags and not probe and not self._skip_needed():
            return None                         # only stale entries, or a SKIP in flight
        if probe or self._last_for_now(self.max_payload - room):
            parts.append(W.ACK_NOW_FRAME)
            room -= 1
        if inbox.ack_at is not None:
            ack = inbox.ack_frame(now, room)
            if ack is not None:
                parts.append(ack)
        return self._record(now, parts, frags, skip)

    def _last_for_now(self, size):
        """Whether after a packet of *size* bytes we have more to send but
        the window or the pacer holds it back: a delayed acknowledgment
        would leave the path idle. (A sender that simply has nothing more
        lets the receiver delay its acknowledgment, to ride on a reply.)"""
        cc, pacer = self.cc, self.pacer
        return self._has_work() and (cc.bytes_in_flight + size + cc.max_datagram > cc.cwnd
                                     or pacer.credit - size < pacer.quantum)

    def _record(self, now, parts, frags, skip):
        pn = self._pn
        self._pn += 1
        parts[0] = W.pack_packet_header(self.mark, pn)
        packet = b"".join(parts)
        self._seq += 1
        self.flight.add(_new_tuple(_Sent, (pn, now, len(packet), frags, skip, self._seq)))
        for frag in frags:
            frag.last_pn = pn
        if skip:
            self._skip_sent = (skip, pn)
        self.cc.on_sent(len(packet))
        self.pacer.credit -= len(packet)
        self.packets_sent += 1
        return packet

    # ------------------------------------------------------ acknowledgments

    def on_ack(self, largest, delay, ranges, now):
        if largest >= self._pn:
            raise W.StreamError("ACK for packet %d, never sent (next is %d)" % (largest, self._pn))
        if self.mtu.on_ack(ranges):
            self._resize(self.mtu.size)
        newly = self.flight.on_ack(largest, delay, ranges, now)
        if not newly:
            return
        self._on_acked(newly)
        self._on_lost(self.flight.detect_lost(now), now)
        self.pacer.set_rate(self.cc.cwnd, self.rtt.smoothed, self.cc.slow_start)
        self._admit()

    def _on_acked(self, packets):
        acked = growth = 0
        start = self.cc.recovery_start
        delivered = []
        for packet in packets:
            acked += packet.size
            if start is None or packet.time > start:
                growth += packet.size
            if packet.skip > self._skip_acked:
                self._skip_acked = packet.skip
            for frag in packet.frags:
                if frag.acked:
                    continue
                frag.acked = True
                msg = frag.msg
                msg.unacked -= 1
                if not msg.unacked and msg.state == SENDING:
                    msg.state = ACKED
                    delivered.append(msg.id)
        self.cc.on_acked(acked, growth, self._limited)
        unresolved = self._unresolved
        while unresolved and unresolved[0].state == ACKED:
            unresolved.popleft()
        if delivered:
            self.live -= len(delivered)
            self._on_delivered(sorted(delivered))

    def _on_lost(self, lost, now):
        if not lost:
            return
        size = 0
        for packet in lost:
            size += packet.size
            for frag in packet.frags:
                if frag.last_pn == packet.pn and not frag.queued and frag.live():
                    frag.queued = True
                    self._retx.append(frag)
        self.stats["lost"] += len(lost)
        self.cc.on_lost(size, lost[-1].time, now)
        if persistent_congestion([(p.seq, p.time) for p in lost], self.rtt):
            self.cc.on_persistent_congestion()
            self.stats["persistent congestion"] += 1
        self.pacer.set_rate(self.cc.cwnd, self.rtt.smoothed, self.cc.slow_start)

    # --------------------------------------------------------------- timers

    def on_timers(self, now):
        self.mtu.on_timers(now)
        flight = self.flight
        if flight.order:
            due = flight.timer()
            if now >= due:
                if flight.loss_time is not None:
                    self._on_lost(flight.detect_lost(now), now)
                else:
                    self._on_pto(now)
        if self._unresolved and self._unresolved[0].deadline <= now:
            self._expire(now)

    def _on_pto(self, now):
        self.flight.pto_count += 1
        self.stats["pto"] += 1
        if self.mtu.black_hole(now, self.flight.pto_count):
            self._resize(self.mtu.size)
            self.stats["mtu black hole"] += 1
        if self._fill_probe():
            self._probes = PTO_PROBES
            return
        for packet in self.flight.clear():      # nothing left worth an acknowledgment
            self.cc.forget(packet.size)

    def _fill_probe(self):
        """Line up what PTO probes carry; False if there is nothing worth it."""
        self._probe.clear()
        for queue in (self._retx, self._fresh):
            while queue and not queue[0].live():
                queue.popleft().queued = False
            if queue:
                return True
        budget = PTO_PROBES * self.chunk
        for pn in self.flight.order:
            for frag in self.flight.sent[pn].frags:
                if frag.live() and budget > 0:
                    self._probe.append(frag)
                    budget -= frag.length or 1
        return bool(self._probe) or self._skip_acked < self._skip_target

    def _expire(self, now):
        unresolved, gone = self._unresolved, []
        while unresolved:
            msg = unresolved[0]
            if msg.state != ACKED and msg.deadline > now:
                break
            unresolved.popleft()
            if msg.state != ACKED:
                msg.state = GIVEN_UP
                gone.append(msg.id)
        if gone:
            self._give_up(gone, "timeout")

    def _give_up(self, ids, reason):
        self.live -= len(ids)
        self._skip_target = max(self._skip_target, ids[-1] + 1)
        self.stats["given up"] += len(ids)
        self._on_given_up(ids, reason)

    def next_deadline(self, ack_at):
        due = ack_at
        for when in (self.flight.timer(),
                     self._unresolved[0].deadline if self._unresolved else None,
                     self._send_time()):
            if when is not None and (due is None or when < due):
                due = when
        return due

    def _send_time(self):
        if self._probes:
            return self._now
        if (self._retx or self._fresh or self._skip_needed()) and self.cc.can_send():
            return self.pacer.release_time()
        return None

    def abandon(self):
        """Give up every message not yet resolved and stop sending; their ids."""
        gone = [msg for msg in self._unresolved if msg.state != ACKED]
        for msg in gone:
            msg.state = GIVEN_UP
        for queue in (self._unresolved, self._retx, self._fresh, self._probe):
            queue.clear()
        self.queue.clear()
        for packet in self.flight.clear():
            self.cc.forget(packet.size)
        self._probes = 0
        ids = [msg.id for msg in gone]
        if ids:
            self._give_up(ids, "abandoned")
        return ids
