"""The receiver's fast path (SecureChannel.open_data's inline case and
open_run) against the general path (_open_any, any epoch) on the same
frames: in order, reordered, duplicated, replayed, forged, malformed, across
an epoch change. Same plaintexts, same refusals, same window and keys."""

import random

import pytest

from peerpunch import crypto
from peerpunch.secure import (DATA, HEADER_AD, OVERHEAD, RECORD_AD, REKEY_INTERVAL, FrameRejected,
                              SecureChannel, _HEADER)

from .test_crypto import get_or_skip
from .test_secure import pair, run

REJECTED = "rejected"


@pytest.fixture(params=[(name, layout) for name in crypto.BACKEND_NAMES
                        for layout in (HEADER_AD, RECORD_AD)], ids=lambda p: "-".join(p))
def backend(request):
    """A backend, and the layout the scenario's channels use (``.layout``)."""
    return Laid(get_or_skip(request.param[0]), request.param[1])


class Laid:
    def __init__(self, inner, layout):
        self.inner, self.layout = inner, layout

    def __getattr__(self, name):
        return getattr(self.inner, name)


def general(channel, frame):
    """open_data by the general path alone."""
    if len(frame) < OVERHEAD or frame[0] != DATA:
        raise FrameRejected("not a DATA frame")
    return channel._open_any(frame, _HEADER.unpack_from(frame)[1])


def twin(channel):
    """A receiver with *channel*'s keys and nothing received yet."""
    other = SecureChannel(initiator=channel.initiator, static_private=channel.static_private,
                          backend=channel.backend)
    other.layout = channel.layout
    other._send_key, other._recv_key = channel._send_key, channel._recv_key
    other._openers = {other._recv_key: channel.backend.keyed(other._recv_key, channel.layout)}
    other._opener = other._openers[other._recv_key]
    other.ready = True
    return other


def state(channel):
    window = channel._window
    return (window.top, list(window._bits), channel._recv_epoch, channel._recv_key,
            channel._prev_recv_key)


def scenario(backend):
    """(the receiver, the frames it is handed): every case, in one list."""
    sender, receiver = pair(backend.inner, offers=(backend.layout == RECORD_AD,) * 2)
    run(sender, receiver)
    assert receiver.layout == backend.layout
    fresh = [sender.seal(b"\xf8 packet %d" % i) for i in range(24)]
    forged = fresh[13][:-1] + bytes([fresh[13][-1] ^ 1])
    header_forged = fresh[14][:5] + bytes([fresh[14][5] ^ 1]) + fresh[14][6:]
    frames = fresh[:10] + [fresh[12], fresh[10], fresh[11], fresh[12], fresh[3], forged,
                           fresh[13], b"\xe4" + bytes(OVERHEAD - 2), b'"Ping"' * 5,
                           header_forged, fresh[14]] + fresh[15:20]
    sender._send_counter += 5000                  # far ahead: fresh[20:] fall below the window
    frames += [sender.seal(b"ahead")] + fresh[20:]
    sender._send_counter = REKEY_INTERVAL - 3     # an epoch change inside the run
    boundary = [sender.seal(b"\xc1 epoch %d" % i) for i in range(6)]
    frames += [boundary[0], boundary[3], boundary[1], boundary[4], boundary[2], boundary[3],
               boundary[5]]
    far = _HEADER.pack(DATA, 3 * REKEY_INTERVAL) + bytes(40)      # two epochs on: refused
    return receiver, frames + [far, fresh[0]]


def one_by_one(channel, frames, opener):
    results, states = [], []
    for frame in frames:
        try:
            results.append(opener(channel, frame))
        except FrameRejected:
            results.append(REJECTED)
        states.append(state(channel))
    return results, states


def test_secure_run_open_data_fast_path_equals_the_general_path(backend):
    receiver, frames = scenario(backend)
    fast, slow = twin(receiver), twin(receiver)
    expected = one_by_one(slow, frames, general)
    assert one_by_one(fast, frames, SecureChannel.open_data) == expected
    results = expected[0]
    assert results.count(REJECTED) == 13 and b"\xc1 epoch 5" in results
    assert fast._recv_epoch == 1 and fast._prev_recv_key == receiver._recv_key


@pytest.mark.parametrize("seed", range(4))
def test_secure_run_open_run_equals_open_data_of_each(backend, seed):
    receiver, frames = scenario(backend)
    rng = random.Random(seed)
    fast, slow = twin(receiver), twin(receiver)
    results, _ = one_by_one(slow, frames, general)
    opened, refused, at = [], [], 0
    while at < len(frames):                       # runs of random lengths
        run_frames = frames[at:at + rng.randint(1, 12)]
        plaintexts, rejected, end = fast.open_run(run_frames, lambda p: True)
        assert end == len(run_frames)
        opened += plaintexts
        refused += rejected
        at += end
    assert opened == [r for r in results if r != REJECTED]
    assert refused == [f for f, r in zip(frames, results) if r == REJECTED]
    assert state(fast) == state(slow)


def test_secure_run_open_run_stops_after_an_unwanted_plaintext(backend):
    receiver, frames = scenario(backend)
    fast, slow = twin(receiver), twin(receiver)
    results, _ = one_by_one(slow, frames[:12], general)
    plaintexts, refused, end = fast.open_run(frames, lambda p: p != b"\xf8 packet 12")
    assert end == 11 and plaintexts[-1] == b"\xf8 packet 12"
    assert plaintexts == [r for r in results[:11] if r != REJECTED] and not refused
    assert fast.open_run(frames[end:], lambda p: True)[0][:2] == [b"\xf8 packet 10",
                                                                   b"\xf8 packet 11"]
