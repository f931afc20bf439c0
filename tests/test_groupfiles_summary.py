"""A group send's last FileSent that surfaces in the chat pump of a plain
/send's collected (not through groups.settled) still reaches
GroupSends.seen: the summary is shown and no entry is left behind."""

import os

from peerpunch import filewire as FW
from peerpunch import groupfiles as GF
from peerpunch import stream as ST
from peerpunch import transfer as T
from peerpunch.filecommands import collected

from .test_groupfiles import _four, _news, _shell_collects
from .test_multichat import ALICE, CAROL


def _done_waiting(chat):
    """A FileDone the files stream took in and the chat has not served yet."""
    return chat.files.stream is not None and any(
        type(e) is ST.Received and type(FW.decode(e.data)) is FW.FileDone
        for e in chat.files.stream._events)


def test_groupfiles_summary_survives_a_plain_send_collected_before_the_tick(tmp_path):
    net, alice, name = _four(tmp_path)
    (tmp_path / "f.bin").write_bytes(os.urandom(300000))
    (tmp_path / "g.txt").write_bytes(b"other")
    held = []
    net.drop = lambda src, dst, data: dst == ALICE and not held.append((data, src))
    net.line(ALICE, "/send %s" % (tmp_path / "f.bin"))
    _shell_collects(net, alice)
    chat = alice.table.chats["bob"]
    declined = False
    for _ in range(3000):          # datagrams to alice read by hand, no tick in between
        net.run(0.01)
        while held and not _done_waiting(chat):
            net._emit(ALICE, alice.datagram_received(*held.pop(0), net.now, 0))
        if not declined and _news(net, CAROL, T.FileOffered):
            net.line(CAROL, "/decline")
            declined = True
        if _done_waiting(chat):
            break
    net.drop = None
    for data, src in held:
        net._emit(ALICE, alice.datagram_received(data, src, net.now, 0))
    assert declined and _done_waiting(chat) and not _news(net, ALICE, T.FileSent)
    # bob's FileDone read in a batch of file datagrams (answered at the next tick);
    # in the same loop turn the hash of a plain "/send g.txt bob" comes back:
    net._emit(ALICE, collected(alice, "bob", alice.disk.collect([str(tmp_path / "g.txt")]),
                               net.now))
    net.run(5)
    assert _news(net, ALICE, T.FileSent)
    assert net.shown(ALICE, GF.GroupSendDone), "no group summary"
    assert not alice.groups.sends._sends
