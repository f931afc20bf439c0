"""Fuzz the relay's core and the peer's core with mutated datagrams from
forged sources (issue 10): nothing raises, and state stays within bounds.

Seeded and stdlib only. The datagrams are valid messages with random
fields (tokens, cookies and secrets the cores handed out included, so the
fuzz gets past the first checks), then mutated: bits flipped, cut short,
spliced, JSON edited (fields dropped, added, given huge or odd values,
variants renamed, structure changed). Sources are random IPv4 and IPv6
endpoints, a few crowded address blocks, and the addresses of registered
users (forgeries of them); the peer hears from its relay's address, its
partner's and strangers'. Time advances and both cores are ticked. Half the
datagrams repeat a recent one from another source (with a mutation or not),
which is cheap to make and what a forger replaying what it saw does.

The relay's fuzz also feeds STUN (as the relay does, by the first byte) to
its STUN side, and checks issue 10's amplification bound on everything
either sends: a Send to an address where no proven registration lives, and
that the datagram did not prove (a Register with a valid cookie), is no
larger than the datagram that caused it -- except PeerInfos to seed-form
clients, at most SEED_INFO_BURST + SEED_INFO_RATE a second per /24 or /48,
and STUN answers longer than their request, at most the request plus the
mapped addresses and STUN_BURST + STUN_RATE a second per block.

    PEERPUNCH_FUZZ=N         datagrams for each core; default DEFAULT_COUNT
    PEERPUNCH_FUZZ_SEED=S    the seed (default: a fixed one, so a failure repeats)

A longer run: PEERPUNCH_FUZZ=1000000 python3 -m pytest -q tests/test_fuzz.py

To check a new table in the registry, add its attribute to REGISTRY_BOUNDS.
"""

import collections
import dataclasses
import inspect
import json
import os
import random
import zlib

from peerpunch import crypto
from peerpunch import forwarder as F
from peerpunch import identity as ID
from peerpunch import protocol as P
from peerpunch import registry as R
from peerpunch import session as S
from peerpunch import stunserver
from peerpunch.addrkeys import block_key
from peerpunch.effects import Send
from peerpunch.link import PING, PONG
from peerpunch.pairings import RELAY_MAX_CHATS
from peerpunch.stun import is_stun

from .test_stun import _random_request

DEFAULT_COUNT = 100_000    # datagrams for each core
COUNT = int(os.environ.get("PEERPUNCH_FUZZ", DEFAULT_COUNT))
SEED = int(os.environ.get("PEERPUNCH_FUZZ_SEED", 20261129))

MAX_USERS = 64
MAX_PER_IP = 4
CHECK_EVERY = 500          # datagrams between checks of the bounds
# A table of the registry that keeps an entry per source would grow past this:
# the fuzz forges far more distinct sources (asserted below).
ANY_TABLE = 8192
REGISTRY_BOUNDS = {        # attribute -> its bound (a missing attribute is skipped)
    "_by_addr": MAX_USERS, "_by_name": MAX_USERS, "_per_ip": MAX_USERS,
    "_noted": R.MAX_NOTED_SOURCES, "_interned": R.MAX_INTERNED,
}
RELAY = ("203.0.113.1", 8080)
BACKEND = crypto.get_backend("auto")
NAMES = ["alice", "bob", "carol", "dave", "eve", "mallory", "x" * 32, "\u00e9l\u00e8ve", "a b"]
ODD = [None, True, False, 0, -1, 2 ** 64, 10 ** 400, 1e308, -0.0, "", " ", "x" * 2000,
       "\ud800", "\u0000", "\u202e", [], {}, [[[[]]]], {"a": {"b": [1]}}, ["x"] * 100, "NaN"]


