"""Watches: "tell me when NAME registers". Sans-I/O.

Theory of operation
-------------------
A client waiting for someone who is not online yet names them in its
Registers (``watch``, at most ``P.MAX_WATCH`` names). Only a proven
Register sets watches (or clears them, by naming none), so they go only to
an address that proved it receives there, and a relay that restarted
relearns them from the next re-registration.

When a watched name registers, each extension watcher gets ``Online``
(ONLINE_COPIES copies: one loss costs nothing) once the name's client has
proven its address (the cookie), so that a Register forged from nowhere
sends watchers nothing, and at most once per NOTIFY_EVERY per name. A watch
Register for a name that is registered already and proven gets one Online
at once -- never more bytes than the Register -- which also covers
notifications that were lost. A seed-form registration is never announced:
it proves nothing, and one forged datagram would otherwise end a wait
and pair the watcher with the forger's address.

A watch ends with the watcher's registration (expiry, Unregister, another
name from its address) and when the watcher is paired with someone (a
client that holds several chats stops waiting only for that partner).
Bounds: MAX_WATCHERS_PER_NAME watchers per name and ``max_watches`` in all
(watches over either are refused and counted; the watcher still hears of
the name at its next re-registration), so a registration costs at most 32
notifications and a Register at most P.MAX_WATCH dictionary updates; a
stored watch of a name nobody else watches takes ~240 bytes (measured with
tracemalloc, 64k of them), up to ~400 with the longest names: at most
~26 MB at MAX_WATCHES.
"""

import logging

from . import protocol as P
from .effects import Log, Send
from .relayuser import name_text

MAX_WATCHERS_PER_NAME = 32     # clients told when one name registers
MAX_WATCHES = 65536            # stored watches in all (~240 B each, see above)
ONLINE_COPIES = 2              # an Online is sent twice: a lost one costs nothing
NOTIFY_EVERY = 5.0             # seconds between the notifications about one name


class Watches:
    """The watches of every user; *lookup(name)* gives the User registered
    under a name, or None."""

    def __init__(self, stats, lookup, max_watches=MAX_WATCHES):
        self.stats = stats
        self.max_watches = max_watches
        self._lookup = lookup
        self._watchers = {}            # name -> [User waiting for it]
        self._count = 0
        self._notified = {}            # watched name -> when its watchers were told

    def __len__(self):
        """How many watches are stored."""
        return self._count

    def watch(self, user, names, answer=True):
        """Make *names* (from a Register with *user*'s token) the names
        *user* waits for; with *answer*, say which one is registered
        already (one Online at most, and only for a proven holder: never more bytes than the
        Register, and *answer* is False for a Register that moved *user* to
        an address not proven yet)."""
        names = tuple(n for i, n in enumerate(names) if n != user.name and n not in names[:i])
        if names != user.watching:
            self.end(user)
            user.watching = tuple(n for n in names if self._add(user, n))
        online = [n for n in names if _present(self._lookup(n))][:1] if answer else []
        self.stats["notifications"] += len(online)
        return [Send(P.encode(P.Online(username=n, nonce=user.nonce)), user.addr) for n in online]

    def end(self, user):
        """*user* waits for nobody now."""
        for name in user.watching:
            self._remove(user, name)
        user.watching = ()

    def drop(self, user, name):
        """*user* waits for *name* no more (it is in a chat with it)."""
        if name in user.watching:
            self._remove(user, name)
            user.watching = tuple(n for n in user.watching if n != name)

    def notify(self, user, now):
        """*user*'s name just registered and proved its address: tell the
        extension clients that wait for it, once per NOTIFY_EVERY at most
        (a client that registers and leaves in a loop cannot flood them;
        they still hear at their next re-registration)."""
        watchers = [w for w in self._watchers.get(user.name, ()) if w.ext]
        if not watchers or now - self._notified.get(user.name, float("-inf")) < NOTIFY_EVERY:
            return []
        self._notified[user.name] = now
        self.stats["notifications"] += len(watchers)
        out = [Log(logging.DEBUG, "%s is online: telling %d watcher(s)" % (name_text(user.name), len(watchers)),
                   kind="online")]
        for w in watchers:
            data = P.encode(P.Online(username=user.name, nonce=w.nonce))
            out += [Send(data, w.addr)] * ONLINE_COPIES
        return out

    def _remove(self, user, name):
        watchers = self._watchers[name]
        watchers.remove(user)
        if not watchers:
            del self._watchers[name]
            self._notified.pop(name, None)
        self._count -= 1

    def _add(self, user, name):
        """Store one watch, if the bounds allow; return whether it was."""
        watchers = self._watchers.get(name, ())
        if self._count >= self.max_watches or len(watchers) >= MAX_WATCHERS_PER_NAME:
            self.stats["watches_refused"] += 1
            return False
        self._watchers.setdefault(name, []).append(user)
        self._count += 1
        self.stats["watches"] += 1
        return True


def _present(user):
    """A registration that may be announced to watchers: a proven one."""
    return user is not None and user.ext and user.verified
