"""The peer's disk side for file transfers: what the shell hands the core.

Theory of operation
-------------------
The cores (:mod:`peerpunch.chatfiles`) never open a file: they call a
:class:`Disk` the shell made at start-up. ``collect(paths)`` hashes and
lists what ``/send`` offers (:func:`peerpunch.filesource.collect`);
``store(entries)`` opens the download directory's side of an accepted offer
(:class:`peerpunch.filestore.Store`, the directory created on the first
accept). ``auto_accept`` says whether every offer is accepted at once
(``--auto-accept DIR``: DIR is then where files go). Reads and writes are
one data message (60 KiB) per call, in the network thread.
"""

import os
import shutil

from .filesource import collect
from .filestore import Store

DEFAULT_DIR = os.path.join("~", "Downloads", "peerpunch")


class Disk:
    """Files offered from anywhere, received under *download_dir*
    (*auto_accept*: a directory, used instead, every offer accepted)."""

    def __init__(self, download_dir=None, auto_accept=None, disk_usage=shutil.disk_usage):
        where = auto_accept or download_dir or DEFAULT_DIR
        self.download_dir = os.path.abspath(os.path.expanduser(where))
        self.auto_accept = auto_accept is not None
        self._disk_usage = disk_usage

    def collect(self, paths):
        """(entries, source, skipped) for *paths*; OSError if one is missing."""
        for path in paths:
            if not os.path.lexists(path):
                raise FileNotFoundError("no such file or directory: %s" % path)
        return collect([os.path.expanduser(p) for p in paths])

    def store(self, entries):
        return Store(self.download_dir, entries, disk_usage=self._disk_usage)


def check_dir(text):
    """*text* as a download directory (absolute); ValueError if it cannot be one."""
    path = os.path.abspath(os.path.expanduser(text))
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError("%s is not a directory" % text)
    parent = path
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError("%s cannot be written" % text)
    return path
