"""The STUN codec, the relay's answering side and the client transaction.

Golden bytes live in tests/data/stun/: the RFC 5769 test vectors, requests
captured from turnutils_stunclient (coturn) and stun 0.97 (stun-client), a
Binding response captured from coturn, and our own answers to them.
"""

import os
import random
import struct
import zlib

import pytest

from peerpunch import protocol as P
from peerpunch import stun, stunserver
from peerpunch.effects import Send
from peerpunch.forwarder import RELAYED

DATA = os.path.join(os.path.dirname(__file__), "data", "stun")
CLIENT = ("192.0.2.1", 32853)
CLIENT6 = ("2001:db8::1", 32853)
RELAY = ("203.0.113.1", 3478)
ALT = ("203.0.113.1", 3479)
RFC5769_TID = bytes.fromhex("b7e7a701bc34d686fa87dfae")


def golden(name):
    with open(os.path.join(DATA, name), "rb") as f:
        return f.read()


def attribute_lengths(data):
    """(type, declared length) of each attribute, read straight off the wire."""
    out, pos = [], stun.HEADER_SIZE
    while pos < len(data):
        attr_type, length = struct.unpack_from("!HH", data, pos)
        out.append((attr_type, length))
        pos += 4 + length + -length % 4
    return out


def request(*attributes, cookie=stun.COOKIE, tid=b"t" * 12):
    return stun.Message(stun.Method.BINDING, stun.Class.REQUEST, tid, attributes, cookie=cookie)


# ------------------------------------------------------------------ the codec


def test_stun_rfc5769_sample_request_parses():
    message = stun.parse_message(golden("rfc5769-request.bin"))
    assert (message.method, message.message_class, message.transaction_id) == (
        stun.Method.BINDING, stun.Class.REQUEST, RFC5769_TID)
    assert message.attributes["SOFTWARE"] == "STUN test client"
    assert message.attributes["USERNAME"] == b"evtj:h6vY"
    assert message.attributes[0x0024] == bytes.fromhex("6e0001ff")    # PRIORITY: not ours, kept raw
    assert message.attributes["FINGERPRINT"] == 0xE57A3BCF
    assert message.unknown_required() == [0x0024]


@pytest.mark.parametrize("name, mapped", [
    ("rfc5769-ipv4-response.bin", ("192.0.2.1", 32853)),
    ("rfc5769-ipv6-response.bin", ("2001:db8:1234:5678:11:2233:4455:6677", 32853)),
])
def test_stun_rfc5769_responses_give_the_mapped_address(name, mapped):
    message = stun.parse_message(golden(name))
    assert message.message_class == stun.Class.SUCCESS
    assert message.attributes["SOFTWARE"] == "test vector"
    assert message.mapped_address() == mapped


@pytest.mark.parametrize("mapped, wire", [
    (("192.0.2.1", 32853), "0001a147e112a643"),
    (("2001:db8:1234:5678:11:2233:4455:6677", 32853),
     "0002a1470113a9faa5d3f179bc25f4b5bed2b9d9"),
])
def test_stun_xor_mapped_address_packs_to_rfc5769_bytes(mapped, wire):
    assert stun.pack_xor_address(mapped, RFC5769_TID).hex() == wire
    assert stun.unpack_xor_address(bytes.fromhex(wire), RFC5769_TID) == mapped


def test_stun_rfc5769_long_term_request_round_trips():
    data = golden("rfc5769-long-term-request.bin")
    message = stun.parse_message(data)
    assert message.attributes["USERNAME"].decode("utf-8") == "\u30de\u30c8\u30ea\u30c3\u30af\u30b9"
    assert message.attributes["REALM"] == b"example.org"
    assert bytes(message) == data


@pytest.mark.parametrize("name", [
    "coturn-binding-response.bin", "natcheck-request.bin", "turnutils-stunclient-request.bin",
    "stun-client-change-none-request.bin", "stun-client-change-ip-request.bin",
    "stun-client-change-port-request.bin", "answer-turnutils-stunclient.bin",
    "answer-stun-client-change-port.bin", "answer-natcheck.bin", "answer-natcheck-ipv6.bin",
    "answer-rfc5769-request-420.bin",
])
def test_stun_golden_bytes_round_trip(name):
    data = golden(name)
    assert bytes(stun.parse_message(data)) == data


