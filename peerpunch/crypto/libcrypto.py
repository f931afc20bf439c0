"""X25519 and ChaCha20-Poly1305 through ctypes on OpenSSL's libcrypto.

Theory of operation
-------------------
Which library: the libcrypto that Python's own ``_ssl`` module already
loaded, so no second copy of OpenSSL enters the process. It is found by
listing what the process has mapped after ``import _ssl``:
/proc/self/maps on Linux, the dyld image list on macOS, the directory of
_ssl.pyd on Windows. If _ssl is missing or links OpenSSL statically,
``ctypes.util.find_library("crypto")`` is the fallback. Either way the file
name must carry a version (libcrypto.so.3, libcrypto.3.dylib,
libcrypto-3-x64.dll): an unversioned libcrypto.dylib is never opened
(macOS aborts the process for it), nor a bare libcrypto.so.

What it can do is decided by the symbols it exports (EVP_PKEY_new_raw_
private_key, EVP_chacha20_poly1305, ...), never by its version string,
and then proven by a known-answer self-test (RFC 7748 §5.2 and §6.1,
RFC 8439 §2.8.2 including a forged tag that must be refused). Any failure
makes the backend unavailable, with a one-line reason.

Every function gets argtypes and restype: pointers are c_void_p, or ctypes
would cut them to 32 bits. Every OpenSSL object is freed on every path; the
OpenSSL error queue is cleared after a failure so it cannot leak into the
``ssl`` module. Cipher contexts are reused through a pool (a list; pop and
append are atomic), so a call costs no allocation and threads never share
a context. Tags are checked by OpenSSL itself (EVP_CTRL_AEAD_SET_TAG, then
EVP_CipherFinal_ex, which compares in constant time).
"""

import ctypes
import ctypes.util
import glob
import os
import re
import sys

from . import KEY_SIZE, Backend, InvalidTag, TAG_SIZE, _sized


def _sized_key(key):
    return _sized(key, KEY_SIZE, "key")

EVP_PKEY_X25519 = 1034          # NID_X25519
EVP_CTRL_AEAD_GET_TAG = 0x10
EVP_CTRL_AEAD_SET_TAG = 0x11

_VERSIONED = re.compile(
    r"^libcrypto(\.so(\.\d+)+|(\.\d+)+\.dylib|-\d[\w-]*\.dll)$", re.IGNORECASE)

_P, _INT, _SIZE_T, _BUF = ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t, ctypes.c_char_p
_SIGNATURES = {         # name: (restype, argtypes)
    "EVP_CIPHER_CTX_new": (_P, []),
    "EVP_CIPHER_CTX_free": (None, [_P]),
    "EVP_chacha20_poly1305": (_P, []),
    "EVP_CipherInit_ex": (_INT, [_P, _P, _P, _BUF, _BUF, _INT]),
    "EVP_CipherUpdate": (_INT, [_P, _P, _P, _BUF, _INT]),
    "EVP_CipherFinal_ex": (_INT, [_P, _P, _P]),
    "EVP_CIPHER_CTX_ctrl": (_INT, [_P, _INT, _INT, _P]),
    "EVP_PKEY_new_raw_private_key": (_P, [_INT, _P, _BUF, _SIZE_T]),
    "EVP_PKEY_new_raw_public_key": (_P, [_INT, _P, _BUF, _SIZE_T]),
    "EVP_PKEY_get_raw_public_key": (_INT, [_P, _P, _P]),
    "EVP_PKEY_free": (None, [_P]),
    "EVP_PKEY_CTX_new": (_P, [_P, _P]),
    "EVP_PKEY_CTX_free": (None, [_P]),
    "EVP_PKEY_derive_init": (_INT, [_P]),
    "EVP_PKEY_derive_set_peer": (_INT, [_P, _P]),
    "EVP_PKEY_derive": (_INT, [_P, _P, _P]),
    "ERR_clear_error": (None, []),
}
_VERSION_FUNCTIONS = ("OpenSSL_version", "SSLeay_version")     # 1.1.0+, older


