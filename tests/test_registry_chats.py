"""Several chats per client at the relay (issue 11, section 2): the busy
rule, too-many-chats, SessionFinished per partner, chats relearned after a
restart, the relayed fallback per session, and forgeries of all of it.
The relay core alone, with a fake clock."""

import random
import zlib

import pytest

from peerpunch import forwarder as F
from peerpunch import protocol as P
from peerpunch.effects import Send
from peerpunch.pairings import RELAY_MAX_CHATS
from peerpunch.registry import Registry

from .cookies import join

A, B, C, D, E = (("198.51.100.%d" % i, 40000 + i) for i in (1, 2, 3, 4, 5))
S1, S2, S3 = "11" * 16, "22" * 16, "33" * 16
NONCE = "ab" * 16


def counting_bytes():
    counter = iter(range(1, 10 ** 6))
    return lambda n: bytes([next(counter) % 256]) * n


def relay(**options):
    options.setdefault("random_bytes", counting_bytes())
    return Registry(**options)


def sends(effects):
    return [(e.addr, e.data) for e in effects if isinstance(e, Send)]


def decoded(effects):
    return [(addr, P.decode(data)) for addr, data in sends(effects) if data[:1] in (b"{", b'"')]


class Client:
    """One extension client of the relay core: registered (cookie round
    trip), it sends requests with its token."""

    def __init__(self, reg, name, addr, now=0.0, features=("ext", "relay1"), **fields):
        self.reg, self.name, self.addr = reg, name, addr
        self.fields = dict(fields, nonce=fields.get("nonce", NONCE))
        self.features = features
        self.token = join(reg, name, addr, now, features=features, **self.fields)

    @property
    def user(self):
        return self.reg.user(self.name)

    def send(self, msg, now=1.0, addr=None):
        return self.reg.datagram_received(P.encode(msg), addr or self.addr, now)

    def connect(self, target, now=1.0):
        return self.send(P.Connect(target, token=self.token), now)

    def finish(self, partner=None, now=1.0):
        return self.send(P.SessionFinished(token=self.token, partner=partner), now)

    def register(self, now=1.0, **fields):
        msg = P.Register(self.name, features=self.features, token=self.token, **dict(self.fields, **fields))
        return self.send(msg, now)

    def partners(self):
        return sorted(p.other(self.user).name for p in self.user.chats)


def introduced(effects):
    """{addressee: PeerInfo} of the PeerInfos in *effects*."""
    return {a: m for a, m in decoded(effects) if isinstance(m, P.PeerInfo)}


def test_chats_a_client_holds_several_sessions_at_once():
    reg = relay()
    alice = Client(reg, "alice", A, max_chats=3)
    bob = Client(reg, "bob", B)
    Client(reg, "carol", C, max_chats=2)
    first, second = introduced(alice.connect("bob")), introduced(alice.connect("carol"))
    assert set(first) == {A, B} and set(second) == {A, C}
    assert first[A].username == "bob" and second[A].username == "carol"
    assert first[A].session == first[B].session != second[A].session == second[C].session
    assert alice.partners() == ["bob", "carol"] and bob.partners() == ["alice"]
    assert reg.sessions() == 2 and reg.stats["introductions"] == 2 and reg.stats["sessions_ended"] == 0
    # a repeated Connect repeats that introduction only, with its own secret
    again = introduced(alice.connect("bob", now=2.0))
    assert set(again) == {A, B} and again[A].session == first[A].session


def test_chats_a_target_at_its_bound_is_busy():
    reg = relay()
    bob = Client(reg, "bob", B, max_chats=2)
    alice, carol, dave = Client(reg, "alice", A), Client(reg, "carol", C), Client(reg, "dave", D)
    alice.connect("bob")
    assert introduced(carol.connect("bob"))                   # bob's second chat
    assert decoded(dave.connect("bob")) == [(D, P.TargetBusy(nonce=NONCE, target="bob"))]
    assert bob.partners() == ["alice", "carol"] and reg.stats["busy"] == 1
    carol.finish()
    assert introduced(dave.connect("bob", now=2.0))           # room again
    # a client that announced nothing holds one chat, as before
    assert decoded(Client(reg, "erin", E).connect("alice", now=2.0)) == \
        [(E, P.TargetBusy(nonce=NONCE, target="alice"))]


