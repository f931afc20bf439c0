"""The Noise Protocol Framework (revision 34), sans-I/O, for two protocols:
``Noise_XX_25519_ChaChaPoly_BLAKE2s`` and ``Noise_IK_25519_ChaChaPoly_BLAKE2s``
(plus ``NN``, unauthenticated, kept for the easiest test vector).

Theory of operation
-------------------
Three small objects, named and layered as in the specification (section 5).
The lower two, :class:`CipherState` (a key and a nonce counter) and
:class:`SymmetricState` (chaining key and transcript hash), live in
:mod:`peerpunch.noisecipher` with the error classes; this module holds the
third and re-exports their names, so callers import ``noise`` alone.

:class:`HandshakeState` walks a handshake pattern, kept below as plain
data (:data:`PATTERNS`). Each message is a list of tokens: ``e`` and ``s``
put our ephemeral / static public key on the wire (``s`` encrypted once a
key exists); ``ee``, ``es``, ``se``, ``ss`` run one X25519 between the
initiator's key (first letter) and the responder's (second) and mix the
result into the keys. The handshake payload follows, encrypted when a key
exists. After the last message ``split()`` yields two CipherStates, one
per direction, oriented for the caller as (send, receive).

Nothing here touches a socket or a clock: ``write_message(payload)`` returns
bytes to send, ``read_message(data)`` takes received bytes and returns the
payload. Framing, retransmission and timeouts belong to the caller.

Failure rules
-------------
* :class:`LocalNoiseError`: our own code misused the API (wrong turn, call
  after completion, bad key length, exhausted nonce). No state changes.
* :class:`RemoteNoiseError`: the other side sent something unacceptable (a
  message too short or too long, a low-order public key). Its subclass
  :class:`DecryptError`, also a ``crypto.InvalidTag``, means authentication
  failed: tampering, a wrong key or a wrong prologue.
* ``read_message`` is all-or-nothing: when it raises, the HandshakeState is
  exactly as before the call, so a forged or corrupted datagram can be
  dropped and the handshake goes on with the genuine one.
* ``write_message`` raising :class:`RemoteNoiseError` (possible only when a
  remote ephemeral key received earlier turns out to be low-order) leaves the
  handshake dead: ``failed`` is set and every later call raises
  :class:`LocalNoiseError`. A :class:`LocalNoiseError` changes nothing.
"""

from typing import NamedTuple, Tuple

from . import crypto
# Re-exported: callers use these names as noise.NAME.
from .noisecipher import (BLOCKLEN, HASHLEN, KEYLEN, MAX_MESSAGE, MAX_NONCE,  # noqa: F401
                          TAGLEN, CipherState, DecryptError, LocalNoiseError, NoiseError,
                          RemoteNoiseError, SymmetricState, as_bytes, hkdf)

DHLEN = 32
"""Bytes of an X25519 public key or shared secret."""
SUITE = "25519_ChaChaPoly_BLAKE2s"


class Pattern(NamedTuple):
    """A handshake pattern (section 7): pre-messages and message tokens.

    Message *i* is sent by the initiator when *i* is even.
    """
    initiator_pre: Tuple[str, ...]
    responder_pre: Tuple[str, ...]
    messages: Tuple[Tuple[str, ...], ...]


PATTERNS = {
    # -> e  <- e, ee
    "NN": Pattern((), (), (("e",), ("e", "ee"))),
    # -> e  <- e, ee, s, es  -> s, se
    "XX": Pattern((), (), (("e",), ("e", "ee", "s", "es"), ("s", "se"))),
    # <- s  ...  -> e, es, s, ss  <- e, ee, se
    "IK": Pattern((), ("s",), (("e", "es", "s", "ss"), ("e", "ee", "se"))),
}


