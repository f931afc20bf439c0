"""Chats from strangers wait for /accept (issue 13), through the real relay
core (tests/simnet.py, fake clock): carol, whom alice never talked to,
connects to alice; alice is asked, sees nothing of carol's until /accept,
and /decline or no answer ends the chat with a Goodbye. A pinned partner, a
chat alice asked for, or --wait connect as before. /block NAME ends its chat
and makes its later requests go unanswered without a word."""

import pytest

from peerpunch import events as E
from peerpunch import filecommands
from peerpunch.chatfiles import Collect, FileNews
from peerpunch.consent import MAX_BLOCKED, REQUEST_FOR
from peerpunch.events import MAX_HELD as E_MAX_HELD
from peerpunch.filedisk import Disk
from peerpunch.groups import GroupMessage
from peerpunch.securing import Pins
from peerpunch.session import State

from .simnet import SimNet
from .test_multichat import ALICE, BOB, CAROL, DAVE, lines
from .test_secure_session import secure_options
from .test_securing import new_identity
from .test_waiting import until


def whats(net, addr, start=0):
    return [e.what for e in net.shown(addr)[start:] if isinstance(e, E.Words)]


def words(net, addr, start=0):
    return [e.text for e in net.shown(addr)[start:] if isinstance(e, E.Notice)]


def chatting(session, partner):
    return lambda: partner in session.chats and session.chats[partner].state is State.CONNECTED


def asked(net, addr, name):
    return lambda: E.Notice("chat_request", name=name) in net.shown(addr)


def carol_calls(net=None, alice_options=None, carol_options=None):
    """alice (who asks before a stranger's chat) waits; carol connects to her."""
    net = net or SimNet()
    alice = net.add_peer("alice", ALICE, **(alice_options or secure_options(ask_strangers=True)))
    carol = net.add_peer("carol", CAROL, **(secure_options() if carol_options is None
                                            else carol_options))
    net.run(1)
    net.line(CAROL, "/connect alice")
    until(net, chatting(carol, "alice"), 10)
    return net, alice, carol


@pytest.mark.parametrize("batched", [False, True], ids=["one_by_one", "batched"])
def test_consent_a_strangers_chat_asks_and_shows_nothing_until_accepted(batched):
    """Also when the shell hands datagrams over in runs (datagrams_received)."""
    net, alice, carol = carol_calls(SimNet(batched=batched))
    until(net, asked(net, ALICE, "carol"), 5)
    assert "accept chat from carol? /accept or /decline" in words(net, ALICE)
    assert net.shown(ALICE, E.Connected) == [] and net.shown(ALICE, E.PinKey) == []
    assert alice.table.current is None and "carol" not in alice.consent.pins.keys
    net.line(CAROL, "hello alice, it is carol")
    net.line(ALICE, "a plain line goes nowhere")
    net.line(ALICE, "/msg carol not yet")
    net.run(2)
    assert lines(net, ALICE) == [] and lines(net, CAROL) == []
    assert "carol asks to chat: /accept carol or /decline carol first" in words(net, ALICE)
    net.line(ALICE, "/accept")
    (connected,) = net.shown(ALICE, E.Connected)
    assert connected.username == "carol" and connected.key is not None
    assert [p.username for p in net.shown(ALICE, E.PinKey)] == ["carol"]
    assert lines(net, ALICE) == [("carol", "hello alice, it is carol")]
    assert alice.table.current == "carol" and "carol" in alice.consent.pins.keys
    net.line(ALICE, "welcome")
    net.line(CAROL, "thanks")
    net.run(1)
    assert lines(net, CAROL) == [("alice", "welcome")]
    assert lines(net, ALICE)[-1] == ("carol", "thanks")


def test_consent_decline_says_goodbye_pins_nothing_and_shows_nothing():
    net, alice, carol = carol_calls()
    until(net, asked(net, ALICE, "carol"), 5)
    net.line(CAROL, "spam spam spam")
    net.run(1)
    net.line(ALICE, "/decline carol")
    net.run(1)
    assert "declined the chat with carol" in words(net, ALICE)
    assert net.shown(CAROL, E.PeerLeft) == [E.PeerLeft("alice")] and "alice" not in carol.chats
    assert "carol" not in alice.chats and lines(net, ALICE) == []
    assert net.shown(ALICE, E.PinKey) == [] and "carol" not in alice.consent.pins.keys
    assert not [e for e in net.shown(ALICE) if isinstance(e, E.Alert)]   # no "not shown" alarm