class Fuzzer:
    """Makes datagrams and source addresses; learns secrets from replies."""

    def __init__(self, rng):
        self.rng = rng
        self.secrets = ["0" * 32]          # tokens, cookies, sessions seen in replies
        self.mine = {}                      # address -> the secrets sent to it
        self.to = None                      # the address the datagram being made goes to
        self.users = collections.deque([RELAY], maxlen=64)    # recent addresses that got a RegisterAck
        self.sources = set()
        self.recent = collections.deque(maxlen=256)           # datagrams made lately

    def address(self):
        rng, roll = self.rng, self.rng.random()
        if roll < 0.4:
            addr = rng.choice(self.users)                          # forge a user's address
        elif roll < 0.6:
            addr = ("198.51.100.%d" % rng.randrange(4), rng.randrange(1, 65536))   # a crowded block
        elif roll < 0.8:
            addr = (".".join(str(rng.randrange(256)) for _ in range(4)), rng.randrange(65536))
        else:
            addr = ("2001:db8:%x::%x:%x" % (rng.randrange(4), rng.getrandbits(16), rng.getrandbits(16)),
                    rng.randrange(65536))
        self.sources.add(addr)
        return addr

    def learn(self, effects):
        for e in effects:
            if type(e) is not Send:
                continue
            try:
                msg = json.loads(e.data)
                body = next(iter(msg.values())) if isinstance(msg, dict) and msg else {}
            except (ValueError, UnicodeDecodeError):
                continue
            if "RegisterAck" in msg:
                self.users.append(e.addr)
            for key in ("token", "cookie", "session", "nonce"):
                if isinstance(body, dict) and isinstance(body.get(key), str) and len(self.secrets) < 512:
                    self.secrets.append(body[key])
                    if len(self.mine) < 1024:
                        self.mine.setdefault(e.addr, []).append(body[key])

    def value(self, field):
        rng = self.rng
        if rng.random() < 0.01:
            return rng.choice(ODD)
        if field == "username" and rng.random() < 0.6:
            return NAMES[zlib.crc32(repr(self.to).encode()) % len(NAMES)]   # this source's name
        if field in ("username", "target_username", "partner"):
            return rng.choice(NAMES) if rng.random() < 0.8 else "n%d" % rng.randrange(10 ** 6)
        if field in ("token", "session", "cookie", "nonce"):
            mine = self.mine.get(self.to)
            if mine and rng.random() < 0.8:
                return rng.choice(mine)
            return rng.choice(self.secrets) if rng.random() < 0.7 else "%032x" % rng.getrandbits(128)
        if field == "features":
            if rng.random() < 0.5:
                return list(P.OUR_FEATURES + (P.FEATURE_WATCH,))
            return rng.sample(P.KNOWN_FEATURES + ("zz", "ext"), rng.randrange(4))
        if field == "local":
            return ["192.168.1.%d:%d" % (rng.randrange(256), rng.randrange(65536))
                    for _ in range(rng.randrange(6))]
        if field == "watch":
            return [rng.choice(NAMES) for _ in range(rng.randrange(10))]
        if field == "peer":
            return P.format_endpoint(self.address())
        if field == "mapping":
            return rng.choice(P.MAPPINGS + ("sideways",))
        if field == "code":
            return rng.choice([P.ERROR_NAME_TAKEN, P.ERROR_RELAY_FULL, P.ERROR_RELAY_STOPPING, "x"])
        if field == "key":
            return "%064x" % rng.getrandbits(256)
        if field == "max_chats":
            return rng.choice((1, 2, 3, 16, 64, 0, 65))
        if field == "chats":
            return [[rng.choice(NAMES), self.value("session")] for _ in range(rng.randrange(5))]
        return "text %d" % rng.randrange(100)

    def message(self, variants):
        """A JSON document for one of *variants*, optional fields present at random."""
        cls = P.VARIANTS[self.rng.choice(variants)]
        fields = {f.name: self.value(f.name) for f in dataclasses.fields(cls)
                  if f.default is dataclasses.MISSING or self.rng.random() < 0.5}
        return {cls.__name__: fields} if fields else cls.__name__

    def datagram(self, variants, extra=(), source=None):
        """A datagram from *source* (whose secrets it may know)."""
        rng = self.rng
        self.to = source
        if self.recent and rng.random() < 0.5:
            data = rng.choice(self.recent)                    # a replay, from another source
            return self.mutate(data) if rng.random() < 0.5 else data
        if extra and rng.random() < 0.15:
            data = rng.choice(extra)
        else:
            doc = self.message(variants)
            if rng.random() < 0.2:
                doc = self.edit(doc)
            data = json.dumps(doc, ensure_ascii=rng.random() < 0.5).encode("utf-8", "surrogatepass")
        for _ in range(rng.choice((0, 0, 0, 0, 1, 1, 2, 5))):
            data = self.mutate(data)
        self.recent.append(data)
        return data

    def edit(self, doc):
        rng = self.rng
        roll = rng.random()
        if not isinstance(doc, dict) or roll < 0.1:
            return rng.choice([[doc], {"Register": doc}, 7, None, {}, {"A": {}, "B": {}}])
        (name, body), = doc.items()
        if roll < 0.3:
            return {rng.choice(list(P.VARIANTS) + ["register", "", "Register\u0000"]): body}
        if not isinstance(body, dict) or not body:
            return {name: rng.choice(ODD)}
        key = rng.choice(list(body))
        if roll < 0.5:
            del body[key]
        elif roll < 0.7:
            body[key] = rng.choice(ODD)
        else:
            body["extra%d" % rng.randrange(3)] = rng.choice(ODD)
        return doc

    def mutate(self, data):
        rng = self.rng
        roll = rng.random()
        if not data or roll < 0.1:
            return bytes(rng.getrandbits(8) for _ in range(rng.randrange(64)))
        i = rng.randrange(len(data))
        if roll < 0.4:
            return data[:i] + bytes([data[i] ^ (1 << rng.randrange(8))]) + data[i + 1:]
        if roll < 0.55:
            return data[:i]
        if roll < 0.7:
            return data[:i] + data[i:i + rng.randrange(1, 40)] * rng.randrange(2, 4) + data[i:]
        if roll < 0.8:
            return bytes([rng.choice((F.RELAYED, 0, 1, 0xE1, 0xE4, 0x7B))]) + data
        if roll < 0.9:
            return data.replace(b'"', b'"' * rng.randrange(2), 1)
        return data + data[:rng.randrange(len(data) + 1)]