# --- Finding the library ---------------------------------------------------------

def _mapped_by_ssl():
    """Paths of the libcrypto images the process holds after importing _ssl."""
    try:
        import _ssl
    except ImportError:
        return []
    if os.path.exists("/proc/self/maps"):
        images = _proc_maps()
    elif sys.platform == "darwin":
        images = _dyld_images()
    elif os.name == "nt":
        images = glob.glob(os.path.join(os.path.dirname(_ssl.__file__), "libcrypto-*.dll"))
    else:
        images = []
    return [path for path in images if os.path.basename(path).lower().startswith("libcrypto")]


def _proc_maps():
    paths = []
    with open("/proc/self/maps") as maps:
        for line in maps:
            fields = line.split(None, 5)
            if len(fields) == 6 and fields[5].startswith("/"):
                path = fields[5].rstrip("\n")
                path = path[:-len(" (deleted)")] if path.endswith(" (deleted)") else path
                if path not in paths:
                    paths.append(path)
    return paths


def _dyld_images():
    libc = ctypes.CDLL(None)
    count, name = libc._dyld_image_count, libc._dyld_get_image_name
    count.restype, count.argtypes = ctypes.c_uint32, []
    name.restype, name.argtypes = ctypes.c_char_p, [ctypes.c_uint32]
    return [os.fsdecode(name(i)) for i in range(count()) if name(i)]


def _found_by_name():
    """find_library's answer, followed through symlinks to a versioned file if it can be."""
    found = ctypes.util.find_library("crypto")
    if not found:
        return []
    real = os.path.realpath(found) if os.path.isabs(found) else found
    return [real]


def find_libcrypto():
    """(path, how) of the libcrypto to use; RuntimeError (one line) if there is none."""
    rejected = []
    for how, candidates in (("loaded by _ssl", _mapped_by_ssl), ("find_library", _found_by_name)):
        for path in candidates():
            if _VERSIONED.match(os.path.basename(path)):
                return path, how
            rejected.append(path)
    if rejected:
        raise RuntimeError("no versioned libcrypto (refusing unversioned %s)" % ", ".join(rejected))
    raise RuntimeError("no libcrypto found (_ssl links none and find_library('crypto') found none)")


def _bind(path):
    """The CDLL at path with argtypes/restype set on every function used."""
    try:
        lib = ctypes.CDLL(path)
    except OSError as exc:
        raise RuntimeError("cannot load %s: %s" % (path, exc))
    missing = [name for name in _SIGNATURES if not hasattr(lib, name)]
    if missing:
        raise RuntimeError("%s lacks %s (needs OpenSSL 1.1.1 or later)" % (
            os.path.basename(path), ", ".join(missing)))
    for name, (restype, argtypes) in _SIGNATURES.items():
        function = getattr(lib, name)
        function.restype, function.argtypes = restype, argtypes
    return lib


def _version_text(lib):
    for name in _VERSION_FUNCTIONS:
        if hasattr(lib, name):
            function = getattr(lib, name)
            function.restype, function.argtypes = ctypes.c_char_p, [ctypes.c_int]
            text = (function(0) or b"").decode("ascii", "replace").split()
            return " ".join(text[:2]) or "libcrypto"
    return "libcrypto"


# --- The backend ------------------------------------------------------------------

