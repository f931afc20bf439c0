"""The relay's rendezvous logic, without sockets or clocks.

Theory of operation
-------------------
The relay faces the internet, where a source address can be forged. So
(issue 10) nothing a datagram from an unproven source says creates state
that outlives it, changes anyone else's state, or sends a third address
anything; and nothing we send an unproven address is larger than what came
from it.

:class:`Registry` is the relay's one entry point: ``datagram_received``
decodes a datagram, finds its sender, checks the token and hands the
request to its handler; ``tick`` expires silent users. It wires small
parts, each with its own state and theory of operation:

* :mod:`peerpunch.routability` -- cookies and tokens (return routability),
  and the budget of Errors to addresses that may be forged;
* :mod:`peerpunch.directory` -- the users by name, address, block and age:
  the two pools, fair shares when full, the expiry order;
* :mod:`peerpunch.relayuser` -- one registration in a few hundred bytes;
* :mod:`peerpunch.pairings` -- introductions and sessions (several per
  client, up to the ``max_chats`` it announced), the relayed fallback;
* :mod:`peerpunch.claims` -- the chats a restarted relay relearns;
* :mod:`peerpunch.watches` -- "tell me when NAME registers".

Registration, which this module handles, is where proof happens. An
extension client (``ext`` in its features) that is not registered at its
address gets a ``Cookie`` for its Register; the Register repeated with it
is stored at once as proven and acknowledged with a ``token``. From then on,
every request from that client -- re-Register (the refresh), a new name,
Connect, SessionFinished, Unregister, watches, claims, max_chats -- carries
the token, or it changes nothing and refreshes nothing. A client whose NAT
mapping changed moves its name to the new address with its token (and key)
and the new address's cookie. A Register with a good cookie also replaces whatever
was registered at its address: only a client there could have read the
cookie. Each proven Register carries the client's ``nonce``, and every
message we send it (RegisterAck, PeerInfo, TargetNotFound, TargetBusy,
Error, Online) carries that nonce back, so that the client can tell ours
from forgeries.

Seed-form registrations (no ``ext``: the seed's clients, which cannot echo
anything) live in a separate pool of ``max_seed_users``. A seed-form
Register never touches a proven registration -- neither the one at its
address nor one of its name; it is dropped unanswered -- so it cannot
displace, rename, refresh, downgrade or shadow one. The other way round,
a proven Register takes a name from its seed-form holder (which a forger
may have made from anywhere): proven beats unproven.

A relay that stops cleanly says so to every proven extension client
(``farewell``: an Error relay-stopping), so they register with the relay
that replaces it within a second or two rather than at their next
re-registration.

Memory (issue 10: at most 500 bytes a user in the typical case, a stated
bound in the worst): see :mod:`peerpunch.relayuser`. Measured with
tracemalloc (tests/test_registry_memory.py, docs/performance.md): ~480
bytes a typical extension user (alone in its /24 or not), ~375 a seed-form one, ~2,500 with the
largest Register; the caps follow from the stated bound of 3,000
(docs/operating.md).

Nothing a datagram contains can raise out of :meth:`Registry.datagram_received`
or grow state without bound: malformed input is counted in ``stats``, and
logged once per source (the set of sources is bounded).
"""

import collections
import logging
import os

from . import protocol as P
from .claims import Claims
from .directory import Directory
from .effects import Log, Send
from .forwarder import Forwarder, is_relay_frame
from .pairings import RELAY_MAX_CHATS, Pairings
from .relayuser import endpoint_text, name_text
from .routability import Cookies, Refusals, may_move, token_ok
from .watches import MAX_WATCHES, Watches
# the limits of the parts, also found here:
from .pairings import SEED_CREDIT_MAX, SEED_GAIN, SEED_INFO_BURST, SEED_INFO_RATE
from .relayuser import MAX_INTERNED
from .routability import COOKIE_SLOT, ERROR_BURST, ERROR_RATE, MAX_NOTED_SOURCES
from .watches import MAX_WATCHERS_PER_NAME, NOTIFY_EVERY, ONLINE_COPIES

