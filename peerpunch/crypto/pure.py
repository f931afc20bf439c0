"""X25519 and ChaCha20-Poly1305 in pure Python: the backend that is always there.

Theory of operation
-------------------
* **X25519** (RFC 7748 §5): the scalar is clamped, the top bit of u is
  masked, and a Montgomery ladder of 255 steps runs on projective (X, Z)
  coordinates with Python ints modulo p = 2^255 - 19. The conditional swap
  is arithmetic (XOR with a 0 or all-ones mask), never a branch on a key
  bit. Python's ints are not constant-time, so this is "constant-ish": the
  structure leaks nothing, the big-int arithmetic underneath may.
* **ChaCha20** (RFC 8439 §2.3-2.4) computes all the blocks of a message at
  once: word i of every block lives in one big int, one 64-bit lane per
  block (the value in the low 32 bits, the high 32 bits a guard that
  catches carries and rotation spill and is masked off). So one Python
  addition, XOR or rotation advances every block, and a 64 KiB message
  costs about as many bytecodes as a single block. The lanes are then
  interleaved back into block order with strided array assignments.
* **Poly1305** (§2.5) is plain int arithmetic modulo 2^130 - 5, four blocks
  per step (Horner's rule with r^4, r^3, r^2, r) to save reductions.
* **AEAD** (§2.8): the one-time Poly1305 key is block 0 of the keystream,
  the message is encrypted from block 1, and the tag covers
  ad | pad | ciphertext | pad | len(ad) | len(ciphertext). Decryption
  checks the tag with hmac.compare_digest before decrypting.

Functions here take bytes and trust their lengths; PythonBackend is reached
through the checks in peerpunch.crypto.Backend. Nothing here keeps state
between calls, so any number of threads may use it at once.
"""

import functools
import hmac
import struct
from array import array

from . import Backend, InvalidTag, TAG_SIZE

# --- X25519 (RFC 7748) -------------------------------------------------------

P25519 = 2 ** 255 - 19
_A24 = 121665           # (486662 - 2) / 4
_U_MASK = (1 << 255) - 1
_BASE_POINT = (9).to_bytes(32, "little")


def clamp_scalar(scalar):
    """The integer a 32-byte X25519 scalar stands for (RFC 7748 decodeScalar25519)."""
    k = int.from_bytes(scalar, "little")
    return (k & ~7 & ((1 << 255) - 1)) | (1 << 254)


def x25519(scalar, u_bytes):
    """X25519(scalar, u) as 32 bytes; all zero for a low-order u (caller checks)."""
    k = clamp_scalar(scalar)
    x1 = (int.from_bytes(u_bytes, "little") & _U_MASK) % P25519
    x2, z2, x3, z3 = 1, 0, x1, 1
    swap = 0
    for t in range(254, -1, -1):
        bit = (k >> t) & 1
        mask = -(swap ^ bit)                # 0 or all ones
        swap = bit
        d = mask & (x2 ^ x3)
        x2 ^= d
        x3 ^= d
        d = mask & (z2 ^ z3)
        z2 ^= d
        z3 ^= d
        a = x2 + z2
        aa = a * a % P25519
        b = x2 - z2
        bb = b * b % P25519
        e = aa - bb
        da = (x3 - z3) * a % P25519
        cb = (x3 + z3) * b % P25519
        s = da + cb
        x3 = s * s % P25519
        s = da - cb
        z3 = x1 * (s * s % P25519) % P25519
        x2 = aa * bb % P25519
        z2 = e * (aa + _A24 * e) % P25519
    mask = -swap
    d = mask & (x2 ^ x3)
    x2 ^= d
    d = mask & (z2 ^ z3)
    z2 ^= d
    return (x2 * pow(z2, P25519 - 2, P25519) % P25519).to_bytes(32, "little")


# --- ChaCha20 (RFC 8439 §2.3, §2.4) -------------------------------------------

_SIGMA = (0x61707865, 0x3320646E, 0x79622D32, 0x6B206574)
_CHUNK_BLOCKS = 1024            # blocks computed together (64 KiB of keystream)


@functools.lru_cache(maxsize=64)
def _lanes(count):
    """(ones, mask, ramp) for `count` 64-bit lanes: 1, 2^32-1 and j in lane j."""
    ones = int.from_bytes(b"\x01\x00\x00\x00\x00\x00\x00\x00" * count, "little")
    ramp = int.from_bytes(struct.pack("<%dQ" % count, *range(count)), "little")
    return ones, ones * 0xFFFFFFFF, ramp


