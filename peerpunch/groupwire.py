"""Group chat messages on the reliable stream: their bytes.

Theory of operation
-------------------
A group's messages travel as messages of the pairwise reliable streams
(:mod:`peerpunch.stream`) between its members, inside each pair's Noise
channel, next to the chat's lines (UTF-8 text) and file messages (0xC0). A
group message starts with MARK (0xF8, a byte that never occurs in UTF-8),
then compact JSON, one variant, externally tagged::

    {"GroupStart":  {"group", "name", "members"}}  you are in a new group (the
                                                   sender made it from your chat)
    {"GroupInvite": {"group", "name", "members"}}  you are invited (/join)
    {"GroupAdded":  {"group", "member"}}           the sender invited *member*
    {"GroupJoined": {"group", "reply", "members"}} the sender is a joined member
                                                   (reply: false asks for an answer,
                                                   which lists the members it knows)
    {"GroupLine":   {"group", "seq", "text"}}      one line, seq 1, 2, ... per sender
    {"GroupLeft":   {"group", "member"}}           *member* left (the sender itself)
                                                   or is gone (the sender lost it)

``group`` is 16 lowercase hex digits (8 random bytes), ``name`` a group name
(``#`` and up to 31 more characters, :func:`check_group_name`), ``members``
and ``member`` usernames (:func:`~peerpunch.protocol.check_username`), at
most MAX_MEMBERS of them, no repeats; ``text`` at most MAX_TEXT bytes of
UTF-8; ``seq`` a positive integer. :func:`decode` checks every field and
raises :class:`GroupWireError` (a RemoteProtocolError: drop the message);
unknown variants raise it too, unknown extra fields are ignored.
"""

import collections
import json
import re

from . import protocol as P

FEATURE = "group1"
"""The feature a peer announces when it takes these messages."""
MARK = 0xF8
MAX_MEMBERS = 16                # a group's members, us included (a peer holds 16 chats)
MAX_TEXT = 60 * 1024            # a line's UTF-8 bytes (a stream message is 64 KiB)
MAX_SEQ = 2 ** 53 - 1
MAX_NAME = 32
_HEX16 = re.compile(r"[0-9a-f]{16}\Z")

GroupStart = collections.namedtuple("GroupStart", "group name members")
GroupInvite = collections.namedtuple("GroupInvite", "group name members")
GroupAdded = collections.namedtuple("GroupAdded", "group member")
GroupJoined = collections.namedtuple("GroupJoined", "group reply members")
GroupLine = collections.namedtuple("GroupLine", "group seq text")
GroupLeft = collections.namedtuple("GroupLeft", "group member")


class GroupWireError(P.RemoteProtocolError):
    """A group message we cannot accept: drop it."""


def is_group_message(message):
    """True if the stream message *message* (bytes) is a group message."""
    return len(message) >= 2 and message[0] == MARK


def check_group_name(value):
    """A group name: ``#`` then 1..31 printable characters, no blanks at the end."""
    if not (isinstance(value, str) and 2 <= len(value) <= MAX_NAME and value[0] == "#"
            and value.isprintable() and value == value.strip()):
        raise ValueError("a group name is # and 1 to %d printable characters" % (MAX_NAME - 1))
    return value


def _check(ok, what):
    if not ok:
        raise GroupWireError("bad %s" % what)


def _group(value):
    _check(isinstance(value, str) and _HEX16.match(value), "group id")
    return value


def _name(value):
    try:
        return check_group_name(value)
    except ValueError:
        raise GroupWireError("bad group name") from None


def _member(value):
    try:
        return P.check_username(value)
    except ValueError:
        raise GroupWireError("bad member name") from None


def _members(value):
    _check(isinstance(value, list) and 2 <= len(value) <= MAX_MEMBERS, "member list")
    members = tuple(_member(v) for v in value)
    _check(len(set(members)) == len(members), "member list")
    return members


def _known(value):
    _check(isinstance(value, list) and len(value) < MAX_MEMBERS, "member list")
    members = tuple(_member(v) for v in value)
    _check(len(set(members)) == len(members), "member list")
    return members


def _bool(value):
    _check(type(value) is bool, "flag")
    return value


def _seq(value):
    _check(type(value) is int and 1 <= value <= MAX_SEQ, "seq")
    return value


def _text(value):
    _check(isinstance(value, str) and len(value.encode("utf-8", "surrogatepass")) <= MAX_TEXT,
           "text")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise GroupWireError("bad text") from None
    return value


VARIANTS = {      # name -> (class, field checks in order)
    "GroupStart": (GroupStart, (_group, _name, _members)),
    "GroupInvite": (GroupInvite, (_group, _name, _members)),
    "GroupAdded": (GroupAdded, (_group, _member)),
    "GroupJoined": (GroupJoined, (_group, _bool, _known)),
    "GroupLine": (GroupLine, (_group, _seq, _text)),
    "GroupLeft": (GroupLeft, (_group, _member)),
}
_NAMES = {cls: name for name, (cls, _) in VARIANTS.items()}


def encode(msg):
    """*msg* (one of the variants) as a stream message."""
    fields = msg._asdict()
    if "members" in fields and fields["members"] is not None:
        fields["members"] = list(fields["members"])
    body = json.dumps({_NAMES[type(msg)]: fields}, separators=(",", ":"), ensure_ascii=False)
    return bytes((MARK,)) + body.encode("utf-8")


def decode(message):
    """The variant in the stream message *message*; raises GroupWireError."""
    _check(is_group_message(message) and len(message) <= 1 + 2 * MAX_TEXT, "group message")
    try:
        outer = json.loads(bytes(message[1:]).decode("utf-8"))
    except (ValueError, RecursionError):       # UnicodeDecodeError is a ValueError
        raise GroupWireError("group message is not JSON") from None
    _check(isinstance(outer, dict) and len(outer) == 1, "group message")
    (name, body), = outer.items()
    _check(name in VARIANTS and isinstance(body, dict), "group variant")
    cls, checks = VARIANTS[name]
    try:
        values = [body[field] for field in cls._fields]
    except KeyError:
        raise GroupWireError("missing field in %s" % name) from None
    return cls(*(check(v) for check, v in zip(checks, values)))
