"""Tests of the wire codec, peerpunch.protocol.

Golden bytes live in tests/data/ as raw files, one message per file, exactly
as they travel in a datagram (no trailing newline). The seed_* files are the
bytes of the original Rust proof of concept; they must decode to the message
listed in GOLDEN and encode back byte for byte.
"""

import json
import os
import random

import pytest

from peerpunch import protocol as P

DATA_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")


def load(name):
    with open(os.path.join(DATA_DIR, name), "rb") as f:
        return f.read()


GOLDEN = [
    ("seed_register.bin", P.Register(username="alice")),
    ("seed_connect.bin", P.Connect(target_username="bob")),
    ("seed_session_finished.bin", P.SessionFinished()),
    ("seed_register_ack.bin", P.RegisterAck()),
    ("seed_peer_info_v4.bin", P.PeerInfo(peer="198.51.100.20:40000", username="alice")),
    ("seed_peer_info_v6.bin", P.PeerInfo(peer="[2001:db8::1]:40000", username="alice")),
    ("seed_target_not_found.bin", P.TargetNotFound()),
    ("seed_target_busy.bin", P.TargetBusy()),
    ("seed_direct_message.bin", P.DirectMessage(content="hi")),
    ("seed_ping.bin", P.Ping()),
    ("seed_pong.bin", P.Pong()),
    ("seed_goodbye.bin", P.Goodbye()),
    ("ext_register_features.bin", P.Register(username="alice", features=("ext",))),
    ("ext_register_ack_features.bin", P.RegisterAck(features=("ext",))),
    ("ext_peer_info_features.bin",
     P.PeerInfo(peer="[2001:db8::1]:40000", username="bob", features=("ext",))),
    ("ext_error.bin", P.Error(code="name-taken", message="alice is already registered")),
    ("text_non_ascii.bin",
     P.DirectMessage(content="h\u00e9llo \u2603 \U0001f600 \u4f60\u597d \u2028")),
    ("text_escapes.bin",
     P.DirectMessage(content='q"b\\s/n\nt\tr\rb\bf\fz\x00e\x1bu\x1fd\x7f')),
]
GOLDEN_IDS = [name for name, _ in GOLDEN]

UNIT_VARIANTS = sorted(name for name, cls in P.VARIANTS.items() if cls.UNIT)

# serde_json's string escapes: the short forms, \u00XX (lowercase) for the
# other control characters, everything else raw.
_SERDE_SHORT = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t",
                "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def serde_json_string(text):
    """An independent model of how serde_json writes a string."""
    out = []
    for ch in text:
        if ch in _SERDE_SHORT:
            out.append(_SERDE_SHORT[ch])
        elif ch < " ":
            out.append("\\u%04x" % ord(ch))
        else:
            out.append(ch)
    return ('"' + "".join(out) + '"').encode("utf-8")


def direct_message_bytes(text):
    return b'{"DirectMessage":{"content":' + serde_json_string(text) + b"}}"


def peer_info_bytes(peer_json):
    """A PeerInfo whose peer field is the JSON string body *peer_json*."""
    return ('{"PeerInfo":{"peer":"%s","username":"alice"}}' % peer_json).encode("utf-8")


def assert_split_invariants(text, pieces, limit=P.MAX_DATAGRAM):
    assert "".join(pieces) == text
    assert pieces, "split_text must return at least one piece"
    for piece in pieces:
        data = P.encode(P.DirectMessage(content=piece))
        assert len(data) <= limit
        assert data == direct_message_bytes(piece)
    if text:
        assert "" not in pieces


# ------------------------------------------------------------ golden bytes


@pytest.mark.parametrize("name, expected", GOLDEN, ids=GOLDEN_IDS)
def test_decode_golden_gives_expected_message(name, expected):
    assert P.decode(load(name)) == expected


@pytest.mark.parametrize("name, message", GOLDEN, ids=GOLDEN_IDS)
def test_encode_message_gives_golden_bytes(name, message):
    assert P.encode(message) == load(name)


@pytest.mark.parametrize("name", GOLDEN_IDS)
def test_encode_decode_golden_round_trips_byte_for_byte(name):
    data = load(name)
    assert P.encode(P.decode(data)) == data


def test_golden_seed_files_cover_every_seed_variant():
    seed_names = {type(msg).__name__ for name, msg in GOLDEN if name.startswith("seed_")}
    assert seed_names == P.SEED_VARIANTS
    assert len(P.SEED_VARIANTS) == 11


def test_golden_seed_files_use_no_extension_field():
    for name, msg in GOLDEN:
        if name.startswith("seed_"):
            assert b"features" not in load(name)
            assert getattr(msg, "features", None) is None


# --------------------------------------------------- encode: serde's forms


