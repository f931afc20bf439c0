"""What the relay keeps of one registration, in as few bytes as it can.

Theory of operation
-------------------
Memory is the relay's bound (issue 10: at most 500 bytes a user in the
typical case, a stated bound in the worst), so a :class:`User` holds few
objects:

* what a proven client announced -- token, nonce, key, how many chats it
  may hold, LAN candidates -- packed in one bytes object
  (``token 16 | nonce 16 | key 32 | max_chats 1 | LAN``), each part
  present or not by a flag (max_chats: 0 when it did not say);
* its sessions as a tuple (empty for most users), and the chats it claims
  (after a relay restart) packed in one bytes object with their deadline;
* the flags and its NAT mapping in one small int;
* its address as one int when it is IPv4
  (:func:`peerpunch.addrkeys.addr_key`), and no endpoint text (formatted
  when needed);
* two intrusive lists -- its block's (:mod:`peerpunch.shares`) and the
  expiry order (:mod:`peerpunch.directory`) -- instead of entries in
  ordered dicts.

A :class:`Pair` is one session, in the ``chats`` of both its users. The
helpers below turn names and addresses into log text that cannot
forge a log line (:func:`name_text`, :func:`endpoint_text`).
"""

import base64
import ipaddress

from . import protocol as P
from .addrkeys import addr_key, addr_of
from .forwarder import channel_id

MAX_INTERNED = 256             # distinct feature lists kept shared
NEVER = float("-inf")
_EXT, _VERIFIED, _HAS_TOKEN, _HAS_NONCE, _HAS_KEY, _HAS_LOCAL = 1, 2, 8, 16, 32, 64
_MAPPING_SHIFT = 7                 # User._flags: the flags above, then P.MAPPINGS index + 1
_CHATS, _LOCAL = 64, 65            # User._blob: where max_chats and the LAN candidates are
_NO_BLOB = bytes(_LOCAL)


class User:
    """One registration (see the module's theory of operation)."""

    __slots__ = ("name", "_addr", "features", "_flags", "_blob", "last_seen", "chats", "claims",
                 "watching", "older", "newer", "sooner", "later")

    def __init__(self, name, addr, now):
        self.name = name
        self._addr = addr_key(addr)    # (the Directory's by-address table is keyed by it or its IP)
        self.features = None
        self._flags = 0         # _EXT | _VERIFIED | _HAS_* | mapping << _MAPPING_SHIFT
        self._blob = _NO_BLOB   # token 16 | nonce 16 | key 32 | max_chats 1 | LAN candidates
        self.last_seen = now
        self.chats = ()         # its sessions (peerpunch.pairings.Pair), oldest first
        self.claims = None      # (until, packed): chats it says it is in that we do not know of
        self.watching = ()      # names it waits for (a Register with its token said so)
        self.older = self.newer = None     # its block's registrations (peerpunch.shares)
        self.sooner = self.later = None    # all registrations, by last contact (the Directory's)

    ext = property(lambda self: self._flag(_EXT), lambda self, on: self._set(_EXT, on),
                   doc="it announced the extensions")
    verified = property(lambda self: self._flag(_VERIFIED), lambda self, on: self._set(_VERIFIED, on),
                        doc="it proved it receives at its address (a cookie): extension clients")

    def _flag(self, bit):
        return bool(self._flags & bit)

    def _set(self, bit, on):
        self._flags = (self._flags | bit) if on else (self._flags & ~bit)

    @property
    def addr(self):
        return addr_of(self._addr)

    @property
    def endpoint(self):
        """Its public endpoint as PeerInfo writes it."""
        return P.format_endpoint(self.addr)

    @property
    def mapping(self):
        """What its NAT does (one of P.MAPPINGS), if it said."""
        index = self._flags >> _MAPPING_SHIFT
        return P.MAPPINGS[index - 1] if index else None

    @mapping.setter
    def mapping(self, value):
        index = P.MAPPINGS.index(value) + 1 if value in P.MAPPINGS else 0
        self._flags = (self._flags & ~(3 << _MAPPING_SHIFT)) | (index << _MAPPING_SHIFT)

    def _field(self, flag, start, end):
        return self._blob[start:end] if self._flags & flag else None

    def _put(self, flag, start, end, data):
        """Store *data* (None: absent) at blob[start:end] (end None: the rest)."""
        self._set(flag, data is not None)
        blob = self._blob
        tail = blob[end:] if end is not None else b""
        data = data if data is not None else (bytes(end - start) if end is not None else b"")
        self._blob = blob[:start] + data + tail

    token = property(lambda self: _hex(self._field(_HAS_TOKEN, 0, 16)),
                     lambda self, text: self._put(_HAS_TOKEN, 0, 16, _unhex(text)),
                     doc="what it shows with every request (and to move)")
    nonce = property(lambda self: _hex(self._field(_HAS_NONCE, 16, 32)),
                     lambda self, text: self._put(_HAS_NONCE, 16, 32, _unhex(text)),
                     doc="the client's, from its latest proven Register: in all we send it")

    @property
    def key(self):
        """Its long-term public key (base64), if it announced one."""
        key = self._field(_HAS_KEY, 32, 64)
        return base64.b64encode(key).decode("ascii") if key is not None else None

    @key.setter
    def key(self, text):
        self._put(_HAS_KEY, 32, 64, _key_bytes(text) if text is not None else None)

    def same_key(self, text):
        """True if it announced no key, or *text* is that key."""
        key = self._field(_HAS_KEY, 32, 64)
        return key is None or (text is not None and _key_bytes(text) == key)

    @property
    def local(self):
        """The LAN candidates the client announced."""
        packed = self._field(_HAS_LOCAL, _LOCAL, None)
        return _unpack_local(packed) if packed is not None else None

    @local.setter
    def local(self, candidates):
        self._put(_HAS_LOCAL, _LOCAL, None, _pack_local(candidates) if candidates is not None else None)

    @property
    def max_chats(self):
        """How many chats it may hold at once, as the relay capped what it
        announced; 0 if it did not announce it (one chat, the seed's way)."""
        return self._blob[_CHATS]

    @max_chats.setter
    def max_chats(self, count):
        if count != self._blob[_CHATS]:
            self._blob = self._blob[:_CHATS] + bytes((count,)) + self._blob[_CHATS + 1:]

    # -- chats

    def chat_with(self, other):
        """Its session (a Pair) with the User *other*, or None."""
        for pair in self.chats:
            if (pair.b if pair.a is self else pair.a) is other:
                return pair
        return None

    def claimed(self, now):
        """The chats it claims, [(partner name, secret bytes)], until they lapse."""
        claims = self.claims
        if claims is None or claims[0] <= now:
            return []
        return _unpack_claims(claims[1])

    def set_claims(self, claims, until):
        """Claim the chats [(partner name, secret bytes)] until *until*."""
        self.claims = (until, _pack_claims(claims)) if claims else None

    def drop_claim(self, name, now):
        """It no longer claims a chat with *name* (nor any that lapsed)."""
        claims = self.claimed(now)
        kept = [c for c in claims if c[0] != name]
        if len(kept) != len(claims):
            self.set_claims(kept, self.claims[0])
        elif not claims:
            self.claims = None

    # The one chat of a client that holds one (the oldest, of one that holds several):
    partner = property(lambda self: self.chats[0].other(self) if self.chats else None)
    secret = property(lambda self: self.chats[0].secret.hex() if self.chats else None)

    @property
    def claim(self):
        """Its first claimed chat as (partner name, secret hex, until), lapsed
        or not; None if it claims none."""
        if self.claims is None:
            return None
        name, secret = _unpack_claims(self.claims[1])[0]
        return name, secret.hex(), self.claims[0]

    def set_features(self, features, interned):
        """Keep one shared tuple per distinct feature list (most users share one)."""
        if features != self.features:
            if features is not None:
                features = interned.setdefault(features, features) \
                    if len(interned) < MAX_INTERNED else features
            self.features = features
            self.ext = P.speaks_extensions(features)


