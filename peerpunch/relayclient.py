"""Our side of the relay: one :class:`RelayClient` per process.

Theory of operation
-------------------
The client registers, keeps the registration alive, asks the relay for
partners and reads its answers. It holds no chat: what a chat needs from the
relay it gets as data events (:class:`Introduction`, :class:`RequestEnded`)
handed to its owner, the router (:mod:`peerpunch.session`), which in turn
tells it which chats live (``chat_began``/``chat_finished``), so that every
Register says so and a restarted relay relearns them.

Registration (``state``, :data:`TRANSITIONS`)::

    REGISTERING --ack--> REGISTERED --quit--> CLOSED
    REGISTERING --refused | no ack in register_timeout--> CLOSED

A Register is retried with backoff until the RegisterAck comes (a line at
the start, one after SLOW_AFTER, the reason if it fails), then repeated
every REREGISTER_INTERVAL, or every keep-alive interval if shorter (each one
retried until acknowledged: after 2 s, then every 4 s) to keep our name and
the relay's NAT mapping alive and to notice a relay that went away. After
NOT_ANSWERING_AFTER unanswered in a row we say the relay is not answering
and that it is back at the next ack. A relay that stops cleanly says so
(Error relay-stopping): we register again within a second or so. A token in
the ack of a relay of the previous version (one that echoes no nonce) is
echoed at once, which proves we are at our address; a relay of this version
has seen that already (the cookie). A new token is how a relay that
restarted shows itself. Every Register says what we are (features, LAN
candidates, key, NAT mapping), the chat we are in and the name we wait for,
all built in one place, :meth:`RelayClient._register_msg`.

Return routability: a relay of this version answers a Register from an
address where we have not proven ourselves with a ``Cookie``: we send the
Register again at once with it, and the retries carry it until a
RegisterAck with the token. Our Registers are padded
(:func:`peerpunch.registration.padded`) so that the Cookie fits. What from
the relay's address we believe is :class:`~peerpunch.registration.RelayAuth`'s
rule.

Our NAT's mapping: at the first ext RegisterAck a quick
:class:`~peerpunch.natcheck.NatCheck` against the relay's two ports says
whether our NAT is symmetric; the next Register carries the answer, and a
request's first Connect waits for it (MAPPING_WAIT at most) so the relay can
pass it to the partner (the birthday search needs it).

A request (:class:`Request`, :data:`REQUEST_TRANSITIONS`)::

    REQUESTING --introduced--> INTRODUCED --settled--> SETTLED
    REQUESTING --TargetNotFound--> WAITING --Online | wait_retry--> REQUESTING
    REQUESTING --TargetBusy | Error | no answer--> (ended)

REQUESTING sends a Connect every CONNECT_RETRY, with a Register in front (a
restarted relay may have forgotten us); INTRODUCED (punching) repeats the
Connect so the relay repeats an introduction whose PeerInfo was lost.
WAITING: with a relay that keeps watches (``watch1``) our Registers name the
target and the relay sends ``Online``; any other relay is asked again every
WAIT_RETRY. Everything we send a relay that speaks ``ext`` carries our token.
"""

import collections
import enum
import logging

from . import identity as ID
from . import natcheck
from . import protocol as P
from . import stun
from .effects import Log, Send
from .events import (CONNECT_RETRY, CONNECT_TIMEOUT, NOT_ANSWERING_AFTER, NUDGE_EVERY,
                     REFUSED_LATER, REFUSED_REGISTERING, REFUSED_REQUEST, REGISTER_RTO,
                     REGISTER_RTO_MAX, RELAY_RETRY_MAX, RELAY_STOPPING_EVERY, RELAY_STOPPING_RETRY,
                     REREGISTER_INTERVAL, REREGISTER_MIN, REREGISTER_RETRY, SLOW_AFTER, WAIT_RETRY,
                     Closed, Failed, Notice, Registered, Registering, RelayBack,
                     RelayNotAnswering, RelayRefused, RelayStopping, StillRegistering, Waiting)
