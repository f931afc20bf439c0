"""Fair shares and reply budgets for the relay, without sockets or clocks.

Theory of operation
-------------------
Forged source addresses are cheap, but a forger who wants answers (or a
client that proved its address) is bound to the addresses it really has,
and those cluster: one host has one IPv4 address or one IPv6 /64, one
network one IPv4 /24 or one IPv6 /48 (:func:`peerpunch.addrkeys.block_key`).

:class:`Shares` counts registrations per block, keeps each block's
registrations oldest first (a list threaded through the users' ``older`` and
``newer`` slots: two pointers a user, nothing else per user) and knows a
heaviest block at any moment (blocks are bucketed by count). A relay that is
full asks :meth:`Shares.victim` for the oldest registration of the heaviest
block, and admits a newcomer in its place only if the newcomer's block is
lighter by two or more, so that the blocks' counts even out and never swap
back and forth.

:class:`Budget` is a table of token buckets, one per key (a block), of at
most ``max_keys`` entries. An entry whose bucket has filled up again is the
same as no entry, so only such an entry is dropped to make room; when every
entry still counts, a new key gets nothing. Cycling through more sources
than the table holds therefore buys no extra answers.

:class:`Credit` is the opposite kind of table, of bytes a key has earned
and may spend; there, dropping an entry only takes credit away.
"""

import collections


class _Block:
    """A block with two or more registrations (a block with one is just
    that User in Shares._blocks: no bookkeeping object)."""

    __slots__ = ("count", "oldest", "newest")

    def __init__(self, user):
        self.count = 1
        self.oldest = self.newest = user


class Shares:
    """Registrations per block, oldest first, and the heaviest block.

    Users must have ``older`` and ``newer`` attributes (None when added)."""

    def __init__(self):
        self._blocks = {}            # block -> its one User, or a _Block
        self._by_count = {}          # count (2 or more) -> set of blocks with that many
        self._top = 0                # the heaviest count, if 2 or more

    def __len__(self):
        return len(self._blocks)

    def count(self, block):
        entry = self._blocks.get(block)
        if entry is None:
            return 0
        return entry.count if type(entry) is _Block else 1

    def add(self, user, block):
        entry = self._blocks.get(block)
        user.older = user.newer = None
        if entry is None:
            self._blocks[block] = user
            return
        if type(entry) is not _Block:
            entry = self._blocks[block] = _Block(entry)
        user.older = entry.newest
        entry.newest.newer = user
        entry.newest = user
        self._recount(block, entry.count, entry.count + 1)
        entry.count += 1

    def remove(self, user, block):
        entry = self._blocks[block]
        if entry is user:
            del self._blocks[block]
            return
        if user.older is not None:
            user.older.newer = user.newer
        else:
            entry.oldest = user.newer
        if user.newer is not None:
            user.newer.older = user.older
        else:
            entry.newest = user.older
        user.older = user.newer = None
        self._recount(block, entry.count, entry.count - 1)
        entry.count -= 1
        if entry.count == 1:
            self._blocks[block] = entry.oldest      # one left: no bookkeeping object

    def victim(self, block, uncounted=0):
        """The registration to evict for a newcomer from *block* (which has
        *uncounted* more registrations than this table knows of): the oldest
        of the heaviest block, if *block* is lighter by two or more; else None."""
        if self._top < self.count(block) + uncounted + 2:
            return None
        heaviest = next(iter(self._by_count[self._top]))
        return self._blocks[heaviest].oldest

    def _recount(self, block, old, new):
        """Blocks of one registration are never the heaviest that matters
        (a victim's block is heavier by two), so only counts of 2 or more
        are kept."""
        if old >= 2:
            same = self._by_count[old]
            same.discard(block)
            if not same:
                del self._by_count[old]
        if new >= 2:
            self._by_count.setdefault(new, set()).add(block)
        self._top = max(self._top, new if new >= 2 else 0)
        while self._top and self._top not in self._by_count:
            self._top -= 1


class Budget:
    """Token buckets (*rate* per second, *burst* at most) per key, in a
    table of at most *max_keys* entries that cannot be cycled past."""

    def __init__(self, rate, burst, max_keys):
        self.rate, self.burst, self.max_keys = rate, burst, max_keys
        self._buckets = collections.OrderedDict()    # key -> [tokens, updated], least recent first

    def __len__(self):
        return len(self._buckets)

    def exhausted(self, now, cost=1.0):
        """How many keys cannot spend *cost* now (for the operator's stats:
        a walk over at most *max_keys* entries)."""
        return sum(1 for bucket in self._buckets.values() if self._level(bucket, now) < cost)

    def ready(self, key, now, cost=1.0):
        """Would :meth:`take` of *cost* succeed now?"""
        bucket = self._buckets.get(key)
        if bucket is None:
            return cost <= self.burst and (len(self._buckets) < self.max_keys or self._stale(now))
        return self._level(bucket, now) >= cost

    def take(self, key, now, cost=1.0):
        """Spend *cost* from *key*'s bucket; return whether it had enough."""
        if not self.ready(key, now, cost):
            return False
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.max_keys:
                self._buckets.popitem(last=False)    # full again (ready() checked): as if absent
            bucket = self._buckets[key] = [self.burst, now]
        bucket[0] = self._level(bucket, now) - cost
        bucket[1] = now
        self._buckets.move_to_end(key)
        return True

    def _level(self, bucket, now):
        return min(self.burst, bucket[0] + (now - bucket[1]) * self.rate)

    def _stale(self, now):
        """True if the least recently used entry has filled up again."""
        bucket = next(iter(self._buckets.values()))
        return self._level(bucket, now) >= self.burst


class Credit:
    """Bytes each key (a block) may still spend, earned by what came from
    it: at most *cap* saved per key, in a table of at most *max_keys* keys.
    A key pushed out of a full table (the least recently used) loses its
    credit, so cycling through more keys only ever takes credit away."""

    def __init__(self, cap, max_keys):
        self.cap, self.max_keys = cap, max_keys
        self._credit = collections.OrderedDict()      # key -> bytes, least recently used first

    def __len__(self):
        return len(self._credit)

    def __getitem__(self, key):
        return self._credit.get(key, 0.0)

    def earn(self, key, amount):
        credit = self._credit.pop(key, 0.0)
        if len(self._credit) >= self.max_keys:
            self._credit.popitem(last=False)
        self._credit[key] = min(self.cap, credit + amount)

    def spend(self, key, cost):
        """Take *cost* from *key*'s credit; False (nothing taken) if it has less."""
        credit = self._credit.get(key, 0.0)
        if cost > credit:
            return False
        self._credit[key] = credit - cost
        self._credit.move_to_end(key)
        return True
