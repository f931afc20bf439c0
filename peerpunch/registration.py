"""Our side of the relay: registration, requests and the relay's answers.

Theory of operation
-------------------
:class:`RelayMixin` is the part of :class:`~peerpunch.session.PeerSession`
that talks to the relay. Registration is retried with backoff until the
RegisterAck comes (REGISTERING), then repeated every REREGISTER_INTERVAL
(each one retried until acknowledged) to keep our name and the relay's NAT
mapping alive; a token in the ack is echoed at once, which proves we are at
our address. Every Register says what we are (features, LAN candidates,
key, NAT mapping) and, during a chat, which chat (partner and secret), so a
restarted relay relearns it. A request (REQUESTING) sends its first Connect
once our NAT's mapping is known (at most MAPPING_WAIT later, so the relay
can pass it on) and repeats it every CONNECT_RETRY, with a Register in
front (a restarted relay may have forgotten us), until the introduction (a
PeerInfo, handled by the session) or an answer that ends it
(TargetNotFound, TargetBusy, Error).
Everything we send a relay that speaks ``ext`` carries our token.
"""

import logging

from . import identity as ID
from . import protocol as P
from .effects import Log, Send
from .events import (CONNECT_RETRY, CONNECT_TIMEOUT, IN_CHAT, REGISTER_RTO_MAX,
                     REREGISTER_INTERVAL, REREGISTER_RETRY, Closed, Failed, Notice, Registered,
                     State)


class RelayMixin:
    """Registration, requests and the relay's answers for :class:`PeerSession`."""

    # -- answers from the relay

    def _on_register_ack(self, msg, now):
        self.relay_features = msg.features or ()
        proof = []
        if not P.speaks_extensions(self.relay_features):
            self._token = None               # a seed relay (perhaps in place of ours): no tokens
        elif msg.token and msg.token != self._token:
            self._token = msg.token          # echo it at once: proof that we are at this address
            proof = [self._to_relay(self._register_msg())]
        self._timers["reregister"] = now + REREGISTER_INTERVAL
        self._reregister_backoff = REREGISTER_RETRY
        proof += self._start_mapping_check(now)   # once, at the first ack that says "ext"
        if self.state is not State.REGISTERING:
            return proof
        self._timers.pop("register", None)
        self._enter(State.IDLE, now)
        out = proof + [Registered(self.username, self.relay_endpoint)]
        if self.target:
            return out + self.connect(self.target, now)
        return out + [Notice("waiting for someone to connect (or type /connect NAME)")]

    def _on_target_not_found(self, msg, now):
        return self._request_failed("Target user not found.", now)

    def _on_target_busy(self, msg, now):
        return self._request_failed("Target user is busy.", now)

    def _on_error(self, msg, now):
        reason = "relay: %s" % msg.message
        if self.state is State.REGISTERING and msg.code in (P.ERROR_NAME_TAKEN, P.ERROR_RELAY_FULL):
            self._enter(State.CLOSED, now)
            return [Closed(1, reason)]
        if msg.code == P.ERROR_NAME_TAKEN:
            return [Notice(reason + " (someone else registered your name while the relay"
                           " could not hear you)")]
        return self._request_failed(reason, now)

    def _request_failed(self, reason, now):
        if self.state is not State.REQUESTING:
            return [Log(logging.DEBUG, "relay said %r outside a request" % reason)]
        return [Failed(reason)] + self._end_chat(now)

    # -- timers

    def _timer_register(self, now):
        if now - self._since >= self.register_timeout:
            self._enter(State.CLOSED, now)
            return [Closed(1, "no answer from the relay at %s after %g s"
                           % (self.relay_endpoint, self.register_timeout))]
        self._register_rto = min(self._register_rto * 2, REGISTER_RTO_MAX)
        return self._send_register(now)

    def _timer_reregister(self, now):
        """Re-register every REREGISTER_INTERVAL. Each one is retried after
        REREGISTER_RETRY, doubling up to the interval, until the RegisterAck
        (which puts the next one a whole interval away) comes back: a lost
        datagram or a relay restarting costs seconds, not an interval."""
        self._timers["reregister"] = now + self._reregister_backoff
        self._reregister_backoff = min(2 * self._reregister_backoff, REREGISTER_INTERVAL)
        return [self._to_relay(self._register_msg())]

    def _timer_connect(self, now):
        if self.state is State.REQUESTING and now - self._since >= CONNECT_TIMEOUT:
            return self._request_failed("no answer from the relay about %s" % self.target, now)
        self._timers["connect"] = now + CONNECT_RETRY
        out = [self._connect_msg(self.target)]
        if self.state is State.REQUESTING and not self._connect_deferred:
            # unanswered: a restarted relay may have forgotten us
            out.insert(0, self._to_relay(self._register_msg()))
        self._connect_deferred = False
        return out

    # -- messages to the relay

    def _register_msg(self):
        key = ID.encode_key(self.identity.public) if self.identity else None
        partner = session = None
        if self.state in IN_CHAT and self.peer.secret:   # a restarted relay relearns the chat
            partner, session = self.peer.username, self.peer.secret.hex()
        return P.Register(self.username, features=self.features, local=self.local, key=key,
                          token=self._token, mapping=self.mapping, partner=partner,
                          session=session)

    def _send_register(self, now):
        self._timers["register"] = min(now + self._register_rto, self._since + self.register_timeout)
        return [self._to_relay(self._register_msg())]

    def _connect_msg(self, name, session=None):
        """Connect to *name* (with *session*: again, if that pairing lives);
        the token tells the relay it is really us asking."""
        return self._to_relay(P.Connect(name, session=session, token=self._relay_token()))

    def _relay_token(self):
        """Our token for a request, if the relay speaks ``ext`` (a seed relay
        would choke on a unit variant in map form)."""
        return self._token if P.speaks_extensions(self.relay_features) else None

    def _to_relay(self, msg):
        return Send(P.encode(msg), self.relay_addr)
