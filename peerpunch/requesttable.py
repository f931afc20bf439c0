"""Our requests to the relay, one per partner, and which one an answer is for.

Theory of operation
-------------------
The :class:`~peerpunch.relayclient.RelayClient` keeps its requests in
:class:`Requests` (target -> :class:`~peerpunch.request.Request`, oldest
first): one at a time unless the relay lets us hold several chats, for only
a relay that does names the target of its refusals (``target``); a refusal
that names none is for the one request asking (:meth:`Requests.refused`).
An ``Online`` goes to the request for that name. What the whole client
learns (a RegisterAck, our NAT's mapping, a relayed datagram that shows the
relay paired us) goes to every request; each decides for itself.
"""

import logging

from .effects import Log
from .events import Failed
from .request import Request, RequestState


class Requests(dict):
    """Our requests, target -> :class:`Request`, oldest first, each sent
    through *client* (see :mod:`peerpunch.request` for what it needs)."""

    def __init__(self, client):
        super().__init__()
        self.client = client

    # -- queries

    def latest(self, *states):
        """The latest request in one of *states* (any, without), else None."""
        for req in reversed(list(self.values())):
            if not states or req.state in states:
                return req
        return None

    def waiting(self):
        """The names we wait for to come online, oldest first."""
        return [req.target for req in self.values() if req.waits()]

    def timers(self):
        return sum((req.timers() for req in self.values()), ())

    def refused(self, target):
        """The request a refusal is for: the one for *target* (the refusal
        names it), else the only one asking; None if none or ambiguous."""
        if target is not None:
            req = self.get(target)
            return req if req is not None and req.state is RequestState.REQUESTING else None
        asking = [req for req in self.values() if req.state is RequestState.REQUESTING]
        return asking[0] if len(asking) == 1 else None

    # -- what the client asks of them

    def ask(self, target, now, mapping_deadline):
        """A new request for *target*; its first Connect waits until
        *mapping_deadline* if that is not None."""
        req = self[target] = Request(target, self.client, now)
        return req.start(now, mapping_deadline)

    def drop(self, target):
        req = self.pop(target, None)
        if req is not None:
            req.stop()

    def introduced(self, partner, now, keep_others):
        """The relay introduced *partner*: its request repeats its Connect
        while the punch runs; the others end unless *keep_others*."""
        for name in list(self):
            if name == partner:
                self[name].introduced(now)
            elif not keep_others:
                self.drop(name)

    def settled(self, partner, now):
        if partner in self:
            self[partner].settled(now)

    def nudge(self, now):
        return sum((req.nudge(now) for req in list(self.values())), [])

    def mapping_known(self, now):
        return sum((req.mapping_known(now) for req in list(self.values())), [])

    def relay_acked(self, now):
        for req in self.values():
            req.relay_acked(now)

    # -- the relay's answers

    def not_found(self, target, now):
        """TargetNotFound (for *target*, if it names one)."""
        req = self.refused(target)
        if req is None:
            return self.failed(Failed("target_not_found"), target)
        return req.not_found(now)

    def online(self, name, now):
        req = self.get(name)
        if req is None:
            return [Log(logging.DEBUG, "ignored Online for %s" % name)]
        return req.online(name, now)

    def failed(self, why, target=None):
        """The relay refused our request (for *target*, if it says): *why*
        is a Failed or a RelayRefused."""
        req = self.refused(target)
        if req is None:
            return [Log(logging.DEBUG, "relay said %r outside a request" % (why,))]
        return req.failed(why)
