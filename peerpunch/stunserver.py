"""The relay's STUN side: answers to Binding requests (RFC 8489, RFC 5780).

Theory of operation
-------------------
The relay answers Binding requests on its own UDP port(s) through
:class:`BindingServer`, which never raises: malformed datagrams are counted
and dropped. Its answers obey three rules:

* Interoperability with RFC 3489 clients (``stun`` 0.97, pystun): a success
  carries XOR-MAPPED-ADDRESS *and* MAPPED-ADDRESS, every attribute we send
  has a length that is a multiple of 4, and the 16 bytes after the length
  (magic cookie and transaction id, or an old-style 128-bit id) are echoed.
* No amplification: an answer no longer than its request is free; one
  that needs more room (at most the request plus :func:`mapped_allowance`,
  the XOR-MAPPED-ADDRESS and MAPPED-ADDRESS attributes: 24 bytes for IPv4,
  48 for IPv6) is sent only within the budget of the source's /24 or /48
  (STUN_BURST at once, STUN_RATE a second, in a table of MAX_BUDGET_BLOCKS
  blocks that cannot be cycled past: :class:`~peerpunch.shares.Budget`), so
  that clients which send bare 20-byte requests (turnutils_stunclient,
  stun 0.97) still get their answer. Past the budget the answer is cut to
  the request's size -- attributes dropped least wanted first: RESPONSE-ORIGIN,
  OTHER-ADDRESS, then the mapped address the client does not read (an RFC
  3489 client reads MAPPED-ADDRESS, any other XOR-MAPPED-ADDRESS) -- or,
  if even that does not fit, not sent. FINGERPRINT is added only when the
  request had one. Our own client pads its requests (SOFTWARE, to
  :data:`peerpunch.stun.PADDED_REQUEST` bytes) so that every attribute it
  reads fits: it never needs the budget.
* Never to a third party: the answer goes to the request's source address,
  from the port it reached unless CHANGE-REQUEST asks for the other port and
  the relay has one (RFC 5780). A change it cannot make (another IP, or
  another port without ``--alt-port``) gets 420, as do unknown
  comprehension-required attributes (RFC 8489 section 6.3.1); from an RFC
  3489 client, which would take any answer for a changed one, it gets none.
"""

import collections
import ipaddress

from .addrkeys import block_key
from .effects import Send
from .shares import Budget
from .stun import (ATTRIBUTES_BY_NAME, CHANGE_IP, CHANGE_PORT, COOKIE, ERROR_UNKNOWN_ATTRIBUTE,
                   HEADER_SIZE, REASONS, Class, MalformedMessage, Message, Method, canonical_address,
                   pack_address, parse_message)

STUN_RATE, STUN_BURST = 1.0, 5.0   # answers longer than their request, per /24 or /48
MAX_BUDGET_BLOCKS = 4096           # blocks the budget table tracks (as for Errors)

def mapped_allowance(addr):
    """Bytes an answer may add to its request: XOR-MAPPED-ADDRESS plus
    MAPPED-ADDRESS for *addr*'s family (2 x 12 for IPv4, 2 x 24 for IPv6)."""
    return 2 * (4 + len(pack_address(canonical_address(addr))))


def answer(data, addr, origin=None):
    """The bytes answering the datagram *data* from *addr* to a one-port
    server at *origin* (every change request gets 420) within the size of
    *data* (the stateless, unbudgeted form), or None when nothing is owed:
    not a Binding request, or no answer fits. Raises MalformedMessage."""
    request = parse_message(data)
    if not _is_binding_request(request):
        return None
    response = _respond(request, len(data), addr, origin, None, granted=False)
    return None if response is None else bytes(response)


def _is_binding_request(message):
    return (message.method, message.message_class) == (Method.BINDING, Class.REQUEST)


def _change_flags(request):
    return request.attributes.get("CHANGE-REQUEST", 0) & (CHANGE_IP | CHANGE_PORT)


