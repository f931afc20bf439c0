"""Introductions and sessions: who is in a chat with whom. Sans-I/O.

Theory of operation
-------------------
``Connect`` pairs two free users: each gets a ``PeerInfo`` naming the
other's public endpoint, and both are busy until either sends
``SessionFinished`` (or expires). A repeated ``Connect`` for the pair
already made repeats both ``PeerInfo``s (once per REINTRODUCE_EVERY),
which is how lost datagrams are recovered.

Who may meet whom: two proven clients, two seed-form ones, or a proven
asker and a seed-form client; a seed-form Connect (which cannot be
authenticated) for a proven client gets TargetNotFound. A PeerInfo to a
seed-form client goes to an address nobody proved, so each block (/24,
/48) gets at most SEED_INFO_BURST of them at once and SEED_INFO_RATE a
second, and introductions a seed client asked for spend a credit of
SEED_GAIN bytes per byte seed-form clients sent (at most SEED_CREDIT_MAX
saved up): what a forger reflects through the seed pool is at most
SEED_GAIN x its own bytes, plus 16 kB.

Each introduction also hands both extension peers the same random
``session`` secret, which keys the MAC on their secure handshake and names
the pair for the fallback service: RELAYED datagrams from one partner go to
the other, within the quotas of :mod:`peerpunch.forwarder`. The ``mapping``
a client announced (what its NAT does) makes the other peer aim a birthday
search (thousands of probes) at its address, so it is passed on only for a
client that proved its address, in a pairing whose Connect carried the
asker's token.

A relay that restarts forgets every pairing. Clients in a chat name it in
their Registers (``partner`` and ``session``); with the token, that makes
the user busy to others (a *claim*, for CLAIM_FOR seconds), and once both
partners have claimed the same chat with the same secret the pairing is
restored, forwarding included.
"""

import dataclasses
import hmac
import logging

from . import protocol as P
from .effects import Log, Send
from .addrkeys import block_key, ip_key
from .relayuser import name_text
from .routability import MAX_BUDGET_BLOCKS
from .shares import Budget

REINTRODUCE_EVERY = 0.5        # seconds between repeated introductions of a pair
CLAIM_FOR = 45.0               # a claimed chat keeps its user busy this long (2 re-registrations)
SEED_INFO_RATE, SEED_INFO_BURST = 2.0, 8.0  # PeerInfos to seed-form clients per /24 or /48
SEED_GAIN = 3                  # seed-pool introductions: bytes out <= this x bytes in...
SEED_CREDIT_MAX = 16384        # ...plus at most this much saved up


