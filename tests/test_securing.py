"""Secure alone: two machines joined by an in-memory wire, with a fake clock.

No session, no relay, no sockets: what one partner's link does with the
handshake, the pins and the user's /trust, and the words the console
gives its events.
"""

import random

import pytest

from peerpunch import crypto
from peerpunch import identity as ID
from peerpunch import protocol as P
from peerpunch import securing as SC
from peerpunch import secure
from peerpunch.console import format_event
from peerpunch.events import MAX_HELD

BACKEND = crypto.get_backend("auto")     # libcrypto where it loads: the pure one is slow
SECRET = bytes(range(16))
ENCRYPTING = P.SECURE_FEATURES
PLAIN = P.OUR_FEATURES
STEP = 0.05
S = SC.SecureState


def new_identity():
    private = crypto.generate_private_key()
    return ID.Identity(private, BACKEND.x25519_public(private))


def machine(us, partner, ident="new", features=ENCRYPTING, pins=None, secret=SECRET, **policy):
    ident = new_identity() if ident == "new" else ident
    return SC.Secure(us, partner, features=features, secret=secret, identity=ident,
                     backend=BACKEND, pins=pins if pins is not None else SC.Pins(), **policy)


def chat(text):
    return P.DirectMessage(text)


class Wire:
    """Carries frames between two machines; ticks each when its deadline
    has come; keeps what each side got and what it rejected."""

    def __init__(self, a, b, drop=None, loss=0.0, seed=0):
        self.a, self.b = a, b
        self.other = {a: b, b: a}
        self.now = 0.0
        self.events = {a: [], b: []}
        self.messages = {a: [], b: []}
        self.rejected = {a: [], b: []}
        self.sent = {a: [], b: []}
        self.queue = []
        self.drop = drop or (lambda src, data: False)
        self.loss = loss
        self.rng = random.Random(seed)

    def take(self, side, out):
        self.events[side] += out.events
        self.messages[side] += out.messages
        self.queue += [(side, f) for f in out.frames]
        self.sent[side] += out.frames

    def start(self):
        for side in (self.a, self.b):
            self.take(side, side.start(self.now))
        return self

    def deliver(self, src, data):
        dst = self.other[src]
        try:
            self.take(dst, dst.receive(data, self.now))
        except P.RemoteProtocolError as exc:
            self.rejected[dst].append(exc)

    def run(self, seconds=2.0):
        end = self.now + seconds
        while self.now < end:
            batch, self.queue = self.queue, []
            for src, data in batch:
                if not self.drop(src, data) and self.rng.random() >= self.loss:
                    self.deliver(src, data)
            self.now += STEP
            for side in (self.a, self.b):
                deadline = side.next_deadline()
                if deadline is not None and self.now >= deadline:
                    self.take(side, side.tick(self.now))
        return self

    def of(self, side, kind):
        return [e for e in self.events[side] if type(e) is kind]


def secured_pair(**kw):
    a_id, b_id = new_identity(), new_identity()
    a = machine("alice", "bob", a_id, **kw)
    b = machine("bob", "alice", b_id)
    return Wire(a, b).start().run(), a_id, b_id


# -- the handshake

def test_secure_handshake_completes_and_pins_on_first_chat():
    wire, a_id, b_id = secured_pair()
    a, b = wire.a, wire.b
    assert a.state is S.SECURE and b.state is S.SECURE
    assert a.encrypted and a.ready and a.chat_open and not a.blocked
    assert wire.events[a] == [SC.Secured("bob", b_id.public, ID.NEW), SC.PinKey("bob", b_id.public)]
    assert wire.events[b] == [SC.Secured("alice", a_id.public, ID.NEW),
                              SC.PinKey("alice", a_id.public)]
    assert a.pins.get("bob") == b_id.public and b.pins.get("alice") == a_id.public
    assert a.next_deadline() is None and b.next_deadline() is None
    assert wire.rejected == {a: [], b: []}
    assert format_event(wire.events[a][0]) == "first chat with bob: key pinned"
    assert format_event(wire.events[a][1]) is None      # the shell writes known_peers


