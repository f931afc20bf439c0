"""What an offer may hold and how long it may wait: entries capped at
MAX_OFFER_BYTES on both sides, an offer that never arrives whole expires
after ASSEMBLE_TIMEOUT, one never answered after ANSWER_TIMEOUT, with a line."""

import hashlib

from peerpunch import chatfiles as CF
from peerpunch import filedesk as FD
from peerpunch import filesource
from peerpunch import filewire as FW
from peerpunch import transfer as T
from peerpunch.filerecv import Receiver
from peerpunch.filewords import format_news

from .test_chatfiles import Pair

SHA = hashlib.sha256(b"").hexdigest()


def _long_entry(i):
    parts = ("d%05d" % i,) + tuple("x" * 120 for _ in range(30))
    return FW.Entry(parts, 0, SHA)


def test_filerecv_offer_beyond_max_offer_bytes_is_refused():
    count = FW.MAX_OFFER_BYTES // FW.entry_cost(_long_entry(0).parts) + 1
    entries = tuple(_long_entry(i) for i in range(count))
    receiver = Receiver(FW.FileOffer("%016x" % 1, count, 0, entries))
    assert receiver.state == T.FAILED
    [failed] = receiver.events()
    assert failed.reason == T.PROTOCOL


def test_filesource_collect_skips_what_passes_max_offer_bytes(tmp_path, monkeypatch):
    for name in ("a", "b", "c"):
        (tmp_path / name).write_bytes(b"x")
    monkeypatch.setattr(filesource, "MAX_OFFER_BYTES", 2 * FW.entry_cost(("a",)))
    entries, source, skipped = filesource.collect([str(tmp_path / n) for n in "abc"])
    source.close()
    assert [e.parts for e in entries] == [("a",), ("b",)]
    assert [why for _, why in skipped] == [filesource.TOO_MANY]


def _offer(desk, count, now):
    entry = FW.Entry(("f",), 0, SHA)
    desk.received(FW.encode(FW.FileOffer("%016x" % 5, count, 0, (entry,))), now)
    return desk.get("%016x" % 5)


def test_filedesk_offer_never_whole_expires_after_assemble_timeout():
    desk = FD.Desk()
    receiver = _offer(desk, 2, 10.0)
    assert desk.next_deadline() == 10.0 + FD.ASSEMBLE_TIMEOUT
    desk.expire(10.0 + FD.ASSEMBLE_TIMEOUT - 0.1)
    assert receiver.state == T.ASSEMBLING
    desk.expire(10.0 + FD.ASSEMBLE_TIMEOUT)
    assert receiver.state == T.FAILED
    assert [FW.decode(m) for m in desk.messages()] == [FW.FileCancel(receiver.id, T.EXPIRED)]


def test_filedesk_offer_not_answered_expires_with_a_line():
    desk = FD.Desk()
    receiver = _offer(desk, 1, 10.0)
    assert receiver.state == T.OFFERED
    desk.expire(10.0 + FD.ANSWER_TIMEOUT - 1)
    assert receiver.state == T.OFFERED
    desk.expire(10.0 + FD.ANSWER_TIMEOUT)
    failed = [e for e in desk.events() if type(e) is T.FileFailed]
    assert [f.reason for f in failed] == [T.EXPIRED]
    line = format_news(CF.FileNews("alice", failed[0], False, ("f",), 0), str)
    assert "expired" in line and "10 min" in line
    assert desk.next_deadline() is None


def test_chatfiles_unanswered_offer_fails_on_both_sides_after_answer_timeout(tmp_path):
    pair = Pair(tmp_path)
    pair.bob.disk.auto_accept = False
    (tmp_path / "f.txt").write_bytes(b"hello")
    assert pair.offer(tmp_path / "f.txt") == []
    pair.run_until(lambda: "FileFailed" in pair.kinds("alice"), limit=FD.ANSWER_TIMEOUT + 30)
    assert pair.now >= FD.ANSWER_TIMEOUT
    [failed] = [n.event for n in pair.news["alice"] if type(n.event) is T.FileFailed]
    assert (failed.reason, failed.remote) == (T.EXPIRED, True)


def test_filedesk_unanswered_offers_together_hold_at_most_max_held_bytes():
    desk = FD.Desk()
    per_offer = FD.MAX_HELD_BYTES // 2 + 1
    n = per_offer // FW.entry_cost(_long_entry(0).parts) + 1
    states = []
    for tid in (1, 2):
        entries = tuple(_long_entry(i) for i in range(n))
        desk.received(FW.encode(FW.FileOffer("%016x" % tid, n, 0, entries[:1])), 0.0)
        for entry in entries[1:]:
            desk.received(FW.encode(FW.FileMore("%016x" % tid, (entry,))), 0.0)
        states.append(desk.get("%016x" % tid).state)
    assert states == [T.OFFERED, T.FAILED]
    assert desk.held() <= FD.MAX_HELD_BYTES


def _held_offer(desk, tid, cost):
    """An offer of about *cost* entry bytes, all its entries received."""
    n = cost // FW.entry_cost(_long_entry(0).parts) + 1
    entries = tuple(_long_entry(i) for i in range(n))
    desk.received(FW.encode(FW.FileOffer("%016x" % tid, n, 0, entries[:1])), 0.0)
    for entry in entries[1:]:
        desk.received(FW.encode(FW.FileMore("%016x" % tid, (entry,))), 0.0)
    return desk.get("%016x" % tid).state


def test_filedesk_the_chats_of_one_peer_together_hold_at_most_max_all_held_bytes():
    """Each chat within its own bound, all of one peer's together within
    theirs: sixteen partners cannot make a peer hold 16 times one chat's."""
    budget = FD.OfferBudget()
    desks = [FD.Desk(budget) for _ in range(4)]
    per_chat = FD.MAX_HELD_BYTES * 3 // 4             # under one chat's bound
    states = [_held_offer(desk, i + 1, per_chat) for i, desk in enumerate(desks)]
    assert states[:2] == [T.OFFERED, T.OFFERED] and T.FAILED in states[2:]
    assert sum(d.held() for d in desks) <= FD.MAX_ALL_HELD_BYTES
    assert _held_offer(FD.Desk(), 9, per_chat) == T.OFFERED    # another peer: its own budget


def test_filedesk_budget_is_one_per_peer_and_forgets_ended_chats():
    owner_a, owner_b = CF.ChatFiles.__new__(CF.ChatFiles), CF.ChatFiles.__new__(CF.ChatFiles)
    assert FD.budget_for(owner_a) is FD.budget_for(owner_a) is not FD.budget_for(owner_b)
    budget = FD.OfferBudget()
    desk = FD.Desk(budget)
    assert len(budget.desks) == 1
    del desk
    assert len(budget.desks) == 0
