"""Holes an audit found in the relay's issue-10 hardening, forged against the
relay's core (tests/test_attacks_audit.py forges some against the real
process): a seed-form name squatted by one forged datagram, a seed pool
locked by forged Registers from 10,000 /24s, forged one-byte relayed frames
charged to a session, and seed-pool credit spent by whoever asks first."""

import collections
import random

import pytest

from peerpunch import forwarder as F
from peerpunch import protocol as P
from peerpunch import registry as RG
from peerpunch.addrkeys import block_key, ip_key
from peerpunch.directory import Directory
from peerpunch.effects import Send

from .test_registry_chats import Client, relay

A = ("198.51.100.10", 40000)
B = ("198.51.100.20", 41000)
C = ("203.0.113.30", 42000)
FORGED = ("192.0.2.66", 4000)


def sends(effects):
    return [(e.addr, e.data) for e in effects if isinstance(e, Send)]


def kinds(effects, addr):
    return [d.split(b'"')[1].decode() for a, d in sends(effects) if a == addr]


# -- hole 2: name squatting by one forged seed-form datagram


def test_audit_a_forged_seed_form_name_gives_way_to_its_proven_owner():
    """While bob is offline a forger registers seed-form "bob" from anywhere
    and refreshes it every 80 s. alice, waiting for bob, is never told he
    is online; when the real bob registers with a cookie he gets the name
    (on the relay of the audit: name-taken for good, and alice paired with
    the forger's address)."""
    reg = relay()
    alice = Client(reg, "alice", A, watch=("bob",))
    seed = P.encode(P.Register("bob"))
    told = []
    for t in range(0, 300, 80):
        reg.datagram_received(seed, FORGED, float(t))
        told += kinds(alice.register(now=t + 1.0, watch=("bob",)), A)
        reg.tick(t + 2.0)
    assert "Online" not in told and reg.user("bob").addr == FORGED
    bob = Client(reg, "bob", B, now=301.0)                  # cookie round trip: proven
    assert reg.user("bob").addr == B and reg.user("bob").ext and bob.token
    assert reg.stats["seed_unseated"] == 1
    assert sends(reg.datagram_received(seed, FORGED, 302.0)) == []   # the forger cannot take it back
    out = alice.connect("bob", now=303.0)
    assert [P.decode(d).peer for a, d in sends(out) if a == A] == ["198.51.100.20:41000"]


def test_audit_a_watcher_hears_only_of_the_proven_owner():
    reg = relay()
    alice = Client(reg, "alice", A, watch=("bob",))
    out = reg.datagram_received(P.encode(P.Register("bob")), FORGED, 1.0)
    assert sends(out) == [(FORGED, b'"RegisterAck"')]       # the seed client's own answer only
    assert "Online" not in kinds(alice.register(now=2.0, watch=("bob",)), A)
    Client(reg, "bob", B, now=3.0)
    assert reg.user("bob").addr == B
    assert "Online" in kinds(alice.register(now=4.0, watch=("bob",)), A)


def test_audit_a_proven_client_renamed_with_its_token_takes_a_seed_form_name():
    reg = relay()
    carol = Client(reg, "carol", C)
    reg.datagram_received(P.encode(P.Register("bob")), FORGED, 1.0)
    reg.datagram_received(P.encode(P.Register("dave")), ("192.0.2.67", 1), 1.0)
    reg.datagram_received(P.encode(P.Connect("dave")), FORGED, 1.5)       # the squatter's session
    assert reg.user("bob").partner is reg.user("dave")
    out = reg.datagram_received(P.encode(P.Register("bob", features=("ext", "relay1"), token=carol.token,
                                                    nonce=carol.fields["nonce"])), C, 2.0)
    assert kinds(out, C) == ["RegisterAck"] and reg.user("bob").addr == C
    assert reg.user("carol") is None and reg.user("dave").partner is None   # its session ended


# -- hole 3: a seed pool filled from 10,000 /24s


