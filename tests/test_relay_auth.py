"""Issue 10, finding E: the peer believes only relay messages that carry its
nonce, and answers the relay's Cookie. A scripted relay: datagrams built with
peerpunch.protocol and fed to the sans-I/O core, forgeries included (the
relay's source address proves nothing)."""

import logging
import random

import pytest

from peerpunch import events as E
from peerpunch import protocol as P
from peerpunch import session as S
from peerpunch.console import format_event
from peerpunch.effects import Log
from peerpunch.registration import MIN_REGISTER_BYTES, RelayAuth
from peerpunch.session import State
from peerpunch.stun import is_stun

RELAY = ("203.0.113.1", 8080)
BOB = ("198.51.100.20", 41000)
THIRD = ("192.0.2.99", 5555)
NONCE = "5a" * 16
WRONG = "a5" * 16
COOKIE, COOKIE2 = "c1" * 16, "c2" * 16
TOKEN, EVIL_TOKEN = "ab" * 16, "ee" * 16
SECRET = "5e" * 16
FEATURES = ("ext", "relay1", "watch1")


def fixed_bytes(n):
    return b"\x5a" * n


def ack(nonce=NONCE, token=TOKEN):
    return P.encode(P.RegisterAck(features=FEATURES, token=token, nonce=nonce))


def info(endpoint=BOB, nonce=NONCE, username="bob", session=SECRET):
    return P.encode(P.PeerInfo(peer=P.format_endpoint(endpoint), username=username,
                               features=("ext", "relay1"), session=session, nonce=nonce))


def to_relay(effects):
    return [P.decode(e.data) for e in effects
            if isinstance(e, S.Send) and e.addr == RELAY and not is_stun(e.data)]


def sends(effects):
    return [e for e in effects if isinstance(e, S.Send)]


def shown(effects):
    return [e for e in effects if not isinstance(e, (S.Send, Log))]


def registering():
    session = S.PeerSession("alice", RELAY, random_bytes=fixed_bytes)
    first = to_relay(session.start(0.0))
    assert first == [P.Register("alice", features=P.OUR_FEATURES, nonce=NONCE, max_chats=16)]
    return session


def registered():
    """alice, registered with our relay through the cookie exchange."""
    session = registering()
    session.datagram_received(P.encode(P.Cookie(cookie=COOKIE, nonce=NONCE)), RELAY, 0.05)
    session.datagram_received(ack(), RELAY, 0.1)
    assert session.state is State.IDLE and session.relay.token == TOKEN
    return session


def in_chat(connected=True):
    session = registered()
    session.datagram_received(info(), RELAY, 1.0)
    assert session.state is State.PUNCHING
    if connected:
        session.datagram_received(b'"Ping"', BOB, 1.1)
        assert session.state is State.CONNECTED
    return session


def run(session, start, seconds):
    """Tick *session* from *start* for *seconds*; every effect."""
    out, now = [], start
    while True:
        deadline = session.next_deadline()
        if deadline is None or deadline > start + seconds:
            return out
        now = max(now, deadline)
        out += session.tick(now)


# -- the cookie exchange


def test_relay_auth_register_carries_the_nonce_and_is_padded_for_the_cookie():
    session = S.PeerSession("x", RELAY)                      # the smallest Register there is
    data = [e.data for e in session.start(0.0) if isinstance(e, S.Send)]
    cookie = P.encode(P.Cookie(cookie=COOKIE, nonce=NONCE))
    assert len(data) == 1 and len(data[0]) >= MIN_REGISTER_BYTES > len(cookie)
    nonce = P.decode(data[0]).nonce
    assert len(nonce) == 32 and nonce != S.PeerSession("x", RELAY).relay.auth.nonce   # random


def test_relay_auth_cookie_is_answered_at_once_and_the_retries_carry_it():
    session = registering()
    out = session.datagram_received(P.encode(P.Cookie(cookie=COOKIE, nonce=NONCE)), RELAY, 0.05)
    assert to_relay(out) == [P.Register("alice", features=P.OUR_FEATURES, cookie=COOKIE,
                                        nonce=NONCE, max_chats=16)]
    assert [m.cookie for m in to_relay(session.tick(session.next_deadline()))] == [COOKIE]
    # a copy changes nothing; a new cookie (the first expired) is used at once
    assert session.datagram_received(P.encode(P.Cookie(cookie=COOKIE, nonce=NONCE)), RELAY, 0.6) == []
    out = session.datagram_received(P.encode(P.Cookie(cookie=COOKIE2, nonce=NONCE)), RELAY, 0.7)
    assert [m.cookie for m in to_relay(out)] == [COOKIE2]
    out = session.datagram_received(ack(), RELAY, 0.8)
    assert shown(out)[0] == S.Registered("alice", "203.0.113.1:8080")
    assert to_relay(out) == []           # proven by the cookie: no token echo needed
    later = to_relay(run(session, 0.8, S.REREGISTER_INTERVAL))
    assert later and all(m.cookie is None and m.token == TOKEN and m.nonce == NONCE for m in later)


