"""The secure channel between two of our peers: Noise XX over UDP datagrams.

Theory of operation
-------------------
Once the punch has found a path, the two peers run
``Noise_XX_25519_ChaChaPoly_BLAKE2s`` (:mod:`peerpunch.noise`) over it and
from then on send every message as an AEAD-sealed datagram. This module is
the sans-I/O part: frames in, frames and plaintexts out, time passed in.

Frames are binary. Their first byte is in 0xE1..0xE4, which can start
neither a JSON document nor a STUN message, so one socket carries all three::

    0xE1 HELLO   initiator -> responder   mac(16) | XX message 1 (e)
    0xE2 REPLY   responder -> initiator   mac(16) | XX message 2 (e, ee, s, es)
    0xE3 FINISH  initiator -> responder   XX message 3 (s, se)
    0xE4 DATA    both ways                counter(8, big-endian) | sealed JSON message

*mac* is a keyed BLAKE2s-128 over the rest of the frame, keyed with the
session secret the relay gave both peers in PeerInfo. It is checked before
any Diffie-Hellman, so a flood of forged HELLOs costs a hash each, not an
X25519 (WireGuard's mac1 idea); the responder also runs at most
HANDSHAKE_RATE handshakes per second.

UDP loses datagrams, so the initiator repeats HELLO until REPLY arrives and
FINISH until the first DATA from the responder proves it has the keys (the
responder sends one at once); the responder answers a repeated HELLO with
its cached REPLY and a repeated FINISH with another DATA. Until then the
initiator sends no data, so nothing is sealed under keys the other side
lacks. A handshake that has not finished within HANDSHAKE_TIMEOUT fails.

DATA frames carry an explicit counter, used as the Noise nonce (4 zero
bytes and the counter, little-endian) with the 9-byte header as associated
data -- or, when both sides offered it in their handshake payloads
(REPLY's and FINISH's, authenticated: RECORD_OFFER; older peers send none
and ignore ours), 13 bytes built from it that libcrypto seals and opens in
two calls, not five (``layout`` "record", :mod:`peerpunch.crypto.keyed`).
The receiver checks a replay window before decrypting and marks it only
after the tag verifies, so reordering within the window is fine and forged or
replayed frames change nothing. Keys move forward every REKEY_INTERVAL
messages by Noise's REKEY function, long before any nonce limit; the
receiver keeps the previous epoch's key for stragglers.
"""

import hashlib
import hmac
import struct

from . import noise
from .crypto import InvalidTag
from .crypto.keyed import HEADER_AD, RECORD_AD
from .protocol import RemoteProtocolError
from .replay import ReplayWindow

HELLO, REPLY, FINISH, DATA = 0xE1, 0xE2, 0xE3, 0xE4
FRAME_TYPES = frozenset((HELLO, REPLY, FINISH, DATA))
DATA_BYTE = bytes((DATA,))        # a DATA frame's first byte, as bytes
_KIND_NAMES = {HELLO: "HELLO", REPLY: "REPLY", FINISH: "FINISH", DATA: "DATA"}
MAC_LEN = 16
HEADER_LEN = 9
TAG_LEN = 16
OVERHEAD = HEADER_LEN + TAG_LEN

RETRANSMIT = 0.5
HANDSHAKE_TIMEOUT = 10.0
HANDSHAKE_RATE = 10.0            # Diffie-Hellman handshakes a responder starts per second
REKEY_INTERVAL = 1 << 20          # messages per key
MAX_EPOCH_SKIP = 1                # a receiver derives the next key, no further

PROTOCOL_PROLOGUE = b"peerpunch/1 Noise_XX"


def is_frame(data):
    """True if *data* is one of ours, not JSON or STUN."""
    return bool(data) and data[0] in FRAME_TYPES


class HandshakeFailed(Exception):
    """The secure handshake cannot complete; the message says why."""


class FrameRejected(RemoteProtocolError):
    """A frame that does not authenticate, or is not wanted now: drop it.
    The channel is exactly as before the frame."""