def test_secure_messages_are_sealed_and_arrive_decoded():
    wire, _, _ = secured_pair()
    a, b = wire.a, wire.b
    sealed = a.seal(chat("the secret word is swordfish"))
    assert b"swordfish" not in sealed and sealed[0] == secure.DATA
    assert len(sealed) == len(P.encode(chat("the secret word is swordfish"))) + a.overhead
    assert b.receive(sealed, wire.now) == SC.Output(messages=[chat("the secret word is swordfish")])
    assert a.receive(b.seal(P.Goodbye()), wire.now).messages == [P.Goodbye()]


def test_secure_handshake_frames_only_before_keys():
    a, b = machine("alice", "bob"), machine("bob", "alice")
    wire = Wire(a, b).start()
    assert a.state is S.HANDSHAKING and not a.ready and a.next_deadline() is not None
    assert [f[0] for f in wire.sent[a]] == [secure.HELLO] and wire.sent[b] == []
    with pytest.raises(P.LocalProtocolError):
        a.seal(chat("too early"))
    wire.run()
    kinds = [f[0] for f in wire.sent[a]]
    assert kinds == [secure.HELLO, secure.FINISH]


@pytest.mark.parametrize("kind", [secure.HELLO, secure.REPLY, secure.FINISH, secure.DATA])
def test_secure_lost_handshake_frame_is_repeated_by_tick(kind):
    dropped = []

    def drop_first(src, data):
        if data[0] == kind and not dropped:
            dropped.append(data)
            return True
        return False
    a, b = machine("alice", "bob"), machine("bob", "alice")
    wire = Wire(a, b, drop=drop_first).start().run(3.0)
    assert dropped and a.state is S.SECURE and b.state is S.SECURE
    repeated = [f for side in (a, b) for f in wire.sent[side] if f[0] == kind]
    assert len(repeated) >= 2


def test_secure_handshake_survives_loss():
    for seed in range(10):
        a, b = machine("alice", "bob"), machine("bob", "alice")
        Wire(a, b, loss=0.2, seed=seed).start().run(9.0)
        assert a.state is S.SECURE and b.state is S.SECURE, seed


def test_secure_handshake_timeout_fails_with_a_reason():
    a, b = machine("alice", "bob"), machine("bob", "alice")
    wire = Wire(a, b, drop=lambda src, data: True).start().run(secure.HANDSHAKE_TIMEOUT + 1)
    assert wire.events[a] == [SC.LinkFailed("bob", SC.TIMED_OUT)]
    assert a.state is S.FAILED and a.next_deadline() is None and not a.ready
    assert format_event(wire.events[a][0]) == \
        "could not secure the chat with bob: no secure handshake within 10 s"


def test_secure_wrong_session_secret_never_secures():
    a = machine("alice", "bob", secret=b"right" * 4)
    b = machine("bob", "alice", secret=b"wrong" * 4)
    wire = Wire(a, b).start().run(3.0)
    assert a.state is S.HANDSHAKING and b.state is S.HANDSHAKING
    assert wire.rejected[b] and all(isinstance(e, secure.FrameRejected) for e in wire.rejected[b])


def test_secure_plain_ping_is_answered_only_until_keys():
    a, b = machine("alice", "bob"), machine("bob", "alice")
    wire = Wire(a, b).start()
    assert b.receive(SC.PING, 0.0) == SC.Output(frames=[SC.PONG])   # a partner still punching
    wire.run()
    for probe in (SC.PING, SC.PONG):
        with pytest.raises(SC.WrongKind):
            b.receive(probe, wire.now)


# -- plain links and refusals

def test_secure_plain_link_with_a_partner_that_does_not_encrypt():
    a = machine("alice", "bob", features=PLAIN)
    b = machine("bob", "alice", ident=None, features=ENCRYPTING)
    wire = Wire(a, b).start().run()
    assert a.state is S.PLAIN and b.state is S.PLAIN and a.chat_open and a.ready
    assert not a.encrypted and a.overhead == 0 and a.remote_key is None
    assert wire.events[a] == [SC.Unencrypted("bob", None)]
    assert a.seal(chat("plain hello")) == P.encode(chat("plain hello"))
    assert b.receive(a.seal(chat("plain hello")), 0.0).messages == [chat("plain hello")]
    assert format_event(wire.events[a][0]) == \
        "!! bob's client does not encrypt: anyone on the path can read and change this chat"


