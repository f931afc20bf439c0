"""The peer's disk side for file transfers: what the shell hands the core.

Theory of operation
-------------------
The cores (:mod:`peerpunch.chatfiles`) never open a file: they call a
:class:`Disk` the shell made at start-up. ``collect(paths)`` hashes and
lists what ``/send`` offers (:func:`peerpunch.filesource.collect`);
``store(entries)`` opens the download directory's side of an accepted offer
(:class:`peerpunch.filestore.Store`, the directory created on the first
accept). At start (*now* given) staging left STALE_AFTER untouched is
removed (:func:`sweep`). ``auto_accept`` says whether every offer is accepted at once
(``--auto-accept DIR``: DIR is then where files go). Reads and writes are
one data message (60 KiB) per call, in the network thread; given a
*writer* (:mod:`peerpunch.diskwriter`, made by the shell), the stores'
writes and their hashing are done on its thread instead.
"""

import os
import shutil
import stat

from .filesource import collect
from .filestore import Store
from .safename import PART_SUFFIX

DEFAULT_DIR = os.path.join("~", "Downloads", "peerpunch")
STALE_AFTER = 7 * 24 * 3600     # s: staging untouched this long is removed at start


class Disk:
    """Files offered from anywhere, received under *download_dir*
    (*auto_accept*: a directory, used instead, every offer accepted;
    *writer*: the stores write through it, None: in the caller's thread)."""

    def __init__(self, download_dir=None, auto_accept=None, disk_usage=shutil.disk_usage,
                 now=None, writer=None):
        where = auto_accept or download_dir or DEFAULT_DIR
        self.download_dir = os.path.abspath(os.path.expanduser(where))
        self.auto_accept = auto_accept is not None
        self._disk_usage = disk_usage
        self._writer = writer
        self.swept = sweep(self.download_dir, now) if now is not None else []

    def collect(self, paths):
        """(entries, source, skipped) for *paths*; OSError if one is missing."""
        paths = [os.path.expanduser(p) for p in paths]      # ~/x, as the ambiguity check reads it
        for path in paths:
            if not os.path.lexists(path):
                raise FileNotFoundError("no such file or directory: %s" % path)
        return collect(paths)

    def store(self, entries):
        return Store(self.download_dir, entries, disk_usage=self._disk_usage,
                     writer=self._writer)

    def opened(self, entries):
        """(store, resume points) of an accepted offer of *entries*, its
        bytes reserved; raises StagingBusy, TooMany, DiskFull, OSError."""
        store = self.store(entries)
        try:
            have = store.have()
            store.prepare(have)
        except BaseException:
            store.close()
            raise
        return store, have


def sweep(directory, now, max_age=STALE_AFTER):
    """Remove the staging (hidden ``*.peerpunch-part``) in *directory* that
    nothing in has changed for *max_age* s before *now* (wall clock, s since
    the epoch); the names removed. Errors leave a staging where it is."""
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    removed = []
    for name in sorted(n for n in names if n.startswith(".") and n.endswith(PART_SUFFIX)):
        path = os.path.join(directory, name)
        try:
            if _newest(path) < now - max_age:
                if os.path.isdir(path) and not os.path.islink(path):
                    shutil.rmtree(path)
                else:
                    os.remove(path)
                removed.append(name)
        except OSError:
            continue
    return removed


def _newest(path):
    """The latest change time (mtime) of *path* and, if a directory, of all in it."""
    info = os.lstat(path)
    newest = info.st_mtime
    if stat.S_ISDIR(info.st_mode):
        for folder, dirs, files in os.walk(path):
            for name in dirs + files:
                newest = max(newest, os.lstat(os.path.join(folder, name)).st_mtime)
    return newest


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