def make_registry(rng):
    limits = F.Limits(max_sessions=8, rate=10_000, burst=20_000, session_bytes=100_000,
                      idle_timeout=5.0, max_per_source=2)
    wanted = dict(max_users=MAX_USERS, max_users_per_ip=MAX_PER_IP, max_watches=128,
                  expire_after=30.0, forwarder=F.Forwarder(limits),
                  random_bytes=lambda n: bytes(rng.getrandbits(8) for _ in range(n)))
    accepted = inspect.signature(R.Registry).parameters
    return R.Registry(**{k: v for k, v in wanted.items() if k in accepted})


def check_registry(reg):
    assert len(reg) <= MAX_USERS
    assert 0 <= reg.sessions() <= len(reg) // 2
    parts = [v for v in vars(reg).values() if type(v).__module__.startswith("peerpunch.")
             and hasattr(v, "__dict__")]          # the registry's parts hold its tables
    assert len(parts) >= 5
    for owner in [reg] + parts:
        for attr, value in vars(owner).items():
            if hasattr(value, "__len__") and not isinstance(value, (str, bytes)):
                bound = REGISTRY_BOUNDS.get(attr, ANY_TABLE)
                assert len(value) <= bound, "%s.%s has %d entries" % (type(owner).__name__, attr, len(value))
    assert len(reg.forwarder.allocations) <= reg.forwarder.limits.max_sessions
    for user in reg._users.users():            # sessions: both sides know them, a bounded number
        assert len(user.chats) <= RELAY_MAX_CHATS and len(user.claimed(float("-inf"))) <= RELAY_MAX_CHATS
        assert all(user in (p.a, p.b) and p in p.other(user).chats for p in user.chats)


class Amplification:
    """Issue 10's bound on what the relay sends an address that has not
    proved it receives there (see the module's docstring)."""

    def __init__(self, reg, start):
        self.reg, self.start = reg, start
        self.seed_infos = collections.Counter()     # block -> PeerInfos to seed clients there
        self.stun_longer = collections.Counter()    # block -> STUN answers longer than the request
        self.checked = self.exempt = 0

    def proved(self, data, source, now):
        """Did *data* from *source* prove it receives there (a Register with a valid cookie)?"""
        if not data.startswith(b'{"Register"'):
            return False
        try:
            msg = P.decode(data)
        except P.RemoteProtocolError:
            return False
        return msg.cookie is not None and self.reg._cookies.valid(msg.cookie, source, msg.username, now)

    def check(self, effects, data, source, now):
        elapsed = now - self.start
        for e in effects:
            if type(e) is not Send:
                continue
            self.checked += 1
            user = self.reg._users.find(e.addr)
            if (user is not None and user.ext and user.verified) or len(e.data) <= len(data):
                continue
            self.exempt += 1
            block = block_key(e.addr)
            if is_stun(data):
                assert e.addr == source and len(e.data) <= len(data) + stunserver.mapped_allowance(source)
                self.stun_longer[block] += 1
                assert self.stun_longer[block] <= stunserver.STUN_BURST + stunserver.STUN_RATE * elapsed + 1
            elif e.addr == source and self.proved(data, source, now):
                continue
            else:
                assert e.data.startswith(b'{"PeerInfo"') and user is not None and not user.ext, \
                    (data, e, source)
                self.seed_infos[block] += 1
                assert self.seed_infos[block] <= R.SEED_INFO_BURST + R.SEED_INFO_RATE * elapsed + 1


