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
* No amplification: an answer is never longer than its request plus
  :func:`mapped_allowance` (the XOR-MAPPED-ADDRESS and MAPPED-ADDRESS
  attributes for the client's address family: 24 bytes for IPv4, 48 for
  IPv6). FINGERPRINT is added only when the request had one, and
  OTHER-ADDRESS and RESPONSE-ORIGIN only while they fit; a client that wants
  them sends a request with room for them (ours sends SOFTWARE).
* Never to a third party: the answer goes to the request's source address,
  from the port it reached unless CHANGE-REQUEST asks for the other port and
  the relay has one (RFC 5780). A change it cannot make (another IP, or
  another port without ``--alt-port``) gets 420, as do unknown
  comprehension-required attributes (RFC 8489 section 6.3.1); from an RFC
  3489 client, which would take any answer for a changed one, it gets none.
"""

import collections
import ipaddress

from .effects import Send
from .stun import (ATTRIBUTES_BY_NAME, CHANGE_IP, CHANGE_PORT, COOKIE, ERROR_UNKNOWN_ATTRIBUTE,
                   REASONS, Class, MalformedMessage, Message, Method, canonical_address,
                   pack_address, parse_message)

def mapped_allowance(addr):
    """Bytes an answer may add to its request: XOR-MAPPED-ADDRESS plus
    MAPPED-ADDRESS for *addr*'s family (2 x 12 for IPv4, 2 x 24 for IPv6)."""
    return 2 * (4 + len(pack_address(canonical_address(addr))))


def answer(data, addr, origin=None):
    """The bytes answering the datagram *data* from *addr* to a one-port
    server at *origin* (every change request gets 420), or None when
    nothing is owed: not a Binding request, or no answer within the bound.
    Raises MalformedMessage."""
    request = parse_message(data)
    if not _is_binding_request(request):
        return None
    response = _respond(request, len(data), addr, origin, None, granted=False)
    return None if response is None else bytes(response)


def _is_binding_request(message):
    return (message.method, message.message_class) == (Method.BINDING, Class.REQUEST)


def _change_flags(request):
    return request.attributes.get("CHANGE-REQUEST", 0) & (CHANGE_IP | CHANGE_PORT)


def _respond(request, size, addr, origin, other, granted):
    """The response to *request* (*size* bytes on the wire) from *addr*,
    leaving from *origin*, the server's other address being *other*;
    *granted* if it leaves from the other port as CHANGE-REQUEST asked.
    None if even the smallest response breaks the bound, or for a change
    request we cannot grant from an RFC 3489 client."""
    mapped = canonical_address(addr)
    unknown = request.unknown_required()
    if _change_flags(request) and not granted:
        if request.cookie != COOKIE:   # RFC 3489 clients read any answer as "changed"
            return None
        unknown.append(ATTRIBUTES_BY_NAME["CHANGE-REQUEST"][0])
    response = Message(Method.BINDING, Class.ERROR if unknown else Class.SUCCESS,
                       request.transaction_id, cookie=request.cookie)
    if unknown:
        if len(unknown) % 2:           # keep the attribute a multiple of 4 bytes long
            unknown.append(unknown[-1])
        response.attributes["ERROR-CODE"] = (ERROR_UNKNOWN_ATTRIBUTE, REASONS[ERROR_UNKNOWN_ATTRIBUTE])
        response.attributes["UNKNOWN-ATTRIBUTES"] = tuple(unknown)
    else:
        response.attributes["XOR-MAPPED-ADDRESS"] = mapped
        response.attributes["MAPPED-ADDRESS"] = mapped
    fingerprint = "FINGERPRINT" in request.attributes
    limit = size + mapped_allowance(mapped) - (8 if fingerprint else 0)
    extras = [("OTHER-ADDRESS", other)]     # from a wildcard bind: unspecified IP, see other_address()
    if origin is not None and not ipaddress.ip_address(origin[0]).is_unspecified:
        extras.append(("RESPONSE-ORIGIN", origin))
    for name, value in extras:
        if not unknown and value is not None:
            response.attributes[name] = value
            if len(bytes(response)) > limit:
                del response.attributes[name]
    if fingerprint:
        response.attributes["FINGERPRINT"] = 0
        limit += 8
    return response if len(bytes(response)) <= limit else None


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

    def datagram_received(self, data, addr, via=0):
        """*data* arrived on socket *via* from *addr*: the Sends (0 or 1), each
        from the relay socket number *via* it names (0 or 1)."""
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
            response = _respond(request, len(data), addr, self.addresses[out],
                                self.addresses[1 - via] if two else None, granted)
        except ValueError:             # a source address we cannot encode
            response = None
        if response is None:
            self.stats["stun_unanswered"] += 1
            return []
        self.stats["stun_errors" if response.message_class == Class.ERROR else "stun_answered"] += 1
        return [Send(bytes(response), addr, out)]


