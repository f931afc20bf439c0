"""The chat table alone: a scripted relay client and scripted chats, to see
where typed lines go when chats begin and end, and which chat a relayed
frame is for."""

import types

from peerpunch import events as E
from peerpunch import protocol as P
from peerpunch.chattable import ChatTable
from peerpunch.forwarder import CHANNEL_BYTES, RELAYED, RELAYED_TO

SECRET = "5e" * 16


class ScriptedRelay:
    """The relay client's side the table uses; one request at most."""

    def __init__(self, target=None, max_chats=1):
        self.max_chats = max_chats
        self.several = max_chats > 1
        self.requests = {target: types.SimpleNamespace(target=target)} if target else {}
        self.finished = []

    @property
    def request(self):
        return list(self.requests.values())[-1] if self.requests else None

    def asking(self, *states):
        return self.request

    def waits_for(self):
        return None

    def introduced(self, name, now, keep_others=False):
        self.requests = {n: r for n, r in self.requests.items() if keep_others and n != name}

    def chat_began(self, name, session):
        pass

    def chat_finished(self, name, now):
        self.finished.append(name)
        return []


def scripted_chat(partner, channel=None):
    return types.SimpleNamespace(
        partner=partner, outbox=types.SimpleNamespace(lines=[]), state=E.State.PUNCHING,
        peer=types.SimpleNamespace(addr=None, channel=channel, via_relay=channel is not None),
        start=lambda info, now: [], close=lambda: [], goodbye=lambda: [])


def table(relay):
    t = ChatTable(relay, username="alice", path_options={}, secure_options={}, stats={})
    t.new_chat = scripted_chat
    return t


def info(name):
    return P.PeerInfo(peer="198.51.100.20:41000", username=name, session=SECRET)


def test_chattable_lines_typed_for_a_request_go_to_its_chat():
    t = table(ScriptedRelay(target="bob"))
    assert t.typed("one", E.State.REQUESTING) == [E.Notice("queued")]
    assert t.typed("two", E.State.REQUESTING) == []
    assert t.introduced(info("bob"), 1.0) == []
    assert t.chats["bob"].outbox.lines == ["one", "two"] and t.lines == []
    assert t.current == "bob"


def test_chattable_someone_else_first_reports_the_lines_typed_for_the_target():
    t = table(ScriptedRelay(target="bob"))
    t.typed("for bob", E.State.REQUESTING)
    out = t.introduced(info("carol"), 1.0)
    assert out == [E.Notice("first_while_asking", name="carol", target="bob"),
                   E.Notice("not_sent_for", count=1, name="bob")]
    assert t.chats["carol"].outbox.lines == [] and t.current == "carol"


def test_chattable_an_incoming_chat_never_takes_plain_lines_from_the_current_one():
    t = table(ScriptedRelay(max_chats=2))
    t.introduced(info("bob"), 1.0)
    assert t.introduced(info("carol"), 2.0) == [
        E.Notice("incoming_chat", name="carol", current="bob")]
    assert t.current == "bob"
    assert t.end_chat(t.chats["bob"], 3.0) == [E.Notice("now_current", name="carol", ended="bob")]
    assert t.current == "carol" and t.relay.finished == ["bob"]


def test_chattable_a_relayed_frame_goes_to_the_chat_its_channel_names():
    t = table(ScriptedRelay(max_chats=2))
    bob, carol = b"b" * CHANNEL_BYTES, b"c" * CHANNEL_BYTES
    t.chats.update(bob=scripted_chat("bob", bob), carol=scripted_chat("carol", carol))
    assert t.by_relayed(bytes([RELAYED_TO]) + carol + b"data") == (t.chats["carol"], b"data")
    assert t.by_relayed(bytes([RELAYED_TO]) + b"x" * CHANNEL_BYTES + b"data") == (None, b"data")
    del t.chats["carol"]                 # one chat relayed: the one-byte form is its
    assert t.by_relayed(bytes([RELAYED]) + b"data") == (t.chats["bob"], b"data")
