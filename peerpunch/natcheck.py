"""``python bin/peer.py --nat-check``: what the NAT in front of us does.

Theory of operation
-------------------
From one UDP socket, up to three STUN Binding transactions with the relay,
one after another (RFC 5780 section 4, cut to what a relay with one IP
address and two ports can show):

1. binding: a request to the relay's port. The answer holds our public
   endpoint and, if the relay has an alternate port (its default), its alternate
   address in OTHER-ADDRESS. Without that, the check stops here.
2. filtering: the same request with CHANGE-REQUEST "change port", so the
   relay answers from its alternate port, to which this socket has never
   sent. If the answer gets in, the NAT does not filter by port; if it
   never arrives, it does. With a single relay IP, address-dependent and
   endpoint-independent filtering cannot be told apart.
3. mapping: a request to the alternate port. The same public endpoint as
   in 1 means endpoint-independent mapping; another one means
   address/port-dependent ("symmetric") mapping.

Filtering is tested before mapping because sending to the alternate port
would open the NAT to answers from it.

:class:`NatCheck` is sans-I/O (``start``, ``datagram_received`` and
``tick`` return the Sends to carry out) and :func:`report` turns what it
saw into the lines printed; the socket that runs it lives in the peer's
shell (:func:`peerpunch.peer.nat_check`).
"""

import dataclasses
from typing import Optional

from . import stun
from .protocol import format_endpoint

RTO = 0.25            # a lost request is sent again after 0.25, 0.5, 1 s ...
RETRIES = 3           # ... 3 times: "no answer" takes 3.75 s
SOFTWARE = "peerpunch nat-check"   # padded to stun.PADDED_REQUEST: room for every answer we read

EIM = "endpoint-independent"
SYMMETRIC = "address/port-dependent"


@dataclasses.dataclass
class Observations:
    """What the transactions showed; None where a test did not run or answer."""
    relay: tuple
    public: Optional[tuple] = None          # our endpoint as the relay's port saw it
    other: Optional[tuple] = None           # the relay's alternate address
    filtered: Optional[bool] = None         # True: the answer from the other port was dropped
    filtering_unknown: str = ""             # why filtered is None
    public_alt: Optional[tuple] = None      # our endpoint as the alternate port saw it
    error: Optional[str] = None             # why the check failed altogether


class NatCheck:
    """The three tests against *relay* (``(ip, port)``), one at a time.

    *quick*: only the binding and mapping tests, and the second only toward
    an alternate port on the relay's own IP -- what a chat peer learns at
    registration (two round trips) before it may need a birthday search.
    """

    def __init__(self, relay, rto=RTO, retries=RETRIES, quick=False):
        self.obs = Observations(stun.canonical_address(relay))
        self._quick = quick
        self._rto = rto
        self._retries = retries
        self._step = None
        self._transaction = None

    @property
    def done(self):
        return self._transaction is None and self._step is not None

    def start(self, now):
        return self._begin("binding", self.obs.relay, 0, now)

    def next_deadline(self):
        return None if self._transaction is None else self._transaction.next_deadline()

    def datagram_received(self, data, addr, now):
        if self._transaction is None or not self._transaction.datagram_received(data, addr):
            return []
        return self._finish(now)

    def tick(self, now):
        if self._transaction is None:
            return []
        out = self._transaction.tick(now)
        if self._transaction.state is stun.State.TIMED_OUT:
            return self._finish(now)
        return out

    def _begin(self, step, addr, change, now):
        self._step = step
        request = stun.binding_request(change=change, software=SOFTWARE)
        self._transaction = stun.Transaction(request, addr, self._rto, self._retries)
        return self._transaction.start(now)

    def _finish(self, now):
        transaction, self._transaction = self._transaction, None
        return getattr(self, "_after_" + self._step)(transaction, now)

    def _after_binding(self, transaction, now):
        response, obs = transaction.response, self.obs
        if response is None:
            obs.error = "no STUN answer from the relay at %s within %g s" % (
                format_endpoint(obs.relay), _patience(self._rto, self._retries))
        elif response.message_class != stun.Class.SUCCESS or response.mapped_address() is None:
            obs.error = "the relay at %s answered without our address (%s)" % (
                format_endpoint(obs.relay), _error_text(response))
        else:
            obs.public = stun.canonical_address(response.mapped_address())
            obs.other = response.other_address(obs.relay)
        if self._quick and obs.other is not None and obs.other[0] != obs.relay[0]:
            obs.other = None          # a relay does not send us to another host
        if obs.other is None:
            return []
        if self._quick:
            return self._begin("mapping", obs.other, 0, now)
        return self._begin("filtering", obs.relay, stun.CHANGE_PORT, now)

    def _after_filtering(self, transaction, now):
        response, obs = transaction.response, self.obs
        if response is None:
            obs.filtered = True
        elif response.message_class != stun.Class.SUCCESS:
            obs.filtering_unknown = "the relay would not answer from its other port (%s)" \
                % _error_text(response)
        elif stun.canonical_address(transaction.response_from) == obs.relay:
            obs.filtering_unknown = "the relay answered from the port we sent to, not its other port"
        else:
            obs.filtered = False
        return self._begin("mapping", obs.other, 0, now)

    def _after_mapping(self, transaction, now):
        response = transaction.response
        if response is not None and response.mapped_address() is not None:
            self.obs.public_alt = stun.canonical_address(response.mapped_address())
        return []


