"""One request to the relay for a partner, from /connect to the punch.

Theory of operation
-------------------
A :class:`Request` belongs to the :class:`~peerpunch.relayclient.RelayClient`
and asks the relay for one name. Its states (:data:`TRANSITIONS`)::

    REQUESTING --introduced--> INTRODUCED --settled--> SETTLED
    REQUESTING --TargetNotFound | no answer while waiting--> WAITING
    WAITING --Online | wait_retry--> REQUESTING
    REQUESTING --TargetBusy | Error | no answer--> (ended: RequestEnded)

REQUESTING sends a Connect every CONNECT_RETRY, with a Register in front (a
restarted relay may have forgotten us); the first Connect waits for our
NAT's mapping (at most until the client's mapping deadline) so the relay
can pass it on. INTRODUCED (punching) repeats the Connect so that the relay
repeats an introduction whose PeerInfo was lost. A TargetNotFound turns the
request into a wait, said once: with a relay that keeps watches
(``watch1``) the client's Registers name the target and the relay sends
``Online``, and is asked again only every WATCHED_WAIT_RETRY (a seed-form
client's arrival is never announced); any other relay is asked again every
WAIT_RETRY.

What it needs of the client is small: ``connect_msg(name)``,
``register_now()`` (a Register, as a Send), ``watches``,
``register_soon(when)``. The client keeps its requests in
:class:`~peerpunch.requesttable.Requests`.
"""

import collections
import enum
import logging

from .effects import Log
from .events import CONNECT_RETRY, CONNECT_TIMEOUT, NUDGE_EVERY, REREGISTER_RETRY, WAIT_RETRY
from .events import WATCHED_WAIT_RETRY
from .events import Failed, Notice, Waiting
from .timers import Timer


class RequestState(enum.Enum):
    REQUESTING = "requesting"
    WAITING = "waiting"
    INTRODUCED = "introduced"      # the relay introduced us; the punch runs
    SETTLED = "settled"            # the punch found a path


_R = RequestState
TRANSITIONS = {
    (_R.REQUESTING, "not_found"): _R.WAITING,
    (_R.WAITING, "online"): _R.REQUESTING,
    (_R.WAITING, "wait_retry"): _R.REQUESTING,
    (_R.REQUESTING, "introduced"): _R.INTRODUCED,
    (_R.WAITING, "introduced"): _R.INTRODUCED,
    (_R.INTRODUCED, "introduced"): _R.INTRODUCED,
    (_R.SETTLED, "introduced"): _R.INTRODUCED,
    (_R.INTRODUCED, "settled"): _R.SETTLED,
    (_R.SETTLED, "settled"): _R.SETTLED,
}

RequestEnded = collections.namedtuple("RequestEnded", "target")
RequestEnded.__doc__ = "Our request for *target* ended without an introduction (for the router)."


class Request:
    """Our request for *target*, sent through *client*."""

    def __init__(self, target, client, now):
        self.target = target
        self.client = client
        self.state = _R.REQUESTING
        self.since = now
        self.waiting = False        # it became a wait (WAITING, or asking again)
        self.deferred = False       # the first Connect waits for our mapping
        self._last_nudge = float("-inf")
        self.connect = Timer(self._connect_due)
        self.wait_retry = Timer(self._wait_retry_due)

    def timers(self):
        return (self.connect, self.wait_retry)

    def _move(self, trigger, now):
        """Take the transition *trigger*; the timers start afresh."""
        self.state = TRANSITIONS[(self.state, trigger)]
        self.since = now
        self.deferred = False
        self.stop()

    def stop(self):
        for timer in self.timers():
            timer.stop()

    def waits(self):
        """True if this request is a wait for its target to come online."""
        return self.waiting and self.state in (_R.WAITING, _R.REQUESTING)

    # -- inputs

    def start(self, now, mapping_deadline):
        """The first Connect: now, or at *mapping_deadline* (our mapping's)."""
        asking = Notice("asking", name=self.target)
        if mapping_deadline is not None:
            self.deferred = True             # let the relay hear our mapping first
            self.connect.at(mapping_deadline)
            return [asking]
        self.connect.at(now + CONNECT_RETRY)
        return [asking, self.client.connect_msg(self.target)]

    def introduced(self, now):
        self.waiting = False
        self._move("introduced", now)
        self.connect.at(now + CONNECT_RETRY)

    def settled(self, now):
        self._move("settled", now)

    def not_found(self, now):
        """The relay does not know our target (yet): wait for it. Said once
        per request; a later TargetNotFound just goes back to waiting."""
        first = not self.waiting
        self.waiting = True
        self._move("not_found", now)
        out = [Failed("target_not_found"), Waiting(self.target)] if first else []
        if not self.client.watches:
            self.wait_retry.at(now + WAIT_RETRY)
            return out
        self.wait_retry.at(now + WATCHED_WAIT_RETRY)
        if not first:
            return out                   # the watch is in our Registers already
        # the watch, at once; retried like an echo until acknowledged
        self.client.register_soon(now + REREGISTER_RETRY)
        return out + [self.client.register_now()]

    def online(self, name, now):
        """A name we watch has registered: ask for it."""
        if self.state is not _R.WAITING or name != self.target:
            return [Log(logging.DEBUG, "ignored Online for %s" % name)]
        self._move("online", now)
        self.connect.at(now + CONNECT_RETRY)
        return [self.client.connect_msg(self.target)]

    def failed(self, why):
        """The relay refused (*why*: a Failed or a RelayRefused): the end."""
        self.stop()
        return [why, RequestEnded(self.target)]

    def relay_acked(self, now):
        """A RegisterAck: waiting, with a relay that keeps no watches now."""
        if self.state is _R.WAITING and not self.client.watches and not self.wait_retry.set:
            self.wait_retry.at(now + WAIT_RETRY)

    def nudge(self, now):
        """A relayed datagram while we ask: the relay has paired us and our
        peer already punches through it, so the PeerInfo meant for us was
        lost. Ask again now rather than at the next retry."""
        if self.state is not _R.REQUESTING or self.deferred or \
                now - self._last_nudge < NUDGE_EVERY:
            return []
        self._last_nudge = now
        return [self.client.connect_msg(self.target)]

    # -- timers

    def _wait_retry_due(self, now):
        """Waiting: ask the relay again (gently, when it keeps watches)."""
        if self.state is not _R.WAITING:
            return []
        self._move("wait_retry", now)
        self.connect.at(now + CONNECT_RETRY)
        return [self.client.connect_msg(self.target)]

    def _connect_due(self, now):
        if self.state is _R.REQUESTING and now - self.since >= CONNECT_TIMEOUT:
            if self.waiting:               # the relay is silent: it will say so; wait on
                return self.not_found(now)
            return self.failed(Failed("request_unanswered", name=self.target))
        self.connect.at(now + CONNECT_RETRY)
        out = [self.client.connect_msg(self.target)]
        if self.state is _R.REQUESTING and not self.deferred:
            # unanswered: a restarted relay may have forgotten us
            out.insert(0, self.client.register_now())
        self.deferred = False
        return out

    def mapping_known(self, now):
        """Our mapping is known: a deferred first Connect goes now."""
        if self.state is _R.REQUESTING and self.deferred:
            return self._connect_due(now)
        return []
