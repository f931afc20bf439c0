"""ChatFiles alone: two chats' file sides joined in memory with a fake
clock (no sockets): a file crosses at 0 and 10 % loss, a partner who stops
answering fails the transfer in DELIVERY_TIMEOUT, a relayed path is paced
below the relay's rate, file packets carry their own mark."""

import os
import random

from peerpunch import chatfiles as CF
from peerpunch import transfer as T
from peerpunch.delivery import PACKET_SIZE
from peerpunch.filedisk import Disk
from peerpunch.streamwire import PACKET_TYPE


class Pair:
    """Alice's and bob's ChatFiles; bob auto-accepts into *down*."""

    def __init__(self, tmp_path, loss=0.0, seed=1, relayed=False, ipv6=False, carries=None):
        self.alice = CF.ChatFiles("bob", Disk(str(tmp_path / "a")), PACKET_SIZE)
        self.bob = CF.ChatFiles("alice", Disk(None, auto_accept=str(tmp_path / "down")),
                                PACKET_SIZE)
        for end in (self.alice, self.bob):
            end.start(("files1",))
        self.loss, self.rng, self.relayed = loss, random.Random(seed), relayed
        self.ipv6, self.carries = ipv6, carries      # the path's family; its largest packet
        self.now = 0.0
        self.news = {"alice": [], "bob": []}
        self.cut = False                     # bob stops answering
        self.wire = []                       # packets alice sent: (time, bytes)

    def step(self, delay=0.0005):
        out_a = self.alice.packets(self.now, self.relayed, self.ipv6)
        self.wire += [(self.now, p) for p in out_a]
        out_b = self.bob.packets(self.now, self.relayed, self.ipv6)
        if self.carries is not None:
            out_a, out_b = ([p for p in out if len(p) <= self.carries] for out in (out_a, out_b))
        self.news["alice"] += self.alice.events()
        self.news["bob"] += self.bob.events()
        self.now += delay
        for packet in out_a:
            if not self.cut and self.rng.random() >= self.loss:
                assert self.bob.received_run([packet], self.now) == ([], [])
        for packet in out_b:
            if not self.cut and self.rng.random() >= self.loss:
                assert self.alice.received_run([packet], self.now) == ([], [])
        if not out_a and not out_b:
            due = CF.sooner(self.alice.next_deadline(), self.bob.next_deadline())
            if due is not None and due > self.now:
                self.now = due

    def offer(self, path):
        """Alice offers *path*, collected at once (the shell's thread, here)."""
        [collect] = self.alice.offer([str(path)])
        return self.alice.collected(self.alice.disk.collect(collect.paths), self.now)

    def run_until(self, condition, limit):
        while not condition():
            assert self.now < limit, (self.news, self.now)
            self.step()

    def kinds(self, who):
        return [type(n.event).__name__ for n in self.news[who] if type(n) is CF.FileNews]


def _file(tmp_path, size, name="f.bin"):
    path = tmp_path / name
    path.write_bytes(os.urandom(size))
    return path


def _ended(pair, who):
    return lambda: any(k in ("FileSent", "FileFailed") for k in pair.kinds(who))


def test_chatfiles_file_arrives_byte_identical_at_10_percent_loss(tmp_path):
    path = _file(tmp_path, 1500 * 1000 + 3)
    pair = Pair(tmp_path, loss=0.10)
    assert pair.offer(path) == []
    pair.run_until(_ended(pair, "alice"), limit=120.0)
    assert pair.kinds("alice")[-1] == "FileSent", pair.news
    assert (tmp_path / "down" / "f.bin").read_bytes() == path.read_bytes()
    received = [n for n in pair.news["bob"] if type(n.event) is T.FileReceived]
    assert received and received[0].names == ("f.bin",) and not received[0].outgoing
    sent = [n for n in pair.news["alice"] if type(n.event) is T.FileSent][0]
    assert sent.outgoing and sent.sent == path.stat().st_size


