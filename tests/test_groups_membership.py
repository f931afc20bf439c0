"""Who may change a group's membership (peerpunch.groups, docs/groups.md
"Membership rule"): no one is added but by a GroupAdded every member sees;
a start is of exactly its sender and us; one partner cannot fill our
groups; a group with no one else left is forgotten; a member says only
that it left or lost someone, and never takes us out."""

import collections

import pytest

from peerpunch import groups as G
from peerpunch import groupwire as W
from peerpunch.effects import Log
from peerpunch.events import Notice
from peerpunch.groupwords import words

from .groupsim import Mesh

GID = "00112233445566ff"


def _bob(partners=("alice", "mallory", "eve", "carol")):
    machine = G.Groups("bob", random_bytes=lambda k: b"\x01" * k, stats=collections.Counter())
    machine.links({p: None for p in partners}, 0.0)
    return machine


def _started(machine, by="alice"):
    out = machine.received(by, W.encode(W.GroupStart(GID, "#%s-0011" % by, [by, "bob"])), 0.0)
    assert GID in machine.groups, out
    return machine.groups[GID]


def test_groups_membership_a_start_naming_anyone_else_is_refused():
    bob = _bob()
    start = W.GroupStart(GID, "#mallory-0011", ["mallory", "bob", "eve"])
    out = bob.received("mallory", W.encode(start), 0.0)
    assert [type(e) for e in out] == [Log] and bob.stats["group_bad_start"] == 1
    assert bob.groups == {}
    assert bob.received("eve", W.encode(W.GroupLine(GID, 1, "hi")), 1.0) == []
    assert bob.typed("my secret", 1.0) == [Notice("group_none")]


def test_groups_membership_a_joined_list_adds_no_one():
    bob = _bob()
    group = _started(bob)
    names = ["zz%02d" % i for i in range(14)]
    out = bob.received("alice", W.encode(W.GroupJoined(GID, True, names)), 1.0)
    assert not [e for e in out if type(e) is G.Dial]
    assert sorted(group.members) == ["alice"] and bob.stats["group_unannounced"] == 14


def test_groups_membership_an_announced_invitee_named_in_an_answer_is_met():
    bob = _bob(partners=("alice",))
    _started(bob)
    out = bob.received("alice", W.encode(W.GroupAdded(GID, "zed")), 1.0)
    assert Notice("group_added", group="#alice-0011", name="alice", member="zed") in out
    out = bob.received("alice", W.encode(W.GroupJoined(GID, True, ["zed"])), 1.0)
    assert G.Dial("zed") in out                     # bob < zed: bob dials


def test_groups_membership_invitees_of_the_same_moment_are_announced_to_each_other():
    mesh = Mesh(("alice", "bob", "carol", "dave"))
    mesh.link_all()
    mesh.do("alice", "start", "bob", "carol")
    gid = next(iter(mesh.machines["alice"].groups))
    mesh.do("alice", "invite", mesh.machines["alice"].groups[gid], "dave")
    mesh.run_until(lambda: all(
        gid in m.groups and len(m.groups[gid].joined()) == 3 for m in mesh.machines.values()))
    name = mesh.machines["alice"].groups[gid].name
    added = {n: [(e.fields["member"]) for e in mesh.notices(n, "group_added")]
             for n in mesh.names}
    assert added["carol"] == ["dave"] and added["dave"] == ["carol"]
    assert sorted(added["bob"]) == ["carol", "dave"]
    assert mesh.machines["carol"].stats["group_unannounced"] == 0
    assert all(mesh.machines[n].groups[gid].name == name for n in mesh.names)


def test_groups_membership_one_partner_cannot_fill_our_groups():
    bob = _bob()
    for n in range(G.MAX_GROUPS + 4):
        start = W.GroupStart("%016x" % n, "#m%d" % n, ["mallory", "bob"])
        bob.received("mallory", W.encode(start), 0.0)
    assert len(bob.groups) == G.MAX_GROUPS_FROM
    assert bob.stats["group_too_many_from"] == G.MAX_GROUPS + 4 - G.MAX_GROUPS_FROM
    for n in range(G.MAX_INVITES):
        invite = W.GroupInvite("%016x" % (100 + n), "#i%d" % n, ["mallory", "bob"])
        bob.received("mallory", W.encode(invite), 0.0)
    assert len(bob.invites) == 0                    # its share is used up
    assert any(type(e) is G.Post for e in bob.start("alice", "carol", 1.0))