class HandshakeState:
    """One side of one handshake (section 5.3).

    ``pattern`` is a key of PATTERNS. ``static_private`` (32 bytes) is needed
    by both sides of XX and IK; ``remote_static`` (the responder's public
    key) is needed by, and only accepted from, the IK initiator. ``backend``
    defaults to ``crypto.get_backend("auto")``. ``ephemeral`` injects the
    ephemeral private key, for test vectors only.
    """

    def __init__(self, pattern="XX", initiator=True, static_private=None,
                 remote_static=None, prologue=b"", backend=None, ephemeral=None):
        if pattern not in PATTERNS:
            raise LocalNoiseError("unknown pattern %r" % (pattern,))
        self.pattern = pattern
        self.initiator = bool(initiator)
        self._pattern = PATTERNS[pattern]
        self._backend = backend if backend is not None else crypto.get_backend("auto")
        self._s = self._keypair(static_private, "static_private")
        self._e = self._keypair(ephemeral, "ephemeral")
        self._rs = (None if remote_static is None
                    else as_bytes(remote_static, "remote_static", DHLEN))
        self._re = None
        self._index = 0
        self._split = None
        self._handshake_hash = None
        self.failed = False
        self._check_keys()
        name = ("Noise_%s_%s" % (pattern, SUITE)).encode("ascii")
        self._symmetric = SymmetricState(name, self._backend)
        self._symmetric.mix_hash(as_bytes(prologue, "prologue"))
        self._mix_pre_messages()

    def _keypair(self, private, what):
        if private is None:
            return None
        private = as_bytes(private, what, DHLEN)
        return private, self._backend.x25519_public(private)

    def _roles(self):
        """(our pre-message tokens, theirs, our message indexes' parity)."""
        p = self._pattern
        if self.initiator:
            return p.initiator_pre, p.responder_pre, 0
        return p.responder_pre, p.initiator_pre, 1

    def _check_keys(self):
        ours, theirs, parity = self._roles()
        sent = [t for i, m in enumerate(self._pattern.messages) if i % 2 == parity for t in m]
        if ("s" in ours or "s" in sent) and self._s is None:
            raise LocalNoiseError("pattern %s needs static_private on this side" % self.pattern)
        if "s" in theirs and self._rs is None:
            raise LocalNoiseError("pattern %s needs remote_static on this side" % self.pattern)
        if "s" not in theirs and self._rs is not None:
            raise LocalNoiseError("pattern %s learns remote_static from the handshake;"
                                  " compare it after completion instead" % self.pattern)

    def _mix_pre_messages(self):
        # The initiator's pre-message keys are hashed first (section 5.3).
        for initiators, tokens in ((True, self._pattern.initiator_pre),
                                   (False, self._pattern.responder_pre)):
            for token in tokens:  # only "s" occurs in our patterns
                key = self._s[1] if initiators == self.initiator else self._rs
                self._symmetric.mix_hash(key)

    # ------------------------------------------------------------ public API

    @property
    def complete(self):
        """True once the last handshake message was written or read."""
        return self._split is not None

    @property
    def is_my_turn(self):
        """True if the next call must be write_message, False if read_message."""
        return (self._index % 2 == 0) == self.initiator

    @property
    def local_static(self):
        """Our static public key (what a peer pins for IK), or None."""
        return self._s and self._s[1]

    @property
    def remote_static(self):
        """The peer's static public key, once known (else None)."""
        return self._rs

    @property
    def handshake_hash(self):
        """The final transcript hash h, for channel binding; only when complete."""
        if not self.complete:
            raise LocalNoiseError("handshake hash is final only after the handshake")
        return self._handshake_hash

    def split(self):
        """Return (send, receive) CipherStates; the same pair on every call."""
        if not self.complete:
            raise LocalNoiseError("handshake not complete")
        return self._split

    def write_message(self, payload=b""):
        """Return the next handshake message carrying *payload*.

        Raises LocalNoiseError on misuse (not our turn, complete, failed,
        message too long) and RemoteNoiseError when a key the peer sent
        earlier is low-order, which kills the handshake.
        """
        self._check_turn(writing=True)
        payload = as_bytes(payload, "payload")
        saved = self._checkpoint()
        try:
            message = b"".join(self._write_token(t) for t in self._tokens())
            message += self._symmetric.encrypt_and_hash(payload)
            if len(message) > MAX_MESSAGE:
                raise LocalNoiseError("handshake message longer than %d bytes" % MAX_MESSAGE)
        except RemoteNoiseError:
            self.failed = True
            raise
        except Exception:
            self._rollback(saved)
            raise
        self._advance()
        return message

    def read_message(self, data):
        """Process a received handshake message and return its payload.

        Raises RemoteNoiseError (DecryptError on authentication failure) for
        anything malformed, truncated or forged, leaving this state unchanged;
        LocalNoiseError on misuse.
        """
        self._check_turn(writing=False)
        data = as_bytes(data, "message")
        saved = self._checkpoint()
        try:
            if len(data) > MAX_MESSAGE:
                raise RemoteNoiseError("handshake message longer than %d bytes" % MAX_MESSAGE)
            rest = data
            for token in self._tokens():
                rest = self._read_token(token, rest)
            payload = self._symmetric.decrypt_and_hash(rest)
        except Exception:
            self._rollback(saved)
            raise
        self._advance()
        return payload

    # -------------------------------------------------------------- internals

    def _check_turn(self, writing):
        if self.failed:
            raise LocalNoiseError("handshake failed; start a new one")
        if self.complete:
            raise LocalNoiseError("handshake already complete; use split()")
        if self.is_my_turn != writing:
            raise LocalNoiseError("not our turn to %s" % ("write" if writing else "read"))

    def _tokens(self):
        return self._pattern.messages[self._index]

    def _write_token(self, token):
        if token == "e":
            if self._e is None:
                self._e = self._keypair(crypto.generate_private_key(), "ephemeral")
            self._symmetric.mix_hash(self._e[1])
            return self._e[1]
        if token == "s":
            return self._symmetric.encrypt_and_hash(self._s[1])
        self._mix_dh(token)
        return b""

    def _read_token(self, token, data):
        if token == "e":
            self._re, rest = _take(data, DHLEN, "ephemeral key")
            self._symmetric.mix_hash(self._re)
            return rest
        if token == "s":
            size = DHLEN + (TAGLEN if self._symmetric.cipher.has_key() else 0)
            encrypted, rest = _take(data, size, "static key")
            self._rs = self._symmetric.decrypt_and_hash(encrypted)
            return rest
        self._mix_dh(token)
        return data

    def _mix_dh(self, token):
        # token[0] names the initiator's key, token[1] the responder's.
        mine, theirs = token if self.initiator else token[::-1]
        private = (self._e if mine == "e" else self._s)[0]
        public = self._re if theirs == "e" else self._rs
        try:
            shared = self._backend.x25519(private, public)
        except ValueError:
            raise RemoteNoiseError("peer's public key is low-order (DH output is zero)") from None
        self._symmetric.mix_key(shared)

    def _advance(self):
        self._index += 1
        if self._index < len(self._pattern.messages):
            return
        first, second = self._symmetric.split()
        self._split = (first, second) if self.initiator else (second, first)
        self._handshake_hash = self._symmetric.h
        self._e = None

    def _checkpoint(self):
        sym = self._symmetric
        return sym.h, sym.ck, sym.cipher.k, sym.cipher.n, self._e, self._re, self._rs

    def _rollback(self, saved):
        sym = self._symmetric
        sym.h, sym.ck, key, nonce, self._e, self._re, self._rs = saved
        sym.cipher = CipherState(self._backend, key)
        sym.cipher.n = nonce


def _take(data, size, what):
    if len(data) < size:
        raise RemoteNoiseError("handshake message too short for its %s" % what)
    return data[:size], data[size:]
