"""The wire codec: every message peerpunch sends or accepts, to and from bytes.

Theory of operation
-------------------
One UDP datagram carries one JSON document, UTF-8, in the form serde_json
gives a Rust enum with the default, externally tagged representation -- the
form of the original Rust proof of concept (the "seed"):

    unit variant     "RegisterAck"
    struct variant   {"Register":{"username":"alice"}}

The seed knows exactly the ten variants marked ``seed=True`` in the table. A seed
program panics on any other variant and on a document cut short by its
1024-byte receive buffer, so two rules keep it alive:

* Extensions travel as extra fields, which serde ignores. A field that is
  ``None`` is omitted, so a message with no extension set encodes to the
  seed's exact bytes. A unit variant carrying extension fields switches to the
  map form ``{"RegisterAck":{"features":["ext"]}}``; only a side that announced
  features ever receives that form or a non-seed variant.
* :func:`encode` refuses to produce more than :data:`MAX_DATAGRAM` bytes, and
  :func:`split_text` cuts chat lines so each piece fits.

Decoding is strict about what we rely on and lenient like serde about the
rest: unknown fields are ignored, unit variants are accepted in both forms,
and every field is type-checked and validated before a message exists, so
the protocol cores only ever see well-formed messages. Garbage raises
:class:`RemoteProtocolError`; misuse by our own code raises
:class:`LocalProtocolError`.

Where things are
----------------
Callers import this module alone (``from . import protocol as P``): it holds
the codec (:func:`encode`, :func:`decode`, :func:`split_text`, the errors,
:data:`MAX_DATAGRAM`) and re-exports the public names of the modules below
it, none of which imports this one:

* :mod:`peerpunch.messages` -- the table: one dataclass per variant;
* :mod:`peerpunch.fields` -- the limits and one validator per field name;
* :mod:`peerpunch.features` -- feature names and NAT mappings;
* :mod:`peerpunch.endpoints` -- ``HOST:PORT`` text and which addresses we accept.
"""

import json

# Re-exported: callers use every public name below as protocol.NAME.
from .endpoints import (LAN_NETWORKS, canonical_addr, format_endpoint,  # noqa: F401
                        is_lan_endpoint, is_peer_endpoint, parse_endpoint)
from .features import (FEATURE_DUAL_STACK, FEATURE_EXT, FEATURE_NOISE,  # noqa: F401
                       FEATURE_RELAY, FEATURE_STREAM, FEATURE_WATCH, KNOWN_FEATURES,
                       MAPPING_DEPENDENT, MAPPING_INDEPENDENT, MAPPINGS, OUR_FEATURES,
                       SECURE_FEATURES, speaks_extensions)
from .fields import (MAX_CHATS, MAX_FEATURES, MAX_LOCAL_CANDIDATES,  # noqa: F401
                     MAX_USERNAME, MAX_WATCH, check_person, check_username,
                     is_group_name)
from .messages import (ERROR_BAD_REQUEST, ERROR_NAME_TAKEN, ERROR_NOT_REGISTERED,  # noqa: F401
                       ERROR_RELAY_FULL, ERROR_RELAY_STOPPING, ERROR_SELF,
                       ERROR_TOO_MANY_CHATS, SEED_VARIANTS, VARIANTS, Connect, Cookie,
                       DirectMessage, Error, Goodbye, Online, PeerInfo, Ping, Pong,
                       Register, RegisterAck, SessionFinished, TargetBusy,
                       TargetNotFound, Unregister)

MAX_DATAGRAM = 1024
"""Largest datagram we send or accept: the seed's receive buffer."""


class ProtocolError(ValueError):
    """Base class of codec errors."""


class RemoteProtocolError(ProtocolError):
    """The other side sent something we cannot accept; drop the datagram."""


class UnknownVariant(RemoteProtocolError):
    """A well-formed document naming a variant we do not know."""


class LocalProtocolError(ProtocolError):
    """Our own code asked for a message that must not be sent."""


# -------------------------------------------------------------------- codec


