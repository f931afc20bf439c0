"""Securing one chat: the link to one partner, its handshake, and trust in its key.

Theory of operation
-------------------
A :class:`Secure` belongs to one partner, made at the introduction and
started (``start(now)``) once a path to it exists. It picks the link:

* we have an identity and the partner offers ``noise1``: a Noise XX
  handshake (:class:`~peerpunch.secure.SecureChannel`, keyed with the
  relay's session secret; the name that sorts first initiates), after which
  every message is sealed;
* otherwise the seed's plain JSON link (``Unencrypted``; refused under
  ``strict`` or ``require_encryption``).

The partner's key is checked against the pins, shared by all chats (trust
on first use): a NEW key is pinned (``PinKey``; refused under ``strict``),
a KNOWN one connects, a CHANGED one blocks the chat, and so does a plain
link to a partner whose key is pinned (a downgrade?). A blocked chat shows
and sends nothing: incoming lines go to ``hold`` (at most MAX_HELD) until
``trust(now)`` pins the presented key and releases them, or the chat ends.

``TRANSITIONS`` below is the whole machine::

    NEW --start, both encrypt--> HANDSHAKING --keys, new or known--> SECURE
        HANDSHAKING --keys, changed--> KEY_CHANGED --trust--> SECURE
        HANDSHAKING --keys, new under strict | no keys in time--> FAILED
    NEW --start, plain--> PLAIN
    NEW --start, plain, key pinned--> DOWNGRADED --trust--> PLAIN
    NEW --start, plain, under strict or require_encryption--> FAILED

Inputs return an :class:`Output` of *frames* (bytes to send), *messages*
(decoded protocol messages from the partner), *events* (data for the chat
and the console; never words) and *packets*: on an encrypted link, the
plaintexts that are stream packets (:mod:`peerpunch.stream`: 0xC1, never
JSON; 0xF8 for :mod:`peerpunch.chatfiles`), for the chat's Streams;
``seal_packet(s)`` seals ours. Frames from ``start`` and ``tick`` go to the
partner (a handshake frame to every address it was heard from); frames
from ``receive`` answer that datagram and go back the way it came.
``receive`` raises a :class:`~peerpunch.protocol.RemoteProtocolError` for
a datagram that does not authenticate (FrameRejected), is of the wrong
kind for the link (WrongKind) or does not decode; nothing has changed then
(but the replay window, for a sealed message that authenticated and does
not decode), and it proves nothing about the path. The one datagram
answered without authentication is a plain Ping before the handshake is
done: a partner still punching needs its Pong.
"""

import collections
import enum
import logging

from . import identity as ID
from .identity import Pins  # noqa: F401 -- the chats' shared pins, named here as before
from . import protocol as P
from .effects import Log
from .events import MAX_HELD, PinKey  # noqa: F401 -- PinKey re-exported: one of our events
from .secure import (HANDSHAKE_TIMEOUT, OVERHEAD, FrameRejected, HandshakeFailed,  # noqa: F401
                     SecureChannel, is_frame)
from .chatfiles import is_files_packet, is_stream_packet
from .streamwire import is_packet

PING = P.encode(P.Ping())
PONG = P.encode(P.Pong())


class SecureState(enum.Enum):
    NEW = "new"                   # no path yet
    HANDSHAKING = "handshaking"
    SECURE = "secure"             # keys agreed, the key trusted
    PLAIN = "plain"               # the seed's unencrypted link
    KEY_CHANGED = "key changed"   # blocked: keys agreed, but not the pinned key
    DOWNGRADED = "downgraded"     # blocked: a key is pinned, but the link is plain
    FAILED = "failed"             # refused, or no keys in time


class Trigger(enum.Enum):
    START_NOISE = "start, both encrypt"
    START_PLAIN = "start, plain"
    START_PLAIN_PINNED = "start, plain, key pinned"
    REFUSE = "refuse"
    KEYS_TRUSTED = "keys, new or known"
    KEYS_CHANGED = "keys, changed"
    TIMEOUT = "no keys in time"
    TRUST = "trust"


