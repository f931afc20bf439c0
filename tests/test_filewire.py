"""The file messages' bytes: golden forms, both ways, and every field from
the network checked."""

import json

import pytest

from peerpunch import filewire as FW
from peerpunch import protocol as P

TID = "0123456789abcdef"
SHA = "ab" * 32
ENTRY = FW.Entry(("photos", "a.jpg"), 1234, SHA)

GOLDEN = [
    (FW.FileOffer(TID, 1, 1234, (ENTRY,)),
     b'\xc0\x01{"FileOffer":{"id":"0123456789abcdef","count":1,"total":1234,'
     b'"files":[[["photos","a.jpg"],1234,"' + SHA.encode() + b'"]]}}'),
    (FW.FileAccept(TID, {0: 1000, 3: 7}),
     b'\xc0\x01{"FileAccept":{"id":"0123456789abcdef","have":[[0,1000],[3,7]]}}'),
    (FW.FileDecline(TID), b'\xc0\x01{"FileDecline":{"id":"0123456789abcdef"}}'),
    (FW.FileCancel(TID, "disk_full"),
     b'\xc0\x01{"FileCancel":{"id":"0123456789abcdef","reason":"disk_full"}}'),
    (FW.FileDone(TID), b'\xc0\x01{"FileDone":{"id":"0123456789abcdef"}}'),
    (FW.Chunk(TID, 2, 65536, b"data"),
     b"\xc0\x02\x01\x23\x45\x67\x89\xab\xcd\xef\x00\x00\x00\x02"
     b"\x00\x00\x00\x00\x00\x01\x00\x00data"),
]


@pytest.mark.parametrize("message,golden", GOLDEN)
def test_filewire_golden_message_encodes_and_decodes_both_ways(message, golden):
    assert FW.encode(message) == golden
    decoded = FW.decode(golden)
    assert type(decoded) is type(message)
    assert FW.encode(decoded) == golden


def control(variant, **body):
    return b"\xc0\x01" + json.dumps({variant: body}).encode()


def offer(files=None, **changes):
    body = {"id": TID, "count": 1, "total": 5, "files": files or [[["a.txt"], 5, SHA]]}
    body.update(changes)
    return control("FileOffer", **body)


HOSTILE = [
    ("not a file message", b"{}"),
    ("too short", b"\xc0"),
    ("unknown kind", b"\xc0\x07{}"),
    ("not JSON", b"\xc0\x01{nope"),
    ("not UTF-8", b"\xc0\x01\xff\xfe"),
    ("two variants", b'\xc0\x01{"FileDone":{"id":"0123456789abcdef"},"FileDecline":{}}'),
    ("unknown variant", control("FileSteal", id=TID)),
    ("missing field", control("FileCancel", id=TID)),
    ("id not hex", control("FileDone", id="0123456789abcdeg")),
    ("id upper case", control("FileDone", id="0123456789ABCDEF")),
    ("id too long", control("FileDone", id=TID + "00")),
    ("id a number", control("FileDone", id=123)),
    ("path escapes", offer([[["..", "etc"], 5, SHA]])),
    ("absolute path", offer([[["/etc/passwd"], 5, SHA]])),
    ("path with separator", offer([[["a/b"], 5, SHA]])),
    ("reserved name", offer([[["CON"], 5, SHA]])),
    ("control character", offer([[["a\nb"], 5, SHA]])),
    ("empty path", offer([[[], 5, SHA]])),
    ("path too deep", offer([[["d"] * 33, 5, SHA]])),
    ("negative size", offer([[["a"], -1, SHA]])),
    ("size a float", offer([[["a"], 5.0, SHA]])),
    ("size a bool", offer([[["a"], True, SHA]])),
    ("size too large", offer([[["a"], 2 ** 53, SHA]])),
    ("sha too short", offer([[["a"], 5, SHA[:-2]]])),
    ("entry too long", offer([[["a"], 5, SHA, 1]])),
    ("count zero", offer(count=0)),
    ("count too large", offer(count=FW.MAX_FILES + 1)),
    ("files not a list", offer(files={"a": 1})),
    ("have index too large", control("FileAccept", id=TID, have=[[FW.MAX_FILES, 1]])),
    ("have index twice", control("FileAccept", id=TID, have=[[0, 1], [0, 2]])),
    ("have negative", control("FileAccept", id=TID, have=[[0, -1]])),
    ("reason empty", control("FileCancel", id=TID, reason="")),
    ("reason too long", control("FileCancel", id=TID, reason="x" * 33)),
    ("data header short", b"\xc0\x02" + bytes(10)),
    ("data too long", FW.DATA_HEADER.pack(0xC0, 2, bytes(8), 0, 0) + bytes(FW.CHUNK + 1)),
    ("data index too large", FW.DATA_HEADER.pack(0xC0, 2, bytes(8), FW.MAX_FILES, 0)),
    ("data offset too large", FW.DATA_HEADER.pack(0xC0, 2, bytes(8), 0, 2 ** 53)),
    ("deeply nested", b"\xc0\x01" + b"[" * 50000),
    ("huge number", b'\xc0\x01{"FileDone":{"id":' + b"9" * 5000 + b"}}"),
    ("control too long", control("FileDone", id=TID, pad="x" * FW.MAX_CONTROL)),
]


@pytest.mark.parametrize("why,message", HOSTILE, ids=[h[0] for h in HOSTILE])
def test_filewire_hostile_message_is_refused_as_remote_error(why, message):
    with pytest.raises(FW.FileWireError) as info:
        FW.decode(message)
    assert isinstance(info.value, P.RemoteProtocolError)


def test_filewire_unknown_reason_reads_as_protocol_and_extra_fields_are_ignored():
    decoded = FW.decode(control("FileCancel", id=TID, reason="martians", later="x"))
    assert decoded == FW.FileCancel(TID, "protocol")


def test_filewire_chat_text_is_never_a_file_message():
    for text in ("hello", "\u00e9t\u00e9", "\U0001F600", "{", " "):
        assert not FW.is_file_message(text.encode("utf-8"))
    assert FW.is_file_message(FW.encode(FW.FileDone(TID)))


def test_filewire_large_offer_is_split_into_messages_within_the_limit():
    entries = [FW.Entry(("tree", "dir%d" % (n // 50), "file-%05d.dat" % n), n, SHA)
               for n in range(3000)]
    messages = FW.offer_messages(TID, entries)
    assert len(messages) > 3
    assert all(len(m) <= FW.MAX_CONTROL + 2 for m in messages)
    decoded = [FW.decode(m) for m in messages]
    assert type(decoded[0]) is FW.FileOffer
    assert decoded[0].count == 3000 and decoded[0].total == sum(range(3000))
    assert all(type(d) is FW.FileMore and d.id == TID for d in decoded[1:])
    assert [e for d in decoded for e in d.files] == entries
