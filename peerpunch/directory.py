"""Who is registered, where, and since when: the relay's tables of users.

Theory of operation
-------------------
Users are found by name and by address in O(1), with as few entries as
the usual case allows. An IPv4 user alone in its /24 (most users of a
public relay) is only in ``_lone``, under its block: that one entry also
counts its IP and its block. Once a block has two users they move to the
tables by address: a user alone at its IP under its IP; once an IP has
two, they are under their :func:`~peerpunch.addrkeys.addr_key` and
``_crowded`` counts them (down to 1, until the last leaves). Other
addresses (IPv6) are under their tuple, counted in ``_per_ip`` by
:func:`~peerpunch.addrkeys.ip_key` (an IPv4-mapped IPv6 address there
counts with its IPv4 one).

Two pools: proven (extension) registrations and seed-form ones, each of
bounded size and counted per /24 or /48 block (:class:`~peerpunch.shares.Shares`).
:meth:`Directory.admission` says whether a newcomer fits: at most
``max_users_per_ip`` at one IP (IPv6: one /64); in a full pool only in
place of the heaviest block's oldest registration, if the newcomer's block
is lighter by two or more (the caller evicts it), so that a flood from a
few hundred addresses cannot lock out the rest of the internet.

Expiry order is a list per pool threaded through the users
(``sooner``/``later``), sorted by last contact: :meth:`Directory.touch`
moves a user to the back, so expiry only ever looks at the two heads
(:attr:`Directory.oldest`).

A full seed-form pool whose blocks are even (a forger can spread seed-form
Registers over 10,000 /24s, one each, and keep them alive with ~111 a
second) takes a newcomer in place of its least recently refreshed
registration: seed-form clients cannot prove anything, so the pool is
never locked, and a forger who wants to push everyone out must send
``max_seed_users`` Registers within the time it wants a registration to
last (10,000 a second to make them last one second). The proven pool does
not do this: its registrations are refreshed only with their tokens, from
addresses the forger really has, so the heaviest block is the forger's.
"""

import collections
import logging

from .effects import Log
from .addrkeys import addr_key, block_key, ip_key
from .relayuser import User, name_text
from .shares import Shares


