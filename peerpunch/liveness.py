"""Is the relay still there? Re-registration and what we say about it.

Theory of operation
-------------------
Once registered, the :class:`~peerpunch.relayclient.RelayClient` registers
again every REREGISTER_INTERVAL, or every keep-alive interval if that is
shorter (never more often than REREGISTER_MIN), to keep our name and the
relay's NAT mapping alive and to notice a relay that went away. Each
re-registration is retried after REREGISTER_RETRY, doubling up to
RELAY_RETRY_MAX, until a RegisterAck comes (:meth:`Liveness.acked` puts the
next one a whole interval away). After NOT_ANSWERING_AFTER unanswered in a
row we say the relay is not answering (``RelayNotAnswering``: within three
keep-alive intervals of its going), and that it is back at the next ack.
A relay that stops cleanly says so (Error relay-stopping,
:meth:`Liveness.stopping`): we register again within a second or so (at
random: not all its clients at once), then as for a silent relay, so that
the relay that replaces it knows us within seconds of its start; that is
heeded at most once per RELAY_STOPPING_EVERY (a forger at a seed relay's
address cannot make us say it often).
"""

from .events import (NOT_ANSWERING_AFTER, RELAY_RETRY_MAX, RELAY_STOPPING_EVERY,
                     RELAY_STOPPING_RETRY, REREGISTER_INTERVAL, REREGISTER_MIN, REREGISTER_RETRY,
                     RelayBack, RelayNotAnswering, RelayStopping)
from .timers import Timer


class Liveness:
    """The re-registration timer of the relay at *endpoint*; *register()*
    gives the Register to send (a Send)."""

    def __init__(self, endpoint, keepalive, rng, register):
        self.endpoint = endpoint
        self.keepalive = keepalive
        self.silent_since = None     # when the relay stopped answering, if it has
        self._rng = rng
        self._register = register
        self._backoff = REREGISTER_RETRY
        self._unanswered = 0
        self._first_unanswered = 0.0
        self._last_stopping = float("-inf")
        self.timer = Timer(self._due)

    def every(self):
        """How often we re-register (see the module docstring)."""
        return max(REREGISTER_MIN, min(REREGISTER_INTERVAL, self.keepalive))

    def acked(self, now, soon):
        """A RegisterAck: the next Register in a whole interval, or *soon*
        (one that must itself be acknowledged: an echo, a watch)."""
        self.timer.at(now + (REREGISTER_RETRY if soon else self.every()))
        self._backoff = REREGISTER_RETRY
        self._unanswered = 0
        if self.silent_since is None:
            return []
        self.silent_since = None
        return [RelayBack(self.endpoint)]

    def soon(self, when):
        """Re-register no later than *when* (retried until acknowledged)."""
        self.timer.earlier(when)

    def stopping(self, now):
        """The relay says it stops: register again within a second or so."""
        if self.silent_since is not None or now - self._last_stopping < RELAY_STOPPING_EVERY:
            return []
        self._last_stopping = now
        self.silent_since = now
        self._unanswered = NOT_ANSWERING_AFTER          # said already: no "not answering" too
        first = self._rng.uniform(*RELAY_STOPPING_RETRY)
        self.timer.at(now + first)
        self._backoff = first
        return [RelayStopping(self.endpoint)]

    def _due(self, now):
        out = []
        if self._unanswered == 0:
            self._first_unanswered = now
        elif self._unanswered >= NOT_ANSWERING_AFTER and self.silent_since is None:
            self.silent_since = self._first_unanswered
            out.append(RelayNotAnswering(self.endpoint, now - self._first_unanswered))
        self._unanswered += 1
        self.timer.at(now + min(self._backoff, self.every()))
        self._backoff = min(2 * self._backoff, RELAY_RETRY_MAX)
        return out + [self._register()]
