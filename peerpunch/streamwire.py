"""The reliable stream's wire format (feature ``stream1``): packets and frames.

Theory of operation
-------------------
A stream packet is the plaintext of one sealed DATA frame of the secure
channel (:mod:`peerpunch.secure`), next to the JSON messages the channel
carries today. Its first byte, PACKET_TYPE 0xC1, can never start a UTF-8
text (0xC0 and 0xC1 are never valid in UTF-8), so it cannot be confused
with a JSON document, whose first byte is ``{`` or ``"``. All integers are
big-endian::

    packet  = 0xC1 | packet number (8) | frame | frame ...
    STREAM  = 0x01 | message id (4) | offset (4) | total (4) | length (2) | data
    ACK     = 0x02 | largest (8) | ack delay (2) | extra ranges n (1) | first range (4)
                   | n x (gap (4) | range length (4))
    SKIP    = 0x03 | below (4)
    ACK_NOW = 0x04
    PAD     = 0x05 | zeros to the end of the packet

Every datagram gets a fresh packet number, never reused, 0, 1, 2, ... (64
bits: it never wraps); retransmitted data travels again in a new packet, so
an acknowledgment names exactly one transmission and every RTT sample is
unambiguous (RFC 9002 section 2).

Data is a sequence of whole messages numbered 1, 2, 3, ... (message id), up
to MAX_MESSAGE bytes each. A STREAM frame carries ``data`` for bytes
``offset .. offset+length`` of message ``id``, whose size is ``total``.
Message ids rather than one byte stream with boundaries because every
question the chat asks is per message -- was message 7 delivered, give up
on message 7 -- and a receiver can size one buffer per message from
``total`` on the first fragment it sees, wherever it falls.

ACK (QUIC's shape, RFC 9000 section 19.3) acknowledges packet numbers:
``largest``, then the first range ``largest - first range .. largest``,
then each further range lies ``gap + 2`` below the previous range's
smallest and spans ``range length + 1`` packet numbers. At most
MAX_ACK_RANGES ranges in all. ``ack delay`` is how long the receiver held
the acknowledgment of ``largest``, in ACK_DELAY_UNIT (10 us), saturating.

SKIP says the sender has given up every message below ``below`` that the
receiver has not completed: deliver the complete ones in order, drop the
rest, expect ``below`` next. ACK_NOW (draft-ietf-quic-ack-frequency's
IMMEDIATE_ACK, and our PING) asks for an acknowledgment at once instead of
up to MAX_ACK_DELAY later: the sender puts it into a probe, and into the
last packet it may send while its congestion window or pacer holds back
more, when a delayed acknowledgment would only leave the path idle.
Packets with a STREAM, SKIP or ACK_NOW frame are ack-eliciting; packets of
ACK frames alone are not.

:func:`decode` checks everything that does not need the stream's state and
raises :class:`StreamError` (a :class:`~peerpunch.protocol.RemoteProtocolError`)
on anything malformed: the caller drops that datagram.

PAD fills a path-MTU probe (:mod:`peerpunch.pmtu`) to its size; a packet
of ACK_NOW and PAD is acknowledged like any other. A stream that does not
know PAD refuses the packet, which is all a failed probe needs.
"""

import struct

from . import protocol as P

FEATURE = "stream1"

PACKET_TYPE = 0xC1
STREAM, ACK, SKIP, ACK_NOW, PAD = 0x01, 0x02, 0x03, 0x04, 0x05

MAX_MESSAGE = 64 * 1024
"""Largest message, in bytes (64 KiB of UTF-8: one chat line at most)."""

MAX_ACK_RANGES = 32
"""Ranges in one ACK frame, the first included."""

ACK_DELAY_UNIT = 1e-5
MAX_ID = 0xFFFFFFFF

_HEADER = struct.Struct(">BQ")         # packet type, packet number
_STREAM = struct.Struct(">BIIIH")      # frame type, message id, offset, total, length
_ACK = struct.Struct(">BQHBI")         # frame type, largest, delay, extra ranges, first range
_RANGE = struct.Struct(">II")          # gap, range length
_SKIP = struct.Struct(">BI")           # frame type, below
_DATA = struct.Struct(">BQBIIIH")      # a data packet's headers: _HEADER then _STREAM