def test_fuzz_relay_core_survives_and_stays_bounded():
    rng = random.Random(SEED)
    fuzz, reg, now = Fuzzer(rng), make_registry(rng), 1000.0
    stun = stunserver.BindingServer([RELAY, (RELAY[0], RELAY[1] + 1)])
    bound = Amplification(reg, now)
    requests = ["Register"] * 4 + ["Connect"] * 2 + ["SessionFinished", "Unregister"] + list(P.VARIANTS)
    for i in range(COUNT):
        now += rng.expovariate(2000.0)
        if rng.random() < 0.001:
            now += rng.choice((1.0, 10.0, 40.0, 100.0))       # time passes: expiry, idle sessions
        source = fuzz.address()
        data = fuzz.datagram(requests, RELAYED, source) if rng.random() < 0.95 else _random_request(rng)
        if is_stun(data):                                      # as the relay's shell dispatches
            effects = stun.datagram_received(data, source, rng.randrange(2), now)
        else:
            effects = reg.datagram_received(data, source, now)
        bound.check(effects, data, source, now)
        fuzz.learn(effects)
        deadline = reg.next_deadline()
        if deadline is not None and deadline <= now:
            reg.tick(now)
        if i % CHECK_EVERY == 0:
            check_registry(reg)
    check_registry(reg)
    assert len(fuzz.sources) > ANY_TABLE or COUNT < 2 * ANY_TABLE   # the bound above means something
    # it went deep (users, pairings) and wide (junk of every sort)
    assert reg.stats["registrations"] > COUNT // 250 and reg.stats["introductions"] > COUNT // 2500
    assert reg.stats["malformed"] > COUNT // 5 and reg.stats["unexpected"] > COUNT // 25
    assert stun.stats["stun_answered"] > COUNT // 100 and bound.exempt > 0 and bound.checked > COUNT // 50


RELAYED = [bytes([F.RELAYED]) + PING, bytes([F.RELAYED, 0xE4]) + bytes(200), bytes([F.RELAYED]) * 1500]
PEER_REPLIES = ["RegisterAck", "PeerInfo", "TargetNotFound", "TargetBusy", "Error", "Online", "Cookie",
                "DirectMessage", "Ping", "Pong", "Goodbye"]
LINK = [PING, PONG, bytes([0xE4]) + bytes(40), bytes([0xE1]) + bytes(100), bytes([F.RELAYED]) + PING,
        b"\x00\x01\x00\x00\x21\x12\xa4\x42" + bytes(12)]


def new_session(rng):
    """A new peer, waiting or asking for bob; half of them can encrypt."""
    secure = {}
    if rng.random() < 0.5:
        private = bytes(rng.getrandbits(8) for _ in range(32))
        secure = dict(backend=BACKEND, identity=ID.Identity(private, BACKEND.x25519_public(private)))
    session = S.PeerSession("alice", RELAY, target=rng.choice([None, "bob"]), rng=rng, **secure)
    return session, session.start(rng.random())


def check_session(session):
    """Bounded whatever it was sent: chats (a relay may grant several), and
    per chat its queue, held lines and timers."""
    assert isinstance(session.state, S.State)
    assert len(session.chats) <= 16      # what we ask for (a later, smaller grant ends none)
    for chat in session.chats.values():
        held = chat.secure._held if chat.secure else []
        assert len(chat.outbox.lines) <= S.MAX_QUEUED and len(held) <= S.MAX_HELD
    assert len(session.table.lines) <= S.MAX_QUEUED
    timers = len(session.relay.timers()) + sum(len(c.timers()) for c in session.chats.values())
    per = 1 + len(session.chats) + len(session.relay.requests)    # each its own timers
    assert len(session.table.timers()) == timers <= 16 * per
    assert len(session.stats) <= 200


def test_fuzz_peer_core_survives_and_stays_bounded():
    rng = random.Random(SEED + 1)
    fuzz = Fuzzer(rng)
    session, _ = new_session(rng)
    now, states = 1.0, set()
    for i in range(COUNT):
        now += rng.expovariate(500.0)
        roll = rng.random()
        chat = session.table.current_chat()
        peer = chat.peer.addr if chat is not None and chat.peer is not None else None
        source = RELAY if roll < 0.5 else peer if roll < 0.7 and peer else fuzz.address()
        session.datagram_received(fuzz.datagram(PEER_REPLIES, LINK), source, now)
        if rng.random() < 0.01:
            session.send_text("hello %d" % i, now)
        deadline = session.next_deadline()
        if deadline is not None and deadline <= now:
            session.tick(now)
        states.add(session.state)
        if i % CHECK_EVERY == 0:
            check_session(session)
        if rng.random() < 0.0005 or session.state is S.State.CLOSED:
            session, _ = new_session(rng)
    check_session(session)
    assert {S.State.REGISTERING, S.State.IDLE, S.State.PUNCHING} <= states or COUNT < 10_000
