"""The secure channel: two SecureChannels joined by an in-memory link."""

import random

import pytest

from peerpunch import crypto, secure
from peerpunch.secure import DATA, FINISH, HELLO, REPLY, HandshakeFailed, SecureChannel

from .test_crypto import get_or_skip


@pytest.fixture(scope="module")
def backend():
    return crypto.get_backend("auto")


class CountingBackend:
    """Wraps a backend to count Diffie-Hellman operations."""

    def __init__(self, inner):
        self.inner, self.dh = inner, 0

    def x25519(self, private, public):
        self.dh += 1
        return self.inner.x25519(private, public)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def pair(backend, mac_key=b"s" * 16, prologue=b"alice|bob", offers=(True, True)):
    """Initiator and responder; *offers*: whether each offers the record layout."""
    a = SecureChannel(initiator=True, static_private=crypto.generate_private_key(),
                      backend=backend, prologue=prologue, mac_key=mac_key, record=offers[0])
    b = SecureChannel(initiator=False, static_private=crypto.generate_private_key(),
                      backend=backend, prologue=prologue, mac_key=mac_key, record=offers[1])
    return a, b


def run(a, b, now=0.0, loss=0.0, seed=0, until=5.0, log=None):
    """Carry frames between a and b, ticking time, until both are ready."""
    rng = random.Random(seed)
    wire = [(a, b, f) for f in a.start(now)] + [(b, a, f) for f in b.start(now)]
    got = {a: [], b: []}
    while now < until and not (a.ready and b.ready and not wire):
        for src, dst, frame in wire:
            if log is not None:
                log.append((src, frame))
        deliver, wire = wire, []
        for src, dst, frame in deliver:
            if rng.random() < loss:
                continue
            out, plain = dst.receive(frame, now)
            got[dst] += plain
            wire += [(dst, src, f) for f in out]
        now += 0.05
        wire += [(a, b, f) for f in a.tick(now)] + [(b, a, f) for f in b.tick(now)]
    return got


def test_secure_handshake_completes_and_both_see_the_other_key(backend):
    a, b = pair(backend)
    run(a, b)
    assert a.ready and b.ready
    assert a.remote_static == backend.x25519_public(b.static_private)
    assert b.remote_static == backend.x25519_public(a.static_private)
    assert a.handshake_hash == b.handshake_hash
    sealed = a.seal(b'{"DirectMessage":{"content":"hi"}}')
    assert b"hi" not in sealed and sealed[0] == DATA
    assert b.receive(sealed, 1.0) == ([], [b'{"DirectMessage":{"content":"hi"}}'])
    assert a.receive(b.seal(b'"Ping"'), 1.0) == ([], [b'"Ping"'])


@pytest.mark.parametrize("seed", range(10))
def test_secure_handshake_survives_30_percent_loss(backend, seed):
    a, b = pair(backend)
    run(a, b, loss=0.3, seed=seed, until=9.0)
    assert a.ready and b.ready, seed


def test_secure_handshake_times_out_with_a_reason(backend):
    a, _ = pair(backend)
    a.start(0.0)
    assert a.tick(0.6)[0][0] == HELLO                     # retransmitted
    with pytest.raises(HandshakeFailed, match="no secure handshake within 10 s"):
        a.tick(10.0)


def test_secure_wrong_session_secret_never_reaches_diffie_hellman(backend):
    counting = CountingBackend(backend)
    a = SecureChannel(initiator=True, static_private=crypto.generate_private_key(),
                      backend=backend, mac_key=b"right" * 4)
    b = SecureChannel(initiator=False, static_private=crypto.generate_private_key(),
                      backend=counting, mac_key=b"wrong" * 4)
    b.start(0.0)
    hello = a.start(0.0)[0]
    assert b.receive(hello, 0.0) == ([], []) and counting.dh == 0 and b.dropped == 1


def test_secure_handshake_flood_costs_macs_not_diffie_hellman(backend):
    """Thousands of forged HELLOs: each costs one hash; valid ones are rate limited."""
    counting = CountingBackend(backend)
    b = SecureChannel(initiator=False, static_private=crypto.generate_private_key(),
                      backend=counting, mac_key=b"k" * 16)
    b.start(0.0)
    rng = random.Random(3)
    for i in range(5000):
        junk = bytes([HELLO]) + bytes(rng.getrandbits(8) for _ in range(48))
        b.receive(junk, i / 5000)
    assert counting.dh == 0 and b.dropped == 5000
    # correctly MACed floods (an attacker who knows the session secret) are rate limited
    for i in range(1000):
        a = SecureChannel(initiator=True, static_private=crypto.generate_private_key(),
                          backend=backend, mac_key=b"k" * 16)
        b.receive(a.start(1.0 + i / 1000)[0], 1.0 + i / 1000)
    assert b.handshakes <= 2 * secure.HANDSHAKE_RATE + 1
    assert counting.dh <= 2 * (2 * secure.HANDSHAKE_RATE + 1)