def test_chats_an_asker_at_its_bound_is_told_so_and_nothing_changes():
    reg = relay()
    alice = Client(reg, "alice", A, max_chats=2)
    for name, addr in (("bob", B), ("carol", C), ("dave", D)):
        Client(reg, name, addr)
    alice.connect("bob")
    alice.connect("carol")
    out = alice.connect("dave")
    assert sends(out) == [(A, b'{"Error":{"code":"too-many-chats","message":"too many chats",'
                              b'"nonce":"%s","target":"dave"}}' % NONCE.encode())]      # to its proven address
    assert alice.partners() == ["bob", "carol"] and reg.user("dave").chats == ()
    assert reg.stats["too_many_chats"] == 1 and reg.stats["busy"] == 0
    assert set(introduced(alice.connect("bob", now=2.0))) == {A, B}   # its chats go on


def test_chats_a_client_in_chats_cannot_connect_to_itself():
    reg = relay()
    alice = Client(reg, "alice", A, max_chats=2)
    Client(reg, "bob", B)
    alice.connect("bob")
    secret = alice.user.chat_with(reg.user("bob")).secret.hex()
    for session in (None, secret):
        out = alice.send(P.Connect("alice", session=session, token=alice.token), now=2.0)
        assert [m.code for _, m in decoded(out)] == ([P.ERROR_SELF] if session is None else [])
    assert alice.user.chat_with(alice.user) is None and alice.partners() == ["bob"]


def test_chats_a_client_that_announced_nothing_moves_on_as_before():
    reg = relay()
    alice = Client(reg, "alice", A)                            # one of our older peers
    Client(reg, "bob", B)
    Client(reg, "carol", C)
    alice.connect("bob")
    out = alice.connect("carol")
    assert set(introduced(out)) == {A, C} and alice.partners() == ["carol"]
    assert reg.user("bob").chats == () and reg.stats["sessions_ended"] == 1


def test_chats_a_seed_client_keeps_exactly_one_chat():
    reg = relay()
    for name, addr in (("alice", A), ("bob", B), ("carol", C), ("dave", D)):
        reg.datagram_received(P.encode(P.Register(name, max_chats=8)), addr, 0.0)   # ignored: seed form
    reg.datagram_received(b'{"Connect":{"target_username":"bob"}}', A, 1.0)
    assert sends(reg.datagram_received(b'{"Connect":{"target_username":"alice"}}', C, 1.0)) == \
        [(C, b'"TargetBusy"')]                                 # busy while in its one chat
    out = reg.datagram_received(b'{"Connect":{"target_username":"dave"}}', A, 2.0)
    assert [a for a, _ in sends(out)] == [A, D]                # it moved on
    assert reg.user("bob").chats == () and reg.user("alice").partner is reg.user("dave")
    assert reg.user("alice").max_chats == 0


def test_chats_the_relay_caps_max_chats_and_says_so_only_to_who_asked():
    reg = relay()
    asked = Client(reg, "alice", A, max_chats=P.MAX_CHATS)
    assert asked.user.max_chats == RELAY_MAX_CHATS == 16
    (ack,) = [m for _, m in decoded(asked.register()) if isinstance(m, P.RegisterAck)]
    assert ack.max_chats == 16
    plain = Client(reg, "bob", B)
    data = [d for _, d in sends(plain.register()) if d.startswith(b'{"RegisterAck"')][0]
    assert b"max_chats" not in data and plain.user.max_chats == 0
    asked.register(now=2.0, max_chats=None)                    # it no longer says: one chat
    assert asked.user.max_chats == 0


def test_chats_session_finished_names_the_one_chat_it_ends():
    reg = relay()
    alice = Client(reg, "alice", A, max_chats=4)
    for name, addr in (("bob", B), ("carol", C), ("dave", D)):
        Client(reg, name, addr)
        alice.connect(name)
    secret = alice.user.chat_with(reg.user("carol")).secret
    reg.forwarder.admit(secret, 10, 1.0, owner="x")            # carol's chat is relayed
    assert alice.finish(partner="carol", now=2.0) and alice.partners() == ["bob", "dave"]
    assert reg.user("carol").chats == () and secret not in reg.forwarder.allocations
    assert alice.finish(partner="nobody", now=2.0) == [] and alice.partners() == ["bob", "dave"]
    bob_token = reg.user("bob").token                          # bob ends his only chat his way
    reg.datagram_received(P.encode(P.SessionFinished(token=bob_token)), B, 3.0)
    assert alice.partners() == ["dave"]
    alice.finish(now=4.0)                                      # no partner: every chat
    assert alice.partners() == [] and reg.sessions() == 0 and reg.stats["sessions_ended"] == 3


