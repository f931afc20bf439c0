"""What we believe from the relay, and the shape of our Registers.

Theory of operation
-------------------
:class:`~peerpunch.relayclient.RelayClient` runs registration and requests;
this module holds the two rules it follows on the wire. Our Registers are
padded to MIN_REGISTER_BYTES (:func:`padded`): a relay of this version
answers a Register from an unproven address with a Cookie and never with
more bytes than it got.

Authentic relay messages (:class:`RelayAuth`). The relay's source address
proves nothing: anyone can forge it. Each session picks a random nonce (16
bytes, from ``random_bytes``, os.urandom by default) and sends it in every
Register; the relay sends it back in everything it sends us. The rules:

* a message carrying a nonce that is not ours is dropped, always;
* a message carrying ours is believed, and shows that the relay speaks
  ``ext`` with nonces: from then on, for the rest of the session, anything
  from the relay's address without our nonce is dropped -- a seed-form
  ``RegisterAck`` too, so a forger cannot downgrade us to seed mode (a seed
  relay started in place of ours then looks silent, "not answering");
* a Cookie is believed only with our nonce;
* a seed relay (``"RegisterAck"`` without features) cannot echo a nonce:
  its messages are believed as they come (seed mode). This is the residual
  risk with a seed relay. It holds before the relay's first answer too:
  until the relay shows our nonce, a forged seed-form message from its
  address is believed (it may, say, have us think we are registered a
  moment early), and the first authentic one ends seed mode for good.
* Transitional (LEGACY_RELAYS, until every relay echoes nonces): a
  RegisterAck with ``ext`` but no nonce at all comes from a relay of the
  previous version; we believe it and its nonce-less messages, as for a
  seed relay (said once in the debug log), and, before any ack, its Error
  (name-taken) without a nonce. A RegisterAck with a wrong nonce is
  forged. Without LEGACY_RELAYS, an extension message (an ext
  RegisterAck, Error, Online) without our nonce is always dropped.

Dropped datagrams are counted (stats ``unauthenticated_relay``) and logged
at debug level. The relay's text (``Error.message``) is never shown; the
console words each error code (events.RelayRefused).
"""

import dataclasses
import hmac

from . import protocol as P

MIN_REGISTER_BYTES = 200
"""Our Registers are padded to this: a relay never answers with more bytes
than it got, and its Cookie (99 bytes) must fit."""

NONCE_BYTES = 16


class RelayAuth:
    """Which datagrams from the relay's address we believe, for one session:
    the rules of the module docstring. ``nonce`` is ours (32 hex digits);
    ``mode`` what the relay has shown it is."""

    UNKNOWN = "unknown"      # no answer believed yet
    SEED = "seed"            # a seed relay: nothing can be authenticated
    LEGACY = "legacy"        # an ext relay of the previous version, without nonces
    EXT = "ext"              # echoes our nonce: only what carries it is believed

    LEGACY_RELAYS = True
    """Transitional: believe an ext relay that echoes no nonce (see the module
    docstring). To be removed once every relay of ours echoes nonces."""

    def __init__(self, random_bytes):
        self.nonce = random_bytes(NONCE_BYTES).hex()
        self.mode = self.UNKNOWN

    def check(self, msg):
        """None if *msg* (decoded, from the relay's address) is to be
        believed, else why not. Learns the relay's mode from what it believes."""
        nonce = getattr(msg, "nonce", None)
        if nonce is not None:
            if not hmac.compare_digest(nonce, self.nonce):
                return "a nonce that is not ours"
            self.mode = self.EXT
            return None
        if self.mode == self.EXT:
            return "no nonce, from a relay that has sent ours"
        if type(msg) is P.Cookie:
            return "a Cookie without our nonce"
        if type(msg) is P.RegisterAck:
            return self._ack_without_nonce(msg)
        if msg.SEED:                         # what a seed relay sends: nothing to check
            return None
        if self.mode == self.LEGACY or (self.mode == self.UNKNOWN and self.LEGACY_RELAYS):
            return None
        return "an extension message without our nonce"

    def implied_ack(self):
        """The RegisterAck an introduction implies when ours was lost: an ext
        relay's (without the token: we ask again soon) if it showed our nonce."""
        return P.RegisterAck(features=(P.FEATURE_EXT,)) if self.mode == self.EXT else P.RegisterAck()

    def _ack_without_nonce(self, msg):
        if not P.speaks_extensions(msg.features):
            self.mode = self.SEED
            return None
        if not self.LEGACY_RELAYS:
            return "an extension RegisterAck without our nonce"
        self.mode = self.LEGACY
        return None


MODE_NOTES = {
    RelayAuth.SEED: "a seed relay: its messages cannot be authenticated",
    RelayAuth.LEGACY: "a relay of the previous version (no nonces): its messages cannot be"
                      " authenticated",
    RelayAuth.EXT: "it echoes our nonce: only messages that carry it are believed",
}


def padded(data):
    """An encoded Register of at least MIN_REGISTER_BYTES: a ``pad`` field of
    blanks, which decoders ignore (an unknown field), goes at its end."""
    if len(data) >= MIN_REGISTER_BYTES:
        return data
    blanks = max(0, MIN_REGISTER_BYTES - len(data) - len(b',"pad":""'))
    return data[:-2] + b',"pad":"' + b" " * blanks + b'"}}'


def fitting(register):
    """*register* naming only as many of its ``chats`` as fit in one datagram
    (P.MAX_DATAGRAM), the first ones (the one-chat fields repeat the first):
    16 chats with long names would not."""
    while True:
        try:
            P.encode(register)
            return register
        except P.LocalProtocolError:
            if not register.chats:
                raise
            register = dataclasses.replace(register, chats=register.chats[:-1] or None)
