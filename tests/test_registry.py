"""The relay's sans-I/O core: registration, introduction, expiry, bad input."""

import collections
import dataclasses

import pytest

from peerpunch import protocol as P
from peerpunch.effects import Send
from peerpunch import registry as RG
from peerpunch.registry import Registry

from .cookies import cookie_for, join, padded

A = ("198.51.100.10", 40000)
B = ("198.51.100.20", 41000)
C = ("198.51.100.30", 42000)

REG_A = b'{"Register":{"username":"alice"}}'
REG_B = b'{"Register":{"username":"bob"}}'
REG_C_EXT = b'{"Register":{"username":"carol","features":["ext"]}}'


def sends(effects):
    return [(e.addr, e.data) for e in effects if isinstance(e, Send)]


SECRET = "000102030405060708090a0b0c0d0e0f"


def fixed_bytes(n):
    return bytes(range(n))


def registered(*pairs, now=0.0, **options):
    """A Registry with the Registers *pairs* (data, addr) in it; extension
    ones go through the cookie round trip, as our peers do."""
    options.setdefault("random_bytes", fixed_bytes)
    reg = Registry(**options)
    for data, addr in pairs:
        enter(reg, data, addr, now)
    return reg


def enter(reg, data, addr, now):
    """Send the Register *data* from *addr*; an extension one again with the
    cookie the first one earned. Returns what the last one got."""
    msg = P.decode(data)
    if P.speaks_extensions(msg.features):
        cookie = cookie_for(reg, msg, addr, now)
        data = P.encode(dataclasses.replace(msg, cookie=cookie))
    return reg.datagram_received(data, addr, now)


def test_registry_register_acks_in_seed_form():
    reg = Registry()
    assert sends(reg.datagram_received(REG_A, A, 0.0)) == [(A, b'"RegisterAck"')]
    assert reg.user("alice").addr == A and len(reg) == 1


NONCE = "ab" * 16


def test_registry_register_acks_extension_clients_with_features_and_token():
    """The first Register earns a Cookie (no state); the one with the
    cookie is acknowledged with the token and the client's nonce."""
    reg = Registry(random_bytes=fixed_bytes)
    first = P.encode(P.Register("carol", features=("ext",), nonce=NONCE))
    assert sends(reg.datagram_received(first, C, 0.0)) == []    # 94 bytes: the Cookie has 99
    assert reg.stats["cookie_too_large"] == 1
    first = padded(first, 99)
    (cookie,) = sends(reg.datagram_received(first, C, 0.0))
    assert cookie[0] == C and cookie[1].startswith(b'{"Cookie":{"cookie":"') and \
        cookie[1].endswith(b'","nonce":"%s"}}' % NONCE.encode())
    assert len(reg) == 0 and len(cookie[1]) <= len(first)
    again = P.Register("carol", features=("ext",), nonce=NONCE, cookie=P.decode(cookie[1]).cookie)
    assert sends(reg.datagram_received(P.encode(again), C, 1.0)) == \
        [(C, b'{"RegisterAck":{"features":["ext","relay1","watch1"],"token":"%s","nonce":"%s"}}'
          % (SECRET.encode(), NONCE.encode()))]
    assert reg.user("carol").verified and reg.proven_users() == 1


def test_registry_reregister_refreshes_without_duplicating():
    reg = registered((REG_A, A))
    assert sends(reg.datagram_received(REG_A, A, 50.0)) == [(A, b'"RegisterAck"')]
    assert len(reg) == 1 and reg.stats["registrations"] == 1
    assert reg.tick(100.0) == [] and reg.user("alice") is not None   # refreshed at 50


def test_registry_name_held_by_live_address_is_refused_silently_for_seed_clients():
    reg = registered((REG_A, A))
    assert sends(reg.datagram_received(REG_A, B, 1.0)) == []
    assert reg.user("alice").addr == A and reg.stats["name_taken"] == 1


def test_registry_name_held_is_refused_with_error_for_extension_clients():
    reg = registered()
    join(reg, "alice", A)                  # proven (a seed-form holder gives way: test_registry_audit.py)
    out = sends(enter(reg, b'{"Register":{"username":"alice","features":["ext"]}}', B, 1.0))
    assert out == [(B, b'{"Error":{"code":"name-taken","message":"the name alice is in use"}}')]


def test_registry_name_is_free_again_after_expiry():
    reg = registered((REG_A, A), expire_after=90.0)
    assert reg.next_deadline() == 90.0
    reg.tick(89.9)
    assert reg.user("alice") is not None
    reg.tick(90.0)
    assert reg.user("alice") is None and len(reg) == 0
    assert sends(reg.datagram_received(REG_A, B, 91.0)) == [(B, b'"RegisterAck"')]


def test_registry_address_taking_a_new_name_releases_the_old_one():
    reg = registered((REG_A, A))
    reg.datagram_received(b'{"Register":{"username":"alice2"}}', A, 1.0)
    assert reg.user("alice") is None and reg.user("alice2").addr == A and len(reg) == 1


def test_registry_connect_introduces_both_and_marks_busy():
    reg = registered((REG_A, A), (REG_B, B))
    out = sends(reg.datagram_received(b'{"Connect":{"target_username":"bob"}}', A, 1.0))
    assert out == [
        (A, b'{"PeerInfo":{"peer":"198.51.100.20:41000","username":"bob"}}'),
        (B, b'{"PeerInfo":{"peer":"198.51.100.10:40000","username":"alice"}}'),
    ]
    assert reg.sessions() == 1
    reg.datagram_received(b'{"Register":{"username":"carol"}}', C, 1.0)
    assert sends(reg.datagram_received(b'{"Connect":{"target_username":"bob"}}', C, 1.0)) == \
        [(C, b'"TargetBusy"')]
    assert sends(reg.datagram_received(b'{"Connect":{"target_username":"alice"}}', C, 1.0)) == \
        [(C, b'"TargetBusy"')]


def test_registry_peer_info_carries_features_only_to_extension_clients():
    reg = registered((REG_A, A), (REG_C_EXT, C))
    out = sends(reg.datagram_received(_connect("alice", reg, "carol"), C, 1.0))
    assert out == [
        (C, b'{"PeerInfo":{"peer":"198.51.100.10:40000","username":"alice","features":[],'
            b'"session":"%s"}}' % SECRET.encode()),
        (A, b'{"PeerInfo":{"peer":"198.51.100.30:42000","username":"carol"}}'),
    ]


def test_registry_repeated_connect_repeats_the_introduction():
    reg = registered((REG_A, A), (REG_B, B))
    first = sends(reg.datagram_received(b'{"Connect":{"target_username":"bob"}}', A, 1.0))
    again = sends(reg.datagram_received(b'{"Connect":{"target_username":"bob"}}', A, 2.0))
    assert first == again and reg.stats["introductions"] == 1


def test_registry_target_not_found():
    reg = registered((REG_A, A))
    assert sends(reg.datagram_received(b'{"Connect":{"target_username":"zed"}}', A, 1.0)) == \
        [(A, b'"TargetNotFound"')]


