"""Two Chats with encrypted links and the reliable stream between them, on an
in-memory wire with a fake clock: no relay client, no router, no sockets.
Lines are delivered and said to be, or reported within 10 s of typing;
held while the path is suspect; a plain or older partner still gets
DirectMessage; what does not belong on the stream is dropped and counted."""

import random

from peerpunch import events as E
from peerpunch import protocol as P
from peerpunch import securing as SC
from peerpunch.commands import chats
from peerpunch.console import format_event
from peerpunch.effects import Send
from peerpunch.path import Origin
from peerpunch.secure import DATA

from .test_path import ALICE, BOB, SECRET, path
from .test_securing import BACKEND, new_identity

ENCRYPTING = P.SECURE_FEATURES
WITHOUT_STREAM = tuple(f for f in P.SECURE_FEATURES if f != P.FEATURE_STREAM)
STEP = 0.01


def chat(us, partner, identity, keepalive=15.0, pins=None, disk=None):
    from peerpunch.chat import Chat
    p = path(keepalive=keepalive)
    options = dict(identity=identity, backend=BACKEND, pins=pins or SC.Pins(), strict=False,
                   require_encryption=False)
    return Chat(partner, us=us, path=p, secure_options=options, stats=p.stats, disk=disk)


def info(name, addr, features):
    return P.PeerInfo(peer=P.format_endpoint(addr), username=name, features=features,
                      session=SECRET)


class Wire:
    """alice at ALICE and bob at BOB, joined directly. *cut*: datagrams
    between them vanish (either way); *loss*: a share of them, at random."""

    def __init__(self, alice_sees=ENCRYPTING, bob_sees=ENCRYPTING, keepalive=15.0,
                 identities=True, alice_pins=None, disks=(None, None)):
        ident = new_identity if identities else (lambda: None)
        self.ends = {ALICE: chat("alice", "bob", ident(), keepalive, alice_pins, disks[0]),
                     BOB: chat("bob", "alice", ident(), keepalive, disk=disks[1])}
        self.shown = {ALICE: [], BOB: []}
        self.sent = {ALICE: [], BOB: []}
        self.flight = []
        self.now = 0.0
        self.cut = False
        self.loss = 0.0
        self.rng = random.Random(3)
        self.emit(ALICE, self.ends[ALICE].start(info("bob", BOB, alice_sees), 0.0))
        self.emit(BOB, self.ends[BOB].start(info("alice", ALICE, bob_sees), 0.0))

    @property
    def alice(self):
        return self.ends[ALICE]

    @property
    def bob(self):
        return self.ends[BOB]

    def emit(self, src, effects):
        for effect in effects:
            if isinstance(effect, Send):
                if effect.addr in self.ends:       # the relay's copies go nowhere here
                    self.sent[src].append(effect.data)
                    self.flight.append((src, effect))
            else:
                self.shown[src].append(effect)

    def type(self, addr, text):
        self.emit(addr, self.ends[addr].typed(text, self.now))

    def deliver(self, src, data):
        """*data* arrives from *src* at the other end now."""
        dst = BOB if src == ALICE else ALICE
        self.emit(dst, self.ends[dst].received(data, Origin(src, 0, False), self.now))

    def run(self, seconds, until=None):
        end = self.now + seconds
        while self.now < end and not (until and until()):
            batch, self.flight = self.flight, []      # a step each way: 10 ms
            for src, send in batch:
                if not self.cut and self.rng.random() >= self.loss:
                    self.deliver(src, send.data)
            self.now = round(self.now + STEP, 6)
            for addr, machine in self.ends.items():
                deadline = machine.next_deadline()
                if deadline is not None and deadline <= self.now:
                    self.emit(addr, machine.tick(self.now))
        return self

    def of(self, addr, kind):
        return [e for e in self.shown[addr] if type(e) is kind]

    def connected(self):
        self.run(2.0, until=lambda: self.of(ALICE, E.Connected) and self.of(BOB, E.Connected))
        assert self.of(ALICE, E.Connected) and self.of(BOB, E.Connected)
        return self


def test_chat_stream_lines_arrive_in_order_and_are_said_delivered():
    w = Wire().connected()
    assert w.alice.lines.stream is not None and w.bob.lines.stream is not None
    before = len(w.sent[ALICE])
    for text in ("one", "two", "three"):
        w.type(ALICE, text)
    w.run(1.0)
    assert w.of(BOB, E.Message) == [E.Message("alice", t, i)
                                    for i, t in enumerate(("one", "two", "three"), 1)]
    delivered = w.of(ALICE, E.Delivered)
    assert sorted(sum((d.ids for d in delivered), ())) == [1, 2, 3]
    assert all(d.partner == "bob" for d in delivered)
    assert w.alice.lines.stream.outstanding() == 0
    assert format_event(E.Delivered("bob", (1,)), tty=True) == "\u2713"
    assert format_event(E.Delivered("bob", (1, 2)), tty=True) == "\u2713 2"
    assert format_event(E.Delivered("bob", (1,))) is None       # not a terminal: nothing
    assert [format_event(m) for m in w.of(BOB, E.Message)][0] == "[alice]> one"
    # each line went as a sealed stream packet, never as a DirectMessage
    assert all(d[:1] == bytes([DATA]) for d in w.sent[ALICE][before:])