_S, _T = SecureState, Trigger
TRANSITIONS = {
    (_S.NEW, _T.START_NOISE): _S.HANDSHAKING,
    (_S.NEW, _T.START_PLAIN): _S.PLAIN,
    (_S.NEW, _T.START_PLAIN_PINNED): _S.DOWNGRADED,
    (_S.NEW, _T.REFUSE): _S.FAILED,
    (_S.HANDSHAKING, _T.KEYS_TRUSTED): _S.SECURE,
    (_S.HANDSHAKING, _T.KEYS_CHANGED): _S.KEY_CHANGED,
    (_S.HANDSHAKING, _T.REFUSE): _S.FAILED,
    (_S.HANDSHAKING, _T.TIMEOUT): _S.FAILED,
    (_S.KEY_CHANGED, _T.TRUST): _S.SECURE,
    (_S.DOWNGRADED, _T.TRUST): _S.PLAIN,
}
BLOCKED = frozenset((_S.KEY_CHANGED, _S.DOWNGRADED))
CHAT_OPEN = frozenset((_S.SECURE, _S.PLAIN))
RECEIVING = frozenset((_S.HANDSHAKING, _S.SECURE, _S.PLAIN, _S.KEY_CHANGED, _S.DOWNGRADED))

# -- reasons

NOT_PINNED = "not-pinned"           # strict: a key we had not pinned
PLAIN_STRICT = "plain-strict"       # strict: the partner does not encrypt
PLAIN_REQUIRED = "plain-required"   # require_encryption: the partner does not encrypt
TIMED_OUT = "timed-out"             # no keys within secure.HANDSHAKE_TIMEOUT

# -- events

Secured = collections.namedtuple("Secured", "partner key verdict")
Secured.__doc__ = """Keys agreed with *partner*, whose key is *key*; *verdict* is
identity.NEW (now pinned), KNOWN or CHANGED (blocked: a KeyChanged follows)."""
KeyChanged = collections.namedtuple("KeyChanged", "partner pinned presented")
KeyChanged.__doc__ = "*partner* presented a key other than the one pinned: the chat is blocked."
Unencrypted = collections.namedtuple("Unencrypted", "partner pinned")
Unencrypted.__doc__ = """The link to *partner* is plain. *pinned*: its pinned key, or None;
with a key pinned the chat is blocked (a downgrade?)."""
Refused = collections.namedtuple("Refused", "partner reason key")
Refused.__doc__ = """The chat with *partner* is refused: *reason* is NOT_PINNED (*key* is
the key presented), PLAIN_STRICT or PLAIN_REQUIRED (*key* None)."""
LinkFailed = collections.namedtuple("LinkFailed", "partner why")
LinkFailed.__doc__ = "The chat with *partner* could not be secured; *why*: TIMED_OUT."
Trusted = collections.namedtuple("Trusted", "partner")
Trusted.__doc__ = "The user accepted *partner*'s changed key (or plain link): the chat is open."
NothingToTrust = collections.namedtuple("NothingToTrust", "partner")
SafetyCode = collections.namedtuple("SafetyCode", "partner code")
SafetyCode.__doc__ = "The code to compare with *partner* by voice (the same on both sides)."
NoSafetyCode = collections.namedtuple("NoSafetyCode", "partner")
NoSafetyCode.__doc__ = "/verify: the chat with *partner* (None: no chat) is not encrypted."
WhoAmI = collections.namedtuple("WhoAmI", "username key")
WhoAmI.__doc__ = "We are *username*, with the public *key* (None: no identity, no encryption)."



class Output(collections.namedtuple("Output", "frames messages events packets")):
    """What an input produced: *frames* (bytes for the partner), *messages*
    (decoded protocol messages from it), *events* (the ones above, PinKey,
    and rarely an effects.Log) and *packets* (stream packets from it, bytes);
    four lists."""
    __slots__ = ()

    def __new__(cls, frames=(), messages=(), events=(), packets=()):
        return super().__new__(cls, list(frames), list(messages), list(events), list(packets))


class WrongKind(P.RemoteProtocolError):
    """A datagram of the other kind: plain on an encrypted link (a Ping once
    the handshake is done, a Pong, a forgery) or a sealed frame on a plain one."""


def whoami(username, identity):
    """The data for /whoami."""
    return WhoAmI(username, identity.public if identity is not None else None)


