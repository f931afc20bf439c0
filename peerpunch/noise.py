"""The Noise Protocol Framework (revision 34), sans-I/O, for two protocols:
``Noise_XX_25519_ChaChaPoly_BLAKE2s`` and ``Noise_IK_25519_ChaChaPoly_BLAKE2s``
(plus ``NN``, unauthenticated, kept for the easiest test vector).

Theory of operation
-------------------
Three small objects, named and layered as in the specification (section 5):

* :class:`CipherState` holds a ChaCha20-Poly1305 key *k* and a 64-bit nonce
  counter *n*. ``encrypt_with_ad`` / ``decrypt_with_ad`` use the nonce
  4 zero bytes || n (little-endian) and advance *n* only on success, so a
  forged datagram costs nothing but a failed check. Nonce 2**64-1 is
  reserved: once *n* reaches it the state refuses to work. ``rekey()``
  (section 11.3) replaces *k* with the first 32 bytes of
  ENCRYPT(k, 2**64-1, zeros(32), b"") and keeps *n*.
* :class:`SymmetricState` holds the chaining key *ck* and the transcript
  hash *h* (BLAKE2s). ``mix_key`` feeds a DH result through HKDF into *ck*
  and a fresh CipherState; ``mix_hash`` folds every byte sent or received
  into *h*; ``encrypt_and_hash`` uses *h* as associated data, so each
  ciphertext also authenticates the whole transcript before it.
* :class:`HandshakeState` walks a handshake pattern, kept below as plain
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

import hashlib
import hmac
import struct
from typing import NamedTuple, Tuple

from peerpunch import crypto

DHLEN = 32
HASHLEN = 32
BLOCKLEN = 64
KEYLEN = 32
TAGLEN = 16
MAX_NONCE = 2 ** 64 - 1
"""Reserved: never used to encrypt a message (section 5.1)."""
MAX_MESSAGE = 65535
"""Largest Noise message, handshake or transport (section 3)."""

SUITE = "25519_ChaChaPoly_BLAKE2s"


class NoiseError(ValueError):
    """Base class of the errors this module raises on purpose."""


class RemoteNoiseError(NoiseError):
    """The other side sent something we cannot accept; drop the message."""


class DecryptError(RemoteNoiseError, crypto.InvalidTag):
    """Authentication failed: tampered data, a wrong key or a wrong prologue."""


class LocalNoiseError(NoiseError):
    """Our own code misused the API; nothing was changed."""


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


# ------------------------------------------------------------ hash functions

def _hash(data):
    return hashlib.blake2s(data).digest()


def _hmac(key, data):
    return hmac.new(key, data, hashlib.blake2s).digest()


def hkdf(chaining_key, input_key_material, outputs):
    """HKDF of section 4.3: 2 or 3 outputs of HASHLEN bytes each."""
    temp_key = _hmac(chaining_key, input_key_material)
    out, previous = [], b""
    for i in range(1, outputs + 1):
        previous = _hmac(temp_key, previous + bytes((i,)))
        out.append(previous)
    return out


def _nonce(n):
    return b"\x00\x00\x00\x00" + struct.pack("<Q", n)


def _bytes(value, what, length=None):
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise LocalNoiseError("%s must be bytes, not %s" % (what, type(value).__name__))
    value = bytes(value)
    if length is not None and len(value) != length:
        raise LocalNoiseError("%s must be %d bytes, got %d" % (what, length, len(value)))
    return value


# ---------------------------------------------------------------- CipherState

class CipherState:
    """A key and a nonce counter (section 5.1). Without a key it passes data through."""

    def __init__(self, backend, key=None):
        self._backend = backend
        self.k = key
        self.n = 0

    def has_key(self):
        return self.k is not None

    def set_nonce(self, n):
        """Set the counter, e.g. for out-of-order transport messages."""
        if not 0 <= n <= MAX_NONCE:
            raise LocalNoiseError("nonce out of range")
        self.n = n

    def _check_usable(self):
        if self.n >= MAX_NONCE:
            raise LocalNoiseError("nonce space exhausted: run a new handshake")

    def encrypt_with_ad(self, ad, plaintext):
        """Return ciphertext||tag (plaintext unchanged if no key); advance n.

        Raises LocalNoiseError if the result would exceed MAX_MESSAGE or the
        nonce is exhausted.
        """
        plaintext = _bytes(plaintext, "plaintext")
        if self.k is None:
            return plaintext
        self._check_usable()
        if len(plaintext) + TAGLEN > MAX_MESSAGE:
            raise LocalNoiseError("message longer than %d bytes" % MAX_MESSAGE)
        ciphertext = self._backend.aead_encrypt(self.k, _nonce(self.n), plaintext, bytes(ad))
        self.n += 1
        return ciphertext

    def decrypt_with_ad(self, ad, ciphertext):
        """Return the plaintext; advance n only on success.

        Raises DecryptError on authentication failure, RemoteNoiseError on a
        message too short or too long, LocalNoiseError if the nonce is
        exhausted.
        """
        ciphertext = _bytes(ciphertext, "ciphertext")
        if self.k is None:
            return ciphertext
        self._check_usable()
        if not TAGLEN <= len(ciphertext) <= MAX_MESSAGE:
            raise RemoteNoiseError("ciphertext of %d bytes cannot be valid" % len(ciphertext))
        try:
            plaintext = self._backend.aead_decrypt(self.k, _nonce(self.n), ciphertext, bytes(ad))
        except crypto.InvalidTag:
            raise DecryptError("authentication failed") from None
        self.n += 1
        return plaintext

    def rekey(self):
        """Replace k by REKEY(k) of section 11.3; n is unchanged."""
        if self.k is None:
            raise LocalNoiseError("no key to rekey")
        self.k = self._backend.aead_encrypt(self.k, _nonce(MAX_NONCE), bytes(KEYLEN), b"")[:KEYLEN]


# ------------------------------------------------------------- SymmetricState

class SymmetricState:
    """Chaining key, transcript hash and the current CipherState (section 5.2)."""

    def __init__(self, protocol_name, backend):
        self._backend = backend
        if len(protocol_name) <= HASHLEN:
            self.h = protocol_name.ljust(HASHLEN, b"\x00")
        else:
            self.h = _hash(protocol_name)
        self.ck = self.h
        self.cipher = CipherState(backend)

    def mix_key(self, input_key_material):
        self.ck, temp_k = hkdf(self.ck, input_key_material, 2)
        self.cipher = CipherState(self._backend, temp_k[:KEYLEN])

    def mix_hash(self, data):
        self.h = _hash(self.h + data)

    def encrypt_and_hash(self, plaintext):
        ciphertext = self.cipher.encrypt_with_ad(self.h, plaintext)
        self.mix_hash(ciphertext)
        return ciphertext

    def decrypt_and_hash(self, ciphertext):
        plaintext = self.cipher.decrypt_with_ad(self.h, ciphertext)
        self.mix_hash(ciphertext)
        return plaintext

    def split(self):
        k1, k2 = hkdf(self.ck, b"", 2)
        return CipherState(self._backend, k1[:KEYLEN]), CipherState(self._backend, k2[:KEYLEN])


# ------------------------------------------------------------- HandshakeState

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
        self._rs = None if remote_static is None else _bytes(remote_static, "remote_static", DHLEN)
        self._re = None
        self._index = 0
        self._split = None
        self._handshake_hash = None
        self.failed = False
        self._check_keys()
        name = ("Noise_%s_%s" % (pattern, SUITE)).encode("ascii")
        self._symmetric = SymmetricState(name, self._backend)
        self._symmetric.mix_hash(_bytes(prologue, "prologue"))
        self._mix_pre_messages()

    def _keypair(self, private, what):
        if private is None:
            return None
        private = _bytes(private, what, DHLEN)
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
        payload = _bytes(payload, "payload")
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
        data = _bytes(data, "message")
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
