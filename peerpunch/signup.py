"""Registering with the relay: the first Register until it is acknowledged.

Theory of operation
-------------------
:class:`Signup` belongs to the :class:`~peerpunch.relayclient.RelayClient`
and is its state (:data:`TRANSITIONS`)::

    REGISTERING --ack--> REGISTERED --quit--> CLOSED
    REGISTERING --refused | no ack in register_timeout--> CLOSED

The first Register is retried after REGISTER_RTO, doubling up to
REGISTER_RTO_MAX, until a RegisterAck comes; we say so at the start, once
more after SLOW_AFTER, and why if it fails. Once registered, re-registering
is :class:`~peerpunch.liveness.Liveness`'s business.

It also keeps what proves us to the relay: the ``cookie`` of a relay of this
version, which answers a Register from an address where we have not proven
ourselves with a Cookie (we register again at once with it, and the retries
carry it until a RegisterAck brings the token), and the ``token`` (it lets
us move to a new address; a new one is how a restarted relay shows itself).
A new token in the ack of a relay of the previous version (one that echoes
no nonce) must be echoed at once: that proves we are at our address.

What it needs of the client: ``register()``, the Register to send now (a
Send), built by the client from all it knows; ``closed()``, called once
CLOSED (the client stops its other timers).
"""

import enum

from .events import (REGISTER_RTO, REGISTER_RTO_MAX, SLOW_AFTER, Closed, Failed, Registered,
                     Registering, RelayRefused, StillRegistering)
from .timers import Timer


class RelayState(enum.Enum):
    REGISTERING = "registering"
    REGISTERED = "registered"
    CLOSED = "closed"


TRANSITIONS = {
    (RelayState.REGISTERING, "ack"): RelayState.REGISTERED,
    (RelayState.REGISTERING, "refused"): RelayState.CLOSED,
    (RelayState.REGISTERING, "timeout"): RelayState.CLOSED,
    (RelayState.REGISTERING, "quit"): RelayState.CLOSED,
    (RelayState.REGISTERED, "quit"): RelayState.CLOSED,
}


class Signup:
    """Our registration as *username* with the relay at *endpoint*; gives up
    after *timeout* seconds without an ack."""

    def __init__(self, username, endpoint, timeout, register, closed):
        self.username = username
        self.endpoint = endpoint
        self.timeout = timeout
        self.state = RelayState.REGISTERING
        self.token = None            # from RegisterAck: lets us move to a new address
        self.cookie = None           # from the relay's Cookie, until the RegisterAck
        self._register = register
        self._closed = closed
        self._since = 0.0
        self._rto = REGISTER_RTO
        self.retry = Timer(self._retry_due)
        self.slow = Timer(self._slow_due)

    def timers(self):
        return (self.retry, self.slow)

    def _move(self, trigger):
        self.state = TRANSITIONS[(self.state, trigger)]
        if self.state is not RelayState.REGISTERING:
            self.retry.stop()
            self.slow.stop()
        if self.state is RelayState.CLOSED:
            self._closed()

    # -- inputs

    def start(self, now):
        self._since = now
        self.slow.at(now + SLOW_AFTER)
        return [Registering(self.username, self.endpoint)] + self._send(now)

    def cookie_received(self, cookie):
        """The relay's Cookie: register again at once with it (a copy of the
        one we have changes nothing)."""
        if cookie == self.cookie:
            return []
        self.cookie = cookie
        return [self._register()]

    def learn(self, token, ext, legacy):
        """The token of a RegisterAck (*ext*: from a relay that speaks
        ``ext``; *legacy*: one that echoes no nonce). True if the new token
        must be echoed at once, as proof of our address."""
        if token or not ext:
            self.cookie = None           # proven: the token does the rest (kept after a lost ack)
        if not ext:
            self.token = None            # a seed relay (perhaps in place of ours): no tokens
            return False
        if not token or token == self.token:
            return False
        self.token = token
        return legacy

    def acked(self):
        """A RegisterAck (any, after :meth:`learn`): registered, if not yet."""
        if self.state is not RelayState.REGISTERING:
            return []
        self._move("ack")
        return [Registered(self.username, self.endpoint)]

    def refused(self, code, reason):
        """The relay refused our name while we register: the end."""
        self._move("refused")
        return [Closed(1, RelayRefused(code, self.username, reason))]

    def quit(self):
        self._move("quit")

    # -- timers

    def _retry_due(self, now):
        if now - self._since >= self.timeout:
            self._move("timeout")
            return [Closed(1, Failed("relay_unanswered", relay=self.endpoint,
                                     seconds=self.timeout))]
        self._rto = min(self._rto * 2, REGISTER_RTO_MAX)
        return self._send(now)

    def _slow_due(self, now):
        if self.state is not RelayState.REGISTERING:
            return []
        return [StillRegistering(self.endpoint, now - self._since)]

    def _send(self, now):
        self.retry.at(min(now + self._rto, self._since + self.timeout))
        return [self._register()]
