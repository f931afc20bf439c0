"""Registering with the relay core as an extension client does: a Register,
the relay's Cookie, the Register again with it (ISSUE 10: return
routability before state)."""

import dataclasses

from peerpunch import protocol as P
from peerpunch.effects import Send


def join(registry, name, addr, now=0.0, features=("ext", "relay1"), **fields):
    """Register *name* at *addr* through the cookie round trip (*fields*:
    more Register fields, e.g. nonce, key, mapping); return the token."""
    register = P.Register(name, features=features, **fields)
    cookie = cookie_for(registry, register, addr, now)
    out = registry.datagram_received(P.encode(dataclasses.replace(register, cookie=cookie)), addr, now)
    acks = [P.decode(e.data) for e in out if isinstance(e, Send) and e.addr == addr
            and e.data.startswith(b'{"RegisterAck"')]
    assert acks, "no RegisterAck for %s: %r" % (name, out)
    return acks[-1].token


def cookie_for(registry, register, addr, now=0.0):
    """The cookie the relay sends *addr* for *register*, padded (with a
    field the relay ignores) to be no shorter than the Cookie reply."""
    data = padded(P.encode(register), 40 + len(P.encode(P.Cookie("0" * 32, nonce=register.nonce))))
    out = registry.datagram_received(data, addr, now)
    (cookie,) = [P.decode(e.data).cookie for e in out if isinstance(e, Send)
                 and e.data.startswith(b'{"Cookie"')]
    return cookie


def padded(data, size):
    """*data* (a JSON struct variant) with a ``pad`` field, at least *size* bytes."""
    if len(data) >= size:
        return data
    return data[:-2] + b',"pad":"' + b" " * max(0, size - len(data) - 9) + b'"}}'