def test_consent_an_unanswered_request_is_declined_after_request_for():
    net, alice, carol = carol_calls()
    until(net, asked(net, ALICE, "carol"), 5)
    net.run(REQUEST_FOR - 2)
    assert "carol" in alice.chats
    until(net, lambda: "carol" not in alice.chats, 5)
    assert "declined the chat with carol: no answer in 60 s" in words(net, ALICE)
    until(net, lambda: net.shown(CAROL, E.PeerLeft), 2)
    assert alice.consent.requests == {} and alice.next_deadline() is not None


def test_consent_a_pinned_partner_an_asked_one_and_wait_connect_as_before():
    carol_id = new_identity()
    pinned = secure_options(ask_strangers=True, known_keys={"carol": carol_id.public})
    net, alice, carol = carol_calls(alice_options=pinned, carol_options=secure_options(carol_id))
    until(net, chatting(alice, "carol"), 2)
    assert "chat_request" not in whats(net, ALICE) and alice.table.current == "carol"
    net, alice, carol = carol_calls(alice_options=secure_options())       # --wait: no question
    until(net, chatting(alice, "carol"), 2)
    assert "chat_request" not in whats(net, ALICE) and net.shown(ALICE, E.Connected)
    net = SimNet()                                      # alice asks for carol herself
    alice = net.add_peer("alice", ALICE, **secure_options(ask_strangers=True))
    carol = net.add_peer("carol", CAROL, **secure_options(ask_strangers=True))
    net.run(1)
    net.line(ALICE, "/connect carol")
    until(net, chatting(alice, "carol"), 10)
    net.run(1)
    assert "chat_request" not in whats(net, ALICE)
    assert whats(net, CAROL).count("chat_request") == 1     # carol never asked for alice


def test_consent_a_seed_like_plain_stranger_is_asked_too_and_its_lines_held():
    net, alice, carol = carol_calls(carol_options={})        # no identity: a plain link
    until(net, asked(net, ALICE, "carol"), 5)
    net.line(CAROL, "plain hello")
    net.run(1)
    assert lines(net, ALICE) == []
    net.line(ALICE, "/accept carol")
    assert lines(net, ALICE) == [("carol", "plain hello")]
    assert net.shown(ALICE, E.Connected)[0].key is None


def bob_offers_alice_a_file(tmp_path):
    """alice (who asks strangers) chats with bob, who offers her notes.txt:
    (net, alice, bob, the disk options the others need), the offer shown."""
    src = tmp_path / "notes.txt"
    src.write_bytes(b"hello\n")
    disk = dict(disk=Disk(str(tmp_path / "down")))
    net = SimNet()
    alice = net.add_peer("alice", ALICE, **secure_options(ask_strangers=True, **disk))
    bob = net.add_peer("bob", BOB, **secure_options(**disk))
    net.run(1)
    net.line(ALICE, "/connect bob")
    until(net, chatting(bob, "alice"), 10)
    net.line(BOB, "/send %s" % src)
    (collect,) = net.shown(BOB, Collect)
    net._emit(BOB, filecommands.collected(bob, "alice", bob.disk.collect(collect.paths), net.now))
    until(net, lambda: net.shown(ALICE, FileNews), 5)
    return net, alice, bob, disk


def test_consent_bare_accept_with_a_request_and_a_file_offer_refuses_to_guess(tmp_path):
    net, alice, bob, disk = bob_offers_alice_a_file(tmp_path)
    net.add_peer("carol", CAROL, **secure_options(**disk))
    net.run(1)
    net.line(CAROL, "/connect alice")
    until(net, asked(net, ALICE, "carol"), 10)
    start = len(net.shown(ALICE))
    net.line(ALICE, "/accept")
    (text,) = words(net, ALICE, start)
    assert text.startswith("which one? /accept carol for the chat, /accept ID for the file (")
    assert "carol" in alice.consent.requests                    # nothing taken
    net.line(ALICE, "/accept carol")
    assert "carol" not in alice.consent.requests and net.shown(ALICE, E.Connected)
    net.line(ALICE, "/accept")                                  # the offer, now the only thing
    until(net, lambda: (tmp_path / "down" / "notes.txt").exists(), 10)


