"""A transfer over the real reliable stream, through a lossy simulated link
with a fake clock: the messages fit the stream, chat lines pass between
file data, and the file arrives byte-identical."""

import os

from peerpunch import filewire as FW
from peerpunch import stream as ST
from peerpunch import transfer as T
from peerpunch.filedesk import Desk
from peerpunch.filesource import collect
from peerpunch.filestore import Store

from .streamsim import Channel

IN_FLIGHT = 8                 # data messages the sender keeps on the stream at most


class End:
    """One peer's desk on one end of the channel, as a shell would run it."""

    def __init__(self, channel, stream, root=None, source=None):
        self.channel, self.stream, self.root, self.source = channel, stream, root, source
        self.desk = Desk()
        self.seen = 0                       # stream events handled
        self.data_ids = {}                  # stream message id -> file bytes it carries
        self.stores = {}
        self.events, self.lines = [], []

    def serve(self):
        now = self.channel.now
        events = self.channel.events[self.channel.name(self.stream)]
        for _, event in events[self.seen:]:
            self.seen += 1
            if isinstance(event, ST.Received) and FW.is_file_message(event.data):
                self._apply(*self.desk.received(event.data, now))
            elif isinstance(event, ST.Received):           # a chat line: when it came
                self.lines.append((event.data.decode("utf-8"), len(self.events)))
            elif isinstance(event, ST.Delivered):
                self._delivered(event.message_ids, now)
            elif isinstance(event, ST.NotDelivered):
                for tid in {self.data_ids[i][0] for i in event.message_ids if i in self.data_ids}:
                    self.desk.get(tid).fail(T.LOST)
        self._push()
        self._flush()
        for event in self.desk.events():
            self.events.append(event)
            if type(event) is T.FileOffered:
                self._accept(self.desk.get(event.id))
        self._flush()

    def _delivered(self, ids, now):
        for i in ids:
            if i in self.data_ids:
                tid, length = self.data_ids.pop(i)
                if self.desk.get(tid) is not None:
                    self.desk.get(tid).delivered(length, now)

    def _accept(self, receiver):
        store = self.stores[receiver.id] = Store(self.root, receiver.entries)
        have = store.have()
        store.prepare(have)
        self._apply(receiver, receiver.accept(have, self.channel.now))

    def _apply(self, receiver, effects):
        for effect in effects:
            store = self.stores[receiver.id]
            if type(effect) is T.Write:
                store.write(effect.index, effect.offset, effect.data)
            else:
                receiver.verified(effect.index, *store.verify(effect.index))

    def _push(self):
        for sender in [t for t in self.desk.transfers.values() if t.state == T.SENDING]:
            while self.stream.outstanding() < IN_FLIGHT:
                read = sender.next_read()
                if read is None:
                    break
                message = sender.chunk(read, self.source.read(read))
                message_id = self.channel.send(self.stream, message)
                self.data_ids[message_id] = (sender.id, read.length)

    def _flush(self):
        for message in self.desk.messages():
            self.channel.send(self.stream, message)


def test_transfer_over_a_lossy_stream_arrives_byte_identical(tmp_path):
    path = tmp_path / "video.bin"
    path.write_bytes(os.urandom(700 * 1024 + 17))
    entries, source, _ = collect([str(path)])
    channel = Channel(loss=0.10, jitter=0.004, seed=5)
    alice = End(channel, channel.a, source=source)
    bob = End(channel, channel.b, root=str(tmp_path / "down"))
    sender = alice.desk.offer(entries, chunk_size=FW.CHUNK)
    alice.serve()

    def progress():
        alice.serve()
        bob.serve()
        if sender.state == T.SENDING and not bob.lines:
            channel.send(channel.a, "still chatting".encode("utf-8"))
            bob.lines.append(("(sent)", None))
        return sender.state in T.ENDED and channel.air == []
    channel.run_until(progress, limit=300.0)
    assert sender.state == T.DONE, alice.events
    [(_, came)] = [line for line in bob.lines if line[0] == "still chatting"]
    assert came < len(bob.events) - 1         # before the file was whole, not after it
    assert (tmp_path / "down" / "video.bin").read_bytes() == path.read_bytes()
    assert os.listdir(str(tmp_path / "down")) == ["video.bin"]
    assert channel.counts["lost"] > 10
    kinds = [type(e).__name__ for e in bob.events]
    assert kinds[0] == "FileOffered" and kinds[-1] == "FileReceived" and "FileProgress" in kinds
    sent = [e for e in alice.events if type(e) is T.FileProgress]
    assert sent and sent[-1].done == path.stat().st_size


def test_transfer_file_messages_fit_one_stream_message():
    largest = FW.encode(FW.Chunk("0" * 16, 0, 0, bytes(FW.CHUNK)))
    assert len(largest) <= ST.MAX_MESSAGE
    assert FW.MAX_CONTROL + 2 <= ST.MAX_MESSAGE
