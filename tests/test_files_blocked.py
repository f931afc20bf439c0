"""A chat blocked on a changed key (the partner is not the key pinned for
its name) carries no file traffic either way until /trust: an impostor's
offer is neither shown nor written (even with --auto-accept), our /send is
refused with a line saying /trust first, and after /trust files flow."""

import os

from peerpunch import chatfiles as CF
from peerpunch import securing as SC
from peerpunch import transfer as T
from peerpunch.filedisk import Disk
from peerpunch.filewords import format_news

from . import test_chat_stream as CS
from .test_path import ALICE, BOB, path
from .test_securing import BACKEND

FEATS = CS.ENCRYPTING + ("files1",)


def _wire(monkeypatch, tmp_path, receiver):
    """alice (who pinned another key for bob) and bob; *receiver* auto-accepts."""
    down = tmp_path / "down"

    def chat(us, partner, identity, keepalive=15.0, pins=None, disk=None):   # disk: ours
        from peerpunch.chat import Chat
        disk = Disk(None, auto_accept=str(down)) if us == receiver else Disk(str(tmp_path / us))
        p = path(keepalive=keepalive)
        options = dict(identity=identity, backend=BACKEND, pins=pins or SC.Pins(),
                       strict=False, require_encryption=False)
        return Chat(partner, us=us, path=p, secure_options=options, stats=p.stats, disk=disk)
    monkeypatch.setattr(CS, "chat", chat)
    w = CS.Wire(alice_sees=FEATS, bob_sees=FEATS, alice_pins=SC.Pins({"bob": bytes(32)}))
    w.connected()
    assert w.alice.secure.blocked
    return w, down


def _offer(w, addr, src):
    files = w.ends[addr].files
    out = files.offer([str(src)])
    if out and type(out[0]) is CF.Collect:
        w.emit(addr, files.collected(files.disk.collect(out[0].paths), w.now))
        w.emit(addr, w.ends[addr].pump(w.now))
    else:
        w.emit(addr, out)


def _listed(down):
    return os.listdir(str(down)) if down.exists() else []


def test_files_blocked_impostor_offer_not_shown_nor_written(tmp_path, monkeypatch):
    w, down = _wire(monkeypatch, tmp_path, receiver="alice")
    src = tmp_path / "evil.sh"
    src.write_bytes(b"echo pwned\n")
    _offer(w, BOB, src)
    w.run(5.0)
    assert not [e for e in w.shown[ALICE] if type(e) is CF.FileNews]
    assert _listed(down) == []
    assert w.alice.stats["stream_dropped"] > 0


def test_files_blocked_send_refused_with_trust_first(tmp_path, monkeypatch):
    w, down = _wire(monkeypatch, tmp_path, receiver="bob")
    src = tmp_path / "secret.txt"
    src.write_bytes(b"private\n")
    _offer(w, ALICE, src)
    w.run(5.0)
    assert _listed(down) == []
    [refused] = [e for e in w.shown[ALICE] if type(e) is CF.FileRefused]
    assert refused.why == CF.BLOCKED
    assert "/trust bob first" in format_news(refused, str)


def test_files_blocked_offer_arrives_after_trust(tmp_path, monkeypatch):
    w, down = _wire(monkeypatch, tmp_path, receiver="alice")
    src = tmp_path / "hello.txt"
    src.write_bytes(b"hello\n")
    _offer(w, BOB, src)
    w.run(2.0)
    assert _listed(down) == []
    w.emit(ALICE, w.alice.trust(w.now))
    w.run(10.0, until=lambda: any(type(e) is CF.FileNews and type(e.event) is T.FileReceived
                                  for e in w.shown[ALICE]))
    assert (down / "hello.txt").read_bytes() == b"hello\n"