from .registration import MODE_NOTES, RelayAuth, padded
from .timers import Timer, earliest, fire

MAPPING_WAIT = 1.0     # a Connect waits this long at most for our mapping
_MAPPINGS = {natcheck.EIM: P.MAPPING_INDEPENDENT, natcheck.SYMMETRIC: P.MAPPING_DEPENDENT}


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


class RequestState(enum.Enum):
    REQUESTING = "requesting"
    WAITING = "waiting"
    INTRODUCED = "introduced"      # the relay introduced us; the punch runs
    SETTLED = "settled"            # the punch found a path


_R = RequestState
REQUEST_TRANSITIONS = {
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

# -- events for the router (never shown)

Introduction = collections.namedtuple("Introduction", "info")
Introduction.__doc__ = "The relay introduced us to a partner: *info* is the believed PeerInfo."
RequestEnded = collections.namedtuple("RequestEnded", "target")
RequestEnded.__doc__ = "Our request for *target* ended without an introduction."


class Request:
    """Our request for one partner: its state and its two timers."""

    def __init__(self, target, state, now, connect_due, wait_retry_due):
        self.target = target
        self.state = state
        self.since = now
        self.waiting = False        # it became a wait (WAITING, or asking again)
        self.deferred = False       # the first Connect waits for our mapping
        self.connect = Timer(connect_due)
        self.wait_retry = Timer(wait_retry_due)

    def move(self, trigger, now):
        """Take the transition *trigger*; the timers start afresh."""
        self.state = REQUEST_TRANSITIONS[(self.state, trigger)]
        self.since = now
        self.deferred = False
        self.connect.stop()
        self.wait_retry.stop()

    def timers(self):
        return (self.connect, self.wait_retry)


class RelayClient:
    """Registration, requests and the relay's answers; one per process."""

    def __init__(self, username, relay_addr, *, features, local=None, identity=None,
                 keepalive, register_timeout, rng, random_bytes, stats):
        self.username = username
        self.addr = relay_addr
        self.endpoint = P.format_endpoint(relay_addr)
        self.our_features = features
        self.local = local
        self.key = ID.encode_key(identity.public) if identity else None
        self.keepalive = keepalive
        self.register_timeout = register_timeout
        self.stats = stats
        self.state = RelayState.REGISTERING
        self.features = ()           # the relay's, from its RegisterAck
        self.token = None            # from RegisterAck: lets us move to a new address
        self.cookie = None           # from the relay's Cookie, until the RegisterAck
        self.auth = RelayAuth(random_bytes)
        self.mapping = None          # our NAT's (P.MAPPINGS), once the check says
        self.silent_since = None     # when the relay stopped answering, if it has
        self.request = None          # our Request, if any
        self.chats = {}              # partner -> session secret (hex) of the chats that live
        self._rng = rng
        self._since = 0.0
        self._register_rto = REGISTER_RTO
        self._reregister_backoff = REREGISTER_RETRY
        self._unanswered = 0
        self._first_unanswered = 0.0
        self._last_stopping = float("-inf")
        self._last_nudge = float("-inf")
        self._natcheck = None
        self._mapping_deadline = 0.0
        self._mapping_checked = False
        self.register = Timer(self._register_due)
        self.register_slow = Timer(self._register_slow_due)
        self.reregister = Timer(self._reregister_due)
        self.natcheck = Timer(self._natcheck_due)

    # -- queries

    @property
    def speaks_ext(self):
        return P.speaks_extensions(self.features)

    @property
    def forwards(self):
        """True if the relay carries datagrams between peers (relay1)."""
        return P.FEATURE_RELAY in self.features

    @property
    def watches(self):
        return P.FEATURE_WATCH in self.features

    def is_loopback(self):
        return self.addr[0] in ("127.0.0.1", "::1") or self.addr[0].startswith("127.")

    def asking(self, *states):
        """Our request if it is in one of *states* (any, without), else None."""
        req = self.request
        if req is None or (states and req.state not in states):
            return None
        return req

    def waits_for(self):
        """The name we wait to come online, or None."""
        req = self.asking(_R.WAITING, _R.REQUESTING)
        return req.target if req is not None and req.waiting else None

    def checking_mapping(self):
        return self._natcheck is not None

    # -- inputs

    def start(self, now):
        self._since = now
        self.register_slow.at(now + SLOW_AFTER)
        return [Registering(self.username, self.endpoint)] + self._send_register(now)

    def tick(self, now):
        return fire(self.timers(), now)

    def next_deadline(self):
        return earliest(self.timers())

    def timers(self):
        own = (self.register, self.register_slow, self.reregister, self.natcheck)
        return own + (self.request.timers() if self.request is not None else ())

    def _move(self, trigger):
        self.state = TRANSITIONS[(self.state, trigger)]
        if self.state is RelayState.CLOSED:
            for timer in self.timers():
                timer.stop()

    def datagram_received(self, data, now):
        """A datagram (not STUN, not relayed) from the relay's address."""
        try:
            msg = P.decode(data)
        except P.RemoteProtocolError as exc:
            self.stats["malformed"] += 1
            return [Log(logging.DEBUG, "dropped datagram from the relay: %s" % exc)]
        handler = self._HANDLERS.get(type(msg))
        if handler is None:
            return [Log(logging.DEBUG, "ignored unexpected %s" % type(msg).__name__)]
        believed, out = self._admit(msg)
        return out + handler(self, msg, now) if believed else out

    def stun_received(self, data, addr, now):
        if self._natcheck is None:
            return []             # a late or duplicate answer
        return self._natcheck.datagram_received(data, addr, now) + self._natcheck_progress(now)

    def is_stun_for_us(self, data, addr):
        return stun.is_stun(data) and (addr == self.addr or self._natcheck is not None)

    # -- what the router asks for

    def ask(self, target, now):
        """Ask the relay for *target* (registered, with no request yet)."""
        self.request = req = Request(target, _R.REQUESTING, now, self._connect_due,
                                     self._wait_retry_due)
        asking = Notice("asking", name=target)
        if self._natcheck is not None and now < self._mapping_deadline:
            req.deferred = True             # let the relay hear our mapping first
            req.connect.at(self._mapping_deadline)
            return [asking]
        req.connect.at(now + CONNECT_RETRY)
        return [asking, self._connect_msg(target)]

    def introduced(self, partner, now):
        """The router took the relay's introduction of *partner*: a request
        for that name repeats its Connect while the punch runs; one for
        another name is dropped (returns that name)."""
        req = self.request
        if req is None:
            return None
        if req.target != partner:
            self._drop_request()
            return req.target
        req.waiting = False
        req.move("introduced", now)
        req.connect.at(now + CONNECT_RETRY)
        return None

    def settled(self, now):
        """The punch found a path: no more Connects."""
        if self.request is not None:
            self.request.move("settled", now)

    def chat_began(self, partner, session_hex):
        if session_hex:
            self.chats[partner] = session_hex
        else:
            self.chats.pop(partner, None)

    def chat_finished(self, partner, now):
        """A chat (or our request) ended: tell the relay; a Register that
        names no watch ends the one we had."""
        self.chats.pop(partner, None)
        watched = self.waits_for() is not None and self.watches
        self._drop_request()
        out = [self._send(P.SessionFinished(token=self.request_token()))]
        if watched:
            out.append(self._send(self._register_msg()))
        return out

    def _drop_request(self):
        if self.request is not None:
            for timer in self.request.timers():
                timer.stop()
            self.request = None

    def reintroduce(self, partner, session_hex):
        """The path to *partner* went quiet: register again (our NAT may have
        moved us) and ask for it again (its NAT may have moved it)."""
        return [self._send(self._register_msg()), self._connect_msg(partner, session_hex)]

    def nudge(self, now):
        """A relayed datagram while we ask for someone: the relay has paired
        us and our peer already punches through it, so the PeerInfo meant for
        us was lost. Ask again now rather than at the next retry."""
        req = self.asking(_R.REQUESTING)
        if req is None or req.deferred or now - self._last_nudge < NUDGE_EVERY:
            return []
        self._last_nudge = now
        return [self._connect_msg(req.target)]

    def quit(self, now):
        out = []
        if self.speaks_ext and self.state is not RelayState.REGISTERING:
            out = [self._send(P.Unregister(token=self.request_token()))] * 2
        self._move("quit")
        return out

    # -- answers from the relay

    def _admit(self, msg):
        """(believed, effects) for *msg* from the relay's address: see RelayAuth."""
        before = self.auth.mode
        why = self.auth.check(msg)
        if why is not None:
            self.stats["unauthenticated_relay"] += 1
            return False, [Log(logging.DEBUG, "dropped %s from the relay's address: %s (%d so far)"
                               % (type(msg).__name__, why, self.stats["unauthenticated_relay"]))]
        if self.auth.mode == before:
            return True, []
        return True, [Log(logging.DEBUG, "relay %s: %s" % (self.endpoint, MODE_NOTES[self.auth.mode]))]

    def _on_cookie(self, msg, now):
        """Register again at once with the relay's cookie (a copy of the
        cookie we have changes nothing)."""
        if msg.cookie == self.cookie:
            return []
        self.cookie = msg.cookie
        return [self._send(self._register_msg())]

    def _on_register_ack(self, msg, now):
        proof = self._learn_ack(msg, now)
        proof += self._answered() + self._start_mapping_check(now)
        waiting = self.asking(_R.WAITING)
        if waiting is not None and not self.watches and not waiting.wait_retry.set:
            waiting.wait_retry.at(now + WAIT_RETRY)   # a relay without watches now
        if self.state is not RelayState.REGISTERING:
            return proof
        self.register.stop()
        self.register_slow.stop()
        self._move("ack")
        return proof + [Registered(self.username, self.endpoint)]

    def _learn_ack(self, msg, now):
        """Features, token and cookie from a RegisterAck; the next Register's
        time; an echo of a new token to a relay of the previous version."""
        self.features = msg.features or ()
        if msg.token or not self.speaks_ext:
            self.cookie = None           # proven: the token does the rest (kept after a lost ack)
        proof = []
        if not self.speaks_ext:
            self.token = None            # a seed relay (perhaps in place of ours): no tokens
        elif msg.token and msg.token != self.token:
            self.token = msg.token
            if self.auth.mode != RelayAuth.EXT:     # echo it at once, proof of our address
                proof = [self._send(self._register_msg())]
        # an echo must be acknowledged too (it may carry our watch): retry it soon;
        # so must a registration with an ext relay that gave us no token yet
        soon = proof or (self.speaks_ext and self.token is None)
        self.reregister.at(now + (REREGISTER_RETRY if soon else self._reregister_every()))
        self._reregister_backoff = REREGISTER_RETRY
        return proof

    def _answered(self):
        self._unanswered = 0
        if self.silent_since is None:
            return []
        self.silent_since = None
        return [RelayBack(self.endpoint)]

    def _on_peer_info(self, msg, now):
        out = []
        if self.state is RelayState.REGISTERING:     # the RegisterAck was lost
            out += self._on_register_ack(self.auth.implied_ack(), now)
        return out + [Introduction(msg)]

    def _on_target_not_found(self, msg, now):
        if self.asking(_R.REQUESTING):
            return self._wait(now)
        return self._request_failed(Failed("target_not_found"), now)

    def _on_online(self, msg, now):
        """A name we watch has registered: ask for it."""
        req = self.asking(_R.WAITING)
        if req is None or msg.username != req.target:
            return [Log(logging.DEBUG, "ignored Online for %s" % msg.username)]
        req.move("online", now)
        req.connect.at(now + CONNECT_RETRY)
        return [self._connect_msg(req.target)]

    def _wait(self, now):
        """The relay does not know our target (yet): wait for it. Said once
        per request; a later TargetNotFound just goes back to waiting."""
        req = self.request
        first = not req.waiting
        req.waiting = True
        req.move("not_found", now)
        out = [Failed("target_not_found"), Waiting(req.target)] if first else []
        if not self.watches:
            req.wait_retry.at(now + WAIT_RETRY)
            return out
        # the watch, at once; retried like an echo until acknowledged
        soon = now + REREGISTER_RETRY
        self.reregister.earlier(soon)
        return out + [self._send(self._register_msg())]

    def _on_target_busy(self, msg, now):
        return self._request_failed(Failed("target_busy"), now)

    def _on_error(self, msg, now):
        """A refusal. Its ``message`` is the relay's text: never shown; the
        console words the code."""
        if msg.code == P.ERROR_RELAY_STOPPING:
            return self._relay_stopping(now)
        if self.state is RelayState.REGISTERING and \
                msg.code in (P.ERROR_NAME_TAKEN, P.ERROR_RELAY_FULL):
            self._move("refused")
            return [Closed(1, RelayRefused(msg.code, self.username, REFUSED_REGISTERING))]
        if msg.code == P.ERROR_NAME_TAKEN:
            return [RelayRefused(msg.code, self.username, REFUSED_LATER)]
        target = self.request.target if self.request is not None else None
        return self._request_failed(RelayRefused(msg.code, target, REFUSED_REQUEST), now)

    def _relay_stopping(self, now):
        """The relay says it stops (a restart, say): register again within
        a second or so (at random: not all its clients at once), then as for
        a relay that does not answer."""
        if self.state is RelayState.REGISTERING or self.silent_since is not None or \
                now - self._last_stopping < RELAY_STOPPING_EVERY:
            return []        # (a forger at a seed or old relay's address cannot make us say it often)
        self._last_stopping = now
        self.silent_since = now
        self._unanswered = NOT_ANSWERING_AFTER          # said already: no "not answering" too
        first = self._rng.uniform(*RELAY_STOPPING_RETRY)
        self.reregister.at(now + first)
        self._reregister_backoff = first
        return [RelayStopping(self.endpoint)]

    def _request_failed(self, why, now):
        """The relay refused our request: *why* is a Failed or a RelayRefused."""
        req = self.asking(_R.REQUESTING)
        if req is None:
            return [Log(logging.DEBUG, "relay said %r outside a request" % (why,))]
        for timer in req.timers():
            timer.stop()
        return [why, RequestEnded(req.target)]

    _HANDLERS = {
        P.RegisterAck: _on_register_ack,
        P.PeerInfo: _on_peer_info,
        P.TargetNotFound: _on_target_not_found,
        P.TargetBusy: _on_target_busy,
        P.Error: _on_error,
        P.Online: _on_online,
        P.Cookie: _on_cookie,
    }

    # -- timers

    def _register_due(self, now):
        if now - self._since >= self.register_timeout:
            self._move("timeout")
            return [Closed(1, Failed("relay_unanswered", relay=self.endpoint,
                                     seconds=self.register_timeout))]
        self._register_rto = min(self._register_rto * 2, REGISTER_RTO_MAX)
        return self._send_register(now)

    def _register_slow_due(self, now):
        if self.state is not RelayState.REGISTERING:
            return []
        return [StillRegistering(self.endpoint, now - self._since)]

    def _reregister_due(self, now):
        """Re-register every _reregister_every(). Each one is retried after
        REREGISTER_RETRY, doubling up to RELAY_RETRY_MAX (or the interval, if
        shorter), until the RegisterAck comes back. After NOT_ANSWERING_AFTER
        unanswered in a row, say the relay is silent."""
        out = []
        if self._unanswered == 0:
            self._first_unanswered = now
        elif self._unanswered >= NOT_ANSWERING_AFTER and self.silent_since is None:
            self.silent_since = self._first_unanswered
            out.append(RelayNotAnswering(self.endpoint, now - self._first_unanswered))
        self._unanswered += 1
        self.reregister.at(now + min(self._reregister_backoff, self._reregister_every()))
        self._reregister_backoff = min(2 * self._reregister_backoff, RELAY_RETRY_MAX)
        return out + [self._send(self._register_msg())]

    def _reregister_every(self):
        """Every REREGISTER_INTERVAL, or every keep-alive interval if shorter
        (a silent relay is noticed within three of them), but not more often
        than REREGISTER_MIN."""
        return max(REREGISTER_MIN, min(REREGISTER_INTERVAL, self.keepalive))

    def _wait_retry_due(self, now):
        """Waiting, with a relay that keeps no watches: ask it again."""
        req = self.asking(_R.WAITING)
        if req is None or self.watches:
            return []
        req.move("wait_retry", now)
        req.connect.at(now + CONNECT_RETRY)
        return [self._connect_msg(req.target)]

    def _connect_due(self, now):
        req = self.request
        if req.state is _R.REQUESTING and now - req.since >= CONNECT_TIMEOUT:
            if req.waiting:               # the relay is silent: it will say so; wait on
                return self._wait(now)
            return self._request_failed(Failed("request_unanswered", name=req.target), now)
        req.connect.at(now + CONNECT_RETRY)
        out = [self._connect_msg(req.target)]
        if req.state is _R.REQUESTING and not req.deferred:
            # unanswered: a restarted relay may have forgotten us
            out.insert(0, self._send(self._register_msg()))
        req.deferred = False
        return out

    # -- our mapping

    def _start_mapping_check(self, now):
        if self._mapping_checked or not self.speaks_ext:
            return []             # done already; or a seed relay, which would choke on STUN
        self._mapping_checked = True
        self._natcheck = natcheck.NatCheck(self.addr, quick=True)
        self._mapping_deadline = now + MAPPING_WAIT
        out = self._natcheck.start(now)
        self.natcheck.at(self._natcheck.next_deadline())
        return out

    def _natcheck_due(self, now):
        if self._natcheck is None:
            return []
        return self._natcheck.tick(now) + self._natcheck_progress(now)

    def _natcheck_progress(self, now):
        check = self._natcheck
        if not check.done:
            self.natcheck.at(check.next_deadline())
            return []
        self._natcheck = None
        self.natcheck.stop()
        mapping, why = natcheck.mapping_of(check.obs, ())
        self.mapping = _MAPPINGS.get(mapping)
        out = [Log(logging.INFO, "our NAT's mapping: %s (%s)" % (self.mapping or "unknown", why))]
        if self.mapping is not None:
            out.append(self._send(self._register_msg()))   # so the relay can tell peers
        req = self.asking(_R.REQUESTING)
        if req is not None and req.deferred:
            out += self._connect_due(now)                   # the first Connect, now
        return out

    # -- messages to the relay

    def _register_msg(self):
        """The one place a Register is built: what we are, our chat, our watch."""
        partner = session = None
        for partner, session in self.chats.items():   # a restarted relay relearns the chat
            break
        watch = None
        if self.waits_for() is not None and self.watches:
            watch = (self.request.target,)          # a restarted relay relearns our watch
        return P.Register(self.username, features=self.our_features, local=self.local,
                          key=self.key, token=self.token, mapping=self.mapping, partner=partner,
                          session=session, watch=watch, cookie=self.cookie, nonce=self.auth.nonce)

    def _send_register(self, now):
        self.register.at(min(now + self._register_rto, self._since + self.register_timeout))
        return [self._send(self._register_msg())]

    def _connect_msg(self, name, session=None):
        """Connect to *name* (with *session*: again, if that pairing lives);
        the token tells the relay it is really us asking."""
        return self._send(P.Connect(name, session=session, token=self.request_token()))

    def request_token(self):
        """Our token for a request, if the relay speaks ``ext`` (a seed relay
        would choke on a unit variant in map form)."""
        return self.token if self.speaks_ext else None

    def _send(self, msg):
        data = P.encode(msg)
        return Send(padded(data) if type(msg) is P.Register else data, self.addr)
