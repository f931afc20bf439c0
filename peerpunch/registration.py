"""Our side of the relay: registration, requests and the relay's answers.

Theory of operation
-------------------
:class:`RelayMixin` is the part of :class:`~peerpunch.session.PeerSession`
that talks to the relay. Registration is retried with backoff until the
RegisterAck comes (REGISTERING; a line at the start, one after SLOW_AFTER,
the reason if it fails), then repeated every REREGISTER_INTERVAL, or every
keep-alive interval if that is shorter (each one retried until acknowledged:
after 2 s, then every 4 s) to keep our name and the relay's NAT mapping
alive and to notice a relay that went away. After NOT_ANSWERING_AFTER
unanswered in a row we say the relay is not answering (within 3 keep-alive
intervals of its going) and that it is back at the next ack; the steady
retries register us with a returning relay within seconds. A relay that
stops cleanly says so (Error relay-stopping): we register again within a
second or so, and keep at it, so a restart costs seconds, not an interval. A token in the
ack of a relay of the previous version (one that echoes no nonce) is echoed
at once (and re-sent after REREGISTER_RETRY unless acknowledged), which
proves we are at our address; a relay of this version has seen that already
(the cookie, below). A new token is how a relay that restarted shows itself. Every Register says what we are
(features, LAN candidates, key, NAT mapping) and, during a chat, which chat
(partner and secret), so a restarted relay relearns it. A request (REQUESTING) sends its first Connect
once our NAT's mapping is known (at most MAPPING_WAIT later, so the relay
can pass it on) and repeats it every CONNECT_RETRY, with a Register in
front (a restarted relay may have forgotten us), until the introduction (a
PeerInfo, handled by the session) or an answer that ends it
(TargetBusy, Error; TargetNotFound turns it into a wait).

Waiting. A TargetNotFound turns the request into a wait (WAITING), said
once. With a relay that keeps watches (``watch1``) our Registers name the
target (``watch``) -- the first one at once, retried until acknowledged --
and the relay sends ``Online`` when it registers (or at once, if it is
there already): we ask again (REQUESTING, quietly: another TargetNotFound
just goes back to waiting). A relay that restarted relearns the watch from
our next Register. Any other relay (a seed's) is asked again every
WAIT_RETRY instead. /leave ends the wait and clears the watch.

Everything we send a relay that speaks ``ext`` carries our token.

Return routability. A relay of this version answers a Register from an
address where we have not proven ourselves (the first one, the first after
a restart of the relay, the first from a new address when our NAT moved us)
with a ``Cookie`` instead of an ack: we send the Register again at once with
that ``cookie`` (a cookie expires after a minute or so: another Cookie
replaces it), and the retries carry it until a RegisterAck with the token
(an introduction that shows a lost ack keeps it, and asks again soon). The
relay answers a Register with nothing larger, so ours are padded to
MIN_REGISTER_BYTES.

Authentic relay messages (:class:`RelayAuth`). The relay's source address
proves nothing: anyone can forge it. Each session picks a random nonce (16
bytes, from ``random_bytes``, os.urandom by default) and sends it in every
Register; the relay sends it back in everything it sends us. The rules:

* a message carrying a nonce that is not ours is dropped, always;
* a message carrying ours is believed, and shows that the relay speaks
  ``ext`` with nonces: from then on, for the rest of the session, anything
  from the relay's address without our nonce is dropped -- a seed-form
  ``RegisterAck`` too, so a forger cannot downgrade us to seed mode (a seed
  relay started in place of ours then looks silent, "not answering");
* a Cookie is believed only with our nonce;
* a seed relay (``"RegisterAck"`` without features) cannot echo a nonce:
  its messages are believed as they come (seed mode). This is the residual
  risk with a seed relay. It holds before the relay's first answer too:
  until the relay shows our nonce, a forged seed-form message from its
  address is believed (it may, say, have us think we are registered a
  moment early), and the first authentic one ends seed mode for good.
* Transitional (LEGACY_RELAYS, until every relay echoes nonces): a
  RegisterAck with ``ext`` but no nonce at all comes from a relay of the
  previous version; we believe it and its nonce-less messages, as for a
  seed relay (said once in the debug log), and, before any ack, its Error
  (name-taken) without a nonce. A RegisterAck with a wrong nonce is
  forged. Without LEGACY_RELAYS, an extension message (an ext
  RegisterAck, Error, Online) without our nonce is always dropped.

Dropped datagrams are counted (stats ``unauthenticated_relay``) and logged
at debug level. The relay's text (``Error.message``) is never shown; the
console words each error code (events.RelayRefused).
"""

