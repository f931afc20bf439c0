"""Our side of the relay: one :class:`RelayClient` per process.

Theory of operation
-------------------
The client registers, keeps the registration alive, asks the relay for
partners and reads its answers. It holds no chat: what a chat needs from the
relay it gets as data events (:class:`Introduction`, :class:`RequestEnded`)
handed to its owner, the router (:mod:`peerpunch.session`), which in turn
tells it which chats live (``chat_began``/``chat_finished``), so that every
Register says so and a restarted relay relearns them.

Its state is its :class:`~peerpunch.signup.Signup`'s (REGISTERING,
REGISTERED, CLOSED: the first Register until it is acknowledged, with the
cookie and the token that prove us); then
:class:`~peerpunch.liveness.Liveness` re-registers steadily and says when
the relay stops answering and when it is back. Every Register says what we
are (features, LAN candidates, key, NAT mapping), the chats we are in and
the names we wait for, all built in one place,
:meth:`RelayClient._register_msg`; SessionFinished is built in
:meth:`RelayClient.chat_finished` and Connect in :meth:`RelayClient.connect_msg`.
Our Registers are padded (:func:`peerpunch.registration.padded`) so that a
Cookie fits. What from the relay's address we believe is
:class:`~peerpunch.registration.RelayAuth`'s rule.

Our NAT's mapping is learnt once, at the first ext RegisterAck
(:class:`~peerpunch.mapping.MappingCheck`). A request for a partner is a
:class:`~peerpunch.request.Request`, kept (and the relay's answers routed to
it) in :class:`~peerpunch.requesttable.Requests`: one per partner when the relay grants
several chats (``several``: RegisterAck ``max_chats``, the chats every
Register names and asks for), else one at a time. Everything we send a relay
that speaks ``ext`` carries our token (and SessionFinished its ``partner``).
"""

import collections
import logging

from . import identity as ID
from . import protocol as P
from . import stun
from .effects import Log, Send
from .events import REFUSED_LATER, REFUSED_REGISTERING, REFUSED_REQUEST, Failed, RelayRefused
from .liveness import Liveness
from .mapping import MappingCheck
from .registration import MODE_NOTES, RelayAuth, fitting, padded
from .request import RequestEnded, RequestState  # noqa: F401 -- re-exported
from .requesttable import Requests
from .signup import TRANSITIONS, RelayState, Signup  # noqa: F401 -- re-exported
from .timers import earliest, fire


WANT_CHATS = 16                    # the chats we ask to hold at once (Register max_chats)


Introduction = collections.namedtuple("Introduction", "info")
Introduction.__doc__ = """The relay introduced us to a partner: *info* is the believed PeerInfo
(for the router; never shown)."""