def _blocks(key, counter, nonce, count):
    """`count` keystream blocks from block `counter` on, as count*64 bytes."""
    ones, m, ramp = _lanes(count)
    s = [w * ones for w in _SIGMA + struct.unpack("<8I", key)]
    s.append((counter * ones + ramp) & m)       # the 32-bit block counter wraps
    s.extend(w * ones for w in struct.unpack("<3I", nonce))
    x0, x1, x2, x3, x4, x5, x6, x7, x8, x9, x10, x11, x12, x13, x14, x15 = s
    for _ in range(10):
        # Column round: QUARTERROUND(0,4,8,12) (1,5,9,13) (2,6,10,14) (3,7,11,15).
        x0 = (x0 + x4) & m; x12 ^= x0; x12 = ((x12 << 16) | (x12 >> 16)) & m
        x8 = (x8 + x12) & m; x4 ^= x8; x4 = ((x4 << 12) | (x4 >> 20)) & m
        x0 = (x0 + x4) & m; x12 ^= x0; x12 = ((x12 << 8) | (x12 >> 24)) & m
        x8 = (x8 + x12) & m; x4 ^= x8; x4 = ((x4 << 7) | (x4 >> 25)) & m
        x1 = (x1 + x5) & m; x13 ^= x1; x13 = ((x13 << 16) | (x13 >> 16)) & m
        x9 = (x9 + x13) & m; x5 ^= x9; x5 = ((x5 << 12) | (x5 >> 20)) & m
        x1 = (x1 + x5) & m; x13 ^= x1; x13 = ((x13 << 8) | (x13 >> 24)) & m
        x9 = (x9 + x13) & m; x5 ^= x9; x5 = ((x5 << 7) | (x5 >> 25)) & m
        x2 = (x2 + x6) & m; x14 ^= x2; x14 = ((x14 << 16) | (x14 >> 16)) & m
        x10 = (x10 + x14) & m; x6 ^= x10; x6 = ((x6 << 12) | (x6 >> 20)) & m
        x2 = (x2 + x6) & m; x14 ^= x2; x14 = ((x14 << 8) | (x14 >> 24)) & m
        x10 = (x10 + x14) & m; x6 ^= x10; x6 = ((x6 << 7) | (x6 >> 25)) & m
        x3 = (x3 + x7) & m; x15 ^= x3; x15 = ((x15 << 16) | (x15 >> 16)) & m
        x11 = (x11 + x15) & m; x7 ^= x11; x7 = ((x7 << 12) | (x7 >> 20)) & m
        x3 = (x3 + x7) & m; x15 ^= x3; x15 = ((x15 << 8) | (x15 >> 24)) & m
        x11 = (x11 + x15) & m; x7 ^= x11; x7 = ((x7 << 7) | (x7 >> 25)) & m
        # Diagonal round: QUARTERROUND(0,5,10,15) (1,6,11,12) (2,7,8,13) (3,4,9,14).
        x0 = (x0 + x5) & m; x15 ^= x0; x15 = ((x15 << 16) | (x15 >> 16)) & m
        x10 = (x10 + x15) & m; x5 ^= x10; x5 = ((x5 << 12) | (x5 >> 20)) & m
        x0 = (x0 + x5) & m; x15 ^= x0; x15 = ((x15 << 8) | (x15 >> 24)) & m
        x10 = (x10 + x15) & m; x5 ^= x10; x5 = ((x5 << 7) | (x5 >> 25)) & m
        x1 = (x1 + x6) & m; x12 ^= x1; x12 = ((x12 << 16) | (x12 >> 16)) & m
        x11 = (x11 + x12) & m; x6 ^= x11; x6 = ((x6 << 12) | (x6 >> 20)) & m
        x1 = (x1 + x6) & m; x12 ^= x1; x12 = ((x12 << 8) | (x12 >> 24)) & m
        x11 = (x11 + x12) & m; x6 ^= x11; x6 = ((x6 << 7) | (x6 >> 25)) & m
        x2 = (x2 + x7) & m; x13 ^= x2; x13 = ((x13 << 16) | (x13 >> 16)) & m
        x8 = (x8 + x13) & m; x7 ^= x8; x7 = ((x7 << 12) | (x7 >> 20)) & m
        x2 = (x2 + x7) & m; x13 ^= x2; x13 = ((x13 << 8) | (x13 >> 24)) & m
        x8 = (x8 + x13) & m; x7 ^= x8; x7 = ((x7 << 7) | (x7 >> 25)) & m
        x3 = (x3 + x4) & m; x14 ^= x3; x14 = ((x14 << 16) | (x14 >> 16)) & m
        x9 = (x9 + x14) & m; x4 ^= x9; x4 = ((x4 << 12) | (x4 >> 20)) & m
        x3 = (x3 + x4) & m; x14 ^= x3; x14 = ((x14 << 8) | (x14 >> 24)) & m
        x9 = (x9 + x14) & m; x4 ^= x9; x4 = ((x4 << 7) | (x4 >> 25)) & m
    words = (x0, x1, x2, x3, x4, x5, x6, x7, x8, x9, x10, x11, x12, x13, x14, x15)
    return _interleave([(w + i) & m for w, i in zip(words, s)], count)


def _interleave(words, count):
    """Serialize lane-packed words into block order: block j is word 0..15 of lane j."""
    out = array("Q", bytes(64 * count))
    for i in range(8):
        pair = words[2 * i] | (words[2 * i + 1] << 32)     # two words = 8 bytes a lane
        out[i::8] = array("Q", pair.to_bytes(8 * count, "little"))
    return out.tobytes()


