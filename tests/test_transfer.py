"""The transfer machines alone, with a fake clock: offer, accept, decline,
cancel, resume, data out of place, progress at most ~10 per second."""

import pytest

from peerpunch import filewire as FW
from peerpunch import transfer as T
from peerpunch.filerecv import Receiver
from peerpunch.filesend import Sender
from peerpunch.progress import MIN_INTERVAL, Meter

TID = "00000000000000aa"
SHA = "cd" * 32
ENTRIES = [FW.Entry(("a.txt",), 10, SHA), FW.Entry(("d", "b.bin"), 0, SHA),
           FW.Entry(("d", "c.bin"), 25, SHA)]


def pair(entries=ENTRIES):
    sender = Sender(entries, tid=TID, chunk_size=10)
    messages = [FW.decode(m) for m in sender.messages()]
    receiver = Receiver(messages[0])
    for more in messages[1:]:
        receiver.received(more, 0.0)
    return sender, receiver


def deliver(source, target, now=0.0):
    """Pass *source*'s control messages to *target*; the effects."""
    out = []
    for message in source.messages():
        out += target.received(FW.decode(message), now) or []
    return out


def test_transfer_offer_arrives_whole_and_tells_its_top_names():
    sender, receiver = pair()
    assert sender.state == T.OFFERED and receiver.state == T.OFFERED
    assert receiver.events() == [T.FileOffered(TID, ("a.txt", "d"), 3, 35)]


def test_transfer_offer_in_pieces_is_offered_only_when_complete():
    entries = [FW.Entry(("t", "%04d" % n), 1, SHA) for n in range(2000)]
    messages = [FW.decode(m) for m in FW.offer_messages(TID, entries)]
    receiver = Receiver(messages[0])
    for more in messages[1:]:
        assert receiver.state == T.ASSEMBLING and receiver.events() == []
        receiver.received(more, 0.0)
    assert receiver.state == T.OFFERED
    assert receiver.events() == [T.FileOffered(TID, ("t",), 2000, 2000)]


@pytest.mark.parametrize("files,total", [
    ([[["a"], 1, SHA], [["a"], 1, SHA]], 2),             # twice
    ([[["A"], 1, SHA], [["a"], 1, SHA]], 2),             # twice, but for case
    ([[["a"], 1, SHA], [["a", "b"], 1, SHA]], 2),        # a file and a directory
    ([[["a", "b"], 1, SHA], [["a"], 1, SHA]], 2),
    ([[["\u00e9"], 1, SHA], [["e\u0301"], 1, SHA]], 2),   # twice, but for normalisation
    ([[["a"], 1, SHA]], 2),                              # total does not add up
])
def test_transfer_inconsistent_offer_is_refused(files, total):
    document = {"FileOffer": {"id": TID, "count": len(files), "total": total, "files": files}}
    receiver = Receiver(FW.decode(b"\xc0\x01" + __import__("json").dumps(document).encode()))
    assert receiver.state == T.FAILED
    assert receiver.events() == [T.FileFailed(TID, T.PROTOCOL, False)]
    assert FW.decode(receiver.messages()[0]) == FW.FileCancel(TID, T.PROTOCOL)


def test_transfer_more_entries_than_counted_fail_the_offer():
    sender, receiver = pair()
    receiver.received(FW.FileMore(TID, (ENTRIES[0],)), 0.0)
    assert receiver.state == T.OFFERED           # complete already: FileMore ignored
    first = FW.FileOffer(TID, 1, 10, (ENTRIES[0], ENTRIES[2]))
    assert Receiver(first).state == T.FAILED


def test_transfer_decline_reaches_the_sender():
    sender, receiver = pair()
    receiver.decline()
    deliver(receiver, sender)
    assert receiver.state == T.DECLINED and sender.state == T.DECLINED
    assert sender.events() == [T.FileFailed(TID, T.DECLINED_REASON, True)]
    assert sender.next_read() is None


