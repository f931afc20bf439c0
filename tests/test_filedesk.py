"""The desk of one chat: file messages routed by id, unknown ids ignored,
unanswered offers bounded, ended transfers forgotten."""

import pytest

from peerpunch import filewire as FW
from peerpunch import transfer as T
from peerpunch.filedesk import MAX_UNANSWERED, Desk
from peerpunch.filerecv import Receiver
from peerpunch.filesend import Sender

SHA = "ef" * 32
ENTRIES = [FW.Entry(("a.txt",), 3, SHA)]


def relay(source, target, now=0.0):
    """Every message from desk *source* into desk *target*: (transfer, effects) pairs."""
    return [target.received(m, now) for m in source.messages()]


def test_filedesk_offer_opens_a_receiver_and_answers_reach_the_sender():
    alice, bob = Desk(), Desk()
    sender = alice.offer(ENTRIES, tid="00000000000000a1")
    [(receiver, effects)] = relay(alice, bob)
    assert type(receiver) is Receiver and receiver.id == sender.id and effects == []
    assert bob.events() == [T.FileOffered(sender.id, ("a.txt",), 1, 3)]
    receiver.accept({}, 0.0)
    [(to, _)] = relay(bob, alice)
    assert to is sender and sender.state == T.SENDING


def test_filedesk_data_reaches_the_receiver_as_effects():
    alice, bob = Desk(), Desk()
    sender = alice.offer(ENTRIES)
    relay(alice, bob)
    bob.get(sender.id).accept({}, 0.0)
    relay(bob, alice)
    read = sender.next_read()
    transfer, effects = bob.received(sender.chunk(read, b"abc"), 1.0)
    assert transfer is bob.get(sender.id)
    assert effects == [T.Write(0, 0, b"abc"), T.Verify(0)]


@pytest.mark.parametrize("message", [
    FW.FileAccept("00000000000000ff", {}),
    FW.FileDone("00000000000000ff"),
    FW.FileCancel("00000000000000ff", "cancelled"),
    FW.FileMore("00000000000000ff", tuple(ENTRIES)),
    FW.Chunk("00000000000000ff", 0, 0, b"x"),
])
def test_filedesk_message_for_an_unknown_id_is_ignored(message):
    desk = Desk()
    assert desk.received(FW.encode(message), 0.0) == (None, [])
    assert desk.transfers == {} and desk.messages() == [] and desk.events() == []


def test_filedesk_message_for_the_wrong_end_is_ignored():
    desk = Desk()
    sender = desk.offer(ENTRIES)
    chunk = FW.encode(FW.Chunk(sender.id, 0, 0, b"x"))
    assert desk.received(chunk, 0.0) == (None, [])
    offer = FW.encode(FW.FileOffer(sender.id, 1, 3, tuple(ENTRIES)))   # our own id
    assert desk.received(offer, 0.0) == (None, [])
    assert desk.transfers == {sender.id: sender} and sender.state == T.OFFERED


def test_filedesk_unanswered_offers_are_bounded():
    desk = Desk()
    for n in range(MAX_UNANSWERED + 2):
        offer = FW.FileOffer("%016x" % n, 1, 3, tuple(ENTRIES))
        transfer, _ = desk.received(FW.encode(offer), 0.0)
        assert (transfer is None) == (n >= MAX_UNANSWERED)
    desk.get("%016x" % 0).decline()
    desk.messages()
    desk.events()
    offer = FW.FileOffer("%016x" % 99, 1, 3, tuple(ENTRIES))
    assert desk.received(FW.encode(offer), 0.0)[0] is not None


def test_filedesk_forgets_an_ended_transfer_only_after_its_messages_left():
    alice, bob = Desk(), Desk()
    sender = alice.offer(ENTRIES)
    alice.messages()
    sender.cancel()
    alice.events()
    assert alice.get(sender.id) is sender             # its FileCancel still waits
    assert FW.decode(alice.messages()[0]) == FW.FileCancel(sender.id, "cancelled")
    alice.events()
    assert alice.get(sender.id) is None
    assert alice.received(FW.encode(FW.FileAccept(sender.id, {})), 0.0) == (None, [])


def test_filedesk_partner_gone_ends_every_transfer():
    alice, bob = Desk(), Desk()
    alice.offer(ENTRIES)
    relay(alice, bob)
    mine = alice.offer(ENTRIES)
    bob.events()
    alice.events()
    alice.partner_gone()
    bob.partner_gone()
    assert mine.state == T.FAILED
    assert [e.reason for e in bob.events()] == [T.PARTNER_GONE]
    assert bob.transfers == {}


def test_filedesk_garbage_raises_the_remote_error():
    with pytest.raises(FW.FileWireError):
        Desk().received(b"\xc0\x01{]", 0.0)


def test_filedesk_sender_makes_no_data_message_unless_sending():
    sender = Sender(ENTRIES)
    assert sender.chunk(T.Read(0, 0, 3), b"abc") is None
    sender.received(FW.FileAccept(sender.id, {}), 0.0)
    assert sender.chunk(T.Read(0, 0, 3), b"abc") is not None
    sender.cancel()
    assert sender.chunk(T.Read(0, 0, 3), b"abc") is None
