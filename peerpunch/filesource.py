"""The sender's disk: what to offer, and the bytes to send.

Theory of operation
-------------------
:func:`collect` turns the paths a user names (``/send PATH...``) into an
offer: a list of :class:`~peerpunch.filewire.Entry` (relative path parts,
size, SHA-256) and a :class:`Source` that reads their bytes. A file is
offered under its base name; a directory as its tree, walked without
following symbolic links, each regular file under the directory's name and
its relative path. Symbolic links, sockets, devices, FIFOs and what cannot
be read are skipped and listed (``skipped``: (path, reason) pairs) for the
shell to show. Every name is made safe with :mod:`peerpunch.safename` on
this side already (the receiver refuses an offer that is not); two paths
that come out the same (or differ only in case) keep the first, the other
is skipped, and a top-level name given twice is numbered (``a (1).txt``).
Empty directories are not offered. Files are hashed in READ_SIZE blocks.

:meth:`Source.read` reads the bytes of one :class:`~peerpunch.transfer.Read`;
a file that shrank since it was offered raises OSError (the shell fails the
transfer with IO_ERROR; one that changed otherwise fails the receiver's
hash check).
"""

import hashlib
import os
import stat

from . import safename as S
from .filewire import MAX_FILES, MAX_OFFER_BYTES, Entry, entry_cost

READ_SIZE = 1 << 20
SYMLINK, SPECIAL, UNREADABLE, DUPLICATE, TOO_MANY = (
    "symlink", "special", "unreadable", "duplicate", "too_many")


def sha256_file(path):
    """The SHA-256 (hex) and size of the file at *path*, read in blocks."""
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(READ_SIZE), b""):
            digest.update(block)
            size += len(block)
    return digest.hexdigest(), size


def _local_part(name):
    """A local file name (perhaps not UTF-8) as a safe part."""
    return S.safe_part(os.fsencode(name).decode("utf-8", "replace"))


def _walk(path, parts):
    """(path, parts, problem) for each file under directory *path*, in name order."""
    try:
        with os.scandir(path) as it:
            children = sorted(it, key=lambda e: e.name)
    except OSError:
        yield path, parts, UNREADABLE
        return
    for child in children:
        sub = parts + (_local_part(child.name),)
        yield from _classify(child.path, sub)


def _classify(path, parts):
    try:
        mode = os.lstat(path).st_mode
    except OSError:
        yield path, parts, UNREADABLE
        return
    if stat.S_ISLNK(mode):
        yield path, parts, SYMLINK
    elif stat.S_ISDIR(mode):
        yield from _walk(path, parts)
    elif stat.S_ISREG(mode):
        yield path, parts, None
    else:
        yield path, parts, SPECIAL


def collect(paths, max_files=MAX_FILES):
    """(entries, Source, skipped) for the local *paths* (files or directories)."""
    entries, locals_, skipped = [], [], []
    seen, dirs, tops = set(), set(), set()
    cost = 0
    for path in paths:
        top = _local_part(os.path.basename(os.path.normpath(path)))
        top = _free_top(top, tops, os.path.isdir(path) and not os.path.islink(path))
        for local, parts, problem in _classify(path, (top,)):
            key = tuple(S.fold(p) for p in parts)
            prefixes = {key[:n] for n in range(1, len(key))}
            if problem is None and (key in seen or key in dirs or prefixes & seen):
                problem = DUPLICATE
            if problem is None and (len(entries) >= max_files or
                                    cost + entry_cost(parts) > MAX_OFFER_BYTES):
                problem = TOO_MANY
            if problem is None:
                try:
                    digest, size = sha256_file(local)
                except OSError:
                    problem = UNREADABLE
            if problem is not None:
                skipped.append((local, problem))
                continue
            seen.add(key)
            cost += entry_cost(parts)
            dirs.update(prefixes)
            entries.append(Entry(parts, size, digest))
            locals_.append(local)
    return entries, Source(locals_), skipped


def _free_top(top, tops, is_dir):
    name, number = top, 0
    while S.fold(name) in tops:
        number += 1
        name = S.numbered(top, number, is_dir)
    tops.add(S.fold(name))
    return name


class Source:
    """The local files of an offer, by index; reads one at a time."""

    def __init__(self, paths):
        self.paths = list(paths)
        self._open = None                # (index, file)

    def read(self, read):
        """The bytes of *read* (a transfer.Read); raises OSError if short."""
        handle = self._file(read.index)
        handle.seek(read.offset)
        data = handle.read(read.length)
        if len(data) != read.length:
            raise OSError("%s is shorter than offered" % self.paths[read.index])
        return data

    def twin(self):
        """Another reader of the same files (an offer made to several partners)."""
        return Source(self.paths)

    def close(self):
        if self._open is not None:
            self._open[1].close()
            self._open = None

    def _file(self, index):
        if self._open is None or self._open[0] != index:
            self.close()
            self._open = (index, open(self.paths[index], "rb"))
        return self._open[1]