def test_audit_a_seed_pool_filled_from_one_block_per_registration_still_admits_newcomers():
    """Forged seed-form Registers, each from a /24 of its own, fill the pool
    and are refreshed every 80 s (no block is heavier than another, so the
    fair-share rule finds no victim): a newcomer still gets in, in place of
    the least recently refreshed registration; and a registration lasts as
    long as it takes the forger to send max_seed_users more Registers."""
    pool = 1000
    reg = relay(max_seed_users=pool)
    forged = [(P.encode(P.Register("f%d" % i)), ("10.%d.%d.1" % (i // 256, i % 256), 5000))
              for i in range(pool)]
    for t in (0.0, 80.0, 160.0):
        for i, (data, src) in enumerate(forged):
            reg.datagram_received(data, src, t + i / 1000)
    assert reg.seed_users() == pool
    legit = ("203.0.113.77", 6000)
    assert sends(reg.datagram_received(P.encode(P.Register("legit")), legit, 170.0)) == \
        [(legit, b'"RegisterAck"')]                                  # on the relay of the audit: nothing
    assert reg.stats["seed_full"] == 0 and reg.user("f0") is None
    for i, (data, src) in enumerate(forged[1:]):                     # pool - 1 more forged Registers
        reg.datagram_received(data.replace(b'"f', b'"g'), src, 171.0 + i / 1000)
    assert reg.user("legit") is not None
    reg.datagram_received(P.encode(P.Register("g-last")), ("10.200.0.1", 5000), 173.0)
    assert reg.user("legit") is None and reg.seed_users() == pool


def test_audit_the_proven_pool_is_not_taken_least_recent_first():
    """Proven registrations are refreshed only with their tokens: a full
    proven pool keeps the fair-share rule alone."""
    reg = relay(max_users=3)
    for i in range(3):
        Client(reg, "p%d" % i, ("10.%d.0.1" % i, 1))
    with pytest.raises(AssertionError, match="no RegisterAck"):
        Client(reg, "late", A)
    assert reg.proven_users() == 3 and reg.stats["seed_evicted_least_recent"] == 0
    assert all(reg.user("p%d" % i) is not None for i in range(3))


# -- hole 4: forged one-byte relayed frames


def _relayed(out):
    return [(a, d) for a, d in sends(out) if d[:1] in (bytes([F.RELAYED]), bytes([F.RELAYED_TO]))]


def test_audit_forged_one_byte_relayed_frames_from_a_client_that_names_its_chats_are_refused():
    """alice and bob both announced max_chats (our peers always name the
    session, 0xD1): 10,000 forged 0xD0 frames from alice's endpoint are
    neither forwarded nor charged, and her real frames still pass within the
    session's quota (on the relay of the audit the forgeries used it up)."""
    limits = F.Limits(max_sessions=8, rate=10 ** 6, burst=10 ** 6, session_bytes=1200, idle_timeout=60.0)
    reg = relay(forwarder=F.Forwarder(limits))
    alice = Client(reg, "alice", A, max_chats=4)
    bob = Client(reg, "bob", B, max_chats=4)
    alice.connect("bob")
    channel = alice.user.chat_with(bob.user).channel
    for i in range(10000):
        assert _relayed(reg.datagram_received(bytes([F.RELAYED]) + b"forged%04d" % i, A, 2.0)) == []
        assert _relayed(reg.datagram_received(bytes([F.RELAYED_TO]) + bytes(8) + b"guessed", A, 2.0)) == []
    assert reg.stats["relay_unnamed"] == 10000 and reg.stats["relay_without_session"] == 10000
    real = bytes([F.RELAYED_TO]) + channel + bytes(1100)
    assert _relayed(reg.datagram_received(real, A, 3.0)) == [(B, real)]


def test_audit_a_relayed_frame_grows_by_15_7_at_most():
    """The smallest frame a client in one chat may send (0xD0 and the 6-byte
    plain "Ping") reaches a partner that names its chats with the channel
    added: 7 bytes in, 15 out."""
    reg = relay()
    old = Client(reg, "old", A)                         # one chat, the one-byte form
    several = Client(reg, "several", B, max_chats=2)
    old.connect("several")
    ping = bytes([F.RELAYED]) + b'"Ping"'
    (out,) = _relayed(reg.datagram_received(ping, A, 2.0))
    assert (len(ping), len(out[1])) == (7, 15)
    assert _relayed(reg.datagram_received(ping[:-1], A, 2.0)) == []      # shorter: refused
    assert several.user.partner is old.user


# -- hole 5: seed-pool credit per block


def test_audit_seed_credit_is_earned_and_spent_per_block():
    """Introductions asked from a /24 spend only what seed-form datagrams
    from that /24 earned (3 x, at most SEED_CREDIT_MAX saved): heavy
    legitimate seed traffic elsewhere buys a forger nothing (on the relay of
    the audit the pool shared one credit)."""
    reg = relay()
    legit = [("203.0.113.%d" % i, 7000) for i in (1, 2)]
    for t in range(200):
        for i, src in enumerate(legit):
            reg.datagram_received(P.encode(P.Register("legit%d" % i)), src, t / 10)
    assert reg._pairings.seed_credit(legit[0]) == RG.SEED_CREDIT_MAX
    v, w = ("192.0.2.10", 1), ("198.18.0.10", 1)
    sent = 0
    for name, src in (("v", v), ("w", w)):
        data = P.encode(P.Register(name))
        sent += len(data) if src == v else 0
        reg.datagram_received(data, src, 30.0)
    assert reg._pairings.seed_credit(v) == RG.SEED_GAIN * sent
    out_bytes = 0
    for i in range(2000):
        data = P.encode(P.Connect("w"))
        sent += len(data)
        out_bytes += sum(len(d) for _, d in sends(reg.datagram_received(data, v, 31.0 + i * 0.6)))
    assert 0 < out_bytes <= RG.SEED_GAIN * sent
    assert reg._pairings.seed_credit(legit[0]) == RG.SEED_CREDIT_MAX          # untouched


# -- hole 6: a user alone in its /24 costs one table entry


def test_audit_directory_tables_stay_right_as_blocks_fill_and_empty():
    """Random registrations and removals over a few /24s, IPs and ports,
    both pools (and IPv4-mapped IPv6 sources): every lookup by address,
    the count per IP, the pools' counts per block and the total agree with
    a plain model, through every change between a /24's lone entry and the
    tables by address."""
    rng = random.Random(10)
    d = Directory(collections.Counter(), 10 ** 6, 10 ** 6, 10 ** 6)
    model = {}                                          # addr -> (name, proven)
    hosts = ["10.0.%d.%d" % (b, h) for b in range(3) for h in (1, 2)] + ["::ffff:10.0.1.1", "::ffff:10.0.9.9"]
    for step in range(5000):
        addr = (rng.choice(hosts), rng.randrange(1, 4))
        if addr in model and rng.random() < 0.6:
            d.remove(d.find(addr))
            del model[addr]
        elif addr not in model:
            proven = rng.random() < 0.5
            d.add("u%d" % step, addr, float(step), proven)
            model[addr] = ("u%d" % step, proven)
        assert len(d) == len(model)
        for host in hosts:
            for port in (1, 2, 3):
                found = d.find((host, port))
                assert (found.name if found else None) == (model[(host, port)][0] if (host, port) in model
                                                             else None)
            ip = ip_key((host, 1))
            assert d._users_at_ip((host, 1)) == sum(1 for a in model if ip_key(a) == ip)
        for proven in (True, False):
            blocks = {block_key(a) for a, (_, p) in model.items() if p == proven}
            for block in blocks:
                real = sum(1 for a, (_, p) in model.items() if p == proven and block_key(a) == block)
                lone = d._lone.get(block)
                counted = d._pools[proven].count(block) + (lone is not None and lone.ext == proven)
                assert counted == real