@pytest.mark.parametrize("name", ["rfc5769-request.bin", "rfc5769-ipv4-response.bin",
                                  "rfc5769-ipv6-response.bin"])
def test_stun_space_padding_is_read_and_written_as_zeros(name):
    """The RFC 5769 vectors pad with spaces to check that receivers ignore
    padding; we write zeros, so only the padding and the fingerprint differ."""
    data = golden(name)
    again = bytes(stun.parse_message(data))
    assert len(again) == len(data)
    reparsed = stun.parse_message(again)
    original = stun.parse_message(data)
    del reparsed.attributes["FINGERPRINT"], original.attributes["FINGERPRINT"]
    assert reparsed == original


def test_stun_coturn_response_gives_its_rfc5780_addresses():
    message = stun.parse_message(golden("coturn-binding-response.bin"))
    assert message.mapped_address() == ("127.0.0.1", 40000)
    assert message.attributes["RESPONSE-ORIGIN"] == ("127.0.0.1", 34781)
    assert message.other_address(("127.0.0.1", 34781)) == ("127.0.0.2", 34783)


def test_stun_other_address_unspecified_means_the_server_ip():
    message = stun.Message(stun.Method.BINDING, stun.Class.SUCCESS, b"x" * 12,
                           [("OTHER-ADDRESS", ("0.0.0.0", 3479))])
    assert message.other_address(("198.51.100.7", 3478)) == ("198.51.100.7", 3479)


@pytest.mark.parametrize("method", [0x001, 0x003, 0x00A, 0x0FF, 0xFFF])
@pytest.mark.parametrize("cls", list(stun.Class))
def test_stun_message_type_round_trips_method_and_class(method, cls):
    message = stun.parse_message(bytes(stun.Message(method, cls, b"m" * 12)))
    assert (message.method, message.message_class) == (method, cls)


def test_stun_message_type_bits_are_rfc8489s():
    """Binding request 0x0001, success 0x0101, error 0x0111, indication 0x0011."""
    wire = {cls: bytes(stun.Message(stun.Method.BINDING, cls, b"m" * 12))[:2].hex() for cls in stun.Class}
    assert wire == {stun.Class.REQUEST: "0001", stun.Class.SUCCESS: "0101",
                    stun.Class.ERROR: "0111", stun.Class.INDICATION: "0011"}


def _corrupt(data, offset, value):
    return data[:offset] + bytes([value]) + data[offset + 1:]


REQUEST20 = golden("turnutils-stunclient-request.bin")
NATCHECK = golden("natcheck-request.bin")
ADDRESS_ATTR = bytes.fromhex("0001000800019c407f000001")      # MAPPED-ADDRESS 127.0.0.1:40000


def _with(attrs_wire, cookie=b"\x21\x12\xa4\x42"):
    return struct.pack("!HH", 0x0001, len(attrs_wire)) + cookie + b"t" * 12 + attrs_wire


def _fingerprint_then(extra):
    """NATCHECK's attributes, a FINGERPRINT right for the whole length, then *extra*."""
    head = struct.pack("!HHI", 0x0001, len(NATCHECK) - 20 + len(extra), stun.COOKIE) \
        + NATCHECK[8:-8]
    return head + struct.pack("!HHI", 0x8028, 4, zlib.crc32(head) ^ 0x5354554E) + extra


