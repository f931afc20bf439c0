"""File transfer messages on the reliable stream: their bytes.

Theory of operation
-------------------
A file transfer travels as messages of a chat's reliable stream
(:mod:`peerpunch.stream`), next to the chat's lines, which are UTF-8 text.
A file message starts with MARK (0xC0, a byte no UTF-8 text starts with),
then a kind byte::

    control = 0xC0 0x01 | compact JSON, one variant, externally tagged
    data    = 0xC0 0x02 | transfer id (8) | file index (4) | offset (8) | bytes

Integers big-endian. The control variants (ids are 16 lowercase hex digits,
``sha256`` 64; ``parts`` a file's relative path as a list of names)::

    {"FileOffer":  {"id", "count", "total", "files": [[parts, size, sha256], ...],
                    "group"?}}       the group id, when offered to a whole group
    {"FileMore":   {"id", "files": [...]}}            more entries of the offer
    {"FileAccept": {"id", "have": [[index, bytes], ...]}}  resume points, others 0
    {"FileDecline":{"id"}}
    {"FileCancel": {"id", "reason"}}                  either side stops
    {"FileDone":   {"id"}}                            receiver: all verified and saved

An offer of ``count`` files comes as one FileOffer and as many FileMore as
its entries need (each message stays within MAX_CONTROL bytes); the files
are then sent in offer order, each from its resume point to its end, in
data messages of at most CHUNK bytes.

:func:`decode` checks every field (types, hex, sizes and counts within the
limits below, names already safe per :mod:`peerpunch.safename`) and raises
:class:`FileWireError`, a RemoteProtocolError: drop that message. Unknown
variants raise it too; unknown extra fields are ignored.
"""

import collections
import json
import re
import struct

from . import protocol as P
from .safename import is_safe_part

FEATURE = "files1"
"""The feature a peer announces when it takes these messages (suggested;
send none to a partner that did not announce it)."""
MARK = 0xC0
CONTROL = 0x01
DATA = 0x02
MAX_CONTROL = 60 * 1024         # a control message's bytes (a stream message is 64 KiB)
CHUNK = 60 * 1024               # a data message's file bytes at most
DATA_HEADER = struct.Struct(">BB8sIQ")
MAX_FILES = 50000               # files in one offer
MAX_OFFER_BYTES = 6 * 1024 * 1024   # an offer's entries, by entry_cost (about their JSON)
ENTRY_OVERHEAD = 90             # an entry's JSON beyond its names: size, sha256, brackets
MAX_SIZE = 2 ** 53 - 1          # bytes of one file, and of an offer (JSON-safe integer)
MAX_DEPTH = 32                  # parts of one relative path
MAX_PATH_BYTES = 4096           # UTF-8 bytes of one relative path
MAX_REASON = 32
REASONS = ("cancelled", "declined", "hash_mismatch", "disk_full", "io_error", "protocol",
           "partner_gone", "lost", "expired")
_HEX16 = re.compile(r"[0-9a-f]{16}\Z")
_HEX64 = re.compile(r"[0-9a-f]{64}\Z")

Entry = collections.namedtuple("Entry", "parts size sha256")
"""One offered file: its relative path (a tuple of safe parts), size, SHA-256 (hex)."""
FileOffer = collections.namedtuple("FileOffer", "id count total files group", defaults=(None,))
FileMore = collections.namedtuple("FileMore", "id files")
FileAccept = collections.namedtuple("FileAccept", "id have")
FileDecline = collections.namedtuple("FileDecline", "id")
FileCancel = collections.namedtuple("FileCancel", "id reason")
FileDone = collections.namedtuple("FileDone", "id")
Chunk = collections.namedtuple("Chunk", "id index offset data")


def entry_cost(parts):
    """The bytes an entry of *parts* counts against MAX_OFFER_BYTES (about
    its JSON: without this cap an offer of MAX_FILES deep paths of
    MAX_PATH_BYTES would be ~200 MB on the wire and more in memory)."""
    return ENTRY_OVERHEAD + sum(len(p.encode("utf-8")) + 3 for p in parts)


class FileWireError(P.RemoteProtocolError):
    """A file message we cannot accept: drop it."""


def is_file_message(message):
    """True if the stream message *message* (bytes) is a file message."""
    return len(message) >= 2 and message[0] == MARK


def _check(ok, what):
    if not ok:
        raise FileWireError("bad %s" % what)


def _int(value, what, low=0, high=MAX_SIZE):
    _check(type(value) is int and low <= value <= high, what)
    return value


def _id(value):
    _check(isinstance(value, str) and _HEX16.match(value), "transfer id")
    return value