EXPIRE_AFTER = 90.0
MAX_USERS = 200_000            # proven (extension) registrations
MAX_SEED_USERS = 10_000        # seed-form registrations: a separate pool
MAX_EXPIRED_PER_TICK = 1000    # a mass expiry must not stall the loop
MAX_USERS_PER_IP = 256         # (per /64 for IPv6): one host cannot fill the relay

__all__ = ["Registry", "EXPIRE_AFTER", "MAX_USERS", "MAX_SEED_USERS", "MAX_USERS_PER_IP",
           "MAX_EXPIRED_PER_TICK", "MAX_WATCHES", "SEED_CREDIT_MAX", "SEED_GAIN", "SEED_INFO_BURST",
           "SEED_INFO_RATE", "MAX_INTERNED", "COOKIE_SLOT", "ERROR_BURST", "ERROR_RATE",
           "MAX_NOTED_SOURCES", "MAX_WATCHERS_PER_NAME", "NOTIFY_EVERY", "ONLINE_COPIES"]


class Registry:
    """The relay's state. Feed it datagrams and the time; send what it returns.

    ``datagram_received(data, addr, now)`` and ``tick(now)`` return lists of
    :class:`Send` and :class:`Log`. ``next_deadline()`` says when ``tick`` is
    next due.
    """

    def __init__(self, *, expire_after=EXPIRE_AFTER, max_users=MAX_USERS, verbose=False,
                 random_bytes=os.urandom, forwarder=None, max_users_per_ip=MAX_USERS_PER_IP,
                 max_watches=MAX_WATCHES, max_seed_users=MAX_SEED_USERS):
        self.forwarder = forwarder if forwarder is not None else Forwarder()
        self.features = (P.OUR_FEATURES if self.forwarder.enabled else (P.FEATURE_EXT,)) \
            + (P.FEATURE_WATCH,)
        self.expire_after = expire_after
        self.random_bytes = random_bytes
        self.verbose = verbose
        self.stats = collections.Counter()
        self._cookies = Cookies(random_bytes(32), self.stats)   # per process: cookies die with it
        self._users = Directory(self.stats, max_users, max_seed_users, max_users_per_ip)
        self._refusals = Refusals(self.stats)
        self._watches = Watches(self.stats, self._users.user, max_watches)
        self._pairings = Pairings(self.stats, self._users, self._watches, self._refusals,
                                  self.forwarder, random_bytes)
        self._claims = Claims(self.stats, self._users.user)
        self._interned = {}                            # feature tuples, shared
        self._handlers = {                             # requests other than Register
            P.Connect: self._pairings.connect,
            P.SessionFinished: self._pairings.session_finished,
            P.Unregister: self._on_unregister,
        }

    # -- queries

    def __len__(self):
        return len(self._users)

    def user(self, name):
        return self._users.user(name)

    def proven_users(self):
        return self._users.pool_size(True)

    def seed_users(self):
        return self._users.pool_size(False)

    def limited_blocks(self, now):
        """Address blocks (/24, /48) whose Error or seed-PeerInfo budget is
        spent right now: the sources the relay is throttling."""
        return self._refusals.limited(now) + self._pairings.limited(now)

    def sessions(self):
        return self._pairings.sessions()

    def watches(self):
        """How many watches are stored."""
        return len(self._watches)

    # -- inputs

    def datagram_received(self, data, addr, now):
        """Handle one datagram from *addr*; return the effects."""
        self.stats["datagrams"] += 1
        out = [Log(logging.DEBUG, "%d bytes from %s" % (len(data), endpoint_text(addr)))] \
            if self.verbose else []
        user = self._users.find(addr)
        if is_relay_frame(data):
            return out + self._pairings.relay(data, user, addr, now)
        try:
            msg = P.decode(data)
        except P.RemoteProtocolError as exc:
            return out + self._refusals.drop(user, addr, "malformed", str(exc), now, len(data))
        if type(msg) is P.Register:
            return out + self._on_register(msg, user, addr, now, len(data))
        handler = self._handlers.get(type(msg))
        if handler is None:
            return out + self._refusals.drop(user, addr, "unexpected",
                                             "%s is not a request" % type(msg).__name__, now, len(data))
        if user is None:
            if type(msg) is P.Unregister:
                return out + self._gone(addr)
            return out + self._refusals.drop(None, addr, "unregistered",
                                             "%s before Register" % type(msg).__name__, now, 0)
        if user.ext and not token_ok(user, msg.token):
            # a proven client sends its token with every request; without
            # it, this is someone forging that address: it changes nothing
            return out + self._refusals.drop(None, addr, "unproven",
                                             "%s without the token" % type(msg).__name__, now, 0)
        if not user.ext:
            self._pairings.credit_seed(len(data), addr)
        self._users.touch(user, now)
        return out + handler(msg, user, addr, now)

    def tick(self, now):
        """Expire users silent for ``expire_after`` seconds (a bounded number
        per call: if more are due, ``next_deadline`` is already past)."""
        out = []
        for _ in range(MAX_EXPIRED_PER_TICK):
            user = self._users.oldest
            if user is None:
                break
            if now - user.last_seen < self.expire_after:
                break
            self.stats["expired"] += 1
            out.append(Log(logging.INFO, "expired %s at %s" % (name_text(user.name), user.endpoint),
                           kind="expired"))
            out += self._remove(user)
        self.forwarder.expire(now)
        return out

    def next_deadline(self):
        if self._users.oldest is None:
            return None
        return self._users.oldest.last_seen + self.expire_after

    def farewell(self):
        """The relay is stopping (a restart, say): an Error relay-stopping
        for every extension client that proved its address, so that it
        registers with the relay that replaces us within a second or two
        instead of at its next re-registration. Seed clients get nothing."""
        told = [Send(P.encode(P.Error(code=P.ERROR_RELAY_STOPPING, message="the relay is stopping",
                                      nonce=u.nonce)), u.addr)
                for u in self._users.users() if u.ext and u.verified]
        self.stats["farewells"] += len(told)
        return told

    # -- registration

    def _on_register(self, msg, user, addr, now, size):
        if not P.speaks_extensions(msg.features):
            self._pairings.credit_seed(size, addr)
            return self._on_seed_register(msg, user, addr, now)
        if user is not None and user.ext and token_ok(user, msg.token):
            return self._on_proven_register(msg, user, addr, now)
        if msg.cookie is not None and self._cookies.valid(msg.cookie, addr, msg.username, now):
            return self._on_cookie_register(msg, user, addr, now)
        return self._cookies.reply(msg, addr, now, size)

    def _on_proven_register(self, msg, user, addr, now):
        """A Register with the token from a proven client's address: a
        refresh, or a new name for it."""
        self._users.touch(user, now)
        out = []
        if msg.username != user.name:
            holder = self._users.user(msg.username)
            if holder is not None and not holder.ext:
                out, holder = self._unseat(holder), None
            if holder is not None:
                return self._refuse_takeover(msg, holder, addr, now)
            token = user.token
            out += self._remove(user)
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
        holder = self._users.user(msg.username)
        out = []
        if holder is not None and holder is not user and not holder.ext:
            out, holder = self._unseat(holder), None
        if holder is not None and holder is not user:
            if not (holder.ext and may_move(holder, msg)):
                return self._refuse_takeover(msg, holder, addr, now)
            out += self._remove(user) if user is not None else []
            out.append(self._users.move(holder, addr, now))
            return out + self._update(holder, msg, now, answer=True)
        if user is not None and (not user.ext or user.name != msg.username):
            out += self._remove(user)           # a seed-form registration becomes a proven one,
            user = None                         # or the client here took another name
        if user is None:
            user, logs, refusal = self._admit(msg.username, addr, now, proven=True)
            out += logs
            if user is None:
                return out + self._refuse_full(msg, addr, now, refusal)
            user.token = self.random_bytes(16).hex()
            out += self._update(user, msg, now, answer=True)
            return out + self._watches.notify(user, now)   # proven: a forged Register tells no watcher
        self._users.touch(user, now)
        return out + self._update(user, msg, now, answer=True)

    def _update(self, user, msg, now, answer):
        """What a proven Register says about its client; then the ack."""
        user.set_features(msg.features, self._interned)
        user.nonce = msg.nonce
        user.mapping = msg.mapping
        user.local = msg.local
        if msg.key is not None:
            user.key = msg.key
        chats = min(msg.max_chats, RELAY_MAX_CHATS) if msg.max_chats else 0
        if chats != user.max_chats:
            user.max_chats = chats
        out = self._claims.register(user, msg, now, self._pairings) \
            if msg.chats is not None or msg.partner is not None or user.claims is not None else []
        out += self._watches.watch(user, msg.watch or (), answer=answer)
        ack = P.RegisterAck(features=self.features, token=user.token, nonce=user.nonce,
                            max_chats=chats or None)
        return out + [Send(P.encode(ack), user.addr)]

    def _on_seed_register(self, msg, user, addr, now):
        """A seed-form Register: the seed-form pool only. It never touches a
        proven registration (its address or its name), and gets no answer
        where it tried."""
        holder = self._users.user(msg.username)
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
            self._users.touch(user, now)
        return out + [Send(P.encode(P.RegisterAck()), addr)]

    def _admit(self, name, addr, now, proven):
        """A new registration in its pool: (User, logs, None), or (None,
        logs, why not). A full pool takes a newcomer from a lighter block in
        place of the oldest registration of its heaviest block."""
        victim, refusal = self._users.admission(addr, proven)
        if refusal is not None:
            return None, [], refusal
        out = []
        if victim is not None:
            self.stats["evicted"] += 1
            out.append(Log(logging.INFO, "evicted %s at %s for a newcomer (the pool is full)"
                           % (name_text(victim.name), victim.endpoint), kind="evicted"))
            out += self._remove(victim)
        user = self._users.add(name, addr, now, proven)
        self.stats["registrations"] += 1
        out.append(Log(logging.INFO, "registered %s at %s%s" % (
            name_text(name), user.endpoint, "" if proven else " (seed form)"), kind="registered"))
        return user, out, None

    def _unseat(self, holder):
        """A proven Register asks for the name a seed-form registration holds:
        that one cannot prove anything (a forger may have made it), so the
        proven client gets the name."""
        self.stats["seed_unseated"] += 1
        return [Log(logging.INFO, "%s at %s (seed form) gave its name up to a proven client"
                    % (name_text(holder.name), holder.endpoint), kind="evicted")] + self._remove(holder)

    def _refuse_full(self, msg, addr, now, why):
        """One line per refusal (the relay's log limiter bounds them), and an
        Error for an extension client."""
        return [Log(logging.WARNING, "refused %s from %s: %s"
                    % (name_text(msg.username), endpoint_text(addr), why), kind="full")] + \
            self._refusals.error(addr, P.ERROR_RELAY_FULL, "the relay is full", msg.nonce, now,
                                 ext=P.speaks_extensions(msg.features))

    def _refuse_takeover(self, msg, holder, addr, now):
        self.stats["name_taken"] += 1
        out = []
        if self._refusals.note(addr):
            out.append(Log(logging.WARNING, "refused %s from %s: name held by %s%s"
                           % (name_text(msg.username), endpoint_text(addr), holder.endpoint,
                              " (wrong token or key)" if msg.token else ""), kind="name_taken"))
        return out + self._refusals.error(addr, P.ERROR_NAME_TAKEN,
                                          "the name %s is in use" % msg.username,
                                          msg.nonce, now, ext=P.speaks_extensions(msg.features))

    # -- the other requests (Connect, SessionFinished: see peerpunch.pairings)

    def _on_unregister(self, msg, user, addr, now):
        self.stats["unregistered_by_client"] += 1
        return [Log(logging.INFO, "%s left" % name_text(user.name), kind="left")] + self._remove(user)

    def _gone(self, addr):
        """An Unregister from an address not registered: a client sends it
        twice, and the first one already freed the name (or it expired)."""
        self.stats["unregister_repeated"] += 1
        if not self._refusals.note(addr):
            return []
        return [Log(logging.DEBUG, "repeated Unregister from %s (already gone)" % endpoint_text(addr),
                    kind="dropped")]

    def _remove(self, user):
        """*user*'s registration ends: its tables, its watches, its session."""
        self._users.remove(user)
        self._watches.end(user)
        return self._pairings.end(user)