def test_relay_auth_cookie_at_a_reregistration_and_after_a_move_during_a_chat():
    """A restarted relay, or our NAT moving us: the relay sees a Register from
    an address not proven and asks for the cookie; we keep our chat."""
    session = registered()
    out = session.datagram_received(P.encode(P.Cookie(cookie=COOKIE2, nonce=NONCE)), RELAY, 5.0)
    assert [(m.cookie, m.token) for m in to_relay(out)] == [(COOKIE2, TOKEN)]
    session = in_chat()
    out = session.datagram_received(P.encode(P.Cookie(cookie=COOKIE2, nonce=NONCE)), RELAY, 5.0)
    register, = to_relay(out)
    assert (register.cookie, register.token, register.partner, register.session) == \
        (COOKIE2, TOKEN, "bob", SECRET)
    assert session.state is State.CONNECTED


@pytest.mark.parametrize("nonce", [None, WRONG])
def test_relay_auth_cookie_without_our_nonce_is_dropped(nonce):
    session = registering()
    out = session.datagram_received(P.encode(P.Cookie(cookie=COOKIE, nonce=nonce)), RELAY, 0.05)
    assert sends(out) == [] and shown(out) == []
    assert session.stats["unauthenticated_relay"] == 1
    assert all(m.cookie is None for m in to_relay(session.tick(session.next_deadline())))


# -- finding E: forged datagrams from the relay's address


@pytest.mark.parametrize("nonce", [None, WRONG])
def test_relay_auth_forged_error_is_not_shown(nonce):
    forged = P.encode(P.Error(code="name-taken", message="your bank wants you at http://evil",
                              nonce=nonce))
    for session in (registered(), in_chat()):
        state = session.state
        assert session.datagram_received(forged, RELAY, 5.0) == \
            [Log(logging.DEBUG, "dropped Error from the relay's address: %s (1 so far)"
                 % ("a nonce that is not ours" if nonce else
                    "no nonce, from a relay that has sent ours"))]
        assert session.state is state
    # registering, once the relay's Cookie has shown our nonce: it does not close us
    session = registering()
    session.datagram_received(P.encode(P.Cookie(cookie=COOKIE, nonce=NONCE)), RELAY, 0.05)
    assert shown(session.datagram_received(forged, RELAY, 0.1)) == []
    assert session.state is State.REGISTERING


def test_relay_auth_authentic_error_is_worded_by_us_never_with_the_relays_text():
    session = registered()
    session.connect("bob", 1.0)
    out = session.datagram_received(P.encode(P.Error(
        code="bad-request", message="your bank wants you at http://evil", nonce=NONCE)), RELAY, 1.1)
    refused, = shown(out)
    assert refused == E.RelayRefused("bad-request", "bob", E.REFUSED_REQUEST)
    assert format_event(refused) == "the relay could not accept our request (asking for bob)"
    session = registering()
    out = session.datagram_received(P.encode(P.Error(
        code="name-taken", message="\x1b[2Jcall 555", nonce=NONCE)), RELAY, 0.1)
    assert [format_event(e) for e in shown(out)] == [
        "error: the relay says the name alice is in use"]
    assert session.state is State.CLOSED


@pytest.mark.parametrize("connected", [True, False])
@pytest.mark.parametrize("nonce", [None, WRONG])
def test_relay_auth_forged_introduction_of_our_partner_sends_nothing_to_a_third_address(
        connected, nonce):
    session = in_chat(connected)
    out = session.datagram_received(info(THIRD, nonce=nonce, session="77" * 16), RELAY, 2.0)
    assert THIRD not in session.table.current_chat().peer.candidates and session.table.current_chat().peer.secret.hex() == SECRET
    out += run(session, 2.0, 5.0)
    assert [e for e in out if isinstance(e, S.Send) and e.addr == THIRD] == []
    assert session.stats["unauthenticated_relay"] == 1


def test_relay_auth_authentic_reintroduction_does_probe_the_new_endpoint():
    """The control for the test above: with our nonce the relay may move us."""
    session = in_chat()
    out = session.datagram_received(info(THIRD), RELAY, 2.0)
    assert [e.addr for e in sends(out)] == [THIRD]


@pytest.mark.parametrize("nonce", [None, WRONG])
def test_relay_auth_forged_introduction_while_idle_starts_nothing(nonce):
    session = registered()
    out = session.datagram_received(info(THIRD, nonce=nonce, username="mallory"), RELAY, 2.0)
    assert sends(out) == [] and shown(out) == [] and session.state is State.IDLE


