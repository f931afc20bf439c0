"""Securing one chat and trusting the partner's key.

Theory of operation
-------------------
:class:`Trust` (one per partner) is the seam between a
:class:`~peerpunch.chat.Chat` and its link. Once a path is found,
:meth:`Trust.choose_link` picks a :class:`~peerpunch.link.SecureLink` (Noise
handshake) when we have an identity and the peer offers noise, else a
:class:`~peerpunch.link.PlainLink` -- refused under ``--strict`` or
``--require-encryption`` (:meth:`plain_refusal`), and loudly flagged
otherwise. :meth:`key_verdict` checks the handshake's key
trust-on-first-use style: a new name's key is pinned (a
:class:`~peerpunch.events.PinKey` event), a known one connects, a changed one
(or a pinned peer that no longer encrypts) blocks the chat: nothing is shown
or sent, incoming lines are held, until the user types ``/trust`` or
``/leave``. :func:`whoami` and :meth:`verify` give our fingerprint and the
safety code to compare by voice. *known_keys* (name -> key) is the process's,
shared by every chat.
"""

from . import identity as ID
from . import protocol as P
from .events import MAX_HELD, Alert, ChatMessage, Failed, Notice, PinKey
from .link import PlainLink, SecureLink
from .secure import SecureChannel


def whoami(username, identity):
    if identity is None:
        return Notice("whoami_no_key", name=username)
    return Notice("whoami", name=username, key=ID.fingerprint(identity.public))


class Trust:
    """Link choice, key pinning, the blocked state and /trust /verify."""

    def __init__(self, *, username, identity, backend, known_keys, strict, require_encryption):
        self.username = username
        self.identity = identity
        self.backend = backend
        self.known_keys = known_keys
        self.strict = strict
        self.require_encryption = require_encryption
        self.link = None             # how messages reach the peer, once a path is found
        self.blocked = None          # why nothing is shown or sent (a changed key): a Notice
        self.held = []               # messages from a blocked peer

    def choose_link(self, peer):
        """The link for *peer* (a path.Peer): secure if both sides can."""
        if self.identity is None or P.FEATURE_NOISE not in peer.features:
            self.link = PlainLink()
            return self.link
        initiator = self.username < peer.username
        names = (self.username, peer.username) if initiator else (peer.username, self.username)
        channel = SecureChannel(initiator=initiator, static_private=self.identity.private,
                                backend=self.backend, mac_key=peer.secret,
                                prologue="|".join(names).encode("utf-8"))
        self.link = SecureLink(channel)
        return self.link

    def plain_refusal(self, name):
        """A Failed refusing *name*'s unencrypted chat, or None (then a peer
        whose key we pinned blocks the chat: a downgrade?)."""
        if self.require_encryption or self.strict:
            flag = "--strict" if self.strict else "--require-encryption"
            return Failed("plain_refused", name=name, flag=flag)
        if name in self.known_keys:
            self.blocked = Notice("downgrade", name=name)
        return None

    def plain_alerts(self, name):
        return [Alert("plain", name=name)] + self.block_alert(name)

    def key_verdict(self, name):
        """The handshake with *name* is done: (refusal or None, the events
        that follow the Connected one). A changed key blocks the chat."""
        key = self.link.remote_key
        verdict = ID.NEW if name not in self.known_keys else \
            ID.KNOWN if self.known_keys[name] == key else ID.CHANGED
        if verdict == ID.NEW and self.strict:
            return Failed("not_pinned", name=name, key=ID.fingerprint(key)), []
        after = []
        if verdict == ID.CHANGED:
            self.blocked = Notice("key_changed", name=name, pinned=ID.fingerprint(
                self.known_keys[name]), presented=ID.fingerprint(key))
        if verdict == ID.NEW:
            self.known_keys[name] = key
            after += [PinKey(name, key), Notice("pinned", name=name)]
        return None, after + self.block_alert(name)

    def fingerprint(self):
        """The partner's key's fingerprint for the Connected event, or None
        (unencrypted)."""
        return ID.fingerprint(self.link.remote_key) if self.link.secure else None

    def block_alert(self, name):
        """The loud warning for a blocked chat, or nothing."""
        if not self.blocked:
            return []
        return [Alert("blocked", name=name, why=self.blocked)]

    def hold(self, text):
        if len(self.held) < MAX_HELD:
            self.held.append(text)

    def trust(self, name):
        """Accept a changed key (or an unencrypted peer whose key we had
        pinned): the events, the held messages among them."""
        if not self.blocked:
            return [Notice("nothing_to_trust")]
        out = []
        key = self.link.remote_key
        if key is not None:
            self.known_keys[name] = key
            out.append(PinKey(name, key))
        self.blocked = None
        out.append(Notice("trusting", name=name))
        held, self.held = self.held, []
        return out + [ChatMessage(name, text) for text in held]

    def verify(self, name, connected):
        if not connected or not self.link.secure:
            return Notice("verify_needs_encryption")
        return Notice("verify", name=name, code=ID.safety_code(self.identity.public,
                                                                self.link.remote_key))