def test_registry_connect_to_oneself_is_refused_in_a_form_the_client_knows():
    reg = registered((REG_A, A), (REG_C_EXT, C))
    assert sends(reg.datagram_received(b'{"Connect":{"target_username":"alice"}}', A, 1.0)) == \
        [(A, b'"TargetNotFound"')]
    out = sends(reg.datagram_received(_connect("carol", reg, "carol"), C, 1.0))
    assert len(out) == 1 and out[0][1].startswith(b'{"Error":{"code":"self-connect"')
    assert reg.sessions() == 0


def test_registry_session_finished_frees_both():
    reg = registered((REG_A, A), (REG_B, B))
    reg.datagram_received(b'{"Connect":{"target_username":"bob"}}', A, 1.0)
    assert sends(reg.datagram_received(b'"SessionFinished"', B, 2.0)) == []
    assert reg.sessions() == 0
    enter(reg, REG_C_EXT, C, 2.0)
    assert sends(reg.datagram_received(_connect("alice", reg, "carol"), C, 3.0))[0][1] \
        .startswith(b'{"PeerInfo"')


def test_registry_expiry_ends_the_partners_session():
    reg = registered((REG_A, A), (REG_B, B), expire_after=90.0)
    reg.datagram_received(b'{"Connect":{"target_username":"bob"}}', A, 1.0)
    reg.datagram_received(REG_B, B, 60.0)
    reg.tick(91.0)
    assert reg.user("alice") is None and reg.user("bob").partner is None


def test_registry_connect_before_register_is_dropped():
    reg = Registry()
    assert sends(reg.datagram_received(b'{"Connect":{"target_username":"bob"}}', A, 0.0)) == []
    assert reg.stats["unregistered"] == 1


def test_registry_max_users_and_max_seed_users_are_separate_pools():
    reg = registered((REG_C_EXT, C), max_users=1, max_seed_users=1)
    assert sends(enter(reg, REG_C_EXT.replace(b"carol", b"dave"), B, 0.0)) == \
        [(B, b'{"Error":{"code":"relay-full","message":"the relay is full"}}')]
    assert sends(reg.datagram_received(REG_A, A, 0.0)) == [(A, b'"RegisterAck"')]   # the seed pool
    assert sends(reg.datagram_received(REG_B, ("198.51.100.21", 1), 1.0)) == \
        [(("198.51.100.21", 1), b'"RegisterAck"')]       # full too: in place of the least recent
    assert reg.user("alice") is None and reg.stats["seed_evicted_least_recent"] == 1
    assert len(reg) == 2 and reg.stats["full"] == 1 and reg.stats["seed_full"] == 0
    assert (reg.proven_users(), reg.seed_users()) == (1, 1)


def _connect(target, reg, asker):
    """A Connect to *target* with *asker*'s token."""
    return P.encode(P.Connect(target, token=reg.user(asker).token))


BAD_DATAGRAMS = [
    b"",
    bytes(range(256)) * 256,                        # 64 KiB of junk
    b"\xff\xfe\xfd",                                # invalid UTF-8
    b"[1,2,3]",
    b"{}",
    b'{"Register":{"username":5}}',
    b'{"Register":{}}',
    b'{"Register":"alice"}',
    b'{"Hello":{"x":1}}',                           # unknown variant
    b'"Hello"',
    b'{"Register":{"username":"' + b"x" * 60000 + b'"}}',   # a 60 KB username
    b'{"Register":{"username":"bad\\u0000name"}}',  # control character
    b'{"Register":{"username":"\\ud800"}}',        # lone surrogate
    b'{"PeerInfo":{"peer":"1.2.3.4:5","username":"x"}}',
    b'"RegisterAck"',
    b'{"DirectMessage":{"content":"hi"}}',
    b"[" * 1000,
    b"NaN",
]


@pytest.mark.parametrize("data", BAD_DATAGRAMS, ids=range(len(BAD_DATAGRAMS)))
def test_registry_bad_datagram_is_dropped_and_counted(data):
    reg = registered((REG_A, A), (REG_B, B))
    assert sends(reg.datagram_received(data, C, 1.0)) == []            # stranger: nothing
    assert sends(reg.datagram_received(data, A, 1.0)) == []            # seed client: nothing
    assert sum(reg.stats[k] for k in ("malformed", "unexpected", "unregistered")) == 2
    assert len(reg) == 2
    assert sends(reg.datagram_received(b'{"Connect":{"target_username":"bob"}}', A, 2.0))[0][1] \
        .startswith(b'{"PeerInfo"')


def test_registry_bad_datagram_from_extension_client_gets_a_short_error():
    """...never longer than the datagram, which may be forged (finding D)."""
    reg = registered((REG_C_EXT, C))
    assert sends(reg.datagram_received(b"", C, 1.0)) == []
    assert sends(reg.datagram_received(b"junk", C, 1.0)) == []
    out = sends(reg.datagram_received(b"junk" * 14, C, 1.0))
    assert out == [(C, b'{"Error":{"code":"bad-request","message":"malformed"}}')]
    assert len(out[0][1]) <= 56


def test_registry_logs_bad_input_once_per_source_and_bounds_memory():
    reg = Registry()
    first = reg.datagram_received(b"junk", A, 0.0)
    second = reg.datagram_received(b"junk", A, 0.0)
    assert len(first) == 1 and second == []
    for port in range(1, 10000):
        reg.datagram_received(b"junk", ("192.0.2.1", port), 0.0)
    assert len(reg._refusals._noted) <= 4096
    assert reg.stats["malformed"] == 10001


def test_registry_ipv6_endpoints_in_brackets_and_mapped_v4_plain():
    v6 = ("2001:db8::1", 40000, 0, 0)
    mapped = ("::ffff:198.51.100.10", 40000, 0, 0)
    reg = registered((REG_A, v6), (REG_B, mapped))
    out = sends(reg.datagram_received(b'{"Connect":{"target_username":"bob"}}', v6, 1.0))
    assert out == [
        (v6, b'{"PeerInfo":{"peer":"198.51.100.10:40000","username":"bob"}}'),
        (mapped, b'{"PeerInfo":{"peer":"[2001:db8::1]:40000","username":"alice"}}'),
    ]