def test_chat_stream_partner_vanishes_line_reported_within_10_s():
    w = Wire().connected()
    w.run(1.0)
    w.cut = True
    typed = w.now
    w.type(ALICE, "are you there?")
    w.run(12.0, until=lambda: w.of(ALICE, E.NotDelivered))
    (report,) = w.of(ALICE, E.NotDelivered)
    assert report == E.NotDelivered("bob", (1,), E.NO_ANSWER)
    assert w.now - typed <= 10.0 and not w.of(ALICE, E.Delivered)
    assert format_event(report) == "1 line not delivered to bob (no answer)"
    assert not w.of(ALICE, E.ConnectionLost)       # the keep-alive's 45 s did not decide


def test_chat_stream_line_sent_while_suspect_arrives_when_the_path_is_back():
    w = Wire(keepalive=2.0).connected()
    w.cut = True
    w.run(2.0 * E.SUSPECT_AFTER + 0.2)
    assert w.alice.path.suspect and w.alice.up()          # the stream carries it anyway
    w.type(ALICE, "sent while quiet")
    assert [n.what for n in w.of(ALICE, E.Notice)][-1:] == ["sent_quiet"]
    assert not w.alice.outbox.lines and w.alice.lines.stream.outstanding() == 1
    w.run(1.0)                                   # still gone: outstanding, not yet reported
    assert not w.of(ALICE, E.NotDelivered)
    w.cut = False
    w.run(5.0, until=lambda: w.of(ALICE, E.Delivered))
    assert [m.text for m in w.of(BOB, E.Message)] == ["sent while quiet"]
    assert [d.ids for d in w.of(ALICE, E.Delivered)] == [(1,)]
    assert not w.alice.path.suspect and not w.alice.outbox.told_quiet   # told again next quiet spell


def test_chat_stream_lines_held_then_chat_ends_are_reported_not_delivered():
    w = Wire(keepalive=2.0).connected()
    w.cut = True
    w.type(ALICE, "in flight")
    w.run(2.0 * E.SUSPECT_AFTER + 0.2)
    w.type(ALICE, "held")
    w.type(ALICE, "held too")
    out = w.alice.close()
    reports = [e for e in out if type(e) is E.NotDelivered]
    # "in flight" went 2.7 s ago, not yet given up: one report for all three
    assert reports == [E.NotDelivered("bob", (1, 2, 3), E.ENDED)]
    assert format_event(reports[0]) == "3 lines not delivered to bob (the chat ended)"
    assert w.alice.lines.stream is None and w.alice.stream_timer.when is None


def test_chat_stream_64_kib_line_is_one_message_and_more_is_refused():
    w = Wire().connected()
    text = "\u00e9" * (32 * 1024)                 # 64 KiB of UTF-8, two bytes a character
    w.type(ALICE, text)
    w.run(3.0, until=lambda: w.of(ALICE, E.Delivered))
    assert [m.text for m in w.of(BOB, E.Message)] == [text]
    assert len(w.sent[ALICE]) > 50
    sent_before = len(w.sent[ALICE])
    w.type(ALICE, text + "x")
    (notice,) = [n for n in w.of(ALICE, E.Notice) if n.what == "too_long"]
    assert notice.text == "not sent: a line may be 64 KiB of UTF-8 at most"
    assert len(w.sent[ALICE]) == sent_before


def test_chat_stream_partner_without_stream1_gets_direct_messages():
    """alice was told bob does not announce stream1 (an older peer of
    ours): her lines are sealed DirectMessages, his stream lines still
    reach her, and nothing is reported either way for hers."""
    w = Wire(alice_sees=WITHOUT_STREAM).connected()
    w.type(ALICE, "plain old line")
    w.type(BOB, "on the stream")
    w.run(1.0)
    assert w.of(BOB, E.Message) == [E.Message("alice", "plain old line", None)]
    assert w.of(ALICE, E.Message) == [E.Message("bob", "on the stream", 1)]
    assert not w.of(ALICE, E.Delivered) and [d.ids for d in w.of(BOB, E.Delivered)] == [(1,)]


