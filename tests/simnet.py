"""An in-memory network for the sans-I/O cores: a relay Registry and any
number of PeerSessions, joined by a datagram queue and a fake clock.

Like h11's ConnectionPair, but for UDP: links can lose datagrams (seeded
random loss) or be cut, and time only moves when ``run`` advances it to the
next deadline, so a minute of protocol time takes milliseconds.
"""

import collections
import random

from peerpunch.effects import Log, Send
from peerpunch.registry import Registry
from peerpunch.session import PeerSession

RELAY = ("203.0.113.1", 8080)


class SimNet:
    def __init__(self, loss=0.0, seed=1, **registry_options):
        self.now = 1000.0
        self.loss = loss
        self.random = random.Random(seed)
        self.registry = Registry(**registry_options)
        self.sessions = {}                         # addr -> PeerSession
        self.events = collections.defaultdict(list)  # addr -> events shown
        self.wire = []                             # every (src, dst, data) sent
        self.blocked = set()                       # (src, dst) pairs that drop
        self.drop = None                           # or a predicate (src, dst, data) -> bool
        self._inflight = collections.deque()

    def add_peer(self, name, addr, **options):
        session = PeerSession(name, RELAY, **options)
        self.sessions[addr] = session
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
            src, dst, data = self._inflight.popleft()
            if (src, dst) in self.blocked or (self.loss and self.random.random() < self.loss):
                continue
            if self.drop is not None and self.drop(src, dst, data):
                continue
            if dst == RELAY:
                self._emit(RELAY, self.registry.datagram_received(data, src, self.now))
            elif dst in self.sessions:
                self._emit(dst, self.sessions[dst].datagram_received(data, src, self.now))

    def _emit(self, src, effects):
        for effect in effects:
            if isinstance(effect, Send):
                self.wire.append((src, effect.addr, effect.data))
                self._inflight.append((src, effect.addr, effect.data))
            elif not isinstance(effect, Log):
                self.events[src].append(effect)