def test_secure_plain_link_rejects_sealed_frames_and_garbage():
    a = machine("alice", "bob", features=PLAIN)
    a.start(0.0)
    with pytest.raises(SC.WrongKind):
        a.receive(bytes([secure.DATA]) + bytes(40), 0.0)
    with pytest.raises(P.RemoteProtocolError):
        a.receive(b"not json", 0.0)
    assert a.state is S.PLAIN


@pytest.mark.parametrize("policy, reason, words", [
    ({"strict": True}, SC.PLAIN_STRICT, "bob's client does not encrypt: refused (--strict)"),
    ({"require_encryption": True}, SC.PLAIN_REQUIRED,
     "bob's client does not encrypt: refused (--require-encryption)"),
    ({"strict": True, "require_encryption": True}, SC.PLAIN_STRICT,
     "bob's client does not encrypt: refused (--strict)"),
])
def test_secure_policy_refuses_a_partner_that_does_not_encrypt(policy, reason, words):
    a = machine("alice", "bob", features=PLAIN, **policy)
    out = a.start(0.0)
    assert out == SC.Output(events=[SC.Refused("bob", reason, None)])
    assert a.state is S.FAILED and not a.chat_open
    assert a.seal(P.Goodbye()) == P.encode(P.Goodbye())    # the goodbye can still go out
    assert format_event(out.events[0]) == words
    with pytest.raises(P.LocalProtocolError):
        a.receive(P.encode(chat("after the refusal")), 0.0)


def test_secure_strict_refuses_a_key_not_pinned():
    wire, _, b_id = secured_pair(strict=True)
    a = wire.a
    assert wire.events[a] == [SC.Refused("bob", SC.NOT_PINNED, b_id.public)]
    assert a.state is S.FAILED and a.pins.get("bob") is None
    assert a.ready                              # keys agreed: a sealed goodbye can go out
    assert format_event(wire.events[a][0]) == \
        "refused bob: key %s is not pinned (--strict)" % ID.fingerprint(b_id.public)


def test_secure_strict_accepts_a_pinned_key():
    b_id = new_identity()
    a = machine("alice", "bob", strict=True, pins=SC.Pins({"bob": b_id.public}))
    wire = Wire(a, machine("bob", "alice", b_id)).start().run()
    assert a.state is S.SECURE and wire.events[a] == [SC.Secured("bob", b_id.public, ID.KNOWN)]


# -- trust on first use

def test_secure_second_chat_knows_the_key():
    pins = SC.Pins()
    b_id = new_identity()
    Wire(machine("alice", "bob", pins=pins), machine("bob", "alice", b_id)).start().run()
    again = machine("alice", "bob", pins=pins)
    wire = Wire(again, machine("bob", "alice", b_id)).start().run()
    assert wire.events[again] == [SC.Secured("bob", b_id.public, ID.KNOWN)]
    assert again.chat_open and format_event(wire.events[again][0]) is None


def changed_key_chat():
    old, new = new_identity(), new_identity()
    pins = SC.Pins({"bob": old.public})
    a = machine("alice", "bob", pins=pins)
    wire = Wire(a, machine("bob", "alice", new)).start().run()
    return wire, old, new


def test_secure_changed_key_blocks_the_chat():
    wire, old, new = changed_key_chat()
    a, b = wire.a, wire.b
    assert a.state is S.KEY_CHANGED and a.blocked and not a.chat_open
    assert wire.events[a] == [SC.Secured("bob", new.public, ID.CHANGED),
                              SC.KeyChanged("bob", old.public, new.public)]
    assert a.pins.get("bob") == old.public
    assert a.ready                              # pings and goodbyes still go
    words = format_event(wire.events[a][1]).split("\n")
    assert words == ["!! " + "@" * 64,
                     "!! WARNING: bob's key has CHANGED: pinned %s, presented %s"
                     % (ID.fingerprint(old.public), ID.fingerprint(new.public)),
                     "!! Someone may be impersonating bob. Nothing will be shown or sent",
                     "!! until you type /trust (accept it) or /leave.",
                     "!! " + "@" * 64]
    assert format_event(wire.events[a][0]) is None
    # what arrives meanwhile is decoded for the chat to hold, up to MAX_HELD
    got = [a.receive(b.seal(chat("it's me %d" % i)), wire.now).messages[0]
           for i in range(MAX_HELD + 5)]
    assert [a.hold(m) for m in got] == [True] * MAX_HELD + [False] * 5


