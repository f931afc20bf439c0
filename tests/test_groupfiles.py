"""Files sent to a group (peerpunch.groupfiles) through the session router,
the real relay core and a simulated network with a fake clock
(tests/simnet.py): one Collect for the whole group, each member's own
offer and answer, a member without files refused in one line, one summary;
and the wire's group field, and the group named only for a member."""

import os

import pytest

from peerpunch import chatfiles as CF
from peerpunch import filewire as FW
from peerpunch import groupfiles as GF
from peerpunch import transfer as T
from peerpunch.console import format_event
from peerpunch.filecommands import collected
from peerpunch.filedisk import Disk
from peerpunch.groupstate import JOINED, Group, Member

from .simnet import SimNet
from .test_groups_session import _group
from .test_multichat import ALICE, BOB, CAROL, DAVE
from .test_secure_session import secure_options
from .test_waiting import until

GID = "0123456789abcdef"


class CountingDisk(Disk):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.collects = 0

    def collect(self, paths):
        self.collects += 1
        return super().collect(paths)


def _four(tmp_path):
    """alice, bob (auto-accept), carol (asks) and dave (no files) in one group."""
    net = SimNet(seed=5)
    alice = net.add_peer("alice", ALICE, **secure_options(disk=CountingDisk(str(tmp_path / "a"))))
    bob = net.add_peer("bob", BOB, **secure_options(
        auto_join=True, disk=Disk(None, auto_accept=str(tmp_path / "b"))))
    carol = net.add_peer("carol", CAROL, **secure_options(
        auto_join=True, disk=Disk(str(tmp_path / "c"))))
    dave = net.add_peer("dave", DAVE, **secure_options(auto_join=True))
    net.run(2)
    name = _group(net, alice, bob, carol)
    net.line(ALICE, "/invite dave")
    gid = alice.groups.current_group().gid
    until(net, lambda: all(len(s.groups.machine.groups[gid].joined()) == 3
                           for s in (alice, bob, carol, dave)
                           if gid in s.groups.machine.groups) and
          gid in dave.groups.machine.groups, 20)
    return net, alice, name


def _shell_collects(net, session):
    """Do what the shell does with the Collects shown so far: hash, hand back."""
    for effect in [e for e in net.shown(ALICE, CF.Collect)]:
        net.events[ALICE].remove(effect)
        net._emit(ALICE, collected(session, effect.partner,
                                   session.disk.collect(effect.paths), net.now))


def _news(net, addr, kind):
    return [e for e in net.shown(addr, CF.FileNews) if type(e.event) is kind]


def test_groupfiles_each_member_answers_for_themselves_and_one_summary(tmp_path):
    net, alice, name = _four(tmp_path)
    data = os.urandom(300000)
    (tmp_path / "f.bin").write_bytes(data)
    net.line(ALICE, "/send %s" % (tmp_path / "f.bin"))
    [collect] = net.shown(ALICE, CF.Collect)
    assert collect.partner.members == ("bob", "carol") and collect.partner.refused == ("dave",)
    assert [r.partner for r in net.shown(ALICE, CF.FileRefused)] == ["dave"]
    _shell_collects(net, alice)
    assert alice.disk.collects == 1
    until(net, lambda: _news(net, CAROL, T.FileOffered), 10)
    [offer] = _news(net, CAROL, T.FileOffered)
    assert offer.group == name and offer.partner == "alice"
    assert "alice offers f.bin (1 file, 300.0 kB) to group %s [" % name in format_event(offer)
    net.line(CAROL, "/decline")
    until(net, lambda: net.shown(ALICE, GF.GroupSendDone), 30)
    [done] = net.shown(ALICE, GF.GroupSendDone)
    assert done.sent == ("bob",) and done.names == ("f.bin",)
    assert sorted(done.failed) == [("carol", T.DECLINED_REASON), ("dave", GF.NO_FILES)]
    assert (tmp_path / "b" / "f.bin").read_bytes() == data
    assert not (tmp_path / "c").exists() or not os.listdir(str(tmp_path / "c"))
    assert format_event(done) == ("group %s: f.bin sent to bob; not to dave (cannot take files),"
                                  " carol (declined)" % name)
    assert not net.shown(DAVE, CF.FileNews)