class RelayClient:
    """Registration, requests and the relay's answers; one per process."""

    def __init__(self, username, relay_addr, *, features, local=None, identity=None,
                 keepalive, register_timeout, rng, random_bytes, stats, want_chats=WANT_CHATS):
        self.username = username
        self.want_chats = want_chats     # announced unless 1 (then the seed's one-chat rule)
        self.addr = relay_addr
        self.endpoint = P.format_endpoint(relay_addr)
        self.our_features = features
        self.local = local
        self.key = ID.encode_key(identity.public) if identity else None
        self.keepalive = keepalive
        self.stats = stats
        self.features = ()           # the relay's, from its RegisterAck
        self.max_chats = 1           # how many chats the relay lets us hold at once
        self.auth = RelayAuth(random_bytes)
        self.requests = Requests(self)   # target -> Request (several if the relay grants chats)
        self.chats = {}              # partner -> session secret (hex) of the chats that live
        self.signup = Signup(username, self.endpoint, register_timeout, self.register_now,
                             self._stop_timers)
        self.mapping_check = MappingCheck(relay_addr, self._mapping_known)
        self.liveness = Liveness(self.endpoint, keepalive, rng, self.register_now)

    # -- queries

    @property
    def state(self):
        return self.signup.state

    @property
    def token(self):
        return self.signup.token

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

    @property
    def several(self):
        """True if we may hold several requests: the relay grants several
        chats, and a relay that does names the target of its refusals."""
        return self.max_chats > 1

    @property
    def request(self):
        """Our latest request, if any."""
        return self.requests.latest()

    def asking(self, *states):                    # the latest in *states*
        return self.requests.latest(*states)

    def waits_for(self):
        """The name we (last) wait for to come online, or None."""
        waiting = self.requests.waiting()
        return waiting[-1] if waiting else None

    def waiting_for(self):
        return self.requests.waiting()

    @property
    def mapping(self):
        """Our NAT's (P.MAPPINGS), once the check says; else None."""
        return self.mapping_check.mapping

    # -- inputs

    def start(self, now):
        return self.signup.start(now)

    def tick(self, now):
        return fire(self.timers(), now)

    def next_deadline(self):
        return earliest(self.timers())

    def timers(self):
        return self.own_timers() + self.request_timers()

    def own_timers(self):
        """Registration, relay liveness and the mapping check."""
        return self.signup.timers() + (self.liveness.timer, self.mapping_check.timer)

    def request_timers(self):
        """The requests' (after the chats' on a tie: see ChatTable.timers)."""
        return self.requests.timers()

    def _stop_timers(self):
        """Closed: no timer of ours runs again."""
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
        return self.mapping_check.received(data, addr, now)

    def is_stun_for_us(self, data, addr):
        return stun.is_stun(data) and (addr == self.addr or self.mapping_check.running)

    # -- what the router asks for

    def ask(self, target, now):
        """Ask the relay for *target* (registered; no request for it yet,
        and none at all unless ``several``)."""
        return self.requests.ask(target, now, self.mapping_check.waits_until(now))

    def introduced(self, partner, now, keep_others=False):
        """The router took the relay's introduction of *partner*: a request
        for that name repeats its Connect while the punch runs; those for
        other names are dropped unless *keep_others* (we may hold several
        chats)."""
        self.requests.introduced(partner, now, keep_others)

    def settled(self, partner, now):
        """The punch to *partner* found a path: no more Connects for it."""
        self.requests.settled(partner, now)

    def chat_began(self, partner, session_hex):
        if session_hex:
            self.chats[partner] = session_hex
        else:
            self.chats.pop(partner, None)

    def chat_finished(self, partner, now):
        """A chat (or our request) ended: tell the relay; a Register that
        names no watch ends the one we had."""
        self.chats.pop(partner, None)
        watched = partner in self.waiting_for() and self.watches
        self.requests.drop(partner)
        # to an ext relay it names the partner; else it ends every session of ours
        named = partner if self.speaks_ext else None
        out = [self._send(P.SessionFinished(token=self.request_token(), partner=named))]
        if watched:
            out.append(self.register_now())
        return out

    def reintroduce(self, partner, session_hex):
        """The path to *partner* went quiet: register again (our NAT may have
        moved us) and ask for it again (its NAT may have moved it)."""
        return [self.register_now(), self.connect_msg(partner, session_hex)]

    def nudge(self, now):
        """A relayed datagram while we ask for someone: the relay has paired
        us and our peer already punches through it, so the PeerInfo meant for
        us was lost. Ask again now rather than at the next retry."""
        return self.requests.nudge(now)

    @property
    def silent_since(self):
        """When the relay stopped answering, if it has; else None."""
        return self.liveness.silent_since

    def quit(self, now):
        out = []
        if self.speaks_ext and self.state is not RelayState.REGISTERING:
            out = [self._send(P.Unregister(token=self.request_token()))] * 2
        self.signup.quit()
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
        note = MODE_NOTES[self.auth.mode]
        return True, [Log(logging.DEBUG, "relay %s: %s" % (self.endpoint, note))]

    def _on_cookie(self, msg, now):
        return self.signup.cookie_received(msg.cookie)

    def _on_register_ack(self, msg, now):
        """Features and token (see Signup.learn); registered, if not yet."""
        self.features = msg.features or ()
        self.max_chats = min(msg.max_chats or 1, self.want_chats) if self.speaks_ext else 1
        echo = self.signup.learn(msg.token, self.speaks_ext, self.auth.mode != RelayAuth.EXT)
        proof = [self.register_now()] if echo else []
        # an echo must be acknowledged too (it may carry our watch): retry it soon;
        # so must a registration with an ext relay that gave us no token yet
        soon = echo or (self.speaks_ext and self.token is None)
        proof += self.liveness.acked(now, soon) + self._start_mapping_check(now)
        self.requests.relay_acked(now)
        return proof + self.signup.acked()

    def _on_peer_info(self, msg, now):
        out = []
        if self.state is RelayState.REGISTERING:     # the RegisterAck was lost
            out += self._on_register_ack(self.auth.implied_ack(), now)
        return out + [Introduction(msg)]

    def _on_target_not_found(self, msg, now):
        return self.requests.not_found(msg.target, now)

    def _on_online(self, msg, now):
        return self.requests.online(msg.username, now)

    def _on_target_busy(self, msg, now):
        return self.requests.failed(Failed("target_busy"), msg.target)

    def _on_error(self, msg, now):
        """A refusal. Its ``message`` is the relay's text: never shown; the
        console words the code."""
        if msg.code == P.ERROR_RELAY_STOPPING:
            if self.state is RelayState.REGISTERING:
                return []
            return self.liveness.stopping(now)
        if self.state is RelayState.REGISTERING and \
                msg.code in (P.ERROR_NAME_TAKEN, P.ERROR_RELAY_FULL):
            return self.signup.refused(msg.code, REFUSED_REGISTERING)
        if msg.code == P.ERROR_NAME_TAKEN:
            return [RelayRefused(msg.code, self.username, REFUSED_LATER)]
        req = self.requests.refused(msg.target)
        target = req.target if req is not None else msg.target
        return self.requests.failed(RelayRefused(msg.code, target, REFUSED_REQUEST), msg.target)

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

    def _start_mapping_check(self, now):
        if not self.speaks_ext:
            return []             # a seed relay, which would choke on STUN
        return self.mapping_check.start(now)

    def _mapping_known(self, now):
        """The check is done: tell the relay (it passes the mapping to our
        partners) and send a first Connect that waited for it."""
        out = [self.register_now()] if self.mapping is not None else []
        return out + self.requests.mapping_known(now)

    # -- messages to the relay (what a Request uses too)

    def connect_msg(self, name, session=None):
        """Connect to *name* (with *session*: again, if that pairing lives);
        the token tells the relay it is really us asking."""
        return self._send(P.Connect(name, session=session, token=self.request_token()))

    def register_now(self):
        return self._send(fitting(self._register_msg()))

    def register_soon(self, when):
        """Re-register no later than *when* (retried until acknowledged)."""
        self.liveness.soon(when)

    def _register_msg(self):
        """The one place a Register is built: what we are, our chats, our
        watches (a restarted relay relearns them), how many chats we want."""
        partner = session = None
        for partner, session in self.chats.items():   # the first, for relays of the previous version
            break
        chats = tuple(self.chats.items())[:P.MAX_CHATS] or None
        watch = tuple(self.waiting_for()[-P.MAX_WATCH:]) if self.watches else ()
        wanted = self.want_chats if self.want_chats > 1 else None
        return P.Register(self.username, features=self.our_features, local=self.local,
                          key=self.key, token=self.token, mapping=self.mapping, partner=partner,
                          session=session, watch=watch or None, cookie=self.signup.cookie,
                          nonce=self.auth.nonce, max_chats=wanted, chats=chats)

    def request_token(self):
        """Our token for a request, if the relay speaks ``ext`` (a seed relay
        would choke on a unit variant in map form)."""
        return self.token if self.speaks_ext else None

    def _send(self, msg):
        data = P.encode(msg)
        return Send(padded(data) if type(msg) is P.Register else data, self.addr)
