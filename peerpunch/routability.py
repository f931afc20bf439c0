"""Return routability and the answers the relay may give an address that
may be forged. Sans-I/O.

Theory of operation
-------------------
A source address can be forged, so (issue 10) the relay keeps no state for
a request until its sender has shown that it receives at its address, and
never answers an address that has not shown it with more bytes than came
from it.

:class:`Cookies`. An extension client's first Register gets only a
``Cookie``: an HMAC of the time slot, the address and the name under a
per-process key, good for COOKIE_SLOT to 2 x COOKIE_SLOT seconds, sent
only if it is no larger than that Register. The Register repeated with it
is proven (:meth:`Cookies.valid`); the relay then hands the client a
``token``, which every later request carries (:func:`token_ok`) and which,
with the same key, moves a name to a new address (:func:`may_move`).

:class:`Refusals`. A dropped datagram is counted, logged once per source
(in a bounded memory of MAX_NOTED_SOURCES sources), and answered only for
a registered extension client whose datagram was malformed -- with an
Error no larger than that datagram. Every Error is budgeted: at most
ERROR_BURST at once and ERROR_RATE a second per /24 or /48 block, in a
table of MAX_BUDGET_BLOCKS blocks that cannot be cycled past
(:class:`~peerpunch.shares.Budget`).
"""

import collections
import hashlib
import hmac
import logging

from . import protocol as P
from .effects import Log, Send
from .relayuser import endpoint_text
from .addrkeys import block_key
from .shares import Budget

COOKIE_SLOT = 30.0             # a cookie is good in its slot and the next one
ERROR_RATE, ERROR_BURST = 1.0, 5.0          # Errors per second per /24 or /48
MAX_BUDGET_BLOCKS = 4096       # blocks each budget table tracks
MAX_NOTED_SOURCES = 4096


class Cookies:
    """Stateless cookies under a per-process *key* (cookies die with it)."""

    def __init__(self, key, stats):
        self._key = key
        self.stats = stats

    def reply(self, msg, addr, now, size):
        """An extension Register (*msg*, *size* bytes) from an address not
        proven: no state, one Cookie -- if it is no larger than the Register."""
        data = P.encode(P.Cookie(cookie=self._cookie(addr, msg.username, now), nonce=msg.nonce))
        if len(data) > size:
            self.stats["cookie_too_large"] += 1
            return []
        self.stats["cookies"] += 1
        return [Send(data, addr)]

    def valid(self, cookie, addr, name, now):
        """True if *cookie* is what this or the last slot gave *addr* for *name*."""
        return any(hmac.compare_digest(cookie, self._cookie(addr, name, now, slot)) for slot in (0, 1))

    def _cookie(self, addr, name, now, slot=0):
        text = "%d %s %s" % (int(now // COOKIE_SLOT) - slot, endpoint_text(addr), name)
        return hmac.new(self._key, text.encode("utf-8"), hashlib.sha256).digest()[:16].hex()


def token_ok(user, token):
    """True if *token* is the one the relay gave *user* (which only a client
    at its address could have read)."""
    return token is not None and user.token is not None and hmac.compare_digest(token, user.token)


def may_move(holder, msg):
    """May this Register take *holder*'s name to its own address?"""
    if msg.token is None or holder.token is None:
        return False
    if not holder.same_key(msg.key):
        return False
    return hmac.compare_digest(msg.token, holder.token)


class Refusals:
    """Dropped datagrams: counted, logged once per source, and answered
    with an Error only within the budget of the sender's block."""

    def __init__(self, stats):
        self.stats = stats
        self._noted = collections.OrderedDict()      # sources already logged
        self._errors = Budget(ERROR_RATE, ERROR_BURST, MAX_BUDGET_BLOCKS)

    def note(self, addr):
        """True the first time *addr* is noted (in a bounded memory)."""
        if addr in self._noted:
            return False
        if len(self._noted) >= MAX_NOTED_SOURCES:
            self._noted.popitem(last=False)
        self._noted[addr] = True
        return True

    def drop(self, user, addr, kind, reason, now, size):
        """Drop a datagram: count it; log it once per source; tell a
        registered extension client that it was malformed, if the Error is
        no larger than the datagram (it may be forged) and its block's error
        budget allows. Well-formed non-requests (replies such as Error) are
        never answered: two relays, or a relay and an echo service, must not
        be able to bounce errors at each other."""
        self.stats[kind] += 1
        out = []
        if self.note(addr):
            out.append(Log(logging.DEBUG, "dropped %s datagram from %s: %s"
                           % (kind, endpoint_text(addr), reason), kind="dropped"))
        if user is not None and user.ext and kind == "malformed":
            out += self.error(addr, P.ERROR_BAD_REQUEST, kind, user.nonce, now, limit=size)
        return out

    def error(self, addr, code, message, nonce, now, ext=True, limit=None, target=None):
        """An Error for an extension client: never larger than *limit*, and
        within its block's budget (a bounded table: see peerpunch.shares);
        *target*: the name of the Connect it refuses."""
        if not ext:
            return []
        data = P.encode(P.Error(code=code, message=message, nonce=nonce, target=target))
        if (limit is not None and len(data) > limit) or not self._errors.take(block_key(addr), now):
            self.stats["errors_limited"] += 1
            return []
        self.stats["errors"] += 1
        return [Send(data, addr)]

    def limited(self, now):
        """How many blocks' Error budgets are spent right now."""
        return self._errors.exhausted(now)
