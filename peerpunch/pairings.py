"""Introductions and sessions: who is in a chat with whom. Sans-I/O.

Theory of operation
-------------------
``Connect`` pairs two users: each gets a ``PeerInfo`` naming the other's
public endpoint, and the pair is a session (a :class:`Pair`) until either
sends ``SessionFinished`` (or expires). A repeated ``Connect`` for a pair
already made repeats both ``PeerInfo``s (once per REINTRODUCE_EVERY),
which is how lost datagrams are recovered.

How many chats at once. A client that announced ``max_chats`` in its
proven Register may hold that many sessions (at most RELAY_MAX_CHATS);
every other client holds one, the seed's way. A target that holds as many
chats as it may is busy (``TargetBusy``); an asker that does gets an Error
``too-many-chats`` if it announced ``max_chats``, and otherwise leaves its
old chat for the new one, as a seed client always did. Claimed chats
(below) count as held. So a user is in at most RELAY_MAX_CHATS sessions,
and what a session costs is bounded per user.

Who may meet whom: two proven clients, two seed-form ones, or a proven
asker and a seed-form client; a seed-form Connect (which cannot be
authenticated) for a proven client gets TargetNotFound. A PeerInfo to a
seed-form client goes to an address nobody proved, so each block (/24,
/48) gets at most SEED_INFO_BURST of them at once and SEED_INFO_RATE a
second, and introductions a seed client asked for spend a credit of its
block: SEED_GAIN bytes per byte of the seed-form datagrams (Registers and
requests of seed-form clients) that came from that /24 or /48, at most
SEED_CREDIT_MAX saved up per block, in a table of MAX_BUDGET_BLOCKS blocks
(one pushed out loses its credit). So what a forger reflects through the
seed pool is at most SEED_GAIN x the bytes it forged from the blocks it
asks from, plus SEED_CREDIT_MAX for each of those blocks that had credit
saved (legitimate seed traffic from them earned it).

Each introduction also hands both extension peers the same random
``session`` secret, which keys the MAC on their secure handshake and names
the pair for the fallback service (:mod:`peerpunch.forwarder`): a relayed
datagram goes to the sender's partner in the session its channel names (or
in its only session), within that session's quotas. The ``mapping`` a
client announced (what its NAT does) makes the other peer aim a birthday
search (thousands of probes) at its address, so it is passed on only for a
client that proved its address, in a pairing whose Connect carried the
asker's token.

A relay that restarts forgets every pairing: see :mod:`peerpunch.claims`.
"""

import dataclasses
import logging

from . import forwarder as F
from . import protocol as P
from .addrkeys import block_key, ip_key
from .effects import Log, Send
from .relayuser import Pair, name_text
from .routability import MAX_BUDGET_BLOCKS
from .shares import Budget, Credit

RELAY_MAX_CHATS = 16           # sessions one client may hold at once, whatever it announced
REINTRODUCE_EVERY = 0.5        # seconds between repeated introductions of a pair
SEED_INFO_RATE, SEED_INFO_BURST = 2.0, 8.0  # PeerInfos to seed-form clients per /24 or /48
SEED_GAIN = 3                  # seed-pool introductions: bytes out <= this x bytes in...
SEED_CREDIT_MAX = 2048         # ...plus at most this much saved up per /24 or /48
# the shortest payload a peer relays: a plain probe, the JSON ``"Ping"`` (sealed frames are
# longer); shorter ones are refused, so adding the channel at most doubles what was received
MIN_RELAYED_PAYLOAD = 6
_NOT_RELAYED = {
    "relay_without_session": "relayed datagram outside a session",
    "relay_ambiguous": "relayed datagram that does not say which of its sender's sessions it is for",
    "relay_too_short": "relayed datagram shorter than any a peer sends",
    "relay_unnamed": "relayed datagram without its channel from a client that names its chats",
}


def _named(name, user):
    """The ``target`` field of a refusal of *user*'s Connect for *name*: the
    name, for an ext client (which may ask for several at once), if it is a
    valid username (an impossible name is not echoed); else None."""
    if not user.ext:
        return None
    try:
        return P.check_username(name)
    except ValueError:
        return None


