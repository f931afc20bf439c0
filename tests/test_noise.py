"""Tests of the Noise handshake and transport core, peerpunch.noise.

The cacophony vectors in tests/data/noise/ pin every handshake and transport
message byte for byte, on every crypto backend. The rest drives two
HandshakeStates against each other in memory and checks what a caller sees
when messages are tampered with, cut short, replayed or sent out of turn.
"""

import json
import os
import random

import pytest

from peerpunch import crypto
from peerpunch import noise

DATA_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "noise")
VECTORS = ("NN", "XX", "IK")
IN_CI = os.environ.get("CI") == "true"


def load_vector(pattern):
    path = os.path.join(DATA_DIR, "Noise_%s_25519_ChaChaPoly_BLAKE2s.json" % pattern)
    with open(path) as f:
        return json.load(f)


def backend_names():
    return sorted(set(crypto.available_backends()) | {"python", "libcrypto"})


def backend_or_skip(name):
    found = crypto.available_backends().get(name)
    if found is None or isinstance(found, str):
        reason = "crypto backend %r unavailable: %s" % (name, found or "unknown")
        if IN_CI:
            pytest.fail(reason + " (CI=true requires every backend)")
        pytest.skip(reason)
    return found


@pytest.fixture(scope="module")
def backend():
    return crypto.get_backend("auto")


def make_pair(backend, pattern="XX", prologue=b"", pin=None):
    """An initiator and a responder with fresh static keys."""
    init_s, resp_s = crypto.generate_private_key(), crypto.generate_private_key()
    remote = None
    if pattern == "IK":
        remote = pin if pin is not None else backend.x25519_public(resp_s)
    init = noise.HandshakeState(pattern, True, init_s, remote, prologue, backend)
    resp = noise.HandshakeState(pattern, False, resp_s, None, prologue, backend)
    return init, resp


def handshake(init, resp, payloads=(b"one", b"two", b"three")):
    """Run the handshake to completion; return the payloads as received."""
    received, sender, receiver = [], init, resp
    for payload in payloads:
        if init.complete:
            break
        received.append(receiver.read_message(sender.write_message(payload)))
        sender, receiver = receiver, sender
    assert init.complete and resp.complete
    return received


# ------------------------------------------------------------------ vectors

@pytest.mark.parametrize("pattern", VECTORS)
@pytest.mark.parametrize("backend_name", backend_names())
def test_vector_messages_match_byte_for_byte(backend_name, pattern):
    impl = backend_or_skip(backend_name)
    v = load_vector(pattern)
    assert v["protocol_name"] == "Noise_%s_25519_ChaChaPoly_BLAKE2s" % pattern
    field = lambda name: bytes.fromhex(v[name]) if name in v else None
    init = noise.HandshakeState(pattern, True, field("init_static"), field("init_remote_static"),
                                field("init_prologue"), impl, field("init_ephemeral"))
    resp = noise.HandshakeState(pattern, False, field("resp_static"), field("resp_remote_static"),
                                field("resp_prologue"), impl, field("resp_ephemeral"))
    transport_seen = 0
    for i, message in enumerate(v["messages"]):
        payload, expected = bytes.fromhex(message["payload"]), bytes.fromhex(message["ciphertext"])
        sender, receiver = (init, resp) if i % 2 == 0 else (resp, init)
        if not init.complete:
            wire = sender.write_message(payload)
            assert wire.hex() == message["ciphertext"], "handshake message %d" % i
            assert receiver.read_message(wire) == payload
        else:
            wire = sender.split()[0].encrypt_with_ad(b"", payload)
            assert wire.hex() == message["ciphertext"], "transport message %d" % i
            assert receiver.split()[1].decrypt_with_ad(b"", expected) == payload
            transport_seen |= 1 << (i % 2)
        assert init.complete == resp.complete
    assert transport_seen == 0b11, "transport messages in both directions"
    assert init.handshake_hash.hex() == v["handshake_hash"]
    assert resp.handshake_hash.hex() == v["handshake_hash"]
    if pattern != "NN":
        assert resp.remote_static == impl.x25519_public(field("init_static"))
        assert init.remote_static == impl.x25519_public(field("resp_static"))


# --------------------------------------------------------------- round trips

def test_xx_round_trip_with_random_keys(backend):
    init, resp = make_pair(backend, "XX", prologue=b"peerpunch test")
    assert handshake(init, resp) == [b"one", b"two", b"three"]
    assert init.remote_static == resp.local_static
    assert resp.remote_static == init.local_static
    assert init.handshake_hash == resp.handshake_hash
    (i_send, i_recv), (r_send, r_recv) = init.split(), resp.split()
    for n in range(3):
        assert r_recv.decrypt_with_ad(b"", i_send.encrypt_with_ad(b"", b"ping %d" % n)) == b"ping %d" % n
        assert i_recv.decrypt_with_ad(b"ad", r_send.encrypt_with_ad(b"ad", b"pong")) == b"pong"
    assert init.split()[0] is i_send  # the same pair again: no nonce reuse