@pytest.mark.parametrize("forged", [
    ack(nonce=None, token=EVIL_TOKEN), ack(nonce=WRONG, token=EVIL_TOKEN), b'"RegisterAck"',
    P.encode(P.RegisterAck(features=("ext",), nonce=None))])
def test_relay_auth_forged_register_ack_keeps_our_token_and_features(forged):
    session = in_chat()
    assert sends(session.datagram_received(forged, RELAY, 2.0)) == []
    assert session.relay.token == TOKEN and session.relay.features == FEATURES   # no downgrade
    out = session.table.leave(3.0)
    assert P.SessionFinished(token=TOKEN, partner="bob") in to_relay(out)
    assert to_relay(session.connect("carol", 4.0)) == [P.Connect("carol", token=TOKEN)]


def test_relay_auth_introduction_when_our_ack_was_lost_asks_for_the_token_soon():
    session = registering()
    session.datagram_received(P.encode(P.Cookie(cookie=COOKIE, nonce=NONCE)), RELAY, 0.05)
    out = session.datagram_received(info(), RELAY, 0.1)          # the RegisterAck was lost
    assert session.state is State.PUNCHING and session.relay.token is None
    assert all(e.addr != RELAY or is_stun(e.data) for e in sends(out))   # nothing in seed form
    asked = [m for m in to_relay(run(session, 0.1, S.REREGISTER_RETRY)) if type(m) is P.Register]
    assert [(m.cookie, m.partner) for m in asked] == [(COOKIE, "bob")]
    session.datagram_received(ack(), RELAY, 2.2)
    assert session.relay.token == TOKEN
    assert to_relay(session.table.leave(3.0))[0] == P.SessionFinished(token=TOKEN, partner="bob")


def waiting():
    session = registered()
    session.connect("bob", 1.0)
    session.datagram_received(P.encode(P.TargetNotFound(nonce=NONCE)), RELAY, 1.1)
    assert session.state is State.WAITING
    return session


@pytest.mark.parametrize("nonce", [None, WRONG])
def test_relay_auth_forged_online_stopping_and_answers_do_nothing(nonce):
    session = waiting()
    assert sends(session.datagram_received(P.encode(P.Online("bob", nonce=nonce)), RELAY, 2.0)) == []
    assert session.state is State.WAITING
    stopping = P.encode(P.Error(code="relay-stopping", message="bye", nonce=nonce))
    assert shown(session.datagram_received(stopping, RELAY, 2.1)) == []
    assert session.relay.silent_since is None
    session = registered()
    session.connect("bob", 1.0)
    for forged in (P.TargetNotFound(nonce=nonce), P.TargetBusy(nonce=nonce),
                   P.Error(code="self-connect", message="x", nonce=nonce)):
        out = session.datagram_received(P.encode(forged), RELAY, 1.1)
        assert shown(out) == [] and sends(out) == [] and session.state is State.REQUESTING
    assert session.stats["unauthenticated_relay"] == 3


def test_relay_auth_authentic_online_and_stopping_are_heeded():
    """The control: the same messages with our nonce."""
    session = waiting()
    assert to_relay(session.datagram_received(P.encode(P.Online("bob", nonce=NONCE)), RELAY, 2.0)) \
        == [P.Connect("bob", token=TOKEN)]
    stopping = P.encode(P.Error(code="relay-stopping", message="bye", nonce=NONCE))
    assert shown(session.datagram_received(stopping, RELAY, 2.1)) == \
        [E.RelayStopping("203.0.113.1:8080")]


def test_relay_auth_forged_messages_of_every_kind_change_nothing():
    """The class, not the examples: 3,000 forged relay messages without our
    nonce (random variants and fields) at a peer in a chat: nothing shown,
    nothing sent, the chat and our token as they were."""
    rng = random.Random(10)
    session = in_chat()
    before = (session.state, session.relay.token, session.relay.features, list(session.table.current_chat().peer.candidates))
    for i in range(3000):
        out = session.datagram_received(_forged(rng), RELAY, 2.0 + i / 1000)
        assert sends(out) == [] and shown(out) == [], out
    assert before == (session.state, session.relay.token, session.relay.features,
                      session.table.current_chat().peer.candidates)