class Directory:
    """The registered users, by name, by address, by block and by age."""

    def __init__(self, stats, max_users, max_seed_users, max_users_per_ip):
        self.stats = stats
        self.max_users = max_users
        self.max_seed_users = max_seed_users
        self.max_users_per_ip = max_users_per_ip
        self._by_name = {}
        self.user = self._by_name.get      # user(name): the User registered as *name*, or None
        self._lone = {}         # IPv4 /24 with one user (in either pool), in no other table -> User
        self._by_addr = {}      # an IPv4 address's IP, or its addr_key -> User
        self._crowded = {}      # IPv4 IP with users under their addr_key -> how many
        self._per_ip = collections.Counter()           # users per IP not counted above (IPv6: /64)
        self._pools = {True: Shares(), False: Shares()}   # proven (ext) / seed-form, per block
        self._pool_size = collections.Counter()       # True/False -> registrations
        self._ends = {True: [None, None], False: [None, None]}   # pool -> [oldest, newest] by last
        #                                                           contact (User.sooner/later)

    def __len__(self):
        return len(self._by_addr) + len(self._lone)

    def users(self):
        yield from self._lone.values()
        yield from self._by_addr.values()

    def pool_size(self, proven):
        return self._pool_size[proven]

    @property
    def oldest(self):
        """The registration, of either pool, silent for the longest, or None."""
        proven, seed = self._ends[True][0], self._ends[False][0]
        if proven is None or (seed is not None and seed.last_seen < proven.last_seen):
            return seed
        return proven

    def find(self, addr):
        """The User registered at *addr*, or None."""
        key = addr_key(addr)
        if type(key) is int:
            lone = self._lone.get(key >> 24 & 0xFFFFFF)
            if lone is not None:
                return lone if lone._addr == key else None
            single = self._by_addr.get(key >> 16 & 0xFFFFFFFF)
            if single is not None:
                return single if single._addr == key else None
        return self._by_addr.get(key)

    # -- coming and going

    def admission(self, addr, proven):
        """May a newcomer at *addr* join its pool? (None, None): yes;
        (victim, None): in place of *victim* (evict it first); (None, why): no."""
        if self._users_at_ip(addr) >= self.max_users_per_ip:
            self.stats["full_for_ip"] += 1
            return None, "too many users at that IP"
        if self._pool_size[proven] < (self.max_users if proven else self.max_seed_users):
            return None, None
        block = block_key(addr)
        lone = self._lone.get(block) if type(block) is int else None
        victim = self._pools[proven].victim(block, 1 if lone is not None and lone.ext == proven else 0)
        if victim is None and not proven:
            victim = self._ends[False][0]           # the least recently refreshed seed-form one
            self.stats["seed_evicted_least_recent"] += 1
        if victim is None:
            self.stats["full" if proven else "seed_full"] += 1
            return None, "relay full"
        return victim, None

    def add(self, name, addr, now, proven):
        """A new registration of *name* at *addr* (admitted): its User."""
        user = User(name, addr, now)
        user.ext = user.verified = proven
        self._pool_size[proven] += 1
        self._by_name[name] = user
        self._place(user)
        self._append(user)
        return user

    def remove(self, user):
        """Take *user* out of every table."""
        self._forget(user)
        del self._by_name[user.name]

    def move(self, user, addr, now):
        """A proven *user* now receives at *addr*: return the Log saying so."""
        old = user.endpoint
        self._forget(user)
        user._addr = addr_key(addr)
        self._pool_size[True] += 1
        self._place(user)
        self._append(user)
        self.touch(user, now)
        self.stats["moved"] += 1
        return Log(logging.INFO, "%s moved from %s to %s" % (name_text(user.name), old, user.endpoint),
                   kind="moved")

    def touch(self, user, now):
        """*user* proved itself just now: the newest in the expiry order."""
        user.last_seen = now
        if user is not self._ends[user.ext][1]:
            self._unlink(user)
            self._append(user)

    # -- the tables by address

    def _forget(self, user):
        """Take *user* out of the tables kept by address (to move or remove it)."""
        self._pool_size[user.ext] -= 1
        self._unplace(user)
        self._unlink(user)

    def _users_at_ip(self, addr):
        ip = ip_key(addr)
        count = self._per_ip[ip]
        if type(ip) is int:
            lone = self._lone.get(ip >> 8)
            if lone is not None:
                return count + (lone._addr >> 16 & 0xFFFFFFFF == ip)
            count += self._crowded.get(ip) or (1 if ip in self._by_addr else 0)
        return count

    def _place(self, user):
        """Put *user* in the tables by address and in its pool's shares."""
        key = user._addr
        if type(key) is not int:
            self._pools[user.ext].add(user, block_key(key))
            self._per_ip[ip_key(key)] += 1
            self._by_addr[key] = user
            return
        ip = key >> 16 & 0xFFFFFFFF
        block = ip >> 8
        lone = self._lone.pop(block, None)
        if lone is None and not (self._pools[True].count(block) or self._pools[False].count(block)):
            self._lone[block] = user          # alone in its /24: one entry
            return
        if lone is not None:                  # not alone any more: both in the tables by address
            self._place_by_ip(lone, lone._addr >> 16 & 0xFFFFFFFF, block)
        self._place_by_ip(user, ip, block)

    def _place_by_ip(self, user, ip, block):
        key = user._addr
        self._pools[user.ext].add(user, block)
        crowded = self._crowded.get(ip)
        if crowded:
            self._crowded[ip] = crowded + 1
        elif ip in self._by_addr:
            single = self._by_addr.pop(ip)
            self._by_addr[single._addr] = single
            self._crowded[ip] = 2
        else:
            key = ip
        self._by_addr[key] = user

    def _unplace(self, user):
        key = user._addr
        if type(key) is int and self._lone.get(key >> 24 & 0xFFFFFF) is user:
            del self._lone[key >> 24 & 0xFFFFFF]
            return
        self._pools[user.ext].remove(user, key >> 24 & 0xFFFFFF if type(key) is int else block_key(key))
        if type(key) is not int:
            ip = ip_key(key)
            self._per_ip[ip] -= 1
            if self._per_ip[ip] <= 0:
                del self._per_ip[ip]
            del self._by_addr[key]
            return
        ip = key >> 16 & 0xFFFFFFFF
        if self._by_addr.get(ip) is user:
            del self._by_addr[ip]
            return
        del self._by_addr[key]
        if self._crowded[ip] > 1:
            self._crowded[ip] -= 1
        else:
            del self._crowded[ip]

    # -- the expiry order

    def _append(self, user):
        """Make *user* the newest in its pool's expiry order."""
        ends = self._ends[user.ext]
        user.sooner, user.later = ends[1], None
        if ends[1] is not None:
            ends[1].later = user
        else:
            ends[0] = user
        ends[1] = user

    def _unlink(self, user):
        ends = self._ends[user.ext]
        if user.sooner is not None:
            user.sooner.later = user.later
        else:
            ends[0] = user.later
        if user.later is not None:
            user.later.sooner = user.sooner
        else:
            ends[1] = user.sooner
        user.sooner = user.later = None
