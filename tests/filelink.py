"""A Sender and a Receiver joined in memory, with their disk sides: what
the shell will do, in a few lines, for the transfer tests."""

from peerpunch import filewire as FW
from peerpunch import transfer as T
from peerpunch.filerecv import Receiver
from peerpunch.filesend import Sender
from peerpunch.filesource import collect
from peerpunch.filestore import DiskFull, Store


class Big:
    free = 1 << 50


class Link:
    """*paths* offered from one end, received under *root* at the other."""

    def __init__(self, paths, root, tid=None, chunk_size=FW.CHUNK, disk_usage=lambda _: Big):
        self.entries, self.source, self.skipped = collect(paths)
        self.sender = Sender(self.entries, tid=tid, chunk_size=chunk_size)
        self.root = root
        self.disk_usage = disk_usage
        self.receiver = self.store = None
        self.now = 0.0
        self.sent_events, self.received_events = [], []
        self.to_receiver()

    def to_receiver(self):
        for message in self.sender.messages():
            decoded = FW.decode(message)
            if self.receiver is None:
                self.receiver = Receiver(decoded)
            else:
                self.apply(self.receiver.received(decoded, self.now))
        self.sent_events += self.sender.events()

    def to_sender(self):
        for message in self.receiver.messages():
            self.sender.received(FW.decode(message), self.now)
        self.received_events += self.receiver.events()
        self.sent_events += self.sender.events()

    def accept(self):
        """The receiver accepts, as the shell does: resume points, space, answer."""
        self.store = Store(self.root, self.receiver.entries, disk_usage=self.disk_usage)
        have = self.store.have()
        try:
            self.store.prepare(have)
        except DiskFull:
            self.receiver.fail(T.DISK_FULL)
        else:
            self.apply(self.receiver.accept(have, self.now))
        self.to_sender()

    def apply(self, effects):
        for effect in effects:
            if type(effect) is T.Write:
                self.store.write(effect.index, effect.offset, effect.data)
            else:
                ok, where = self.store.verify(effect.index)
                if not ok:
                    self.store.discard()
                self.receiver.verified(effect.index, ok, where)

    def run(self, chunks=None, step=0.01):
        """Send data until done (or *chunks* data messages); the count sent."""
        sent = 0
        while chunks is None or sent < chunks:
            read = self.sender.next_read()
            if read is None:
                break
            message = self.sender.chunk(read, self.source.read(read))
            self.now += step
            self.apply(self.receiver.received(FW.decode(message), self.now))
            self.sender.delivered(read.length, self.now)
            sent += 1
            self.to_sender()
        self.to_receiver()
        self.to_sender()
        self.to_receiver()
        return sent

    def kinds(self, events):
        return [type(e).__name__ for e in events]
