"""Starting the GUI: ``peer.py --gui``, ``peerpunch-gui``, ``peerpunch.pyz gui``.

:func:`open_root` is tried before anything else (no tkinter, or no display:
one line on stderr, exit code 2); :func:`ask_name` asks for the username in
a small dialog when ``--name`` left it out; :func:`run` runs the network
thread of :mod:`peerpunch.peershell` with the window
(:class:`peerpunch.gui.Window`) as its view. Tkinter is imported only
here, when asked for, so the terminal client never needs it.
"""

import os
import queue
import signal
import sys

from . import cli
from . import protocol as P
from .peershell import JOIN_TIMEOUT, NetworkThread


def open_root(prog):
    """The Tk root window (hidden until run), or None after saying in one
    line on stderr why there can be none."""
    try:
        import tkinter
    except ImportError as exc:
        cli.usage_error(prog, "--gui needs tkinter, which this Python lacks (%s)" % exc)
        return None
    try:
        root = tkinter.Tk(className="peerpunch")
    except tkinter.TclError as exc:
        cli.usage_error(prog, "--gui needs a display, and there is none (%s)" % exc)
        return None
    root.withdraw()
    return root


def ask_name(root):
    """Ask for the username in a small dialog until it is a valid one; None
    if the user cancels."""
    from tkinter import simpledialog
    prompt = "Your username:"
    while True:
        answer = simpledialog.askstring("peerpunch", prompt, parent=root)
        if answer is None:
            return None
        try:
            return P.check_person(answer.strip())
        except ValueError as exc:
            prompt = "%s\nYour username:" % exc


def run(root, core, sock, name, verbose=False, known_peers=None):
    """Run the network thread with the window as its view until the window
    closes; return the exit code."""
    from .gui import Window
    output = queue.Queue()
    network = NetworkThread(core, sock, output, verbose=verbose, known_peers=known_peers)
    window = Window(root, name, network.post)
    root.deiconify()
    hook = _test_hook()
    previous = {sig: signal.signal(sig, lambda *_: setattr(window, "interrupted", True))
                for sig in (signal.SIGINT, signal.SIGTERM)}     # the window's poll sees it
    network.start()
    try:
        code = window.run(output, hook)
        network.join(JOIN_TIMEOUT)
        return code
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _test_hook():
    """The test hook (:mod:`peerpunch.guitest`), only if its variable is set."""
    from . import guitest
    path = os.environ.get(guitest.ENV)
    if not path:
        return None
    try:
        return guitest.Hook(path)
    except OSError as exc:
        print("warning: no GUI test hook at %s: %s" % (path, exc), file=sys.stderr, flush=True)
        return None