def test_encode_none_extension_fields_are_omitted():
    assert P.encode(P.Register(username="alice", features=None)) == load("seed_register.bin")
    assert P.encode(P.RegisterAck(features=None)) == b'"RegisterAck"'
    assert P.encode(P.PeerInfo(peer="198.51.100.20:40000", username="alice", features=None)) \
        == load("seed_peer_info_v4.bin")


def test_encode_unit_variant_with_extension_fields_uses_map_form():
    data = P.encode(P.RegisterAck(features=("ext", "x.y-z_1")))
    assert data == b'{"RegisterAck":{"features":["ext","x.y-z_1"]}}'
    assert P.decode(data) == P.RegisterAck(features=("ext", "x.y-z_1"))


def test_encode_non_ascii_is_raw_utf8():
    data = P.encode(P.DirectMessage(content="caf\u00e9 \U0001f600"))
    assert data == '{"DirectMessage":{"content":"caf\u00e9 \U0001f600"}}'.encode("utf-8")
    assert b"\\u" not in data


@pytest.mark.parametrize("char, escaped", [
    ("\n", b"\\n"), ("\t", b"\\t"), ("\r", b"\\r"), ("\b", b"\\b"), ("\f", b"\\f"),
    ("\x00", b"\\u0000"), ("\x1f", b"\\u001f"), ("\x1b", b"\\u001b"), ("\x0b", b"\\u000b"),
    ('"', b'\\"'), ("\\", b"\\\\"),
    ("/", b"/"), ("\x7f", b"\x7f"), ("\u2028", "\u2028".encode("utf-8")),
])
def test_encode_control_characters_escaped_like_serde_json(char, escaped):
    data = P.encode(P.DirectMessage(content=char))
    assert data == b'{"DirectMessage":{"content":"' + escaped + b'"}}'
    assert P.decode(data) == P.DirectMessage(content=char)


def test_encode_exactly_max_datagram_is_allowed():
    content = "x" * (P.MAX_DATAGRAM - len(direct_message_bytes("")))
    assert len(P.encode(P.DirectMessage(content=content))) == P.MAX_DATAGRAM


@pytest.mark.parametrize("message", [
    P.DirectMessage(content="x" * (P.MAX_DATAGRAM - len(direct_message_bytes("")) + 1)),
    P.DirectMessage(content="\u00e9" * 497),
    P.DirectMessage(content="\x01" * 170),
    P.Error(code="bad-request", message="m" * 1000),
    P.Register(username="alice", features=("f" * 32,) * 40),
], ids=["ascii", "two-byte", "escaped", "error", "features"])
def test_encode_over_max_datagram_raises_local_protocol_error(message):
    with pytest.raises(P.LocalProtocolError):
        P.encode(message)


# Lone surrogates are what stdin gives for undecodable bytes under
# surrogateescape (e.g. in the POSIX locale): our error, not a crash.
@pytest.mark.parametrize("message", [
    P.DirectMessage(content="\ud800"),
    P.DirectMessage(content="caf\udcc3\udca9"),
    P.Register(username="\udc80"),
], ids=["high", "surrogateescape", "username"])
def test_encode_lone_surrogate_raises_local_protocol_error(message):
    with pytest.raises(P.LocalProtocolError):
        P.encode(message)


# --------------------------------------------------- decode: serde's leniency


@pytest.mark.parametrize("data, expected", [
    (b'{"Register":{"username":"alice","colour":"red","n":{"a":[1,2.5,null]}}}',
     P.Register(username="alice")),
    (b'{"Connect":{"target_username":"bob","features":["ext"]}}',
     P.Connect(target_username="bob")),
    (b'{"DirectMessage":{"x":1,"content":"hi","y":true}}', P.DirectMessage(content="hi")),
    (b'{"Ping":{"x":1}}', P.Ping()),
    (b'{"PeerInfo":{"username":"alice","peer":"198.51.100.20:40000"}}',
     P.PeerInfo(peer="198.51.100.20:40000", username="alice")),
    (b'{"Register":{"username":"alice","features":null}}', P.Register(username="alice")),
    (b' \n{ "Connect" : { "target_username" : "bob" } }\t', P.Connect(target_username="bob")),
], ids=["register", "connect", "direct-message", "unit", "field-order", "null-option",
        "whitespace"])
def test_decode_unknown_fields_and_layout_are_ignored(data, expected):
    assert P.decode(data) == expected


@pytest.mark.parametrize("name", UNIT_VARIANTS)
def test_decode_unit_variant_accepted_in_both_forms(name):
    expected = P.VARIANTS[name]()
    assert P.decode(json.dumps(name).encode()) == expected
    assert P.decode(('{"%s":null}' % name).encode()) == expected
    assert P.decode(('{"%s":{}}' % name).encode()) == expected
    assert P.encode(expected) == ('"%s"' % name).encode()