MALFORMED = {
    "empty": (b"", "shorter than its 20-byte header"),
    "short header": (REQUEST20[:19], "shorter than its 20-byte header"),
    "top bits set": (b"\x40" + REQUEST20[1:], "top bits"),
    "length too long": (REQUEST20[:3] + b"\x04" + REQUEST20[4:], "length does not match"),
    "length not a multiple of 4": (REQUEST20[:2] + b"\x00\x01" + REQUEST20[4:] + b"x",
                                   "length does not match"),
    "attribute past the end": (_with(b"\x80\x22\x00\x08abcd"), "runs past the end"),
    "address family 3": (_with(bytes.fromhex("0001000800039c407f000001")), "MAPPED-ADDRESS"),
    "IPv4 address of 16 bytes": (_with(bytes.fromhex("0001001400019c40") + bytes(16)),
                                 "MAPPED-ADDRESS"),
    "XOR address too short": (_with(bytes.fromhex("0020000400019c40")), "XOR-MAPPED-ADDRESS"),
    "CHANGE-REQUEST of 2 bytes": (_with(bytes.fromhex("0003000200000000")), "CHANGE-REQUEST"),
    "SOFTWARE not UTF-8": (_with(bytes.fromhex("80220004fffefdfc")), "SOFTWARE"),
    "error class 7": (_with(bytes.fromhex("0009000400000701")), "ERROR-CODE"),
    "odd UNKNOWN-ATTRIBUTES": (_with(bytes.fromhex("000a000300240000")), "UNKNOWN-ATTRIBUTES"),
    "bad fingerprint": (_corrupt(NATCHECK, len(NATCHECK) - 1, NATCHECK[-1] ^ 1), "fingerprint"),
    "byte flipped under fingerprint": (_corrupt(NATCHECK, 30, NATCHECK[30] ^ 0x20), "fingerprint"),
    "attribute after fingerprint": (_fingerprint_then(ADDRESS_ATTR), "after FINGERPRINT"),
}


@pytest.mark.parametrize("data, why", MALFORMED.values(), ids=list(MALFORMED))
def test_stun_malformed_input_raises_malformed_message(data, why):
    with pytest.raises(stun.MalformedMessage, match=why) as info:
        stun.parse_message(data)
    assert isinstance(info.value, ValueError)


def test_stun_fingerprint_then_helper_is_right():
    assert stun.parse_message(_fingerprint_then(b"")).attributes["SOFTWARE"] == "peerpunch nat-check"


@pytest.mark.parametrize("data, expected", [
    (P.encode(P.Ping()), False), (P.encode(P.SessionFinished()), False),
    (P.encode(P.Unregister()), False), (P.encode(P.Register(username="alice")), False),
    (b" {}", False), (b"\n\"Ping\"", False), (bytes([RELAYED]) + b"sealed", False), (b"", False),
    (REQUEST20, True), (golden("answer-natcheck.bin"), True), (b"\x03", True),
])
def test_stun_is_stun_tells_stun_from_our_json(data, expected):
    """Unit variants encode as a JSON string (first byte 0x22, top bits 00):
    only a first byte of 0-3 means STUN (RFC 7983)."""
    assert stun.is_stun(data) is expected


# ------------------------------------------------------------------ answering


@pytest.mark.parametrize("server, request_name, answer_name, via", [
    ([RELAY], "turnutils-stunclient-request.bin", "answer-turnutils-stunclient.bin", 0),
    ([RELAY, ALT], "stun-client-change-none-request.bin", "answer-stun-client-change-none.bin", 0),
    ([RELAY, ALT], "stun-client-change-port-request.bin", "answer-stun-client-change-port.bin", 1),
    ([RELAY, ALT], "natcheck-request.bin", "answer-natcheck.bin", 0),
    ([RELAY], "rfc5769-request.bin", "answer-rfc5769-request-420.bin", 0),
])
def test_stun_server_answers_with_golden_bytes(server, request_name, answer_name, via):
    replies = stunserver.BindingServer(server).datagram_received(golden(request_name), CLIENT)
    assert replies == [Send(golden(answer_name), CLIENT, via)] and type(replies[0]) is Send


def test_stun_server_answers_ipv6_with_golden_bytes():
    server = stunserver.BindingServer([("2001:db8::3478", 3478), ("2001:db8::3478", 3479)])
    (reply,) = server.datagram_received(NATCHECK, CLIENT6)
    assert reply.data == golden("answer-natcheck-ipv6.bin")


@pytest.mark.parametrize("name", ["stun-client-change-none-request.bin",
                                  "turnutils-stunclient-request.bin", "natcheck-request.bin"])
