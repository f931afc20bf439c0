"""The relay's rendezvous logic, without sockets or clocks.

Theory of operation
-------------------
A client registers a username from its UDP source address (on the internet,
its NAT's public endpoint). The registry keeps one :class:`User` per live
address, found by name or by address in O(1). Every datagram from a
registered address refreshes it; clients re-register every 20 s, so a user
silent for ``expire_after`` seconds is gone and its name is free again.
Users are kept in an ordered dict sorted by last contact, so expiry only
looks at the oldest entries.

``Connect`` pairs two free users: each gets a ``PeerInfo`` naming the other's
public endpoint, and both are busy until either sends ``SessionFinished``
(or expires). A repeated ``Connect`` for the pair already made repeats both
``PeerInfo``s, which is how lost datagrams are recovered: the requesting
client keeps asking until it hears from its peer.

A name held by one live address is never handed to another one, with one
exception: a client whose NAT mapping changed re-registers from its new
address with the ``token`` its RegisterAck gave it (and the same key, if it
announced one), and the registration moves. A client that has echoed its
token (proved it receives at its address) sends it with every request
(Connect, SessionFinished, Unregister); such a request without it is
someone forging that address, and is dropped. Clients that announced the
``ext`` feature get an ``Error`` reply when refused; a seed client only ever
receives the seed's variants, so it gets no reply at all.

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
Registers (``watch``, at most ``P.MAX_WATCH`` names). Only a Register with
the token sets watches (or clears them, by naming none), so they go only to
an address that proved it receives there, and a relay that restarted
relearns them from the next re-registration. When a watched name registers,
each extension watcher gets ``Online`` (ONLINE_COPIES copies: one loss
costs nothing) once the name's client has proven its address (echoed its
token), so that a Register forged from nowhere sends watchers nothing, and
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

Nothing a datagram contains can raise out of :meth:`Registry.datagram_received`
or grow state without bound: malformed input is counted in ``stats``, and
logged once per source (the set of sources is bounded).
"""

import collections
import dataclasses
import hmac
import ipaddress
import logging
import os

from . import protocol as P
from .effects import Log, Send
from .forwarder import Forwarder, is_relayed

EXPIRE_AFTER = 90.0
MAX_USERS = 200_000
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


