"""Message fields: what each one may hold, checked before any core sees it.

Theory of operation
-------------------
A field name means the same thing in every variant (``username`` is always
a username, ``session`` always 32 hex digits), so validation is one table,
:data:`VALIDATORS`, from field name to a function. Each function takes the
value ``json`` decoded and returns the Python value the message keeps
(lists become tuples, endpoints their canonical text) or raises
``ValueError`` with a short reason; the codec (:mod:`peerpunch.protocol`)
adds the variant and field and raises its ``RemoteProtocolError``. The size
limits a field may reach sit at the top.

Checks are strict where a core relies on the value (names, secrets, keys,
endpoints) and lenient where a later version may say more (an unknown
``mapping`` reads as "unknown", not as garbage).
"""

import base64
import binascii
import re

from .endpoints import format_endpoint, is_lan_endpoint, parse_endpoint
from .features import MAPPINGS

MAX_USERNAME = 32
MAX_FEATURES = 16
MAX_LOCAL_CANDIDATES = 4
MAX_WATCH = 8
"""Names one Register may ask the relay to watch (see ``Online``)."""
MAX_CHATS = 64
"""Register ``max_chats`` (how many chats at once) is 1..MAX_CHATS, and
``chats`` names at most MAX_CHATS of them."""

_FEATURE_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,31}\Z")
_SECRET_RE = re.compile(r"[0-9a-f]{32}\Z")


def check_username(value):
    """A username: 1..32 printable characters, no surrounding blanks."""
    if not isinstance(value, str):
        raise ValueError("username must be a string")
    if not 1 <= len(value) <= MAX_USERNAME:
        raise ValueError("username must have 1 to %d characters" % MAX_USERNAME)
    if not value.isprintable() or value != value.strip():
        raise ValueError("username may not contain control characters"
                         " or begin or end with blanks")
    _check_utf8(value)
    return value


def check_person(value):
    """A username our peers take as a person's: one not starting with "#",
    which names a group (a chat and a group must never share a name)."""
    check_username(value)
    if is_group_name(value):
        raise ValueError("a name starting with # is a group's, not a person's")
    return value


def is_group_name(name):
    return name.startswith("#")


def _check_target(value):
    # A Connect may name anybody; an impossible name is simply not found.
    if not isinstance(value, str):
        raise ValueError("target_username must be a string")
    _check_utf8(value)
    return value


def _check_text(value):
    if not isinstance(value, str):
        raise ValueError("expected a string")
    _check_utf8(value)
    return value


def _check_endpoint(value):
    if not isinstance(value, str):
        raise ValueError("peer must be a string")
    parse_endpoint(value)
    return value


def _check_features(value):
    if not isinstance(value, list) or len(value) > MAX_FEATURES:
        raise ValueError("features must be a list of at most %d names" % MAX_FEATURES)
    for item in value:
        if not isinstance(item, str) or not _FEATURE_RE.match(item):
            raise ValueError("bad feature name")
    return tuple(value)


def _check_mapping(value):
    # lenient: a value from a later version means "unknown", not a bad message
    return value if value in MAPPINGS else None


def _check_local(value):
    if not isinstance(value, list) or len(value) > MAX_LOCAL_CANDIDATES:
        raise ValueError("local must be a list of at most %d endpoints" % MAX_LOCAL_CANDIDATES)
    for item in value:
        if not isinstance(item, str) or not is_lan_endpoint(item):
            raise ValueError("local candidates must be private-range HOST:PORT endpoints")
    # canonical text: what is passed on is never longer than it must be
    return tuple(format_endpoint(parse_endpoint(item)) for item in value)


def _check_watch(value):
    if not isinstance(value, list) or len(value) > MAX_WATCH:
        raise ValueError("watch must be a list of at most %d usernames" % MAX_WATCH)
    return tuple(check_username(name) for name in value)


def _check_max_chats(value):
    if type(value) is not int or not 1 <= value <= MAX_CHATS:
        raise ValueError("max_chats must be an integer from 1 to %d" % MAX_CHATS)
    return value


def _check_chats(value):
    if not isinstance(value, list) or len(value) > MAX_CHATS:
        raise ValueError("chats must be a list of at most %d [partner, session] pairs" % MAX_CHATS)
    for item in value:
        if not isinstance(item, list) or len(item) != 2:
            raise ValueError("a chat must be a [partner, session] pair")
    return tuple((check_username(partner), _check_secret(session)) for partner, session in value)


def _check_secret(value):
    if not isinstance(value, str) or not _SECRET_RE.match(value):
        raise ValueError("expected 32 lowercase hex digits")
    return value


def _check_key(value):
    if not isinstance(value, str) or len(value) != 44:
        raise ValueError("expected a base64 32-byte key")
    try:
        if len(base64.b64decode(value.encode("ascii"), validate=True)) == 32:
            return value
    except (binascii.Error, UnicodeEncodeError, ValueError):
        pass
    raise ValueError("expected a base64 32-byte key")


def _check_utf8(text):
    # json.loads turns "\ud800" into a lone surrogate that cannot be encoded
    # again; serde_json rejects such documents, so do we.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("string is not valid Unicode") from None


VALIDATORS = {
    # field name -> validator: one meaning per name, in every variant
    "username": check_username,
    "target_username": _check_target,
    "target": check_username,
    "content": _check_text,
    "peer": _check_endpoint,
    "features": _check_features,
    "local": _check_local,
    "mapping": _check_mapping,
    "partner": check_username,
    "watch": _check_watch,
    "key": _check_key,
    "token": _check_secret,
    "session": _check_secret,
    "cookie": _check_secret,
    "nonce": _check_secret,
    "max_chats": _check_max_chats,
    "chats": _check_chats,
    "code": _check_text,
    "message": _check_text,
}
