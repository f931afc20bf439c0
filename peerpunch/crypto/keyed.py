"""ChaCha20-Poly1305 with the key bound once: the transport's per-datagram AEAD.

Theory of operation
-------------------
``Backend.aead_encrypt`` and ``aead_decrypt`` check every argument and set
the key up on every call, which is right for the handshake and costs a few
microseconds a datagram on a bulk transfer. A channel that seals and opens
thousands of datagrams a second under one key asks its backend once for
``backend.keyed(key)`` and gets an object with these methods:

* ``seal(nonce, plaintext, ad)``: ciphertext || tag;
* ``open(nonce, ciphertext, ad)``: the plaintext, or ``InvalidTag``;
* ``open_frame(nonce, frame, start)``: ``open`` of ``frame[start:]`` with
  ``frame[:start]`` as the AD (a channel's frame, its header read in place);
* ``seal_run(nonces, plaintexts, ads)``: ``ad + seal(...)`` of each
  triple, in one call (a sender's burst: the per-call lookups once, not per
  datagram; the channel's frame is its clear header, the *ad*, then the
  ciphertext, so each comes out whole in one copy, not two).

*nonce* is 12 bytes, *ad* and the texts bytes (the caller, our own channel,
passes them right: only the lengths that come from the network are checked
here). :class:`KeyedAead` does it with the backend's own functions (the
pure-Python backend); :class:`LibcryptoKeyed` keeps two cipher contexts of
its own, one per direction, initialised once with the key, so that a call
only sets the nonce (``EVP_CipherInit_ex`` with the cipher and key left
NULL, which keeps them), and writes into a buffer allocated once. Its four
per-call functions come from a handle of their own on the same library,
without ``argtypes``: every argument is passed as a ctypes object, bytes,
None or a small int, which ctypes converts faster than through
``from_param`` (pointers as ``c_void_p`` objects, never as ints). An object
belongs to one thread (the network thread); a context in doubt after a
failure is set up again from scratch.
"""

import ctypes

from . import InvalidTag, TAG_SIZE

MAX_TEXT = 65535                  # the largest datagram's plaintext or ciphertext
EVP_CTRL_AEAD_GET_TAG = 0x10
EVP_CTRL_AEAD_SET_TAG = 0x11


class KeyedAead:
    """*backend*'s AEAD with *key* (32 bytes, checked by the caller) bound."""

    def __init__(self, backend, key):
        self._backend = backend
        self._key = key

    def seal(self, nonce, plaintext, ad):
        return self._backend._aead_encrypt(self._key, nonce, bytes(plaintext), ad)

    def seal_run(self, nonces, plaintexts, ads):
        return [a + self.seal(n, p, a) for n, p, a in zip(nonces, plaintexts, ads)]

    def open(self, nonce, ciphertext, ad):
        if len(ciphertext) < TAG_SIZE:
            raise InvalidTag("ciphertext is shorter than its %d-byte tag" % TAG_SIZE)
        return self._backend._aead_decrypt(self._key, nonce, bytes(ciphertext), ad)

    def open_frame(self, nonce, frame, start):
        """``open(nonce, frame[start:], frame[:start])``: a DATA frame whose
        header is the AD."""
        return self.open(nonce, frame[start:], bytes(frame[:start]))


