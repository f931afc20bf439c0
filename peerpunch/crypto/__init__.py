"""Crypto primitives for Noise_XX_25519_ChaChaPoly_BLAKE2s, with two backends.

Theory of operation
-------------------
A backend computes X25519 (RFC 7748) and the ChaCha20-Poly1305 AEAD
(RFC 8439); BLAKE2s comes from hashlib and is not part of a backend. Two
backends give byte-identical results:

* ``libcrypto`` (peerpunch/crypto/libcrypto.py): ctypes over the OpenSSL
  libcrypto that Python's own ``ssl`` module loaded. Fast.
* ``python`` (peerpunch/crypto/pure.py): pure Python, always available,
  about a millisecond per X25519 and a few MB/s of AEAD.

``get_backend("auto")`` picks libcrypto when it loads and passes its
known-answer self-test, else python; the choice is made once and cached.

Every input is checked here, in ``Backend``, before a backend sees it, so
both raise the same exceptions for the same mistakes:

* ``TypeError``: an argument is not bytes, bytearray or memoryview;
* ``ValueError``: a key is not 32 bytes, a nonce not 12, a message longer
  than MAX_MESSAGE_SIZE, or X25519 produced the all-zero value (the public
  key was a low-order point, RFC 7748 §6.1);
* ``InvalidTag``: the ciphertext was forged, corrupted, shorter than its
  tag, or opened with the wrong key, nonce or associated data.

Thread safety: neither backend keeps per-call state in the object (the
libcrypto backend takes a cipher context from a lock-free pool for each
call), so one backend object may be used from any number of threads at
once.
"""

import os

KEY_SIZE = 32
NONCE_SIZE = 12
TAG_SIZE = 16
MAX_MESSAGE_SIZE = 1 << 30      # far above Noise's 65535; keeps OpenSSL's int lengths safe
BACKEND_NAMES = ("libcrypto", "python")

_ALL_ZERO = bytes(32)


class InvalidTag(Exception):
    """AEAD authentication failed: the message was not sealed with this key, nonce and ad."""


def _as_bytes(value, what):
    if type(value) is bytes:
        return value
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    raise TypeError("%s must be bytes, not %s" % (what, type(value).__name__))


def _sized(value, size, what):
    value = _as_bytes(value, what)
    if len(value) != size:
        raise ValueError("%s must be %d bytes, not %d" % (what, size, len(value)))
    return value


def _message(value, what):
    value = _as_bytes(value, what)
    if len(value) > MAX_MESSAGE_SIZE:
        raise ValueError("%s is longer than %d bytes" % (what, MAX_MESSAGE_SIZE))
    return value


class Backend:
    """X25519 and ChaCha20-Poly1305; subclasses implement the underscored methods.

    The public methods check their arguments (see the module docstring) and
    always return bytes.
    """

    name = "abstract"
    detail = ""

    def x25519(self, private, public):
        """The 32-byte shared secret X25519(private, public); ValueError if it is all zero."""
        shared = self._x25519(_sized(private, KEY_SIZE, "private key"),
                              _sized(public, KEY_SIZE, "public key"))
        if shared == _ALL_ZERO:
            raise ValueError("X25519 result is all zero: the public key is a low-order point")
        return shared

    def x25519_public(self, private):
        """The 32-byte public key X25519(private, 9) of a 32-byte private key."""
        return self._x25519_public(_sized(private, KEY_SIZE, "private key"))

    def aead_encrypt(self, key, nonce, plaintext, ad):
        """ChaCha20-Poly1305 seal: ciphertext || 16-byte tag."""
        return self._aead_encrypt(_sized(key, KEY_SIZE, "key"), _sized(nonce, NONCE_SIZE, "nonce"),
                                  _message(plaintext, "plaintext"), _message(ad, "ad"))

    def aead_decrypt(self, key, nonce, ciphertext, ad):
        """ChaCha20-Poly1305 open: the plaintext of ciphertext || tag, or InvalidTag."""
        key = _sized(key, KEY_SIZE, "key")
        nonce = _sized(nonce, NONCE_SIZE, "nonce")
        ciphertext = _message(ciphertext, "ciphertext")
        ad = _message(ad, "ad")
        if len(ciphertext) < TAG_SIZE:
            raise InvalidTag("ciphertext is shorter than its %d-byte tag" % TAG_SIZE)
        return self._aead_decrypt(key, nonce, ciphertext, ad)

    def keyed(self, key, layout="header"):
        """The AEAD with *key* bound once, for many datagrams: an object with
        ``seal(nonce, plaintext, ad)`` and ``open(nonce, ciphertext, ad)``,
        the associated data in *layout* ("header" or "record", see
        :mod:`peerpunch.crypto.keyed`); for one thread."""
        from .keyed import KeyedAead
        return KeyedAead(self, _sized(key, KEY_SIZE, "key"), layout)

    def __repr__(self):
        return "<%s backend: %s>" % (self.name, self.detail)

    def _x25519(self, private, public):
        raise NotImplementedError

    def _x25519_public(self, private):
        raise NotImplementedError

    def _aead_encrypt(self, key, nonce, plaintext, ad):
        raise NotImplementedError

    def _aead_decrypt(self, key, nonce, ciphertext, ad):
        raise NotImplementedError


def generate_private_key():
    """32 random bytes from the OS; X25519 clamps them when they are used."""
    return os.urandom(KEY_SIZE)


_loaded = {}        # backend name -> Backend, or the one-line reason it is unavailable


def _load(name):
    if name not in _loaded:
        try:
            if name == "python":
                from .pure import PythonBackend
                backend = PythonBackend()
            else:
                from .libcrypto import LibcryptoBackend
                backend = LibcryptoBackend.load()
        except Exception as exc:        # any failure only makes this backend unavailable
            backend = str(exc) if isinstance(exc, RuntimeError) else "%s: %s" % (
                type(exc).__name__, exc)
        _loaded.setdefault(name, backend)
    return _loaded[name]


def get_backend(name="auto"):
    """The backend called name ("auto", "libcrypto" or "python"), loaded once and cached.

    "auto" is libcrypto if it loads and passes its self-test, else python.
    Raises RuntimeError (one line: why) if "libcrypto" is unavailable, and
    ValueError for an unknown name.
    """
    if name == "auto":
        backend = _load("libcrypto")
        return backend if isinstance(backend, Backend) else _load("python")
    if name not in BACKEND_NAMES:
        raise ValueError("unknown crypto backend %r (choose auto, %s)" % (
            name, ", ".join(BACKEND_NAMES)))
    backend = _load(name)
    if not isinstance(backend, Backend):
        raise RuntimeError("%s backend unavailable: %s" % (name, backend))
    return backend


def available_backends():
    """{name: Backend, or the reason string it is unavailable} for every backend."""
    return {name: _load(name) for name in BACKEND_NAMES}
