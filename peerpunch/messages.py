"""The message table: every variant peerpunch sends or accepts, as data.

Theory of operation
-------------------
One frozen dataclass per variant of the seed's Rust enum, its fields in
serde's order, registered by :func:`_variant` in :data:`VARIANTS` (variant
name -> class). Registration precomputes what the codec
(:mod:`peerpunch.protocol`) needs per class, so encoding and decoding are
one table look-up and a loop:

* ``SEED``: the seed knows this variant (only those go to a seed client);
* ``FIELDS``: (name, required, validator) per field, the validator taken
  from :data:`peerpunch.fields.VALIDATORS`;
* ``UNIT``: no field is required, so with no extension set the variant is
  a unit variant on the wire (``"Ping"``).

Fields with a default of ``None`` are extensions: serde ignores them and
the codec omits them when ``None``. A new message is a new class here; a
new field needs a validator in :mod:`peerpunch.fields` first. The ``code``
values of ``Error`` are the ``ERROR_*`` constants below.
"""

import dataclasses
from typing import Optional, Tuple

from .fields import VALIDATORS

VARIANTS = {}
"""Variant name -> message class."""


def _variant(seed):
    def register(cls):
        cls = dataclasses.dataclass(frozen=True)(cls)
        cls.SEED = seed
        # (name, required, validator) per field, in declaration order (serde's order)
        cls.FIELDS = tuple((f.name, f.default is dataclasses.MISSING, VALIDATORS[f.name])
                           for f in dataclasses.fields(cls))
        cls.UNIT = not any(required for _, required, _ in cls.FIELDS)
        VARIANTS[cls.__name__] = cls
        return cls
    return register


@_variant(seed=True)
class Register:
    username: str
    features: Optional[Tuple[str, ...]] = None
    local: Optional[Tuple[str, ...]] = None      # LAN candidates (host endpoints)
    key: Optional[str] = None                    # long-term public key, base64
    token: Optional[str] = None                  # from an earlier RegisterAck: "still me"
    mapping: Optional[str] = None                # MAPPINGS: what our NAT does, if we know
    partner: Optional[str] = None                # in a chat: with whom...
    session: Optional[str] = None                # ...and its secret (a restarted relay relearns it)
    watch: Optional[Tuple[str, ...]] = None      # names to hear of (Online) when they register
    cookie: Optional[str] = None                 # from the relay's Cookie: we receive at this address
    nonce: Optional[str] = None                  # ours; the relay's messages to us carry it back
    max_chats: Optional[int] = None              # chats we may hold at once (1..MAX_CHATS; absent: 1)
    chats: Optional[Tuple[Tuple[str, str], ...]] = None   # (partner, session) of each chat we are in


@_variant(seed=True)
class Connect:
    target_username: str
    session: Optional[str] = None                # "introduce us again, if that pairing lives"
    token: Optional[str] = None                  # our RegisterAck's token: this Connect is ours


@_variant(seed=True)
class SessionFinished:
    token: Optional[str] = None                  # to an ext relay: it is really us
    partner: Optional[str] = None                # only the chat with this user (absent: every chat)


@_variant(seed=True)
class RegisterAck:
    features: Optional[Tuple[str, ...]] = None
    token: Optional[str] = None                  # proves the name is ours from a new address
    nonce: Optional[str] = None                  # the client's (Register ``nonce``): from its relay
    max_chats: Optional[int] = None              # the chats the relay lets us hold (to a max_chats Register)


@_variant(seed=True)
class PeerInfo:
    peer: str
    username: str
    features: Optional[Tuple[str, ...]] = None
    local: Optional[Tuple[str, ...]] = None      # the peer's LAN candidates
    session: Optional[str] = None                # a secret both peers share, for handshake MACs
    mapping: Optional[str] = None                # the peer's NAT mapping, if it proved its address
    nonce: Optional[str] = None                  # the addressee's: from its relay


@_variant(seed=True)
class TargetNotFound:
    nonce: Optional[str] = None                  # the asker's: from its relay
    target: Optional[str] = None                 # to an ext asker: the name it asked for


@_variant(seed=True)
class TargetBusy:
    nonce: Optional[str] = None
    target: Optional[str] = None                 # to an ext asker: the name it asked for


@_variant(seed=True)
class DirectMessage:
    content: str


@_variant(seed=True)
class Ping:
    pass


@_variant(seed=True)
class Pong:
    pass


@_variant(seed=True)
class Goodbye:
    pass


@_variant(seed=False)
class Unregister:
    """Extension: the client is leaving; free its name now, not after expiry."""
    token: Optional[str] = None                  # it is really us


@_variant(seed=False)
class Error:
    """Extension: a refusal with a machine-readable code (see ERROR_CODES)."""
    code: str
    message: str
    nonce: Optional[str] = None                  # the addressee's: from its relay
    target: Optional[str] = None                 # refusing a Connect: the name it asked for


@_variant(seed=False)
class Online:
    """Extension: a name the client watches (Register ``watch``) has
    registered, or was registered already when the watch came."""
    username: str
    nonce: Optional[str] = None


@_variant(seed=False)
class Cookie:
    """Extension: the relay's answer to an extension Register from an
    address not proven yet: Register again with this ``cookie`` (a MAC of
    the address, the name and the time, so the relay keeps no state until
    the client shows it receives there). Never larger than that Register."""
    cookie: str
    nonce: Optional[str] = None                  # the Register's own, echoed


ERROR_NAME_TAKEN = "name-taken"
ERROR_RELAY_FULL = "relay-full"
ERROR_SELF = "self-connect"
ERROR_BAD_REQUEST = "bad-request"
ERROR_NOT_REGISTERED = "not-registered"
ERROR_RELAY_STOPPING = "relay-stopping"   # to every proven client when the relay stops
ERROR_TOO_MANY_CHATS = "too-many-chats"   # a Connect from a client already in max_chats chats

SEED_VARIANTS = frozenset(name for name, cls in VARIANTS.items() if cls.SEED)