class Pairings:
    """The sessions between users, made by Connect and restored by claims.

    Wired to the relay's *directory* (users by name), *watches* (a paired
    user waits for nobody), *refusals* (dropped datagrams, Errors) and
    *forwarder* (the relayed fallback's quotas)."""

    def __init__(self, stats, directory, watches, refusals, forwarder, random_bytes):
        self.stats = stats
        self._directory = directory
        self._watches = watches
        self._refusals = refusals
        self._forwarder = forwarder
        self._random_bytes = random_bytes
        self._seed_infos = Budget(SEED_INFO_RATE, SEED_INFO_BURST, MAX_BUDGET_BLOCKS)
        self._seed_credit = 0.0                        # bytes seed introductions may still send

    def sessions(self):
        return sum(1 for u in self._directory.users() if u.partner) // 2

    def limited(self, now):
        """How many blocks' budgets of PeerInfos to seed clients are spent now."""
        return self._seed_infos.exhausted(now)

    def credit_seed(self, size):
        """Seed-form clients sent *size* bytes: SEED_GAIN x that may go back."""
        self._seed_credit = min(SEED_CREDIT_MAX, self._seed_credit + SEED_GAIN * size)

    # -- requests

    def connect(self, msg, user, addr, now):
        """*user* (at *addr*) asks to be introduced to ``msg.target_username``."""
        target = self._directory.user(msg.target_username)
        if msg.session is not None and (target is None or user.partner is not target
                                        or user.secret != msg.session):
            self.stats["stale_reintroductions"] += 1
            return []                # a peer recovering a chat that has ended: no new pairing
        if target is user:
            self.stats["self_connect"] += 1
            if user.ext:
                return self._refusals.error(addr, P.ERROR_SELF, "you cannot connect to yourself",
                                            user.nonce, now)
            return [Send(P.encode(P.TargetNotFound()), addr)]
        if target is None or (target.ext and not user.ext):
            # a seed-form Connect cannot be authenticated: it never reaches a
            # proven client (whom its PeerInfo would aim at a forged address)
            self.stats["not_found" if target is None else "seed_to_proven"] += 1
            return [Send(P.encode(P.TargetNotFound(nonce=user.nonce)), addr)]
        if user.partner is target:
            return self._reintroduce(user, target, now)
        if target.partner is not None or _claims_other(target, user, now):
            self.stats["busy"] += 1
            return [Send(P.encode(P.TargetBusy(nonce=user.nonce)), addr)]
        return self._pair(user, target, now)

    def session_finished(self, user):
        user.claim = None
        return self.end(user)

    def end(self, user):
        """*user*'s session (if any) is over."""
        partner = user.partner
        if partner is None:
            return []
        user.partner = partner.partner = None
        self._forwarder.release(user.secret)
        self.stats["sessions_ended"] += 1
        return [Log(logging.INFO, "session of %s and %s ended"
                    % (name_text(user.name), name_text(partner.name)), kind="ended")]

    def claim(self, user, partner_name, secret, now):
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
        out = self.end(user)
        user.claim = (partner_name, secret, now + CLAIM_FOR)
        other = self._directory.user(partner_name)
        if other is None or other.partner is not None or not _claims(other, user.name, secret, now):
            return out
        user.partner, other.partner = other, user
        user.secret = other.secret = secret
        user.asked = other.asked = False
        user.claim = other.claim = None
        user.introduced_at = other.introduced_at = now
        self.stats["restored"] += 1
        return out + [Log(logging.INFO, "restored the session of %s and %s (both still in it)"
                          % (name_text(other.name), name_text(user.name)), kind="restored")]

    def relay(self, data, user, addr, now):
        """Forward a RELAYED datagram to the sender's partner, quotas allowing."""
        partner = user.partner if user is not None else None
        if partner is None:
            return self._refusals.drop(None, addr, "relay_without_session",
                                       "relayed datagram outside a session", now, 0)
        if not (user.verified and partner.verified):
            return self._refusals.drop(None, addr, "relay_unverified",
                                       "relayed datagram for a client that has not proved its address",
                                       now, 0)
        if P.FEATURE_RELAY not in (user.features or ()) or \
                P.FEATURE_RELAY not in (partner.features or ()):
            return self._refusals.drop(None, addr, "relay_not_offered", "a side did not ask for relaying",
                                       now, 0)
        reason = self._forwarder.admit(user.secret, len(data), now, owner=ip_key(user.addr))
        if reason is not None:
            self.stats["relay_refused"] += 1
            out = []
            if self._refusals.note(addr):
                out.append(Log(logging.INFO, "not relaying for %s: %s" % (name_text(user.name), reason),
                               kind="not_relayed"))
            return out
        return [Send(data, partner.addr)]

    # -- introductions

    def _reintroduce(self, user, target, now):
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

    def _pair(self, user, target, now):
        """Introduce *user* (who asked) to *target*, budgets allowing."""
        secret = self._random_bytes(16).hex()
        infos = self._introduce(user, target, now, secret=secret, asked=user.ext)
        if not infos:
            return []
        out = self.end(user)                    # a client that moves on left its old chat
        self._watches.end(user)                 # paired: neither waits for anyone now
        self._watches.end(target)
        user.partner, target.partner = target, user
        user.claim = target.claim = None        # an older chat's claim is over
        user.asked = target.asked = user.ext    # (a proven client's Connect carries its token)
        user.secret = target.secret = secret
        user.introduced_at = target.introduced_at = now
        self.stats["introductions"] += 1
        out.append(Log(logging.INFO, "introduced %s at %s to %s at %s"
                       % (name_text(user.name), user.endpoint, name_text(target.name), target.endpoint),
                       kind="introduced"))
        return out + infos

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
