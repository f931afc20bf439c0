"""Crypto primitives: RFC test vectors on every backend, and the backends against each other.

The vectors are transcribed in tests/data/crypto/*.json, each record naming
its RFC section. Tests taking the ``backend`` fixture run once per backend;
libcrypto is skipped when it cannot load, except with CI=true, where that
is a failure. Primitives libcrypto does not expose on their own (the raw
ChaCha20 block and Poly1305) are tested on the pure module, and through the
AEAD on both backends wherever the RFC vector allows it.
"""

import hashlib
import json
import os
import random
import subprocess
import sys
import threading

import pytest

from peerpunch import crypto
from peerpunch.crypto import InvalidTag, libcrypto, pure

from .procs import ROOT, env

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "crypto")
LOW_ORDER_MESSAGE = "X25519 result is all zero: the public key is a low-order point"
P = 2 ** 255 - 19


def load(name):
    with open(os.path.join(DATA, name), encoding="utf-8") as f:
        return json.load(f)


RFC7748 = load("rfc7748_x25519.json")
RFC8439 = load("rfc8439.json")
RFC7693 = load("rfc7693_blake2.json")
LOW_ORDER = load("x25519_low_order.json")
H = bytes.fromhex


def source_ids(records):
    return [r["source"].replace("§", "") for r in records]


def get_or_skip(name):
    """The named backend; skip if it cannot load (fail instead when CI=true)."""
    try:
        return crypto.get_backend(name)
    except RuntimeError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail("%s (CI=true: every backend must run)" % exc)
        pytest.skip(str(exc))


@pytest.fixture(params=crypto.BACKEND_NAMES)
def backend(request):
    return get_or_skip(request.param)


@pytest.fixture
def both():
    return get_or_skip("libcrypto"), get_or_skip("python")


def random_bytes(rng, n):
    return rng.getrandbits(8 * n).to_bytes(n, "little") if n else b""