def test_stun_answer_suits_rfc3489_clients(name):
    """Both mapped-address attributes, only 4-byte-multiple attributes, and
    the 16 bytes after the length echoed (an RFC 3489 id has no cookie)."""
    data = golden(name)
    (reply,) = stunserver.BindingServer([RELAY]).datagram_received(data, ("::ffff:192.0.2.1", 32853))
    reply = reply.data
    message = stun.parse_message(reply)
    assert message.attributes["MAPPED-ADDRESS"] == message.attributes["XOR-MAPPED-ADDRESS"] == CLIENT
    assert all(length % 4 == 0 for _, length in attribute_lengths(reply))
    assert reply[4:20] == data[4:20]


def test_stun_answer_to_unknown_required_attribute_is_420():
    data = bytes(request((0x0024, b"\x6e\x00\x01\xff"), (0x7777, b""), (0x8029, b"x" * 8)))
    (reply,) = stunserver.BindingServer([RELAY]).datagram_received(data, CLIENT)
    message = stun.parse_message(reply.data)
    assert message.message_class == stun.Class.ERROR
    assert message.attributes["ERROR-CODE"] == (420, "Unrecognized")
    assert message.attributes["UNKNOWN-ATTRIBUTES"] == (0x0024, 0x7777)
    assert "XOR-MAPPED-ADDRESS" not in message.attributes


def test_stun_answer_ignores_unknown_optional_attributes():
    data = bytes(request((0x8029, b"x" * 8), ("SOFTWARE", "someone else")))
    assert stun.parse_message(stunserver.answer(data, CLIENT)).mapped_address() == CLIENT


@pytest.mark.parametrize("cls", [stun.Class.SUCCESS, stun.Class.ERROR, stun.Class.INDICATION])
def test_stun_answer_to_anything_but_a_binding_request_is_none(cls):
    message = stun.Message(stun.Method.BINDING, cls, b"x" * 12)
    assert stunserver.answer(bytes(message), CLIENT) is None
    allocate = stun.Message(0x003, stun.Class.REQUEST, b"x" * 12)
    assert stunserver.answer(bytes(allocate), CLIENT) is None


@pytest.mark.parametrize("flags", [stun.CHANGE_IP, stun.CHANGE_PORT, stun.CHANGE_IP | stun.CHANGE_PORT])
def test_stun_change_request_we_cannot_honour_gets_420(flags):
    server = stunserver.BindingServer([RELAY])
    (reply,) = server.datagram_received(bytes(request(("CHANGE-REQUEST", flags))), CLIENT)
    message = stun.parse_message(reply.data)
    assert (reply.via, message.attributes["ERROR-CODE"][0]) == (0, 420)
    assert 0x0003 in message.attributes["UNKNOWN-ATTRIBUTES"]


def test_stun_change_ip_from_rfc3489_client_gets_no_answer():
    """stun 0.97 and pystun count any answer as 'the other address got
    through': silence is the honest answer to a change we cannot make."""
    server = stunserver.BindingServer([RELAY, ALT])
    assert server.datagram_received(golden("stun-client-change-ip-request.bin"), CLIENT) == []
    assert server.stats["stun_unanswered"] == 1


@pytest.mark.parametrize("via", [0, 1])
def test_stun_change_port_answers_from_the_other_socket_to_the_source(via):
    server = stunserver.BindingServer([RELAY, ALT])
    data = bytes(stun.binding_request(change=stun.CHANGE_PORT, software="x" * 40))
    (reply,) = server.datagram_received(data, CLIENT, via)
    message = stun.parse_message(reply.data)
    assert (reply.addr, reply.via) == (CLIENT, 1 - via)
    assert message.attributes["RESPONSE-ORIGIN"] == [RELAY, ALT][1 - via]
    assert message.attributes["OTHER-ADDRESS"] == [RELAY, ALT][1 - via]
    assert message.mapped_address() == CLIENT