def test_consent_two_requests_a_bare_decline_names_them():
    net, alice, carol = carol_calls()
    dave = net.add_peer("dave", DAVE, **secure_options())
    net.run(1)
    net.line(DAVE, "/connect alice")
    until(net, lambda: len(alice.consent.asked()) == 2, 10)
    start = len(net.shown(ALICE))
    net.line(ALICE, "/decline")
    assert words(net, ALICE, start) == [
        "which one? 2 chat requests: /decline NAME for a chat (carol, dave)"]
    net.line(ALICE, "/decline dave")
    net.line(ALICE, "/accept")                                   # the one left
    assert list(alice.chats) == ["carol"] and alice.consent.requests == {}


def test_consent_block_ends_the_chat_and_later_requests_get_no_word():
    net, alice, carol = carol_calls(alice_options=secure_options())
    until(net, chatting(alice, "carol"), 2)
    net.line(ALICE, "/block carol")
    assert words(net, ALICE)[-1].startswith("blocked carol for the rest of this run")
    net.run(1)
    assert "carol" not in alice.chats and net.shown(CAROL, E.PeerLeft) == [E.PeerLeft("alice")]
    start = len(net.shown(ALICE))
    net.run(6)                                             # the relay forgets the chat
    net.line(CAROL, "/connect alice")
    net.run(15)
    assert "carol" not in alice.chats and alice.stats["blocked_introductions"] > 0
    assert [w for w in whats(net, ALICE, start)] == []      # not a word of it
    assert net.shown(ALICE, E.ChatList)[-1].rows == ()
    net.line(ALICE, "/connect carol")
    net.line(ALICE, "/block")
    assert words(net, ALICE)[-2:] == ["carol is blocked for the rest of this run",
                                      "blocked for the rest of this run: carol"]


def test_consent_block_answers_a_pending_request_and_is_bounded():
    net, alice, carol = carol_calls()
    until(net, asked(net, ALICE, "carol"), 5)
    net.line(ALICE, "/block carol")
    net.run(1)
    assert "carol" not in alice.chats and alice.consent.requests == {}
    assert net.shown(CAROL, E.PeerLeft) == [E.PeerLeft("alice")]
    for i in range(MAX_BLOCKED - 1):
        alice.consent.blocked.add("n%d" % i)
    net.line(ALICE, "/block one-too-many")
    net.line(ALICE, "/block alice")
    net.line(ALICE, "/block carol")
    net.line(ALICE, "/block " + "x" * 40)            # longer than a name may be
    assert words(net, ALICE)[-4:-1] == ["already 1000 names blocked, as many as you may",
                                        "you cannot block yourself", "carol is already blocked"]
    assert words(net, ALICE)[-1].startswith("usage: /block NAME")
    assert len(alice.consent.blocked) == MAX_BLOCKED


def test_consent_pins_seen_through_a_request_defer_a_new_key():
    from peerpunch.consent import Request
    pins = Pins()
    request = Request("carol", pins)
    request.record("carol", b"k" * 32)
    assert pins.get("carol") is None and request.key == b"k" * 32
    request.asking = False
    request.record("carol", b"k" * 32)
    assert pins.get("carol") == b"k" * 32 and request.verdict("carol", b"k" * 32) == "known"


def test_consent_a_member_of_our_group_dialling_us_is_not_asked_about():
    ask = dict(ask_strangers=True)
    net = SimNet()
    alice = net.add_peer("alice", ALICE, **secure_options(**ask))
    bob = net.add_peer("bob", BOB, **secure_options(**ask))
    carol = net.add_peer("carol", CAROL, **secure_options(**ask))
    net.run(1)
    net.line(ALICE, "/connect bob")
    until(net, asked(net, BOB, "alice"), 10)            # alice is a stranger to bob
    net.line(BOB, "/accept")
    net.line(ALICE, "/invite carol")
    until(net, asked(net, CAROL, "alice"), 10)
    net.line(CAROL, "/accept")
    until(net, lambda: carol.groups.machine.invites, 10)
    net.line(CAROL, "/join")
    until(net, chatting(bob, "carol"), 10)               # carol dials bob: a member, no question
    assert whats(net, BOB).count("chat_request") == 1
    assert whats(net, CAROL).count("chat_request") == 1
    net.run(2)
    net.line(CAROL, "hello group")
    net.run(2)
    assert [m.text for m in net.shown(BOB, GroupMessage)] == ["hello group"]


