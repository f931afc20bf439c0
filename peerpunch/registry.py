"""The relay's rendezvous logic, without sockets or clocks.

Theory of operation
-------------------
The relay faces the internet, where a source address can be forged. So
(issue 10) nothing a datagram from an unproven source says creates state
that outlives it, changes anyone else's state, or sends a third address
anything; and nothing we send an unproven address is larger than what came
from it.

Proven registrations. An extension client (``ext`` in its features) proves
it receives at its address with a stateless cookie, as WireGuard's cookie
reply and QUIC's Retry do: its first Register gets only a ``Cookie`` (an
HMAC of the time slot, the address and the name under a per-process key,
good for COOKIE_SLOT to 2 x COOKIE_SLOT seconds), and only if that reply is
no larger than the Register; the Register repeated with it is stored at
once as proven and acknowledged with a ``token``. From then on, every
request from that client -- re-Register (the refresh), a new name, Connect,
SessionFinished, Unregister, watches, claims -- carries the token, or it
changes nothing and refreshes nothing. A client whose NAT mapping changed
moves its name to the new address with its token (and key) and the new
address's cookie. A Register with a good cookie also replaces whatever was
registered at its address: only a client there could have read the cookie.
Each proven Register carries the client's ``nonce``, and every message we
send it (RegisterAck, PeerInfo, TargetNotFound, TargetBusy, Error, Online)
carries that nonce back, so that the client can tell ours from forgeries.

Seed-form registrations (no ``ext``: the seed's clients, which cannot echo
anything) live in a separate pool of ``max_seed_users``. A seed-form
Register never touches a proven registration -- neither the one at its
address nor one of its name; it is dropped unanswered -- so it cannot
displace, rename, refresh, downgrade or shadow one. Introductions go
between two proven clients, between two seed-form ones, or from a proven
asker to a seed-form client; a seed-form Connect (which cannot be
authenticated) for a proven client gets TargetNotFound. A PeerInfo to a
seed-form client goes to an address nobody proved, so each block (/24,
/48) gets at most SEED_INFO_BURST of them at once and SEED_INFO_RATE a
second, and introductions a seed client asked for spend a credit of
SEED_GAIN bytes per byte seed-form clients sent (at most SEED_CREDIT_MAX
saved up): what a forger reflects through the seed pool is at most
SEED_GAIN x its own bytes, plus 16 kB.

Fair shares. Registrations are counted per IP (IPv6: per /64, at most
``max_users_per_ip``) and per /24 or /48 block (:mod:`peerpunch.shares`).
A full pool admits a newcomer whose block is lighter by two or more than
the heaviest, in place of the heaviest block's oldest registration, so that
a flood from a few hundred addresses cannot lock out the rest of the internet.

Errors go only to extension clients, never larger than a datagram that was
not authenticated (a malformed one), and at most ERROR_BURST at once and
ERROR_RATE a second per block, in a table of MAX_BUDGET_BLOCKS blocks that
cannot be cycled past. Replies (Error, Cookie, ...) are never answered.

Users are kept by name and by address in O(1), and in an ordered dict
sorted by last proven contact, so expiry (after ``expire_after`` seconds
without one) only looks at the oldest entries. ``Connect`` pairs two free
users: each gets a ``PeerInfo`` naming the other's public endpoint, and
both are busy until either sends ``SessionFinished`` (or expires). A
repeated ``Connect`` for the pair already made repeats both ``PeerInfo``s
(once per REINTRODUCE_EVERY), which is how lost datagrams are recovered.

Each introduction also hands both extension peers the same random
``session`` secret, which keys the MAC on their secure handshake and names
the pair for the fallback service: RELAYED datagrams from one partner go to
the other, within the quotas of :mod:`peerpunch.forwarder`. The ``mapping``
a client announced (what its NAT does) makes the other peer aim a birthday
search (thousands of probes) at its address, so it is believed only from a
Register with the token and passed on only for a client that proved its
address, in a pairing whose Connect carried the asker's token.

A relay that restarts forgets every pairing. Clients in a chat name it in
their Registers (``partner`` and ``session``); with the token, that makes
the user busy to others, and once both partners have claimed the same chat
with the same secret the pairing is restored, forwarding included. A relay
that stops cleanly says so to every proven extension client (``farewell``:
an Error relay-stopping), so they register with the relay that replaces it
within a second or two rather than at their next re-registration.

A client waiting for someone who is not online yet names them in its
Registers (``watch``, at most ``P.MAX_WATCH`` names). Only a proven Register
sets watches (or clears them, by naming none), so they go only to
an address that proved it receives there, and a relay that restarted
relearns them from the next re-registration. When a watched name registers,
each extension watcher gets ``Online`` (ONLINE_COPIES copies: one loss
costs nothing) once the name's client has proven its address (the cookie),
so that a Register forged from nowhere sends watchers nothing, and
at most once per NOTIFY_EVERY per name. A watch Register for a name that
is registered already (proven, or a seed client, which cannot prove
itself) gets one Online at once -- never more bytes than the Register --
which also covers notifications that were lost. A watch ends with the
watcher's registration (expiry, Unregister, another name from its address)
and when the watcher is paired with someone. Bounds: MAX_WATCHERS_PER_NAME
watchers per name and ``max_watches`` in all (watches over either are
refused and counted; the watcher still hears of the name at its next
re-registration), so a registration costs at most 32 notifications and a
Register at most P.MAX_WATCH dictionary updates; a stored watch of a name
nobody else watches takes ~240 bytes (measured with tracemalloc, 64k of
them), up to ~400 with the longest names: at most ~26 MB at MAX_WATCHES.

Memory (issue 10: at most 500 bytes a user in the typical case, a stated
bound in the worst). A :class:`User` keeps few objects: what a proven
client announced packed in one bytes object, flags and mapping in one int,
an IPv4 address as one int, no endpoint text; expiry order and block order
are lists threaded through the users, an IPv4 IP with one user needs no
per-IP entry (the user is found under its IP), a block with one user no
bookkeeping object. Measured with tracemalloc (tests/test_registry_memory.py,
docs/performance.md): ~490 bytes a typical extension user, ~390 a seed-form
one, ~2,500 with the largest Register; the caps follow from the stated
bound of 3,000 (docs/operating.md).

Nothing a datagram contains can raise out of :meth:`Registry.datagram_received`
or grow state without bound: malformed input is counted in ``stats``, and
logged once per source (the set of sources is bounded).
"""