def test_secure_forged_and_plain_datagrams_are_dropped(backend):
    a, b = pair(backend)
    run(a, b)
    frames = [b'{"DirectMessage":{"content":"forged"}}', bytes([DATA]) + bytes(40),
              bytes([DATA]) + (10).to_bytes(8, "big") + bytes(30), bytes([FINISH]) + bytes(64),
              bytes([REPLY]) + bytes(100), bytes([DATA])]
    for f in frames:
        if secure.is_frame(f):
            assert b.receive(f, 1.0) == ([], [])
    assert not secure.is_frame(frames[0]) and b.dropped >= len(frames) - 1


def test_secure_tampered_data_is_dropped(backend):
    a, b = pair(backend)
    run(a, b)
    sealed = a.seal(b"payload")
    for i in range(len(sealed)):
        bad = bytearray(sealed)
        bad[i] ^= 0x01
        if i == 0:
            continue                   # a different frame type entirely
        assert b.receive(bytes(bad), 1.0) == ([], []), i
    assert b.receive(sealed, 1.0) == ([], [b"payload"])   # the genuine one still counts


def test_secure_replays_refused_reordering_accepted(backend):
    a, b = pair(backend)
    run(a, b)
    frames = [a.seal(b"m%d" % i) for i in range(3000)]
    order = list(range(3000))
    random.Random(9).shuffle(order)
    got = [b.receive(frames[i], 1.0)[1] for i in order]
    assert all(g == [b"m%d" % i] for g, i in zip(got, order))
    assert all(b.receive(f, 2.0) == ([], []) for f in frames)


def test_secure_keys_rotate_and_stragglers_still_open(backend, monkeypatch):
    monkeypatch.setattr(secure, "REKEY_INTERVAL", 8)
    a, b = pair(backend)
    run(a, b)
    frames, keys = [], set()
    for i in range(40):
        frames.append(a.seal(b"%d" % i))
        keys.add(a._send_key)
    assert len(keys) == 40 // 8                          # a new key every 8 messages
    order = list(range(40))
    order[7], order[8] = order[8], order[7]             # one straggler across a key change
    assert [b.receive(frames[i], 1.0)[1] for i in order] == [[b"%d" % i] for i in order]


def test_secure_lost_finish_is_repeated_until_confirmed(backend):
    a, b = pair(backend)
    b.start(0.0)
    hello = a.start(0.0)[0]
    reply = b.receive(hello, 0.0)[0][0]
    finish = a.receive(reply, 0.1)[0][0]                # lost
    assert not a.ready and not b.ready
    again = a.tick(0.7)
    assert again == [finish]
    out, _ = b.receive(again[0], 0.7)
    assert b.ready and out[0][0] == DATA
    a.receive(out[0], 0.8)
    assert a.ready and a.tick(5.0) == []
    # a late duplicate FINISH is answered with another confirmation, not a new handshake
    assert b.receive(finish, 1.0)[0][0][0] == DATA


def test_secure_repeated_hello_gets_the_cached_reply(backend):
    counting = CountingBackend(backend)
    a = SecureChannel(initiator=True, static_private=crypto.generate_private_key(), backend=backend)
    b = SecureChannel(initiator=False, static_private=crypto.generate_private_key(), backend=counting)
    b.start(0.0)
    hello = a.start(0.0)[0]
    first = b.receive(hello, 0.0)[0]
    dh = counting.dh
    assert b.receive(hello, 0.5)[0] == first and counting.dh == dh


def test_secure_mismatched_prologue_fails(backend):
    a, b = pair(backend)
    b.prologue += b"x"
    run(a, b, until=2.0)
    assert not (a.ready and b.ready)


def test_secure_open_raises_a_remote_error_and_changes_nothing(backend):
    a, b = pair(backend)
    run(a, b)
    sealed = a.seal(b"payload")
    forged = [bytes(sealed[:-1]) + bytes([sealed[-1] ^ 1]), bytes([DATA]) + bytes(40),
              bytes([HELLO]) + bytes(48), bytes([FINISH]) + bytes(64), b"", b'"Ping"']
    for frame in forged:
        with pytest.raises(secure.FrameRejected):
            b.open(frame, 1.0)
    assert issubclass(secure.FrameRejected, secure.RemoteProtocolError)
    assert b.dropped == 0
    assert b.open(sealed, 1.0) == ([], [b"payload"])    # the genuine one still counts
    with pytest.raises(secure.FrameRejected, match="replayed"):
        b.open(sealed, 1.0)