def test_chatfiles_random_loss_never_pins_the_window_at_the_minimum(tmp_path):
    """15 % loss each way: the files stream's window never falls to NewReno's
    two packets, and once 100 packets have gone it is mostly 10 or more
    (the first few losses are too few to tell random loss from congestion:
    they may halve it, and it grows back)."""
    path = _file(tmp_path, 3 * 1000 * 1000)
    pair = Pair(tmp_path, loss=0.15, seed=7)
    pair.offer(path)
    early, later = [], []
    while not _ended(pair, "alice")():
        assert pair.now < 300.0, pair.news
        pair.step()
        stats = pair.alice.stream.stats()
        if stats.get("lost"):
            (early if stats["packets"] < 100 else later).append(stats["cwnd"])
    assert pair.kinds("alice")[-1] == "FileSent", pair.news
    assert (tmp_path / "down" / "f.bin").read_bytes() == path.read_bytes()
    assert min(early + later) > 2 * PACKET_SIZE, min(early + later)
    assert later and sorted(later)[len(later) // 2] >= 10 * PACKET_SIZE, sorted(later)


def test_chatfiles_ipv6_path_grows_to_the_ipv6_frame_where_the_ipv4_size_never_passes(tmp_path):
    """A full frame over IPv6 carries 20 bytes less than over IPv4: the
    stream searches for that size there and grows to it."""
    path = _file(tmp_path, 2 * 1000 * 1000)
    largest = {}
    for ipv6 in (False, True):
        pair = Pair(tmp_path / str(ipv6), ipv6=ipv6, carries=CF.PROBE_PAYLOAD_V6)
        pair.offer(path)
        pair.run_until(_ended(pair, "alice"), limit=120.0)
        assert pair.kinds("alice")[-1] == "FileSent", pair.news
        largest[ipv6] = max(len(p) for _, p in pair.wire if p[9] == 1)   # data packets
    assert largest[False] <= PACKET_SIZE < largest[True] <= CF.PROBE_PAYLOAD_V6


def test_chatfiles_packets_carry_the_files_mark_not_the_line_streams(tmp_path):
    pair = Pair(tmp_path)
    pair.offer(_file(tmp_path, 10))
    pair.step()
    assert pair.wire and all(p[0] == CF.FILES_MARK for _, p in pair.wire)
    assert CF.FILES_MARK != PACKET_TYPE and CF.FILES_MARK >= 0xF5     # never a UTF-8 start byte


def test_chatfiles_partner_silent_fails_within_the_delivery_timeout(tmp_path):
    path = _file(tmp_path, 5 * 1000 * 1000)
    pair = Pair(tmp_path)
    pair.offer(path)
    pair.run_until(lambda: "FileProgress" in pair.kinds("bob"), limit=30.0)
    pair.cut = True
    cut_at = pair.now
    pair.run_until(_ended(pair, "alice"), limit=cut_at + CF.DELIVERY_TIMEOUT + 2.0)
    failed = [n.event for n in pair.news["alice"] if type(n.event) is T.FileFailed]
    assert failed and failed[0].reason == T.LOST
    assert pair.now - cut_at >= CF.DELIVERY_TIMEOUT * 0.5


def test_chatfiles_a_long_healthy_transfer_is_not_given_up(tmp_path):
    """Longer than DELIVERY_TIMEOUT at the relayed pace: still done."""
    size = int(CF.RELAYED_RATE * (CF.DELIVERY_TIMEOUT + 5))
    path = _file(tmp_path, size)
    pair = Pair(tmp_path, relayed=True)
    pair.offer(path)
    pair.run_until(_ended(pair, "alice"), limit=120.0)
    assert pair.kinds("alice")[-1] == "FileSent"
    assert pair.now > CF.DELIVERY_TIMEOUT


def test_chatfiles_relayed_path_paced_below_the_relays_rate(tmp_path):
    size = 2 * 1000 * 1000
    pair = Pair(tmp_path, relayed=True)
    pair.offer(_file(tmp_path, size))
    pair.run_until(_ended(pair, "alice"), limit=120.0)
    sent = sum(len(p) for _, p in pair.wire)
    span = pair.wire[-1][0] - pair.wire[0][0]
    assert sent >= size and sent / span <= 256 * 1024, sent / span
    for start in range(0, int(span) - 1):             # no second above the rate, either
        second = sum(len(p) for t, p in pair.wire if start <= t < start + 1)
        assert second <= 256 * 1024, (start, second)


def test_chatfiles_end_fails_live_transfers_partner_gone_and_keeps_the_partial(tmp_path):
    path = _file(tmp_path, 3 * 1000 * 1000)
    pair = Pair(tmp_path)
    pair.offer(path)
    pair.run_until(lambda: "FileProgress" in pair.kinds("bob"), limit=30.0)
    news = pair.alice.end() + pair.bob.end()
    assert [(n.partner, n.event.reason) for n in news if type(n.event) is T.FileFailed] == [
        ("bob", T.PARTNER_GONE), ("alice", T.PARTNER_GONE)]
    assert len(os.listdir(str(tmp_path / "down"))) == 1        # the staged part, for a resume
    assert not pair.alice.open and pair.alice.packets(pair.now) == []


def test_chatfiles_no_files_stream_without_the_feature(tmp_path):
    files = CF.ChatFiles("carol", Disk(str(tmp_path)), PACKET_SIZE)
    files.start(("ext", "noise1", "stream1"))
    refused = files.offer([str(_file(tmp_path, 5))])
    assert [(type(e), e.why) for e in refused] == [(CF.FileRefused, CF.NOT_ENCRYPTED)]


def test_chatfiles_received_run_takes_its_own_and_hands_back_the_rest(tmp_path):
    pair = Pair(tmp_path)
    line = bytes([PACKET_TYPE]) + bytes(12)              # the line stream's: not ours
    garbled = bytes([CF.FILES_MARK]) + b"\xff" * 5         # ours, refused by the stream
    errors, others = pair.bob.received_run([line, garbled, line, b"", b"\x00"], 0.0)
    assert others == [line, line, b"", b"\x00"] and len(errors) == 1
    closed = CF.ChatFiles("alice", None, PACKET_SIZE)      # no files stream at all
    errors, others = closed.received_run([garbled, line, garbled], 0.0)
    assert others == [line] and [str(e) for e in errors] == ["no files stream open"] * 2


class Blocked:
    blocked = True


def test_chatfiles_received_run_refuses_everything_while_the_key_is_not_trusted(tmp_path):
    pair = Pair(tmp_path)
    pair.bob.start(("files1",), Blocked())
    packets = pair.alice.packets(0.0) or [bytes([CF.FILES_MARK]) + bytes(12)]
    errors, others = pair.bob.received_run(packets, 0.0)
    assert others == [] and [str(e) for e in errors] == ["key not trusted"] * len(packets)