def flipped(data):
    """Every copy of data with exactly one bit flipped."""
    for bit in range(len(data) * 8):
        copy = bytearray(data)
        copy[bit // 8] ^= 1 << (bit % 8)
        yield bytes(copy)


# --- X25519 (RFC 7748) -----------------------------------------------------------

@pytest.mark.parametrize("vector", RFC7748["x25519"], ids=source_ids(RFC7748["x25519"]))
def test_x25519_rfc7748_5_2_vector(backend, vector):
    assert backend.x25519(H(vector["scalar"]), H(vector["u"])).hex() == vector["output"]


def test_x25519_rfc7748_5_2_iterated_1_and_1000_times(backend):
    iterated = RFC7748["iterated"]
    expected = {after["iterations"]: after["k"] for after in iterated["after"]}
    k = u = H(iterated["start"])
    for i in range(1, max(expected) + 1):
        k, u = backend.x25519(k, u), k
        if i in expected:
            assert k.hex() == expected[i], "after %d iterations" % i


def test_x25519_rfc7748_6_1_alice_and_bob_agree(backend):
    v = RFC7748["diffie_hellman"]
    assert backend.x25519_public(H(v["alice_private"])).hex() == v["alice_public"]
    assert backend.x25519_public(H(v["bob_private"])).hex() == v["bob_public"]
    assert backend.x25519(H(v["alice_private"]), H(v["bob_public"])).hex() == v["shared"]
    assert backend.x25519(H(v["bob_private"]), H(v["alice_public"])).hex() == v["shared"]


def low_order_encodings():
    """Each low-order u as printed, with the top bit set, and plus p when that fits in 255 bits."""
    for point in LOW_ORDER["points"]:
        u = int.from_bytes(H(point["u"]), "little")
        variants = {"": u, " +2^255": u | 1 << 255}
        if u + P < 1 << 255:
            variants.update({" +p": u + P, " +p +2^255": (u + P) | 1 << 255})
        for label, value in variants.items():
            name = point["name"].split()[0][:10] + label
            yield pytest.param(value.to_bytes(32, "little"), id=name)


@pytest.mark.parametrize("public", list(low_order_encodings()))
def test_x25519_low_order_point_raises_value_error(backend, public):
    for private in (bytes(32), b"\xff" * 32, H(RFC7748["diffie_hellman"]["alice_private"])):
        with pytest.raises(ValueError) as raised:
            backend.x25519(private, public)
        assert str(raised.value) == LOW_ORDER_MESSAGE


def test_x25519_random_keys_match_across_backends(both):
    fast, slow = both
    rng = random.Random(7748)
    for _ in range(40):
        private, public = random_bytes(rng, 32), random_bytes(rng, 32)
        assert fast.x25519_public(private) == slow.x25519_public(private)
        assert fast.x25519(private, public) == slow.x25519(private, public), public.hex()


# --- ChaCha20 (RFC 8439 §2.3, §2.4, A.1, A.2) ----------------------------------------

BLOCKS = RFC8439["chacha20_block"]
ENCRYPTIONS = RFC8439["chacha20_encrypt"]


@pytest.mark.parametrize("vector", BLOCKS, ids=source_ids(BLOCKS))
def test_chacha20_block_rfc8439(vector):
    block = pure.chacha20_block(H(vector["key"]), vector["counter"], H(vector["nonce"]))
    assert block.hex() == vector["keystream"]


@pytest.mark.parametrize("vector", ENCRYPTIONS, ids=source_ids(ENCRYPTIONS))
def test_chacha20_encrypt_rfc8439(vector):
    args = H(vector["key"]), vector["counter"], H(vector["nonce"])
    assert pure.chacha20_xor(*args, H(vector["plaintext"])).hex() == vector["ciphertext"]
    assert pure.chacha20_xor(*args, H(vector["ciphertext"])).hex() == vector["plaintext"]


COUNTER_ONE = [v for v in BLOCKS + ENCRYPTIONS if v["counter"] == 1]


@pytest.mark.parametrize("vector", COUNTER_ONE, ids=source_ids(COUNTER_ONE))
def test_chacha20_rfc8439_through_aead(backend, vector):
    """The AEAD encrypts from block 1, so its ciphertext is the RFC's ChaCha20 output."""
    plaintext = H(vector.get("plaintext", "00" * 64))
    expected = vector.get("ciphertext", vector.get("keystream"))
    sealed = backend.aead_encrypt(H(vector["key"]), H(vector["nonce"]), plaintext, b"")
    assert sealed[:-16].hex() == expected


def test_chacha20_counter_wraps_at_32_bits():
    key, nonce = bytes(range(32)), bytes(12)
    two = pure.chacha20_xor(key, 0xFFFFFFFF, nonce, bytes(128))
    assert two[64:] == pure.chacha20_block(key, 0, nonce)


def test_chacha20_long_message_equals_block_by_block():
    key, nonce = bytes(range(32)), bytes(range(12))
    data = bytes(range(256)) * 300       # 76,800 bytes: more than one 64 KiB chunk
    stream = b"".join(pure.chacha20_block(key, 5 + i, nonce) for i in range((len(data) + 63) // 64))
    expected = bytes(a ^ b for a, b in zip(data, stream))
    assert pure.chacha20_xor(key, 5, nonce, data) == expected


# --- Poly1305 (RFC 8439 §2.5, §2.6, A.3, A.4) ------------------------------------------

MACS = RFC8439["poly1305"]
KEY_GENS = RFC8439["poly1305_key_gen"]


@pytest.mark.parametrize("vector", MACS, ids=source_ids(MACS))
def test_poly1305_rfc8439(vector):
    assert pure.poly1305_mac(H(vector["key"]), H(vector["message"])).hex() == vector["tag"]


@pytest.mark.parametrize("vector", KEY_GENS, ids=source_ids(KEY_GENS))
def test_poly1305_key_gen_rfc8439(vector):
    assert pure.poly1305_key_gen(H(vector["key"]), H(vector["nonce"])).hex() == vector["otk"]


# --- AEAD_CHACHA20_POLY1305 (RFC 8439 §2.8, A.5) ------------------------------------------

AEADS = RFC8439["aead"]


@pytest.mark.parametrize("vector", AEADS, ids=source_ids(AEADS))
def test_aead_rfc8439_seals_and_opens(backend, vector):
    key, nonce, ad = H(vector["key"]), H(vector["nonce"]), H(vector["ad"])
    sealed = H(vector["ciphertext"] + vector["tag"])
    assert backend.aead_encrypt(key, nonce, H(vector["plaintext"]), ad) == sealed
    assert backend.aead_decrypt(key, nonce, sealed, ad).hex() == vector["plaintext"]


@pytest.mark.parametrize("vector", AEADS, ids=source_ids(AEADS))
def test_aead_rfc8439_one_time_key(vector):
    otk = pure.poly1305_key_gen(H(vector["key"]), H(vector["nonce"]))
    assert otk.hex() == vector["poly1305_key"]


def test_aead_random_messages_match_across_backends(both):
    """10,000 messages of 0..2000 bytes seal identically and open on both backends.

    libcrypto opens every one; the pure backend (slow) every tenth.
    """
    fast, slow = both
    rng = random.Random(8439)
    for i in range(10000):
        key, nonce = random_bytes(rng, 32), random_bytes(rng, 12)
        ad = random_bytes(rng, rng.randrange(0, 33))
        plaintext = random_bytes(rng, rng.randrange(0, 2001))
        sealed = fast.aead_encrypt(key, nonce, plaintext, ad)
        assert slow.aead_encrypt(key, nonce, plaintext, ad) == sealed, "message %d" % i
        assert fast.aead_decrypt(key, nonce, sealed, ad) == plaintext, "message %d" % i
        if i % 10 == 0:
            assert slow.aead_decrypt(key, nonce, sealed, ad) == plaintext, "message %d" % i


def test_aead_flipped_bit_anywhere_raises_invalid_tag(backend):
    key, nonce, ad = bytes(range(32)), bytes(range(12)), b"associated data"
    plaintext = b"a message long enough to span two Poly1305 blocks and then some"
    sealed = backend.aead_encrypt(key, nonce, plaintext, ad)
    cases = ([(key, nonce, bad, ad) for bad in flipped(sealed)]
             + [(key, nonce, sealed, bad) for bad in flipped(ad)]
             + [(key, bad, sealed, ad) for bad in flipped(nonce)]
             + [(bad, nonce, sealed, ad) for bad in flipped(key)])
    for args in cases:
        with pytest.raises(InvalidTag):
            backend.aead_decrypt(*args)
    assert backend.aead_decrypt(key, nonce, sealed, ad) == plaintext     # still usable


def test_aead_truncated_or_extended_ciphertext_raises_invalid_tag(backend):
    key, nonce = bytes(32), bytes(12)
    sealed = backend.aead_encrypt(key, nonce, b"hello", b"")
    for bad in (b"", sealed[:15], sealed[:-1], sealed + b"\x00", sealed[1:]):
        with pytest.raises(InvalidTag):
            backend.aead_decrypt(key, nonce, bad, b"")


def test_aead_empty_plaintext_and_ad(backend):
    key, nonce = bytes(range(32)), bytes(12)
    sealed = backend.aead_encrypt(key, nonce, b"", b"")
    assert len(sealed) == 16
    assert backend.aead_decrypt(key, nonce, sealed, b"") == b""


def test_aead_accepts_bytearray_and_memoryview_and_returns_bytes(backend):
    key, nonce = bytes(range(32)), bytes(12)
    sealed = backend.aead_encrypt(bytearray(key), memoryview(nonce),
                                  bytearray(b"hi"), memoryview(b"ad"))
    assert type(sealed) is bytes and sealed == backend.aead_encrypt(key, nonce, b"hi", b"ad")
    opened = backend.aead_decrypt(memoryview(key), bytearray(nonce), bytearray(sealed), b"ad")
    assert type(opened) is bytes and opened == b"hi"


@pytest.mark.parametrize("call, error", [
    (lambda b: b.aead_encrypt(bytes(31), bytes(12), b"", b""), "key must be 32 bytes, not 31"),
    (lambda b: b.aead_encrypt(bytes(32), bytes(8), b"", b""), "nonce must be 12 bytes, not 8"),
    (lambda b: b.aead_decrypt(bytes(32), bytes(13), bytes(16), b""),
     "nonce must be 12 bytes, not 13"),
    (lambda b: b.x25519(bytes(32), bytes(33)), "public key must be 32 bytes, not 33"),
    (lambda b: b.x25519_public(b""), "private key must be 32 bytes, not 0"),
])
def test_backend_wrong_length_raises_value_error(backend, call, error):
    with pytest.raises(ValueError) as raised:
        call(backend)
    assert str(raised.value) == error


@pytest.mark.parametrize("call", [
    lambda b: b.aead_encrypt(bytes(32), bytes(12), "text", b""),
    lambda b: b.aead_decrypt(bytes(32), bytes(12), bytes(16), None),
    lambda b: b.x25519(32, bytes(32)),
])
def test_backend_non_bytes_raises_type_error(backend, call):
    with pytest.raises(TypeError):
        call(backend)


def test_libcrypto_shared_between_threads():
    fast = get_or_skip("libcrypto")
    failures = []

    def work(seed):
        rng = random.Random(seed)
        for _ in range(1000):
            key, nonce = random_bytes(rng, 32), random_bytes(rng, 12)
            plaintext = random_bytes(rng, 300)
            sealed = fast.aead_encrypt(key, nonce, plaintext, b"t")
            if fast.aead_decrypt(key, nonce, sealed, b"t") != plaintext:
                failures.append(seed)

    threads = [threading.Thread(target=work, args=(seed,)) for seed in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc/self/statm (Linux)")
def test_libcrypto_loop_does_not_leak():
    """One OpenSSL object leaked per call adds 190 B (EVP_PKEY_CTX) to 1 KB (cipher context)."""
    fast = get_or_skip("libcrypto")
    key, nonce, private = bytes(range(32)), bytes(12), bytes(range(1, 33))
    public = fast.x25519_public(bytes(range(2, 34)))
    sealed = fast.aead_encrypt(key, nonce, bytes(1200), b"ad")
    forged = sealed[:-1] + bytes([sealed[-1] ^ 1])

    def rss():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def calls(count):
        for _ in range(count):
            fast.aead_encrypt(key, nonce, bytes(1200), b"ad")
            fast.aead_decrypt(key, nonce, sealed, b"ad")
            try:
                fast.aead_decrypt(key, nonce, forged, b"ad")
            except InvalidTag:
                pass
            fast.x25519(private, public)
            fast.x25519_public(private)
            try:
                fast.x25519(private, bytes(32))
            except ValueError:
                pass

    calls(500)
    before = rss()
    calls(1500)
    assert rss() - before < 256 * 1024


# --- BLAKE2 (RFC 7693), from hashlib ------------------------------------------------------

@pytest.mark.parametrize("vector", RFC7693["hashes"], ids=source_ids(RFC7693["hashes"]))
def test_blake2_rfc7693_appendix(vector):
    algorithm = getattr(hashlib, vector["algorithm"])
    h = algorithm(H(vector["message"]), digest_size=vector["digest_size"])
    assert h.hexdigest() == vector["digest"]


# --- Choosing a backend ------------------------------------------------------------------

def test_get_backend_auto_prefers_libcrypto_and_caches():
    fast = get_or_skip("libcrypto")
    assert crypto.get_backend() is fast
    assert crypto.get_backend("auto") is crypto.get_backend("libcrypto")
    assert crypto.get_backend("python") is crypto.get_backend("python")


def test_libcrypto_is_the_versioned_library_ssl_loaded():
    fast = get_or_skip("libcrypto")
    assert libcrypto._VERSIONED.match(os.path.basename(fast.path))
    assert fast.detail.endswith("(%s)" % os.path.basename(fast.path))
    if fast.found_by == "loaded by _ssl" and os.path.exists("/proc/self/maps"):
        with open("/proc/self/maps") as maps:
            assert fast.path in maps.read()


def test_get_backend_unavailable_libcrypto(monkeypatch):
    monkeypatch.setitem(crypto._loaded, "libcrypto", "no libcrypto found (test)")
    with pytest.raises(RuntimeError) as raised:
        crypto.get_backend("libcrypto")
    assert str(raised.value) == "libcrypto backend unavailable: no libcrypto found (test)"
    assert crypto.get_backend("auto").name == "python"
    assert crypto.available_backends()["libcrypto"] == "no libcrypto found (test)"


def test_get_backend_unknown_name_raises_value_error():
    with pytest.raises(ValueError):
        crypto.get_backend("nacl")


def test_find_libcrypto_refuses_unversioned_names(monkeypatch):
    monkeypatch.setattr(libcrypto, "_mapped_by_ssl", lambda: ["/usr/lib/libcrypto.dylib"])
    monkeypatch.setattr(libcrypto, "_found_by_name", lambda: ["libcrypto.so"])
    with pytest.raises(RuntimeError) as raised:
        libcrypto.find_libcrypto()
    assert "refusing unversioned /usr/lib/libcrypto.dylib, libcrypto.so" in str(raised.value)


@pytest.mark.parametrize("name, versioned", [
    ("libcrypto.so.3", True), ("libcrypto.so.1.1", True), ("libcrypto.3.dylib", True),
    ("libcrypto.1.1.dylib", True), ("libcrypto-3-x64.dll", True), ("libcrypto-1_1.dll", True),
    ("libcrypto.so", False), ("libcrypto.dylib", False), ("libcrypto.so.3.bak", False),
])
def test_libcrypto_versioned_name_pattern(name, versioned):
    assert bool(libcrypto._VERSIONED.match(name)) is versioned


def test_libcrypto_failed_self_test_makes_it_unavailable(monkeypatch):
    get_or_skip("libcrypto")
    wrong = libcrypto._KAT_AEAD[:4] + ("00" * 130,)
    monkeypatch.setattr(libcrypto, "_KAT_AEAD", wrong)
    with pytest.raises(RuntimeError) as raised:
        libcrypto.LibcryptoBackend.load()
    assert str(raised.value).endswith("self-test failed: RFC 8439 §2.8.2 AEAD encryption")


def test_generate_private_key_is_32_fresh_bytes():
    keys = {crypto.generate_private_key() for _ in range(8)}
    assert len(keys) == 8 and all(len(k) == 32 for k in keys)


def test_bench_crypto_quick_run_prints_its_table():
    argv = [sys.executable, "bench/crypto_bench.py", "--quick", "--seconds", "0.02"]
    result = subprocess.run(argv, cwd=ROOT, env=env(), capture_output=True, timeout=120)
    out = result.stdout.decode()
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    assert "X25519 ops/s" in out and "seal 64 KiB MB/s" in out and "python" in out
    if isinstance(crypto.available_backends()["libcrypto"], crypto.Backend):
        assert "ratio libcrypto/python" in out