HEADER_LEN = _HEADER.size              # 9
STREAM_HEADER_LEN = _STREAM.size       # 15
ACK_LEN = _ACK.size                    # 16, plus RANGE_LEN per extra range
RANGE_LEN = _RANGE.size                # 8
SKIP_LEN = _SKIP.size                  # 5
ACK_NOW_FRAME = bytes((ACK_NOW,))
_ONE_STREAM = HEADER_LEN + STREAM_HEADER_LEN

pack_header = _HEADER.pack
pack_stream_header = _STREAM.pack
pack_packet_header = _HEADER.pack    # (mark, pn): packet_header without the call
pack_packet_and_stream_header = struct.Struct(">BQBIIIH").pack
"""(mark, pn, STREAM, id, offset, total, length): a packet's header and its
first STREAM frame's, packed at once (the sender's burst)."""


class StreamError(P.RemoteProtocolError):
    """The partner's stream sent something we cannot accept; drop the datagram."""


def is_packet(data):
    """True if *data* (a sealed frame's plaintext) is a stream packet."""
    return bool(data) and data[0] == PACKET_TYPE


def packet_header(pn, mark=PACKET_TYPE):
    return _HEADER.pack(mark, pn)


def stream_frame(message_id, offset, total, data):
    return _STREAM.pack(STREAM, message_id, offset, total, len(data)) + bytes(data)


def skip_frame(below):
    return _SKIP.pack(SKIP, below)


def ack_frame(ranges, delay):
    """An ACK frame for *ranges*, inclusive ``(lowest, highest)`` pairs of
    packet numbers from the highest down, disjoint and not adjacent; *delay*
    in seconds. Ranges whose distances do not fit the fields (only a partner
    jumping billions of packet numbers ahead makes them) are left out:
    acknowledging less is always safe."""
    (low, largest) = ranges[0]
    low = max(low, largest - MAX_ID)
    first = largest - low
    units = min(0xFFFF, max(0, round(delay / ACK_DELAY_UNIT)))
    if len(ranges) == 1:
        return _ACK.pack(ACK, largest, units, 0, first)
    parts = [b""]
    for lo, hi in ranges[1:]:
        gap, length = low - hi - 2, hi - lo
        if gap > MAX_ID or length > MAX_ID:
            break
        parts.append(_RANGE.pack(gap, length))
        low = lo
    parts[0] = _ACK.pack(ACK, largest, units, len(parts) - 1, first)
    return b"".join(parts)


def ack_len(ranges):
    return ACK_LEN + RANGE_LEN * (ranges - 1)


def encode(pn, frames):
    """A whole packet from decoded *frames* (as :func:`decode` returns them):
    the mirror of :func:`decode`, for tests and tools."""
    parts = [packet_header(pn)]
    for frame in frames:
        kind = frame[0]
        if kind == STREAM:
            parts.append(stream_frame(*frame[1:]))
        elif kind == ACK:
            parts.append(ack_frame(frame[3], frame[2]))
        elif kind == SKIP:
            parts.append(skip_frame(frame[1]))
        elif kind == PAD:
            parts.append(bytes((PAD,)) + bytes(frame[1] - 1))
        else:
            parts.append(ACK_NOW_FRAME)
    return b"".join(parts)