def _respond(request, limit, addr, origin, other, granted):
    """The response to *request* from *addr*, at most *limit* bytes long,
    leaving from *origin*, the server's other address being *other*;
    *granted* if it leaves from the other port as CHANGE-REQUEST asked.
    None if even the smallest useful response is longer than *limit*, or
    for a change request we cannot grant from an RFC 3489 client."""
    mapped = canonical_address(addr)
    unknown = request.unknown_required()
    if _change_flags(request) and not granted:
        if request.cookie != COOKIE:   # RFC 3489 clients read any answer as "changed"
            return None
        unknown.append(ATTRIBUTES_BY_NAME["CHANGE-REQUEST"][0])
    response = Message(Method.BINDING, Class.ERROR if unknown else Class.SUCCESS,
                       request.transaction_id, cookie=request.cookie)
    optional = []                      # least wanted last
    if unknown:
        if len(unknown) % 2:           # keep the attribute a multiple of 4 bytes long
            unknown.append(unknown[-1])
        response.attributes["ERROR-CODE"] = (ERROR_UNKNOWN_ATTRIBUTE, REASONS[ERROR_UNKNOWN_ATTRIBUTE])
        response.attributes["UNKNOWN-ATTRIBUTES"] = tuple(unknown)
    else:
        response.attributes["XOR-MAPPED-ADDRESS"] = mapped
        response.attributes["MAPPED-ADDRESS"] = mapped
        # an RFC 3489 client reads MAPPED-ADDRESS; any other XOR-MAPPED-ADDRESS
        optional.append("XOR-MAPPED-ADDRESS" if request.cookie != COOKIE else "MAPPED-ADDRESS")
        extras = [("OTHER-ADDRESS", other)]     # from a wildcard bind: unspecified IP, see other_address()
        if origin is not None and not ipaddress.ip_address(origin[0]).is_unspecified:
            extras.append(("RESPONSE-ORIGIN", origin))
        for name, value in extras:
            if value is not None:
                response.attributes[name] = value
                optional.append(name)
    fingerprint = "FINGERPRINT" in request.attributes
    room = limit - HEADER_SIZE - (8 if fingerprint else 0)
    sizes = {name: len(response._encode(name, value)) for name, value in response.attributes.items()}
    while optional and sum(sizes.values()) > room:
        del response.attributes[optional[-1]], sizes[optional.pop()]
    if sum(sizes.values()) > room:
        return None
    if fingerprint:
        response.attributes["FINGERPRINT"] = 0
    return response


class BindingServer:
    """The relay's STUN side over its sockets: number 0 bound to
    ``addresses[0]`` and, with ``--alt-port``, number 1 bound to
    ``addresses[1]``.

    :meth:`datagram_received` never raises: what it does not answer it
    counts in ``stats`` (keys start with ``stun_``) and drops.
    """

    def __init__(self, addresses):
        self.addresses = [canonical_address(a) for a in addresses]
        self.stats = collections.Counter()
        self._budget = Budget(STUN_RATE, STUN_BURST, MAX_BUDGET_BLOCKS)

    def limited(self, now):
        """How many blocks' budgets of longer answers are spent right now."""
        return self._budget.exhausted(now)

    def datagram_received(self, data, addr, via=0, now=0.0):
        """*data* arrived on socket *via* from *addr* at *now*: the Sends (0 or
        1), each from the relay socket number *via* it names (0 or 1)."""
        try:
            request = parse_message(data)
        except MalformedMessage:
            self.stats["stun_malformed"] += 1
            return []
        if not _is_binding_request(request):
            self.stats["stun_ignored"] += 1
            return []
        two = len(self.addresses) > 1
        granted = two and _change_flags(request) == CHANGE_PORT
        out = 1 - via if granted else via
        try:
            response = self._response(request, len(data), addr, via, granted, now)
        except ValueError:             # a source address we cannot encode
            response = None
        if response is None:
            self.stats["stun_unanswered"] += 1
            return []
        response, reply = response
        self.stats["stun_errors" if response.message_class == Class.ERROR else "stun_answered"] += 1
        return [Send(reply, addr, out)]

    def _response(self, request, size, addr, via, granted, now):
        """(the answer, its bytes), or None: within *size* bytes, or up to
        mapped_allowance() more if the source's block may have one more."""
        out = 1 - via if granted else via
        where = (self.addresses[out], self.addresses[1 - via] if len(self.addresses) > 1 else None)
        response = _respond(request, size + mapped_allowance(addr), addr, *where, granted)
        if response is None:
            return None
        reply = bytes(response)
        if len(reply) <= size:
            return response, reply
        if self._budget.take(block_key(addr), now):
            self.stats["stun_longer"] += 1
            return response, reply
        self.stats["stun_cut"] += 1
        response = _respond(request, size, addr, *where, granted)
        return None if response is None else (response, bytes(response))


