"""The relay's fallback service: forwarding datagrams between two introduced
peers whose NATs will not let them talk directly. Sans-I/O.

Theory of operation
-------------------
A relayed datagram is one byte RELAYED (0xD0, which starts neither JSON nor
STUN nor a secure-channel frame) followed by whatever the peer would have
sent directly -- for our peers a sealed secure-channel frame, so the relay
forwards ciphertext it cannot read. The relay forwards it unchanged to the
one address it introduced the sender to: the sender's session partner, at
the endpoint that partner registered from, and only between two clients that
both asked for the service (``relay1``) and proved they receive at their
addresses (by echoing the token the relay sent there), so one spoofed
Register cannot aim it at a third party. It never adds bytes, so it
amplifies nothing.

A client in several chats at once (one that announced ``max_chats``) names
the session: RELAYED_TO (0xD1), then the session's channel (CHANNEL_BYTES,
:func:`channel_id` of the session secret both peers got in PeerInfo), then
the datagram. Such a client receives relayed datagrams in that form from
every partner; others receive the one-byte form. The relay rewrites only
the header, so a datagram may grow by the 8 channel bytes on its way to a
proven client in that session, and never otherwise.

Each session pair that uses the service holds a :class:`Allocation` with
quotas: a token bucket of bytes per second, a total byte budget and an idle
timeout, and only ``max_sessions`` allocations exist at once, at most
``max_per_source`` of them for one source IP. Idle ones are
freed by ``expire(now)``; ending the session frees it at once.
"""

import collections
import hashlib

RELAYED = 0xD0
RELAYED_TO = 0xD1                  # ... followed by the session's channel
CHANNEL_BYTES = 8
MAX_RELAYED = 1400                 # one relayed datagram, marker included (channel not counted)

MAX_SESSIONS = 64
MAX_PER_SOURCE = 4                 # allocations one IP (or IPv6 /64) may hold
RATE = 256 * 1024                  # bytes per second per session...
BURST = 512 * 1024                 # ...with this much saved up
SESSION_BYTES = 256 * 1024 * 1024  # in total per session
IDLE_TIMEOUT = 60.0


def is_relayed(data):
    return bool(data) and data[0] == RELAYED


def is_relay_frame(data):
    """True for a datagram in either relayed form (the relay forwards both)."""
    return bool(data) and data[0] in _FORMS


_FORMS = frozenset((RELAYED, RELAYED_TO))


def channel_id(secret):
    """The channel (CHANNEL_BYTES) that names the session whose secret is
    *secret* (16 bytes) in a RELAYED_TO datagram: the peers and the relay
    all know the secret; the channel reveals nothing of it."""
    return hashlib.sha256(b"peerpunch relay channel\x00" + secret).digest()[:CHANNEL_BYTES]


class Limits(collections.namedtuple("Limits", "max_sessions rate burst session_bytes idle_timeout"
                                              " max_per_source")):
    """The relay operator's quotas (flags of ``python -m peerpunch.relay``)."""


Limits.__new__.__defaults__ = (MAX_PER_SOURCE,)
DEFAULT_LIMITS = Limits(MAX_SESSIONS, RATE, BURST, SESSION_BYTES, IDLE_TIMEOUT)


class Allocation:
    __slots__ = ("tokens", "updated", "used", "last_used", "owner")

    def __init__(self, burst, now, owner):
        self.owner = owner
        self.tokens = burst
        self.updated = now
        self.used = 0
        self.last_used = now


class Forwarder:
    """Decides whether one relayed datagram may pass; keeps the allocations."""

    def __init__(self, limits=DEFAULT_LIMITS, enabled=True):
        self.limits = limits
        self.enabled = enabled
        self.allocations = collections.OrderedDict()   # pair key -> Allocation, oldest use first
        self.per_owner = collections.Counter()         # allocations per source IP
        self.stats = collections.Counter()

    def admit(self, key, size, now, owner=None):
        """May a datagram of *size* bytes pass for the session *key*, sent
        by a client at *owner* (its IP)? Returns None if so, else the reason
        it may not."""
        if not self.enabled:
            return "relay fallback is off"
        if size > MAX_RELAYED:
            return "datagram too large"
        alloc = self.allocations.get(key)
        if alloc is None:
            self.expire(now)
            if len(self.allocations) >= self.limits.max_sessions:
                return "too many relayed sessions"
            if self.per_owner[owner] >= self.limits.max_per_source:
                return "too many relayed sessions from one address"
            alloc = self.allocations[key] = Allocation(self.limits.burst, now, owner)
            self.per_owner[owner] += 1
            self.stats["allocations"] += 1
        alloc.tokens = min(self.limits.burst, alloc.tokens + (now - alloc.updated) * self.limits.rate)
        alloc.updated = now
        if alloc.used + size > self.limits.session_bytes:
            return "session byte budget spent"
        if alloc.tokens < size:
            return "rate limit"
        alloc.tokens -= size
        alloc.used += size
        alloc.last_used = now
        self.allocations.move_to_end(key)
        self.stats["datagrams"] += 1
        self.stats["bytes"] += size
        return None

    def release(self, key):
        alloc = self.allocations.pop(key, None)
        if alloc is not None:
            self._disown(alloc)

    def _disown(self, alloc):
        self.per_owner[alloc.owner] -= 1
        if self.per_owner[alloc.owner] <= 0:
            del self.per_owner[alloc.owner]

    def expire(self, now):
        """Free allocations idle for longer than the idle timeout."""
        while self.allocations:
            key, alloc = next(iter(self.allocations.items()))
            if now - alloc.last_used < self.limits.idle_timeout:
                return
            del self.allocations[key]
            self._disown(alloc)
            self.stats["idle_freed"] += 1