def decode(data, mark=PACKET_TYPE):
    """``(packet number, frames, ack_eliciting)`` of one packet (whose first
    byte is *mark*: a second stream of a session marks its packets its own way).

    Frames are tuples: ``(STREAM, id, offset, total, data)`` with *data* a
    memoryview into *data* (a copy for a data packet: :func:`decode_data`);
    ``(ACK, largest, delay_seconds, ranges)`` with *ranges* as
    :func:`ack_frame` takes them; ``(SKIP, below)``; ``(ACK_NOW,)``;
    ``(PAD, length)`` (its type byte included).
    Raises StreamError for anything malformed."""
    size = len(data)
    if size <= HEADER_LEN or data[0] != mark:
        raise StreamError("not a stream packet (%d bytes)" % size)
    fast = decode_data(data, mark)
    if fast is not None:                                       # a data packet: one STREAM frame
        pn, message_id, offset, total, view = fast
        return pn, [(STREAM, message_id, offset, total, view)], True
    pn = _HEADER.unpack_from(data)[1]
    view = memoryview(data)
    pos, frames, eliciting = HEADER_LEN, [], False
    while pos < size:
        kind = data[pos]
        if kind == STREAM:             # _decode_stream, inlined: nearly every packet has one
            if pos + STREAM_HEADER_LEN > size:
                raise StreamError("STREAM frame header cut short")
            _, message_id, offset, total, length = _STREAM.unpack_from(data, pos)
            start = pos + STREAM_HEADER_LEN
            pos = start + length
            if pos > size or not message_id or total > MAX_MESSAGE or offset + length > total:
                _decode_stream(data, view, start - STREAM_HEADER_LEN)     # says what is wrong
            frame = (STREAM, message_id, offset, total, view[start:pos])
            eliciting = True
        elif kind == ACK:
            frame, pos = _decode_ack(data, pos)
        elif kind == SKIP:
            if pos + SKIP_LEN > size:
                raise StreamError("SKIP frame cut short")
            frame, pos = (SKIP, _SKIP.unpack_from(data, pos)[1]), pos + SKIP_LEN
            eliciting = True
        elif kind == ACK_NOW:
            frame, pos = (ACK_NOW,), pos + 1
            eliciting = True
        elif kind == PAD:
            frame, pos = (PAD, size - pos), size
        else:
            raise StreamError("unknown frame type 0x%02x" % kind)
        frames.append(frame)
    return pn, frames, eliciting


def decode_data(data, mark=PACKET_TYPE):
    """``(packet number, message id, offset, total, data)`` of a data
    packet -- a valid packet of one STREAM frame, what :func:`decode` returns
    as ``(pn, [(STREAM, id, offset, total, data)], True)`` -- else None
    (any other packet, or a malformed one: ask :func:`decode`). The bulk
    receiver's fast case, with one unpack for both headers."""
    size = len(data)
    if size < _ONE_STREAM or data[0] != mark or data[HEADER_LEN] != STREAM:
        return None
    _, pn, _, message_id, offset, total, length = _DATA.unpack_from(data)
    if _ONE_STREAM + length != size or not message_id or total > MAX_MESSAGE or \
            offset + length > total:
        return None
    return pn, message_id, offset, total, data[_ONE_STREAM:]    # a copy: cheaper than a view


def _decode_stream(data, view, pos):
    if pos + STREAM_HEADER_LEN > len(data):
        raise StreamError("STREAM frame header cut short")
    _, message_id, offset, total, length = _STREAM.unpack_from(data, pos)
    start = pos + STREAM_HEADER_LEN
    end = start + length
    if end > len(data):
        raise StreamError("STREAM frame data cut short")
    if message_id == 0:
        raise StreamError("message id 0")
    if total > MAX_MESSAGE:
        raise StreamError("message of %d bytes exceeds %d" % (total, MAX_MESSAGE))
    if offset + length > total:
        raise StreamError("STREAM data at %d+%d beyond the message's %d bytes"
                          % (offset, length, total))
    return (STREAM, message_id, offset, total, view[start:end]), end


def _decode_ack(data, pos):
    if pos + ACK_LEN > len(data):
        raise StreamError("ACK frame cut short")
    _, largest, units, extra, first = _ACK.unpack_from(data, pos)
    if extra >= MAX_ACK_RANGES:
        raise StreamError("ACK with %d ranges exceeds %d" % (extra + 1, MAX_ACK_RANGES))
    end = pos + ACK_LEN + extra * RANGE_LEN
    if end > len(data):
        raise StreamError("ACK ranges cut short")
    low = largest - first
    if low < 0:
        raise StreamError("ACK range below packet number 0")
    ranges = [(low, largest)]
    for at in range(pos + ACK_LEN, end, RANGE_LEN):
        gap, length = _RANGE.unpack_from(data, at)
        high = low - gap - 2
        low = high - length
        if low < 0:
            raise StreamError("ACK range below packet number 0")
        ranges.append((low, high))
    return (ACK, largest, units * ACK_DELAY_UNIT, ranges), end