import hmac
import logging

from . import identity as ID
from . import protocol as P
from .effects import Log, Send
from .events import (CONNECT_RETRY, CONNECT_TIMEOUT, IN_CHAT, NOT_ANSWERING_AFTER,
                     REGISTER_RTO_MAX, RELAY_RETRY_MAX, REREGISTER_INTERVAL, REREGISTER_MIN,
                     REREGISTER_RETRY, RELAY_STOPPING_EVERY, RELAY_STOPPING_RETRY, WAIT_RETRY,
                     REFUSED_LATER, REFUSED_REGISTERING, REFUSED_REQUEST,
                     Closed, Failed, Notice, RelayBack, RelayNotAnswering, RelayRefused,
                     RelayStopping, Registered, State, StillRegistering, Waiting)

MIN_REGISTER_BYTES = 200
"""Our Registers are padded to this: a relay never answers with more bytes
than it got, and its Cookie (99 bytes) must fit."""

NONCE_BYTES = 16


class RelayAuth:
    """Which datagrams from the relay's address we believe, for one session:
    the rules of the module docstring. ``nonce`` is ours (32 hex digits);
    ``mode`` what the relay has shown it is."""

    UNKNOWN = "unknown"      # no answer believed yet
    SEED = "seed"            # a seed relay: nothing can be authenticated
    LEGACY = "legacy"        # an ext relay of the previous version, without nonces
    EXT = "ext"              # echoes our nonce: only what carries it is believed

    LEGACY_RELAYS = True
    """Transitional: believe an ext relay that echoes no nonce (see the module
    docstring). To be removed once every relay of ours echoes nonces."""

    def __init__(self, random_bytes):
        self.nonce = random_bytes(NONCE_BYTES).hex()
        self.mode = self.UNKNOWN

    def check(self, msg):
        """None if *msg* (decoded, from the relay's address) is to be
        believed, else why not. Learns the relay's mode from what it believes."""
        nonce = getattr(msg, "nonce", None)
        if nonce is not None:
            if not hmac.compare_digest(nonce, self.nonce):
                return "a nonce that is not ours"
            self.mode = self.EXT
            return None
        if self.mode == self.EXT:
            return "no nonce, from a relay that has sent ours"
        if type(msg) is P.Cookie:
            return "a Cookie without our nonce"
        if type(msg) is P.RegisterAck:
            return self._ack_without_nonce(msg)
        if msg.SEED:                         # what a seed relay sends: nothing to check
            return None
        if self.mode == self.LEGACY or (self.mode == self.UNKNOWN and self.LEGACY_RELAYS):
            return None
        return "an extension message without our nonce"

    def implied_ack(self):
        """The RegisterAck an introduction implies when ours was lost: an ext
        relay's (without the token: we ask again soon) if it showed our nonce."""
        return P.RegisterAck(features=(P.FEATURE_EXT,)) if self.mode == self.EXT else P.RegisterAck()

    def _ack_without_nonce(self, msg):
        if not P.speaks_extensions(msg.features):
            self.mode = self.SEED
            return None
        if not self.LEGACY_RELAYS:
            return "an extension RegisterAck without our nonce"
        self.mode = self.LEGACY
        return None


_MODE_NOTES = {
    RelayAuth.SEED: "a seed relay: its messages cannot be authenticated",
    RelayAuth.LEGACY: "a relay of the previous version (no nonces): its messages cannot be"
                      " authenticated",
    RelayAuth.EXT: "it echoes our nonce: only messages that carry it are believed",
}

