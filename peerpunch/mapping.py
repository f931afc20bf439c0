"""Our NAT's mapping, learnt once, at registration.

Theory of operation
-------------------
The birthday search (:mod:`peerpunch.birthday`) needs to know which side's
NAT is symmetric. At the first RegisterAck from a relay of ours, the
:class:`~peerpunch.relayclient.RelayClient` starts a :class:`MappingCheck`:
a quick :class:`~peerpunch.natcheck.NatCheck` against the relay's two
ports. When it is done, ``mapping`` is one of :data:`peerpunch.protocol.MAPPINGS`
(or None: unknown) and the client's next Register carries it; until
``deadline`` (MAPPING_WAIT after the start) a request's first Connect
waits for it, so that the relay can pass it to the partner.
"""

import logging

from . import natcheck
from . import protocol as P
from .effects import Log
from .timers import Timer

MAPPING_WAIT = 1.0     # a Connect waits this long at most for our mapping
_MAPPINGS = {natcheck.EIM: P.MAPPING_INDEPENDENT, natcheck.SYMMETRIC: P.MAPPING_DEPENDENT}


class MappingCheck:
    """The check of our NAT's mapping against the relay at *relay_addr*;
    *done(now)* -> effects is called once when it ends."""

    def __init__(self, relay_addr, done):
        self.relay_addr = relay_addr
        self.mapping = None
        self.started = False
        self._check = None
        self._deadline = 0.0
        self._done = done
        self.timer = Timer(self._due)

    @property
    def running(self):
        return self._check is not None

    def waits_until(self, now):
        """When a first Connect may go, if it should wait; else None."""
        return self._deadline if self.running and now < self._deadline else None

    def start(self, now):
        if self.started:
            return []
        self.started = True
        self._check = natcheck.NatCheck(self.relay_addr, quick=True)
        self._deadline = now + MAPPING_WAIT
        out = self._check.start(now)
        self.timer.at(self._check.next_deadline())
        return out

    def received(self, data, addr, now):
        if self._check is None:
            return []             # a late or duplicate answer
        return self._check.datagram_received(data, addr, now) + self._progress(now)

    def _due(self, now):
        if self._check is None:
            return []
        return self._check.tick(now) + self._progress(now)

    def _progress(self, now):
        check = self._check
        if not check.done:
            self.timer.at(check.next_deadline())
            return []
        self._check = None
        self.timer.stop()
        mapping, why = natcheck.mapping_of(check.obs, ())
        self.mapping = _MAPPINGS.get(mapping)
        out = [Log(logging.INFO, "our NAT's mapping: %s (%s)" % (self.mapping or "unknown", why))]
        return out + self._done(now)
