"""The relay's memory per registered user (issue 10: at most 500 bytes in
the typical case, a stated bound in the worst). tracemalloc counts bytes
allocated, so the figures are deterministic enough to bound with a margin
(docs/performance.md has the measured ones)."""

import gc
import tracemalloc

from peerpunch import protocol as P
from peerpunch.registry import Registry

from .cookies import join

USERS = 5000
LARGEST_USERS = 1500       # each costs ~5 ms under tracemalloc; the figure is the same at 1,000 and 2,000
KEY = "A" * 43 + "="
TYPICAL_BOUND = 600        # measured 452 B a user at 5,000 users (494 at 50,000: docs/performance.md)
SEED_BOUND = 500           # measured 348 (390 at 50,000)
WORST_BOUND = 3000         # the bound docs/operating.md states; measured 2,504 at 50,000


def _per_user(register_one, users=USERS):
    reg = Registry(max_users=users + 1, max_seed_users=users + 1, max_users_per_ip=users,
                   expire_after=1e9)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(users):
            register_one(reg, i, i / 1000.0)     # its own float, as a real clock gives
        gc.collect()
        used = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(reg) == users
    return used / users


def _v4(i):
    """256 users a /24, one a host, ports as NATs give them."""
    return ("11.%d.%d.%d" % (i // 65536 % 256, i // 256 % 256, i % 256), 1024 + i % 60000)


def test_memory_per_typical_extension_user_stays_under_the_bound():
    def one(reg, i, now):
        join(reg, "user%d" % i, _v4(i), now, features=("ext", "relay1", "noise1"),
             nonce="%032x" % i, key=KEY, local=("192.168.1.%d:40000" % (i % 250 + 1),))
    per_user = _per_user(one)
    assert 100 < per_user < TYPICAL_BOUND, per_user


def test_memory_per_seed_form_user_stays_under_the_bound():
    def one(reg, i, now):
        reg.datagram_received(P.encode(P.Register("user%d" % i)), _v4(i), now)
    per_user = _per_user(one)
    assert 100 < per_user < SEED_BOUND, per_user


def test_memory_per_user_with_the_largest_register_stays_under_the_stated_bound():
    """Every field as large as a Register can carry it: a name of 32
    characters, 16 features of up to 32 that nobody shares (the table of
    shared feature lists is full), LAN candidates, key, nonce, mapping, a
    claimed chat, and every user in its own IPv6 /48 with its own /64."""
    def one(reg, i, now):
        features = ("ext",) + tuple(("f%02d-%d" % (j, i)).ljust(32, "z") for j in range(15))
        local = tuple("[fd00:1234:5678:9abc:def0:1234:%x:%x]:65535" % (i, j) for j in range(2))
        join(reg, ("w%d-" % i).ljust(32, "x"), ("2001:%x:%x:1:2:3:4:5" % (i // 65536, i % 65536),
                                                 1024 + i), now,
             features=features, nonce="%032x" % i, key=KEY, local=local, mapping="independent",
             partner=("p%d-" % i).ljust(32, "p"), session="%032x" % i)
    per_user = _per_user(one, LARGEST_USERS)
    assert 1000 < per_user < WORST_BOUND, per_user
