"""What the relay keeps of one registration, in as few bytes as it can.

Theory of operation
-------------------
Memory is the relay's bound (issue 10: at most 500 bytes a user in the
typical case, a stated bound in the worst), so a :class:`User` holds few
objects:

* what a proven client announced -- token, nonce, key, LAN candidates --
  packed in one bytes object (``token 16 | nonce 16 | key 32 | LAN``),
  each part present or not by a flag;
* the flags and its NAT mapping in one small int;
* its address as one int when it is IPv4
  (:func:`peerpunch.addrkeys.addr_key`), and no endpoint text (formatted
  when needed);
* two intrusive lists -- its block's (:mod:`peerpunch.shares`) and the
  expiry order (:mod:`peerpunch.directory`) -- instead of entries in
  ordered dicts.

The helpers below turn names and addresses into log text that cannot
forge a log line (:func:`name_text`, :func:`endpoint_text`).
"""

import base64
import ipaddress

from . import protocol as P
from .addrkeys import addr_key, addr_of

MAX_INTERNED = 256             # distinct feature lists kept shared
NEVER = float("-inf")
_EXT, _VERIFIED, _ASKED, _HAS_TOKEN, _HAS_NONCE, _HAS_KEY, _HAS_LOCAL = 1, 2, 4, 8, 16, 32, 64
_MAPPING_SHIFT = 7                 # User._flags: the flags above, then P.MAPPINGS index + 1
_NO_BLOB = bytes(64)


class User:
    """One registration (see the module's theory of operation)."""

    __slots__ = ("name", "_addr", "features", "_flags", "_blob", "last_seen", "partner", "secret",
                 "introduced_at", "claim", "watching", "older", "newer", "sooner", "later")

    def __init__(self, name, addr, now):
        self.name = name
        self._addr = addr_key(addr)    # (the Directory's by-address table is keyed by it or its IP)
        self.features = None
        self._flags = 0         # _EXT | _VERIFIED | _ASKED | _HAS_* | mapping << _MAPPING_SHIFT
        self._blob = _NO_BLOB   # token 16 | nonce 16 | key 32 | LAN candidates
        self.last_seen = now
        self.partner = None     # the User this one is in a session with
        self.secret = None      # that session's secret, the same in both Users
        self.introduced_at = NEVER
        self.claim = None       # (partner name, secret, until): "in a chat we do not know of"
        self.watching = ()      # names it waits for (a Register with its token said so)
        self.older = self.newer = None     # its block's registrations (peerpunch.shares)
        self.sooner = self.later = None    # all registrations, by last contact (the Directory's)

    ext = property(lambda self: self._flag(_EXT), lambda self, on: self._set(_EXT, on),
                   doc="it announced the extensions")
    verified = property(lambda self: self._flag(_VERIFIED), lambda self, on: self._set(_VERIFIED, on),
                        doc="it proved it receives at its address (a cookie): extension clients")
    asked = property(lambda self: self._flag(_ASKED), lambda self, on: self._set(_ASKED, on),
                     doc="its current pairing was asked for with the asker's token")

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
        packed = self._field(_HAS_LOCAL, 64, None)
        return _unpack_local(packed) if packed is not None else None

    @local.setter
    def local(self, candidates):
        self._put(_HAS_LOCAL, 64, None, _pack_local(candidates) if candidates is not None else None)

    def set_features(self, features, interned):
        """Keep one shared tuple per distinct feature list (most users share one)."""
        if features != self.features:
            if features is not None:
                features = interned.setdefault(features, features) \
                    if len(interned) < MAX_INTERNED else features
            self.features = features
            self.ext = P.speaks_extensions(features)


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