def test_decode_escaped_text_gives_same_message_as_raw():
    raw = P.decode('{"DirectMessage":{"content":"\u00e9\U0001f600"}}'.encode("utf-8"))
    escaped = P.decode(b'{"DirectMessage":{"content":"\\u00e9\\ud83d\\ude00"}}')
    assert raw == escaped == P.DirectMessage(content="\u00e9\U0001f600")


def test_error_variant_is_an_extension():
    assert "Error" in P.VARIANTS
    assert "Error" not in P.SEED_VARIANTS
    assert P.decode(load("ext_error.bin")).code == P.ERROR_NAME_TAKEN


@pytest.mark.parametrize("data", [
    b'"Hello"', b'{"Hello":{}}', b'{"Hello":null}', b'""', b'{"":{}}',
    b'"ping"', b'{"register":{"username":"alice"}}', b'"Ping "',
    b'"\\ud800"', b'{"\\udc00":null}',
])
def test_decode_unknown_variant_raises_unknown_variant(data):
    with pytest.raises(P.UnknownVariant):
        P.decode(data)
    assert issubclass(P.UnknownVariant, P.RemoteProtocolError)


# --------------------------------------------------------- decode: garbage

NOT_JSON = {
    "empty": b"",
    "blank": b" \n",
    "junk-64k": bytes(random.Random(7).getrandbits(8) for _ in range(64 * 1024)),
    "junk-small": b"\x00\x01\x02 hello",
    "invalid-utf8": b'"Pi\xffng"',
    "truncated-utf8": b'{"DirectMessage":{"content":"\xc3"}}',
    "cesu-surrogate": b'{"DirectMessage":{"content":"\xed\xa0\x80"}}',
    "overlong-utf8": b'{"DirectMessage":{"content":"\xc0\xaf"}}',
    "latin1": b'{"DirectMessage":{"content":"caf\xe9"}}',
    "bom": b'\xef\xbb\xbf"Ping"',
    "truncated": b'{"Register":{"username":"alice"}',
    "trailing-garbage": b'"Ping" x',
    "two-documents": b'"Ping""Pong"',
    "single-quotes": b"'Ping'",
    "raw-newline-in-string": b'{"DirectMessage":{"content":"a\nb"}}',
    "bad-escape": b'{"DirectMessage":{"content":"\\x41"}}',
    "trailing-comma": b'{"Register":{"username":"alice",}}',
    "nan": b'{"Ping":{"x":NaN}}',
    "infinity": b'{"Ping":{"x":Infinity}}',
    "minus-infinity": b'{"DirectMessage":{"content":-Infinity}}',
    "bare-nan": b"NaN",
    "deep-arrays-open": b"[" * P.MAX_DATAGRAM,
    "deep-arrays-closed": b"[" * 512 + b"]" * 512,
    "deep-in-field": b'{"Ping":{"x":' + b"[" * 1000 + b"}}",
    "deep-objects": b'{"a":' * 200 + b"1" + b"}" * 200,
}

NOT_AN_ENUM = {
    "empty-list": b"[]",
    "list": b'["Ping"]',
    "list-of-map": b'[{"Register":{"username":"alice"}}]',
    "int": b"1",
    "float": b"1.5",
    "null": b"null",
    "true": b"true",
    "empty-object": b"{}",
    "two-keys": b'{"Ping":null,"Pong":null}',
    "two-keys-same-variant-bodies": b'{"Register":{"username":"a"},"Connect":{"target_username":"b"}}',
}

BAD_BODIES = {
    "struct-null": b'{"Register":null}',
    "struct-as-string": b'"Register"',
    "struct-as-string-peer-info": b'"PeerInfo"',
    "body-string": b'{"Register":"alice"}',
    "body-list": b'{"Register":["alice"]}',
    "body-number": b'{"DirectMessage":5}',
    "unit-body-number": b'{"Ping":1}',
    "unit-body-string": b'{"Ping":"x"}',
    "unit-body-list": b'{"Ping":[]}',
    "unit-body-true": b'{"Ping":true}',
    "unit-ack-body-list": b'{"RegisterAck":["ext"]}',
}

MISSING_FIELDS = {
    "register": b'{"Register":{}}',
    "register-null": b'{"Register":{"username":null}}',
    "register-features-only": b'{"Register":{"features":["ext"]}}',
    "connect": b'{"Connect":{}}',
    "connect-misspelt": b'{"Connect":{"target":"bob"}}',
    "peer-info-no-username": b'{"PeerInfo":{"peer":"198.51.100.20:40000"}}',
    "peer-info-no-peer": b'{"PeerInfo":{"username":"alice"}}',
    "direct-message": b'{"DirectMessage":{}}',
    "error-no-message": b'{"Error":{"code":"bad-request"}}',
    "error-no-code": b'{"Error":{"message":"x"}}',
}

