"""The group machine (peerpunch.groups) alone, with a fake clock: three and
more members over real Streams with loss and reordering (tests.groupsim),
and scripted messages for the rules (who may say what, dedupe, bounds)."""

import collections

import pytest

from peerpunch import groups as G
from peerpunch import groupwire as W
from peerpunch.effects import Log
from peerpunch.events import Notice

from .groupsim import Mesh


def _group_of(mesh, starter="alice", partner="bob", invitees=("carol",)):
    """*starter* makes a group with *partner* and invites *invitees*; the
    mesh runs until each invitee's join is known to every member."""
    mesh.link_all()
    mesh.do(starter, "start", partner, invitees[0])
    gid = next(iter(mesh.machines[starter].groups))
    for name in invitees[1:]:
        mesh.do(starter, "invite", mesh.machines[starter].groups[gid], name)
    members = (starter, partner) + tuple(invitees)

    def settled():
        for name in members:
            group = mesh.machines[name].groups.get(gid)
            if group is None or sorted(group.joined()) != sorted(set(members) - {name}):
                return False
        return True
    mesh.run_until(settled)
    return gid, mesh.machines[starter].groups[gid].name


@pytest.mark.parametrize("loss", [0.0, 0.1, 0.3])
@pytest.mark.parametrize("seed", range(6))
def test_groups_every_line_once_in_order_with_loss_and_reordering(loss, seed):
    names = ("alice", "bob", "carol", "dave")
    mesh = Mesh(names, seed=seed * 7, loss=loss, jitter=0.050)
    gid, name = _group_of(mesh, invitees=("carol", "dave"))
    for n in range(10):
        for sender in names:
            mesh.machines[sender].current = gid
            mesh.do(sender, "typed", "%s %d" % (sender, n))
        mesh.run_for(0.01)
    want = {s: [(s, "%s %d" % (s, n)) for n in range(10)] for s in names}
    mesh.run_until(lambda: all(len(mesh.lines(r)) == 30 for r in names))
    mesh.run_for(5.0)                                   # and nothing more arrives
    for receiver in names:
        got = collections.defaultdict(list)
        for sender, text in mesh.lines(receiver, name):
            got[sender].append((sender, text))
        assert dict(got) == {s: want[s] for s in names if s != receiver}
        assert not mesh.notices(receiver, "group_refused")
        assert not mesh.notices(receiver, "group_gone")


def test_groups_invitee_lines_that_overtake_the_announcement_are_held_then_shown():
    mesh = Mesh(("alice", "bob", "carol"), delay=0.010)
    mesh.channels[frozenset(("alice", "bob"))].delay = 2.0   # alice's GroupAdded to bob: late
    mesh.link_all()
    mesh.do("alice", "start", "bob", "carol")
    mesh.run_until(lambda: mesh.machines["carol"].groups)     # carol joined (auto)
    mesh.do("carol", "typed", "hi all")
    mesh.run_until(lambda: mesh.machines["bob"].held.entries)         # at bob before the announcement
    assert not mesh.notices("bob", "group_added")
    mesh.run_until(lambda: mesh.lines("bob"))
    assert mesh.lines("bob") == [("carol", "hi all")]
    assert [e.what for e in mesh.shown["bob"] if hasattr(e, "what")] == [
        "group_started_by", "group_added", "group_joined"]
    assert mesh.lines("alice") == [("carol", "hi all")]


def _scripted(us="bob", members=("alice", "bob")):
    """*us* in a group that alice started; the group's id."""
    machine = G.Groups(us, random_bytes=lambda k: b"\x01" * k, stats=collections.Counter())
    machine.links({m: None for m in ("alice", "carol", "mallory") if m != us}, 0.0)
    start = W.GroupStart("00112233445566ff", "#alice-0011", list(members))
    out = machine.received("alice", W.encode(start), 0.0)
    assert Notice("group_started_by", group="#alice-0011", name="alice", current=True) in out
    return machine, start.group


def _line(gid, seq, text):
    return W.encode(W.GroupLine(gid, seq, text))


def test_groups_duplicate_and_old_seq_are_dropped():
    machine, gid = _scripted()
    shown = []
    for seq in (1, 2, 2, 1, 3):
        shown += machine.received("alice", _line(gid, seq, "line %d" % seq), 1.0)
    assert [e.text for e in shown] == ["line 1", "line 2", "line 3"]
    assert machine.stats["group_duplicates"] == 2