class User:
    __slots__ = ("name", "addr", "endpoint", "features", "ext", "local", "key", "token",
                 "last_seen", "partner", "secret", "introduced_at", "verified", "mapping", "asked",
                 "claim", "watching")

    def __init__(self, name, addr, now):
        self.name = name
        self.addr = addr
        self.endpoint = P.format_endpoint(addr)   # as PeerInfo writes it
        self.features = None
        self.ext = False
        self.local = None       # LAN candidates the client announced
        self.key = None         # its long-term public key, if it announced one
        self.mapping = None     # what its NAT does (P.MAPPINGS), if it said
        self.token = None       # what lets it move to a new address
        self.last_seen = now
        self.partner = None     # the User this one is in a session with
        self.secret = None      # that session's secret, the same in both Users
        self.introduced_at = float("-inf")
        self.verified = False   # it echoed the token we sent to its address: not spoofed
        self.asked = False      # its current pairing was asked for with the asker's token
        self.claim = None       # (partner name, secret, until): "in a chat we do not know of"
        self.watching = ()      # names it waits for (a Register with its token said so)

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
                 max_watches=MAX_WATCHES):
        self.max_users_per_ip = max_users_per_ip
        self.max_watches = max_watches
        self.forwarder = forwarder if forwarder is not None else Forwarder()
        self.features = (P.OUR_FEATURES if self.forwarder.enabled else (P.FEATURE_EXT,)) \
            + (P.FEATURE_WATCH,)
        self.expire_after = expire_after
        self.random_bytes = random_bytes
        self.verbose = verbose
        self.max_users = max_users
        self._by_name = {}
        self._by_addr = collections.OrderedDict()   # oldest contact first
        self._noted = collections.OrderedDict()      # sources already logged
        self._interned = {}                            # feature tuples, shared
        self._per_ip = collections.Counter()           # users per IP (per /64 for IPv6)
        self._watchers = {}                            # name -> [User waiting for it]
        self._watch_count = 0
        self._notified = {}                            # watched name -> when its watchers were told
        self.stats = collections.Counter()

    # -- queries

    def __len__(self):
        return len(self._by_addr)

    def user(self, name):
        return self._by_name.get(name)

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
        user = self._by_addr.get(addr)
        if user is not None:
            self._touch(user, now)
        if is_relayed(data):
            return out + self._relay(data, user, addr, now)
        try:
            msg = P.decode(data)
        except P.RemoteProtocolError as exc:
            return out + self._reject(user, addr, "malformed", str(exc))
        handler = self._HANDLERS.get(type(msg))
        if handler is None:
            return out + self._reject(user, addr, "unexpected",
                                      "%s is not a request" % type(msg).__name__)
        if user is None and type(msg) is P.Unregister:
            return out + self._gone(addr)
        if user is None and type(msg) is not P.Register:
            return out + self._reject(None, addr, "unregistered",
                                      "%s before Register" % type(msg).__name__)
        if type(msg) is not P.Register and user.verified and not _token_ok(user, msg.token):
            # a client that proved its address sends its token with every request;
            # without it, this is someone spoofing that address
            return out + self._reject(None, addr, "unproven",
                                      "%s without the token" % type(msg).__name__)
        return out + handler(self, msg, user, addr, now)

    def tick(self, now):
        """Expire users silent for ``expire_after`` seconds (a bounded number
        per call: if more are due, ``next_deadline`` is already past)."""
        out = []
        for _ in range(MAX_EXPIRED_PER_TICK):
            if not self._by_addr:
                break
            user = next(iter(self._by_addr.values()))
            if now - user.last_seen < self.expire_after:
                break
            self.stats["expired"] += 1
            out.append(Log(logging.INFO, "expired %s at %s" % (_name(user.name), user.endpoint),
                           kind="expired"))
            out += self._remove(user)
        self.forwarder.expire(now)
        return out

    def next_deadline(self):
        if not self._by_addr:
            return None
        return next(iter(self._by_addr.values())).last_seen + self.expire_after

    def farewell(self):
        """The relay is stopping (a restart, say): an Error relay-stopping
        for every extension client that proved its address, so that it
        registers with the relay that replaces us within a second or two
        instead of at its next re-registration. Seed clients get nothing."""
        data = P.encode(P.Error(code=P.ERROR_RELAY_STOPPING, message="the relay is stopping"))
        told = [Send(data, u.addr) for u in self._by_addr.values() if u.ext and u.verified]
        self.stats["farewells"] += len(told)
        return told

    # -- handlers

    def _on_register(self, msg, user, addr, now):
        holder = self._by_name.get(msg.username)
        if holder is not None and holder is not user:
            if not _may_move(holder, msg):
                return self._refuse_takeover(msg, holder, addr)
            out = self._remove(user) if user is not None else []
            out.append(self._move(holder, addr, now))
            user = holder
            moved = True
        else:
            out = []
            moved = False
        if user is not None and user.name != msg.username:
            out += self._remove(user)          # this address takes a new name
            user = None
        if user is None:
            full = len(self._by_addr) >= self.max_users
            if full or self._per_ip[_ip_key(addr)] >= self.max_users_per_ip:
                self.stats["full" if full else "full_for_ip"] += 1
                out = [Log(logging.WARNING, "refused %s from %s: %s" % (
                    _name(msg.username), _ep(addr), "relay full" if full else "too many users at that IP"),
                           kind="full")]
                return out if not self._note(addr) else out + _error_to(
                    msg.features, addr, P.ERROR_RELAY_FULL, "the relay is full")
            user = User(msg.username, addr, now)
            self._per_ip[_ip_key(addr)] += 1
            self._by_name[user.name] = user
            self._by_addr[addr] = user
            self.stats["registrations"] += 1
            out.append(Log(logging.INFO, "registered %s at %s" % (_name(user.name), user.endpoint),
                           kind="registered"))
        user.set_features(msg.features, self._interned)
        if _token_ok(user, msg.token):
            if not user.verified:
                out += self._notify(user, now)  # proven: a forged Register tells no watcher
            user.verified = True    # only a client at this address could have read the token
            user.mapping = msg.mapping     # believed only from the client itself
            out += self._claim(user, msg.partner, msg.session, now)
            out += self._watch(user, msg.watch or (), answer=not moved)
        user.local = msg.local
        if msg.key is not None:
            user.key = msg.key
        if user.ext and user.token is None:
            user.token = self.random_bytes(16).hex()
        ack = P.RegisterAck(features=self.features, token=user.token) if user.ext else P.RegisterAck()
        return out + [Send(P.encode(ack), addr)]

    def _refuse_takeover(self, msg, holder, addr):
        self.stats["name_taken"] += 1
        out = []
        if self._note(addr):
            out.append(Log(logging.WARNING, "refused %s from %s: name held by %s%s"
                           % (_name(msg.username), _ep(addr), holder.endpoint,
                              " (wrong token or key)" if msg.token else ""), kind="name_taken"))
        return out + _error_to(msg.features, addr, P.ERROR_NAME_TAKEN,
                               "the name %s is in use" % msg.username)

    def _move(self, user, addr, now):
        old = user.endpoint
        user.verified = True        # it just proved itself with the token
        self._forget_ip(user.addr)
        self._per_ip[_ip_key(addr)] += 1
        del self._by_addr[user.addr]
        user.addr, user.endpoint = addr, P.format_endpoint(addr)
        self._by_addr[addr] = user
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
                return _error_to(user.features, addr, P.ERROR_SELF, "you cannot connect to yourself")
            return [Send(P.encode(P.TargetNotFound()), addr)]
        if target is None:
            self.stats["not_found"] += 1
            return [Send(P.encode(P.TargetNotFound()), addr)]
        asked = _token_ok(user, msg.token)
        if user.partner is target:
            if asked:
                user.asked = target.asked = True
            if now - user.introduced_at < REINTRODUCE_EVERY:
                self.stats["reintroductions_limited"] += 1
                return []            # no amplification by repeated Connects
            self.stats["reintroductions"] += 1
            user.introduced_at = target.introduced_at = now
            return self._introduce(user, target)
        if target.partner is not None or _claims_other(target, user, now):
            self.stats["busy"] += 1
            return [Send(P.encode(P.TargetBusy()), addr)]
        out = self._end_session(user)           # a client that moves on left its old chat
        self._unwatch(user)                     # paired: neither waits for anyone now
        self._unwatch(target)
        user.partner, target.partner = target, user
        user.claim = target.claim = None        # an older chat's claim is over
        user.asked = target.asked = asked
        user.secret = target.secret = self.random_bytes(16).hex()
        user.introduced_at = target.introduced_at = now
        self.stats["introductions"] += 1
        out.append(Log(logging.INFO, "introduced %s at %s to %s at %s"
                       % (_name(user.name), user.endpoint, _name(target.name), target.endpoint),
                       kind="introduced"))
        return out + self._introduce(user, target)

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
        return [Send(P.encode(P.Online(username=n)), user.addr) for n in online]

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
        data = P.encode(P.Online(username=user.name))
        return [Log(logging.DEBUG, "%s is online: telling %d watcher(s)" % (_name(user.name), len(watchers)),
                    kind="online")
                ] + [Send(data, w.addr) for w in watchers for _ in range(ONLINE_COPIES)]

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
                                "relayed datagram outside a session")
        if not (user.verified and partner.verified):
            return self._reject(None, addr, "relay_unverified",
                                "relayed datagram for a client that has not proved its address")
        if P.FEATURE_RELAY not in (user.features or ()) or \
                P.FEATURE_RELAY not in (partner.features or ()):
            return self._reject(None, addr, "relay_not_offered", "a side did not ask for relaying")
        reason = self.forwarder.admit(user.secret, len(data), now, owner=_ip_key(user.addr))
        if reason is not None:
            self.stats["relay_refused"] += 1
            out = []
            if self._note(addr):
                out.append(Log(logging.INFO, "not relaying for %s: %s" % (_name(user.name), reason),
                               kind="not_relayed"))
            return out
        return [Send(data, partner.addr)]

    def _introduce(self, a, b):
        """PeerInfo to both; a repeated introduction repeats the same secret."""
        return [Send(_peer_info(about=b, to=a, secret=a.secret), a.addr),
                Send(_peer_info(about=a, to=b, secret=b.secret), b.addr)]

    def _end_session(self, user):
        partner = user.partner
        if partner is None:
            return []
        user.partner = partner.partner = None
        self.forwarder.release(user.secret)
        self.stats["sessions_ended"] += 1
        return [Log(logging.INFO, "session of %s and %s ended" % (_name(user.name), _name(partner.name)),
                    kind="ended")]

    def _forget_ip(self, addr):
        key = _ip_key(addr)
        self._per_ip[key] -= 1
        if self._per_ip[key] <= 0:
            del self._per_ip[key]

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
        self._by_addr.move_to_end(user.addr)

    def _remove(self, user):
        self._forget_ip(user.addr)
        self._unwatch(user)
        out = self._end_session(user)
        del self._by_addr[user.addr]
        del self._by_name[user.name]
        return out

    def _reject(self, user, addr, kind, reason):
        """Drop a datagram: count it; log it, and tell a registered extension
        client, once per source. Well-formed non-requests (replies such as
        Error) are never answered: two relays, or a relay and an echo
        service, must not be able to bounce errors at each other."""
        self.stats[kind] += 1
        if not self._note(addr):
            return []
        out = [Log(logging.DEBUG, "dropped %s datagram from %s: %s" % (kind, _ep(addr), reason),
                   kind="dropped")]
        if user is not None and user.ext and kind == "malformed":
            out += _error_to(user.features, addr, P.ERROR_BAD_REQUEST, kind)
        return out