def _patience(rto, retries):
    return rto * (2 ** (retries + 1) - 1)


def _error_text(response):
    code = response.attributes.get("ERROR-CODE")
    return "error %d %s" % code if code else "no mapped address"


# ---------------------------------------------------------------------- report


def mapping_of(obs, local):
    """(behaviour, reason): EIM, SYMMETRIC or None (unknown)."""
    if obs.public_alt is not None:
        if obs.public_alt != obs.public:
            return SYMMETRIC, "another public endpoint toward each relay port"
        if obs.public in local:
            return EIM, "no NAT: the relay sees our own address and port"
        return EIM, "the same public endpoint toward both relay ports"
    if obs.public in local:
        return EIM, "no NAT: the relay sees our own address and port"
    if obs.other is None:
        return None, ("the relay has no alternate port to compare with (started with"
                      " --no-alt-port, or its port + 1 was taken)")
    return None, "no answer from the relay's alternate port %s" % format_endpoint(obs.other)


def report(obs, local, local_port):
    """The lines ``--nat-check`` prints: *local* are our local candidates
    ((ip, port) pairs) and *local_port* the port our socket is bound to."""
    mapping, why = mapping_of(obs, local)
    lines = ["relay: %s%s" % (format_endpoint(obs.relay),
                              ", alternate %s" % format_endpoint(obs.other) if obs.other else
                              " (no alternate port)"),
             "public endpoint: %s (seen from the relay's port %d)" % (
                 format_endpoint(obs.public), obs.relay[1])]
    if obs.public_alt is not None:
        lines.append("public endpoint: %s (seen from the relay's alternate port %d)" % (
            format_endpoint(obs.public_alt), obs.other[1]))
    lines.append("mapping: %s (%s)" % (_mapping_name(mapping), why))
    lines.append("port preserved: %s" % ("yes (local port %d)" % local_port
                                          if obs.public[1] == local_port else
                                          "no (local port %d, public port %d)"
                                          % (local_port, obs.public[1])))
    lines.append("filtering: %s" % _filtering(obs))
    lines.append("local candidates: %s" % (", ".join(map(format_endpoint, local)) or "none"))
    lines.append("verdict: direct connections: %s" % verdict(mapping, obs.filtered,
                                                              obs.public in local))
    return lines


def _mapping_name(mapping):
    return {EIM: EIM, SYMMETRIC: SYMMETRIC + ", i.e. symmetric", None: "unknown"}[mapping]


def _filtering(obs):
    if obs.filtered is True:
        return ("port-dependent (the relay's answer from its other port never arrived;"
                " only replies from where we sent get in)")
    if obs.filtered is False:
        return ("not port-dependent (the relay's answer from its other port got in; with one relay"
                " address, address-dependent and endpoint-independent filtering look alike)")
    if obs.other is None:
        return "unknown (the relay has no alternate port: --no-alt-port, or its port + 1 was taken)"
    return "unknown (%s)" % obs.filtering_unknown


def verdict(mapping, filtered, no_nat):
    """What direct connectivity to expect, as the rest of one line."""
    if mapping == SYMMETRIC:
        return ("with peers whose NAT is not symmetric (at once, or after a birthday search"
                " of a few seconds if it filters by port); relayed with symmetric ones"
                " (symmetric mapping)")
    if mapping is None:
        return "unknown (mapping behaviour unknown from one destination)"
    why = "no NAT" if no_nat else "endpoint-independent mapping"
    if filtered is True:
        return ("likely with most peers, symmetric ones after a birthday search of a few seconds"
                " (%s, port-dependent filtering)" % why)
    if filtered is False:
        return "likely with most peers, symmetric ones included (%s, no port-dependent filtering)" % why
    return "likely with most peers (%s)" % why