WRONG_TYPES = {
    "username-int": b'{"Register":{"username":5}}',
    "username-true": b'{"Register":{"username":true}}',
    "username-list": b'{"Register":{"username":["alice"]}}',
    "username-object": b'{"Register":{"username":{"a":1}}}',
    "target-int": b'{"Connect":{"target_username":1}}',
    "target-list": b'{"Connect":{"target_username":["bob"]}}',
    "content-int": b'{"DirectMessage":{"content":1}}',
    "content-float": b'{"DirectMessage":{"content":1e999}}',
    "content-false": b'{"DirectMessage":{"content":false}}',
    "content-list": b'{"DirectMessage":{"content":["hi"]}}',
    "peer-int": b'{"PeerInfo":{"peer":40000,"username":"alice"}}',
    "peer-list": b'{"PeerInfo":{"peer":["198.51.100.20",40000],"username":"alice"}}',
    "peer-username-int": b'{"PeerInfo":{"peer":"198.51.100.20:40000","username":7}}',
    "code-int": b'{"Error":{"code":1,"message":"x"}}',
    "message-object": b'{"Error":{"code":"x","message":{}}}',
}

BAD_FEATURES = {
    "string": b'{"Register":{"username":"alice","features":"ext"}}',
    "object": b'{"Register":{"username":"alice","features":{"ext":true}}}',
    "int-item": b'{"Register":{"username":"alice","features":[1]}}',
    "null-item": b'{"RegisterAck":{"features":[null]}}',
    "list-item": b'{"RegisterAck":{"features":[["ext"]]}}',
    "empty-name": b'{"RegisterAck":{"features":[""]}}',
    "upper-case": b'{"RegisterAck":{"features":["EXT"]}}',
    "blank": b'{"RegisterAck":{"features":["e xt"]}}',
    "leading-dot": b'{"RegisterAck":{"features":[".ext"]}}',
    "trailing-newline": b'{"RegisterAck":{"features":["ext\\n"]}}',
    "too-long-name": ('{"RegisterAck":{"features":["%s"]}}' % ("f" * 33)).encode(),
    "non-ascii": '{"RegisterAck":{"features":["\u00e9xt"]}}'.encode("utf-8"),
    "too-many": ('{"RegisterAck":{"features":[%s]}}'
                 % ",".join('"f%d"' % i for i in range(P.MAX_FEATURES + 1))).encode(),
    "peer-info": b'{"PeerInfo":{"peer":"198.51.100.20:40000","username":"alice","features":5}}',
}

LONE_SURROGATES = {
    "content-high": b'{"DirectMessage":{"content":"\\ud800"}}',
    "content-low": b'{"DirectMessage":{"content":"a\\udc00b"}}',
    "content-reversed-pair": b'{"DirectMessage":{"content":"\\ude00\\ud83d"}}',
    "content-high-at-end": b'{"DirectMessage":{"content":"\\ud83d"}}',
    "username": b'{"Register":{"username":"al\\ud800ice"}}',
    "target": b'{"Connect":{"target_username":"\\udfff"}}',
    "peer-username": b'{"PeerInfo":{"peer":"198.51.100.20:40000","username":"\\ud800"}}',
    "peer": b'{"PeerInfo":{"peer":"198.51.100.20:4000\\ud800","username":"alice"}}',
    "feature": b'{"RegisterAck":{"features":["\\ud800"]}}',
    "error-code": b'{"Error":{"code":"\\ud800","message":"x"}}',
    "error-message": b'{"Error":{"code":"x","message":"\\udbff"}}',
}

BAD_USERNAMES = {
    "empty": "",
    "too-long": "a" * (P.MAX_USERNAME + 1),
    "too-long-multibyte": "\u00e9" * (P.MAX_USERNAME + 1),
    "nul": "al\x00ice",
    "newline": "alice\n",
    "tab-inside": "al\tice",
    "escape": "\x1b[31malice",
    "del": "alice\x7f",
    "c1-control": "alice\x85",
    "leading-space": " alice",
    "trailing-space": "alice ",
    "only-space": " ",
    "nbsp": "alice\u00a0",
    "ideographic-space": "\u3000alice",
    "zero-width": "al\u200bice",
    "bidi-override": "\u202ealice",
}


def _cases(*tables):
    return [pytest.param(data, id="%s:%s" % (label, key))
            for label, table in tables for key, data in table.items()]


def _username_cases():
    for key, name in BAD_USERNAMES.items():
        quoted = json.dumps(name).encode()
        yield "register-" + key, b'{"Register":{"username":' + quoted + b"}}"
        yield "peer-info-" + key, (b'{"PeerInfo":{"peer":"198.51.100.20:40000","username":'
                                   + quoted + b"}}")


GARBAGE = _cases(("not-json", NOT_JSON), ("not-an-enum", NOT_AN_ENUM),
                 ("bad-body", BAD_BODIES), ("missing", MISSING_FIELDS),
                 ("wrong-type", WRONG_TYPES), ("features", BAD_FEATURES),
                 ("surrogate", LONE_SURROGATES), ("username", dict(_username_cases())))