def test_xx_remote_static_is_unknown_until_sent(backend):
    init, resp = make_pair(backend, "XX")
    resp.read_message(init.write_message())
    assert resp.remote_static is None and init.remote_static is None
    init.read_message(resp.write_message())
    assert init.remote_static == resp.local_static
    assert resp.remote_static is None
    resp.read_message(init.write_message())
    assert resp.remote_static == init.local_static


def test_ik_round_trip_completes_in_two_messages(backend):
    init, resp = make_pair(backend, "IK")
    assert handshake(init, resp) == [b"one", b"two"]
    assert resp.remote_static == init.local_static
    i_send, _ = init.split()
    _, r_recv = resp.split()
    assert r_recv.decrypt_with_ad(b"", i_send.encrypt_with_ad(b"", b"hi")) == b"hi"


def test_ik_wrong_pinned_key_fails_at_responder(backend):
    wrong = backend.x25519_public(crypto.generate_private_key())
    init, resp = make_pair(backend, "IK", pin=wrong)
    first = init.write_message(b"secret")
    with pytest.raises(noise.DecryptError) as info:
        resp.read_message(first)
    assert isinstance(info.value, crypto.InvalidTag)
    assert isinstance(info.value, noise.NoiseError)
    # The responder is untouched: a genuine initiator still gets through.
    genuine = noise.HandshakeState("IK", True, crypto.generate_private_key(),
                                   resp.local_static, b"", backend)
    assert resp.read_message(genuine.write_message(b"hello")) == b"hello"
    genuine.read_message(resp.write_message())
    assert genuine.complete and resp.complete


def test_prologue_mismatch_fails_at_first_encrypted_message(backend):
    init = noise.HandshakeState("XX", True, crypto.generate_private_key(), prologue=b"v1",
                                backend=backend)
    resp = noise.HandshakeState("XX", False, crypto.generate_private_key(), prologue=b"v2",
                                backend=backend)
    resp.read_message(init.write_message())
    with pytest.raises(noise.DecryptError):
        init.read_message(resp.write_message())


# ---------------------------------------------------------- hostile input

def flip(data, index):
    return data[:index] + bytes((data[index] ^ 0x01,)) + data[index + 1:]


def test_tampered_handshake_message_raises_and_leaves_state_unchanged(backend):
    init, resp = make_pair(backend, "XX")
    resp.read_message(init.write_message(b"hi"))
    second = resp.write_message(b"payload two")
    for index in range(len(second)):
        with pytest.raises(noise.DecryptError):
            init.read_message(flip(second, index))
    assert not init.complete and init.remote_static is None
    assert init.read_message(second) == b"payload two"
    resp.read_message(init.write_message(b"three"))
    assert init.handshake_hash == resp.handshake_hash


def test_tampered_first_xx_message_is_caught_by_the_initiator(backend):
    # Message 1 carries nothing encrypted, so a flipped bit is only noticed
    # when the initiator reads message 2: its transcript hash differs.
    init, resp = make_pair(backend, "XX")
    first = init.write_message(b"hello")
    assert resp.read_message(flip(first, noise.DHLEN)) == b"iello"  # accepted as is
    with pytest.raises(noise.DecryptError):  # but the transcripts now differ
        init.read_message(resp.write_message())


def test_truncated_messages_raise_noise_error(backend):
    init, resp = make_pair(backend, "XX")
    first = init.write_message(b"abc")
    for size in range(noise.DHLEN):  # shorter than the ephemeral key
        with pytest.raises(noise.RemoteNoiseError):
            resp.read_message(first[:size])
    resp.read_message(first)
    second = resp.write_message(b"abc")
    for size in range(len(second)):
        with pytest.raises(noise.RemoteNoiseError):
            init.read_message(second[:size])
    assert init.read_message(second) == b"abc"


def test_random_garbage_raises_only_remote_errors(backend):
    rng = random.Random(20240607)

    def garbage():
        return bytes(rng.randrange(256) for _ in range(rng.randrange(200)))

    for pattern in ("XX", "IK"):
        init, resp = make_pair(backend, pattern)
        for _ in range(30):  # the responder, waiting for message 1
            data = garbage()
            try:
                resp.read_message(data)
            except noise.RemoteNoiseError:
                continue
            # Only XX's first message is unauthenticated: any e || payload is valid.
            assert pattern == "XX" and len(data) >= noise.DHLEN
            init, resp = make_pair(backend, pattern)
        resp.read_message(init.write_message())
        for _ in range(30):  # the initiator, waiting for message 2
            with pytest.raises(noise.RemoteNoiseError):
                init.read_message(garbage())


def test_low_order_ephemeral_kills_xx_responder_on_its_write(backend):
    init, resp = make_pair(backend, "XX")
    resp.read_message(bytes(noise.DHLEN))  # an all-zero (low-order) "public key"
    with pytest.raises(noise.RemoteNoiseError):
        resp.write_message()
    assert resp.failed
    with pytest.raises(noise.LocalNoiseError):
        resp.write_message()


