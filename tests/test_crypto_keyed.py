"""The AEAD with its key bound once (crypto.keyed): the same bytes as the
checked functions, the same refusals, and a context that survives them."""

import random

import pytest

from peerpunch import crypto
from peerpunch.crypto import InvalidTag, keyed

from .test_crypto import RFC8439, get_or_skip, random_bytes

H = bytes.fromhex


@pytest.fixture(params=crypto.BACKEND_NAMES)
def backend(request):
    return get_or_skip(request.param)


def test_keyed_rfc8439_vector(backend):
    for case in RFC8439["aead"]:
        bound = backend.keyed(H(case["key"]))
        sealed = H(case["ciphertext"]) + H(case["tag"])
        nonce, ad, plaintext = H(case["nonce"]), H(case["ad"]), H(case["plaintext"])
        assert bound.seal(nonce, plaintext, ad) == sealed
        assert bound.open(nonce, sealed, ad) == plaintext


def test_keyed_matches_the_checked_functions_on_many_nonces(backend):
    rng = random.Random(12)
    key = random_bytes(rng, 32)
    bound = backend.keyed(key)
    for size in (0, 1, 63, 64, 65, 1175, 1447, 4000):
        nonce, ad, plaintext = random_bytes(rng, 12), random_bytes(rng, 9), random_bytes(rng, size)
        sealed = bound.seal(nonce, plaintext, ad)
        assert sealed == backend.aead_encrypt(key, nonce, plaintext, ad)
        assert bound.open(nonce, sealed, ad) == plaintext
        assert backend.aead_decrypt(key, nonce, sealed, ad) == plaintext


def test_keyed_refuses_forgery_then_opens_the_genuine_frame(backend):
    rng = random.Random(5)
    bound = backend.keyed(random_bytes(rng, 32))
    nonce, ad, plaintext = random_bytes(rng, 12), b"header", random_bytes(rng, 300)
    sealed = bound.seal(nonce, plaintext, ad)
    for bad in (sealed[:-1] + bytes([sealed[-1] ^ 1]), bytes([sealed[0] ^ 0x80]) + sealed[1:]):
        with pytest.raises(InvalidTag):
            bound.open(nonce, bad, ad)
    with pytest.raises(InvalidTag):
        bound.open(nonce, sealed, b"other header")
    with pytest.raises(InvalidTag):
        bound.open(nonce, sealed[:15], ad)            # shorter than a tag
    assert bound.open(nonce, sealed, ad) == plaintext   # the context was set up again
    assert bound.seal(nonce, plaintext, ad) == sealed


def test_keyed_takes_bytearray_and_memoryview(backend):
    bound = backend.keyed(bytes(32))
    nonce = bytes(12)
    sealed = bound.seal(nonce, bytearray(b"abc"), b"")
    assert bound.open(nonce, memoryview(b"xx" + sealed)[2:], b"") == b"abc"


def test_keyed_checks_the_key():
    with pytest.raises(ValueError):
        crypto.get_backend("python").keyed(bytes(31))


def test_keyed_libcrypto_binds_its_own_contexts():
    backend = get_or_skip("libcrypto")
    bound = backend.keyed(bytes(range(32)))
    assert isinstance(bound, keyed.LibcryptoKeyed)
    with pytest.raises(ValueError):
        bound.seal(bytes(12), bytes(keyed.MAX_TEXT + 1), b"")


def test_keyed_seal_run_is_ad_and_seal_of_each(backend):
    rng = random.Random(7)
    bound = backend.keyed(random_bytes(rng, 32))
    sizes = [1175, 1175, 0, 1447, 1175, 63, 1447]
    nonces = [random_bytes(rng, 12) for _ in sizes]
    texts = [random_bytes(rng, n) for n in sizes]
    ads = [random_bytes(rng, 9) for _ in sizes]
    sealed = bound.seal_run(nonces, texts, ads)
    assert sealed == [a + bound.seal(n, t, a) for n, t, a in zip(nonces, texts, ads)]
    assert [bound.open(n, s[9:], a) for n, s, a in zip(nonces, sealed, ads)] == texts
    assert all(type(s) is bytes for s in sealed)
    assert bound.seal_run([], [], []) == []


def test_keyed_libcrypto_keeps_few_tag_pointers():
    bound = get_or_skip("libcrypto").keyed(bytes(range(32)))
    for size in range(100):
        bound.seal(bytes(12), bytes(size), b"")
    assert len(bound._ends) <= 16


def test_keyed_open_frame_is_open_of_the_frame_past_its_header(backend):
    rng = random.Random(9)
    bound = backend.keyed(random_bytes(rng, 32))
    for size in (0, 1, 1175, 1446, 4000, 1446):
        nonce, header, plaintext = random_bytes(rng, 12), random_bytes(rng, 9), random_bytes(rng, size)
        frame = header + bound.seal(nonce, plaintext, header)
        assert bound.open_frame(nonce, frame, 9) == plaintext == bound.open(nonce, frame[9:], header)
        assert bound.open_frame(nonce, memoryview(b"x" + frame)[1:], 9) == plaintext
        for bad in (frame[:4] + bytes([frame[4] ^ 1]) + frame[5:],       # the header: the AD
                    frame[:-1] + bytes([frame[-1] ^ 1]), frame[:9 + 15]):
            with pytest.raises(InvalidTag):
                bound.open_frame(nonce, bad, 9)
        assert bound.open_frame(nonce, frame, 9) == plaintext      # nothing left behind
