"""Drive the terminal view alone: ``python -m tests.termdriver IN OUT``.

A test runs this on a pty in place of the peer, so it can hand the view
events the core does not emit yet (ChatList) at moments it chooses: each
line on file descriptor IN is one event for the main thread (``chats NAME
STATE PATH``: a ChatList with NAME current; ``msg NAME TEXT``: a Message).
What the stdin thread posts for the network thread is written to OUT, a
line each (``line TEXT``, ``quit``). The end of IN ends the program.
"""

import os
import sys
import threading

from peerpunch import events as E
from peerpunch.termshell import open_terminal


class Network:
    """Where the stdin thread posts: fd 4, one line each."""

    def __init__(self, out):
        self.out = out

    def post(self, *item):
        self.out.write(" ".join(item) + "\n")
        self.out.flush()


def event(words):
    if words[0] == "chats":
        name, state, path = words[1:4]
        row = E.ChatRow(name, "chat", state, None if path == "-" else path, True, None)
        return E.ChatList((row,), name)
    return E.Message(words[1], " ".join(words[2:]), 1)


def main(events_fd, posts_fd):
    view = open_terminal(None)
    if view is None:
        print("not a terminal", file=sys.stderr)
        return 2
    threading.Thread(target=view.read_input, args=(Network(os.fdopen(posts_fd, "w")),),
                     daemon=True).start()
    try:
        for line in os.fdopen(events_fd):
            view.event(event(line.split()))
    finally:
        view.finish()
    return 0


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]), int(sys.argv[2])))