def test_transfer_accept_then_data_in_order_then_done():
    sender, receiver = pair()
    receiver.events()
    assert receiver.accept({}, 0.0) == []
    deliver(receiver, sender)
    assert sender.state == T.SENDING
    effects = []
    reads = []
    while True:
        read = sender.next_read()
        if read is None:
            break
        reads.append(read)
        chunk = FW.decode(sender.chunk(read, b"x" * read.length))
        effects += receiver.received(chunk, 1.0)
    assert reads == [T.Read(0, 0, 10), T.Read(2, 0, 10), T.Read(2, 10, 10), T.Read(2, 20, 5)]
    assert [type(e).__name__ for e in effects] == ["Write", "Verify", "Verify", "Write",
                                                    "Write", "Write", "Verify"]
    assert [e.index for e in effects if type(e) is T.Verify] == [0, 1, 2]
    assert sender.state == T.SENT
    for index in (0, 1, 2):
        receiver.verified(index, True, "/down/x" if index != 1 else None)
    deliver(receiver, sender)
    assert receiver.state == T.DONE and sender.state == T.DONE
    assert receiver.events()[-1] == T.FileReceived(TID, ("a.txt", "d"), 3, 35,
                                                   ("/down/x", "/down/x"))
    assert sender.events()[-1] == T.FileSent(TID, ("a.txt", "d"), 3, 35)


def test_transfer_resume_starts_each_file_at_its_verified_bytes():
    sender, receiver = pair()
    effects = receiver.accept({0: 10, 2: 20}, 0.0)
    assert effects == [T.Verify(0), T.Verify(1)]         # whole already, and empty
    deliver(receiver, sender)
    assert sender.events() == [T.FileAccepted(TID, 30)]
    assert sender.next_read() == T.Read(2, 20, 5)
    assert sender.next_read() is None and sender.state == T.SENT


def test_transfer_resume_of_everything_sends_nothing():
    sender, receiver = pair()
    assert len(receiver.accept({0: 10, 2: 25}, 0.0)) == 3
    deliver(receiver, sender)
    assert sender.state == T.SENT and sender.next_read() is None


def test_transfer_resume_point_past_a_file_end_is_refused():
    sender, receiver = pair()
    with pytest.raises(ValueError):
        receiver.accept({0: 11}, 0.0)
    sender.received(FW.FileAccept(TID, {0: 11}), 0.0)
    assert sender.state == T.FAILED
    assert FW.decode(sender.messages()[-1]) == FW.FileCancel(TID, T.PROTOCOL)


@pytest.mark.parametrize("index,offset,data", [
    (2, 0, b"x" * 10),       # the wrong file
    (0, 5, b"x" * 5),        # a gap
    (0, 0, b"x" * 11),       # past the end
    (0, 0, b""),             # nothing
])
def test_transfer_data_out_of_place_fails_the_receiver(index, offset, data):
    sender, receiver = pair()
    receiver.accept({}, 0.0)
    receiver.messages()
    assert receiver.received(FW.Chunk(TID, index, offset, data), 0.0) == []
    assert receiver.state == T.FAILED
    assert FW.decode(receiver.messages()[-1]) == FW.FileCancel(TID, T.PROTOCOL)


def test_transfer_data_before_accept_is_ignored():
    sender, receiver = pair()
    assert receiver.received(FW.Chunk(TID, 0, 0, b"x"), 0.0) == []
    assert receiver.state == T.OFFERED


def test_transfer_hash_mismatch_fails_both_ends():
    sender, receiver = pair()
    receiver.accept({0: 10, 2: 25}, 0.0)
    deliver(receiver, sender)
    receiver.verified(0, False)
    deliver(receiver, sender)
    assert receiver.state == T.FAILED and sender.state == T.FAILED
    assert receiver.events()[-1] == T.FileFailed(TID, T.HASH_MISMATCH, False)
    assert sender.events()[-1] == T.FileFailed(TID, T.HASH_MISMATCH, True)
    receiver.verified(1, True)
    assert receiver.state == T.FAILED and receiver.messages() == []


