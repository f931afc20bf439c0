"""Noise's cipher layer (revision 34, sections 4, 5.1, 5.2): CipherState and
SymmetricState over ChaCha20-Poly1305 and BLAKE2s, sans-I/O.

Theory of operation
-------------------
Two small objects, named as in the specification; the handshake
(:mod:`peerpunch.noise`) drives them, and after it each direction of the
channel is one CipherState.

* :class:`CipherState` holds a ChaCha20-Poly1305 key *k* and a 64-bit nonce
  counter *n*. ``encrypt_with_ad`` / ``decrypt_with_ad`` use the nonce
  4 zero bytes || n (little-endian) and advance *n* only on success, so a
  forged datagram costs nothing but a failed check. Nonce 2**64-1 is
  reserved: once *n* reaches it the state refuses to work. ``rekey()``
  (section 11.3) replaces *k* with the first 32 bytes of
  ENCRYPT(k, 2**64-1, zeros(32), b"") and keeps *n*. Without a key it
  passes data through, as the first handshake messages need.
* :class:`SymmetricState` holds the chaining key *ck* and the transcript
  hash *h* (BLAKE2s). ``mix_key`` feeds a DH result through HKDF into *ck*
  and a fresh CipherState; ``mix_hash`` folds every byte sent or received
  into *h*; ``encrypt_and_hash`` uses *h* as associated data, so each
  ciphertext also authenticates the whole transcript before it; ``split``
  derives the two transport CipherStates.

The AEAD and X25519 primitives come from a :mod:`peerpunch.crypto` backend
passed in; hashing is hashlib's BLAKE2s. The error classes of both Noise
modules live here: :class:`LocalNoiseError` for misuse by our code (nothing
changes), :class:`RemoteNoiseError` for what the other side sent, and its
subclass :class:`DecryptError` (also a ``crypto.InvalidTag``) for failed
authentication.
"""

import hashlib
import hmac
import struct

from . import crypto

HASHLEN = 32
BLOCKLEN = 64
KEYLEN = 32
TAGLEN = 16
MAX_NONCE = 2 ** 64 - 1
"""Reserved: never used to encrypt a message (section 5.1)."""
MAX_MESSAGE = 65535
"""Largest Noise message, handshake or transport (section 3)."""


class NoiseError(ValueError):
    """Base class of the errors the Noise modules raise on purpose."""


class RemoteNoiseError(NoiseError):
    """The other side sent something we cannot accept; drop the message."""


class DecryptError(RemoteNoiseError, crypto.InvalidTag):
    """Authentication failed: tampered data, a wrong key or a wrong prologue."""


class LocalNoiseError(NoiseError):
    """Our own code misused the API; nothing was changed."""


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


def as_bytes(value, what, length=None):
    """*value* as bytes, or LocalNoiseError naming *what* if it is not bytes-like
    or not *length* long."""
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
        plaintext = as_bytes(plaintext, "plaintext")
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
        ciphertext = as_bytes(ciphertext, "ciphertext")
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