def test_groups_lines_from_a_peer_never_announced_are_refused_after_holding():
    machine, gid = _scripted()
    assert machine.received("mallory", _line(gid, 1, "let me in"), 1.0) == []
    assert machine.next_deadline() == 1.0 + G.HOLD_FOR
    out = machine.tick(1.0 + G.HOLD_FOR)
    assert out == [Notice("group_refused", name="mallory", count=1, group="#alice-0011")]
    assert not any(type(e) is G.GroupMessage for e in out)
    assert machine.held.entries == [] and machine.next_deadline() is None


def test_groups_only_a_joined_member_may_announce_a_member():
    machine, gid = _scripted()
    out = machine.received("mallory", W.encode(W.GroupAdded(gid, "eve")), 1.0)   # held
    out += machine.received("mallory", W.encode(W.GroupJoined(gid, False, [])), 1.0)   # held
    assert out == [] and "eve" not in machine.groups[gid].members
    out = machine.received("alice", W.encode(W.GroupAdded(gid, "carol")), 2.0)
    hello = G.Post("carol", W.encode(W.GroupJoined(gid, False, ["alice"])))   # carol's chat is up
    assert out == [hello, Notice("group_added", group="#alice-0011", name="alice",
                                 member="carol")]
    assert machine.received("carol", _line(gid, 1, "too early"), 2.0) == []  # invited, not joined
    out = machine.received("carol", W.encode(W.GroupJoined(gid, False, ["alice"])), 3.0)
    answer = W.encode(W.GroupJoined(gid, True, ["alice"]))      # the members we know
    assert out[0] == G.Post("carol", answer)     # carol named alice: no GroupAdded
    assert out[1] == Notice("group_joined", group="#alice-0011", name="carol")
    assert [(e.sender, e.text) for e in out[2:]] == [("carol", "too early")]


def test_groups_unknown_group_ids_and_bad_messages_are_ignored():
    machine, gid = _scripted()
    assert machine.received("alice", _line("ffffffffffffffff", 1, "x"), 1.0) == []
    assert machine.received("alice", b"\xf8{not json", 1.0) == []
    assert machine.stats["group_unknown"] == 1 and machine.stats["group_malformed"] == 1
    assert machine.tick(1.0 + G.HOLD_FOR) == []           # dropped in silence
    assert machine.held.entries == []
    assert machine.received("alice", b"\xf8" + b"[" * 60000, 1.0) == []   # no RecursionError
    assert machine.stats["group_malformed"] == 2


def test_groups_an_invite_naming_us_not_or_from_a_non_member_is_ignored():
    machine = G.Groups("bob", random_bytes=bytes, stats=collections.Counter())
    for members in (["alice", "carol"], ["mallory", "bob"]):
        msg = W.GroupInvite("0011223344556677", "#g", members)
        assert [type(e) for e in machine.received("alice", W.encode(msg), 0.0)] == [Log]
    assert machine.invites == {} and machine.stats["group_bad_invite"] == 2


def test_groups_state_stays_bounded_under_a_flood():
    machine, gid = _scripted()
    for n in range(G.MAX_HELD * 3):
        machine.received("mallory", _line(gid, n + 1, "x"), 1.0)
    assert len(machine.held.entries) == G.MAX_HELD_FROM       # one peer: its share only
    machine.received("carol", _line(gid, 1, "early"), 1.0)    # another's still held
    for n in range(G.MAX_HELD * 3):
        machine.received("carol", _line("00000000000000%02x" % (n % 256), n + 1, "x"), 1.0)
    assert len(machine.held.entries) == G.MAX_HELD
    for n in range(G.MAX_INVITES * 3):
        sender = ("alice", "carol", "mallory", "dave")[n % 4]    # each within its share
        invite = W.GroupInvite("%016x" % n, "#g%d" % n, [sender, "bob"])
        machine.received(sender, W.encode(invite), 1.0)
    assert len(machine.invites) == G.MAX_INVITES
    machine.current = gid
    machine.groups[gid].members["dave"] = G.Member(G.JOINED, 1.0)    # no chat with dave yet
    for n in range(G.MAX_QUEUED * 2):
        machine.typed("line %d" % n, 1.0)
    assert len(machine.outbox.queued("dave")) == G.MAX_QUEUED
    out = machine.tick(1.0 + G.LINK_WITHIN)
    assert Notice("group_not_sent", name="dave", count=G.MAX_QUEUED) in out
    assert machine.outbox.queued("dave") == []


