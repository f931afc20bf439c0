"""An in-memory network for the sans-I/O cores: a relay Registry (with the
relay's STUN answers, and optionally its alternate port) and any number of
PeerSessions, joined by a datagram queue and a fake clock; optionally NATs
(:class:`SimNat`) in front of peers.

Like h11's ConnectionPair, but for UDP: links can lose datagrams (seeded
random loss) or be cut, and time only moves when ``run`` advances it to the
next deadline, so a minute of protocol time takes milliseconds.
"""

import collections
import random

from peerpunch.effects import CloseSocket, Log, OpenSocket, Send
from peerpunch.registry import Registry
from peerpunch.session import PeerSession
from peerpunch.stun import is_stun
from peerpunch.stunserver import BindingServer

RELAY = ("203.0.113.1", 8080)
RELAY_ALT = ("203.0.113.1", 3479)


class SimNat:
    """A NAT for the hosts behind it (RFC 4787 terms): *mapping*
    "independent" (one public port per inside socket) or "dependent" (one per
    inside socket and destination, "symmetric"); *filtering* "none",
    "address" or "port" (admit only what the mapping sent to). Public ports
    are random in 1024-65535 (or, *sequential*, one after another);
    unsolicited datagrams are dropped."""

    def __init__(self, public_ip, mapping="independent", filtering="port", seed=7,
                 sequential=False):
        self.public_ip = public_ip
        self.mapping = mapping
        self.filtering = filtering
        self.sequential = sequential      # ports one after another, else at random
        self._random = random.Random(seed)
        self._next = self._random.randint(1024, 60000)
        self._out = {}          # mapping key -> public port
        self._in = {}           # public port -> [inside addr, set of remotes sent to]

    def outbound(self, src, dst):
        key = src if self.mapping == "independent" else (src, dst)
        port = self._out.get(key)
        if port is None:
            port = self._pick()
            while port in self._in:
                port = self._pick()
            self._out[key] = port
            self._in[port] = [src, set()]
        self._in[port][1].add(dst)
        return (self.public_ip, port)

    def _pick(self):
        if not self.sequential:
            return self._random.randint(1024, 65535)
        self._next = 1024 + (self._next - 1024 + 1) % 64512
        return self._next

    def inbound(self, src, port):
        entry = self._in.get(port)
        if entry is None:
            return None
        inside, remotes = entry
        if self.filtering == "port" and src not in remotes:
            return None
        if self.filtering == "address" and src[0] not in {r[0] for r in remotes}:
            return None
        return inside