def _claim(client, chats, now=1.0):
    return client.register(now=now, chats=tuple(chats))


def test_chats_a_restarted_relay_relearns_each_chat():
    reg = relay()                                              # the relay that replaced the old one
    alice = Client(reg, "alice", A, max_chats=4)
    bob, carol = Client(reg, "bob", B), Client(reg, "carol", C, max_chats=2)
    _claim(alice, [("bob", S1), ("carol", S2)])
    assert alice.partners() == [] and len(alice.user.claimed(1.0)) == 2
    out = bob.register(now=1.1, partner="alice", session=S1)   # an older peer: the singular form
    assert alice.partners() == ["bob"] and bob.partners() == ["alice"]
    assert alice.user.chat_with(bob.user).secret.hex() == S1
    assert any("restored the session of 'alice' and 'bob'" in e.text for e in out if hasattr(e, "text"))
    _claim(carol, [("alice", S3)], now=1.2)                    # a wrong secret: not that chat
    assert alice.partners() == ["bob"]
    _claim(carol, [("alice", S2)], now=1.3)
    assert alice.partners() == ["bob", "carol"] and reg.stats["restored"] == 2
    assert alice.user.claimed(1.3) == [] and carol.user.claimed(1.3) == []
    # forwarding works for each relearned chat
    bob_frame = bytes([F.RELAYED]) + b"hello!"
    assert sends(reg.datagram_received(bob_frame, B, 2.0)) == \
        [(A, bytes([F.RELAYED_TO]) + F.channel_id(bytes.fromhex(S1)) + b"hello!")]