def _entry(value):
    _check(isinstance(value, list) and len(value) == 3, "file entry")
    parts, size, digest = value
    _check(isinstance(parts, list) and 1 <= len(parts) <= MAX_DEPTH, "file path")
    _check(all(is_safe_part(p) for p in parts), "file name")
    _check(sum(len(p.encode("utf-8")) + 1 for p in parts) <= MAX_PATH_BYTES, "file path")
    _check(isinstance(digest, str) and _HEX64.match(digest), "sha256")
    return Entry(tuple(parts), _int(size, "file size"), digest)


def _entries(value):
    _check(isinstance(value, list) and len(value) <= MAX_FILES, "file list")
    return tuple(_entry(v) for v in value)


def _have(value):
    _check(isinstance(value, list) and len(value) <= MAX_FILES, "resume points")
    have = {}
    for pair in value:
        _check(isinstance(pair, list) and len(pair) == 2, "resume point")
        index = _int(pair[0], "file index", high=MAX_FILES - 1)
        _check(index not in have, "resume point")
        have[index] = _int(pair[1], "resume offset")
    return have


def _reason(value):
    _check(isinstance(value, str) and 0 < len(value) <= MAX_REASON, "reason")
    return value if value in REASONS else "protocol"


DECODERS = {               # variant -> (class, field -> checker)
    "FileOffer": (FileOffer, {"id": _id, "count": lambda v: _int(v, "count", 1, MAX_FILES),
                              "total": lambda v: _int(v, "total"), "files": _entries}),
    "FileMore": (FileMore, {"id": _id, "files": _entries}),
    "FileAccept": (FileAccept, {"id": _id, "have": _have}),
    "FileDecline": (FileDecline, {"id": _id}),
    "FileCancel": (FileCancel, {"id": _id, "reason": _reason}),
    "FileDone": (FileDone, {"id": _id}),
}
OPTIONAL = {FileOffer: {"group": _id}}    # fields left out when None
CLASSES = {cls: name for name, (cls, _) in DECODERS.items()}


def _plain(value):
    """A field's value as JSON wants it (entries and have as lists)."""
    if isinstance(value, dict):
        return [[k, v] for k, v in sorted(value.items())]
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


def encode(message):
    """The stream message (bytes) of a control message or a Chunk."""
    if type(message) is Chunk:
        header = DATA_HEADER.pack(MARK, DATA, bytes.fromhex(message.id), message.index,
                                  message.offset)
        return header + bytes(message.data)
    optional = OPTIONAL.get(type(message), ())
    body = {field: _plain(getattr(message, field)) for field in message._fields
            if field not in optional or getattr(message, field) is not None}
    text = json.dumps({CLASSES[type(message)]: body}, separators=(",", ":"), ensure_ascii=False)
    return bytes([MARK, CONTROL]) + text.encode("utf-8")


def decode(message):
    """The control message or Chunk in *message* (bytes from the stream);
    raises FileWireError."""
    _check(is_file_message(message), "file message")
    if message[1] == DATA:
        _check(len(message) >= DATA_HEADER.size, "data header")
        _check(len(message) - DATA_HEADER.size <= CHUNK, "data length")
        _, _, tid, index, offset = DATA_HEADER.unpack_from(message)
        _check(index < MAX_FILES and offset <= MAX_SIZE, "data position")
        return Chunk(tid.hex(), index, offset, memoryview(message)[DATA_HEADER.size:])
    _check(message[1] == CONTROL and len(message) <= MAX_CONTROL + 2, "control message")
    try:
        document = json.loads(bytes(message[2:]).decode("utf-8"))
    except (ValueError, RecursionError):       # UnicodeDecodeError is a ValueError
        raise FileWireError("control message is not JSON") from None
    _check(isinstance(document, dict) and len(document) == 1, "control message")
    (variant, body), = document.items()
    _check(variant in DECODERS and isinstance(body, dict), "control variant")
    cls, fields = DECODERS[variant]
    _check(all(name in body for name in fields), variant + " fields")
    values = {name: check(body[name]) for name, check in fields.items()}
    for name, check in OPTIONAL.get(cls, {}).items():
        values[name] = check(body[name]) if body.get(name) is not None else None
    return cls(**values)


def offer_messages(tid, entries, limit=MAX_CONTROL, group=None):
    """The FileOffer and FileMore messages (bytes) that carry *entries*
    (*group*: the id of the group they are offered to)."""
    entries = tuple(entries)
    total = sum(e.size for e in entries)
    messages, batch = [], []
    size = 0
    for entry in entries:
        cost = len(json.dumps(_plain(entry), ensure_ascii=False).encode("utf-8")) + 1
        if batch and size + cost > limit - 200:
            messages.append(_batch(tid, len(entries), total, batch, not messages, group))
            batch, size = [], 0
        batch.append(entry)
        size += cost
    messages.append(_batch(tid, len(entries), total, batch, not messages, group))
    return messages


def _batch(tid, count, total, batch, first, group):
    message = (FileOffer(tid, count, total, tuple(batch), group) if first
               else FileMore(tid, tuple(batch)))
    return encode(message)