def test_registry_lookup_is_by_dict_not_scan():
    reg = Registry(max_seed_users=20000)
    for i in range(20000):
        reg.datagram_received(P.encode(P.Register("u%d" % i)), ("10.0.%d.%d" % (i // 250, i % 250), 1000), 0.0)
    assert len(reg) == 20000 and reg.user("u19999").addr == ("10.0.79.249", 1000)
    # expiry looks only at the oldest entries: refreshing one moves it to the back
    reg.datagram_received(P.encode(P.Register("u0")), ("10.0.0.0", 1000), 50.0)
    ticks = 0
    while reg.next_deadline() <= 90.0:
        reg.tick(90.0)
        ticks += 1
    assert len(reg) == 1 and reg.user("u0") is not None
    assert ticks == 20                  # at most 1000 expiries per tick: the loop stays responsive


KEY = "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE="   # base64 of 32 x "A"
OTHER_KEY = "QkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkI="


def _register(name, key=KEY, token=None):
    return P.encode(P.Register(name, features=("ext",), key=key, token=token))


def test_registry_takeover_without_token_is_refused_1000_times():
    """From addresses the attacker really has (so it earns cookies)."""
    reg = Registry()
    token = join(reg, "alice", A, features=("ext",), key=KEY)
    guesses = [None, "0" * 32, "f" * 32] + ["%032x" % i for i in range(997)]
    accepted = 0
    for i, guess in enumerate(guesses):
        src = ("192.0.2.%d" % (i % 250 + 1), 1000 + i)
        for key in (KEY, OTHER_KEY):
            reply = sends(enter(reg, _register("alice", key, guess), src, 1.0))
            accepted += any(d.startswith(b'{"RegisterAck"') for _, d in reply)
    assert accepted == 0 and reg.user("alice").addr == A
    assert reg.stats["name_taken"] == 2000
    # the owner, from a new port after a NAT rebinding, with its token and key
    # (and the cookie for the new address): moved
    moved = ("198.51.100.10", 40999)
    assert sends(reg.datagram_received(_register("alice", KEY, token), moved, 2.0))[0][1] \
        .startswith(b'{"Cookie"')
    assert reg.user("alice").addr == A                 # not before it proves the new address
    reply = sends(enter(reg, _register("alice", KEY, token), moved, 2.0))
    assert reply[0][0] == moved and reply[0][1].startswith(b'{"RegisterAck"')
    assert reg.user("alice").addr == moved and len(reg) == 1 and reg.stats["moved"] == 1


def test_registry_token_with_another_key_does_not_move():
    reg = Registry()
    token = join(reg, "alice", A, features=("ext",), key=KEY)
    assert sends(enter(reg, _register("alice", OTHER_KEY, token), B, 1.0))[0][1] \
        .startswith(b'{"Error":{"code":"name-taken"')
    assert reg.user("alice").addr == A


def test_registry_move_keeps_the_session_and_logs_it():
    reg = registered((REG_B, B))
    token = join(reg, "alice", A, features=("ext",), key=KEY)
    reg.datagram_received(P.encode(P.Connect("bob", token=token)), A, 0.5)
    out = enter(reg, _register("alice", KEY, token), C, 1.0)
    assert any("'alice' moved from 198.51.100.10:40000 to 198.51.100.30:42000" in e.text
               for e in out if hasattr(e, "text"))
    assert reg.user("alice").partner is reg.user("bob")
    # a Connect repeated from the new address introduces the new endpoint (it proved
    # its address with the token, so it sends the token with every request now)
    assert sends(reg.datagram_received(b'{"Connect":{"target_username":"bob"}}', C, 1.5)) == []
    out = sends(reg.datagram_received(P.encode(P.Connect("bob", token=token)), C, 1.5))
    assert out[1] == (B, b'{"PeerInfo":{"peer":"198.51.100.30:42000","username":"alice"}}')


def test_registry_refusals_are_logged_once_per_source():
    reg = registered((REG_A, A))
    first = reg.datagram_received(REG_A, B, 1.0)
    again = reg.datagram_received(REG_A, B, 1.0)
    assert [e.text for e in first if hasattr(e, "level")] == \
        ["refused 'alice' from 198.51.100.20:41000: name held by 198.51.100.10:40000"]
    assert again == []


def test_registry_repeated_introduction_repeats_the_session_secret():
    counter = iter(range(1000))
    reg = Registry(random_bytes=lambda n: bytes([next(counter)]) * n)
    enter(reg, REG_C_EXT, C, 0.0)
    enter(reg, b'{"Register":{"username":"dave","features":["ext"]}}', A, 0.0)
    first = sends(reg.datagram_received(_connect("dave", reg, "carol"), C, 1.0))
    again = sends(reg.datagram_received(_connect("dave", reg, "carol"), C, 2.0))
    secrets = {P.decode(d).session for _, d in first + again}
    assert first == again and len(secrets) == 1


def test_registry_never_answers_replies_so_two_relays_cannot_loop():
    """Spoofed Registers make relay A and relay B users of each other; then
    one Error between them must not start an endless exchange."""
    a, b = Registry(), Registry()
    A_ADDR, B_ADDR = ("192.0.2.1", 8080), ("192.0.2.2", 8080)
    enter(a, REG_C_EXT.replace(b"carol", b"relayb"), B_ADDR, 0.0)
    enter(b, REG_C_EXT.replace(b"carol", b"relaya"), A_ADDR, 0.0)
    assert len(a) == len(b) == 1
    wire = [(B_ADDR, A_ADDR, b"junk")]                 # the first bounce
    hops = 0
    while wire and hops < 100:
        src, dst, data = wire.pop()
        reg = a if dst == A_ADDR else b
        wire += [(dst, addr, d) for addr, d in sends(reg.datagram_received(data, src, 1.0))]
        hops += 1
    assert hops <= 2


def test_registry_repeated_connects_are_rate_limited():
    reg = registered((REG_A, A), (REG_B, B))
    reg.datagram_received(b'{"Connect":{"target_username":"bob"}}', A, 1.0)
    out = [sends(reg.datagram_received(b'{"Connect":{"target_username":"bob"}}', A, 1.0 + i / 100))
           for i in range(100)]                        # 100 in one second
    assert sum(len(o) for o in out) == 2 * 1          # one repeat (at 1.5 s), two PeerInfos
    assert reg.stats["reintroductions_limited"] == 99


def test_registry_caps_users_per_ip_and_per_ipv6_64():
    reg = Registry(max_users_per_ip=3)
    for port in range(1, 6):
        reg.datagram_received(P.encode(P.Register("u%d" % port)), ("192.0.2.7", port), 0.0)
    for i in range(5):
        reg.datagram_received(P.encode(P.Register("v%d" % i)), ("2001:db8::%x" % (i + 1), 9, 0, 0), 0.0)
    assert len(reg) == 6 and reg.stats["full_for_ip"] == 4
    reg.datagram_received(b'"Unregister"', ("192.0.2.7", 1), 1.0)   # one leaves: room again
    reg.datagram_received(P.encode(P.Register("u9")), ("192.0.2.7", 9), 1.0)
    assert reg.user("u9") is not None and len(reg) == 6


def _ext_register(name, mapping=None, token=None):
    return P.encode(P.Register(name, features=("ext",), mapping=mapping, token=token))


def _proved(reg, name, addr, mapping, now=0.0, **fields):
    """Register *name* through the cookie, then again with the token (and
    *fields*); return the token."""
    token = join(reg, name, addr, now, features=("ext",), mapping=mapping)
    reg.datagram_received(P.encode(P.Register(name, features=("ext", "relay1"), mapping=mapping,
                                              token=token, **fields)), addr, now + 0.1)
    return token


def _introductions(reg, data, addr, now=1.0):
    return {a: P.decode(d) for a, d in sends(reg.datagram_received(data, addr, now))}


D = ("198.51.100.40", 43000)


def test_registry_passes_a_mapping_on_only_for_a_client_that_proved_its_address():
    reg = registered()
    reg.datagram_received(P.encode(P.Register("dave", mapping="dependent")), D, 0.0)   # seed form
    carol = _proved(reg, "carol", C, "independent")
    out = _introductions(reg, P.encode(P.Connect("dave", token=carol)), C)
    assert out[C].username == "dave" and out[C].mapping is None
    assert out[D] == P.PeerInfo(peer="198.51.100.30:42000", username="carol")   # seed bytes


def test_registry_passes_mappings_on_only_in_a_pairing_asked_for_with_the_token():
    """Someone who can spoof carol's address can send a Connect in her name,
    but without her token the pairing carries no mappings: nobody starts a
    birthday search (thousands of probes) toward either address."""
    reg = registered()
    carol = _proved(reg, "carol", C, "dependent")
    _proved(reg, "dave", D, "independent")
    assert _introductions(reg, P.encode(P.Connect("dave")), C) == {}        # spoofed: dropped
    assert _introductions(reg, P.encode(P.Connect("dave", token="00" * 16)), C, now=2.0) == {}
    assert reg.stats["unproven"] == 2
    out = _introductions(reg, P.encode(P.Connect("dave", token=carol)), C, now=3.0)
    assert out[C].mapping == P.MAPPING_INDEPENDENT and out[D].mapping == P.MAPPING_DEPENDENT


def test_registry_believes_a_mapping_only_from_a_register_with_the_token():
    reg = registered()
    carol = _proved(reg, "carol", C, "dependent")
    reg.datagram_received(_ext_register("carol", "independent"), C, 1.0)    # spoofed: no token
    assert reg.user("carol").mapping == P.MAPPING_DEPENDENT
    reg.datagram_received(_ext_register("carol", None, carol), C, 2.0)      # hers: unknown now
    assert reg.user("carol").mapping is None


# -- a restarted relay relearns the chats its clients are in

S1, S2 = "11" * 16, "22" * 16


def _claiming(reg, name, addr, partner, secret, now=0.0):
    return _proved(reg, name, addr, None, now, partner=partner, session=secret)


def test_registry_restores_a_chat_both_partners_claim_with_the_same_secret():
    reg = registered()
    _claiming(reg, "carol", C, "dave", S1)
    assert reg.user("carol").partner is None
    _claiming(reg, "dave", D, "carol", S1, now=1.0)
    carol, dave = reg.user("carol"), reg.user("dave")
    assert carol.partner is dave and dave.partner is carol and carol.secret == S1
    assert reg.stats["restored"] == 1
    # forwarding works again for the restored pair
    assert sends(reg.datagram_received(b"\xd0sealed", C, 2.0)) == [(D, b"\xd0sealed")]
    # and a third user is told they are busy instead of being introduced
    alice = _proved(reg, "alice", A, None, now=2.0)
    assert sends(reg.datagram_received(P.encode(P.Connect("carol", token=alice)), A, 2.1)) == \
        [(A, b'{"TargetBusy":{"target":"carol"}}')]   # ext: names the target


def test_registry_does_not_restore_on_a_wrong_secret_or_without_the_token():
    reg = registered()
    _claiming(reg, "carol", C, "dave", S1)
    _claiming(reg, "dave", D, "carol", S2)
    assert reg.user("carol").partner is None and reg.user("dave").partner is None
    # a spoofer without the token cannot claim anything
    reg.datagram_received(P.encode(P.Register("dave", features=("ext",), partner="carol",
                                              session=S1)), D, 2.0)
    assert reg.user("dave").partner is None and reg.stats["restored"] == 0


def test_registry_one_sided_claim_keeps_the_user_busy_for_a_while_only():
    reg = registered()
    carol = _claiming(reg, "carol", C, "dave", S1)
    connect = P.encode(P.Connect("carol", token=_proved(reg, "alice", A, None, now=1.0)))
    assert sends(reg.datagram_received(connect, A, 1.0)) == [(A, b'{"TargetBusy":{"target":"carol"}}')]
    reg.datagram_received(_ext_register("carol", token=carol), C, 50.0)   # keep carol (claiming nothing)
    out = sends(reg.datagram_received(connect, A, 50.0))
    assert [addr for addr, _ in out] == [A, C]        # introduced now


def test_registry_a_claim_ends_with_the_chat():
    reg = registered()
    carol = _claiming(reg, "carol", C, "dave", S1)
    reg.datagram_received(b'"SessionFinished"', C, 1.0)                     # spoofed: ignored
    assert reg.user("carol").claim is not None
    reg.datagram_received(P.encode(P.SessionFinished(token=carol)), C, 1.0)
    alice = _proved(reg, "alice", A, None, now=1.0)
    out = sends(reg.datagram_received(P.encode(P.Connect("carol", token=alice)), A, 1.0))
    assert [addr for addr, _ in out] == [A, C]


def test_registry_a_claim_ends_a_pairing_made_behind_the_clients_back():
    """After a restart, a Connect could once pair carol with mallory in the
    moment between carol's first Register and the one that proved her and
    named her chat with dave. Now the first one stores nothing, and the one
    with the cookie names the chat: mallory is never paired with her, and
    her chat with dave is restored -- mallory does not receive carol's
    relayed frames."""
    reg = registered()
    M = ("198.51.100.66", 6666)
    mallory = _proved(reg, "mallory", M, None)
    register = P.Register("carol", features=("ext", "relay1"), partner="dave", session=S1)
    cookie = cookie_for(reg, register, C, 1.0)                 # first Register: no state
    connect = P.encode(P.Connect("carol", token=mallory))
    assert sends(reg.datagram_received(connect, M, 1.01)) == \
        [(M, b'{"TargetNotFound":{"target":"carol"}}')]
    reg.datagram_received(P.encode(dataclasses.replace(register, cookie=cookie)), C, 1.05)
    assert sends(reg.datagram_received(connect, M, 1.06)) == \
        [(M, b'{"TargetBusy":{"target":"carol"}}')]
    assert reg.user("carol").partner is None and reg.user("mallory").partner is None
    _claiming(reg, "dave", D, "carol", S1, now=2.0)
    assert reg.user("carol").partner is reg.user("dave")
    assert sends(reg.datagram_received(b"\xd0sealed", C, 3.0)) == [(D, b"\xd0sealed")]


def test_registry_requests_from_a_proven_client_need_its_token():
    """Someone spoofing a proven client's address can no longer end its
    chat, unregister it or ask for someone in its name."""
    reg = registered()
    carol = _proved(reg, "carol", C, None)
    _proved(reg, "dave", D, None)
    assert sends(reg.datagram_received(b'{"Connect":{"target_username":"dave"}}', C, 1.0)) == []
    reg.datagram_received(P.encode(P.Connect("dave", token=carol)), C, 1.0)
    assert reg.user("carol").partner is reg.user("dave")
    reg.datagram_received(b'"SessionFinished"', C, 2.0)
    reg.datagram_received(b'{"Unregister":{}}', C, 2.0)
    assert reg.user("carol") is not None and reg.user("carol").partner is reg.user("dave")
    assert reg.stats["unproven"] == 3
    reg.datagram_received(P.encode(P.Unregister(token=carol)), C, 3.0)
    assert reg.user("carol") is None and reg.user("dave").partner is None


def test_registry_a_peer_info_always_fits_in_a_datagram():
    """A Register of nearly 1024 bytes (16 long features, four IPv6
    candidates, a name of 4-byte characters, from an IPv6 address) must not
    make the PeerInfo about it too long to send: that raised out of the
    relay once. Candidates are kept in canonical form, and what still does
    not fit is cut to what our peers use."""
    reg = registered()
    name = "\U0001F600" * 32
    features = ("ext",) + tuple("f%031d" % i for i in range(P.MAX_FEATURES - 1))
    local = tuple("[fdff:ffff:ffff:ffff:ffff:ffff:255.255.255.%d]:65535" % (250 + i)
                  for i in range(4))
    X = ("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", 65535)
    register = P.encode(P.Register(name, features=features, local=local))
    assert len(register) > 900
    enter(reg, register, X, 0.0)
    assert reg.user(name).local[0] == "[fdff:ffff:ffff:ffff:ffff:ffff:ffff:fffa]:65535"
    carol = _proved(reg, "carol", C, None, nonce=NONCE)
    full = P.PeerInfo(peer=reg.user(name).endpoint, username=name, features=features,
                      local=reg.user(name).local, session="00" * 16, nonce=NONCE)
    with pytest.raises(P.LocalProtocolError):
        P.encode(full)                       # what the relay would have tried to send
    out = dict(sends(reg.datagram_received(P.encode(P.Connect(name, token=carol)), C, 1.0)))
    assert all(len(data) <= P.MAX_DATAGRAM for data in out.values())
    about = P.decode(out[C])
    assert about.username == name and about.session and about.features == ("ext",) and \
        about.local is None and about.nonce == NONCE


# -- watches: "tell me when NAME registers"

def _watching(reg, name, addr, *names, now=0.0):
    """*name* registers at *addr*, proves it and watches *names*; return its token."""
    return _proved(reg, name, addr, None, now=now, watch=names)


def _onlines(effects):
    return [(addr, P.decode(data).username) for addr, data in sends(effects)
            if data.startswith(b'{"Online"')]


def _arrives(reg, name, addr, now):
    """*name* registers as an extension client at *addr*: return what the
    relay sent (to its first Register, to the one with the cookie)."""
    register = P.Register(name, features=("ext", "relay1"), nonce="ab" * 16)
    first = reg.datagram_received(P.encode(register), addr, now)
    cookie = P.decode(sends(first)[0][1]).cookie
    proven = P.encode(dataclasses.replace(register, cookie=cookie))
    return first, reg.datagram_received(proven, addr, now + 0.1)


def test_registry_watched_name_proving_its_address_tells_the_watcher_twice():
    reg = registered()
    _watching(reg, "alice", A, "bob")
    assert reg.watches() == 1 and reg.user("alice").watching == ("bob",)
    first, echo = _arrives(reg, "bob", B, 1.0)
    assert _onlines(first) == []                   # unproven: a forged Register tells nobody
    assert _onlines(echo) == [(A, "bob"), (A, "bob")]
    assert [d for a, d in sends(echo) if a == A] == [b'{"Online":{"username":"bob"}}'] * 2
    assert reg.stats["watches"] == 1 and reg.stats["notifications"] == 1
    again = P.encode(P.Register("bob", features=("ext",), token=reg.user("bob").token))
    assert _onlines(reg.datagram_received(again, B, 2.0)) == []   # a re-registration: nothing


def test_registry_forged_seed_register_tells_no_watcher():
    reg = registered()
    _watching(reg, "alice", A, "bob")
    out = reg.datagram_received(REG_B, ("192.0.2.66", 4000), 1.0)   # from anywhere, no token
    assert _onlines(out) == [] and sends(out) == [(("192.0.2.66", 4000), b'"RegisterAck"')]


def test_registry_seed_client_is_never_announced_to_a_watcher():
    """A seed-form Register proves nothing (one forged datagram makes one),
    so neither its arrival nor the watcher's next Register tells the
    watcher of it: the wait goes on (on the relay of the audit the watcher
    was told Online and paired with the forger's address)."""
    reg = registered()
    token = _watching(reg, "alice", A, "bob")
    reg.datagram_received(REG_B, ("192.0.2.66", 4000), 1.0)     # forged: from anywhere
    watch = P.encode(P.Register("alice", features=("ext",), token=token, watch=("bob",)))
    out = reg.datagram_received(watch, A, 2.0)
    assert _onlines(out) == [] and reg.user("alice").watching == ("bob",)


def test_registry_watch_answer_is_one_online_at_most_and_none_to_a_moved_address():
    reg = registered()
    for i, name in enumerate(("b", "c", "d")):
        _arrives(reg, name, ("198.51.100.%d" % (i + 1), 6000), 0.0)
    token = _watching(reg, "alice", A, "b", "c", "d", now=1.0)
    watch = P.encode(P.Register("alice", features=("ext",), token=token, watch=("b", "c", "d")))
    assert len(_onlines(reg.datagram_received(watch, A, 2.0))) == 1
    elsewhere = ("192.0.2.77", 7000)                       # the token alone proves nothing here
    out = reg.datagram_received(watch, elsewhere, 3.0)
    assert reg.user("alice").addr == A and _onlines(out) == []
    assert [d[:10] for _, d in sends(out)] == [b'{"Cookie":']     # no more bytes than the Register


def test_registry_notifications_about_one_name_are_rate_limited():
    reg = registered()
    _watching(reg, "alice", A, "bob")
    assert len(_onlines(_arrives(reg, "bob", B, 1.0)[1])) == RG.ONLINE_COPIES
    for t in (2.0, 3.0):                                   # bob leaves and comes back, in a loop
        reg.datagram_received(P.encode(P.Unregister(token=reg.user("bob").token)), B, t)
        assert _onlines(_arrives(reg, "bob", B, t + 0.2)[1]) == []
    reg.datagram_received(P.encode(P.Unregister(token=reg.user("bob").token)), B, 7.0)
    assert len(_onlines(_arrives(reg, "bob", B, 1.0 + RG.NOTIFY_EVERY + 1)[1])) == RG.ONLINE_COPIES


def test_registry_a_watcher_that_turned_seed_form_hears_nothing():
    """A seed client must never receive a non-seed variant, even where an
    extension client watched from the same address before."""
    reg = registered()
    token = _watching(reg, "alice", A, "bob")
    reg.datagram_received(P.encode(P.Unregister(token=token)), A, 0.4)
    reg.datagram_received(REG_A, A, 0.5)                   # seed form now, from alice's address
    assert reg.user("alice").ext is False
    assert all(a != A for a, _ in _onlines(_arrives(reg, "bob", B, 1.0)[1]))


def test_registry_watch_for_someone_online_is_answered_at_once_every_time():
    reg = registered()
    join(reg, "bob", B)
    token = _watching(reg, "alice", A, "bob")
    again = P.encode(P.Register("alice", features=("ext",), token=token, watch=("bob",)))
    assert _onlines(reg.datagram_received(again, A, 5.0)) == [(A, "bob")]   # a lost one is repaired


def test_registry_only_a_register_with_the_token_sets_watches():
    reg = registered()
    forged = P.encode(P.Register("alice", features=("ext",), watch=("bob",)))
    reg.datagram_received(forged, A, 0.0)                  # no cookie: nothing stored
    assert reg.user("alice") is None
    token = join(reg, "alice", A)
    reg.datagram_received(P.encode(P.Register("alice", features=("ext",), token="0" * 32,
                                              watch=("bob",))), A, 0.1)
    assert reg.watches() == 0
    out = _arrives(reg, "bob", B, 1.0)[1]
    assert _onlines(out) == [] and reg.stats["notifications"] == 0
    reg.datagram_received(P.encode(P.Register("alice", features=("ext",), token=token,
                                              watch=("carol",))), A, 2.0)
    assert reg.user("alice").watching == ("carol",)
    # a Register without the token (a forger at alice's address) changes nothing either
    reg.datagram_received(P.encode(P.Register("alice", features=("ext",), watch=())), A, 3.0)
    assert reg.user("alice").watching == ("carol",)


def test_registry_forged_watch_cannot_aim_notifications_at_a_victim():
    reg = registered()
    victim = ("192.0.2.99", 53)
    for i in range(100):                                   # a forger claims the victim's address
        data = P.encode(P.Register("v%d" % i, features=("ext",), token="%032x" % i,
                                   watch=("bob",)))
        reg.datagram_received(data, victim, 0.0)
    out = _arrives(reg, "bob", B, 1.0)[1]
    assert [a for a, _ in sends(out)] == [B] and reg.watches() == 0


def test_registry_a_register_naming_no_watch_ends_them():
    reg = registered()
    token = _watching(reg, "alice", A, "bob", "carol")
    assert reg.watches() == 2
    reg.datagram_received(P.encode(P.Register("alice", features=("ext",), token=token)), A, 1.0)
    assert reg.watches() == 0 and reg.user("alice").watching == ()
    assert _onlines(_arrives(reg, "bob", B, 2.0)[1]) == []


@pytest.mark.parametrize("end", ["expiry", "unregister", "new name", "paired"])
def test_registry_a_watch_ends_with_the_watchers_registration(end):
    reg = registered(expire_after=90.0)
    token = _watching(reg, "alice", A, "bob")
    if end == "expiry":
        reg.tick(91.0)
    elif end == "unregister":
        reg.datagram_received(P.encode(P.Unregister(token=token)), A, 1.0)
    elif end == "new name":
        reg.datagram_received(P.encode(P.Register("alice2", features=("ext",), token=token)), A, 1.0)
    else:
        enter(reg, REG_C_EXT, C, 1.0)
        reg.datagram_received(_connect("alice", reg, "carol"), C, 1.0)
        assert reg.user("alice").partner is reg.user("carol")
    assert reg.watches() == 0 and not reg._watches._watchers
    assert _onlines(_arrives(reg, "bob", B, 92.0)[1]) == []


def test_registry_a_watch_follows_its_client_to_a_new_address():
    reg = registered()
    token = _watching(reg, "alice", A, "bob")
    moved = ("198.51.100.10", 40999)
    enter(reg, P.encode(P.Register("alice", features=("ext",), token=token, watch=("bob",))),
          moved, 1.0)
    assert reg.user("alice").addr == moved
    assert _onlines(_arrives(reg, "bob", B, 2.0)[1]) == [(moved, "bob")] * 2


def test_registry_watches_are_bounded_per_name_and_in_all():
    reg = registered(max_watches=40)
    for i in range(RG.MAX_WATCHERS_PER_NAME + 5):
        _watching(reg, "w%d" % i, ("198.51.100.%d" % (i + 1), 5000), "bob")
    assert reg.watches() == RG.MAX_WATCHERS_PER_NAME and reg.stats["watches_refused"] == 5
    for i in range(20):
        _watching(reg, "x%d" % i, ("203.0.113.%d" % (i + 1), 5000), "someone%d" % i)
    assert reg.watches() == 40 and reg.stats["watches_refused"] == 5 + 12
    out = _arrives(reg, "bob", B, 1.0)[1]
    assert len(_onlines(out)) == RG.ONLINE_COPIES * RG.MAX_WATCHERS_PER_NAME   # bounded fan-out
    # one watcher's going frees its place for another
    reg.datagram_received(P.encode(P.Unregister(token=reg.user("x0").token)),
                          ("203.0.113.1", 5000), 2.0)
    _watching(reg, "late", ("203.0.113.200", 5000), "someone-else", now=3.0)
    assert reg.user("late").watching == ("someone-else",)


def test_registry_a_watch_of_oneself_or_twice_the_same_name_counts_once():
    reg = registered()
    _watching(reg, "alice", A, "alice", "bob", "bob")
    assert reg.user("alice").watching == ("bob",) and reg.watches() == 1


def test_registry_farewell_tells_only_proven_extension_clients():
    reg = registered((REG_A, A))                            # a seed client
    reg.datagram_received(REG_C_EXT, C, 0.0)                # carol never comes back with the cookie
    _proved(reg, "dave", D, None, nonce=NONCE)
    assert sends(reg.farewell()) == [
        (D, b'{"Error":{"code":"relay-stopping","message":"the relay is stopping","nonce":"%s"}}'
         % NONCE.encode())]
    assert reg.stats["farewells"] == 1


# -- issue 10: forged source addresses (findings A-D, F and the guarantees)

def _bytes_to(effects, addr=None):
    return sum(len(d) for a, d in sends(effects) if addr is None or a == addr)


def test_registry_finding_a_a_register_from_alices_endpoint_cannot_remove_her():
    reg = registered((REG_B, B))
    alice = join(reg, "alice", A, nonce=NONCE)
    for forged in (b'{"Register":{"username":"someone-else"}}',
                   padded(b'{"Register":{"username":"someone-else","features":["ext"]}}', 200)):
        out = reg.datagram_received(forged, A, 1.0)
        assert _bytes_to(out) <= len(forged) and all(d.startswith(b'{"Cookie"') for _, d in sends(out))
    assert reg.user("alice").addr == A and reg.user("someone-else") is None
    # ...so nobody can then take "alice" from elsewhere, in either form
    assert sends(reg.datagram_received(REG_A, ("192.0.2.66", 4000), 2.0)) == []
    assert reg.user("alice").addr == A and reg.stats["seed_vs_proven"] == 2
    carol = _proved(reg, "carol", C, None)
    out = _introductions(reg, P.encode(P.Connect("alice", token=carol)), C, now=3.0)
    assert out[C].peer == "198.51.100.10:40000"
    again = P.encode(P.Register("alice", features=("ext",), token=alice, nonce=NONCE))
    assert sends(reg.datagram_received(again, A, 4.0))[0][1].startswith(b'{"RegisterAck"')


def test_registry_finding_b_a_seed_form_register_cannot_downgrade_a_proven_client():
    reg = registered()
    join(reg, "alice", A, features=("ext", "relay1", "noise1"))
    assert sends(reg.datagram_received(REG_A, A, 1.0)) == []          # forged: dropped, unanswered
    bob = _proved(reg, "bob", B, None)
    out = _introductions(reg, P.encode(P.Connect("alice", token=bob)), B, now=2.0)
    assert out[B].features == ("ext", "relay1", "noise1") and reg.user("alice").ext


def test_registry_finding_c_forged_registers_and_connects_reflect_nothing():
    """Forged extension Registers for victims store nothing; forged Connects
    from them then go nowhere. In the seed-form pool, where a Register cannot
    be proven, what comes out is bounded: at most SEED_GAIN x the bytes that
    went in (plus the saved-up credit), and SEED_INFO_BURST PeerInfos per
    destination block at once."""
    reg = registered()
    V, W1, W2 = ("192.0.2.1", 53), ("192.0.2.2", 53), ("203.0.113.9", 123)
    features = tuple("f%031d" % i for i in range(15)) + ("ext",)
    local = tuple("[fd00::%d]:9" % i for i in range(4))
    sent_in = out_bytes = 0
    for name, victim in (("v", V), ("w1", W1), ("w2", W2)):
        data = P.encode(P.Register(name, features=features, local=local))
        sent_in += len(data)
        out_bytes += _bytes_to(reg.datagram_received(data, victim, 0.0))
    assert len(reg) == 0 and out_bytes <= sent_in            # one Cookie each, no state
    for i in range(1000):
        data = P.encode(P.Connect(("w1", "w2")[i % 2]))
        assert sends(reg.datagram_received(data, V, 1.0 + i / 1000)) == []
    # the seed-form pool
    for i, (name, victim) in enumerate((("v", V), ("w1", W1), ("w2", W2))):
        data = P.encode(P.Register(name))
        sent_in += len(data)
        out_bytes += _bytes_to(reg.datagram_received(data, victim, 2.0))
    per_victim = collections.Counter()
    for i in range(5000):
        data = P.encode(P.Connect(("w1", "w2")[i % 2]))
        sent_in += len(data)
        out = reg.datagram_received(data, V, 3.0 + i / 5000)      # 5,000 in one second
        out_bytes += _bytes_to(out)
        per_victim.update(a for a, _ in sends(out))
    assert out_bytes <= RG.SEED_GAIN * sent_in
    assert max(per_victim.values()) <= RG.SEED_INFO_BURST + RG.SEED_INFO_RATE
    assert sum(per_victim.values()) <= 3 * (RG.SEED_INFO_BURST + RG.SEED_INFO_RATE)


def test_registry_finding_d_errors_never_outgrow_the_datagram_and_are_budgeted():
    reg = registered()
    join(reg, "carol", C)
    assert sends(reg.datagram_received(b"", C, 1.0)) == []          # 0 bytes: nothing back
    answers = [sends(reg.datagram_received(b"x" * 100, C, 1.0)) for _ in range(100)]
    assert sum(map(len, answers)) == RG.ERROR_BURST                 # then ERROR_RATE per second
    assert sum(map(len, (sends(reg.datagram_received(b"x" * 100, C, 3.0)) for _ in range(9)))) == 2


def test_registry_error_budget_table_cannot_be_cycled_past():
    from peerpunch.shares import Budget
    budget = Budget(rate=1.0, burst=1.0, max_keys=4)
    assert [budget.take(k, 0.0) for k in range(10)] == [True] * 4 + [False] * 6
    assert [budget.take(k, 0.5) for k in range(4, 10)] == [False] * 6   # none refilled yet
    assert budget.take(9, 1.0) and len(budget) == 4                      # a full one made room


def test_registry_finding_f_a_full_relay_admits_a_newcomer_from_a_lighter_block():
    reg = registered(max_users=20)
    for i in range(20):                                    # a flood from one /24 fills the relay
        join(reg, "f%d" % i, ("192.0.2.%d" % (i + 1), 9), now=i / 100)
    late = ("192.0.2.200", 9)
    assert sends(enter(reg, REG_C_EXT.replace(b"carol", b"flood"), late, 1.0))[0][1] \
        .startswith(b'{"Error":{"code":"relay-full"')        # the heaviest block: refused
    join(reg, "carol", C, now=1.0)                          # another block: admitted
    assert reg.user("carol") is not None and reg.user("f0") is None and len(reg) == 20
    assert reg.stats["evicted"] == 1


def test_registry_finding_f_forged_datagrams_refresh_nobody():
    reg = registered(expire_after=90.0)
    token = join(reg, "carol", C, nonce=NONCE)
    reg.datagram_received(REG_B, B, 0.0)
    for t in range(10, 90, 10):                            # a forger "keeps them alive"
        for data in (b"junk", b'"SessionFinished"', P.encode(P.Register("carol", features=("ext",))),
                     REG_C_EXT.replace(b',"features":["ext"]', b""), b"\xd0x"):
            reg.datagram_received(data, C, float(t))
    reg.tick(90.0)
    assert reg.user("carol") is None
    # its own Register with the token does refresh it
    reg = registered(expire_after=90.0)
    token = join(reg, "carol", C, nonce=NONCE)
    reg.datagram_received(P.encode(P.Register("carol", features=("ext",), token=token)), C, 50.0)
    reg.tick(90.0)
    assert reg.user("carol") is not None


def test_registry_a_cookie_is_bound_to_address_name_and_time():
    reg = registered()
    register = P.Register("carol", features=("ext",), nonce=NONCE)
    cookie = cookie_for(reg, register, C, 0.0)
    for addr, name, now in ((B, "carol", 1.0), (C, "dave", 1.0), (C, "carol", 2.5 * RG.COOKIE_SLOT)):
        forged = dataclasses.replace(register, username=name, cookie=cookie)
        out = sends(reg.datagram_received(P.encode(forged), addr, now))
        assert [d[:10] for _, d in out] == [b'{"Cookie":'] and len(reg) == 0
    good = P.encode(dataclasses.replace(register, cookie=cookie))
    assert sends(reg.datagram_received(good, C, 1.5 * RG.COOKIE_SLOT))[0][1].startswith(b'{"RegisterAck"')


def test_registry_every_message_to_an_extension_client_carries_its_nonce():
    reg = registered()
    join(reg, "alice", A)
    carol = join(reg, "carol", C, nonce=NONCE)
    join(reg, "dave", D, nonce="cd" * 16)
    seen = []
    for data, now in ((P.encode(P.Register("carol", features=("ext",), token=carol, nonce=NONCE,
                                           watch=("alice",))), 1.0),
                      (P.encode(P.Connect("zed", token=carol)), 1.1),
                      (P.encode(P.Connect("carol", token=carol)), 1.2),
                      (P.encode(P.Connect("dave", token=carol)), 1.3),
                      (b"y" * 200, 1.4)):
        seen += [P.decode(d) for a, d in sends(reg.datagram_received(data, C, now)) if a == C]
    join(reg, "erin", ("198.51.100.50", 1), now=2.0)
    erin = reg.user("erin").token
    seen += [P.decode(d) for a, d in sends(reg.datagram_received(
        P.encode(P.Connect("carol", token=erin)), ("198.51.100.50", 1), 2.1)) if a == C]
    kinds = sorted({type(m).__name__ for m in seen})
    assert kinds == ["Error", "Online", "PeerInfo", "RegisterAck", "TargetNotFound"]
    assert all(m.nonce == NONCE for m in seen)


def test_registry_seed_form_connects_never_reach_a_proven_client():
    reg = registered((REG_A, A))
    join(reg, "carol", C)
    assert sends(reg.datagram_received(b'{"Connect":{"target_username":"carol"}}', A, 1.0)) == \
        [(A, b'"TargetNotFound"')]
    out = _introductions(reg, _connect("alice", reg, "carol"), C, now=1.5)   # the other way: yes
    assert out[A] == P.PeerInfo(peer="198.51.100.30:42000", username="carol")


def test_registry_seed_pool_is_bounded_and_shared_fairly():
    reg = registered(max_seed_users=10)
    for i in range(10):
        reg.datagram_received(P.encode(P.Register("s%d" % i)), ("192.0.2.%d" % (i + 1), 1), 0.0)
    reg.datagram_received(P.encode(P.Register("s0")), ("192.0.2.1", 1), 0.5)    # s0 refreshed
    reg.datagram_received(REG_B, B, 1.0)           # a lighter block: in place of the heaviest's oldest
    assert reg.user("s0") is None and reg.user("bob") is not None
    reg.datagram_received(P.encode(P.Register("x")), ("192.0.2.99", 1), 2.0)
    assert reg.seed_users() == 10 and reg.user("x") is not None    # in place of the least recent:
    assert reg.user("s1") is None and reg.stats["seed_evicted_least_recent"] == 1   # never locked


def test_registry_cookie_register_for_another_name_renames_the_client_at_that_address():
    """Only a client at the address can read its cookie: a client that
    restarted there under another name (and lost its token) gets that name
    at once, with a token of its own, and the old one is gone."""
    import os
    reg = registered(random_bytes=os.urandom)
    old = join(reg, "alice", A)
    new = join(reg, "zed", A, now=1.0)
    assert reg.user("zed") is not None and reg.user("zed").addr == A
    assert reg.user("alice") is None and new != old


# -- compact bookkeeping (issue 10: memory per user)

def test_registry_finds_and_counts_users_of_one_ip_as_they_come_and_go():
    """An IPv4 IP's first user is kept under its IP, later ones under their
    address: lookups, the per-IP cap and removals stay right through every
    transition (and an IPv4-mapped IPv6 source counts with its IPv4 IP)."""
    reg = Registry(max_users_per_ip=3)
    ip = "192.0.2.7"
    for port in (1, 2, 3):
        reg.datagram_received(P.encode(P.Register("u%d" % port)), (ip, port), 0.0)
    reg.datagram_received(P.encode(P.Register("mapped")), ("::ffff:" + ip, 4, 0, 0), 0.0)
    assert reg.stats["full_for_ip"] == 1 and reg.user("mapped") is None
    for port in (2, 1, 3):                              # leave in an odd order
        assert reg.user("u%d" % port).addr == (ip, port)
        reg.datagram_received(b'"Unregister"', (ip, port), 1.0)
        assert reg.user("u%d" % port) is None
        assert all(reg.user("u%d" % p).addr == (ip, p) for p in (1, 2, 3) if reg.user("u%d" % p))
    assert len(reg) == 0 and not reg._users._by_addr and not reg._users._crowded
    for port in (5, 6, 7):                              # and again, after the IP was crowded
        reg.datagram_received(P.encode(P.Register("v%d" % port)), (ip, port), 2.0)
    reg.datagram_received(P.encode(P.Register("v8")), (ip, 8), 2.0)
    assert len(reg) == 3 and reg.stats["full_for_ip"] == 2
    out = reg.datagram_received(P.encode(P.Connect("v5")), (ip, 6), 3.0)
    assert [a for a, _ in sends(out)] == [(ip, 6), (ip, 5)]


def test_registry_keeps_what_a_register_said_exactly_in_its_compact_form():
    reg = Registry(random_bytes=fixed_bytes)
    local = ("10.1.2.3:4000", "[fd00::1]:65535", "192.168.0.1:1")
    token = join(reg, "alice", A, features=("ext",), nonce=SECRET, local=local,
                 mapping=P.MAPPING_DEPENDENT, key="B" * 43 + "=")
    alice = reg.user("alice")
    assert (alice.token, alice.nonce, alice.local, alice.mapping, alice.endpoint) == \
        (token, SECRET, local, P.MAPPING_DEPENDENT, "198.51.100.10:40000")
    assert alice.same_key("B" * 43 + "=") and not alice.same_key("C" * 43 + "=") \
        and not alice.same_key(None)
    reg.datagram_received(P.encode(P.Register("alice", features=("ext",), token=token, local=())), A, 1.0)
    assert alice.local == () and alice.mapping is None and alice.nonce is None and alice.token == token


def test_shares_blocks_of_one_need_no_bookkeeping_and_still_pick_the_oldest_victim():
    from peerpunch.shares import Shares

    class U:
        older = newer = None
    shares, users = Shares(), [U() for _ in range(5)]
    shares.add(users[0], 1)
    for u in users[1:4]:
        shares.add(u, 2)
    shares.add(users[4], 3)
    assert shares._blocks[1] is users[0] and shares._blocks[3] is users[4]
    assert shares.victim(1) is users[1] and shares.victim(2) is None
    shares.remove(users[1], 2)
    shares.remove(users[2], 2)
    assert shares._blocks[2] is users[3] and shares.count(2) == 1 and shares.victim(3) is None
    shares.add(users[2], 2)
    shares.add(users[1], 2)
    assert shares.count(2) == 3 and shares.victim(1) is users[3]


def test_registry_limited_blocks_counts_the_blocks_whose_answers_are_spent():
    reg = registered()
    assert reg.limited_blocks(0.0) == 0
    join(reg, "alice", A)
    for _ in range(int(RG.ERROR_BURST) + 3):              # junk from a proven client: Errors, then none
        reg.datagram_received(b"x" * 200, A, 1.0)
    assert reg.limited_blocks(1.0) == 1
    assert reg.limited_blocks(1.0 + 2 * RG.ERROR_BURST / RG.ERROR_RATE) == 0   # refilled
