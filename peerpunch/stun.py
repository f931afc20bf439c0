"""STUN Binding (RFC 8489): a sans-I/O codec and a client transaction.

Theory of operation
-------------------
A STUN message is a 20-byte header (type, length, magic cookie, 96-bit
transaction id) and type-length-value attributes, each padded to 4 bytes.
:data:`ATTRIBUTES` is the one table of the attributes we know, each with a
pack and an unpack function that mirror each other; :func:`parse_message`
and ``bytes(message)`` are the two directions of the codec, and
``bytes(parse_message(data)) == data`` for any message whose padding is zero.
Malformed input raises :class:`MalformedMessage`; attributes outside the
table are kept as raw bytes under their numeric type.

The relay's answering side is :mod:`peerpunch.stunserver`.

:class:`Transaction` is the client side: one request, retransmitted on a
doubling timeout until a response with its transaction id arrives.
"""

import collections
import enum
import ipaddress
import os
import struct
import zlib

from .effects import Send
from .protocol import canonical_addr

COOKIE = 0x2112A442
HEADER = struct.Struct("!HHI12s")
HEADER_SIZE = HEADER.size
FINGERPRINT_XOR = 0x5354554E

RETRY_RTO = 0.5       # seconds before the first retransmission (RFC 8489 RTO)
RETRY_MAX = 6         # retransmissions after the first send (RFC 8489 Rc - 1)

CHANGE_IP = 0x04      # CHANGE-REQUEST flags (RFC 5780 section 7.2)
CHANGE_PORT = 0x02

# our requests' size: room in the answer for both mapped addresses, OTHER-ADDRESS and
PADDED_REQUEST = HEADER_SIZE + 4 * (4 + 20) + 8   # RESPONSE-ORIGIN (IPv6), FINGERPRINT
SOFTWARE = "peerpunch"

ERROR_UNKNOWN_ATTRIBUTE = 420
REASONS = {ERROR_UNKNOWN_ATTRIBUTE: "Unrecognized"}   # 12 bytes: keeps a 420 within the bound


class Method(enum.IntEnum):
    BINDING = 0x001


class Class(enum.IntEnum):
    REQUEST = 0x000
    INDICATION = 0x010
    SUCCESS = 0x100
    ERROR = 0x110


class MalformedMessage(ValueError):
    """The datagram is not a well-formed STUN message; drop it."""


def is_stun(data):
    """True if *data* should be read as STUN rather than JSON: its first byte
    is 0-3 (RFC 7983's rule; a JSON document starts with ``{``, ``"`` or
    whitespace, all above 3)."""
    return bool(data) and data[0] < 4


# ------------------------------------------------------------------ attributes
# Each pack(value, transaction_id) -> bytes; each unpack(bytes, transaction_id)
# -> value, raising ValueError or struct.error on a bad value.

FAMILY_V4, FAMILY_V6 = 0x01, 0x02
_ADDRESS = struct.Struct("!xBH")


canonical_address = canonical_addr
"""``(ip, port)`` with the IP canonical; IPv4-mapped IPv6 becomes IPv4 (the
codec's :func:`peerpunch.protocol.canonical_addr`)."""


def pack_address(value, transaction_id=b""):
    ip = ipaddress.ip_address(value[0])
    return _ADDRESS.pack(FAMILY_V4 if ip.version == 4 else FAMILY_V6, value[1]) + ip.packed


def unpack_address(data, transaction_id=b""):
    family, port = _ADDRESS.unpack_from(data)
    size = {FAMILY_V4: 8, FAMILY_V6: 20}.get(family)
    if len(data) != size:
        raise ValueError("address of family %d and %d bytes" % (family, len(data)))
    return str(ipaddress.ip_address(data[4:])), port


def _xor(data, transaction_id):
    key = struct.pack("!HHI", 0, COOKIE >> 16, COOKIE) + transaction_id
    return bytes(a ^ b for a, b in zip(data, key))


def pack_xor_address(value, transaction_id):
    return _xor(pack_address(value), transaction_id)


def unpack_xor_address(data, transaction_id):
    return unpack_address(_xor(data, transaction_id))


def pack_unsigned(value, transaction_id=b""):
    return struct.pack("!I", value)


def unpack_unsigned(data, transaction_id=b""):
    (value,) = struct.unpack("!I", data)
    return value


def pack_bytes(value, transaction_id=b""):
    return bytes(value)


def unpack_bytes(data, transaction_id=b""):
    return bytes(data)


def pack_string(value, transaction_id=b""):
    return value.encode("utf-8")


def unpack_string(data, transaction_id=b""):
    return data.decode("utf-8")