class Pairings:
    """The sessions between users, made by Connect and restored by claims.

    Wired to the relay's *directory* (users by name), *watches* (a paired
    user stops waiting for its partner), *refusals* (dropped datagrams,
    Errors) and *forwarder* (the relayed fallback's quotas)."""

    def __init__(self, stats, directory, watches, refusals, forwarder, random_bytes):
        self.stats = stats
        self._directory = directory
        self._watches = watches
        self._refusals = refusals
        self._forwarder = forwarder
        self._random_bytes = random_bytes
        self._seed_infos = Budget(SEED_INFO_RATE, SEED_INFO_BURST, MAX_BUDGET_BLOCKS)
        self._seed_credit = Credit(SEED_CREDIT_MAX, MAX_BUDGET_BLOCKS)   # per block: bytes its seed
        #                                                               introductions may still send

    def sessions(self):
        return sum(len(u.chats) for u in self._directory.users()) // 2

    def limited(self, now):
        """How many blocks' budgets of PeerInfos to seed clients are spent now."""
        return self._seed_infos.exhausted(now)

    def seed_credit(self, addr):
        """Bytes introductions asked from *addr*'s block may still send."""
        return self._seed_credit[block_key(addr)]

    def credit_seed(self, size, addr):
        """A seed-form datagram of *size* bytes came from *addr*: introductions
        asked from its block may send SEED_GAIN x that."""
        self._seed_credit.earn(block_key(addr), SEED_GAIN * size)

    # -- requests

    def connect(self, msg, user, addr, now):
        """*user* (at *addr*) asks to be introduced to ``msg.target_username``."""
        target = self._directory.user(msg.target_username)
        named = _named(msg.target_username, user)
        pair = user.chat_with(target) if target is not None else None
        if msg.session is not None and (pair is None or pair.secret.hex() != msg.session):
            self.stats["stale_reintroductions"] += 1
            return []                # a peer recovering a chat that has ended: no new pairing
        if target is user:
            self.stats["self_connect"] += 1
            if user.ext:
                return self._refusals.error(addr, P.ERROR_SELF, "you cannot connect to yourself",
                                            user.nonce, now, target=named)
            return [Send(P.encode(P.TargetNotFound()), addr)]
        if target is None or (target.ext and not user.ext):
            # a seed-form Connect cannot be authenticated: it never reaches a
            # proven client (whom its PeerInfo would aim at a forged address)
            self.stats["not_found" if target is None else "seed_to_proven"] += 1
            return [Send(P.encode(P.TargetNotFound(nonce=user.nonce, target=named)), addr)]
        if pair is not None:
            return self._reintroduce(pair, user, now)
        bound = user.max_chats
        if bound and self.held(user, target, now) >= bound:
            self.stats["too_many_chats"] += 1
            return self._refusals.error(addr, P.ERROR_TOO_MANY_CHATS,
                                        "too many chats", user.nonce, now, target=named)
        if self.held(target, user, now) >= (target.max_chats or 1):
            self.stats["busy"] += 1
            return [Send(P.encode(P.TargetBusy(nonce=user.nonce, target=named)), addr)]
        return self._pair(user, target, now)

    def session_finished(self, msg, user, addr, now):
        """*user* ended its chat with ``msg.partner`` -- or, without one (a
        seed client, our older peers), every chat."""
        if msg.partner is None or not user.ext:
            user.claims = None
            return self.end(user)
        user.drop_claim(msg.partner, now)
        partner = self._directory.user(msg.partner)
        return self.end(user, partner) if partner is not None else []

    @staticmethod
    def held(user, other, now):
        """How many chats *user* holds (it is in no session with *other*),
        not counting a claim of a chat with *other*."""
        if user.claims is None:
            return len(user.chats)
        return len(user.chats) + sum(1 for name, _ in user.claimed(now) if name != other.name)

    def end(self, user, partner=None):
        """*user*'s sessions are over: every one, or the one with *partner*."""
        out = []
        for pair in user.chats:
            if partner is None or pair.other(user) is partner:
                out += self._end(pair, user)
        return out

    def add(self, pair, now):
        """Store *pair* as a session of both its users."""
        pair.introduced_at = now
        pair.a.chats += (pair,)
        pair.b.chats += (pair,)

    def _end(self, pair, user):
        for u in (pair.a, pair.b):
            chats = u.chats
            if len(chats) == 1:
                u.chats = ()
            else:
                i = chats.index(pair)
                u.chats = chats[:i] + chats[i + 1:]
        self._forwarder.release(pair.secret)
        self.stats["sessions_ended"] += 1
        return [Log(logging.INFO, "session of %s and %s ended"
                    % (name_text(user.name), name_text(pair.other(user).name)), kind="ended")]

    # -- the relayed fallback

    def relay(self, data, user, addr, now):
        """Forward a relayed datagram to the sender's partner in the session
        it names, quotas allowing."""
        pair, payload = self._relayed_session(data, user)
        if pair is not None and len(payload) < MIN_RELAYED_PAYLOAD:
            pair, payload = None, "relay_too_short"
        if pair is None:
            return self._refusals.drop(None, addr, payload, _NOT_RELAYED[payload], now, 0)
        partner = pair.other(user)
        if not (user.verified and partner.verified):
            return self._refusals.drop(None, addr, "relay_unverified",
                                       "relayed datagram for a client that has not proved its address",
                                       now, 0)
        if P.FEATURE_RELAY not in (user.features or ()) or \
                P.FEATURE_RELAY not in (partner.features or ()):
            return self._refusals.drop(None, addr, "relay_not_offered", "a side did not ask for relaying",
                                       now, 0)
        out = self._forwarded(data, payload, pair, partner)
        reason = self._forwarder.admit(pair.secret, len(out.data), now, owner=ip_key(user.addr))
        if reason is not None:
            self.stats["relay_refused"] += 1
            out = []
            if self._refusals.note(addr):
                out.append(Log(logging.INFO, "not relaying for %s: %s" % (name_text(user.name), reason),
                               kind="not_relayed"))
            return out
        return [out]

    @staticmethod
    def _forwarded(data, payload, pair, partner):
        """The Send of relayed *payload* to *partner*, in the form it knows."""
        if partner.max_chats:
            return Send(bytes((F.RELAYED_TO,)) + pair.channel + payload, partner.addr)
        return Send(data if data[0] == F.RELAYED else bytes((F.RELAYED,)) + payload, partner.addr)

    @staticmethod
    def _relayed_session(data, user):
        """(the session a relayed datagram from *user* is for, its payload),
        or (None, why not: a stats counter)."""
        chats = user.chats if user is not None else ()
        if data[0] == F.RELAYED:
            if chats and user.max_chats:
                return None, "relay_unnamed"       # ours always names it (0xD1): a forgery
            if len(chats) > 1:
                return None, "relay_ambiguous"     # a client in several chats names one
            return (chats[0], data[1:]) if chats else (None, "relay_without_session")
        channel = data[1:1 + F.CHANNEL_BYTES]
        for pair in chats:
            if pair.channel == channel:
                return pair, data[1 + F.CHANNEL_BYTES:]
        return None, "relay_without_session"

    # -- introductions

    def _reintroduce(self, pair, user, now):
        if user.ext:                 # (its Connect carried its token)
            pair.asked = True
        if now - pair.introduced_at < REINTRODUCE_EVERY:
            self.stats["reintroductions_limited"] += 1
            return []            # no amplification by repeated Connects
        out = self._introduce(user, pair, now)
        if out:
            self.stats["reintroductions"] += 1
            pair.introduced_at = now
        return out

    def _pair(self, user, target, now):
        """Introduce *user* (who asked) to *target*, budgets allowing."""
        pair = Pair(user, target, self._random_bytes(16), asked=user.ext)
        infos = self._introduce(user, pair, now)
        if not infos:
            return []
        out = []
        for one, other in ((user, target), (target, user)):
            if one.max_chats:                   # it holds several: this chat's claim is over,
                one.drop_claim(other.name, now)
                self._watches.drop(one, other.name)    # and it waits no more for this partner
            else:                               # it holds one: an older chat is over,
                if one is user and one.chats:   # (a client that moves on left its old chat)
                    out += self.end(one)
                one.claims = None
                if one.watching:
                    self._watches.end(one)      # and it waits for nobody now
        self.add(pair, now)
        self.stats["introductions"] += 1
        out.append(Log(logging.INFO, "introduced %s at %s to %s at %s"
                       % (name_text(user.name), user.endpoint, name_text(target.name), target.endpoint),
                       kind="introduced"))
        return out + infos

    def _introduce(self, a, pair, now):
        """PeerInfo to both users of *pair* (*a* asked; a repeated
        introduction repeats the same secret); [] if a budget forbids. A
        PeerInfo to a seed-form client goes to an address nobody proved: at
        most SEED_INFO_RATE per second to its block, and one a seed client
        asked for spends the credit of the asker's block (SEED_GAIN x what
        seed-form datagrams from that block brought)."""
        b = pair.other(a)
        out = [Send(_peer_info(about=b, to=a, pair=pair), a.addr),
               Send(_peer_info(about=a, to=b, pair=pair), b.addr)]
        unproven = [s for s, u in zip(out, (a, b)) if not u.ext]
        cost = sum(len(s.data) for s in out) if not a.ext else 0
        asker = block_key(a.addr)
        if cost > self._seed_credit[asker] or \
                not all(self._seed_infos.ready(block_key(s.addr), now) for s in unproven):
            self.stats["seed_introductions_limited"] += 1
            return []
        if cost:
            self._seed_credit.spend(asker, cost)
        for s in unproven:
            self._seed_infos.take(block_key(s.addr), now)
        return out


def _peer_info(about, to, pair):
    """The PeerInfo about *about* for *to*, in the session *pair*."""
    if not to.ext:                  # a seed client gets the seed's bytes
        return P.encode(P.PeerInfo(peer=about.endpoint, username=about.name))
    # A birthday search aims thousands of datagrams at *about*'s IP: only for a
    # client that proved it is there, in a pairing its asker proved it asked for.
    search = about.verified and pair.asked
    info = P.PeerInfo(peer=about.endpoint, username=about.name, features=about.features or (),
                      local=about.local, session=pair.secret.hex(),
                      mapping=about.mapping if search else None, nonce=to.nonce)
    try:
        return P.encode(info)
    except P.LocalProtocolError:
        # A Register of 1024 bytes can make a PeerInfo a little longer (our
        # endpoint text, the secret): pass on only what our peers use.
        features = tuple(f for f in info.features if f in P.KNOWN_FEATURES)
        return P.encode(dataclasses.replace(info, features=features, local=None))
