"""The two plain datagrams every path uses, whatever the link.

A ``Ping`` probes a candidate address while punching and answers keep the
path alive; a ``Pong`` answers it. They stay plain JSON (the seed's form)
on every link: a partner still punching cannot open anything sealed yet.
How messages are sealed once the path is found is
:class:`peerpunch.securing.Secure`'s business.
"""

from . import protocol as P

PING = P.encode(P.Ping())
PONG = P.encode(P.Pong())