def test_stun_other_address_only_when_the_request_leaves_room():
    server = stunserver.BindingServer([RELAY, ALT])
    (bare,) = server.datagram_received(REQUEST20, CLIENT)
    (roomy,) = server.datagram_received(NATCHECK, CLIENT)
    assert "OTHER-ADDRESS" not in stun.parse_message(bare.data).attributes
    assert stun.parse_message(roomy.data).attributes["OTHER-ADDRESS"] == ALT


def test_stun_mapped_allowance_is_both_mapped_address_attributes():
    assert stunserver.mapped_allowance(CLIENT) == 2 * (4 + 8) == 24
    assert stunserver.mapped_allowance(CLIENT6) == 2 * (4 + 20) == 48
    assert stunserver.mapped_allowance(("::ffff:192.0.2.1", 1)) == 24
    server = stunserver.BindingServer([RELAY])
    assert len(server.datagram_received(REQUEST20, CLIENT)[0].data) == 20 + 24
    assert len(server.datagram_received(REQUEST20, CLIENT6)[0].data) == 20 + 48


def test_stun_stateless_answer_is_never_longer_than_its_request():
    """answer() has no budget: a 20-byte request gets nothing, a roomier
    one what fits (the mapped address the client reads first)."""
    assert stunserver.answer(REQUEST20, CLIENT) is None
    assert len(stunserver.answer(NATCHECK, CLIENT6)) <= len(NATCHECK)
    cut = stun.parse_message(stunserver.answer(NATCHECK, CLIENT6))
    assert list(cut.attributes) == ["XOR-MAPPED-ADDRESS", "FINGERPRINT"]


@pytest.mark.parametrize("client", [CLIENT, CLIENT6], ids=["ipv4", "ipv6"])
@pytest.mark.parametrize("change", [0, stun.CHANGE_PORT], ids=["binding", "change port"])
def test_stun_our_padded_requests_get_every_attribute_without_the_budget(client, change):
    """Our client pads its requests to PADDED_REQUEST bytes: every answer it
    reads fits in that, 1,000 times over from one address, and never spends
    the budget of longer answers."""
    server = stunserver.BindingServer([("2001:db8::3478", 3478), ("2001:db8::3478", 3479)]
                                      if ":" in client[0] else [RELAY, ALT])
    for i in range(1000):
        data = bytes(stun.binding_request(change=change))
        (reply,) = server.datagram_received(data, client, 0, now=i / 1000)
        assert len(data) == stun.PADDED_REQUEST and len(reply.data) <= len(data)
        message = stun.parse_message(reply.data)
        assert set(message.attributes) == {"XOR-MAPPED-ADDRESS", "MAPPED-ADDRESS", "OTHER-ADDRESS",
                                           "RESPONSE-ORIGIN", "FINGERPRINT"}, message
    assert server.stats["stun_longer"] == 0 and server.stats["stun_answered"] == 1000
    natcheck = bytes(stun.binding_request(change=change, software="peerpunch nat-check"))
    assert len(natcheck) == stun.PADDED_REQUEST


@pytest.mark.parametrize("cookie", [stun.COOKIE, 0x12345678], ids=["rfc8489", "rfc3489"])
def test_stun_past_the_budget_an_answer_is_cut_to_the_request_size(cookie):
    """One /24 gets STUN_BURST longer answers at once, then one a second;
    past that an answer keeps only what fits in the request (the mapped
    address the client reads), or is not sent."""
    server = stunserver.BindingServer([RELAY, ALT])
    roomy = bytes(request(("SOFTWARE", "x" * 16), cookie=cookie))            # 40 bytes
    bare = bytes(request(cookie=cookie))
    sizes = [len(r.data) for i in range(10) for r in server.datagram_received(
        roomy, ("192.0.2.%d" % i, 1000 + i), now=0.0)]
    assert sizes == [20 + 12 * 3] * 5 + [32] * 5          # + OTHER-ADDRESS, then cut to 40
    cut = stun.parse_message(server.datagram_received(roomy, CLIENT, now=0.0)[0].data)
    assert list(cut.attributes) == ["MAPPED-ADDRESS" if cookie != stun.COOKIE else "XOR-MAPPED-ADDRESS"]
    assert server.datagram_received(bare, CLIENT, now=0.0) == []
    assert server.datagram_received(bare, ("192.0.3.1", 1), now=0.0) != []   # another /24
    assert len(server.datagram_received(bare, CLIENT, now=1.0)[0].data) == 44  # a second later
    assert server.datagram_received(bare, CLIENT, now=1.0) == []