def test_secure_trust_releases_held_lines_and_pins_the_key():
    wire, old, new = changed_key_chat()
    a, b = wire.a, wire.b
    for text in ("it's me, really", "trust me"):
        assert a.hold(a.receive(b.seal(chat(text)), wire.now).messages[0])
    out = a.trust(wire.now)
    assert out.messages == [chat("it's me, really"), chat("trust me")]
    assert out.events == [SC.PinKey("bob", new.public), SC.Trusted("bob")]
    assert a.state is S.SECURE and a.chat_open and a.pins.get("bob") == new.public
    assert format_event(out.events[1]) == "trusting bob now"
    again = a.trust(wire.now)
    assert again == SC.Output(events=[SC.NothingToTrust("bob")])
    assert format_event(again.events[0]) == "nothing to trust"
    with pytest.raises(P.LocalProtocolError):
        a.hold(chat("not blocked any more"))


def test_secure_impostor_after_the_first_chat_is_blocked():
    """bob's key is pinned from a first chat; someone else registers as bob
    with another key: the second chat is blocked, nothing opens."""
    pins = SC.Pins()
    Wire(machine("alice", "bob", pins=pins), machine("bob", "alice")).start().run()
    a = machine("alice", "bob", pins=pins)
    wire = Wire(a, machine("bob", "alice")).start().run()
    assert a.blocked and [type(e) for e in wire.events[a]] == [SC.Secured, SC.KeyChanged]


def test_secure_pinned_partner_that_no_longer_encrypts_is_blocked():
    pinned = new_identity().public
    a = machine("alice", "bob", features=PLAIN, pins=SC.Pins({"bob": pinned}))
    out = a.start(0.0)
    assert out.events == [SC.Unencrypted("bob", pinned)]
    assert a.state is S.DOWNGRADED and a.blocked and a.ready
    lines = format_event(out.events[0]).split("\n")
    assert lines[0] == \
        "!! bob's client does not encrypt: anyone on the path can read and change this chat"
    assert "!! WARNING: bob's key is pinned, but this chat is unencrypted: a downgrade?" in lines
    assert a.hold(a.receive(P.encode(chat("downgraded hello")), 0.0).messages[0])
    out = a.trust(0.0)
    assert out == SC.Output(messages=[chat("downgraded hello")], events=[SC.Trusted("bob")])
    assert a.state is S.PLAIN and a.pins.get("bob") == pinned     # the pin stays


# -- what does not authenticate

def test_secure_forged_frames_raise_and_change_nothing():
    wire, _, _ = secured_pair()
    a, b = wire.a, wire.b
    genuine = b.seal(chat("genuine"))
    tampered = genuine[:-1] + bytes([genuine[-1] ^ 1])
    forged = [b'{"DirectMessage":{"content":"forged"}}', b'"Goodbye"', b'"Ping"', b"",
              bytes([secure.DATA]) + bytes(8) + bytes(40), bytes([secure.HELLO]) + bytes(64),
              bytes([secure.FINISH]) + bytes(64), bytes([secure.REPLY]) + bytes(100), tampered]
    for data in forged:
        with pytest.raises(P.RemoteProtocolError):
            a.receive(data, wire.now)
    assert a.state is S.SECURE and a.pins.get("bob") == b.identity.public
    assert a.receive(genuine, wire.now).messages == [chat("genuine")]
    with pytest.raises(secure.FrameRejected):
        a.receive(genuine, wire.now)               # a replay


def test_secure_forged_frames_during_the_handshake_do_not_stop_it():
    a, b = machine("alice", "bob"), machine("bob", "alice")
    wire = Wire(a, b).start()
    for data in (bytes([secure.HELLO]) + bytes(48), bytes([secure.FINISH]) + bytes(64),
                 bytes([secure.DATA]) + bytes(40), b'"Goodbye"'):
        for side in (a, b):
            with pytest.raises(P.RemoteProtocolError):
                side.receive(data, 0.0)
    wire.run()
    assert a.state is S.SECURE and b.state is S.SECURE