class LibcryptoBackend(Backend):
    """X25519 and ChaCha20-Poly1305 computed by libcrypto; safe to share between threads."""

    name = "libcrypto"

    @classmethod
    def load(cls):
        """Find, bind and self-test libcrypto; RuntimeError (one line) if any step fails."""
        path, how = find_libcrypto()
        backend = cls(_bind(path), path, how)
        backend.self_test()
        return backend

    def __init__(self, lib, path, how):
        self.path = path
        self.found_by = how
        self.detail = "%s (%s)" % (_version_text(lib), os.path.basename(path))
        self._lib = lib
        self._cipher = lib.EVP_chacha20_poly1305()
        self._contexts = []         # idle EVP_CIPHER_CTX pointers, initialised with the cipher
        if not self._cipher:
            raise RuntimeError("EVP_chacha20_poly1305() returned NULL")

    def __del__(self):
        contexts, self._contexts = getattr(self, "_contexts", []), []
        for ctx in contexts:
            self._lib.EVP_CIPHER_CTX_free(ctx)

    def self_test(self):
        """Known-answer test; RuntimeError naming the first vector that fails."""
        try:
            failed = _first_failure(self)
        except Exception as exc:        # a crash is a failure too, not a reason to crash
            failed = "%s: %s" % (type(exc).__name__, exc)
        if failed:
            raise RuntimeError("%s self-test failed: %s" % (self.detail, failed))

    # X25519 ------------------------------------------------------------------------

    def _x25519(self, private, public):
        lib = self._lib
        key = lib.EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, None, private, 32)
        peer = lib.EVP_PKEY_new_raw_public_key(EVP_PKEY_X25519, None, public, 32)
        pctx = lib.EVP_PKEY_CTX_new(key, None) if key else None
        try:
            if not (key and peer and pctx) or lib.EVP_PKEY_derive_init(pctx) != 1:
                raise self._error("cannot set up X25519")
            shared = ctypes.create_string_buffer(32)
            size = ctypes.c_size_t(32)
            if (lib.EVP_PKEY_derive_set_peer(pctx, peer) != 1
                    or lib.EVP_PKEY_derive(pctx, shared, ctypes.byref(size)) != 1
                    or size.value != 32):
                lib.ERR_clear_error()       # OpenSSL refuses an all-zero result
                return bytes(32)
            return shared.raw
        finally:
            lib.EVP_PKEY_CTX_free(pctx)
            lib.EVP_PKEY_free(peer)
            lib.EVP_PKEY_free(key)

    def _x25519_public(self, private):
        lib = self._lib
        key = lib.EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, None, private, 32)
        try:
            public = ctypes.create_string_buffer(32)
            size = ctypes.c_size_t(32)
            if not key or lib.EVP_PKEY_get_raw_public_key(key, public, ctypes.byref(size)) != 1:
                raise self._error("cannot derive an X25519 public key")
            return public.raw
        finally:
            lib.EVP_PKEY_free(key)

    # ChaCha20-Poly1305 -------------------------------------------------------------

    def keyed(self, key, layout="header"):
        from .keyed import libcrypto_keyed
        return libcrypto_keyed(self, bytes(_sized_key(key)), layout)

    def _aead_encrypt(self, key, nonce, plaintext, ad):
        lib = self._lib
        n = len(plaintext)
        out = ctypes.create_string_buffer(n + TAG_SIZE)
        end = ctypes.addressof(out) + n
        size = ctypes.c_int()
        ctx = self._start(key, nonce, 1)
        if ((ad and lib.EVP_CipherUpdate(ctx, None, ctypes.byref(size), ad, len(ad)) != 1)
                or (n and lib.EVP_CipherUpdate(ctx, out, ctypes.byref(size), plaintext, n) != 1)
                or lib.EVP_CipherFinal_ex(ctx, end, ctypes.byref(size)) != 1
                or lib.EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, TAG_SIZE, end) != 1):
            self._discard(ctx)
            raise self._error("ChaCha20-Poly1305 encryption failed")
        self._contexts.append(ctx)
        return out.raw

    def _aead_decrypt(self, key, nonce, ciphertext, ad):
        lib = self._lib
        n = len(ciphertext) - TAG_SIZE
        out = ctypes.create_string_buffer(max(n, 1))
        size = ctypes.c_int()
        ctx = self._start(key, nonce, 0)
        if ((lib.EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, TAG_SIZE, ciphertext[n:]) != 1)
                or (ad and lib.EVP_CipherUpdate(ctx, None, ctypes.byref(size), ad, len(ad)) != 1)
                or (n and lib.EVP_CipherUpdate(ctx, out, ctypes.byref(size), ciphertext, n) != 1)):
            self._discard(ctx)
            raise self._error("ChaCha20-Poly1305 decryption failed")
        if lib.EVP_CipherFinal_ex(ctx, ctypes.addressof(out) + n, ctypes.byref(size)) != 1:
            self._discard(ctx)
            ctypes.memset(out, 0, n)
            raise InvalidTag("ChaCha20-Poly1305 authentication failed")
        self._contexts.append(ctx)
        return out.raw[:n]

    def _start(self, key, nonce, encrypt):
        """A cipher context set up for (key, nonce, direction), from the pool or new."""
        lib = self._lib
        try:
            ctx, cipher = self._contexts.pop(), None     # already holds the cipher
        except IndexError:
            ctx, cipher = lib.EVP_CIPHER_CTX_new(), self._cipher
            if not ctx:
                raise MemoryError("EVP_CIPHER_CTX_new failed")
        if lib.EVP_CipherInit_ex(ctx, cipher, None, key, nonce, encrypt) != 1:
            self._discard(ctx)
            raise self._error("EVP_CipherInit_ex failed")
        return ctx

    def _discard(self, ctx):
        """Free a context whose state is in doubt instead of returning it to the pool."""
        self._lib.EVP_CIPHER_CTX_free(ctx)
        self._lib.ERR_clear_error()

    def _error(self, what):
        self._lib.ERR_clear_error()
        return RuntimeError("%s: %s" % (self.detail, what))


