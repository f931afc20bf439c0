"""Group messages' bytes (peerpunch.groupwire): golden bytes both ways, and
a table of hostile messages, each refused with GroupWireError."""

import types

import pytest

from peerpunch import groupwire as W
from peerpunch.grouptable import _why_not

GID = "0011223344556677"
GOLDEN = [
    (W.GroupStart(GID, "#alice-0011", ("alice", "bob")),
     b'\xf8{"GroupStart":{"group":"0011223344556677","name":"#alice-0011",'
     b'"members":["alice","bob"]}}'),
    (W.GroupJoined(GID, False, ()),
     b'\xf8{"GroupJoined":{"group":"0011223344556677","reply":false,"members":[]}}'),
    (W.GroupLine(GID, 7, "h\u00e9"),
     b'\xf8{"GroupLine":{"group":"0011223344556677","seq":7,"text":"h\xc3\xa9"}}'),
    (W.GroupLeft(GID, "carol"), b'\xf8{"GroupLeft":{"group":"0011223344556677","member":"carol"}}'),
]


@pytest.mark.parametrize("msg, data", GOLDEN)
def test_groupwire_golden_bytes_both_ways(msg, data):
    assert W.encode(msg) == data
    assert W.decode(data) == msg
    assert W.is_group_message(data) and data[0] == 0xF8      # never a UTF-8 byte


def _json(text):
    return b"\xf8" + text.encode("utf-8")


HOSTILE = [
    b"\xf8",
    b"\xf8[]",
    _json('{"GroupLine":{"group":"0011223344556677","seq":0,"text":"x"}}'),
    _json('{"GroupLine":{"group":"0011223344556677","seq":true,"text":"x"}}'),
    _json('{"GroupLine":{"group":"0011223344556677","seq":1.5,"text":"x"}}'),
    _json('{"GroupLine":{"group":"00112233445566","seq":1,"text":"x"}}'),
    _json('{"GroupLine":{"group":"0011223344556677","seq":1,"text":"%s"}}' % ("x" * 70000)),
    _json('{"GroupLine":{"group":"0011223344556677","seq":1}}'),
    _json('{"GroupLine":{"group":"0011223344556677","seq":1,"text":"\\ud800"}}'),
    _json('{"GroupStart":{"group":"0011223344556677","name":"nohash","members":["a","b"]}}'),
    _json('{"GroupStart":{"group":"0011223344556677","name":"#x","members":["a","a"]}}'),
    _json('{"GroupStart":{"group":"0011223344556677","name":"#x","members":["a"]}}'),
    _json('{"GroupStart":{"group":"0011223344556677","name":"#x","members":%s}}'
          % str(["m%d" % i for i in range(17)]).replace("'", '"')),
    _json('{"GroupInvite":{"group":"0011223344556677","name":"#x","members":["a"," b"]}}'),
    _json('{"GroupAdded":{"group":"0011223344556677","member":"\\u001b[2J"}}'),
    _json('{"GroupAdded":{"group":"0011223344556677","member":"%s"}}' % ("n" * 33)),
    _json('{"GroupJoined":{"group":"0011223344556677","reply":1,"members":[]}}'),
    _json('{"GroupKick":{"group":"0011223344556677"}}'),
    _json('{"GroupLeft":{"group":"0011223344556677","member":"a"},"GroupJoined":{}}'),
    b"\xf8\xff\xfe",
]


@pytest.mark.parametrize("data", HOSTILE)
def test_groupwire_hostile_messages_are_refused(data):
    with pytest.raises(W.GroupWireError):
        W.decode(data)


def test_groupwire_deep_nesting_is_a_wire_error_not_a_recursion_error():
    with pytest.raises(W.GroupWireError):       # json raises RecursionError on this
        W.decode(b"\xf8" + b"[" * 60000)


def test_groupwire_unknown_extra_fields_are_ignored():
    data = _json('{"GroupLeft":{"group":"0011223344556677","member":"a","why":"later"}}')
    assert W.decode(data) == W.GroupLeft(GID, "a")


def _chat(features, encrypted=True, stream=True, blocked=False, asking=False):
    secure = types.SimpleNamespace(features=tuple(features), encrypted=encrypted,
                                   blocked=blocked or asking,
                                   pins=types.SimpleNamespace(asking=asking))
    lines = types.SimpleNamespace(carries=lambda f: stream and "stream1" in f)
    return types.SimpleNamespace(secure=secure, lines=lines)


def test_grouptable_only_encrypted_stream_chats_that_announced_groups_carry_them():
    ours = ("ext", "relay1", "noise1", "stream1", W.FEATURE)
    assert _why_not(_chat(ours)) is None
    assert _why_not(_chat(())) == "seed"
    assert _why_not(_chat(("ext", "relay1"), encrypted=False)) == "plain"
    assert _why_not(_chat(ours, encrypted=False)) == "plain"
    assert _why_not(_chat(ours[:-1])) == "no_groups"
    assert _why_not(_chat(ours, stream=False)) == "no_groups"
    assert _why_not(_chat(ours, blocked=True)) == "blocked"
    assert _why_not(_chat(ours, asking=True)) == "pending"      # a chat request unanswered