def test_secure_frames_of_an_earlier_chat_are_rejected():
    wire, a_id, b_id = secured_pair()
    captured = [wire.b.seal(chat("message %d" % i)) for i in range(20)]
    a = machine("alice", "bob", a_id, pins=wire.a.pins, secret=b"another pairing!!")
    b = machine("bob", "alice", b_id, secret=b"another pairing!!")
    Wire(a, b).start().run()
    assert a.state is S.SECURE
    for data in captured:
        with pytest.raises(secure.FrameRejected):
            a.receive(data, 1.0)


def test_secure_authentic_message_that_does_not_decode_raises():
    wire, _, _ = secured_pair()
    with pytest.raises(P.UnknownVariant):
        wire.a.receive(wire.b._channel.seal(b'{"Future":{}}'), wire.now)


def test_secure_undecodable_message_that_finishes_the_handshake_keeps_its_events():
    """The initiator's keys are confirmed by the responder's first sealed
    frame; if that one does not decode, the handshake still finishes."""
    a, b = machine("alice", "bob"), machine("bob", "alice")     # alice initiates
    wire = Wire(a, b, drop=lambda src, data: src is b and data[0] == secure.DATA).start().run(0.5)
    assert b.state is S.SECURE and a.state is S.HANDSHAKING
    out = a.receive(b._channel.seal(b'{"Future":{}}'), wire.now)
    assert a.state is S.SECURE and out.messages == []
    assert [type(e) for e in out.events] == [SC.Secured, SC.PinKey, SC.Log]


# -- misuse, /verify and /whoami

def test_secure_misuse_is_a_local_error():
    a = machine("alice", "bob")
    with pytest.raises(P.LocalProtocolError):
        a.receive(SC.PING, 0.0)                      # not started
    with pytest.raises(P.LocalProtocolError):
        a.seal(P.Ping())
    a.start(0.0)
    with pytest.raises(P.LocalProtocolError, match="no transition from handshaking"):
        a.start(0.0)


def test_secure_verify_codes_are_equal_on_both_sides():
    wire, a_id, _ = secured_pair()
    code_a, code_b = wire.a.verify(), wire.b.verify()
    assert type(code_a) is SC.SafetyCode and code_a.code == code_b.code
    assert len(code_a.code.replace(" ", "")) == 30
    assert format_event(code_a) == ("safety code with bob: %s\ncompare it with bob by voice; if"
                                    " it differs, someone is in between" % code_a.code)


def test_secure_verify_while_blocked_and_not_on_a_plain_link():
    wire, _, _ = changed_key_chat()
    assert type(wire.a.verify()) is SC.SafetyCode
    plain = machine("alice", "bob", features=PLAIN)
    assert plain.verify() == SC.NoSafetyCode("bob")
    plain.start(0.0)
    assert format_event(plain.verify()) == "/verify needs an encrypted chat"


def test_secure_whoami_words():
    ident = new_identity()
    assert format_event(SC.whoami("alice", ident)) == \
        "you are alice, key %s" % ID.fingerprint(ident.public)
    assert format_event(SC.whoami("alice", None)) == \
        "you are alice; no identity key (encryption off)"


def test_secure_transitions_cover_every_state():
    targets = set(SC.TRANSITIONS.values())
    sources = {state for state, _ in SC.TRANSITIONS}
    assert targets | sources == set(S)
    assert SC.BLOCKED <= sources                     # every block can be lifted


# -- the layout of the DATA frames' associated data

def test_secure_two_of_our_peers_use_the_record_layout_whatever_the_relay_passes_on():
    """The layout is agreed in the handshake, not from the features the
    relay passed on (an older relay may drop names it does not know)."""
    wire, _, _ = secured_pair()
    a, b = wire.a, wire.b
    assert a._channel.layout == b._channel.layout == secure.RECORD_AD
    assert b.receive(a.seal(chat("hello")), wire.now).messages == [chat("hello")]