class SecureChannel:
    """One side of a Noise XX channel.

    ``start(now)`` and ``tick(now)`` return frames to send; ``tick`` raises
    HandshakeFailed when the handshake is beyond saving.
    ``open(frame, now)`` returns ``(frames_to_send, plaintexts)`` or raises
    FrameRejected for a frame that does not authenticate (nothing changes);
    ``receive`` is the same but drops such a frame, counted in ``dropped``.
    ``ready`` says whether ``seal(plaintext)`` may be used.
    """

    def __init__(self, *, initiator, static_private, backend, prologue=b"", mac_key=b"",
                 record=True):
        self.initiator = initiator
        self.backend = backend
        self.record = record            # we offer the record layout
        self.layout = HEADER_AD         # what both use: known once the keys are
        self.prologue = PROTOCOL_PROLOGUE + b"|" + prologue
        self.static_private = static_private
        self.mac_key = mac_key[:32]
        self.ready = False
        self.remote_static = None
        self.handshake_hash = None
        self.dropped = 0
        self.handshakes = 0
        self._hs = None
        self._pending = None            # the frame we repeat until answered
        self._hello = None              # responder: the HELLO our REPLY answers
        self._retransmit_at = None
        self._deadline = None
        self._tokens = HANDSHAKE_RATE
        self._tokens_at = None
        self._send_key = self._recv_key = self._prev_recv_key = None
        self._sealer = None             # the send key bound (crypto.keyed)
        self._openers = {}              # receive key -> its key bound
        self._opener = None             # the current epoch's, bound (open_data's fast path)
        self._send_counter = 0
        self._recv_epoch = 0
        self._window = ReplayWindow()

    # -- handshake

    def start(self, now):
        """Begin: the initiator sends HELLO, the responder waits for one."""
        self._deadline = now + HANDSHAKE_TIMEOUT
        self._tokens_at = now
        if not self.initiator:
            return []
        self._hs = self._new_handshake()
        self._hs_count()
        body = self._hs.write_message()
        return [self._repeat(self._with_mac(HELLO, body), now)]

    def tick(self, now):
        if self.ready:
            return []
        if self._deadline is not None and now >= self._deadline:
            raise HandshakeFailed("no secure handshake within %g s" % HANDSHAKE_TIMEOUT)
        if self._retransmit_at is not None and now >= self._retransmit_at and self._pending:
            self._retransmit_at = now + RETRANSMIT
            return [self._pending]
        return []

    def next_deadline(self):
        if self.ready:
            return None
        times = [t for t in (self._retransmit_at, self._deadline) if t is not None]
        return min(times) if times else None

    def receive(self, frame, now):
        try:
            return self.open(frame, now)
        except FrameRejected:
            self.dropped += 1
            return [], []

    def open(self, frame, now):
        kind = frame[0] if frame else None
        try:
            if kind == DATA:
                return self._on_data(frame, now)
            if kind == HELLO and not self.initiator:
                return self._on_hello(frame, now), []
            if kind == REPLY and self.initiator:
                return self._on_reply(frame, now), []
            if kind == FINISH and not self.initiator:
                return self._on_finish(frame, now), []
        except (noise.RemoteNoiseError, InvalidTag) as exc:
            raise FrameRejected("%s frame: %s" % (_KIND_NAMES[kind], exc)) from None
        raise FrameRejected("not a frame this side takes now" if kind in FRAME_TYPES else
                            "not a frame")

    def _on_hello(self, frame, now):
        body = self._checked_mac(frame)
        if frame == self._hello and self._pending:
            return [self._pending]                     # our REPLY was lost
        if self._complete() or not self._take_token(now):
            raise FrameRejected("HELLO not wanted now")
        hs = self._new_handshake()
        hs.read_message(body)
        reply = self._with_mac(REPLY, hs.write_message(self._offer()))
        self._hs_count()
        self._hs, self._hello = hs, frame
        self._pending = reply                          # resent on a repeated HELLO only
        return [reply]

    def _on_reply(self, frame, now):
        body = self._checked_mac(frame)
        if self._hs is None or self._complete() or self._hs.is_my_turn:
            raise FrameRejected("REPLY not expected")
        theirs = self._hs.read_message(body)
        finish = bytes([FINISH]) + self._hs.write_message(self._offer())
        self._finish_handshake(theirs)
        return [self._repeat(finish, now)]             # until the responder's first DATA

    def _on_finish(self, frame, now):
        if self._complete():
            if self.ready and self._pending == frame:  # our confirmation was lost
                return [self.seal(CONFIRM)]
            raise FrameRejected("FINISH not expected")
        if self._hs is None:
            raise FrameRejected("FINISH before HELLO")
        theirs = self._hs.read_message(frame[1:])
        self._finish_handshake(theirs)
        self._pending, self._retransmit_at = frame, None
        self.ready = True
        return [self.seal(CONFIRM)]

    def _offer(self):
        return RECORD_OFFER if self.record else b""

    def _finish_handshake(self, theirs):
        """The keys, and the layout: the record one if both offered it."""
        both = self.record and RECORD_OFFER in bytes(theirs).split()
        self.layout = RECORD_AD if both else HEADER_AD
        self.remote_static = self._hs.remote_static
        self.handshake_hash = self._hs.handshake_hash
        send, recv = self._hs.split()
        self._send_key, self._recv_key = send.k, recv.k
        self._sealer = self.backend.keyed(send.k, self.layout)
        self._openers = {recv.k: self.backend.keyed(recv.k, self.layout)}
        self._opener = self._openers[recv.k]

    def _complete(self):
        return self._send_key is not None

    def _new_handshake(self):
        return noise.HandshakeState("XX", initiator=self.initiator,
                                    static_private=self.static_private,
                                    prologue=self.prologue, backend=self.backend)

    def _hs_count(self):
        self.handshakes += 1

    def _take_token(self, now):
        self._tokens = min(HANDSHAKE_RATE, self._tokens + (now - self._tokens_at) * HANDSHAKE_RATE)
        self._tokens_at = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True

    def _repeat(self, frame, now):
        self._pending, self._retransmit_at = frame, now + RETRANSMIT
        return frame

    def _mac(self, data):
        return hashlib.blake2s(data, key=self.mac_key, digest_size=MAC_LEN).digest()

    def _with_mac(self, kind, body):
        head = bytes([kind])
        return head + self._mac(head + body) + body

    def _checked_mac(self, frame):
        mac, body = frame[1:1 + MAC_LEN], frame[1 + MAC_LEN:]
        if not hmac.compare_digest(mac, self._mac(frame[:1] + body)):
            raise FrameRejected("bad mac")
        return body

    # -- transport

    def seal(self, plaintext):
        """One DATA frame carrying *plaintext*; only when ``ready``."""
        counter = self._send_counter
        if counter and counter % REKEY_INTERVAL == 0:
            self._send_key = _rekey(self.backend, self._send_key)
            self._sealer = self.backend.keyed(self._send_key, self.layout)
        self._send_counter += 1
        header = _HEADER.pack(DATA, counter)
        return header + self._sealer.seal(_NONCE.pack(counter), plaintext, header)

    def seal_run(self, plaintexts):
        """``seal`` of each of *plaintexts*, in one call (a burst of stream packets)."""
        first = self._send_counter
        counters = range(first, first + len(plaintexts))
        if (first and first % REKEY_INTERVAL == 0) or \
                first // REKEY_INTERVAL != (counters.stop - 1) // REKEY_INTERVAL:
            return [self.seal(p) for p in plaintexts]     # a new key within the run
        self._send_counter = counters.stop
        headers = list(map(_HEADER.pack, [DATA] * len(counters), counters))
        return self._sealer.seal_counted(counters, plaintexts, headers)

    def _on_data(self, frame, now):
        if not self._complete():
            raise FrameRejected("no keys yet")
        plaintext = self.open_data(frame)
        if not self.ready:                     # the initiator's proof the responder has keys
            self.ready = True
            self._pending = self._retransmit_at = None
        return [], [plaintext]

    def open_data(self, frame):
        """The plaintext of a DATA *frame*, once keys are agreed (``ready``,
        or what ``open`` needs first); raises FrameRejected, and then
        nothing changes. What ``open`` does for DATA, without its dispatch:
        the path a bulk transfer's datagrams take, so its common case -- a
        counter of the current epoch -- is inline here and must equal
        :meth:`_open_any` (any epoch, the general path): the window checked
        before the tag, marked only once the tag verifies."""
        if len(frame) < OVERHEAD or frame[0] != DATA:
            raise FrameRejected("short frame" if len(frame) < OVERHEAD else "not a DATA frame")
        counter = _HEADER.unpack_from(frame)[1]
        if counter // REKEY_INTERVAL != self._recv_epoch or self._opener is None:
            return self._open_any(frame, counter)
        window = self._window
        if counter <= window.top and not window.check(counter):
            raise FrameRejected("replayed or too old")
        try:
            plaintext = self._opener.open_counted(counter, frame, HEADER_LEN)
        except InvalidTag as exc:
            raise FrameRejected("DATA frame: %s" % exc) from None
        window.update(counter)
        return plaintext

    def open_run(self, frames, wanted):
        """Open *frames* in turn, each exactly as ``open_data`` would, until
        a plaintext that ``wanted(plaintext)`` refuses (a protocol message
        among stream packets, say): ``(plaintexts, refused, end)``, the
        plaintexts in order (the unwanted one last), the frames that did not
        open (FrameRejected: nothing changed for them), and the index after
        the last frame taken (``frames[end:]`` untouched). It exists for the
        bulk receiver: ``open_data``'s fast path, inline here, once per frame."""
        plaintexts, refused, window = [], [], self._window
        epoch, opener = self._recv_epoch, self._opener
        for i, frame in enumerate(frames):
            try:
                if len(frame) >= OVERHEAD and frame[0] == DATA:
                    counter = _HEADER.unpack_from(frame)[1]
                    if counter // REKEY_INTERVAL == epoch and opener is not None \
                            and (counter > window.top or window.check(counter)):
                        plaintext = opener.open_counted(counter, frame, HEADER_LEN)
                        window.update(counter)
                    else:
                        plaintext = self._open_any(frame, counter)
                        epoch, opener = self._recv_epoch, self._opener   # it may move on
                else:
                    plaintext = self.open_data(frame)        # says why not
            except (FrameRejected, InvalidTag):
                refused.append(frame)
                continue
            plaintexts.append(plaintext)
            if not wanted(plaintext):
                return plaintexts, refused, i + 1
        return plaintexts, refused, len(frames)

    def _open_any(self, frame, counter):
        """``open_data`` of a frame of any epoch: the previous one's
        stragglers, the next one (which moves the epoch on)."""
        header = frame[:HEADER_LEN]
        window = self._window
        if not window.check(counter):
            raise FrameRejected("replayed or too old")
        epoch = counter // REKEY_INTERVAL
        key = self._recv_key if epoch == self._recv_epoch else self._key_for(epoch)[0]
        opener = self._openers.get(key)
        if opener is None:
            opener = self.backend.keyed(key, self.layout)
        try:
            plaintext = opener.open(_NONCE.pack(counter), frame[HEADER_LEN:], bytes(header))
        except InvalidTag as exc:
            raise FrameRejected("DATA frame: %s" % exc) from None
        window.update(counter)
        if epoch > self._recv_epoch:
            self._prev_recv_key, self._recv_key, self._recv_epoch = self._recv_key, key, epoch
            self._openers = {key: opener, self._prev_recv_key: self._openers.get(
                self._prev_recv_key)}
            self._opener = opener
        return plaintext

    def _key_for(self, epoch):
        if epoch == self._recv_epoch:
            return self._recv_key, epoch
        if epoch == self._recv_epoch - 1 and self._prev_recv_key is not None:
            return self._prev_recv_key, epoch
        if self._recv_epoch < epoch <= self._recv_epoch + MAX_EPOCH_SKIP:
            key = self._recv_key
            for _ in range(epoch - self._recv_epoch):
                key = _rekey(self.backend, key)
            return key, epoch
        raise FrameRejected("epoch out of range")


CONFIRM = b'"Pong"'
"""What the responder seals first: any authenticated DATA confirms the keys."""

RECORD_OFFER = b"seal2"
"""In a handshake payload (words; others ignored): the sender can use the record layout."""


_HEADER = struct.Struct(">BQ")           # DATA, counter
_NONCE = struct.Struct("<4xQ")           # Noise's nonce: 4 zero bytes, the counter


def _rekey(backend, key):
    return backend.aead_encrypt(key, _NONCE.pack(noise.MAX_NONCE), bytes(32), b"")[:32]
