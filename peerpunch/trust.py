"""Securing the chat and trusting the peer's key.

Theory of operation
-------------------
:class:`TrustMixin` is the part of :class:`~peerpunch.session.PeerSession`
that runs once a path is found. ``_path_found`` picks the link: a
:class:`~peerpunch.link.SecureLink` (Noise handshake, driven by the
``link`` timer) when we have an identity and the peer offers noise, else a
:class:`~peerpunch.link.PlainLink` -- refused under ``--strict`` or
``--require-encryption``, and loudly flagged otherwise. ``_secured`` checks
the handshake's key trust-on-first-use style: a new name's key is pinned
(a :class:`~peerpunch.events.PinKey` event), a known one connects, a
changed one (or a pinned peer that no longer encrypts) blocks the chat:
nothing is shown or sent, incoming lines are held, until the user types
``/trust`` or ``/leave``. ``/whoami`` and ``/verify`` show our fingerprint
and the safety code to compare by voice.
"""

from . import identity as ID
from . import protocol as P
from .events import (DIRECT_RETRY, HANDSHAKE_FALLBACK_AFTER, Alert, ChatMessage, Failed, Notice,
                     PinKey, State)
from .link import LinkFailed, PlainLink, SecureLink
from .secure import SecureChannel


class TrustMixin:
    """Link choice, key pinning and the /whoami /verify /trust commands."""

    # -- commands

    def whoami(self):
        if self.identity is None:
            return "you are %s; no identity key (encryption off)" % self.username
        return "you are %s, key %s" % (self.username, ID.fingerprint(self.identity.public))

    def verify(self):
        if self.state is not State.CONNECTED or not self.link.secure:
            return "/verify needs an encrypted chat"
        code = ID.safety_code(self.identity.public, self.link.remote_key)
        return "safety code with %s: %s\ncompare it with %s by voice; if it differs, someone is" \
               " in between" % (self.peer.username, code, self.peer.username)

    def trust(self, now):
        """Accept a changed key (or an unencrypted peer whose key we had pinned)."""
        if not self._blocked:
            return [Notice("nothing to trust")]
        out = []
        key = self.link.remote_key
        if key is not None:
            self.known_keys[self.peer.username] = key
            out.append(PinKey(self.peer.username, key))
        self._blocked = None
        out.append(Notice("trusting %s now" % self.peer.username))
        held, self._held = self._held, []
        out += [ChatMessage(self.peer.username, text) for text in held]
        return out + self._flush_queue()

    # -- the link

    def _path_found(self, now):
        """The punch worked (or the relay will carry us): choose the link and,
        for a secure one, start it."""
        notes = []
        if self.peer.via_relay and not any(map(self._can_send, self.peer.candidates)):
            notes.append(Notice("the chat goes through the relay at %s (no address family in"
                                " common for a direct path)" % self.relay.endpoint))
        elif self.peer.via_relay:
            self._direct_retry_timer.at(now + DIRECT_RETRY)
            notes.append(Notice("the chat goes through the relay at %s for now; still trying the"
                                " direct path" % self.relay.endpoint))
        if self.identity is not None and P.FEATURE_NOISE in self.peer.features:
            initiator = self.username < self.peer.username
            names = (self.username, self.peer.username) if initiator else \
                (self.peer.username, self.username)
            channel = SecureChannel(initiator=initiator, static_private=self.identity.private,
                                    backend=self.backend, mac_key=self.peer.secret,
                                    prologue="|".join(names).encode("utf-8"))
            self.link = SecureLink(channel)
            self._enter(State.HANDSHAKING, now)
            if not self.peer.via_relay and self._fallback_possible():
                # a handshake that has not got through directly by then moves to the relay
                self._fallback_timer.at(now + HANDSHAKE_FALLBACK_AFTER)
            out = self._handshake_bytes(self.link.start(now))
            self._schedule_link()
            return notes + out
        self.link = PlainLink()
        if self.require_encryption or self.strict:
            who, flag = self.peer.username, "--strict" if self.strict else "--require-encryption"
            return [Failed("%s's client does not encrypt: refused (%s)" % (who, flag))] \
                + self._goodbye() + self._end_chat(now)
        if self.peer.username in self.known_keys:
            self._blocked = ("%s's key is pinned, but this chat is unencrypted: a downgrade?"
                             % self.peer.username)
        out = notes + self._connected(now, "unencrypted")
        out.append(Alert("%s's client does not encrypt: anyone on the path can read and"
                         " change this chat" % self.peer.username))
        return out + self._block_alert()

    def _secured(self, now):
        """The handshake is done: check the key against the pin, then connect."""
        name, key = self.peer.username, self.link.remote_key
        verdict = ID.NEW if name not in self.known_keys else \
            ID.KNOWN if self.known_keys[name] == key else ID.CHANGED
        if verdict == ID.NEW and self.strict:
            reason = "refused %s: key %s is not pinned (--strict)" % (name, ID.fingerprint(key))
            return [Failed(reason)] + self._goodbye() + self._end_chat(now)
        if verdict == ID.CHANGED:
            self._blocked = "%s's key has CHANGED: pinned %s, presented %s" % (
                name, ID.fingerprint(self.known_keys[name]), ID.fingerprint(key))
        out = self._connected(now, "encrypted, key %s" % ID.fingerprint(key))
        if verdict == ID.NEW:
            self.known_keys[name] = key
            out += [PinKey(name, key), Notice("first chat with %s: key pinned" % name)]
        return out + self._block_alert()

    def _block_alert(self):
        """The loud warning for a blocked chat (set before connecting, so
        nothing queued slips out), or nothing."""
        if not self._blocked:
            return []
        bar = "@" * 64
        return [Alert("\n".join((
            bar, "WARNING: " + self._blocked,
            "Someone may be impersonating %s. Nothing will be shown or sent" % self.peer.username,
            "until you type /trust (accept it) or /leave.", bar)))]

    def _schedule_link(self):
        deadline = self.link.next_deadline() if self.link is not None else None
        if deadline is None:
            self._link_timer.stop()
        else:
            self._link_timer.at(deadline)

    def _timer_link(self, now):
        if self.link is None:
            return []
        try:
            frames = self.link.tick(now)
        except LinkFailed as exc:
            reason = "could not secure the chat with %s: %s" % (self.peer.username, exc)
            return [Failed(reason)] + self._end_chat(now)
        self._schedule_link()
        return self._handshake_bytes(frames) if not self.link.ready else \
            [self._peer_bytes(f) for f in frames]