# --- Known-answer self-test ----------------------------------------------------------

_KAT_X25519 = (     # RFC 7748 §5.2, first vector: scalar, u, output
    "a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4",
    "e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c",
    "c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552")
_KAT_PUBLIC = (     # RFC 7748 §6.1: Alice's private and public key
    "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a",
    "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
_KAT_AEAD = (       # RFC 8439 §2.8.2: key, nonce, ad, plaintext, ciphertext || tag
    "808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f",
    "070000004041424344454647",
    "50515253c0c1c2c3c4c5c6c7",
    b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for "
    b"the future, sunscreen would be it.",
    "d31a8d34648e60db7b86afbc53ef7ec2a4aded51296e08fea9e2b5a736ee62d63dbea45e8ca9671282fafb69"
    "da92728b1a71de0a9e060b2905d6a5b67ecd3b3692ddbd7f2d778b8c9803aee328091b58fab324e4fad67594"
    "5585808b4831d7bc3ff4def08e4b7a9de576d26586cec64b6116"
    "1ae10b594f09e26a7e902ecbd0600691")


def _first_failure(backend):
    """The name of the first known-answer check backend fails, or None."""
    scalar, u, shared = (bytes.fromhex(h) for h in _KAT_X25519)
    if backend.x25519(scalar, u) != shared:
        return "RFC 7748 §5.2 X25519 vector"
    private, public = (bytes.fromhex(h) for h in _KAT_PUBLIC)
    if backend.x25519_public(private) != public:
        return "RFC 7748 §6.1 public key"
    key, nonce, ad = (bytes.fromhex(h) for h in _KAT_AEAD[:3])
    plaintext, sealed = _KAT_AEAD[3], bytes.fromhex(_KAT_AEAD[4])
    if backend.aead_encrypt(key, nonce, plaintext, ad) != sealed:
        return "RFC 8439 §2.8.2 AEAD encryption"
    if backend.aead_decrypt(key, nonce, sealed, ad) != plaintext:
        return "RFC 8439 §2.8.2 AEAD decryption"
    try:
        backend.aead_decrypt(key, nonce, sealed[:-1] + bytes([sealed[-1] ^ 1]), ad)
    except InvalidTag:
        return None
    return "RFC 8439 §2.8.2 AEAD decryption accepted a forged tag"