def test_groupfiles_send_naming_the_group_and_sendto(tmp_path):
    net, alice, name = _four(tmp_path)
    (tmp_path / "g.txt").write_bytes(b"hello")
    net.line(ALICE, "/switch bob")
    assert alice.groups.current_group() is None
    net.line(ALICE, "/send %s %s" % (tmp_path / "g.txt", name))
    net.line(ALICE, "/sendto %s %s" % (name, tmp_path / "g.txt"))
    assert [c.partner.name for c in net.shown(ALICE, CF.Collect)] == [name, name]


def test_groupfiles_a_member_joining_later_is_not_offered(tmp_path):
    net, alice, name = _four(tmp_path)
    (tmp_path / "g.txt").write_bytes(b"hello")
    net.line(ALICE, "/send %s" % (tmp_path / "g.txt"))
    gid = alice.groups.current_group().gid
    alice.groups.machine.groups[gid].members["erin"] = Member(JOINED, net.now)
    _shell_collects(net, alice)
    until(net, lambda: _news(net, CAROL, T.FileOffered), 10)
    net.line(CAROL, "/accept")
    until(net, lambda: net.shown(ALICE, GF.GroupSendDone), 30)
    [done] = net.shown(ALICE, GF.GroupSendDone)
    assert sorted(done.sent) == ["bob", "carol"] and done.failed == (("dave", GF.NO_FILES),)
    assert (tmp_path / "c" / "g.txt").read_bytes() == b"hello"


def _incoming(partner, gid=GID):
    return CF.FileNews(partner, T.FileOffered("ab" * 8, ("x",), 1, 1), False, ("x",), 0, gid)


def test_groupfiles_offer_names_the_group_only_for_a_joined_member():
    group = Group(GID, "#alice-0123")
    group.members["alice"] = Member(JOINED, 0.0)
    sends = GF.GroupSends()
    groups = {GID: group}
    assert sends.seen([_incoming("alice")], groups)[0].group == "#alice-0123"
    assert sends.seen([_incoming("mallory")], groups)[0].group is None
    assert sends.seen([_incoming("alice", "f" * 16)], groups)[0].group is None


def test_groupfiles_summary_waits_for_every_member():
    sends = GF.GroupSends()
    sends.started("#g", ("x",), [("bob", "1" * 16), ("carol", "2" * 16)], [])

    def ended(partner, tid, event):
        return sends.seen([CF.FileNews(partner, event, True, ("x",), 1, GID)], {})
    out = ended("bob", "1" * 16, T.FileSent("1" * 16, ("x",), 1, 1))
    assert [type(e) for e in out] == [CF.FileNews] and out[0].group == "#g"
    out = ended("carol", "2" * 16, T.FileFailed("2" * 16, T.PARTNER_GONE, False))
    assert out[1] == GF.GroupSendDone("#g", ("x",), ("bob",), (("carol", T.PARTNER_GONE),))
    assert ended("carol", "2" * 16, T.FileFailed("2" * 16, T.LOST, False))[0].group is None


def test_groupfiles_wire_group_field_round_trips_and_is_left_out_when_none():
    entry = FW.Entry(("a.txt",), 5, "0" * 64)
    plain, grouped = (FW.offer_messages("ab" * 8, [entry], group=g)[0] for g in (None, GID))
    assert b"group" not in plain and FW.decode(plain).group is None
    assert b'"group":"%s"' % GID.encode() in grouped and FW.decode(grouped).group == GID
    with pytest.raises(FW.FileWireError):
        FW.decode(grouped.replace(GID.encode(), b"../etc/passwd000"))
