"""Path MTU discovery for one stream: RFC 8899's DPLPMTUD, reduced to one step.

Theory of operation
-------------------
A stream starts with packets of its base size, which every path carries
(1,200-byte datagrams). Given a larger *target* (a full 1,500-byte
Ethernet frame's worth), its :class:`PathMtu` searches once the path has an
RTT sample: the sender puts out one probe, a packet of the target size
carrying only ACK_NOW and PAD (:mod:`peerpunch.streamwire`), outside the
congestion window and never repeated (a lost probe says nothing about
congestion, RFC 8899 section 4.5). An acknowledgment of the probe confirms
the size (:meth:`on_ack`), and the sender cuts new fragments for it. No
acknowledgment within PROBE_TIMEOUT_RTTS round trips (PROBE_TIMEOUT_MIN at
least) is a failure; the next probe waits RETRY_AFTER, and after MAX_PROBES
failures the search stops at the base size. A partner whose stream does not
know PAD refuses the probe, which fails the same way: nothing to negotiate.

Black holes (RFC 8899 section 4.3): BLACK_HOLE_PTOS probe timeouts of the
stream's own loss recovery in a row (nothing at all acknowledged, the
probes themselves lost) while above the base size are taken for a path
that stopped carrying the larger packets (:meth:`black_hole`): the size
drops back to the base at once (the sender cuts what it still has to send
again) and a new search starts after RAISE_AFTER: a real black hole then
fails its probes and the search stops; a run of unlucky random losses (a
lost tail, lost ACKs) costs a moment at the base size. One timeout is not
enough: on a lossy path they come now and then, and the larger size is
still right. A path through the relay carries no more than the base size
(the relay forwards at most 1,400 bytes): :meth:`cap` holds the size there
and pauses the search, and the search starts again RAISE_AFTER once the
path is direct again. The target follows the path's address family
(:meth:`aim`): a full Ethernet frame leaves 20 bytes less for the datagram
over IPv6 than over IPv4, so a stream on an IPv6 path searches for that
size, and one whose path changes family searches again. Sans-I/O: times
are passed in.
"""

MAX_PROBES = 3
PROBE_TIMEOUT_RTTS = 3
PROBE_TIMEOUT_MIN = 0.05       # s
RETRY_AFTER = 1.0              # s between failed probes
RAISE_AFTER = 1.0              # s after a black hole before searching again
BLACK_HOLE_PTOS = 4            # probe timeouts in a row that mean a black hole


class PathMtu:
    """The packet size of one stream: *base*, or *target* once confirmed
    (None: no search)."""

    def __init__(self, base, target=None):
        self.base = base
        self.target = target if target is not None and target > base else None
        self.size = base
        self.pn = None                 # the probe in flight, by packet number
        self._deadline = None          # ...and when it is given up
        self._after = None             # no probe before this time
        self.failures = 0
        self.searching = self.target is not None
        self.capped = False

    def probe_due(self, now, has_rtt):
        """Whether a probe should leave now (the stream has an RTT sample)."""
        return (self.searching and not self.capped and self.pn is None and has_rtt
                and (self._after is None or now >= self._after))

    def cap(self, capped, now):
        """The path goes through the relay (*capped*) or not any more: True
        if the size dropped to the base (the sender cuts fragments again)."""
        if capped == self.capped:
            return False
        self.capped = capped
        if not capped:                 # direct again: search afresh in a moment
            self.searching, self.failures = self.target is not None, 0
            self._after = now + RAISE_AFTER
            return False
        self.pn = None                 # a probe in flight says nothing now
        if self.size <= self.base:
            return False
        self.size = self.base
        return True

    def aim(self, target, now):
        """The largest size worth a search on the path now is *target* (an
        IPv6 path carries 20 bytes less than an IPv4 one in the same
        frame): a new target starts the search afresh at once; True if the
        size dropped to the base (the sender cuts fragments again)."""
        target = target if target is not None and target > self.base else None
        if target == self.target:
            return False
        self.target, self.pn, self.failures = target, None, 0
        self.searching, self._after = target is not None, now
        if self.size <= self.base:
            return False
        self.size = self.base
        return True

    def sent(self, pn, now, smoothed_rtt):
        self.pn = pn
        self._deadline = now + max(PROBE_TIMEOUT_RTTS * smoothed_rtt, PROBE_TIMEOUT_MIN)

    def on_ack(self, ranges):
        """An ACK's inclusive ranges; True if it confirms the probe (the size grew)."""
        pn = self.pn
        if pn is None or not any(low <= pn <= high for low, high in ranges):
            return False
        self.pn = None
        self.size, self.searching, self.failures = self.target, False, 0
        return True

    def on_timers(self, now):
        """A probe not acknowledged in time fails; the search may stop."""
        if self.pn is None or now < self._deadline:
            return
        self.pn = None
        self.failures += 1
        self._after = now + RETRY_AFTER
        if self.failures >= MAX_PROBES:
            self.searching = False

    def black_hole(self, now, timeouts):
        """The stream's probe timeout fired, the *timeouts*-th in a row: at
        BLACK_HOLE_PTOS, back to the base size if above it (True), and
        search again after RAISE_AFTER."""
        if self.size <= self.base or timeouts < BLACK_HOLE_PTOS:
            return False
        self.size = self.base
        self.pn = None
        self.failures = 0
        self.searching = True
        self._after = now + RAISE_AFTER
        return True