def test_groups_leave_is_announced_to_every_member():
    mesh = Mesh(("alice", "bob", "carol"))
    gid, name = _group_of(mesh)
    mesh.do("carol", "leave", mesh.machines["carol"].groups[gid])
    mesh.run_until(lambda: mesh.notices("alice", "group_left") and
                   mesh.notices("bob", "group_left"))
    for member in ("alice", "bob"):
        assert mesh.notices(member, "group_left") == [Notice("group_left", group=name,
                                                             name="carol")]
        assert sorted(mesh.machines[member].groups[gid].members) == \
            sorted({"alice", "bob"} - {member})
    assert gid not in mesh.machines["carol"].groups


def test_groups_a_vanished_member_is_announced_within_the_delivery_timeout():
    mesh = Mesh(("alice", "bob", "carol"))
    gid, name = _group_of(mesh)
    mesh.run_for(2.0)                                   # every hello acknowledged
    for pair, channel in mesh.channels.items():
        channel.cut = "carol" in pair                   # carol's host is gone
    typed = mesh.now
    mesh.machines["alice"].current = gid
    mesh.do("alice", "typed", "still there?")
    mesh.run_until(lambda: mesh.notices("bob", "group_gone"))
    assert mesh.now - typed <= 8.0 + 0.5                # stream.DELIVERY_TIMEOUT
    assert mesh.notices("alice", "group_gone") == [
        Notice("group_gone", group=name, name="carol", why="no_answer")]
    assert mesh.notices("bob", "group_gone") == [
        Notice("group_gone", group=name, name="carol", why="lost_by", by="alice")]
    assert mesh.lines("bob") == [("alice", "still there?")]


def test_groups_a_chat_that_ends_takes_its_partner_out_of_the_group_for_us_only():
    mesh = Mesh(("alice", "bob", "carol"))
    gid, name = _group_of(mesh)
    mesh.do("alice", "links", {"bob": None})            # alice's chat with carol ended
    assert mesh.notices("alice", "group_gone") == [
        Notice("group_gone", group=name, name="carol", why="ended")]
    assert "carol" not in mesh.machines["alice"].groups[gid].members
    mesh.run_for(5.0)                                   # bob keeps carol: his chat is up
    assert not mesh.notices("bob", "group_gone")
    assert mesh.machines["bob"].groups[gid].members["carol"].state == G.JOINED


def test_groups_a_start_to_a_partner_whose_chat_cannot_carry_groups_is_refused():
    machine = G.Groups("alice", random_bytes=bytes, stats=collections.Counter())
    machine.links({"oldtimer": "seed", "bob": "plain"}, 0.0)
    assert machine.start("oldtimer", "carol", 0.0) == [
        Notice("group_cannot", name="oldtimer", why="seed")]
    assert machine.start("bob", "carol", 0.0) == [Notice("group_cannot", name="bob", why="plain")]
    assert machine.groups == {}


def test_groups_an_invitee_whose_chat_cannot_carry_groups_is_not_announced():
    machine = G.Groups("alice", random_bytes=lambda k: b"\x02" * k, stats=collections.Counter())
    machine.links({"bob": None}, 0.0)
    out = machine.start("bob", "oldtimer", 0.0)
    assert G.Dial("oldtimer") in out
    out = machine.links({"bob": None, "oldtimer": "seed"}, 1.0)
    assert out == [Notice("group_cannot", name="oldtimer", why="seed")]
    gid = next(iter(machine.groups))
    assert "oldtimer" not in machine.groups[gid].members


def test_groups_a_group_someone_else_made_never_takes_lines_typed_to_one_partner():
    """bob was typing to alice when she made a group of their chat: his
    plain lines stay with alice until he switches (or joins by hand)."""
    busy = [True]
    machine = G.Groups("bob", random_bytes=lambda k: b"\x01" * k, stats=collections.Counter(),
                       auto_join=True, free=lambda: not busy[0])
    machine.links({"alice": None, "carol": None, "dave": None}, 0.0)
    start = W.GroupStart("00112233445566ff", "#alice-0011", ["alice", "bob"])
    out = machine.received("alice", W.encode(start), 0.0)
    assert Notice("group_started_by", group="#alice-0011", name="alice", current=False) in out
    assert machine.current is None
    invite = W.GroupInvite("aa112233445566ff", "#carol-aa11", ["carol", "bob", "dave"])
    out = machine.received("carol", W.encode(invite), 0.0)          # auto-joined
    assert [e.fields.get("current") for e in out if getattr(e, "what", "") ==
            "group_you_joined"] == [False] and machine.current is None
    busy[0] = False                                # nothing under way: a group may take them
    start2 = W.GroupStart("bb112233445566ff", "#dave-bb11", ["dave", "bob"])
    machine.received("dave", W.encode(start2), 0.0)
    assert machine.current == "bb112233445566ff"
