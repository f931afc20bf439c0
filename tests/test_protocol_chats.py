"""The codec's fields for several chats at once (issue 11, section 2):
optional, validated, absent from the seed's bytes."""

import pytest

from peerpunch import protocol as P

S1 = "11" * 16


def test_protocol_chats_fields_round_trip_in_serde_order():
    register = P.Register("alice", features=("ext",), nonce=S1, max_chats=16, chats=(("bob", S1),))
    data = P.encode(register)
    assert data == (b'{"Register":{"username":"alice","features":["ext"],"nonce":"%s","max_chats":16,'
                    b'"chats":[["bob","%s"]]}}' % (S1.encode(), S1.encode()))
    assert P.decode(data) == register
    finished = P.SessionFinished(token=S1, partner="bob")
    assert P.encode(finished) == b'{"SessionFinished":{"token":"%s","partner":"bob"}}' % S1.encode()
    assert P.decode(P.encode(finished)) == finished
    ack = P.RegisterAck(features=("ext",), max_chats=16)
    assert P.decode(P.encode(ack)) == ack


def test_protocol_chats_fields_absent_keep_the_seed_bytes():
    assert P.encode(P.Register("alice")) == b'{"Register":{"username":"alice"}}'
    assert P.encode(P.SessionFinished()) == b'"SessionFinished"'
    assert P.encode(P.RegisterAck()) == b'"RegisterAck"'
    assert P.decode(b'"SessionFinished"') == P.SessionFinished(token=None, partner=None)


@pytest.mark.parametrize("body", [
    b'"max_chats":0', b'"max_chats":65', b'"max_chats":-1', b'"max_chats":true', b'"max_chats":2.0',
    b'"max_chats":"2"', b'"chats":"bob"', b'"chats":[["bob"]]', b'"chats":[["bob","%s","x"]]' % S1.encode(),
    b'"chats":[["bob","x"]]', b'"chats":[["","%s"]]' % S1.encode(), b'"chats":[[5,"%s"]]' % S1.encode(),
    b'"chats":[' + b",".join([b'["b","%s"]' % S1.encode()] * (P.MAX_CHATS + 1)) + b"]",
])
def test_protocol_chats_bad_values_are_remote_errors(body):
    with pytest.raises(P.RemoteProtocolError):
        P.decode(b'{"Register":{"username":"alice",' + body + b"}}")


def test_protocol_chats_session_finished_partner_is_a_username():
    with pytest.raises(P.RemoteProtocolError):
        P.decode(b'{"SessionFinished":{"partner":" bob"}}')
    assert P.decode(b'{"SessionFinished":{"partner":"bob"}}').partner == "bob"