class Secure:
    """The link to one partner, its handshake and the trust in its key."""

    def __init__(self, us, partner, *, features, secret, identity, backend, pins,
                 strict=False, require_encryption=False):
        """*us*, *partner*: the two names; *features*: the partner's (from
        PeerInfo); *secret*: the relay's session secret (bytes); *identity*
        (``.private``, ``.public``) or None; *backend*: the crypto backend;
        *pins*: the shared :class:`Pins`; *strict* refuses keys not pinned
        and plain links, *require_encryption* plain links."""
        self.us = us
        self.partner = partner
        self.features = tuple(features or ())
        self.secret = secret
        self.identity = identity
        self.backend = backend
        self.pins = pins
        self.strict = strict
        self.require_encryption = require_encryption
        self.state = SecureState.NEW
        self._channel = None          # the SecureChannel, on an encrypted link
        self._held = []               # messages from the partner while blocked

    # -- what the chat asks

    @property
    def encrypted(self):
        """True if the link is (to be) encrypted."""
        return self._channel is not None

    @property
    def ready(self):
        """True if ``seal`` may be used (also while blocked, for pings and goodbyes)."""
        if self._channel is not None:
            return self._channel.ready
        return self.state is not SecureState.NEW

    @property
    def blocked(self):
        """True while nothing may be shown or sent: until trust (or the
        partner's chat request is accepted) or the chat ends."""
        return self.state in BLOCKED or self.pins.asking

    @property
    def chat_open(self):
        """True if chat lines may be shown and sent."""
        return self.state in CHAT_OPEN and not self.pins.asking

    @property
    def remote_key(self):
        """The partner's public key, once the handshake has shown it."""
        return self._channel.remote_static if self._channel is not None else None

    @property
    def overhead(self):
        """Bytes ``seal`` adds to an encoded message."""
        return OVERHEAD if self._channel is not None else 0

    def next_deadline(self):
        """When ``tick`` is next due, or None."""
        if self.state is not SecureState.HANDSHAKING:
            return None
        return self._channel.next_deadline()

    # -- inputs

    def start(self, now):
        """A path to the partner exists: choose the link and start it."""
        if self.identity is not None and P.FEATURE_NOISE in self.features:
            self._go(Trigger.START_NOISE)
            self._channel = self._new_channel()
            return Output(frames=self._channel.start(now))
        if self.strict or self.require_encryption:
            self._go(Trigger.REFUSE)
            reason = PLAIN_STRICT if self.strict else PLAIN_REQUIRED
            return Output(events=[Refused(self.partner, reason, None)])
        pinned = self.pins.get(self.partner)
        self._go(Trigger.START_PLAIN_PINNED if pinned is not None else Trigger.START_PLAIN)
        return Output(events=[Unencrypted(self.partner, pinned)])

    def receive(self, data, now):
        """A datagram's payload from the partner. Returns an Output; raises
        a RemoteProtocolError, having changed nothing, for one it rejects."""
        if self.state not in RECEIVING:
            raise P.LocalProtocolError("no link to receive on (%s)" % self.state.value)
        if self._channel is None:
            if is_frame(data):
                raise WrongKind("a sealed frame on a plain link")
            return Output(messages=[P.decode(data)])
        if not is_frame(data):
            if data == PING and self.state is SecureState.HANDSHAKING:
                return Output(frames=[PONG])
            raise WrongKind("a plain datagram on an encrypted link")
        frames, plaintexts = self._channel.open(data, now)
        events = self._check_key() if self._channel.ready and \
            self.state is SecureState.HANDSHAKING else []
        packets = [p for p in plaintexts if is_packet(p) or is_files_packet(p)]
        messages = self._decode([p for p in plaintexts if not (is_packet(p) or
                                                               is_files_packet(p))], events)
        return Output(frames, messages, events, packets)

    def open_run(self, datagrams, now):
        """Several DATA frames read together on a SECURE link (else
        LocalProtocolError): (one Output of those that authenticate and
        decode, the rest to be taken one by one). The run stops at its first
        protocol message (a Goodbye, say): that message comes last in the
        Output, after the stream packets sent before it, and the frames after
        it are in the rest, so nothing overtakes it either way. The rest also
        holds the frames that do not open, as ``receive`` would refuse them."""
        if self.state is not SecureState.SECURE or not self.ready:
            raise P.LocalProtocolError("no secure link to open a run on")
        output, rest, start, last = Output(), [], 0, None
        while start < len(datagrams) and last is None:
            plaintexts, refused, end = self._channel.open_run(datagrams[start:], is_stream_packet)
            rest, start = rest + refused, start + end
            last = plaintexts.pop() if plaintexts and not is_stream_packet(plaintexts[-1]) else None
            output.packets.extend(plaintexts)
            try:
                output.messages.extend([P.decode(last)] if last is not None else [])
            except P.RemoteProtocolError:
                rest.append(datagrams[start - 1])       # authentic, but no message: dropped
                last = None
        return output, rest + datagrams[start:]

    def tick(self, now):
        """Repeat a handshake frame that went unanswered; give up in time."""
        if self.state is not SecureState.HANDSHAKING:
            return Output()
        try:
            return Output(frames=self._channel.tick(now))
        except HandshakeFailed:
            self._go(Trigger.TIMEOUT)
            return Output(events=[LinkFailed(self.partner, TIMED_OUT)])

    def seal(self, msg):
        """The datagram payload that carries protocol message *msg*; only when ``ready``."""
        if not self.ready:
            raise P.LocalProtocolError("nothing can be sealed for %s yet" % self.partner)
        if self._channel is None:
            return P.encode(msg)
        return self._channel.seal(P.encode(msg))

    def seal_packet(self, packet):
        """The datagram payload that carries stream *packet* (bytes); only
        on an encrypted link, when ``ready``."""
        if self._channel is None or not self.ready:
            raise P.LocalProtocolError("no encrypted link to %s to carry a stream" % self.partner)
        return self._channel.seal(packet)

    def seal_packets(self, packets):
        """``seal_packet`` of each of *packets*, in one call."""
        if self._channel is None or not self.ready:
            raise P.LocalProtocolError("no encrypted link to %s to carry a stream" % self.partner)
        return self._channel.seal_run(packets)

    def held_count(self):
        """How many messages are held (while blocked)."""
        return len(self._held)

    def hold(self, msg):
        """Keep a message that arrived while blocked; False if MAX_HELD are kept already."""
        if not self.blocked:
            raise P.LocalProtocolError("hold: the chat with %s is not blocked" % self.partner)
        if len(self._held) >= MAX_HELD:
            return False
        self._held.append(msg)
        return True

    def trust(self, now):
        """/trust: accept the presented key (or the plain link) and release
        the held messages."""
        if self.state not in BLOCKED:
            return Output(events=[NothingToTrust(self.partner)])
        events = []
        if self.state is SecureState.KEY_CHANGED:
            key = self.remote_key
            self.pins.record(self.partner, key)
            events.append(PinKey(self.partner, key))
        self._go(Trigger.TRUST)
        return Output(messages=self.release(), events=events + [Trusted(self.partner)])

    def release(self):
        """The messages held (now to be shown, or dropped), no longer held."""
        held, self._held = self._held, []
        return held

    def verify(self):
        """/verify: the safety code, once keys are agreed (also while blocked)."""
        if self.state not in (SecureState.SECURE, SecureState.KEY_CHANGED):
            return NoSafetyCode(self.partner)
        return SafetyCode(self.partner, ID.safety_code(self.identity.public, self.remote_key))

    # -- inside

    def _go(self, trigger):
        try:
            self.state = TRANSITIONS[(self.state, trigger)]
        except KeyError:
            raise P.LocalProtocolError("%s: no transition from %s on %s" % (
                self.partner, self.state.value, trigger.value)) from None

    def _new_channel(self):
        initiator = self.us < self.partner
        names = (self.us, self.partner) if initiator else (self.partner, self.us)
        return SecureChannel(initiator=initiator, static_private=self.identity.private,
                             backend=self.backend, mac_key=self.secret,
                             prologue="|".join(names).encode("utf-8"))

    def _check_key(self):
        """The handshake is done: the verdict on the partner's key."""
        key = self.remote_key
        verdict = self.pins.verdict(self.partner, key)
        if verdict == ID.NEW and self.strict:
            self._go(Trigger.REFUSE)
            return [Refused(self.partner, NOT_PINNED, key)]
        if verdict == ID.CHANGED:
            self._go(Trigger.KEYS_CHANGED)
            pinned = self.pins.get(self.partner)
            return [Secured(self.partner, key, verdict), KeyChanged(self.partner, pinned, key)]
        self._go(Trigger.KEYS_TRUSTED)
        if verdict == ID.KNOWN:
            return [Secured(self.partner, key, verdict)]
        self.pins.record(self.partner, key)
        return [Secured(self.partner, key, verdict), PinKey(self.partner, key)]

    def _decode(self, plaintexts, events):
        """The messages in authentic *plaintexts*. One we cannot decode
        raises -- unless this frame also finished the handshake: then its
        *events* must not be lost, and the message is logged and left out."""
        messages = []
        for plaintext in plaintexts:
            try:
                messages.append(P.decode(plaintext))
            except P.RemoteProtocolError as exc:
                if not events:
                    raise
                events.append(Log(logging.DEBUG, "left out a sealed message from %s that did"
                                  " not decode: %s" % (self.partner, exc)))
        return messages