@pytest.mark.parametrize("who", ["sender", "receiver"])
@pytest.mark.parametrize("when", ["offered", "sending"])
def test_transfer_cancel_from_either_side_ends_both(who, when):
    sender, receiver = pair()
    receiver.events()
    if when == "sending":
        receiver.accept({}, 0.0)
        deliver(receiver, sender)
        sender.events()
        receiver.events()
    one, other = (sender, receiver) if who == "sender" else (receiver, sender)
    one.cancel()
    deliver(one, other)
    assert one.state == other.state == T.CANCELLED
    assert one.events() == [T.FileFailed(TID, T.CANCELLED_REASON, False)]
    assert other.events() == [T.FileFailed(TID, T.CANCELLED_REASON, True)]
    one.cancel()
    assert one.messages() == [] and one.events() == []      # once only


def test_transfer_partner_gone_ends_without_a_message():
    sender, receiver = pair()
    receiver.events()
    sender.partner_gone()
    receiver.partner_gone()
    assert sender.state == receiver.state == T.FAILED
    assert sender.messages() == [] and receiver.messages() == []
    assert receiver.events() == [T.FileFailed(TID, T.PARTNER_GONE, False)]


def test_transfer_late_messages_after_the_end_are_ignored():
    sender, receiver = pair()
    sender.cancel()
    for late in (FW.FileAccept(TID, {}), FW.FileDone(TID), FW.FileDecline(TID)):
        sender.received(late, 0.0)
    assert sender.state == T.CANCELLED and sender.next_read() is None


def test_transfer_progress_is_throttled_and_measures_rate_and_eta():
    meter = Meter(total=1000, done=100, now=0.0)       # resumed at 100
    shown = [(n * 0.01, meter.add(10, n * 0.01)) for n in range(1, 31)]   # 30 in 0.3 s
    times = [when for when, p in shown if p is not None]
    assert len(times) == 3
    assert all(b - a >= MIN_INTERVAL - 1e-9 for a, b in zip(times, times[1:]))
    last = [p for _, p in shown if p is not None][-1]
    assert last.done == pytest.approx(100 + 1000 * times[-1]) and last.total == 1000
    assert last.rate == pytest.approx(1000.0)          # resumed bytes not counted
    assert last.eta == pytest.approx((1000 - last.done) / 1000.0)
    assert meter.add(600, 0.305).done == 1000           # the end is always shown


def test_transfer_progress_rate_follows_a_stall():
    meter = Meter(total=10 ** 9, done=0, now=0.0)
    for n in range(1, 11):
        meter.add(1000, float(n))
    assert meter.progress(10.0).rate == pytest.approx(1000.0)
    assert meter.add(0, 20.0).rate < 200
    assert meter.add(0, 30.0).rate == 0 and meter.progress(30.0).eta is None


def test_transfer_receiver_progress_events_at_most_every_interval():
    sender, receiver = pair([FW.Entry(("big",), 1000, SHA)])
    receiver.accept({}, 0.0)
    now = 0.0
    for offset in range(0, 1000, 10):
        now += 0.004
        receiver.received(FW.Chunk(TID, 0, offset, b"y" * 10), now)
    times = [e for e in receiver.events() if type(e) is T.FileProgress]
    assert times[-1].done == 1000
    assert 3 <= len(times) <= int(now / MIN_INTERVAL) + 2


@pytest.mark.parametrize("entries", [
    [],
    [FW.Entry(("..",), 1, SHA)],
    [FW.Entry(("a", "CON"), 1, SHA)],
    [FW.Entry(("a",), 1, SHA), FW.Entry(("A",), 1, SHA)],
    [FW.Entry(("a",), FW.MAX_SIZE, SHA), FW.Entry(("b",), 1, SHA)],
])
def test_transfer_sender_refuses_an_offer_it_must_not_make(entries):
    with pytest.raises(ValueError):
        Sender(entries)