def encode(msg) -> bytes:
    """Serialize *msg* to the bytes serde_json would produce.

    Raises LocalProtocolError if the result would exceed MAX_DATAGRAM.
    """
    body = {}
    for field, _, _ in msg.FIELDS:
        value = getattr(msg, field)
        if value is not None:
            body[field] = list(value) if isinstance(value, tuple) else value
    name = type(msg).__name__
    doc = name if (msg.UNIT and not body) else {name: body}
    try:
        data = _ENCODER.encode(doc).encode("utf-8")
    except UnicodeEncodeError:
        raise LocalProtocolError("%s contains a lone surrogate" % name) from None
    if len(data) > MAX_DATAGRAM:
        raise LocalProtocolError("%s would take %d bytes, over the %d-byte limit"
                                 % (name, len(data), MAX_DATAGRAM))
    return data


def decode(data: bytes):
    """Parse one datagram into a message object.

    Raises UnknownVariant for a well-formed document of a variant we do not
    know, RemoteProtocolError for anything else we cannot accept.
    """
    if len(data) > MAX_DATAGRAM:
        raise RemoteProtocolError("datagram of %d bytes exceeds %d" % (len(data), MAX_DATAGRAM))
    try:
        doc = _DECODER.decode(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise RemoteProtocolError("not a JSON document: %s" % _short(exc)) from None
    if isinstance(doc, str):
        name, body = doc, None
    elif isinstance(doc, dict) and len(doc) == 1:
        (name, body), = doc.items()
    else:
        raise RemoteProtocolError("not an externally tagged enum")
    cls = VARIANTS.get(name)
    if cls is None:
        raise UnknownVariant("unknown variant %r" % _short(name))
    if body is None and cls.UNIT:
        body = {}
    if not isinstance(body, dict):
        raise RemoteProtocolError("%s: body must be an object" % name)
    return cls(**_fields_from(cls, body))


def _fields_from(cls, body):
    kwargs = {}
    for field, required, validate in cls.FIELDS:
        value = body.get(field)
        if value is not None:
            try:
                kwargs[field] = validate(value)
            except ValueError as exc:
                raise RemoteProtocolError("%s.%s: %s" % (cls.__name__, field, exc)) from None
        elif required:
            raise RemoteProtocolError("%s: missing field %s" % (cls.__name__, field))
    return kwargs


def _reject_constant(name):
    raise ValueError("%s is not JSON" % name)


def _unique_keys(pairs):
    # serde_json refuses duplicate fields; so do we, rather than let the last win
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise ValueError("duplicate key")
    return obj


_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
_DECODER = json.JSONDecoder(parse_constant=_reject_constant, object_pairs_hook=_unique_keys)


def _short(value, limit=60):
    text = str(value)
    return text if len(text) <= limit else text[:limit] + "..."


# --------------------------------------------------------------- chat text

_DM_OVERHEAD = len(encode(DirectMessage(content="")))


def split_text(text: str, limit: int = MAX_DATAGRAM):
    """Cut *text* into pieces whose DirectMessage encodings fit in *limit*.

    Pieces break between code points (never inside a character or an escape),
    at the last blank when that keeps the piece at least half full. An empty
    text gives one empty piece.
    """
    budget = limit - _DM_OVERHEAD
    if budget < 6:                         # the longest escape of one character
        raise LocalProtocolError("limit %d leaves no room for text" % limit)
    pieces, start, used = [], 0, 0
    blank, after_blank = None, 0   # last blank in this piece, bytes after it
    for i, ch in enumerate(text):
        cost = _escaped_len(ch)
        if used + cost > budget:
            if blank is not None and after_blank <= budget // 2:
                cut, used = blank + 1, after_blank
            else:
                cut, used = i, 0
            pieces.append(text[start:cut])
            start, blank = cut, None
        used += cost
        if ch == " ":
            blank, after_blank = i, 0
        elif blank is not None:
            after_blank += cost
    pieces.append(text[start:])
    return pieces


def _escaped_len(ch):
    if ch in '"\\':
        return 2
    if ch < " ":
        return 2 if ch in "\b\f\n\r\t" else 6
    return len(ch.encode("utf-8", "surrogatepass"))