def chacha20_block(key, counter, nonce):
    """The 64-byte ChaCha20 block for (key, counter, nonce) (RFC 8439 §2.3)."""
    return _blocks(key, counter, nonce, 1)


def chacha20_xor(key, counter, nonce, data):
    """ChaCha20 encryption (= decryption) of data from block `counter` (§2.4)."""
    parts = []
    step = 64 * _CHUNK_BLOCKS
    for start in range(0, len(data), step):
        chunk = data[start:start + step]
        stream = _blocks(key, counter + start // 64, nonce, (len(chunk) + 63) // 64)
        parts.append(_xor(chunk, stream[:len(chunk)]))
    return b"".join(parts)


def _xor(a, b):
    n = len(a)
    return (int.from_bytes(a, "little") ^ int.from_bytes(b, "little")).to_bytes(n, "little")


# --- Poly1305 (RFC 8439 §2.5, §2.6) --------------------------------------------

P1305 = (1 << 130) - 5
_R_CLAMP = 0x0FFFFFFC0FFFFFFC0FFFFFFC0FFFFFFF
_HIBIT = 1 << 128


def _poly1305_blocks(r, acc, data):
    """Absorb whole 16-byte blocks of data into accumulator acc."""
    r2 = r * r % P1305
    r3 = r2 * r % P1305
    r4 = r3 * r % P1305
    nblocks = len(data) // 16
    words = struct.unpack("<%dQ" % (2 * nblocks), data)
    m = [lo | (hi << 64) | _HIBIT for lo, hi in zip(words[0::2], words[1::2])]
    quad = nblocks - nblocks % 4
    for i in range(0, quad, 4):
        acc = ((acc + m[i]) * r4 + m[i + 1] * r3 + m[i + 2] * r2 + m[i + 3] * r) % P1305
    for i in range(quad, nblocks):
        acc = (acc + m[i]) * r % P1305
    return acc


def poly1305_mac(key, message):
    """The 16-byte Poly1305 tag of message under a 32-byte one-time key (§2.5)."""
    r = int.from_bytes(key[:16], "little") & _R_CLAMP
    whole = len(message) - len(message) % 16
    acc = _poly1305_blocks(r, 0, message[:whole])
    if whole < len(message):
        last = message[whole:] + b"\x01"
        acc = (acc + int.from_bytes(last, "little")) * r % P1305
    acc += int.from_bytes(key[16:], "little")
    return (acc & ((1 << 128) - 1)).to_bytes(16, "little")


def poly1305_key_gen(key, nonce):
    """The one-time Poly1305 key for (key, nonce): ChaCha20 block 0, first half (§2.6)."""
    return chacha20_block(key, 0, nonce)[:32]


# --- AEAD_CHACHA20_POLY1305 (RFC 8439 §2.8) ------------------------------------

def _pad16(n):
    return bytes(-n % 16)


def _tag(otk, ad, ciphertext):
    mac_data = b"".join((ad, _pad16(len(ad)), ciphertext, _pad16(len(ciphertext)),
                         struct.pack("<QQ", len(ad), len(ciphertext))))
    return poly1305_mac(otk, mac_data)


def _keystream_and_otk(key, nonce, length):
    """(one-time Poly1305 key, keystream for `length` bytes from block 1)."""
    first = min(length, 64 * (_CHUNK_BLOCKS - 1))
    stream = _blocks(key, 0, nonce, 1 + (first + 63) // 64)
    return stream[:32], stream[64:64 + first]


def aead_encrypt(key, nonce, plaintext, ad):
    """ciphertext || tag (§2.8)."""
    otk, stream = _keystream_and_otk(key, nonce, len(plaintext))
    n = len(stream)
    ciphertext = _xor(plaintext[:n], stream)
    if n < len(plaintext):
        ciphertext += chacha20_xor(key, 1 + n // 64, nonce, plaintext[n:])
    return ciphertext + _tag(otk, ad, ciphertext)


def aead_decrypt(key, nonce, sealed, ad):
    """The plaintext of ciphertext || tag, or InvalidTag (§2.8)."""
    ciphertext, tag = sealed[:-TAG_SIZE], sealed[-TAG_SIZE:]
    otk, stream = _keystream_and_otk(key, nonce, len(ciphertext))
    if not hmac.compare_digest(_tag(otk, ad, ciphertext), tag):
        raise InvalidTag("ChaCha20-Poly1305 authentication failed")
    n = len(stream)
    plaintext = _xor(ciphertext[:n], stream)
    if n < len(ciphertext):
        plaintext += chacha20_xor(key, 1 + n // 64, nonce, ciphertext[n:])
    return plaintext


class PythonBackend(Backend):
    """The pure-Python backend. Stateless: safe to share between threads."""

    name = "python"
    detail = "pure Python"

    def _x25519(self, private, public):
        return x25519(private, public)

    def _x25519_public(self, private):
        return x25519(private, _BASE_POINT)

    def _aead_encrypt(self, key, nonce, plaintext, ad):
        return aead_encrypt(key, nonce, plaintext, ad)

    def _aead_decrypt(self, key, nonce, ciphertext, ad):
        return aead_decrypt(key, nonce, ciphertext, ad)
