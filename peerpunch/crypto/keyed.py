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
  ciphertext, so each comes out whole in one copy, not two);
* ``seal_counted(counters, plaintexts, ads)`` and ``open_counted(counter,
  frame, start)``: ``seal_run`` and ``open_frame`` with Noise's nonces
  (4 zero bytes, the counter little-endian) given as their counters, which
  the record layout's TLS mode takes as they are.

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

Two layouts of associated data
------------------------------
A frame is a clear *head* (the secure channel's 9-byte header), then the
ciphertext and tag. ``layout`` says what the AEAD authenticates besides:

* ``HEADER_AD`` (``backend.keyed(key)``): the head itself (the channel's
  first format, ``noise1``);
* ``RECORD_AD`` (``backend.keyed(key, RECORD_AD)``): 13 bytes built from
  the nonce and the head, never sent: the nonce's last 8 bytes (the Noise
  counter, little-endian), the head's first byte (the frame type), 0x00
  0x02 (this layout's number), the plaintext's length (2 bytes,
  big-endian). It authenticates what the head says (its counter is the
  nonce's) and the length. The nonce's first 4 bytes must be zero (Noise's
  are).

The record layout is TLS 1.2's record AD with the RFC 7905 nonce
(sequence number XOR a fixed IV, here all zero), so libcrypto can do a
whole datagram in its TLS mode: ``EVP_CTRL_AEAD_TLS1_AAD`` with the 13 bytes,
then one ``EVP_Cipher`` that encrypts and appends the tag, or checks it
and decrypts: two calls through ctypes instead of five, about 2 us a
datagram less each way. :func:`record_mode_works` checks that mode once
per backend against the general path (known answers, a forged tag
refused); where it fails (another library, another version) the record
layout is computed with the five calls: the same bytes, slower.
"""

import ctypes
import struct

from . import InvalidTag, TAG_SIZE

MAX_TEXT = 65535                  # the largest datagram's plaintext or ciphertext
MAX_HEAD = 64                     # room before the text in the buffer (a frame's clear head)
EVP_CTRL_AEAD_GET_TAG = 0x10
EVP_CTRL_AEAD_SET_TAG = 0x11
EVP_CTRL_AEAD_TLS1_AAD = 0x16
TLS1_AAD_PAD = TAG_SIZE           # what that control returns: the tag's length
HEADER_AD, RECORD_AD = "header", "record"
LAYOUTS = (HEADER_AD, RECORD_AD)
RECORD_VERSION = 2
MAX_RECORD_TEXT = MAX_TEXT - TAG_SIZE   # the record's length field holds ciphertext + tag
_RECORD_LE = struct.Struct("<QBBBH")    # counter, type, 0, version, length (byte-swapped: BE)
_NONCE = struct.Struct("<4xQ")          # Noise's nonce of a counter
_ZERO4 = bytes(4)


def record_ad(nonce, kind, size):
    """The record layout's 13 bytes of associated data (module docstring)."""
    if nonce[:4] != _ZERO4:
        raise ValueError("the record layout needs a nonce whose first 4 bytes are zero")
    if not 0 <= size <= MAX_RECORD_TEXT:
        raise ValueError("a record's plaintext is at most %d bytes" % MAX_RECORD_TEXT)
    return _RECORD_LE.pack(_NONCE.unpack(nonce)[0], kind, 0, RECORD_VERSION, _swap16(size))


def _swap16(n):
    """*n*'s two bytes swapped: packed little-endian, it reads big-endian (the
    TLS mode's seal and open do it inline, a call a datagram saved)."""
    return (n >> 8) | (n & 0xFF) << 8


class _ByCounter:
    """``seal_counted``/``open_counted`` through ``seal_run``/``open_frame``,
    the counters made Noise's nonces (the TLS mode takes counters itself)."""

    def seal_counted(self, counters, plaintexts, ads):
        return self.seal_run(list(map(_NONCE.pack, counters)), plaintexts, ads)

    def open_counted(self, counter, frame, start):
        return self.open_frame(_NONCE.pack(counter), frame, start)


class KeyedAead(_ByCounter):
    """*backend*'s AEAD with *key* (32 bytes, checked by the caller) bound,
    associated data in *layout*."""

    def __init__(self, backend, key, layout=HEADER_AD):
        self._backend = backend
        self._key = key
        self._record = _layout(layout) == RECORD_AD

    def seal(self, nonce, plaintext, ad):
        plaintext = bytes(plaintext)
        if self._record:
            ad = record_ad(nonce, ad[0], len(plaintext))
        return self._backend._aead_encrypt(self._key, nonce, plaintext, ad)

    def seal_run(self, nonces, plaintexts, ads):
        return [a + self.seal(n, p, a) for n, p, a in zip(nonces, plaintexts, ads)]

    def open(self, nonce, ciphertext, ad):
        if len(ciphertext) < TAG_SIZE:
            raise InvalidTag("ciphertext is shorter than its %d-byte tag" % TAG_SIZE)
        if self._record:
            if len(ciphertext) - TAG_SIZE > MAX_RECORD_TEXT:
                raise InvalidTag("ciphertext of %d bytes cannot be valid" % len(ciphertext))
            ad = record_ad(nonce, ad[0], len(ciphertext) - TAG_SIZE)
        return self._backend._aead_decrypt(self._key, nonce, bytes(ciphertext), ad)

    def open_frame(self, nonce, frame, start):
        """``open(nonce, frame[start:], frame[:start])``: a DATA frame whose
        header is the AD."""
        return self.open(nonce, frame[start:], bytes(frame[:start]))


def _layout(layout):
    if layout not in LAYOUTS:
        raise ValueError("layout must be one of %s" % ", ".join(LAYOUTS))
    return layout


def libcrypto_keyed(backend, key, layout=HEADER_AD):
    """*key* bound for *backend* (a libcrypto one), associated data in
    *layout*: the record layout in libcrypto's TLS mode where
    :func:`record_mode_works`, else with the five calls."""
    if _layout(layout) == RECORD_AD and record_mode_works(backend):
        return TlsRecordKeyed(backend, key)
    return LibcryptoKeyed(backend, key, layout)


class LibcryptoKeyed(_ByCounter):
    """*key* bound into two libcrypto contexts (see the module docstring),
    associated data in *layout*, five calls a datagram."""

    _tls = False

    def __init__(self, backend, key, layout=HEADER_AD):
        self._backend = backend
        self._lib = backend._lib
        self._key = key
        self._record = _layout(layout) == RECORD_AD
        self._out = ctypes.create_string_buffer(MAX_HEAD + MAX_TEXT + TAG_SIZE)
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
        self._bind(raw)

    def _bind(self, raw):
        """Subclasses take more functions from *raw* here."""

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
        if lib.EVP_CipherInit_ex(ctx, self._backend._cipher, None, self._key, self._iv(),
                                 encrypt) != 1:
            lib.EVP_CIPHER_CTX_free(ctx)
            lib.ERR_clear_error()
            raise RuntimeError("%s: EVP_CipherInit_ex failed" % self._backend.detail)
        return ctx

    def _iv(self):
        return None                     # each call sets its nonce

    def _failed(self, encrypt):
        self._lib.ERR_clear_error()
        self._ctx[encrypt] = self._context(encrypt)
        self._ctx_p[encrypt] = ctypes.c_void_p(self._ctx[encrypt])

    def seal(self, nonce, plaintext, ad):
        return self.seal_run((nonce,), (plaintext,), (ad,))[0][len(ad):]

    def seal_run(self, nonces, plaintexts, ads):
        if self._record:
            plaintexts = [p if type(p) is bytes else bytes(p) for p in plaintexts]
            heads, ads = ads, [record_ad(n, a[0], len(p)) for n, p, a in
                               zip(nonces, plaintexts, ads)]
        else:
            heads = ads
        ctx, size, update, init = self._ctx_p[1], self._size_ref, self._update, self._init
        final, ctrl, out, view = self._final, self._ctrl, self._out, self._view
        ends, sealed = self._ends, []
        for nonce, plaintext, ad, head in zip(nonces, plaintexts, ads, heads):
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
            sealed.append(head + view[:n + TAG_SIZE])
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
        if n < 0 or n > (MAX_RECORD_TEXT if self._record else MAX_TEXT):
            raise InvalidTag("ciphertext of %d bytes cannot be valid" % (len(frame) - start))
        end = self._ends.get(n) or self._end(n)
        ad, na = (record_ad(nonce, frame[0], n), 13) if self._record else (frame, start)
        ctx, size, update = self._ctx_p[0], self._size_ref, self._update
        if (self._init(ctx, None, None, None, nonce, 0) != 1
                or self._ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, TAG_SIZE, frame[-TAG_SIZE:]) != 1
                or update(ctx, None, size, ad, na) != 1
                or (n and update(ctx, self._out, size, frame[start:], n) != 1)):
            self._failed(0)
            raise RuntimeError("%s: ChaCha20-Poly1305 decryption failed" % self._backend.detail)
        if self._final(ctx, end, size) != 1:
            self._failed(0)
            raise InvalidTag("ChaCha20-Poly1305 authentication failed")
        return self._out[:n]            # a c_char array's slice: bytes, faster than string_at


class TlsRecordKeyed(LibcryptoKeyed):
    """The record layout in libcrypto's TLS mode: two calls a datagram
    (the module docstring). Its contexts' fixed IV is zero, so the nonce is
    the record's counter."""

    _tls = True

    def __init__(self, backend, key):
        super().__init__(backend, key, RECORD_AD)

    def _bind(self, raw):
        self._cipher = raw.EVP_Cipher
        self._heads = {}                  # head length: c_void_p to where the text goes

    def _iv(self):
        return bytes(12)

    def _at(self, h):
        """The pointer to byte *h* of the buffer, where a frame's text starts
        after a head of *h* bytes."""
        if not 0 < h <= MAX_HEAD:
            raise ValueError("a head is 1 to %d bytes" % MAX_HEAD)
        at = self._heads[h] = ctypes.c_void_p(self._addr + h)
        return at

    def seal_run(self, nonces, plaintexts, heads):
        if any(nonce[:4] != _ZERO4 for nonce in nonces):
            raise ValueError("the record layout needs nonces whose first 4 bytes are zero")
        return self.seal_counted([_NONCE.unpack(n)[0] for n in nonces], plaintexts, heads)

    def seal_counted(self, counters, plaintexts, heads):
        ctx, ctrl, cipher = self._ctx_p[1], self._ctrl, self._cipher
        out, view, pack, sealed = self._out, self._view, _RECORD_LE.pack, []
        for counter, plaintext, head in zip(counters, plaintexts, heads):
            n, h = len(plaintext), len(head)
            at = self._heads.get(h) or self._at(h)
            if n > MAX_RECORD_TEXT:
                raise ValueError("a record's plaintext is at most %d bytes" % MAX_RECORD_TEXT)
            view[:h] = head
            view[h:h + n] = plaintext
            if (ctrl(ctx, EVP_CTRL_AEAD_TLS1_AAD, 13,
                     pack(counter, head[0], 0, RECORD_VERSION, (n >> 8) | (n & 0xFF) << 8))
                    != TLS1_AAD_PAD or cipher(ctx, at, at, n + TAG_SIZE) != n + TAG_SIZE):
                self._failed(1)
                raise RuntimeError("%s: ChaCha20-Poly1305 encryption failed" % self._backend.detail)
            sealed.append(out[:h + n + TAG_SIZE])
        return sealed

    def open_frame(self, nonce, frame, start):
        if nonce[:4] != _ZERO4:
            raise ValueError("the record layout needs a nonce whose first 4 bytes are zero")
        return self.open_counted(_NONCE.unpack(nonce)[0], frame, start)

    def open_counted(self, counter, frame, start):
        if type(frame) is not bytes:
            frame = bytes(frame)
        m = len(frame) - start                            # ciphertext and tag
        if m < TAG_SIZE or m > MAX_TEXT or start <= 0:
            if start <= 0:
                raise ValueError("a record needs a head")
            raise InvalidTag("ciphertext of %d bytes cannot be valid" % m)
        ctx, out = self._ctx_p[0], self._out
        if self._ctrl(ctx, EVP_CTRL_AEAD_TLS1_AAD, 13, _RECORD_LE.pack(
                counter, frame[0], 0, RECORD_VERSION, (m >> 8) | (m & 0xFF) << 8)) != TLS1_AAD_PAD:
            self._failed(0)
            raise RuntimeError("%s: ChaCha20-Poly1305 decryption failed" % self._backend.detail)
        done = self._cipher(ctx, out, frame[start:], m)
        if done != m - TAG_SIZE and done != m:  # OpenSSL 3 counts the tag out, 1.1.1 in; -1: no
            raise InvalidTag("ChaCha20-Poly1305 authentication failed")
        return out[:m - TAG_SIZE]


def record_mode_works(backend):
    """True if *backend*'s libcrypto does the record layout in its TLS mode
    exactly as the general path does (once per backend, then cached)."""
    known = getattr(backend, "_record_mode", None)
    if known is None:
        try:
            known = _record_mode_check(backend)
        except Exception:               # any failure (a missing symbol too) means no
            known = False
        backend._record_mode = known
    return known


def _record_mode_check(backend):
    key = bytes(range(32))
    fast = TlsRecordKeyed(backend, key)
    slow = LibcryptoKeyed(backend, key, RECORD_AD)
    for size in (0, 1, 15, 16, 17, 63, 64, 65, 255, 256, 1400, 9000, MAX_RECORD_TEXT):
        nonce = _ZERO4 + (size * 7919 + 3).to_bytes(8, "little")
        head = bytes((0xE4,)) + size.to_bytes(8, "big")
        plaintext = (bytes(range(size % 251, 256)) * 260)[:size]
        frame = fast.seal_run([nonce], [plaintext], [head])[0]
        if frame != slow.seal_run([nonce], [plaintext], [head])[0]:
            return False
        if fast.open_frame(nonce, frame, 9) != plaintext or slow.open_frame(nonce, frame, 9) \
                != plaintext:
            return False
        forged = frame[:-1] + bytes((frame[-1] ^ 1,))
        for opener in (fast, slow):
            try:
                opener.open_frame(nonce, forged, 9)
                return False
            except InvalidTag:
                pass
        if fast.open_frame(nonce, frame, 9) != plaintext:    # a refusal leaves it working
            return False
    return True
