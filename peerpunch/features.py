"""Features and NAT mappings: the words a side announces about itself.

Theory of operation
-------------------
The seed knows no features. Our sides announce what they can do as a list of
short names in Register, RegisterAck and PeerInfo (the ``features`` field,
which serde ignores), and each side uses an extension only toward a side
that announced it: extension variants only to ``ext``, the secure channel
only with ``noise1``, and so on. A name we do not know is kept and ignored,
so a later version can add one without breaking this one.

``mapping`` is a measurement, not a capability: what the sender found out
about its NAT with STUN, passed on so two peers can agree on who does what
in a birthday search. The codec (:mod:`peerpunch.protocol`) re-exports every
name here.
"""

FEATURE_EXT = "ext"
"""Announced in Register/RegisterAck/PeerInfo: the sender understands the
extension variants of peerpunch.messages (``Error`` and the others not in the seed)."""

FEATURE_NOISE = "noise1"
"""The sender can run the secure channel (peerpunch.secure) with its peer."""

FEATURE_RELAY = "relay1"
"""Relay: forwards RELAYED datagrams between introduced peers (peerpunch.forwarder).
Peer: can use that fallback."""

FEATURE_DUAL_STACK = "dual-stack"
"""Peer: its socket sends and receives both IPv4 and IPv6 (an IPv6 socket on
``::`` with IPV6_V6ONLY off), so a peer on the same host as a loopback relay
reaches it at the same port on either loopback address."""

MAPPING_INDEPENDENT = "independent"
MAPPING_DEPENDENT = "dependent"
MAPPINGS = (MAPPING_INDEPENDENT, MAPPING_DEPENDENT)
"""Register/PeerInfo ``mapping``: how the sender's NAT maps its socket, as the
sender measured with STUN against the relay's two ports (RFC 4787: the same
public endpoint toward every destination, or a new one per destination --
"symmetric"). Tells the peers which side of a birthday search each takes."""

FEATURE_WATCH = "watch1"
"""Relay: keeps the watches a Register names (``watch``) and tells the
watcher when such a name registers (``Online``)."""

FEATURE_STREAM = "stream1"
"""Peer: over an encrypted link, sends chat lines on the reliable stream
(peerpunch.stream) and takes them from it; announced with ``noise1``."""

KNOWN_FEATURES = (FEATURE_EXT, FEATURE_RELAY, FEATURE_NOISE, FEATURE_WATCH,
                  FEATURE_DUAL_STACK, FEATURE_STREAM)
OUR_FEATURES = (FEATURE_EXT, FEATURE_RELAY)
SECURE_FEATURES = (FEATURE_EXT, FEATURE_RELAY, FEATURE_NOISE, FEATURE_STREAM)


def speaks_extensions(features) -> bool:
    """True if a side that announced *features* accepts extension variants."""
    return bool(features) and FEATURE_EXT in features