def pack_error_code(value, transaction_id=b""):
    code, reason = value
    return struct.pack("!HBB", 0, code // 100, code % 100) + reason.encode("utf-8")


def unpack_error_code(data, transaction_id=b""):
    _, klass, number = struct.unpack_from("!HBB", data)
    if not 3 <= klass & 0x07 <= 6 or number > 99:
        raise ValueError("error code %d.%d" % (klass, number))
    return (klass & 0x07) * 100 + number, data[4:].decode("utf-8")


def pack_unknown_attributes(value, transaction_id=b""):
    return struct.pack("!%dH" % len(value), *value)


def unpack_unknown_attributes(data, transaction_id=b""):
    if len(data) % 2:
        raise ValueError("odd length")
    return tuple(struct.unpack("!%dH" % (len(data) // 2), data))


ATTRIBUTES = [
    (0x0001, "MAPPED-ADDRESS", pack_address, unpack_address),
    (0x0003, "CHANGE-REQUEST", pack_unsigned, unpack_unsigned),
    (0x0006, "USERNAME", pack_bytes, unpack_bytes),
    (0x0008, "MESSAGE-INTEGRITY", pack_bytes, unpack_bytes),
    (0x0009, "ERROR-CODE", pack_error_code, unpack_error_code),
    (0x000A, "UNKNOWN-ATTRIBUTES", pack_unknown_attributes, unpack_unknown_attributes),
    (0x0014, "REALM", pack_bytes, unpack_bytes),
    (0x0015, "NONCE", pack_bytes, unpack_bytes),
    (0x0020, "XOR-MAPPED-ADDRESS", pack_xor_address, unpack_xor_address),
    (0x8022, "SOFTWARE", pack_string, unpack_string),
    (0x8028, "FINGERPRINT", pack_unsigned, unpack_unsigned),
    (0x802B, "RESPONSE-ORIGIN", pack_address, unpack_address),
    (0x802C, "OTHER-ADDRESS", pack_address, unpack_address),
]
ATTRIBUTES_BY_TYPE = {row[0]: row for row in ATTRIBUTES}
ATTRIBUTES_BY_NAME = {row[1]: row for row in ATTRIBUTES}


def _attribute(attr_type, value):
    return struct.pack("!HH", attr_type, len(value)) + value + bytes(-len(value) % 4)


def _fingerprint(data):
    return zlib.crc32(data) ^ FINGERPRINT_XOR


# --------------------------------------------------------------------- message


class Message:
    """One STUN message. *attributes* maps names from :data:`ATTRIBUTES` (or
    the numeric type of any other attribute) to values, in wire order.
    ``cookie`` is the 4 bytes after the length: :data:`COOKIE`, or the first
    part of an RFC 3489 transaction id."""

    def __init__(self, method, message_class, transaction_id, attributes=(), cookie=COOKIE):
        self.method = method
        self.message_class = message_class
        self.transaction_id = transaction_id
        self.attributes = collections.OrderedDict(attributes)
        self.cookie = cookie

    def __bytes__(self):
        """The wire form. A FINGERPRINT key (any value) puts a fresh
        fingerprint last; everything else keeps its order."""
        body = b"".join(self._encode(name, value) for name, value in self.attributes.items()
                        if name != "FINGERPRINT")
        if "FINGERPRINT" in self.attributes:
            head = self._header(len(body) + 8) + body
            return head + _attribute(0x8028, pack_unsigned(_fingerprint(head)))
        return self._header(len(body)) + body

    def __eq__(self, other):
        return isinstance(other, Message) and vars(self) == vars(other)

    def __repr__(self):
        return "Message(%s, %s, %s, %r)" % (_name(Method, self.method),
                                            _name(Class, self.message_class),
                                            self.transaction_id.hex(), dict(self.attributes))

    def unknown_required(self):
        """Types of the comprehension-required attributes we do not know."""
        return [t for t in self.attributes if isinstance(t, int) and t < 0x8000]

    def mapped_address(self):
        """XOR-MAPPED-ADDRESS, else MAPPED-ADDRESS, else None."""
        return self.attributes.get("XOR-MAPPED-ADDRESS") or self.attributes.get("MAPPED-ADDRESS")

    def other_address(self, server):
        """OTHER-ADDRESS (or None) of a response from *server*. A relay bound
        to a wildcard address does not know which of its IPs the client
        reached and sends the unspecified IP: that means *server*'s IP."""
        other = self.attributes.get("OTHER-ADDRESS")
        if other is not None and ipaddress.ip_address(other[0]).is_unspecified:
            other = (canonical_address(server)[0], other[1])
        return other

    def _header(self, length):
        return HEADER.pack(_message_type(self.method, self.message_class), length, self.cookie,
                           self.transaction_id)

    def _encode(self, name, value):
        if isinstance(name, int):
            return _attribute(name, value)
        attr_type, _, pack, _ = ATTRIBUTES_BY_NAME[name]
        return _attribute(attr_type, pack(value, self.transaction_id))


def _name(enumeration, value):
    try:
        return enumeration(value).name
    except ValueError:
        return hex(value)


def _message_type(method, message_class):
    """The 14 type bits interleave the method's bits with the class's two."""
    return (method & 0x000F) | ((method & 0x0070) << 1) | ((method & 0x0F80) << 2) | message_class


def _split_message_type(message_type):
    """(method, class): the inverse of _message_type."""
    return ((message_type & 0x000F) | ((message_type & 0x00E0) >> 1) | ((message_type & 0x3E00) >> 2),
            message_type & 0x0110)


def parse_message(data):
    """Decode one datagram into a :class:`Message`.

    Raises MalformedMessage on anything that is not a well-formed STUN
    message: wrong length or leading bits, an attribute running past the
    end, a bad value of a known attribute, anything after FINGERPRINT, or a
    FINGERPRINT that does not match. Of a repeated attribute only the first
    is kept (RFC 8489 section 14).
    """
    if len(data) < HEADER_SIZE:
        raise MalformedMessage("STUN message shorter than its 20-byte header")
    message_type, length, cookie, transaction_id = HEADER.unpack_from(data)
    if message_type & 0xC000:
        raise MalformedMessage("STUN message type has its top bits set")
    if length != len(data) - HEADER_SIZE or length % 4:
        raise MalformedMessage("STUN message length does not match")
    message = Message(*_split_message_type(message_type), transaction_id, cookie=cookie)
    pos = HEADER_SIZE
    while pos < len(data):
        pos = _parse_attribute(message, data, pos)
    return message


def _parse_attribute(message, data, pos):
    """Read the attribute at *pos* into *message*; return the next position.
    (The length is a multiple of 4, so an attribute header always fits.)"""
    if "FINGERPRINT" in message.attributes:
        raise MalformedMessage("STUN attribute after FINGERPRINT")
    attr_type, attr_length = struct.unpack_from("!HH", data, pos)
    end = pos + 4 + attr_length
    if end > len(data):
        raise MalformedMessage("STUN attribute 0x%04x runs past the end" % attr_type)
    value = data[pos + 4:end]
    row = ATTRIBUTES_BY_TYPE.get(attr_type)
    if row is None:
        message.attributes.setdefault(attr_type, bytes(value))
        return end + -attr_length % 4
    _, name, _, unpack = row
    try:
        decoded = unpack(value, message.transaction_id)
    except (ValueError, struct.error) as exc:
        raise MalformedMessage("bad STUN %s: %s" % (name, exc)) from None
    if name == "FINGERPRINT" and decoded != _fingerprint(data[:pos]):
        raise MalformedMessage("STUN fingerprint does not match")
    message.attributes.setdefault(name, decoded)
    return end + -attr_length % 4


# ---------------------------------------------------------------------- client


def binding_request(change=0, software=None, fingerprint=True, transaction_id=None,
                    pad_to=PADDED_REQUEST):
    """A Binding request; *change* is CHANGE-REQUEST flags (0: none). With
    *pad_to* (bytes), SOFTWARE (*software*, or ours) is padded with spaces
    so that the request is that long: a server that answers no more bytes
    than it got (ours, past its budget) then has room for every attribute
    we read (see :data:`PADDED_REQUEST`)."""
    attributes = []
    if change:
        attributes.append(("CHANGE-REQUEST", change))
    if pad_to:
        software = software or SOFTWARE
        used = HEADER_SIZE + 4 + (8 if change else 0) + (8 if fingerprint else 0)
        software = software.ljust(pad_to - used)
    if software:
        attributes.append(("SOFTWARE", software))
    if fingerprint:
        attributes.append(("FINGERPRINT", 0))
    return Message(Method.BINDING, Class.REQUEST, transaction_id or os.urandom(12), attributes)


class State(enum.Enum):
    WAITING = "waiting"
    ANSWERED = "answered"
    TIMED_OUT = "timed out"


class Transaction:
    """One request to *addr* until a response with its transaction id
    arrives, from any source address (RFC 5780 answers may come from the
    server's other port).

    Sans-I/O: :meth:`start` and :meth:`tick` return the Sends to carry out;
    :meth:`datagram_received` takes any datagram. The first retransmission
    comes *rto* seconds after the first send, each next one after twice the
    previous wait; after *retries* of them and one more doubled wait the
    transaction has TIMED_OUT.
    """

    def __init__(self, request, addr, rto=RETRY_RTO, retries=RETRY_MAX):
        self.request = request
        self.addr = addr
        self.state = State.WAITING
        self.response = None
        self.response_from = None
        self._data = bytes(request)
        self._wait = rto
        self._retries_left = retries
        self._deadline = None

    def start(self, now):
        self._deadline = now + self._wait
        return [Send(self._data, self.addr)]

    def next_deadline(self):
        return self._deadline if self.state is State.WAITING else None

    def tick(self, now):
        if self.state is not State.WAITING or now < self._deadline:
            return []
        if self._retries_left == 0:
            self.state = State.TIMED_OUT
            return []
        self._retries_left -= 1
        self._wait *= 2
        self._deadline = now + self._wait
        return [Send(self._data, self.addr)]

    def datagram_received(self, data, addr):
        """True if *data* is our response (now in ``response``, its source in
        ``response_from``); anything else is left alone."""
        if self.state is not State.WAITING:
            return False
        try:
            message = parse_message(data)
        except MalformedMessage:
            return False
        if (message.transaction_id, message.cookie, message.method) != (
                self.request.transaction_id, self.request.cookie, self.request.method) \
                or message.message_class not in (Class.SUCCESS, Class.ERROR):
            return False
        self.state = State.ANSWERED
        self.response = message
        self.response_from = addr
        return True