def _forged(rng):
    nonce = rng.choice([None, WRONG, "%032x" % rng.getrandbits(128)])
    name = rng.choice(["bob", "alice", "mallory"])
    return P.encode(rng.choice([
        P.RegisterAck(features=rng.choice([None, FEATURES]), token=EVIL_TOKEN, nonce=nonce),
        P.PeerInfo(peer=P.format_endpoint(rng.choice([BOB, THIRD])), username=name,
                   session=rng.choice([SECRET, "77" * 16]), nonce=nonce),
        P.TargetNotFound(nonce=nonce), P.TargetBusy(nonce=nonce), P.Online(name, nonce=nonce),
        P.Error(code=rng.choice(["name-taken", "relay-stopping", "x"]), message="m", nonce=nonce),
        P.Cookie(cookie=COOKIE2, nonce=nonce)]))


# -- seed relays, and relays of the previous version


def test_relay_auth_seed_relay_is_believed_but_cannot_downgrade_an_ext_one():
    session = registering()
    out = session.datagram_received(b'"RegisterAck"', RELAY, 0.1)     # a seed relay (or a forger)
    assert shown(out)[0] == S.Registered("alice", "203.0.113.1:8080")
    assert session.relay.auth.mode == RelayAuth.SEED
    assert shown(session.datagram_received(info(nonce=None), RELAY, 0.2))  # believed: nothing to check
    session.table.leave(0.3)
    # the authentic answers come: our nonce moves us out of seed mode for good
    session.datagram_received(P.encode(P.Cookie(cookie=COOKIE, nonce=NONCE)), RELAY, 0.4)
    session.datagram_received(ack(), RELAY, 0.5)
    assert session.relay.auth.mode == RelayAuth.EXT and session.relay.token == TOKEN
    session.datagram_received(b'"RegisterAck"', RELAY, 0.6)
    assert session.relay.token == TOKEN and session.relay.features == FEATURES


def test_relay_auth_wrong_nonce_is_dropped_even_from_a_seed_relay():
    session = registering()
    session.datagram_received(b'"RegisterAck"', RELAY, 0.1)
    assert session.datagram_received(info(nonce=WRONG), RELAY, 0.2)[0].text.startswith(
        "dropped PeerInfo from the relay's address: a nonce that is not ours")
    assert session.state is State.IDLE


def test_relay_auth_previous_relay_without_nonces_is_believed_for_now():
    """Transitional: an ext RegisterAck without any nonce is a relay of the
    previous version (said once at debug level); a wrong nonce is forged."""
    session = registering()
    out = session.datagram_received(ack(nonce=None), RELAY, 0.1)
    assert [e.text for e in out if isinstance(e, Log)] == [
        "relay 203.0.113.1:8080: a relay of the previous version (no nonces): its messages"
        " cannot be authenticated"]
    assert to_relay(out) == [P.Register("alice", features=P.OUR_FEATURES, token=TOKEN,
                                        nonce=NONCE, max_chats=16)]  # the old proof: echo the token
    out = session.datagram_received(ack(nonce=None), RELAY, 0.2)
    assert [e for e in out if isinstance(e, Log)] == []              # said once
    assert sends(session.datagram_received(ack(nonce=WRONG, token=EVIL_TOKEN), RELAY, 0.3)) == []
    assert session.relay.token == TOKEN


def test_relay_auth_without_the_transitional_rule_ext_messages_need_the_nonce(monkeypatch):
    monkeypatch.setattr(RelayAuth, "LEGACY_RELAYS", False)
    session = registering()
    for forged in (ack(nonce=None), P.encode(P.Error(code="name-taken", message="m"))):
        assert shown(session.datagram_received(forged, RELAY, 0.1)) == []
    assert session.state is State.REGISTERING
    session.datagram_received(b'"RegisterAck"', RELAY, 0.2)              # a seed relay still works
    assert session.state is State.IDLE and session.relay.auth.mode == RelayAuth.SEED


# -- wording


@pytest.mark.parametrize("code, line", [
    ("name-taken", "the relay says the name bob is in use (asking for bob)"),
    ("relay-full", "the relay is full; try again later (asking for bob)"),
    ("self-connect", "the relay says you cannot connect to yourself"),
    ("not-registered", "the relay does not know us (we are not registered with it) (asking for bob)"),
    ("relay-stopping", "the relay is stopping (asking for bob)"),
    ("rate-limited", "the relay refused (code rate-limited) (asking for bob)"),
    ("see http://evil", "the relay refused (code not shown: not a plain word) (asking for bob)"),
    ("\x1b[2J", "the relay refused (code not shown: not a plain word) (asking for bob)"),
])
def test_console_words_every_relay_refusal(code, line):
    assert format_event(E.RelayRefused(code, "bob", E.REFUSED_REQUEST)) == line


def test_console_words_a_name_lost_later():
    assert format_event(E.RelayRefused("name-taken", "alice", E.REFUSED_LATER)) == (
        "the relay says the name alice is in use (someone else registered your name while the"
        " relay could not hear you)")