class RelayMixin:
    """Registration, requests and the relay's answers for :class:`PeerSession`."""

    # -- answers from the relay

    def _admit_from_relay(self, msg):
        """(believed, effects) for *msg* from the relay's address: see RelayAuth."""
        before = self._auth.mode
        why = self._auth.check(msg)
        if why is not None:
            self.stats["unauthenticated_relay"] += 1
            return False, [Log(logging.DEBUG, "dropped %s from the relay's address: %s (%d so far)"
                               % (type(msg).__name__, why, self.stats["unauthenticated_relay"]))]
        if self._auth.mode == before:
            return True, []
        return True, [Log(logging.DEBUG, "relay %s: %s" % (self.relay_endpoint,
                                                           _MODE_NOTES[self._auth.mode]))]

    def _on_cookie(self, msg, now):
        """The relay wants to see that we receive at our address: register
        again at once with its cookie (the retries carry it too). A copy of
        the cookie we have changes nothing."""
        if msg.cookie == self._cookie:
            return []
        self._cookie = msg.cookie
        return [self._to_relay(self._register_msg())]

    def _on_register_ack(self, msg, now):
        self.relay_features = msg.features or ()
        if msg.token or not P.speaks_extensions(self.relay_features):
            self._cookie = None              # proven: the token does the rest (kept after a lost ack)
        proof = []
        if not P.speaks_extensions(self.relay_features):
            self._token = None               # a seed relay (perhaps in place of ours): no tokens
        elif msg.token and msg.token != self._token:
            self._token = msg.token
            if self._auth.mode != RelayAuth.EXT:   # a relay of the previous version: echo it at
                proof = [self._to_relay(self._register_msg())]   # once, proof of our address
        # an echo must be acknowledged too (it may carry our watch): retry it soon;
        # so must a registration with an ext relay that gave us no token yet
        soon = proof or (P.speaks_extensions(self.relay_features) and self._token is None)
        self._timers["reregister"] = now + (REREGISTER_RETRY if soon else self._reregister_every())
        self._reregister_backoff = REREGISTER_RETRY
        proof += self._relay_answered(now) + self._start_mapping_check(now)  # that: at the first ext ack
        if self.state is State.WAITING and not self._relay_watches():
            self._timers.setdefault("wait_retry", now + WAIT_RETRY)   # a relay without watches now
        if self.state is not State.REGISTERING:
            return proof
        self._timers.pop("register", None)
        self._timers.pop("register_slow", None)
        self._enter(State.IDLE, now)
        out = proof + [Registered(self.username, self.relay_endpoint)]
        if self.target:
            return out + self.connect(self.target, now)
        return out + [Notice("waiting for someone to connect (or type /connect NAME)")]

    def _relay_answered(self, now):
        self._unanswered = 0
        if self._relay_silent_since is None:
            return []
        self._relay_silent_since = None
        return [RelayBack(self.relay_endpoint)]

    def _on_target_not_found(self, msg, now):
        if self.state is State.REQUESTING:
            return self._wait(now)
        return self._request_failed("Target user not found.", now)

    def _on_online(self, msg, now):
        """The relay says a name we watch has registered: ask for it."""
        if self.state is not State.WAITING or msg.username != self.target:
            return [Log(logging.DEBUG, "ignored Online for %s" % msg.username)]
        self._enter(State.REQUESTING, now)
        self._timers["connect"] = now + CONNECT_RETRY
        return [self._connect_msg(self.target)]

    def _wait(self, now):
        """The relay does not know our target (yet): wait for it. Said once
        per request; a later TargetNotFound (after an Online, or a retry)
        just goes back to waiting."""
        first = not self._waiting
        self._waiting = True
        self._enter(State.WAITING, now)
        out = [Failed("Target user not found."), Waiting(self.target)] if first else []
        if not self._relay_watches():
            self._timers["wait_retry"] = now + WAIT_RETRY
            return out
        # the watch, at once; retried like an echo until acknowledged
        soon = now + REREGISTER_RETRY
        self._timers["reregister"] = min(self._timers.get("reregister", soon), soon)
        return out + [self._to_relay(self._register_msg())]

    def _relay_watches(self):
        return P.FEATURE_WATCH in self.relay_features

    def _on_target_busy(self, msg, now):
        return self._request_failed("Target user is busy.", now)

    def _on_error(self, msg, now):
        """A refusal. Its ``message`` is the relay's text: never shown (a
        forger's, with a seed or old relay); the console words the code."""
        if msg.code == P.ERROR_RELAY_STOPPING:
            return self._relay_stopping(now)
        if self.state is State.REGISTERING and msg.code in (P.ERROR_NAME_TAKEN, P.ERROR_RELAY_FULL):
            self._enter(State.CLOSED, now)
            return [Closed(1, RelayRefused(msg.code, self.username, REFUSED_REGISTERING))]
        if msg.code == P.ERROR_NAME_TAKEN:
            return [RelayRefused(msg.code, self.username, REFUSED_LATER)]
        return self._request_failed(RelayRefused(msg.code, self.target, REFUSED_REQUEST), now)

    def _relay_stopping(self, now):
        """The relay says it stops (a restart, say): register again within
        a second or so (at random: not all its clients at once), then as
        for a relay that does not answer, so that the relay that replaces
        it knows us within seconds of its start."""
        if self.state is State.REGISTERING or self._relay_silent_since is not None or \
                now - self._last_stopping < RELAY_STOPPING_EVERY:
            return []        # (a forger at a seed or old relay's address cannot make us say it often)
        self._last_stopping = now
        self._relay_silent_since = now
        self._unanswered = NOT_ANSWERING_AFTER          # said already: no "not answering" too
        first = self._rng.uniform(*RELAY_STOPPING_RETRY)
        self._timers["reregister"] = now + first
        self._reregister_backoff = first
        return [RelayStopping(self.relay_endpoint)]

    def _request_failed(self, why, now):
        """The relay refused our request: *why* is a reason (text of ours) or
        a RelayRefused event."""
        if self.state is not State.REQUESTING:
            return [Log(logging.DEBUG, "relay said %r outside a request" % (why,))]
        return [why if isinstance(why, RelayRefused) else Failed(why)] + self._end_chat(now)

    # -- timers

    def _timer_register(self, now):
        if now - self._since >= self.register_timeout:
            self._enter(State.CLOSED, now)
            return [Closed(1, "no answer from the relay at %s after %g s (is a relay running there,"
                           " and can UDP reach it?)" % (self.relay_endpoint, self.register_timeout))]
        self._register_rto = min(self._register_rto * 2, REGISTER_RTO_MAX)
        return self._send_register(now)

    def _timer_reregister(self, now):
        """Re-register every _reregister_every(). Each one is retried after
        REREGISTER_RETRY, doubling up to RELAY_RETRY_MAX (or the interval, if
        shorter) and steady there, until the RegisterAck (which puts the next
        one a whole interval away) comes back: a lost datagram costs seconds,
        and a relay that comes back is registered with within seconds. After
        NOT_ANSWERING_AFTER unanswered in a row, say the relay is silent."""
        out = []
        if self._unanswered == 0:
            self._first_unanswered = now
        elif self._unanswered >= NOT_ANSWERING_AFTER and self._relay_silent_since is None:
            self._relay_silent_since = self._first_unanswered
            out.append(RelayNotAnswering(self.relay_endpoint, now - self._first_unanswered))
        self._unanswered += 1
        self._timers["reregister"] = now + min(self._reregister_backoff, self._reregister_every())
        self._reregister_backoff = min(2 * self._reregister_backoff, RELAY_RETRY_MAX)
        return out + [self._to_relay(self._register_msg())]

    def _reregister_every(self):
        """How often we re-register: every REREGISTER_INTERVAL, or every
        keep-alive interval if shorter (so a silent relay is noticed within
        three of them), but not more often than REREGISTER_MIN."""
        return max(REREGISTER_MIN, min(REREGISTER_INTERVAL, self.keepalive))

    def _timer_wait_retry(self, now):
        """Waiting, with a relay that keeps no watches: ask it again."""
        if self.state is not State.WAITING or self._relay_watches():
            return []
        self._enter(State.REQUESTING, now)
        self._timers["connect"] = now + CONNECT_RETRY
        return [self._connect_msg(self.target)]

    def _timer_register_slow(self, now):
        if self.state is not State.REGISTERING:
            return []
        return [StillRegistering(self.relay_endpoint, now - self._since)]

    def _timer_connect(self, now):
        if self.state is State.REQUESTING and now - self._since >= CONNECT_TIMEOUT:
            if self._waiting:               # the relay is silent: it will say so; wait on
                return self._wait(now)
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
        watch = None
        if self._waiting and self.state in (State.WAITING, State.REQUESTING) and \
                self._relay_watches():
            watch = (self.target,)          # a restarted relay relearns our watch
        return P.Register(self.username, features=self.features, local=self.local, key=key,
                          token=self._token, mapping=self.mapping, partner=partner,
                          session=session, watch=watch, cookie=self._cookie,
                          nonce=self._auth.nonce)

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
        data = P.encode(msg)
        return Send(_padded(data) if type(msg) is P.Register else data, self.relay_addr)


def _padded(data):
    """An encoded Register of at least MIN_REGISTER_BYTES: a ``pad`` field of
    blanks, which decoders ignore (an unknown field), goes at its end."""
    if len(data) >= MIN_REGISTER_BYTES:
        return data
    blanks = max(0, MIN_REGISTER_BYTES - len(data) - len(b',"pad":""'))
    return data[:-2] + b',"pad":"' + b" " * blanks + b'"}}'