class LibcryptoKeyed:
    """*key* bound into two libcrypto contexts (see the module docstring)."""

    def __init__(self, backend, key):
        self._backend = backend
        self._lib = backend._lib
        self._key = key
        self._out = ctypes.create_string_buffer(MAX_TEXT + TAG_SIZE)
        self._addr = ctypes.addressof(self._out)
        self._view = memoryview(self._out).cast("B")
        self._size = ctypes.c_int()
        self._size_ref = ctypes.byref(self._size)
        self._ends = {}                   # plaintext size: c_void_p to where its tag goes
        self._ctx = [None, None]          # decrypt, encrypt
        self._ctx[0] = self._context(0)
        self._ctx[1] = self._context(1)
        raw = ctypes.CDLL(backend.path)     # the same library: functions without argtypes
        self._init, self._update = raw.EVP_CipherInit_ex, raw.EVP_CipherUpdate
        self._final, self._ctrl = raw.EVP_CipherFinal_ex, raw.EVP_CIPHER_CTX_ctrl
        self._ctx_p = [ctypes.c_void_p(c) for c in self._ctx]

    def __del__(self):
        lib = getattr(self, "_lib", None)
        for ctx in getattr(self, "_ctx", ()):
            if ctx and lib is not None:
                lib.EVP_CIPHER_CTX_free(ctx)

    def _context(self, encrypt):
        lib = self._lib
        old = self._ctx[encrypt]
        if old:
            lib.EVP_CIPHER_CTX_free(old)
            self._ctx[encrypt] = None
        ctx = lib.EVP_CIPHER_CTX_new()
        if not ctx:
            raise MemoryError("EVP_CIPHER_CTX_new failed")
        if lib.EVP_CipherInit_ex(ctx, self._backend._cipher, None, self._key, None, encrypt) != 1:
            lib.EVP_CIPHER_CTX_free(ctx)
            lib.ERR_clear_error()
            raise RuntimeError("%s: EVP_CipherInit_ex failed" % self._backend.detail)
        return ctx

    def _failed(self, encrypt):
        self._lib.ERR_clear_error()
        self._ctx[encrypt] = self._context(encrypt)
        self._ctx_p[encrypt] = ctypes.c_void_p(self._ctx[encrypt])

    def seal(self, nonce, plaintext, ad):
        return self.seal_run((nonce,), (plaintext,), (ad,))[0][len(ad):]

    def seal_run(self, nonces, plaintexts, ads):
        ctx, size, update, init = self._ctx_p[1], self._size_ref, self._update, self._init
        final, ctrl, out, view = self._final, self._ctrl, self._out, self._view
        ends, sealed = self._ends, []
        for nonce, plaintext, ad in zip(nonces, plaintexts, ads):
            if type(plaintext) is not bytes:
                plaintext = bytes(plaintext)
            n = len(plaintext)
            end = ends.get(n)
            if end is None:
                end = self._end(n)
            if (init(ctx, None, None, None, nonce, 1) != 1
                    or update(ctx, None, size, ad, len(ad)) != 1
                    or (n and update(ctx, out, size, plaintext, n) != 1)
                    or final(ctx, end, size) != 1
                    or ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, TAG_SIZE, end) != 1):
                self._failed(1)
                raise RuntimeError("%s: ChaCha20-Poly1305 encryption failed" % self._backend.detail)
            sealed.append(ad + view[:n + TAG_SIZE])
        return sealed

    def _end(self, n):
        """The pointer to byte *n* of the buffer (where the tag goes), kept
        for the few sizes a transfer uses."""
        if n > MAX_TEXT:
            raise ValueError("plaintext longer than %d bytes" % MAX_TEXT)
        if len(self._ends) >= 16:
            self._ends.clear()
        end = self._ends[n] = ctypes.c_void_p(self._addr + n)
        return end

    def open(self, nonce, ciphertext, ad):
        return self.open_frame(nonce, ad + ciphertext, len(ad))

    def open_frame(self, nonce, frame, start):
        """``open(nonce, frame[start:], frame[:start])``, the header read in
        place (ctypes passes *frame*'s first *start* bytes as the AD); the
        tag's pointer is cached per size, as for seal."""
        if type(frame) is not bytes:
            frame = bytes(frame)
        n = len(frame) - start - TAG_SIZE
        if n < 0 or n > MAX_TEXT:
            raise InvalidTag("ciphertext of %d bytes cannot be valid" % (len(frame) - start))
        end = self._ends.get(n) or self._end(n)
        ctx, size, update = self._ctx_p[0], self._size_ref, self._update
        if (self._init(ctx, None, None, None, nonce, 0) != 1
                or self._ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, TAG_SIZE, frame[-TAG_SIZE:]) != 1
                or update(ctx, None, size, frame, start) != 1
                or (n and update(ctx, self._out, size, frame[start:], n) != 1)):
            self._failed(0)
            raise RuntimeError("%s: ChaCha20-Poly1305 decryption failed" % self._backend.detail)
        if self._final(ctx, end, size) != 1:
            self._failed(0)
            raise InvalidTag("ChaCha20-Poly1305 authentication failed")
        return self._out[:n]            # a c_char array's slice: bytes, faster than string_at