def test_chat_stream_none_on_a_plain_link_seed_style():
    w = Wire(identities=False).connected()
    assert w.alice.lines.stream is None
    w.type(ALICE, "hello seed")
    w.run(0.5)
    assert P.decode(w.sent[ALICE][-1]) == P.DirectMessage("hello seed")
    assert w.of(BOB, E.Message) == [E.Message("alice", "hello seed", None)]
    assert chats_row(w.alice)[-1] is None


def chats_row(chat):
    class Table:
        chats = {chat.partner: chat}
        current = chat.partner
    return chats(Table()).fields["rows"][0]


def test_chat_stream_garbled_and_forged_packets_are_dropped_and_counted():
    w = Wire().connected()
    garbled = w.bob.secure.seal_packet(b"\xc1\x00\x01garbage")   # authentic, but not a packet
    w.deliver(BOB, garbled)
    assert w.alice.stats["stream_dropped"] == 1
    forged = bytes([DATA]) + (1 << 40).to_bytes(8, "big") + bytes(60)
    w.deliver(BOB, forged)
    assert w.alice.stats["dropped"] == 1
    assert not w.of(ALICE, E.Message)
    w.type(BOB, "still fine")
    w.run(1.0)
    assert [m.text for m in w.of(ALICE, E.Message)] == ["still fine"]
    assert w.of(BOB, E.Delivered)


def test_chat_stream_under_loss_every_line_once_in_order_and_rtt_in_chats():
    w = Wire().connected()
    w.loss = 0.3
    texts = ["line %d" % i for i in range(100)]
    for text in texts:
        w.type(ALICE, text)
    w.run(8.0, until=lambda: len(w.of(BOB, E.Message)) == 100)
    assert [m.text for m in w.of(BOB, E.Message)] == texts
    w.run(3.0, until=lambda: w.alice.lines.stream.outstanding() == 0)
    assert sorted(sum((d.ids for d in w.of(ALICE, E.Delivered)), ())) == list(range(1, 101))
    row = chats_row(w.alice)
    assert row[-1] is not None and row[-1] > 0
    assert ", rtt " in format_event(chats(type("S", (), {"chats": {"bob": w.alice},
                                                          "current": "bob"})()))


def test_chat_stream_lines_from_a_changed_key_are_held_until_trust():
    """bob's key is not the one alice pinned: his stream lines reach her
    program (his side sees them delivered) but are shown only on /trust."""
    w = Wire(alice_pins=SC.Pins({"bob": bytes(32)})).connected()
    assert w.alice.secure.blocked and w.alice.lines.stream is not None
    w.type(BOB, "it is really me")
    w.run(1.0)
    assert not w.of(ALICE, E.Message) and [d.ids for d in w.of(BOB, E.Delivered)] == [(1,)]
    out = w.alice.trust(w.now)
    assert [e for e in out if type(e) is E.Message] == [E.Message("bob", "it is really me")]


def test_chat_stream_a_new_pairing_ends_the_old_stream():
    w = Wire().connected()
    w.cut = True
    w.type(ALICE, "into the old session")
    out = w.alice.start(info("bob", BOB, ENCRYPTING), w.now)
    assert [e for e in out if type(e) is E.NotDelivered] == [
        E.NotDelivered("bob", (1,), E.ENDED)]
    assert w.alice.lines.stream is None          # the next one opens with the new keys


def test_chat_stream_lines_beyond_the_hold_are_not_acknowledged_while_blocked():
    """alice has not trusted bob's changed key: she holds MAX_HELD of his
    lines; the rest are never acknowledged, so bob is told they were not
    delivered, and every line he was told is delivered is shown on /trust."""
    w = Wire(alice_pins=SC.Pins({"bob": bytes(32)})).connected()
    assert w.alice.secure.blocked
    for i in range(E.MAX_HELD + 44):
        w.type(BOB, "line %d" % i)
    w.run(12.0, until=lambda: w.bob.lines.stream.outstanding() == 0)
    delivered = sum((d.ids for d in w.of(BOB, E.Delivered)), ())
    missed = sum((d.ids for d in w.of(BOB, E.NotDelivered)), ())
    assert len(delivered) + len(missed) == E.MAX_HELD + 44 and missed
    shown = [e for e in w.alice.trust(w.now) if type(e) is E.Message]
    assert len(shown) == len(delivered) == E.MAX_HELD
    assert [m.text for m in shown] == ["line %d" % i for i in range(E.MAX_HELD)]