def _peer_info(about, to, secret):
    if not to.ext:                  # a seed client gets the seed's bytes
        return P.encode(P.PeerInfo(peer=about.endpoint, username=about.name))
    # A birthday search aims thousands of datagrams at *about*'s IP: only for a
    # client that proved it is there, in a pairing its asker proved it asked for.
    search = about.verified and about.asked
    info = P.PeerInfo(peer=about.endpoint, username=about.name, features=about.features or (),
                      local=about.local, session=secret,
                      mapping=about.mapping if search else None)
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
    if holder.key is not None and msg.key != holder.key:
        return False
    return hmac.compare_digest(msg.token, holder.token)


def _error_to(features, addr, code, message):
    """An Error reply for a client that understands it, else nothing."""
    if not P.speaks_extensions(features):
        return []
    return [Send(P.encode(P.Error(code=code, message=message)), addr)]


def _ip_key(addr):
    """Whose quota a source address counts against: its IPv4 address, or the
    /64 of an IPv6 one (an IPv4-mapped one counts as IPv4)."""
    host = addr[0]
    if ":" not in host:
        return host
    ip = ipaddress.ip_address(host.split("%", 1)[0])
    if ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return ip.packed[:8]


def _ep(addr):
    try:
        return P.format_endpoint(addr)
    except (ValueError, IndexError, TypeError):
        return repr(addr)


def _name(name):
    """A username as it may be written to a log: quoted, escapes visible."""
    return ascii(name) if not name.isprintable() else repr(name)
