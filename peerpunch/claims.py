"""Chats a restarted relay relearns from its clients. Sans-I/O.

Theory of operation
-------------------
A relay that restarts forgets every pairing. Clients in chats name them in
their Registers: ``chats``, a list of ``[partner, session]`` pairs (our
older peers name their one chat as ``partner`` and ``session``). Only a
Register with the client's token counts, so nobody who merely forges its
address can claim anything. Each chat named that this relay does not know
becomes a *claim* of that user for CLAIM_FOR seconds: it counts as a chat
the user holds (so others are told it is busy, and it cannot be talked
into more chats than it may hold), and once the partner has claimed the
same chat with the same secret the pairing is back as a session --
forwarding included, and nobody else is introduced into it.

Every proven Register replaces the user's claims with the chats it names
(none: no claims), so claims end when the client says its chats ended, and
lapse when it stops saying so. At most as many claims are kept as the user
may hold chats (its sessions counted), so a user's claims are bounded by
RELAY_MAX_CHATS and by the size of one Register, and kept packed in one
bytes object (:meth:`peerpunch.relayuser.User.set_claims`).

A client that holds one chat (the seed's way) is in a chat with the
partner it names, whatever this relay paired it with meanwhile (a Connect
in the moment before it re-registered): it ignores that introduction, so
such a pairing ends. A client that holds several keeps its other sessions:
one that is not named yet may be an introduction that crossed the Register.
"""

import hmac
import logging

from .effects import Log
from .pairings import RELAY_MAX_CHATS
from .relayuser import Pair, name_text

CLAIM_FOR = 45.0               # a claimed chat keeps its user busy this long (2 re-registrations)


class Claims:
    """Relearns sessions from proven Registers; *lookup(name)* gives the
    User registered under a name, or None."""

    def __init__(self, stats, lookup):
        self.stats = stats
        self._lookup = lookup

    def register(self, user, msg, now, pairings):
        """A proven Register *msg* of *user* names the chats it is in: make
        them its claims, restore the sessions both sides claim (through
        *pairings*), and return what to log."""
        if msg.chats is not None:
            chats = msg.chats
        elif msg.partner is not None and msg.session is not None:
            chats = ((msg.partner, msg.session),)
        else:
            user.claims = None          # it names none: the usual Register
            return []
        named = _distinct(user, chats)[:RELAY_MAX_CHATS]
        if not user.max_chats:
            return self._one(user, named[:1], now, pairings)
        known = {pair.other(user).name for pair in user.chats}
        claims = [c for c in named if c[0] not in known][:max(0, user.max_chats - len(user.chats))]
        user.set_claims(claims, now + CLAIM_FOR)
        out = []
        for name, secret in claims:
            out += self._restore(user, name, secret, now, pairings)
        return out

    def _one(self, user, named, now, pairings):
        """The claim of a client that holds one chat."""
        if not named or user.partner is not None and user.partner.name == named[0][0]:
            user.claims = None          # no chat, or one this relay knows already
            return []
        out = pairings.end(user)        # it ignored whatever this relay paired it with
        user.set_claims(named, now + CLAIM_FOR)
        return out + self._restore(user, named[0][0], named[0][1], now, pairings)

    def _restore(self, user, name, secret, now, pairings):
        other = self._lookup(name)
        if other is None or user.chat_with(other) is not None or \
                not any(n == user.name and hmac.compare_digest(s, secret) for n, s in other.claimed(now)):
            return []
        if not other.max_chats and other.chats:
            return []                   # (it holds one chat, and that one is another)
        user.drop_claim(name, now)
        other.drop_claim(user.name, now)
        pairings.add(Pair(user, other, secret, asked=False), now)
        self.stats["restored"] += 1
        return [Log(logging.INFO, "restored the session of %s and %s (both still in it)"
                    % (name_text(other.name), name_text(user.name)), kind="restored")]


def _distinct(user, chats):
    """[(name, secret bytes)]: one per partner, not the user itself."""
    out, seen = [], {user.name}
    for name, secret in chats:
        if name not in seen:
            seen.add(name)
            out.append((name, bytes.fromhex(secret)))
    return out