import base64
import collections
import dataclasses
import hashlib
import hmac
import ipaddress
import logging
import os
import socket

from . import protocol as P
from .effects import Log, Send
from .forwarder import Forwarder, is_relayed
from .shares import Budget, Shares, block_key

EXPIRE_AFTER = 90.0
MAX_USERS = 200_000            # proven (extension) registrations
MAX_SEED_USERS = 10_000        # seed-form registrations: a separate pool
MAX_NOTED_SOURCES = 4096
MAX_EXPIRED_PER_TICK = 1000    # a mass expiry must not stall the loop
MAX_INTERNED = 256
REINTRODUCE_EVERY = 0.5        # seconds between repeated introductions of a pair
CLAIM_FOR = 45.0               # a claimed chat keeps its user busy this long (2 re-registrations)
MAX_USERS_PER_IP = 256         # (per /64 for IPv6): one host cannot fill the relay
MAX_WATCHERS_PER_NAME = 32     # clients told when one name registers
MAX_WATCHES = 65536            # stored watches in all (~240 B each, see above)
ONLINE_COPIES = 2              # an Online is sent twice: a lost one costs nothing
NOTIFY_EVERY = 5.0             # seconds between the notifications about one name
COOKIE_SLOT = 30.0             # a cookie is good in its slot and the next one
ERROR_RATE, ERROR_BURST = 1.0, 5.0          # Errors per second per /24 or /48...
SEED_INFO_RATE, SEED_INFO_BURST = 2.0, 8.0  # ...and PeerInfos to seed-form clients
MAX_BUDGET_BLOCKS = 4096       # blocks each budget table tracks
SEED_GAIN = 3                  # seed-pool introductions: bytes out <= this x bytes in...
SEED_CREDIT_MAX = 16384        # ...plus at most this much saved up
NEVER = float("-inf")
_EXT, _VERIFIED, _ASKED, _HAS_TOKEN, _HAS_NONCE, _HAS_KEY, _HAS_LOCAL = 1, 2, 4, 8, 16, 32, 64
_MAPPING_SHIFT = 7                 # User._flags: the flags above, then P.MAPPINGS index + 1
_NO_BLOB = bytes(64)


class User:
    """One registration. Memory is the relay's bound (issue 10: at most 500
    bytes a user in the typical case), so a User holds few objects: what a
    proven client announced (token, nonce, key, LAN candidates) packed in
    one bytes object, the flags and its mapping in one small int, its
    address as one int when it is IPv4 (:func:`_addr_key`), no endpoint
    text (formatted when needed), and two intrusive lists (its block's, see
    peerpunch.shares, and the expiry order) instead of entries in ordered
    dicts."""

    __slots__ = ("name", "_addr", "features", "_flags", "_blob", "last_seen", "partner", "secret",
                 "introduced_at", "claim", "watching", "older", "newer", "sooner", "later")

    def __init__(self, name, addr, now):
        self.name = name
        self._addr = _addr_key(addr)   # (Registry._by_addr is keyed by it or by its IP)
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
        self.sooner = self.later = None    # all registrations, by last contact (the Registry's)

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
        return _addr_of(self._addr)

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


