"""How messages travel to the peer once the punch has found a path.

A link turns messages into datagrams and back. :class:`PlainLink` is the
seed's way, one JSON document per datagram, for a peer that cannot encrypt.
:class:`SecureLink` runs :class:`peerpunch.secure.SecureChannel` first and then
seals every message; it drops every plain datagram except that, until its
own handshake is done, it still answers a plain ``Ping`` probe with a plain
``Pong`` so a peer still punching can finish.

Both have the same shape: ``start(now)`` and ``tick(now)`` return datagrams;
``receive(data, now)`` returns ``(datagrams, messages)``, where *messages*
are decoded protocol objects that authenticated (for the plain link, that
parsed); ``seal(msg)`` gives the datagram for *msg* once ``ready``.
LinkFailed means the link cannot come up.
"""

from . import protocol as P
from . import secure

PING = P.encode(P.Ping())
PONG = P.encode(P.Pong())


class LinkFailed(Exception):
    pass


class PlainLink:
    secure = False
    ready = True
    remote_key = None

    def __init__(self):
        self.dropped = 0

    def start(self, now):
        return []

    def tick(self, now):
        return []

    def next_deadline(self):
        return None

    def receive(self, data, now):
        try:
            return [], [P.decode(data)]
        except P.RemoteProtocolError:
            self.dropped += 1
            return [], []

    def seal(self, msg):
        return P.encode(msg)


class SecureLink:
    secure = True

    def __init__(self, channel):
        self.channel = channel
        self.dropped = 0

    @property
    def ready(self):
        return self.channel.ready

    @property
    def remote_key(self):
        return self.channel.remote_static

    def start(self, now):
        return self.channel.start(now)

    def tick(self, now):
        try:
            return self.channel.tick(now)
        except secure.HandshakeFailed as exc:
            raise LinkFailed(str(exc)) from None

    def next_deadline(self):
        return self.channel.next_deadline()

    def receive(self, data, now):
        if not secure.is_frame(data):
            if not self.ready and data == PING:
                return [PONG], []
            self.dropped += 1
            return [], []
        before = self.channel.dropped
        frames, plaintexts = self.channel.receive(data, now)
        self.dropped += self.channel.dropped - before
        messages = []
        for plaintext in plaintexts:
            try:
                messages.append(P.decode(plaintext))
            except P.RemoteProtocolError:
                self.dropped += 1       # authentic but not a message we know
        return frames, messages

    def seal(self, msg):
        return self.channel.seal(P.encode(msg))