class SimNet:
    def __init__(self, loss=0.0, seed=1, alt_port=False, batched=False, **registry_options):
        self.now = 1000.0
        self.batched = batched                     # peers get runs: datagrams_received
        self.batches = []                          # (session addr, count) of each run given
        self.stun = BindingServer([RELAY] + ([RELAY_ALT] if alt_port else []))
        self.nats = {}                             # inside IP -> SimNat
        self.public = {}                           # public IP -> SimNat
        self.sockets = {}                          # (session addr, via) -> local addr
        self.owners = {RELAY_ALT: None}            # local addr -> (session addr, via)
        self.loss = loss
        self.random = random.Random(seed)
        self.registry = Registry(**registry_options)
        self.sessions = {}                         # addr -> PeerSession
        self.events = collections.defaultdict(list)  # addr -> events shown
        self.wire = []                             # every (src, dst, data) sent
        self.blocked = set()                       # (src, dst) pairs that drop
        self.drop = None                           # or a predicate (src, dst, data) -> bool
        self._inflight = collections.deque()

    def add_nat(self, nat, *inside_ips):
        """Put *nat* in front of the hosts at *inside_ips*."""
        self.public[nat.public_ip] = nat
        for ip in inside_ips:
            self.nats[ip] = nat

    def add_peer(self, name, addr, **options):
        session = PeerSession(name, RELAY, **options)
        self.sessions[addr] = session
        self.owners[addr] = (addr, 0)
        self._emit(addr, session.start(self.now))
        return session

    def line(self, addr, text):
        self._emit(addr, self.sessions[addr].handle_line(text, self.now))

    def inject(self, src, dst, data):
        self._inflight.append((src, dst, data))

    def block(self, a, b):
        self.blocked |= {(a, b), (b, a)}

    def shown(self, addr, kind=None):
        return [e for e in self.events[addr] if kind is None or isinstance(e, kind)]

    def sent(self, src=None, dst=None):
        return [d for s, t, d in self.wire if (src is None or s == src) and (dst is None or t == dst)]

    def run(self, seconds):
        """Deliver datagrams and fire timers for *seconds* of fake time."""
        end = self.now + seconds
        while True:
            self._drain()
            deadline = self._next_deadline()
            if deadline is None or deadline > end:
                self.now = end
                return
            self.now = max(self.now, deadline)
            self._emit(RELAY, self.registry.tick(self.now))
            for addr, session in list(self.sessions.items()):
                self._emit(addr, session.tick(self.now))

    def _next_deadline(self):
        deadlines = [s.next_deadline() for s in self.sessions.values()]
        deadlines.append(self.registry.next_deadline())
        deadlines = [d for d in deadlines if d is not None]
        return min(deadlines) if deadlines else None

    def _drain(self):
        while self._inflight:
            if self.batched:
                self._drain_batched()
                continue
            src, dst, data = self._inflight.popleft()
            carried = self._carry(src, dst, data)
            if carried is None:
                continue
            src, dst = carried
            if dst in (RELAY, RELAY_ALT) and is_stun(data):
                for reply in self.stun.datagram_received(data, src, int(dst == RELAY_ALT)):
                    self._inflight.append((self.stun.addresses[reply.via], reply.addr, reply.data))
            elif dst == RELAY:
                self._emit(RELAY, self.registry.datagram_received(data, src, self.now))
            elif self.owners.get(dst) is not None:
                owner, via = self.owners[dst]
                self._emit(owner, self.sessions[owner].datagram_received(data, src, self.now, via))

    def _carry(self, src, dst, data):
        """(source, destination) of a datagram once through loss, drops and
        the NATs on its way, or None if it does not arrive."""
        if (src, dst) in self.blocked or (self.loss and self.random.random() < self.loss):
            return None
        if self.drop is not None and self.drop(src, dst, data):
            return None
        nat = self.nats.get(src[0])
        if nat is not None and self.nats.get(dst[0]) is not nat:
            src = nat.outbound(src, dst)
        nat = self.public.get(dst[0])
        if nat is not None:
            dst = nat.inbound(src, dst[1])
            if dst is None:
                return None
        return src, dst

    def _drain_batched(self):
        """What is in flight now, each peer socket's datagrams handed over
        together as a shell's batch read does (the rest one by one)."""
        batch, self._inflight = list(self._inflight), collections.deque()
        runs = collections.OrderedDict()            # (owner, via) -> [(data, src)]
        for src, dst, data in batch:
            if dst in (RELAY, RELAY_ALT):
                self._inflight.append((src, dst, data))
                continue
            carried = self._carry(src, dst, data)
            if carried is None:
                continue
            src, dst = carried
            if self.owners.get(dst) is not None:
                runs.setdefault(self.owners[dst], []).append((data, src))
        self.batched = False
        try:
            self._drain()                           # the relay's share, one by one
        finally:
            self.batched = True
        for (owner, via), items in runs.items():
            self.batches.append((owner, len(items)))
            self._emit(owner, self.sessions[owner].datagrams_received(items, self.now, via))

    def _emit(self, src, effects):
        for effect in effects:
            if isinstance(effect, Send):
                local = self.sockets.get((src, effect.via), src) if effect.via else src
                if effect.via and local is src:
                    continue                       # that socket is not open
                self.wire.append((local, effect.addr, effect.data))
                self._inflight.append((local, effect.addr, effect.data))
            elif isinstance(effect, OpenSocket):
                if (src, effect.via) in self.sockets:
                    continue                       # already open: as the real shell does
                local = (src[0], 20000 + len(self.owners))
                self.sockets[(src, effect.via)] = local
                self.owners[local] = (src, effect.via)
            elif isinstance(effect, CloseSocket):
                local = self.sockets.pop((src, effect.via), None)
                if local is not None:
                    self.owners[local] = None
            elif not isinstance(effect, Log):
                self.events[src].append(effect)
