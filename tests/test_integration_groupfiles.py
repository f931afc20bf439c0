"""Files sent to a group with the real relay and three peers on 127.0.0.1
(issue 12): alice sends to her group of three and each member answers for
themselves; the files arrive byte-identical; alice sees who got them."""

import os
import re

import pytest

from .procs import CONNECTED, peer
from .test_integration_files import random_file
from .test_integration_groups import GROUP

pytestmark = pytest.mark.timeout(90)


def _group_of_three(procs, relay, bob_args=(), carol_args=()):
    """alice, bob, carol in one group, alice's (as test_integration_groups,
    with extra options for bob and carol); (peers, group name)."""
    bob = peer(procs, relay, "--name", "bob", "--wait", *bob_args)
    carol = peer(procs, relay, "--name", "carol", "--wait", *carol_args)
    bob.expect("^registered as bob")
    carol.expect("^registered as carol")
    alice = peer(procs, relay, "--name", "alice", "--connect", "bob")
    alice.expect(CONNECTED % "bob")
    alice.send("/invite carol")
    group = alice.expect(r"^group (%s): you and bob" % GROUP).group(1)
    alice.expect(r"^group %s: carol joined$" % group)
    bob.expect(r"^group %s: carol joined$" % group)
    return alice, bob, carol, group


def test_integration_groupfiles_both_members_receive_byte_identical(procs, relay, tmp_path):
    down_b, down_c = tmp_path / "bob", tmp_path / "carol"
    alice, bob, carol, group = _group_of_three(
        procs, relay, ("--auto-accept", str(down_b)), ("--auto-accept", str(down_c)))
    with open(random_file(tmp_path / "shared.bin", 2000003), "rb") as f:
        data = f.read()
    alice.send("/send %s" % (tmp_path / "shared.bin"))
    offer = r"^alice offers shared\.bin \(1 file, 2\.0 MB\) to group %s \[" % re.escape(group)
    for member, down in ((bob, down_b), (carol, down_c)):
        member.expect(offer)
        member.expect(r"^received shared\.bin \(2000003 bytes\) from alice, saved as ",
                      timeout=30)
        assert (down / "shared.bin").read_bytes() == data
    alice.expect(r"^group %s: shared\.bin sent to (bob, carol|carol, bob)$" % re.escape(group),
                 timeout=30)


def test_integration_groupfiles_one_declines_the_other_accepts(procs, relay, tmp_path):
    down_b = tmp_path / "bob"
    alice, bob, carol, group = _group_of_three(procs, relay, ("--auto-accept", str(down_b)),
                                               ("--download-dir", str(tmp_path / "carol")))
    with open(random_file(tmp_path / "note.txt", 1234), "rb") as f:
        data = f.read()
    alice.send("/send %s" % (tmp_path / "note.txt"))
    carol.expect(r"^alice offers note\.txt \(1 file, 1\.2 kB\) to group %s \[" % re.escape(group))
    carol.send("/decline")
    alice.expect(r"^transfer of note\.txt to carol failed: declined by carol$", timeout=20)
    alice.expect(r"^sent note\.txt to bob \(1234 bytes", timeout=20)
    alice.expect(r"^group %s: note\.txt sent to bob; not to carol \(declined\)$"
                 % re.escape(group), timeout=20)
    assert (down_b / "note.txt").read_bytes() == data
    assert not os.path.exists(str(tmp_path / "carol" / "note.txt"))