class Pair:
    """One session: two Users (*a* asked), their 16-byte *secret*, and
    whether the pairing was asked for with the asker's token."""

    __slots__ = ("a", "b", "secret", "asked", "introduced_at", "_channel")

    def __init__(self, a, b, secret, asked):
        self.a, self.b, self.secret, self.asked = a, b, secret, asked
        self.introduced_at = NEVER
        self._channel = None

    def other(self, user):
        return self.b if user is self.a else self.a

    @property
    def channel(self):
        """What names this session in a relayed datagram (computed once, when used)."""
        if self._channel is None:
            self._channel = channel_id(self.secret)
        return self._channel


def _hex(data):
    return data.hex() if data is not None else None


def _unhex(text):
    return bytes.fromhex(text) if text is not None else None


def _pack_local(candidates):
    """LAN candidates (canonical endpoint text) as bytes: per candidate a
    length byte, the packed IP and the port (7 bytes for IPv4)."""
    out = bytearray()
    for text in candidates:
        host, port = P.parse_endpoint(text)
        ip = ipaddress.ip_address(host).packed
        out += bytes((len(ip),)) + ip + port.to_bytes(2, "big")
    return bytes(out)


def _unpack_local(data):
    out, i = [], 0
    while i < len(data):
        size = data[i]
        ip = ipaddress.ip_address(data[i + 1:i + 1 + size])
        port = int.from_bytes(data[i + 1 + size:i + 3 + size], "big")
        out.append(P.format_endpoint((str(ip), port)))
        i += 3 + size
    return tuple(out)


def _pack_claims(claims):
    """Claimed chats as bytes: per chat a length byte, the partner's name
    in UTF-8 (at most 128 bytes) and the 16 bytes of the secret."""
    out = bytearray()
    for name, secret in claims:
        raw = name.encode("utf-8")
        out += bytes((len(raw),)) + raw + secret
    return bytes(out)


def _unpack_claims(data):
    out, i = [], 0
    while i < len(data):
        size = data[i]
        out.append((data[i + 1:i + 1 + size].decode("utf-8"), data[i + 1 + size:i + 17 + size]))
        i += 17 + size
    return out


def _key_bytes(text):
    """A public key's 32 bytes from its (validated) base64 text."""
    return base64.b64decode(text.encode("ascii"))


def endpoint_text(addr):
    """A source address as a log line may show it."""
    try:
        return P.format_endpoint(addr)
    except (ValueError, IndexError, TypeError):
        return repr(addr)


def name_text(name):
    """A username as it may be written to a log: quoted, escapes visible."""
    return ascii(name) if not name.isprintable() else repr(name)