@pytest.mark.parametrize("data", GARBAGE)
def test_decode_garbage_raises_remote_protocol_error(data):
    with pytest.raises(P.RemoteProtocolError):
        P.decode(data)


@pytest.mark.parametrize("data", _cases(("bad-body", BAD_BODIES), ("missing", MISSING_FIELDS),
                                        ("wrong-type", WRONG_TYPES)))
def test_decode_bad_known_variant_is_not_unknown_variant(data):
    with pytest.raises(P.RemoteProtocolError) as excinfo:
        P.decode(data)
    assert not isinstance(excinfo.value, P.UnknownVariant)


def test_decode_deep_nesting_never_raises_recursion_error():
    for depth in range(1, P.MAX_DATAGRAM + 1, 7):
        for data in (b"[" * depth, b"[" * (depth // 2) + b"]" * (depth // 2),
                     b'{"Ping":{"x":' + b"[" * (depth - 16) + b"}}"):
            with pytest.raises(P.RemoteProtocolError):
                P.decode(data[:P.MAX_DATAGRAM])


def test_decode_max_datagram_accepted_and_one_more_byte_rejected():
    overhead = len(direct_message_bytes(""))
    fits = direct_message_bytes("x" * (P.MAX_DATAGRAM - overhead))
    assert len(fits) == P.MAX_DATAGRAM
    assert P.decode(fits) == P.DirectMessage(content="x" * (P.MAX_DATAGRAM - overhead))
    with pytest.raises(P.RemoteProtocolError):
        P.decode(direct_message_bytes("x" * (P.MAX_DATAGRAM - overhead + 1)))
    with pytest.raises(P.RemoteProtocolError):
        P.decode(b" " * (P.MAX_DATAGRAM + 1 - len(b'"Ping"')) + b'"Ping"')


@pytest.mark.parametrize("name", [
    "a", "alice", "a" * P.MAX_USERNAME, "\u00e9" * P.MAX_USERNAME,
    "\U0001f600" * P.MAX_USERNAME, "alice smith", "al\u00efce", "\u4f60\u597d", "a-b_c.d@e",
])
def test_decode_username_at_limits_accepted(name):
    data = json.dumps({"Register": {"username": name}}, ensure_ascii=False,
                      separators=(",", ":")).encode("utf-8")
    assert P.decode(data) == P.Register(username=name)
    assert P.encode(P.decode(data)) == data
    assert P.check_username(name) == name


@pytest.mark.parametrize("name", list(BAD_USERNAMES.values()) + [5, None, ["a"]],
                         ids=list(BAD_USERNAMES) + ["int", "none", "list"])
def test_check_username_bad_raises_value_error(name):
    with pytest.raises(ValueError):
        P.check_username(name)


def test_decode_connect_target_need_not_be_valid_username():
    # The relay answers TargetNotFound for an impossible name; it is not garbage.
    data = b'{"Connect":{"target_username":" no\\tsuch user "}}'
    assert P.decode(data) == P.Connect(target_username=" no\tsuch user ")


def test_decode_features_at_limits_accepted():
    names = ["f%d" % i for i in range(P.MAX_FEATURES - 1)] + ["a" + "b" * 31]
    data = json.dumps({"RegisterAck": {"features": names}}, separators=(",", ":")).encode()
    assert P.decode(data) == P.RegisterAck(features=tuple(names))
    assert P.decode(b'{"RegisterAck":{"features":[]}}') == P.RegisterAck(features=())


def test_decode_mutated_golden_bytes_raise_only_remote_protocol_error():
    rng = random.Random(20240601)
    inputs = []
    for name in GOLDEN_IDS:
        data = load(name)
        inputs += [data[:i] for i in range(len(data))]
        for _ in range(100):
            mutated = bytearray(data)
            for _ in range(rng.randint(1, 3)):
                op = rng.randrange(3)
                i = rng.randrange(len(mutated) + 1)
                if op == 0 and i < len(mutated):
                    mutated[i] = rng.randrange(256)
                elif op == 1:
                    mutated[i:i] = bytes([rng.choice(b'"{}[]:,\\ nu0')])
                else:
                    del mutated[i:i + rng.randint(1, 4)]
            inputs.append(bytes(mutated))
    accepted = 0
    for data in inputs:
        try:
            msg = P.decode(data)
        except P.RemoteProtocolError:
            continue
        accepted += 1
        again = P.encode(msg)
        assert P.decode(again) == msg
    assert 0 < accepted < len(inputs)


# -------------------------------------------------------- PeerInfo.peer

GOOD_PEERS = {
    "198.51.100.20:40000": ("198.51.100.20", 40000),
    "0.0.0.1:1": ("0.0.0.1", 1),
    "255.255.255.255:65535": ("255.255.255.255", 65535),
    "[2001:db8::1]:40000": ("2001:db8::1", 40000),
    "[2001:DB8:0:0::1]:40000": ("2001:db8::1", 40000),
    "[::1]:1": ("::1", 1),
    "[::]:65535": ("::", 65535),
}

BAD_PEERS = {
    "hostname": "example.com:40000",
    "localhost": "localhost:40000",
    "v6-no-brackets": "2001:db8::1:40000",
    "v6-no-brackets-short": "::1:40000",
    "v4-in-brackets": "[198.51.100.20]:40000",
    "port-0": "198.51.100.20:0",
    "port-65536": "198.51.100.20:65536",
    "port-99999": "198.51.100.20:99999",
    "port-too-many-digits": "198.51.100.20:000080",
    "port-negative": "198.51.100.20:-1",
    "port-plus": "198.51.100.20:+80",
    "port-space": "198.51.100.20: 80",
    "port-hex": "198.51.100.20:0x50",
    "port-letter": "198.51.100.20:8O",
    "port-arabic-digits": "198.51.100.20:\u0668\u0660",
    "port-superscript": "198.51.100.20:\u00b2",
    "no-port": "198.51.100.20",
    "empty-port": "198.51.100.20:",
    "v6-no-port": "[2001:db8::1]",
    "v6-empty-port": "[2001:db8::1]:",
    "v6-no-colon": "[2001:db8::1]40000",
    "v6-unclosed": "[2001:db8::1:40000",
    "v6-extra": "[2001:db8::1]:40000:",
    "no-host": ":40000",
    "empty-brackets": "[]:40000",
    "empty": "",
    "v4-short": "198.51.100:40000",
    "v4-octet-256": "256.51.100.20:40000",
    "v4-leading-zero": "198.051.100.20:40000",
    "leading-space": " 198.51.100.20:40000",
    "trailing-space": "198.51.100.20:40000 ",
    "cidr": "198.51.100.0/24:40000",
    "v6-cidr": "[2001:db8::/32]:40000",
    "url": "udp://198.51.100.20:40000",
}

# Interface-name zones cannot be parsed by the seed's SocketAddr and mean
# nothing on another host. Python 3.8's ipaddress rejects them; 3.9+ accepts
# any text after "%".
ZONE_PEERS = {
    "zone-name": "[fe80::1%eth0]:40000",
    "zone-bracket": "[fe80::1%a]b]:40000",
    "zone-space": "[fe80::1% ]:40000",
    "zone-surrogate": "[fe80::1%\\ud800]:40000",   # JSON escape, see peer_info_bytes
}


@pytest.mark.parametrize("text, addr", GOOD_PEERS.items(), ids=list(GOOD_PEERS))
def test_parse_endpoint_literal_gives_canonical_addr(text, addr):
    assert P.parse_endpoint(text) == addr


@pytest.mark.parametrize("text", GOOD_PEERS, ids=list(GOOD_PEERS))
def test_decode_peer_info_literal_peer_kept_verbatim(text):
    data = peer_info_bytes(text)
    assert P.decode(data) == P.PeerInfo(peer=text, username="alice")
    assert P.encode(P.decode(data)) == data


@pytest.mark.parametrize("text", BAD_PEERS.values(), ids=list(BAD_PEERS))
def test_parse_endpoint_bad_raises_value_error(text):
    with pytest.raises(ValueError):
        P.parse_endpoint(text)


@pytest.mark.parametrize("text", BAD_PEERS.values(), ids=list(BAD_PEERS))
def test_decode_peer_info_bad_peer_raises_remote_protocol_error(text):
    with pytest.raises(P.RemoteProtocolError):
        P.decode(peer_info_bytes(text))


# Python 3.9+'s ipaddress accepts "%<anything>" zones; a zone with a lone
# surrogate once reached sendto() and killed the network thread. No zones.
@pytest.mark.parametrize("text", ZONE_PEERS.values(), ids=list(ZONE_PEERS))
def test_decode_peer_info_zone_id_raises_remote_protocol_error(text):
    with pytest.raises(P.RemoteProtocolError):
        P.decode(peer_info_bytes(text))


# ---------------------------------------------------------- addresses


@pytest.mark.parametrize("addr, text", [
    (("198.51.100.20", 40000), "198.51.100.20:40000"),
    (("2001:db8::1", 40000, 0, 0), "[2001:db8::1]:40000"),
    (("::1", 1, 0, 0), "[::1]:1"),
    (("::ffff:198.51.100.20", 40000, 0, 0), "198.51.100.20:40000"),
    (("::ffff:c633:6414", 40000, 0, 0), "198.51.100.20:40000"),
], ids=["v4", "v6", "v6-loopback", "v4-mapped", "v4-mapped-hex"])
def test_format_endpoint_socket_addr_gives_seed_text(addr, text):
    assert P.format_endpoint(addr) == text
    assert P.parse_endpoint(text) == P.canonical_addr(addr)
    assert P.decode(peer_info_bytes(text)).peer == text


# The relay writes PeerInfo.peer from a recvfrom address; a link-local sender
# must not put "[fe80::1%eth0]:40000" on the wire (the seed cannot parse it).
def test_format_endpoint_scoped_v6_gives_valid_peer():
    text = P.format_endpoint(("fe80::1%eth0", 40000, 0, 2))
    assert "eth0" not in text
    assert P.decode(P.encode(P.PeerInfo(peer=text, username="bob"))).peer == text
    assert P.parse_endpoint(text)[1] == 40000


@pytest.mark.parametrize("addr, canonical", [
    (("198.51.100.20", 40000), ("198.51.100.20", 40000)),
    (("::ffff:198.51.100.20", 40000, 0, 0), ("198.51.100.20", 40000)),
    (("::FFFF:198.51.100.20", 40000, 0, 0), ("198.51.100.20", 40000)),
    (("2001:DB8:0:0::1", 5, 0, 0), ("2001:db8::1", 5)),
    (("fe80::1%eth0", 5, 0, 2), ("fe80::1", 5)),
    (("::1", 5, 0, 0), ("::1", 5)),
], ids=["v4", "v4-mapped", "v4-mapped-upper", "v6-long", "v6-scoped", "v6-loopback"])
def test_canonical_addr_socket_addr_gives_ip_and_port(addr, canonical):
    assert P.canonical_addr(addr) == canonical


def test_canonical_addr_same_host_compares_equal_across_families():
    assert P.canonical_addr(("198.51.100.20", 40000)) == \
        P.canonical_addr(("::ffff:198.51.100.20", 40000, 0, 0))


@pytest.mark.parametrize("features, expected", [
    (None, False), ((), False), (("ext",), True), (("other", "ext"), True), (("other",), False),
])
def test_speaks_extensions_features_decide(features, expected):
    assert P.speaks_extensions(features) is expected


# ---------------------------------------------------------------- split_text

BUDGET = P.MAX_DATAGRAM - len(direct_message_bytes(""))


def test_split_text_empty_gives_one_empty_piece():
    assert P.split_text("") == [""]


def test_split_text_short_text_is_one_piece():
    assert P.split_text("hello world") == ["hello world"]


def test_split_text_exact_fit_is_one_piece():
    assert P.split_text("x" * BUDGET) == ["x" * BUDGET]
    assert P.split_text("x" * (BUDGET + 1)) == ["x" * BUDGET, "x"]


def test_split_text_without_spaces_fills_each_piece():
    text = "".join(chr(ord("a") + i % 26) for i in range(2500))
    pieces = P.split_text(text)
    assert_split_invariants(text, pieces)
    assert [len(p) for p in pieces] == [BUDGET, BUDGET, 2500 - 2 * BUDGET]


def test_split_text_with_spaces_breaks_after_a_blank():
    words = ["word%d" % i for i in range(400)]
    text = " ".join(words)
    pieces = P.split_text(text)
    assert_split_invariants(text, pieces)
    assert len(pieces) > 1
    for piece in pieces[:-1]:
        assert piece.endswith(" ")
        assert len(P.encode(P.DirectMessage(content=piece))) > P.MAX_DATAGRAM // 2


def test_split_text_distant_blank_cuts_hard():
    text = "a " + "b" * 2000
    pieces = P.split_text(text)
    assert_split_invariants(text, pieces)
    assert len(P.encode(P.DirectMessage(content=pieces[0]))) == P.MAX_DATAGRAM


@pytest.mark.parametrize("unit", [
    "\u00e9", "\u20ac", "\U0001f600", "a\U0001f600", '"', "\\", '\\"',
    "\n", "\x01", "\x1f", "\t ", "\x7f", "\u2028", "e\u0301",
], ids=["2-byte", "3-byte", "4-byte", "mixed", "quote", "backslash", "both",
        "newline", "ctrl-01", "ctrl-1f", "tab-space", "del", "line-separator", "combining"])
def test_split_text_costly_characters_fit_and_join(unit):
    text = unit * (3 * P.MAX_DATAGRAM // len(unit))
    pieces = P.split_text(text)
    assert_split_invariants(text, pieces)
    assert len(pieces) >= 2


@pytest.mark.parametrize("offset", range(8))
def test_split_text_wide_character_at_boundary_moves_whole(offset):
    text = "x" * (BUDGET - offset) + "\U0001f600" * 4 + "\x01" * 4
    pieces = P.split_text(text)
    assert_split_invariants(text, pieces)


@pytest.mark.parametrize("limit", [38, 40, 64, 100, 333, P.MAX_DATAGRAM])
def test_split_text_custom_limit_fits(limit):
    text = ("ab \u00e9\U0001f600\"\\\n\x01 " * 200) + "end"
    pieces = P.split_text(text, limit)
    assert_split_invariants(text, pieces, limit)


# Below overhead + 6 bytes some characters can never fit.
def test_split_text_limit_too_small_raises_local_protocol_error():
    with pytest.raises(P.LocalProtocolError):
        P.split_text("\x01", limit=len(direct_message_bytes("")) + 5)


# ----------------------------------------------------------- property tests


def _random_text(rng):
    kind = rng.randrange(4)
    if kind == 0:       # short, any code point but surrogates
        length = rng.randrange(0, 40)
    else:               # long enough to need splitting
        length = rng.randrange(0, 2000)
    alphabet = rng.choice([
        "ab c", ' "\\\n\t\x00\x1f/', "\u00e9\u20ac\U0001f600 ", None])
    chars = []
    for _ in range(length):
        if alphabet is not None and rng.random() < 0.9:
            chars.append(rng.choice(alphabet))
        else:
            code = rng.randrange(0x110000)
            while 0xD800 <= code <= 0xDFFF:
                code = rng.randrange(0x110000)
            chars.append(chr(code))
    return "".join(chars)


def test_direct_message_random_text_round_trips_and_splits():
    rng = random.Random(1024)
    for _ in range(1000):
        text = _random_text(rng)
        expected = direct_message_bytes(text)
        if len(expected) <= P.MAX_DATAGRAM:
            data = P.encode(P.DirectMessage(content=text))
            assert data == expected
            assert P.decode(data) == P.DirectMessage(content=text)
        else:
            with pytest.raises(P.LocalProtocolError):
                P.encode(P.DirectMessage(content=text))
        pieces = P.split_text(text)
        assert_split_invariants(text, pieces)
        for piece in pieces:
            assert P.decode(P.encode(P.DirectMessage(content=piece))).content == piece


@pytest.mark.parametrize("data", [
    b'{"Register":{"username":"a","username":"b"}}',
    b'{"Ping":null,"Ping":null}',
], ids=["field", "variant"])
def test_decode_duplicate_keys_raise_remote_protocol_error(data):
    # serde_json refuses duplicate fields instead of letting the last one win
    with pytest.raises(P.RemoteProtocolError):
        P.decode(data)


def test_mapping_extension_round_trips_and_unknown_values_mean_unknown():
    for mapping in P.MAPPINGS:
        reg = P.Register("alice", features=("ext",), mapping=mapping)
        assert P.decode(P.encode(reg)) == reg
        info = P.PeerInfo("198.51.100.1:5", "bob", mapping=mapping)
        assert P.decode(P.encode(info)).mapping == mapping
    assert P.encode(P.Register("alice")) == b'{"Register":{"username":"alice"}}'
    # a later version's value (or junk) is "unknown", not a reason to drop the Register
    for other in (b'"address-dependent"', b'1', b'["dependent"]', b'null', b'{}'):
        msg = P.decode(b'{"Register":{"username":"alice","mapping":%s}}' % other)
        assert msg.username == "alice" and msg.mapping is None


def test_connect_token_extension_round_trips_and_is_validated():
    msg = P.Connect("bob", token="ab" * 16)
    assert P.decode(P.encode(msg)) == msg
    with pytest.raises(P.RemoteProtocolError):
        P.decode(b'{"Connect":{"target_username":"bob","token":"not hex"}}')


def test_watch_extension_round_trips_within_its_bounds():
    names = tuple("user%d" % i for i in range(P.MAX_WATCH))
    reg = P.Register("alice", features=("ext",), token="ab" * 16, watch=names)
    assert P.decode(P.encode(reg)) == reg
    assert P.encode(P.Register("alice", watch=("bob",))) == \
        b'{"Register":{"username":"alice","watch":["bob"]}}'
    assert P.decode(b'{"Register":{"username":"alice","watch":[]}}').watch == ()


@pytest.mark.parametrize("watch", [
    '["u1","u2","u3","u4","u5","u6","u7","u8","u9"]', '"bob"', '[5]', '[""]', '["%s"]' % ("x" * 33),
    '[" bob"]', '["b\\u0000b"]', '{"bob":1}',
], ids=["nine", "string", "number", "empty", "long", "blank", "control", "object"])
def test_watch_extension_out_of_bounds_is_refused(watch):
    with pytest.raises(P.RemoteProtocolError):
        P.decode(('{"Register":{"username":"alice","watch":%s}}' % watch).encode())


def test_online_variant_is_a_small_extension():
    assert "Online" not in P.SEED_VARIANTS
    msg = P.Online(username="bob")
    assert P.encode(msg) == b'{"Online":{"username":"bob"}}'
    assert P.decode(P.encode(msg)) == msg
    longest = P.encode(P.Online(username="\U0001f600" * P.MAX_USERNAME))
    assert len(longest) <= 160
    with pytest.raises(P.RemoteProtocolError):
        P.decode(b'{"Online":{}}')
    assert P.FEATURE_WATCH in P.KNOWN_FEATURES