def test_groups_membership_a_group_with_no_one_else_left_is_forgotten():
    bob = _bob()
    _started(bob, "mallory")
    bob.current = GID
    out = bob.links({"alice": None}, 1.0)           # mallory's chat ended
    assert out == [Notice("group_gone", group="#mallory-0011", name="mallory", why="ended"),
                   Notice("group_empty", group="#mallory-0011")]
    assert bob.groups == {} and bob.current is None
    assert words(out[1]) == "group #mallory-0011: no one else is left in it; forgot it"


def test_groups_membership_a_member_hello_is_answered_once():
    """Each hello is answered with a GroupAdded per member it left out, so
    a member repeating hellos (and never acknowledging) must not make us
    queue ~15 posts each time: only its first hello is answered."""
    bob = _bob()
    _started(bob)
    bob.received("alice", W.encode(W.GroupAdded(GID, "eve")), 1.0)
    bob.received("eve", W.encode(W.GroupJoined(GID, False, [])), 1.0)
    bob.received("alice", W.encode(W.GroupAdded(GID, "carol")), 1.0)

    def hello(now):
        out = bob.received("carol", W.encode(W.GroupJoined(GID, False, [])), now)
        return [e for e in out if type(e) is G.Post]
    assert len(hello(2.0)) == 3             # GroupAdded alice, GroupAdded eve, the answer
    assert [hello(3.0 + i) for i in range(5)] == [[]] * 5
    assert bob.stats["group_hello_again"] == 5


def test_groups_membership_no_member_takes_us_out():
    bob = _bob()
    group = _started(bob)
    assert bob.received("alice", W.encode(W.GroupLeft(GID, "bob")), 1.0) == []
    assert bob.groups == {GID: group} and bob.stats["group_left_us"] == 1


def test_groups_membership_a_lost_member_is_said_to_be_lost_by_whom():
    bob = _bob()
    group = _started(bob)
    bob.received("alice", W.encode(W.GroupAdded(GID, "carol")), 1.0)
    bob.received("carol", W.encode(W.GroupJoined(GID, False, [])), 1.0)
    assert sorted(group.joined()) == ["alice", "carol"]
    out = bob.received("alice", W.encode(W.GroupLeft(GID, "carol")), 2.0)
    assert out == [Notice("group_gone", group="#alice-0011", name="carol", why="lost_by",
                          by="alice")]
    assert words(out[0]) == "group #alice-0011: alice says carol is gone (alice lost them)"


@pytest.mark.parametrize("seed", [12, 15, 21])
@pytest.mark.parametrize("names", [("carol", "dave"), ("zoe", "dave")])
def test_groups_membership_invitees_of_two_members_meet_with_loss(seed, names):
    """alice invites one while bob invites another: each hello names the
    members its sender knows, and whoever knows more announces the rest."""
    first, second = names
    mesh = Mesh(("alice", "bob") + names, seed=seed, loss=0.2, jitter=0.05)
    mesh.link_all()
    mesh.do("alice", "start", "bob", first)
    gid = next(iter(mesh.machines["alice"].groups))
    mesh.run_until(lambda: gid in mesh.machines["bob"].groups)
    mesh.do("bob", "invite", mesh.machines["bob"].groups[gid], second)
    mesh.run_until(lambda: all(
        gid in m.groups and len(m.groups[gid].joined()) == 3 for m in mesh.machines.values()),
        limit=120)
    for name in names:              # each was shown the other: in its invitation, or added
        other, = [n for n in names if n != name]
        shown = [e.fields["member"] for e in mesh.notices(name, "group_added")] + \
            mesh.notices(name, "group_you_joined")[0].fields["names"].split(", ")
        assert other in shown
