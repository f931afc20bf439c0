"""Group machines (:class:`peerpunch.groups.Groups`) joined in a full mesh
by real :class:`peerpunch.stream.Stream` pairs over simulated lossy links
(:mod:`tests.streamsim`), with one fake clock.

Each pair of members has its own Channel; what a machine posts to a
partner goes on that pair's stream, and what the stream hands out goes to
the partner's machine. Time moves to the next arrival, stream deadline or
group deadline anywhere in the mesh, so streams deliver in each pair's
order while pairs overtake each other -- the reordering a group sees.
"""

import collections
import itertools

from peerpunch import groups as G
from peerpunch.stream import NotDelivered, Received

from .streamsim import Channel


class Mesh:
    def __init__(self, names, seed=1, loss=0.0, jitter=0.0, auto_join=True, **options):
        self.names = list(names)
        self.now = 0.0
        counter = itertools.count()
        self.machines = {n: G.Groups(n, stats=collections.Counter(), auto_join=auto_join,
                                     random_bytes=lambda k: bytes([next(counter) % 256]) * k)
                         for n in names}
        self.channels = {}                 # frozenset pair -> Channel
        for i, (a, b) in enumerate(itertools.combinations(names, 2)):
            self.channels[frozenset((a, b))] = Channel(loss=loss, jitter=jitter, seed=seed + i,
                                                       **options)
        self.ends = {}                     # (me, partner) -> (channel, my stream, their name)
        for (a, b) in itertools.combinations(names, 2):
            ch = self.channels[frozenset((a, b))]
            self.ends[a, b], self.ends[b, a] = (ch, ch.a), (ch, ch.b)
        self.seen = {id(ch): {"a": 0, "b": 0} for ch in self.channels.values()}
        self.shown = {n: [] for n in names}     # what each machine said (not Posts)
        self.up = {n: {o: None for o in names if o != n} for n in names}
        self.cut_off = set()

    def link_all(self):
        for name in self.names:
            self.apply(name, self.machines[name].links(self.up[name], self.now))

    def do(self, name, method, *args):
        """Call machine *name*'s *method* with *args* and now; apply it."""
        return self.apply(name, getattr(self.machines[name], method)(*args, self.now))

    def apply(self, name, effects):
        for effect in effects:
            if type(effect) is G.Post:
                channel, stream = self.ends[name, effect.partner]
                channel.now = max(channel.now, self.now)
                channel.send(stream, effect.data)
                self._collect()
            elif type(effect) is not G.Dial:
                self.shown[name].append(effect)
        return effects

    def _collect(self):
        for (me, partner), (channel, stream) in sorted(self.ends.items()):
            side = channel.name(stream)
            events = channel.events[side]
            start = self.seen[id(channel)][side]
            self.seen[id(channel)][side] = len(events)
            for _, event in events[start:]:
                if type(event) is Received:
                    self.apply(me, self.machines[me].received(partner, event.data, self.now))
                elif type(event) is NotDelivered:
                    self.apply(me, self.machines[me].not_delivered(partner, self.now))

    def step(self):
        times = [(ch.next_time(), i, ch) for i, ch in enumerate(self.channels.values())
                 if ch.next_time() is not None]
        groups = [(m.next_deadline(), n) for n, m in self.machines.items()
                  if m.next_deadline() is not None]
        soonest = min([t[0] for t in times] + [g[0] for g in groups], default=None)
        if soonest is None:
            return False
        self.now = max(self.now, soonest)
        for when, _, channel in times:
            if when <= self.now:
                channel.now = max(channel.now, self.now)
                channel.step()
        self._collect()
        for when, name in groups:
            if when <= self.now:
                self.apply(name, self.machines[name].tick(self.now))
        return True

    def run_until(self, condition, limit=600.0):
        while not condition():
            assert self.now <= limit, "condition not met by t=%.1f s" % self.now
            assert self.step(), "the mesh went idle at t=%.3f s" % self.now

    def run_for(self, seconds):
        end = self.now + seconds
        while self.now < end and self.step():
            pass
        self.now = max(self.now, end)

    def lines(self, name, group=None):
        return [(e.sender, e.text) for e in self.shown[name]
                if type(e) is G.GroupMessage and (group is None or e.group == group)]

    def notices(self, name, what):
        return [e for e in self.shown[name] if getattr(e, "what", None) == what]
