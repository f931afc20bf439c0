"""The AEAD with its key bound once (crypto.keyed): the same bytes as the
checked functions, the same refusals, and a context that survives them."""

import random
import ssl

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


# -- the record layout of associated data (secure channels whose peers announce seal2)

RECORD_KEY = bytes(range(0x80, 0xA0))
RECORD_NONCE = bytes(4) + (0x0102030405).to_bytes(8, "little")
RECORD_HEAD = b"\xe4" + (0x0102030405).to_bytes(8, "big")
RECORD_TEXT = b'"Pong" and 31 bytes of record!'
RECORD_AD = H("0504030201000000" "e4" "0002" "001e")     # counter LE, type, 0, 2, length BE
RECORD_FRAME = H("e40000000102030405" "0ab92d5008fab61bbf33c9f583c2f1c792b2498d1b30ef1c14db86dae19b"
                 "e42154fa5bfe8a8054da55a7dbf6578f")


def test_keyed_record_ad_is_counter_type_version_and_length():
    assert keyed.record_ad(RECORD_NONCE, 0xE4, len(RECORD_TEXT)) == RECORD_AD
    with pytest.raises(ValueError):
        keyed.record_ad(b"\x01" + RECORD_NONCE[1:], 0xE4, 30)     # not a Noise nonce
    with pytest.raises(ValueError):
        keyed.record_ad(RECORD_NONCE, 0xE4, keyed.MAX_RECORD_TEXT + 1)
    with pytest.raises(ValueError):
        crypto.get_backend("python").keyed(bytes(32), "neither")


def test_keyed_record_layout_known_answer(backend):
    bound = backend.keyed(RECORD_KEY, keyed.RECORD_AD)
    assert bound.seal_run([RECORD_NONCE], [RECORD_TEXT], [RECORD_HEAD]) == [RECORD_FRAME]
    assert RECORD_FRAME[9:] == backend.aead_encrypt(RECORD_KEY, RECORD_NONCE, RECORD_TEXT,
                                                    RECORD_AD)
    assert bound.open_frame(RECORD_NONCE, RECORD_FRAME, 9) == RECORD_TEXT
    assert bound.open(RECORD_NONCE, RECORD_FRAME[9:], RECORD_HEAD) == RECORD_TEXT
    assert bound.seal(RECORD_NONCE, RECORD_TEXT, RECORD_HEAD) == RECORD_FRAME[9:]


def record_keyeds(backend, key):
    """Every way this backend seals the record layout: libcrypto both in its
    TLS mode and with the five calls."""
    if isinstance(backend.keyed(key), keyed.LibcryptoKeyed):
        return [keyed.TlsRecordKeyed(backend, key),
                keyed.LibcryptoKeyed(backend, key, keyed.RECORD_AD)]
    return [backend.keyed(key, keyed.RECORD_AD)]


def test_keyed_record_layout_is_the_aead_with_that_ad(backend):
    rng = random.Random(21)
    key = random_bytes(rng, 32)
    bounds = record_keyeds(backend, key)
    sizes = [0, 1, 16, 63, 64, 65, 1175, 1447, 1447, 4000, keyed.MAX_RECORD_TEXT]
    nonces = [bytes(4) + random_bytes(rng, 8) for _ in sizes]
    heads = [bytes([0xE4]) + random_bytes(rng, 8) for _ in sizes]
    texts = [random_bytes(rng, n) for n in sizes]
    expected = [h + backend.aead_encrypt(key, n, t, keyed.record_ad(n, h[0], len(t)))
                for n, t, h in zip(nonces, texts, heads)]
    for bound in bounds:
        assert bound.seal_run(nonces, texts, heads) == expected
        assert [bound.open_frame(n, f, 9) for n, f in zip(nonces, expected)] == texts
        assert bound.open_frame(nonces[5], memoryview(b"x" + expected[5])[1:], 9) == texts[5]
        assert bound.seal(nonces[6], bytearray(texts[6]), heads[6]) == expected[6][9:]