def test_low_order_ephemeral_rejected_by_ik_responder_without_damage(backend):
    init, resp = make_pair(backend, "IK")
    genuine = init.write_message(b"x")
    with pytest.raises(noise.RemoteNoiseError):
        resp.read_message(bytes(noise.DHLEN) + genuine[noise.DHLEN:])
    assert not resp.failed
    assert resp.read_message(genuine) == b"x"


def test_oversized_messages_are_refused(backend):
    init, resp = make_pair(backend, "XX")
    with pytest.raises(noise.RemoteNoiseError):
        resp.read_message(bytes(noise.MAX_MESSAGE + 1))
    with pytest.raises(noise.LocalNoiseError):
        init.write_message(bytes(noise.MAX_MESSAGE))
    # Neither refusal changed anything: the handshake runs normally.
    assert handshake(init, resp) == [b"one", b"two", b"three"]


# -------------------------------------------------------------- API misuse

def test_out_of_turn_and_after_completion_calls_raise_local_error(backend):
    init, resp = make_pair(backend, "IK")
    assert init.is_my_turn and not resp.is_my_turn
    with pytest.raises(noise.LocalNoiseError):
        init.read_message(b"x" * 100)
    with pytest.raises(noise.LocalNoiseError):
        resp.write_message()
    with pytest.raises(noise.LocalNoiseError):
        init.split()
    with pytest.raises(noise.LocalNoiseError):
        init.handshake_hash
    handshake(init, resp)
    for state in (init, resp):
        with pytest.raises(noise.LocalNoiseError):
            state.write_message()


@pytest.mark.parametrize("kwargs", [
    dict(pattern="XX", initiator=True),                          # no static key
    dict(pattern="IK", initiator=True, static_private=bytes(range(32))),  # no pinned key
    dict(pattern="XX", initiator=True, static_private=bytes(range(32)),
         remote_static=bytes(32)),                               # XX learns it itself
    dict(pattern="XX", initiator=False, static_private=b"short"),
    dict(pattern="KK", initiator=True),
])
def test_bad_construction_raises_local_error(backend, kwargs):
    with pytest.raises(noise.LocalNoiseError):
        noise.HandshakeState(backend=backend, **kwargs)


# ------------------------------------------------------------- CipherState

def transport_pair(backend):
    init, resp = make_pair(backend, "XX")
    handshake(init, resp)
    return init.split()[0], resp.split()[1]


def test_decrypt_failure_does_not_advance_nonce(backend):
    send, recv = transport_pair(backend)
    first = send.encrypt_with_ad(b"", b"first")
    with pytest.raises(noise.DecryptError):
        recv.decrypt_with_ad(b"", flip(first, 0))
    with pytest.raises(noise.DecryptError):
        recv.decrypt_with_ad(b"wrong ad", first)
    with pytest.raises(noise.RemoteNoiseError):
        recv.decrypt_with_ad(b"", first[:noise.TAGLEN - 1])
    assert recv.n == 0
    assert recv.decrypt_with_ad(b"", first) == b"first"
    assert recv.n == 1
    with pytest.raises(noise.DecryptError):  # a replay no longer decrypts
        recv.decrypt_with_ad(b"", first)


def test_set_nonce_allows_out_of_order_delivery(backend):
    send, recv = transport_pair(backend)
    messages = [send.encrypt_with_ad(b"", b"m%d" % n) for n in range(3)]
    recv.set_nonce(2)
    assert recv.decrypt_with_ad(b"", messages[2]) == b"m2"
    recv.set_nonce(0)
    assert recv.decrypt_with_ad(b"", messages[0]) == b"m0"


def test_nonce_two_to_the_64_minus_one_is_reserved(backend):
    send, recv = transport_pair(backend)
    send.set_nonce(noise.MAX_NONCE - 1)
    recv.set_nonce(noise.MAX_NONCE - 1)
    assert recv.decrypt_with_ad(b"", send.encrypt_with_ad(b"", b"last")) == b"last"
    with pytest.raises(noise.LocalNoiseError):
        send.encrypt_with_ad(b"", b"one too many")
    with pytest.raises(noise.LocalNoiseError):
        recv.decrypt_with_ad(b"", bytes(32))


def test_rekey_changes_the_key_on_both_sides_in_step(backend):
    send, recv = transport_pair(backend)
    before = send.k
    send.rekey()
    assert send.k != before and send.n == 0
    stale = send.encrypt_with_ad(b"", b"after rekey")
    with pytest.raises(noise.DecryptError):  # receiver has not rekeyed yet
        recv.decrypt_with_ad(b"", stale)
    recv.rekey()
    assert recv.decrypt_with_ad(b"", stale) == b"after rekey"


def test_rekey_is_the_section_11_3_formula(backend):
    state = noise.CipherState(backend, bytes(range(32)))
    expected = backend.aead_encrypt(bytes(range(32)), b"\x00" * 4 + b"\xff" * 8,
                                    bytes(32), b"")[:32]
    state.rekey()
    assert state.k == expected


def test_cipherstate_without_key_passes_data_through(backend):
    state = noise.CipherState(backend)
    assert state.encrypt_with_ad(b"ad", b"plain") == b"plain"
    assert state.decrypt_with_ad(b"ad", b"plain") == b"plain"
    assert state.n == 0