class Registry:
    """The relay's state. Feed it datagrams and the time; send what it returns.

    ``datagram_received(data, addr, now)`` and ``tick(now)`` return lists of
    :class:`Send` and :class:`Log`. ``next_deadline()`` says when ``tick`` is
    next due.
    """

    def __init__(self, *, expire_after=EXPIRE_AFTER, max_users=MAX_USERS, verbose=False,
                 random_bytes=os.urandom, forwarder=None, max_users_per_ip=MAX_USERS_PER_IP,
                 max_watches=MAX_WATCHES, max_seed_users=MAX_SEED_USERS):
        self.max_users_per_ip = max_users_per_ip
        self.max_watches = max_watches
        self.forwarder = forwarder if forwarder is not None else Forwarder()
        self.features = (P.OUR_FEATURES if self.forwarder.enabled else (P.FEATURE_EXT,)) \
            + (P.FEATURE_WATCH,)
        self.expire_after = expire_after
        self.random_bytes = random_bytes
        self.verbose = verbose
        self.max_users = max_users
        self.max_seed_users = max_seed_users
        self._cookie_key = random_bytes(32)            # per process: cookies die with it
        self._by_name = {}
        self._by_addr = {}      # see _place: an IPv4 address's IP, or its _addr_key -> User
        self._crowded = {}      # IPv4 IP with users under their _addr_key -> how many
        self._oldest = self._newest = None   # by last proven contact (User.sooner/later)
        self._pools = {True: Shares(), False: Shares()}   # proven (ext) / seed-form, per block
        self._pool_size = collections.Counter()       # True/False -> registrations
        self._noted = collections.OrderedDict()      # sources already logged
        self._interned = {}                            # feature tuples, shared
        self._per_ip = collections.Counter()           # users per IP not counted above (IPv6: /64)
        self._watchers = {}                            # name -> [User waiting for it]
        self._watch_count = 0
        self._notified = {}                            # watched name -> when its watchers were told
        self._errors = Budget(ERROR_RATE, ERROR_BURST, MAX_BUDGET_BLOCKS)
        self._seed_infos = Budget(SEED_INFO_RATE, SEED_INFO_BURST, MAX_BUDGET_BLOCKS)
        self._seed_credit = 0.0                        # bytes seed introductions may still send
        self.stats = collections.Counter()

    # -- queries

    def __len__(self):
        return len(self._by_addr)

    def user(self, name):
        return self._by_name.get(name)

    def proven_users(self):
        return self._pool_size[True]

    def seed_users(self):
        return self._pool_size[False]

    def limited_blocks(self, now):
        """Address blocks (/24, /48) whose Error or seed-PeerInfo budget is
        spent right now: the sources the relay is throttling."""
        return self._errors.exhausted(now) + self._seed_infos.exhausted(now)

    def sessions(self):
        return sum(1 for u in self._by_addr.values() if u.partner) // 2

    def watches(self):
        """How many watches are stored."""
        return self._watch_count

    # -- inputs

    def datagram_received(self, data, addr, now):
        """Handle one datagram from *addr*; return the effects."""
        self.stats["datagrams"] += 1
        out = [Log(logging.DEBUG, "%d bytes from %s" % (len(data), _ep(addr)))] if self.verbose else []
        user = self._find(addr)
        if is_relayed(data):
            return out + self._relay(data, user, addr, now)
        try:
            msg = P.decode(data)
        except P.RemoteProtocolError as exc:
            return out + self._reject(user, addr, "malformed", str(exc), now, len(data))
        handler = self._HANDLERS.get(type(msg))
        if handler is None:
            return out + self._reject(user, addr, "unexpected",
                                      "%s is not a request" % type(msg).__name__, now, len(data))
        if type(msg) is P.Register:
            return out + self._on_register(msg, user, addr, now, len(data))
        if user is None:
            if type(msg) is P.Unregister:
                return out + self._gone(addr)
            return out + self._reject(None, addr, "unregistered",
                                      "%s before Register" % type(msg).__name__, now, 0)
        if user.ext and not _token_ok(user, msg.token):
            # a proven client sends its token with every request; without
            # it, this is someone forging that address: it changes nothing
            return out + self._reject(None, addr, "unproven",
                                      "%s without the token" % type(msg).__name__, now, 0)
        if not user.ext:
            self._credit_seed(len(data))
        self._touch(user, now)
        return out + handler(self, msg, user, addr, now)

    def tick(self, now):
        """Expire users silent for ``expire_after`` seconds (a bounded number
        per call: if more are due, ``next_deadline`` is already past)."""
        out = []
        for _ in range(MAX_EXPIRED_PER_TICK):
            user = self._oldest
            if user is None:
                break
            if now - user.last_seen < self.expire_after:
                break
            self.stats["expired"] += 1
            out.append(Log(logging.INFO, "expired %s at %s" % (_name(user.name), user.endpoint),
                           kind="expired"))
            out += self._remove(user)
        self.forwarder.expire(now)
        return out

    def next_deadline(self):
        if self._oldest is None:
            return None
        return self._oldest.last_seen + self.expire_after

    def farewell(self):
        """The relay is stopping (a restart, say): an Error relay-stopping
        for every extension client that proved its address, so that it
        registers with the relay that replaces us within a second or two
        instead of at its next re-registration. Seed clients get nothing."""
        told = [Send(P.encode(P.Error(code=P.ERROR_RELAY_STOPPING, message="the relay is stopping",
                                      nonce=u.nonce)), u.addr)
                for u in self._by_addr.values() if u.ext and u.verified]
        self.stats["farewells"] += len(told)
        return told

    # -- registration

    def _on_register(self, msg, user, addr, now, size):
        if not P.speaks_extensions(msg.features):
            self._credit_seed(size)
            return self._on_seed_register(msg, user, addr, now)
        if user is not None and user.ext and _token_ok(user, msg.token):
            return self._on_proven_register(msg, user, addr, now)
        if msg.cookie is not None and self._cookie_ok(msg.cookie, addr, msg.username, now):
            return self._on_cookie_register(msg, user, addr, now)
        return self._send_cookie(msg, addr, now, size)

    def _send_cookie(self, msg, addr, now, size):
        """An extension Register from an address not proven: no state, one
        Cookie -- if it is no larger than the Register."""
        data = P.encode(P.Cookie(cookie=self._cookie(addr, msg.username, now), nonce=msg.nonce))
        if len(data) > size:
            self.stats["cookie_too_large"] += 1
            return []
        self.stats["cookies"] += 1
        return [Send(data, addr)]

    def _cookie(self, addr, name, now, slot=0):
        text = "%d %s %s" % (int(now // COOKIE_SLOT) - slot, _ep(addr), name)
        return hmac.new(self._cookie_key, text.encode("utf-8"), hashlib.sha256).digest()[:16].hex()

    def _cookie_ok(self, cookie, addr, name, now):
        return any(hmac.compare_digest(cookie, self._cookie(addr, name, now, slot)) for slot in (0, 1))

    def _on_proven_register(self, msg, user, addr, now):
        """A Register with the token from a proven client's address: a
        refresh, or a new name for it."""
        self._touch(user, now)
        out = []
        if msg.username != user.name:
            holder = self._by_name.get(msg.username)
            if holder is not None:
                return self._refuse_takeover(msg, holder, addr, now)
            token = user.token
            out = self._remove(user)
            user, logs, refusal = self._admit(msg.username, addr, now, proven=True)
            out += logs
            if user is None:
                return out + self._refuse_full(msg, addr, now, refusal)
            user.token = token
        return out + self._update(user, msg, now, answer=True)

    def _on_cookie_register(self, msg, user, addr, now):
        """A Register with a good cookie: its sender receives at *addr*.
        It may register a free name, move its own (token and key) here, or
        replace whatever was registered at this address (the same client,
        restarted: only a client at the address could have read the cookie)."""
        holder = self._by_name.get(msg.username)
        out = []
        if holder is not None and holder is not user:
            if not (holder.ext and _may_move(holder, msg)):
                return self._refuse_takeover(msg, holder, addr, now)
            out = self._remove(user) if user is not None else []
            out.append(self._move(holder, addr, now))
            return out + self._update(holder, msg, now, answer=True)
        if user is not None and (not user.ext or user.name != msg.username):
            out = self._remove(user)            # a seed-form registration becomes a proven one,
            user = None                         # or the client here took another name
        if user is None:
            user, logs, refusal = self._admit(msg.username, addr, now, proven=True)
            out += logs
            if user is None:
                return out + self._refuse_full(msg, addr, now, refusal)
            user.token = self.random_bytes(16).hex()
            out += self._update(user, msg, now, answer=True)
            return out + self._notify(user, now)   # proven: a forged Register tells no watcher
        self._touch(user, now)
        return out + self._update(user, msg, now, answer=True)

    def _update(self, user, msg, now, answer):
        """What a proven Register says about its client; then the ack."""
        user.set_features(msg.features, self._interned)
        user.nonce = msg.nonce
        user.mapping = msg.mapping
        user.local = msg.local
        if msg.key is not None:
            user.key = msg.key
        out = self._claim(user, msg.partner, msg.session, now)
        out += self._watch(user, msg.watch or (), answer=answer)
        ack = P.RegisterAck(features=self.features, token=user.token, nonce=user.nonce)
        return out + [Send(P.encode(ack), user.addr)]

    def _on_seed_register(self, msg, user, addr, now):
        """A seed-form Register: the seed-form pool only. It never touches a
        proven registration (its address or its name), and gets no answer
        where it tried."""
        holder = self._by_name.get(msg.username)
        if (user is not None and user.ext) or (holder is not None and holder.ext):
            self.stats["seed_vs_proven"] += 1
            return []
        if holder is not None and holder is not user:
            return self._refuse_takeover(msg, holder, addr, now)
        out = []
        if user is not None and user.name != msg.username:
            out = self._remove(user)            # a seed client takes a new name
            user = None
        if user is None:
            user, logs, refusal = self._admit(msg.username, addr, now, proven=False)
            out += logs
            if user is None:
                return out + self._refuse_full(msg, addr, now, refusal)
            user.set_features(msg.features, self._interned)
        else:
            self._touch(user, now)
        return out + [Send(P.encode(P.RegisterAck()), addr)]

    def _admit(self, name, addr, now, proven):
        """A new registration in its pool: (User, None), or (None, why not).
        A full pool takes a newcomer from a lighter block in place of the
        oldest registration of its heaviest block."""
        block = block_key(addr)
        out = []
        if self._users_at_ip(addr) >= self.max_users_per_ip:
            self.stats["full_for_ip"] += 1
            return None, out, "too many users at that IP"
        if self._pool_size[proven] >= (self.max_users if proven else self.max_seed_users):
            victim = self._pools[proven].victim(block)
            if victim is None:
                self.stats["full" if proven else "seed_full"] += 1
                return None, out, "relay full"
            self.stats["evicted"] += 1
            out.append(Log(logging.INFO, "evicted %s at %s for a newcomer from a lighter block"
                           % (_name(victim.name), victim.endpoint), kind="evicted"))
            out += self._remove(victim)
        user = User(name, addr, now)
        user.ext = user.verified = proven
        self._pools[proven].add(user, block)
        self._pool_size[proven] += 1
        self._by_name[name] = user
        self._place(user)
        self._append(user)
        self.stats["registrations"] += 1
        out.append(Log(logging.INFO, "registered %s at %s%s" % (
            _name(name), user.endpoint, "" if proven else " (seed form)"), kind="registered"))
        return user, out, None

    def _refuse_full(self, msg, addr, now, why):
        return self._note_refusal(msg, addr, why) + self._error(
            addr, P.ERROR_RELAY_FULL, "the relay is full", msg.nonce, now,
            ext=P.speaks_extensions(msg.features))

    def _note_refusal(self, msg, addr, why):
        """One line per refusal: the relay's log limiter bounds them."""
        return [Log(logging.WARNING, "refused %s from %s: %s" % (_name(msg.username), _ep(addr), why),
                    kind="full")]

    def _refuse_takeover(self, msg, holder, addr, now):
        self.stats["name_taken"] += 1
        out = []
        if self._note(addr):
            out.append(Log(logging.WARNING, "refused %s from %s: name held by %s%s"
                           % (_name(msg.username), _ep(addr), holder.endpoint,
                              " (wrong token or key)" if msg.token else ""), kind="name_taken"))
        return out + self._error(addr, P.ERROR_NAME_TAKEN, "the name %s is in use" % msg.username,
                                 msg.nonce, now, ext=P.speaks_extensions(msg.features))

    def _move(self, user, addr, now):
        old = user.endpoint
        self._forget(user)
        user._addr = _addr_key(addr)
        self._pools[True].add(user, block_key(addr))
        self._pool_size[True] += 1
        self._place(user)
        self._append(user)
        self._touch(user, now)
        self.stats["moved"] += 1
        return Log(logging.INFO, "%s moved from %s to %s" % (_name(user.name), old, user.endpoint),
                   kind="moved")

    def _on_connect(self, msg, user, addr, now):
        target = self._by_name.get(msg.target_username)
        if msg.session is not None and (target is None or user.partner is not target
                                        or user.secret != msg.session):
            self.stats["stale_reintroductions"] += 1
            return []                # a peer recovering a chat that has ended: no new pairing
        if target is user:
            self.stats["self_connect"] += 1
            if user.ext:
                return self._error(addr, P.ERROR_SELF, "you cannot connect to yourself",
                                   user.nonce, now)
            return [Send(P.encode(P.TargetNotFound()), addr)]
        if target is None or (target.ext and not user.ext):
            # a seed-form Connect cannot be authenticated: it never reaches a
            # proven client (whom its PeerInfo would aim at a forged address)
            self.stats["not_found" if target is None else "seed_to_proven"] += 1
            return [Send(P.encode(P.TargetNotFound(nonce=user.nonce)), addr)]
        if user.partner is target:
            if user.ext:                 # (its Connect carried its token)
                user.asked = target.asked = True
            if now - user.introduced_at < REINTRODUCE_EVERY:
                self.stats["reintroductions_limited"] += 1
                return []            # no amplification by repeated Connects
            out = self._introduce(user, target, now)
            if out:
                self.stats["reintroductions"] += 1
                user.introduced_at = target.introduced_at = now
            return out
        if target.partner is not None or _claims_other(target, user, now):
            self.stats["busy"] += 1
            return [Send(P.encode(P.TargetBusy(nonce=user.nonce)), addr)]
        return self._pair(user, target, now)

    def _pair(self, user, target, now):
        """Introduce *user* (who asked) to *target*, budgets allowing."""
        secret = self.random_bytes(16).hex()
        infos = self._introduce(user, target, now, secret=secret, asked=user.ext)
        if not infos:
            return []
        out = self._end_session(user)           # a client that moves on left its old chat
        self._unwatch(user)                     # paired: neither waits for anyone now
        self._unwatch(target)
        user.partner, target.partner = target, user
        user.claim = target.claim = None        # an older chat's claim is over
        user.asked = target.asked = user.ext    # (a proven client's Connect carries its token)
        user.secret = target.secret = secret
        user.introduced_at = target.introduced_at = now
        self.stats["introductions"] += 1
        out.append(Log(logging.INFO, "introduced %s at %s to %s at %s"
                       % (_name(user.name), user.endpoint, _name(target.name), target.endpoint),
                       kind="introduced"))
        return out + infos

    def _on_session_finished(self, msg, user, addr, now):
        user.claim = None
        return self._end_session(user)

    def _claim(self, user, partner_name, secret, now):
        """A Register that names a chat (after a relay restart, one this
        relay never paired): it makes the user busy for a while, and once the
        partner claims the same chat with the same secret the pairing is
        back -- the fallback forwards for it again, and nobody else is
        introduced into it."""
        if partner_name is None or secret is None or partner_name == user.name or \
                (user.partner is not None and user.partner.name == partner_name):
            user.claim = None       # no chat, or one this relay knows already
            return []
        # The client is in a chat with partner_name, whatever this relay paired
        # it with meanwhile (a Connect in the moment before it re-registered):
        # the client ignores that introduction, so that pairing ends.
        out = self._end_session(user)
        user.claim = (partner_name, secret, now + CLAIM_FOR)
        other = self._by_name.get(partner_name)
        if other is None or other.partner is not None or not _claims(other, user.name, secret, now):
            return out
        user.partner, other.partner = other, user
        user.secret = other.secret = secret
        user.asked = other.asked = False
        user.claim = other.claim = None
        user.introduced_at = other.introduced_at = now
        self.stats["restored"] += 1
        return out + [Log(logging.INFO, "restored the session of %s and %s (both still in it)"
                          % (_name(other.name), _name(user.name)), kind="restored")]

    def _watch(self, user, names, answer=True):
        """Make *names* (from a Register with *user*'s token) the names
        *user* waits for; with *answer*, say which one is registered
        already (one Online at most, and only for a proven holder or a seed
        client, which cannot prove itself: never more bytes than the
        Register, and *answer* is False for a Register that moved *user* to
        an address not proven yet)."""
        names = tuple(n for i, n in enumerate(names) if n != user.name and n not in names[:i])
        if names != user.watching:
            self._unwatch(user)
            user.watching = tuple(n for n in names if self._add_watch(user, n))
        online = [n for n in names if _present(self._by_name.get(n))][:1] if answer else []
        self.stats["notifications"] += len(online)
        return [Send(P.encode(P.Online(username=n, nonce=user.nonce)), user.addr) for n in online]

    def _add_watch(self, user, name):
        """Store one watch, if the bounds allow; return whether it was."""
        watchers = self._watchers.get(name, ())
        if self._watch_count >= self.max_watches or len(watchers) >= MAX_WATCHERS_PER_NAME:
            self.stats["watches_refused"] += 1
            return False
        self._watchers.setdefault(name, []).append(user)
        self._watch_count += 1
        self.stats["watches"] += 1
        return True

    def _unwatch(self, user):
        for name in user.watching:
            watchers = self._watchers[name]
            watchers.remove(user)
            if not watchers:
                del self._watchers[name]
                self._notified.pop(name, None)
            self._watch_count -= 1
        user.watching = ()

    def _notify(self, user, now):
        """*user*'s name just registered and proved its address: tell the
        extension clients that wait for it, once per NOTIFY_EVERY at most
        (a client that registers and leaves in a loop cannot flood them;
        they still hear at their next re-registration)."""
        watchers = [w for w in self._watchers.get(user.name, ()) if w.ext]
        if not watchers or now - self._notified.get(user.name, float("-inf")) < NOTIFY_EVERY:
            return []
        self._notified[user.name] = now
        self.stats["notifications"] += len(watchers)
        out = [Log(logging.DEBUG, "%s is online: telling %d watcher(s)" % (_name(user.name), len(watchers)),
                   kind="online")]
        for w in watchers:
            data = P.encode(P.Online(username=user.name, nonce=w.nonce))
            out += [Send(data, w.addr)] * ONLINE_COPIES
        return out

    def _on_unregister(self, msg, user, addr, now):
        self.stats["unregistered_by_client"] += 1
        return [Log(logging.INFO, "%s left" % _name(user.name), kind="left")] + self._remove(user)

    def _gone(self, addr):
        """An Unregister from an address not registered: a client sends it
        twice, and the first one already freed the name (or it expired)."""
        self.stats["unregister_repeated"] += 1
        if not self._note(addr):
            return []
        return [Log(logging.DEBUG, "repeated Unregister from %s (already gone)" % _ep(addr), kind="dropped")]

    _HANDLERS = {
        P.Register: _on_register,
        P.Connect: _on_connect,
        P.SessionFinished: _on_session_finished,
        P.Unregister: _on_unregister,
    }

    # -- helpers

    def _relay(self, data, user, addr, now):
        """Forward a RELAYED datagram to the sender's partner, quotas allowing."""
        partner = user.partner if user is not None else None
        if partner is None:
            return self._reject(None, addr, "relay_without_session",
                                "relayed datagram outside a session", now, 0)
        if not (user.verified and partner.verified):
            return self._reject(None, addr, "relay_unverified",
                                "relayed datagram for a client that has not proved its address",
                                now, 0)
        if P.FEATURE_RELAY not in (user.features or ()) or \
                P.FEATURE_RELAY not in (partner.features or ()):
            return self._reject(None, addr, "relay_not_offered", "a side did not ask for relaying",
                                now, 0)
        reason = self.forwarder.admit(user.secret, len(data), now, owner=_ip_key(user.addr))
        if reason is not None:
            self.stats["relay_refused"] += 1
            out = []
            if self._note(addr):
                out.append(Log(logging.INFO, "not relaying for %s: %s" % (_name(user.name), reason),
                               kind="not_relayed"))
            return out
        return [Send(data, partner.addr)]

    def _introduce(self, a, b, now, secret=None, asked=None):
        """PeerInfo to both (a repeated introduction repeats the same
        secret); [] if a budget forbids. A PeerInfo to a seed-form client
        goes to an address nobody proved: at most SEED_INFO_RATE per second
        to its block, and one a seed client asked for spends the seed
        pool's credit (SEED_GAIN x what seed clients sent)."""
        secret = secret or a.secret
        out = [Send(_peer_info(about=b, to=a, secret=secret, asked=asked), a.addr),
               Send(_peer_info(about=a, to=b, secret=secret, asked=asked), b.addr)]
        unproven = [s for s, u in zip(out, (a, b)) if not u.ext]
        cost = sum(len(s.data) for s in out) if not a.ext else 0
        if cost > self._seed_credit or \
                not all(self._seed_infos.ready(block_key(s.addr), now) for s in unproven):
            self.stats["seed_introductions_limited"] += 1
            return []
        self._seed_credit -= cost
        for s in unproven:
            self._seed_infos.take(block_key(s.addr), now)
        return out

    def _credit_seed(self, size):
        self._seed_credit = min(SEED_CREDIT_MAX, self._seed_credit + SEED_GAIN * size)

    def _end_session(self, user):
        partner = user.partner
        if partner is None:
            return []
        user.partner = partner.partner = None
        self.forwarder.release(user.secret)
        self.stats["sessions_ended"] += 1
        return [Log(logging.INFO, "session of %s and %s ended" % (_name(user.name), _name(partner.name)),
                    kind="ended")]

    def _forget(self, user):
        """Take *user* out of the tables kept by address (to move or remove it)."""
        self._pools[user.ext].remove(user, block_key(user.addr))
        self._pool_size[user.ext] -= 1
        self._unplace(user)
        self._unlink(user)

    # Users by address, and how many at each IP, with no entry per IP for
    # the usual IPv4 IP of one user: such a user is in _by_addr under its IP;
    # once an IP has two, they are under their _addr_key and _crowded counts
    # them (down to 1, until the last leaves). Other addresses (IPv6) are
    # under their tuple, counted in _per_ip by _ip_key (an IPv4-mapped IPv6
    # address there counts with its IPv4 one).

    def _find(self, addr):
        key = _addr_key(addr)
        if type(key) is int:
            single = self._by_addr.get(key >> 16 & 0xFFFFFFFF)
            if single is not None:
                return single if single._addr == key else None
        return self._by_addr.get(key)

    def _users_at_ip(self, addr):
        ip = _ip_key(addr)
        count = self._per_ip[ip]
        if type(ip) is int:
            count += self._crowded.get(ip) or (1 if ip in self._by_addr else 0)
        return count

    def _place(self, user):
        key = user._addr
        if type(key) is not int:
            self._per_ip[_ip_key(key)] += 1
            self._by_addr[key] = user
            return
        ip = key >> 16 & 0xFFFFFFFF
        crowded = self._crowded.get(ip)
        if crowded:
            self._crowded[ip] = crowded + 1
        elif ip in self._by_addr:
            single = self._by_addr.pop(ip)
            self._by_addr[single._addr] = single
            self._crowded[ip] = 2
        else:
            key = ip
        self._by_addr[key] = user

    def _unplace(self, user):
        key = user._addr
        if type(key) is not int:
            ip = _ip_key(key)
            self._per_ip[ip] -= 1
            if self._per_ip[ip] <= 0:
                del self._per_ip[ip]
            del self._by_addr[key]
            return
        ip = key >> 16 & 0xFFFFFFFF
        if self._by_addr.get(ip) is user:
            del self._by_addr[ip]
            return
        del self._by_addr[key]
        if self._crowded[ip] > 1:
            self._crowded[ip] -= 1
        else:
            del self._crowded[ip]

    def _note(self, addr):
        """True the first time *addr* is noted (in a bounded memory)."""
        if addr in self._noted:
            return False
        if len(self._noted) >= MAX_NOTED_SOURCES:
            self._noted.popitem(last=False)
        self._noted[addr] = True
        return True

    def _touch(self, user, now):
        user.last_seen = now
        if user is not self._newest:
            self._unlink(user)
            self._append(user)

    def _append(self, user):
        """Make *user* the newest in the expiry order."""
        user.sooner, user.later = self._newest, None
        if self._newest is not None:
            self._newest.later = user
        else:
            self._oldest = user
        self._newest = user

    def _unlink(self, user):
        if user.sooner is not None:
            user.sooner.later = user.later
        else:
            self._oldest = user.later
        if user.later is not None:
            user.later.sooner = user.sooner
        else:
            self._newest = user.sooner
        user.sooner = user.later = None

    def _remove(self, user):
        self._forget(user)
        self._unwatch(user)
        out = self._end_session(user)
        del self._by_name[user.name]
        return out

    def _reject(self, user, addr, kind, reason, now, size):
        """Drop a datagram: count it; log it once per source; tell a
        registered extension client that it was malformed, if the Error is
        no larger than the datagram (it may be forged) and its block's error
        budget allows. Well-formed non-requests (replies such as Error) are
        never answered: two relays, or a relay and an echo service, must not
        be able to bounce errors at each other."""
        self.stats[kind] += 1
        out = []
        if self._note(addr):
            out.append(Log(logging.DEBUG, "dropped %s datagram from %s: %s" % (kind, _ep(addr), reason),
                           kind="dropped"))
        if user is not None and user.ext and kind == "malformed":
            out += self._error(addr, P.ERROR_BAD_REQUEST, kind, user.nonce, now, limit=size)
        return out

    def _error(self, addr, code, message, nonce, now, ext=True, limit=None):
        """An Error for an extension client: never larger than *limit*, and
        within its block's budget (a bounded table: see peerpunch.shares)."""
        if not ext:
            return []
        data = P.encode(P.Error(code=code, message=message, nonce=nonce))
        if (limit is not None and len(data) > limit) or not self._errors.take(block_key(addr), now):
            self.stats["errors_limited"] += 1
            return []
        self.stats["errors"] += 1
        return [Send(data, addr)]


def _peer_info(about, to, secret, asked=None):
    """The PeerInfo about *about* for *to*; *asked*: whether the pairing
    was asked for with the asker's token (default: as stored)."""
    if not to.ext:                  # a seed client gets the seed's bytes
        return P.encode(P.PeerInfo(peer=about.endpoint, username=about.name))
    # A birthday search aims thousands of datagrams at *about*'s IP: only for a
    # client that proved it is there, in a pairing its asker proved it asked for.
    search = about.verified and (about.asked if asked is None else asked)
    info = P.PeerInfo(peer=about.endpoint, username=about.name, features=about.features or (),
                      local=about.local, session=secret,
                      mapping=about.mapping if search else None, nonce=to.nonce)
    try:
        return P.encode(info)
    except P.LocalProtocolError:
        # A Register of 1024 bytes can make a PeerInfo a little longer (our
        # endpoint text, the secret): pass on only what our peers use.
        features = tuple(f for f in info.features if f in P.KNOWN_FEATURES)
        return P.encode(dataclasses.replace(info, features=features, local=None))


def _claims(user, name, secret, now):
    claim = user.claim
    return claim is not None and claim[2] > now and claim[0] == name and \
        hmac.compare_digest(claim[1], secret)


def _claims_other(target, asker, now):
    """True if *target* says it is in a chat with someone other than *asker*."""
    claim = target.claim
    return claim is not None and claim[2] > now and claim[0] != asker.name


def _present(user):
    """A registration that may be announced to watchers: proven, or a seed
    client's (which cannot prove itself)."""
    return user is not None and (user.verified or not user.ext)


def _token_ok(user, token):
    """True if *token* is the one the relay gave *user* (which only a client
    at its address could have read)."""
    return token is not None and user.token is not None and hmac.compare_digest(token, user.token)


def _may_move(holder, msg):
    """May this Register take *holder*'s name to its own address?"""
    if msg.token is None or holder.token is None:
        return False
    if not holder.same_key(msg.key):
        return False
    return hmac.compare_digest(msg.token, holder.token)


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


def _addr_key(addr):
    """What a User keeps of its address: an IPv4 (host, port) as one int
    (1 << 48 | IP << 16 | port: never equal to an IP alone), as long as
    that gives back the very same tuple; any other address as it is."""
    host = addr[0]
    if len(addr) == 2 and type(host) is str and ":" not in host and type(addr[1]) is int \
            and 0 <= addr[1] < 65536:
        try:
            packed = socket.inet_aton(host)
        except (OSError, ValueError):
            return addr
        if socket.inet_ntoa(packed) == host:
            return 1 << 48 | int.from_bytes(packed, "big") << 16 | addr[1]
    return addr


def _addr_of(key):
    """The address a key of :func:`_addr_key` stands for."""
    if type(key) is int:
        return socket.inet_ntoa((key >> 16 & 0xFFFFFFFF).to_bytes(4, "big")), key & 0xFFFF
    return key


def _key_bytes(text):
    """A public key's 32 bytes from its (validated) base64 text."""
    return base64.b64decode(text.encode("ascii"))


def _ip_key(addr):
    """Whose quota a source address counts against: its IPv4 address, or the
    /64 of an IPv6 one (an IPv4-mapped one counts as IPv4)."""
    key = _addr_key(addr)
    if type(key) is int:
        return key >> 16 & 0xFFFFFFFF   # an IPv4 address as an int
    host = addr[0]
    if ":" not in host:
        return host
    ip = ipaddress.ip_address(host.split("%", 1)[0])
    if ip.ipv4_mapped is not None:
        return int.from_bytes(ip.ipv4_mapped.packed, "big")
    return ip.packed[:8]


def _ep(addr):
    try:
        return P.format_endpoint(addr)
    except (ValueError, IndexError, TypeError):
        return repr(addr)


def _name(name):
    """A username as it may be written to a log: quoted, escapes visible."""
    return ascii(name) if not name.isprintable() else repr(name)