def test_chat_stream_lines_held_when_the_chat_ends_blocked_are_reported():
    w = Wire(alice_pins=SC.Pins({"bob": bytes(32)})).connected()
    for text in ("one", "two"):
        w.type(BOB, text)
    w.run(1.0)
    assert sorted(sum((d.ids for d in w.of(BOB, E.Delivered)), ())) == [1, 2]
    alerts = [e for e in w.alice.close() if type(e) is E.Alert]
    assert alerts == [E.Alert("unshown_left", count=2, name="bob", limit=E.MAX_HELD)]
    assert format_event(alerts[0]) == "!! 2 line(s) from bob were not shown (the chat ended without /trust)"


def test_chat_stream_a_line_to_a_partner_gone_quiet_is_reported_within_10_s():
    """bob vanished 20 s ago (suspect, not yet given up): alice's line is
    sent on the stream anyway, and reported not delivered within 10 s."""
    w = Wire().connected()
    w.cut = True
    w.run(20.0)
    assert w.alice.path.suspect and not w.alice.closed
    typed = w.now
    w.type(ALICE, "hello?")
    assert [n.what for n in w.of(ALICE, E.Notice)][-1] == "sent_quiet"
    w.type(ALICE, "anyone?")
    assert [n.what for n in w.of(ALICE, E.Notice)].count("sent_quiet") == 1    # told once
    w.run(10.0, until=lambda: len(sum((d.ids for d in w.of(ALICE, E.NotDelivered)), ())) == 2)
    assert sum((d.ids for d in w.of(ALICE, E.NotDelivered)), ()) == (1, 2)
    assert w.now - typed <= 10.0 and not w.alice.outbox.lines


def test_chat_without_the_stream_still_holds_lines_while_suspect():
    """A partner without stream1 (a seed-like peer): a line typed while it
    is quiet is held, and sent once it is heard again."""
    w = Wire(alice_sees=WITHOUT_STREAM, keepalive=2.0).connected()
    w.cut = True
    w.run(2.0 * E.SUSPECT_AFTER + 0.2)
    assert w.alice.path.suspect and not w.alice.up()
    w.type(ALICE, "held for a while")
    assert [n.what for n in w.of(ALICE, E.Notice)][-1:] == ["held_quiet"]
    assert w.alice.outbox.lines == ["held for a while"]
    w.cut = False
    w.run(3.0, until=lambda: w.of(BOB, E.Message))
    assert [n.what for n in w.of(ALICE, E.Notice)][-1] == "heard_again"
    assert [m.text for m in w.of(BOB, E.Message)] == ["held for a while"]


def test_chat_stream_file_datagrams_are_answered_once_per_batch_when_ticked(tmp_path):
    from peerpunch import chatfiles as CF
    from peerpunch.filedisk import Disk
    source = tmp_path / "big.bin"
    source.write_bytes(bytes(range(256)) * 4000)
    files = ENCRYPTING + ("files1",)
    w = Wire(files, files, disks=(Disk(str(tmp_path / "a")),
                                  Disk(None, auto_accept=str(tmp_path / "down")))).connected()
    [collect] = w.alice.files.offer([str(source)])
    w.alice.files.collected(w.alice.files.disk.collect(collect.paths), w.now)
    w.emit(ALICE, w.alice.pump(w.now))
    w.run(2.0, until=lambda: len(w.flight) >= 4 and all(s == ALICE for s, _ in w.flight))
    batch, w.flight = w.flight, []
    assert len(batch) >= 4
    for src, send in batch:                       # file data only: nothing answered yet
        w.deliver(src, send.data)
        assert w.flight == []
    assert w.bob.next_deadline() <= w.now         # ... but due at once
    w.emit(BOB, w.bob.tick(w.now))
    assert len(w.flight) == CF.ACK_COPIES         # one acknowledgment for the whole batch
    w.run(30.0, until=lambda: (tmp_path / "down" / "big.bin").exists())
    assert (tmp_path / "down" / "big.bin").read_bytes() == source.read_bytes()


def test_chat_stream_a_bug_in_one_of_its_timers_ends_the_chat_not_the_peer(caplog):
    """File packets are served from the chat's stream timer (not per
    datagram): a bug there must end this chat, logged with its traceback
    and counted, instead of escaping into the network thread."""
    from peerpunch.path import EndChat
    w = Wire().connected()

    def broken(now):
        raise RuntimeError("a bug in the stream")
    w.alice.lines.packets = broken
    w.alice.stream_timer.at(w.now)
    with caplog.at_level("ERROR"):
        out = w.alice.tick(w.now)                   # does not raise
    assert out == [EndChat("bob")] and w.alice.closed
    assert w.alice.stats["internal_errors"] == 1
    assert "the chat with bob failed" in caplog.text and "a bug in the stream" in caplog.text
    w.emit(BOB, w.bob.typed("still there?", w.now))   # bob's side is untouched by it
    assert not w.bob.closed