def test_stun_forged_sources_cycled_past_the_table_get_only_the_budget():
    """Issue 10's guarantee, the way finding D was attacked: 4,400 forged
    sources, each in a /24 of its own (more than the 4,096 blocks the budget
    table holds), send 20-byte requests, five rounds in one second. Longer
    answers go only within each block's budget and the table's size; the
    relay of the audit answered all 22,000 with 44 bytes each."""
    server = stunserver.BindingServer([RELAY, ALT])
    sources = [("10.%d.%d.1" % (i // 256, i % 256), 40000) for i in range(4400)]
    sent = received = answers = 0
    per_block = {}
    for round_ in range(5):
        for i, src in enumerate(sources):
            now = round_ * 0.2 + i / 22000
            sent += len(REQUEST20)
            for reply in server.datagram_received(REQUEST20, src, now=now):
                assert len(reply.data) == 44 and reply.addr == src
                received += len(reply.data)
                answers += 1
                per_block[src[0]] = per_block.get(src[0], 0) + 1
    assert answers <= stunserver.MAX_BUDGET_BLOCKS * stunserver.STUN_BURST
    assert max(per_block.values()) <= stunserver.STUN_BURST + stunserver.STUN_RATE * 1.0
    assert len(per_block) <= stunserver.MAX_BUDGET_BLOCKS     # the table is not cycled past
    assert received / sent <= 44 / 20 and answers < 22000
    print("\nFIGURE STUN, 4,400 cycled sources x 5 rounds of 20 B: %d answers, %d B for %d B (%.2fx)"
          % (answers, received, sent, received / sent))


def _random_request(rng):
    attributes = []
    for _ in range(rng.randrange(4)):
        kind = rng.choice(["unknown-required", "unknown-optional", "software", "change", "username"])
        if kind == "unknown-required":
            attributes.append((rng.choice([0x0024, 0x0025, 0x0027, 0x7FFF]), bytes(rng.randrange(9))))
        elif kind == "unknown-optional":
            attributes.append((rng.choice([0x8029, 0x802A, 0xC001]), bytes(rng.randrange(9))))
        elif kind == "software":
            attributes.append(("SOFTWARE", "s" * rng.randrange(50)))
        elif kind == "change":
            attributes.append(("CHANGE-REQUEST", rng.choice([0, 2, 4, 6])))
        else:
            attributes.append(("USERNAME", bytes(rng.randrange(1, 30))))
    if rng.random() < 0.5:
        attributes.append(("FINGERPRINT", 0))
    cookie = stun.COOKIE if rng.random() < 0.8 else rng.getrandbits(32)
    return bytes(request(*attributes, cookie=cookie, tid=bytes(rng.getrandbits(8) for _ in range(12))))


@pytest.mark.parametrize("seed", range(4))
def test_stun_answers_longer_than_their_request_only_within_the_block_budget(seed):
    """The amplification bound, over random requests from random sources,
    both families, with and without an alternate port, from either socket:
    no answer longer than its request plus mapped_allowance(), and those
    longer than their request within the source block's budget."""
    rng = random.Random(seed)
    servers = [([RELAY], [CLIENT]), ([RELAY, ALT], [CLIENT, ("::ffff:198.51.100.9", 1)]),
               ([("2001:db8::3478", 3478), ("2001:db8::3478", 3479)], [CLIENT6]),
               ([("::", 3478), ("::", 3479)], [CLIENT6, CLIENT])]
    answered = 0
    for addresses, clients in servers:
        server = stunserver.BindingServer(addresses)
        longer = {}
        for i in range(300):
            data, client, now = _random_request(rng), rng.choice(clients), i / 100
            for reply in server.datagram_received(data, client, rng.randrange(len(addresses)), now):
                answered += 1
                assert len(reply.data) <= len(data) + stunserver.mapped_allowance(client)
                if len(reply.data) > len(data):
                    longer[client[0]] = longer.get(client[0], 0) + 1
                    assert longer[client[0]] <= stunserver.STUN_BURST + stunserver.STUN_RATE * now
                assert reply.addr == client
                assert all(length % 4 == 0 for _, length in attribute_lengths(reply.data))
    assert answered > 200


def test_stun_server_never_raises_on_garbage_and_counts_it():
    rng = random.Random(7)
    server = stunserver.BindingServer([RELAY, ALT])
    seeds = [golden(n) for n in sorted(os.listdir(DATA))]
    for _ in range(3000):
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randrange(1, 4)):
            if data and rng.random() < 0.7:
                data[rng.randrange(len(data))] = rng.getrandbits(8)
            else:
                del data[rng.randrange(len(data) + 1):]
        for reply in server.datagram_received(bytes(data), CLIENT, rng.randrange(2)):
            assert reply.addr == CLIENT
            assert len(reply.data) <= len(data) + 24
    stats = server.stats
    assert stats["stun_malformed"] > 1000
    assert sum(v for k, v in stats.items() if k not in ("stun_longer", "stun_cut")) == 3000


# --------------------------------------------------------------- transactions


def _response_to(message, cls=stun.Class.SUCCESS, mapped=CLIENT):
    return bytes(stun.Message(stun.Method.BINDING, cls, message.transaction_id,
                              [("XOR-MAPPED-ADDRESS", mapped)], cookie=message.cookie))


def test_stun_transaction_retransmits_on_a_doubling_timeout_then_gives_up():
    t = stun.Transaction(stun.binding_request(), RELAY, rto=1.0, retries=3)
    sent = [(0.0, t.start(0.0))]
    now = 0.0
    while t.next_deadline() is not None:
        now = t.next_deadline()
        out = t.tick(now)
        if out:
            sent.append((now, out))
    assert [when for when, _ in sent] == [0.0, 1.0, 3.0, 7.0]
    assert all(out == [Send(bytes(t.request), RELAY)] for _, out in sent)
    assert (now, t.state) == (15.0, stun.State.TIMED_OUT)


def test_stun_transaction_defaults_are_rfc8489():
    t = stun.Transaction(stun.binding_request(), RELAY)
    t.start(0.0)
    sends = 1
    while t.next_deadline() is not None:
        sends += len(t.tick(t.next_deadline()))
    assert (sends, stun.RETRY_RTO) == (7, 0.5)


def test_stun_transaction_takes_only_its_own_response():
    t = stun.Transaction(stun.binding_request(), RELAY, rto=0)
    t.start(0.0)
    other = stun.binding_request()
    assert not t.datagram_received(_response_to(other), RELAY)
    assert not t.datagram_received(b"\x01\x01garbage", RELAY)
    assert not t.datagram_received(bytes(t.request), RELAY)      # our own request, looped back
    assert t.state is stun.State.WAITING
    assert t.datagram_received(_response_to(t.request), ALT)
    assert (t.state, t.response.mapped_address(), t.response_from) == (stun.State.ANSWERED, CLIENT, ALT)
    assert t.tick(100.0) == [] and t.next_deadline() is None


def test_stun_transaction_takes_an_error_response():
    t = stun.Transaction(stun.binding_request(change=stun.CHANGE_PORT), RELAY)
    t.start(0.0)
    reply = stunserver.answer(bytes(t.request), CLIENT, RELAY)
    assert t.datagram_received(reply, RELAY)
    assert t.response.attributes["ERROR-CODE"][0] == 420


def test_stun_transaction_against_the_server_through_memory():
    server = stunserver.BindingServer([RELAY, ALT])
    t = stun.Transaction(stun.binding_request(software=""), RELAY)
    (send,) = t.start(0.0)
    (reply,) = server.datagram_received(send.data, CLIENT, 0)
    assert t.datagram_received(reply.data, [RELAY, ALT][reply.via])
    assert t.response.mapped_address() == CLIENT