def test_keyed_record_layout_refuses_forgery_then_opens_the_genuine_frame(backend):
    rng = random.Random(22)
    key = random_bytes(rng, 32)
    nonce, head, text = bytes(4) + random_bytes(rng, 8), b"\xe4" + bytes(8), random_bytes(rng, 300)
    for bound in record_keyeds(backend, key):
        frame = bound.seal_run([nonce], [text], [head])[0]
        other = bytes(4) + (int.from_bytes(nonce[4:], "little") ^ 1).to_bytes(8, "little")
        for bad, at in ((frame[:-1] + bytes([frame[-1] ^ 1]), nonce),     # the tag
                        (frame[:12] + bytes([frame[12] ^ 1]) + frame[13:], nonce),  # the text
                        (b"\xe3" + frame[1:], nonce),           # the type: in the AD
                        (frame[:9] + frame[10:], nonce),        # a byte less: the length
                        (frame, other),                         # another counter
                        (frame[:9 + 15], nonce)):               # shorter than a tag
            with pytest.raises(InvalidTag):
                bound.open_frame(at, bad, 9)
        assert bound.open_frame(nonce, frame, 9) == text
        with pytest.raises(ValueError):
            bound.seal_run([b"\x01" + nonce[1:]], [text], [head])


def test_keyed_record_mode_is_checked_once_and_falls_back_when_it_fails(monkeypatch):
    backend = get_or_skip("libcrypto")
    works = keyed.record_mode_works(backend)
    if ssl.OPENSSL_VERSION_INFO >= (3,):     # the library Python's ssl loaded: the backend's
        assert works is True                  # measured on 3.0; elsewhere either answer is safe
    assert backend.keyed(bytes(32), keyed.RECORD_AD)._tls is works
    assert backend._record_mode is works      # cached
    fresh = crypto.libcrypto.LibcryptoBackend(backend._lib, backend.path, "test")

    def broken(_backend):
        raise OSError("no EVP_Cipher here")
    monkeypatch.setattr(keyed, "_record_mode_check", broken)
    assert keyed.record_mode_works(fresh) is False
    slow = fresh.keyed(RECORD_KEY, keyed.RECORD_AD)
    assert not slow._tls
    assert slow.seal_run([RECORD_NONCE], [RECORD_TEXT], [RECORD_HEAD]) == [RECORD_FRAME]
    assert slow.open_frame(RECORD_NONCE, RECORD_FRAME, 9) == RECORD_TEXT


def test_keyed_record_mode_check_catches_wrong_bytes_and_accepted_forgeries(monkeypatch):
    backend = get_or_skip("libcrypto")
    assert keyed._record_mode_check(backend)
    real_open = keyed.TlsRecordKeyed.open_counted
    with monkeypatch.context() as patch:
        patch.setattr(keyed.TlsRecordKeyed, "seal_counted",
                      lambda self, counters, texts, heads: [h + bytes(len(t) + 16)
                                                            for t, h in zip(texts, heads)])
        assert not keyed._record_mode_check(backend)

    def lenient(self, counter, frame, start):         # takes a forged tag
        try:
            return real_open(self, counter, frame, start)
        except InvalidTag:
            return real_open(self, counter, frame[:-1] + bytes([frame[-1] ^ 1]), start)
    monkeypatch.setattr(keyed.TlsRecordKeyed, "open_counted", lenient)
    assert not keyed._record_mode_check(backend)


@pytest.mark.parametrize("layout", keyed.LAYOUTS)
def test_keyed_counted_methods_are_the_noise_nonce_ones(backend, layout):
    rng = random.Random(23)
    key = random_bytes(rng, 32)
    bounds = record_keyeds(backend, key) if layout == keyed.RECORD_AD else [backend.keyed(key)]
    counters = [0, 1, 255, 256, 2 ** 32 - 1, 2 ** 32, 2 ** 64 - 1]
    texts = [random_bytes(rng, n) for n in (0, 1, 64, 1175, 1447, 300, 17)]
    heads = [b"\xe4" + c.to_bytes(8, "big") for c in counters]
    nonces = [bytes(4) + c.to_bytes(8, "little") for c in counters]
    for bound in bounds:
        frames = bound.seal_counted(counters, texts, heads)
        assert frames == bound.seal_run(nonces, texts, heads)
        assert [bound.open_counted(c, f, 9) for c, f in zip(counters, frames)] == texts
        with pytest.raises(InvalidTag):
            bound.open_counted(counters[1], frames[2], 9)       # another counter's frame
        with pytest.raises(InvalidTag):
            bound.open_counted(counters[2], frames[2][:9 + 15], 9)
        assert bound.open_counted(counters[2], frames[2], 9) == texts[2]