def test_consent_chats_lists_a_request_as_pending():
    net, alice, carol = carol_calls()
    until(net, asked(net, ALICE, "carol"), 5)
    net.line(ALICE, "/chats")
    assert words(net, ALICE)[-1] == "  carol: pending, direct, encrypted"
    net.line(ALICE, "/accept")
    net.line(ALICE, "/chats")
    assert words(net, ALICE)[-1].startswith("* carol: connected, direct, encrypted")


def test_consent_leaving_a_request_says_its_lines_were_not_shown():
    net, alice, carol = carol_calls()
    until(net, asked(net, ALICE, "carol"), 5)
    net.line(CAROL, "one")
    net.line(CAROL, "two")
    net.run(1)
    net.line(ALICE, "/leave carol")
    assert "2 line(s) from carol were not shown (the chat was not accepted)" in words(net, ALICE)
    assert not [e for e in net.shown(ALICE) if isinstance(e, E.Alert)]
    assert lines(net, ALICE) == [] and net.shown(ALICE, E.PinKey) == []


def test_consent_more_lines_than_held_arrive_in_order_once_accepted():
    net, alice, carol = carol_calls()
    until(net, asked(net, ALICE, "carol"), 5)
    for i in range(E_MAX_HELD + 40):
        net.line(CAROL, "line %d" % i)
    net.run(1)
    assert lines(net, ALICE) == [] and alice.chats["carol"].secure.held_count() == E_MAX_HELD
    net.line(ALICE, "/accept")
    net.run(3)
    assert lines(net, ALICE) == [("carol", "line %d" % i) for i in range(E_MAX_HELD + 40)]
    assert net.shown(CAROL, E.NotDelivered) == []


def test_consent_a_stranger_named_like_an_offers_id_is_not_accepted_by_that_id(tmp_path):
    """The offerer picks a transfer's id; an accomplice registered under it
    asks to chat: /accept ID (the GUI's button on the file, a bot reading
    file_offer) must not accept the stranger's chat instead."""
    net, alice, bob, disk = bob_offers_alice_a_file(tmp_path)
    tid = net.shown(ALICE, FileNews)[0].event.id
    net.add_peer(tid, CAROL, **secure_options(**disk))
    net.run(1)
    net.line(CAROL, "/connect alice")
    until(net, asked(net, ALICE, tid), 10)
    net.line(ALICE, "/accept " + tid)
    assert tid in alice.consent.requests and tid not in alice.consent.pins.keys
    assert whats(net, ALICE)[-1] == "which_answer"


def test_consent_an_unanswered_stranger_never_becomes_current_when_a_chat_ends():
    """alice chats with bob while carol's request waits: bob leaves; plain
    lines do not go to carol (they are refused until /switch), and a line
    typed then never reaches carol after /accept."""
    net = SimNet()
    alice = net.add_peer("alice", ALICE, **secure_options(ask_strangers=True))
    bob = net.add_peer("bob", BOB, **secure_options())
    carol = net.add_peer("carol", CAROL, **secure_options())
    net.run(1)
    net.line(ALICE, "/connect bob")
    until(net, chatting(bob, "alice"), 10)
    net.line(CAROL, "/connect alice")
    until(net, asked(net, ALICE, "carol"), 10)
    start = len(net.shown(ALICE))
    net.line(BOB, "/leave")
    net.run(2)
    assert alice.table.current is None and "now_current" not in whats(net, ALICE, start)
    net.line(ALICE, "that was for bob")
    net.line(ALICE, "/accept carol")
    net.run(30)
    assert lines(net, CAROL) == [] and chatting(carol, "alice")()


def test_consent_a_person_named_like_a_group_gets_no_chat_and_cannot_be_asked_for():
    """Names starting with # are groups': a partner registered as "#team" (a
    seed client may) is never a chat, so a chat and a group never share a
    name (the prompt and the window tell them apart by name)."""
    net = SimNet()
    alice = net.add_peer("alice", ALICE, **secure_options())     # accepts everyone (--wait)
    mallory = net.add_peer("#team", CAROL, **secure_options())
    net.run(1)
    start = len(net.shown(ALICE))
    net.line(CAROL, "/connect alice")
    net.run(15)
    assert alice.chats == {} and alice.stats["blocked_introductions"] > 0
    assert whats(net, ALICE, start) == [] and "alice" not in mallory.chats
    net.line(ALICE, "/connect #team")
    failed = net.shown(ALICE, E.Failed)[-1]
    assert failed.what == "bad_target" and "group's" in failed.fields["why"]
    assert alice.chats == {}