def test_secure_open_data_opens_once_and_refuses_anything_else_changing_nothing(backend):
    a, b = pair(backend)
    run(a, b)
    frames = [a.seal(b"one"), a.seal(b"two")]
    forged = frames[0][:-1] + bytes([frames[0][-1] ^ 1])
    for bad in (forged, frames[0][:20], bytes([0xE1]) + frames[0][1:]):
        with pytest.raises(secure.FrameRejected):
            b.open_data(bad)
    assert b.open_data(frames[1]) == b"two"
    assert b.open_data(frames[0]) == b"one"        # out of order, within the window
    with pytest.raises(secure.FrameRejected):
        b.open_data(frames[0])                     # a replay


@pytest.mark.parametrize("runs", [[5, 3, 8, 1, 0, 7, 9, 7], [40], [1] * 40, [7, 33]])
def test_secure_seal_run_is_seal_one_by_one_across_key_changes(backend, monkeypatch, runs):
    monkeypatch.setattr(secure, "REKEY_INTERVAL", 8)
    a, b = pair(backend)
    run(a, b)
    one, _ = pair(backend)
    one.__dict__.update({k: v for k, v in a.__dict__.items()})   # the same keys and counter
    texts = [b"packet %d " % i * (i % 5 + 1) for i in range(40)]
    frames, at = [], 0
    for size in runs:
        frames += a.seal_run(texts[at:at + size])
        at += size
    assert frames == [one.seal(t) for t in texts]      # same counters, same keys, same bytes
    assert a._send_counter == one._send_counter == 40
    assert [b.receive(f, 1.0)[1] for f in frames] == [[t] for t in texts]


@pytest.mark.parametrize("name", crypto.BACKEND_NAMES)
def test_secure_record_layout_talks_and_frames_keep_their_shape(name):
    backend = get_or_skip(name)
    a, b = pair(backend)
    assert a.layout == b.layout == secure.HEADER_AD         # nothing agreed yet
    run(a, b)
    assert a.ready and b.ready and a.layout == b.layout == secure.RECORD_AD
    frame = a.seal(b'{"Message":{"text":"hi"}}')
    assert frame[0] == DATA and len(frame) == secure.OVERHEAD + 25
    assert secure._HEADER.unpack_from(frame)[1] == a._send_counter - 1
    assert b.receive(frame, 1.0) == ([], [b'{"Message":{"text":"hi"}}'])
    assert b.receive(frame, 1.0) == ([], []) and b.dropped == 1      # a replay
    # The same keys in the header layout: the frame does not open.
    header = secure.SecureChannel(initiator=False, static_private=bytes(32), backend=backend)
    header._recv_key = b._recv_key
    header._openers = {b._recv_key: backend.keyed(b._recv_key)}
    header._opener, header.ready = header._openers[b._recv_key], True
    with pytest.raises(secure.FrameRejected):
        header.open_data(a.seal(b"x"))


@pytest.mark.parametrize("offers", [(True, False), (False, True), (False, False)])
def test_secure_header_layout_unless_both_offer_the_record_one(backend, offers):
    """An older peer (it offers nothing, and ignores an offer) on either side."""
    a, b = pair(backend, offers=offers)
    log = []
    run(a, b, log=log)
    assert a.ready and b.ready and a.layout == b.layout == secure.HEADER_AD
    assert b.receive(a.seal(b"from a"), 1.0)[1] == [b"from a"]
    assert a.receive(b.seal(b"from b"), 1.0)[1] == [b"from b"]
    handshake = [f for _, f in log if f[0] in (REPLY, FINISH)]
    sizes = {f[0]: len(f) for f in handshake}
    assert sizes[REPLY] == 113 + (len(secure.RECORD_OFFER) if offers[1] else 0)
    assert sizes[FINISH] == 65 + (len(secure.RECORD_OFFER) if offers[0] else 0)


def test_secure_offer_is_read_as_words_and_unknown_ones_are_ignored(backend):
    a, b = pair(backend)
    b._offer = lambda: b"future1 " + secure.RECORD_OFFER + b" other"
    run(a, b)
    assert a.layout == b.layout == secure.RECORD_AD
    a, b = pair(backend, offers=(True, False))
    b._offer = lambda: b"seal2x future1"                # a later peer's words, not ours
    run(a, b)
    assert a.ready and b.ready and a.layout == b.layout == secure.HEADER_AD
    assert b.receive(a.seal(b"still talking"), 1.0)[1] == [b"still talking"]