def test_chats_claims_count_as_held_and_are_bounded():
    reg = relay()
    alice = Client(reg, "alice", A, max_chats=2)
    _claim(alice, [("p%d" % i, "%032x" % i) for i in range(P.MAX_CHATS // 4)])
    assert len(alice.user.claimed(1.0)) == 2                   # at most what it may hold
    dave = Client(reg, "dave", D)
    assert decoded(dave.connect("alice")) == [(D, P.TargetBusy(nonce=NONCE, target="alice"))]
    assert decoded(alice.connect("dave"))[0][1].code == P.ERROR_TOO_MANY_CHATS
    _claim(alice, [("p0", "%032x" % 0)], now=2.0)              # it says one chat ended
    assert introduced(dave.connect("alice", now=2.1))
    assert alice.user.claimed(2.1) == [("p0", bytes(16))]
    assert decoded(Client(reg, "erin", E).connect("alice", now=2.2)) == \
        [(E, P.TargetBusy(nonce=NONCE, target="alice"))]
    assert alice.user.claimed(1.0 + 46.0) == []                # claims lapse (CLAIM_FOR)


def test_chats_a_claim_for_a_known_chat_changes_nothing_and_others_stay():
    """A client in several chats names those it knows; a session it does not
    name yet (an introduction that crossed its Register) is kept."""
    reg = relay()
    alice = Client(reg, "alice", A, max_chats=4)
    Client(reg, "bob", B)
    Client(reg, "carol", C)
    alice.connect("bob")
    alice.connect("carol")
    bob_secret = alice.user.chat_with(reg.user("bob")).secret.hex()
    _claim(alice, [("bob", bob_secret)], now=2.0)
    assert alice.partners() == ["bob", "carol"] and alice.user.claimed(2.0) == []


# -- the relayed fallback, per session

def _relayed(out):
    return [(a, d) for a, d in sends(out) if d[:1] in (bytes([F.RELAYED]), bytes([F.RELAYED_TO]))]


def test_chats_relayed_datagrams_go_per_session_for_a_client_in_two():
    limits = F.Limits(max_sessions=8, rate=10 ** 6, burst=10 ** 6, session_bytes=300, idle_timeout=60.0)
    reg = relay(forwarder=F.Forwarder(limits))
    alice = Client(reg, "alice", A, max_chats=2)
    bob, carol = Client(reg, "bob", B), Client(reg, "carol", C, max_chats=2)   # bob: an older peer
    alice.connect("bob")
    alice.connect("carol")
    ab = alice.user.chat_with(bob.user).channel
    ac = alice.user.chat_with(carol.user).channel
    to = bytes([F.RELAYED_TO])
    assert _relayed(reg.datagram_received(bytes([F.RELAYED]) + b"from bob", B, 2.0)) == \
        [(A, to + ab + b"from bob")]                           # alice learns whose it is
    assert _relayed(reg.datagram_received(to + ab + b"to bob", A, 2.0)) == \
        [(B, bytes([F.RELAYED]) + b"to bob")]                  # bob gets the form he knows
    assert _relayed(reg.datagram_received(to + ac + b"to carol", A, 2.0)) == [(C, to + ac + b"to carol")]
    assert _relayed(reg.datagram_received(to + ac + b"from carol", C, 2.0)) == [(A, to + ac + b"from carol")]
    # carol cannot use bob's session; alice must say which session she means
    assert _relayed(reg.datagram_received(to + ab + b"x", C, 2.0)) == []
    assert _relayed(reg.datagram_received(bytes([F.RELAYED]) + b"which?", A, 2.0)) == []
    assert reg.stats["relay_without_session"] == 1 and reg.stats["relay_unnamed"] == 1
    # each session has its own quota and allocation
    assert len(reg.forwarder.allocations) == 2
    big = to + ab + bytes(290)
    assert _relayed(reg.datagram_received(big, A, 3.0)) == []  # bob's session's 300 bytes are spent
    assert _relayed(reg.datagram_received(to + ac + bytes(200), A, 3.0))
    alice.finish(partner="bob", now=4.0)
    assert list(reg.forwarder.allocations) == [alice.user.chat_with(carol.user).secret]
    assert _relayed(reg.datagram_received(bytes([F.RELAYED]) + b"only one now", A, 5.0)) == []
    assert reg.stats["relay_unnamed"] == 2          # a client that holds several always names it
    assert _relayed(reg.datagram_received(to + ac + b"only one now", A, 5.0)) == \
        [(C, to + ac + b"only one now")]


def test_chats_relay_refuses_tiny_payloads_and_charges_the_channel_it_adds():
    limits = F.Limits(max_sessions=8, rate=10 ** 6, burst=10 ** 6, session_bytes=30, idle_timeout=60.0)
    reg = relay(forwarder=F.Forwarder(limits))
    alice = Client(reg, "alice", A, max_chats=2)
    bob = Client(reg, "bob", B)                     # one chat: the single form
    alice.connect("bob")
    ab = alice.user.chat_with(bob.user).channel
    to = bytes([F.RELAYED_TO])
    # a forger spoofing bob's address: 1 byte in must not become 9 out
    for tiny in (bytes([F.RELAYED]), bytes([F.RELAYED]) + b'"Pin'):
        assert _relayed(reg.datagram_received(tiny, B, 2.0)) == []
    assert reg.stats["relay_too_short"] == 2
    # the smallest payload a peer relays, a plain probe, still goes through, and
    # the quota is charged what is sent: 1 + 8 + 6 bytes
    probe = b'"Ping"'
    assert _relayed(reg.datagram_received(bytes([F.RELAYED]) + probe, B, 2.0)) == [(A, to + ab + probe)]
    assert _relayed(reg.datagram_received(bytes([F.RELAYED]) + probe, B, 2.0)) == [(A, to + ab + probe)]
    assert _relayed(reg.datagram_received(bytes([F.RELAYED]) + probe, B, 2.0)) == []   # 45 > 30


def test_chats_relayed_sessions_of_one_client_count_against_its_address():
    limits = F.Limits(max_sessions=8, rate=10 ** 6, burst=10 ** 6, session_bytes=10 ** 6,
                      idle_timeout=60.0, max_per_source=1)
    reg = relay(forwarder=F.Forwarder(limits))
    alice = Client(reg, "alice", A, max_chats=3)
    Client(reg, "bob", B)
    carol = Client(reg, "carol", C)
    alice.connect("bob")
    alice.connect("carol")
    to = bytes([F.RELAYED_TO])
    ab, ac = (alice.user.chat_with(reg.user(n)).channel for n in ("bob", "carol"))
    assert _relayed(reg.datagram_received(to + ab + b"\"Ping\"", A, 2.0))
    assert _relayed(reg.datagram_received(to + ac + b"\"Ping\"", A, 2.0)) == []   # alice's IP has one
    assert reg.stats["relay_refused"] == 1
    probe = bytes([F.RELAYED]) + b"\"Ping\""
    assert _relayed(reg.datagram_received(probe, carol.addr, 2.0))      # carol's has none


# -- forgeries

def test_chats_forged_requests_without_the_token_change_nothing():
    reg = relay()
    alice = Client(reg, "alice", A, max_chats=4)
    Client(reg, "bob", B)
    Client(reg, "carol", C)
    alice.connect("bob")
    alice.connect("carol")
    before = (alice.partners(), reg.sessions(), alice.user.max_chats, alice.user.claimed(2.0))
    forged = [
        P.SessionFinished(partner="bob"), P.SessionFinished(token="00" * 16, partner="carol"),
        P.Register("alice", features=("ext", "relay1"), max_chats=1, chats=(("mallory", S1),)),
        P.Register("alice", features=("ext", "relay1"), token="00" * 16, max_chats=1,
                   chats=(("mallory", S1),)),
        P.Connect("dave", token="00" * 16),
    ]
    for msg in forged:
        out = reg.datagram_received(P.encode(msg), A, 2.0)      # from alice's very address
        assert all(d.startswith(b'{"Cookie"') for _, d in sends(out))
    assert (alice.partners(), reg.sessions(), alice.user.max_chats, alice.user.claimed(2.0)) == before


def test_chats_forged_requests_from_another_address_change_nothing():
    reg = relay()
    alice = Client(reg, "alice", A, max_chats=4)
    Client(reg, "bob", B)
    alice.connect("bob")
    elsewhere = ("192.0.2.66", 6666)
    with_token = [P.SessionFinished(token=alice.token, partner="bob"),
                  P.Register("alice", features=("ext", "relay1"), token=alice.token, max_chats=1,
                             chats=(("mallory", S1),), nonce=NONCE),
                  P.Connect("bob", token=alice.token)]
    out = []
    for msg in with_token:
        data = P.encode(msg)
        reply = reg.datagram_received(data, elsewhere, 2.0)
        assert sum(len(d) for _, d in sends(reply)) <= len(data)   # never more than came
        out += reply
    assert [d[:10] for _, d in sends(out)] == [b'{"Cookie":']     # the Register's, to the forger
    assert alice.partners() == ["bob"] and alice.user.max_chats == 4 and alice.user.addr == A
    # relayed datagrams from a stranger, or naming a session by its channel, go nowhere
    channel = alice.user.chat_with(reg.user("bob")).channel
    for frame in (bytes([F.RELAYED_TO]) + channel + b"x", bytes([F.RELAYED]) + b"x"):
        assert sends(reg.datagram_received(frame, elsewhere, 3.0)) == []


def test_chats_a_forged_claim_cannot_pull_a_client_into_a_session():
    """Claims restore a session only when both sides claimed it with the
    same secret, each with its own token."""
    reg = relay()
    alice = Client(reg, "alice", A, max_chats=4)
    mallory = Client(reg, "mallory", D, max_chats=4)
    _claim(mallory, [("alice", S1)])
    reg.datagram_received(P.encode(P.Register("alice", features=("ext", "relay1"),
                                              chats=(("mallory", S1),))), A, 1.5)
    assert alice.partners() == [] and mallory.partners() == []
    _claim(alice, [("bob", S2)], now=2.0)
    assert alice.partners() == [] and reg.stats["restored"] == 0


def test_chats_pairing_ends_only_the_watch_of_that_partner_for_a_client_in_several():
    reg = relay()
    alice = Client(reg, "alice", A, max_chats=4, watch=("bob", "carol"))
    assert reg.watches() == 2
    Client(reg, "bob", B)
    alice.connect("bob")
    assert alice.user.watching == ("carol",) and reg.watches() == 1


# -- random sequences: the invariants hold

def _check(reg, now):
    users = [reg.user(n) for n in NAMES if reg.user(n) is not None]
    for user in users:
        assert len(user.chats) + len(user.claimed(now)) <= (user.max_chats or 1)   # its bound
        assert len({p.other(user).name for p in user.chats}) == len(user.chats)    # one per partner
        for pair in user.chats:
            assert user in (pair.a, pair.b) and pair in pair.other(user).chats
            assert reg.user(pair.other(user).name) is pair.other(user)             # both registered
    assert reg.sessions() * 2 == sum(len(u.chats) for u in users)


NAMES = ("u0", "u1", "u2", "u3", "u4", "u5")


def _secret(a, b, k):
    """A secret for the chat of *a* and *b*: half the time the one the other
    side names too."""
    return "%030x%02x" % (zlib.crc32(" ".join(sorted((a, b))).encode()), k)


@pytest.mark.parametrize("seed", range(6))
def test_chats_random_requests_keep_sessions_symmetric_and_bounded(seed):
    rng = random.Random(seed)
    reg = relay(expire_after=30.0)
    clients, now = {}, 0.0
    for step in range(1500):
        now += rng.expovariate(5.0) + (40.0 if rng.random() < 0.003 else 0.0)   # now and then: expiry
        name = rng.choice(NAMES)
        client = clients.get(name)
        if client is None or reg.user(name) is None:
            addr = ("198.51.100.%d" % (NAMES.index(name) + 1), 1000 + step)
            clients[name] = Client(reg, name, addr, now, max_chats=rng.choice((None, 1, 2, 3)))
            continue
        roll, other = rng.random(), rng.choice(NAMES)
        if roll < 0.4:
            client.connect(other, now)
        elif roll < 0.55:
            client.finish(rng.choice((None, other)), now)
        elif roll < 0.75:
            chats = [(n, _secret(n, name, rng.randrange(2))) for n in rng.sample(NAMES, rng.randrange(4))]
            client.register(now, chats=tuple(chats))
        elif roll < 0.8:
            client.send(P.Unregister(token=client.token), now)
        elif roll < 0.9:
            frame = bytes([F.RELAYED_TO]) + bytes(8) if rng.random() < 0.5 else bytes([F.RELAYED])
            reg.datagram_received(frame + b"x", client.addr, now)
        else:
            reg.tick(now)
        _check(reg, now)
    assert reg.stats["introductions"] > 50 and reg.stats["restored"] > 0
    assert reg.stats["too_many_chats"] > 0 and reg.stats["busy"] > 0


def test_chats_refusals_name_their_target_to_ext_askers_only():
    """TargetNotFound, TargetBusy and the request Errors carry ``target`` (the
    name asked for) to an ext client, so that it can hold several requests;
    the seed form stays byte-identical; an impossible name is not echoed."""
    reg = relay()
    alice = Client(reg, "alice", A, max_chats=2)
    Client(reg, "bob", B)
    Client(reg, "carol", C)
    reg.datagram_received(b'{"Register":{"username":"sam"}}', D, 0.0)     # a seed client
    assert decoded(alice.connect("nobody")) == [(A, P.TargetNotFound(nonce=NONCE, target="nobody"))]
    assert decoded(alice.connect(" bad name ")) == [(A, P.TargetNotFound(nonce=NONCE))]
    assert decoded(alice.connect("alice"))[0][1].target == "alice"        # self-connect
    alice.connect("bob")
    alice.connect("carol")
    refusal = decoded(alice.connect("sam", now=2.0))[0][1]
    assert (refusal.code, refusal.target) == (P.ERROR_TOO_MANY_CHATS, "sam")
    assert decoded(Client(reg, "dave", E).connect("bob")) == [(E, P.TargetBusy(nonce=NONCE, target="bob"))]
    # the seed client's refusals: the seed's bytes
    assert sends(reg.datagram_received(b'{"Connect":{"target_username":"nobody"}}', D, 2.0)) == \
        [(D, b'"TargetNotFound"')]
    sue, tom = ("203.0.113.1", 5001), ("203.0.113.2", 5002)
    reg.datagram_received(b'{"Register":{"username":"sue"}}', sue, 0.0)
    reg.datagram_received(b'{"Register":{"username":"tom"}}', tom, 0.0)
    reg.datagram_received(b'{"Connect":{"target_username":"sue"}}', D, 2.0)
    assert sends(reg.datagram_received(b'{"Connect":{"target_username":"sue"}}', tom, 2.0)) == \
        [(tom, b'"TargetBusy"')]
