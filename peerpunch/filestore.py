"""The receiver's disk: partial files, resume points, checks, renames.

Theory of operation
-------------------
A :class:`Store` keeps one accepted offer on disk under the download
directory *root*. It does the Write and Verify effects of a
:class:`~peerpunch.filerecv.Receiver`; it is the I/O side, not a state
machine, and checks nothing the Receiver already checked (offsets follow
each other, names are safe parts).

Each top-level name of the offer is staged under a hidden name made from
it and a key: the SHA-256 of that top's entries (paths, sizes, hashes), so
the same offer repeated later -- after a lost session or a restart of
either side -- finds the same staging and resumes::

    .NAME.KEY.peerpunch-part              a single file, being written
    .NAME.KEY.peerpunch-part/             a directory tree, being written:
        sub/dir/file.txt                      files verified and complete
        sub/dir/.KEY2.peerpunch-part          a file being written (KEY2: its
                                              path, size and SHA-256: entry_key)

A staging tree's directories are made 0700, and every file and directory
in staging is opened through :mod:`peerpunch.filesafe` (no link followed,
ours, one link). One staging is written by one Store at a time in this
process (a second one raises StagingBusy), so what a Store hashed as it
wrote is what is on disk.

:meth:`Store.have` gives the resume points: bytes of each partial file
(its length: data is written in order, and the whole file's SHA-256 is
checked at the end anyway), the full size of complete ones.
:meth:`Store.prepare` checks the free space (``disk_usage``, injectable)
against what is still to come before anything is written and raises
DiskFull. A file is written appending, hashed as it goes (a resumed one has
its prefix hashed first). :meth:`Store.verify` compares its SHA-256 with
the offer's: a mismatch removes the partial file and nothing is renamed;
a match moves it into place (a single file) or to its name in the staging
tree, and when a tree's last file is done, the tree to its top name. Moving
into place never overwrites: the first free name (``name (1).ext``,
``NAME (1)``) is reserved by an exclusive create, then replaced by ours.
:meth:`Store.discard` (cancel, hash mismatch) removes what was staged;
:meth:`Store.close` (partner gone) keeps it for a resume; both free the
staging for another Store.

Writes go through a *lane*: :class:`Inline` writes and hashes at once, in
the caller's thread; the shell may give the Store a writer whose lanes do
it on a thread of their own (:mod:`peerpunch.diskwriter`). The Store then
waits for its lane before anything else touches the file or its hash
(verify, close, discard, moving to another file) and a failed write
raises its OSError from a later ``write`` or the file's ``verify`` (the
writer batches: some data messages later than an inline write would).
"""

import hashlib
import json
import os
import shutil
import stat

from . import filesafe as FS
from . import safename as S

READ_SIZE = 1 << 20
SPACE_MARGIN = 1 << 20          # keep this much free beyond the declared size
MAX_RECEIVING = 8               # stores receiving at once in this process, all chats


class DiskFull(OSError):
    """The offer does not fit: *needed* bytes, *free* bytes."""

    def __init__(self, needed, free):
        super().__init__("%d bytes needed, %d free" % (needed, free))
        self.needed = needed
        self.free = free


def top_key(entries):
    """The staging key of one top-level name's *entries* (16 hex digits)."""
    plain = [[list(e.parts), e.size, e.sha256] for e in entries]
    return hashlib.sha256(json.dumps(plain).encode("utf-8")).hexdigest()[:16]


def staging_name(top, key):
    """The hidden staging name of *top* with *key*, within the name limit."""
    tail = ".%s%s" % (key, S.PART_SUFFIX)
    room = S.MAX_NAME_BYTES - 1 - len(tail)
    head = top.encode("utf-8")[:room].decode("utf-8", "ignore")
    return "." + head + tail


class TooMany(OSError):
    """MAX_RECEIVING stores are receiving already."""


_LEDGER = set()
"""Stores holding a reservation: the bytes each still expects (``_reserved``)."""


def reserved():
    """Bytes that stores of this process still expect to write."""
    return sum(store._reserved for store in list(_LEDGER))


class StagingBusy(OSError):
    """Another transfer of this process is writing the same staging."""


_IN_USE = set()
"""Staging paths held by a live Store of this process: one writer each."""


def entry_key(entry):
    """The key of one file's partial in a staging tree (16 hex digits)."""
    plain = [list(entry.parts), entry.size, entry.sha256]
    return hashlib.sha256(json.dumps(plain).encode("utf-8")).hexdigest()[:16]


class Inline:
    """A lane that writes and hashes at once, in the caller's thread."""

    def write(self, handle, digest, data):
        handle.write(data)
        digest.update(data)

    def wait(self):
        pass

    drain = drop = wait


class Store:
    """The disk side of one accepted offer of *entries* under *root*, its
    writes through a lane of *writer* (None: :class:`Inline`); raises
    StagingBusy if another Store of this process holds its staging."""

    def __init__(self, root, entries, disk_usage=shutil.disk_usage, writer=None):
        self.root = root
        self._lane = Inline() if writer is None else writer.lane()
        self.entries = list(entries)
        self._disk_usage = disk_usage
        self._tops = {}                  # top name -> [staging path, is a tree, files left]
        for entry in self.entries:
            self._tops.setdefault(entry.parts[0], []).append(entry)
        for top, group in self._tops.items():
            tree = len(group[0].parts) > 1
            staging = os.path.join(root, staging_name(top, top_key(group)))
            self._tops[top] = [staging, tree, len(group)]
        self._file = None                # the file being written: see _open
        self._reserved = 0               # bytes still expected (in _LEDGER once prepared)
        self._ids = {}                   # top name -> identity of its staging as we opened it
        claims = set(_claim_key(t[0]) for t in self._tops.values())
        if claims & _IN_USE:
            raise StagingBusy("the same files are being received already")
        _IN_USE.update(claims)
        self._claims = claims

    def have(self):
        """Resume points: file index -> bytes already on disk (nonzero only)."""
        out = {}
        for index, entry in enumerate(self.entries):
            partial, final = self._paths(index)
            size = _size(final) if final else None
            if size == entry.size and final != partial:
                out[index] = size
                continue
            size = _size(partial)
            if size and size <= entry.size:
                out[index] = size
        return out

    def prepare(self, have):
        """Reserve the bytes still to come, checked against the free space
        less what every other store of this process still expects; raises
        DiskFull, or TooMany if MAX_RECEIVING stores are receiving."""
        needed = sum(e.size for e in self.entries) - sum(have.values())
        os.makedirs(self.root, exist_ok=True)
        if self not in _LEDGER and len(_LEDGER) >= MAX_RECEIVING:
            raise TooMany("%d transfers are being received already" % len(_LEDGER))
        _LEDGER.discard(self)
        free = self._disk_usage(self.root).free - reserved()
        if needed + SPACE_MARGIN > free:
            raise DiskFull(needed, max(free, 0))
        self._reserved = needed
        _LEDGER.add(self)

    def write(self, index, offset, data):
        """Write *data* at *offset* of file *index* (offsets follow each other);
        raises the OSError of this or (through a writer) an earlier write."""
        handle = self._open(index, offset)
        self._lane.write(handle[1], handle[2], data)
        self._reserved = max(0, self._reserved - len(data))

    def verify(self, index):
        """File *index* is whole: (True, where or None) if its SHA-256 matches
        (kept; *where* when its top-level name is now in place), else (False,
        None) with the partial file removed. What was hashed is what is on
        disk: the file was written only through our handle (no other Store
        of this process holds it; opened without following links, ours,
        one link), and it must still be the file at its name. Raises the
        OSError of a write not yet told."""
        self._lane.wait()
        partial, final = self._paths(index)
        entry = self.entries[index]
        if final != partial and _size(final) == entry.size:
            return True, self._top_done(entry.parts[0])      # verified before a restart
        handle, digest, folder, name = self._open(index, entry.size)[1:5]
        self._file = None
        try:
            handle.flush()
            same = folder.same(name, handle)
            ok = same and digest.hexdigest() == entry.sha256 and \
                os.fstat(handle.fileno()).st_size == entry.size
            handle.close()
            if not ok:
                if same:
                    folder.remove(name)
                return False, None
            if final != partial:
                folder.replace(name, entry.parts[-1])
        finally:
            handle.close()
            folder.close()
        return True, self._top_done(entry.parts[0])

    def close(self):
        """Stop writing; keep what is staged for a resume."""
        self._close_file()
        _LEDGER.discard(self)
        self._reserved = 0
        _IN_USE.difference_update(self._claims)
        self._claims = set()

    def discard(self):
        """Stop and remove everything still staged (cancel, mismatch)."""
        self._lane.drop()
        self._close_file()
        for staging, tree, left in self._tops.values():
            if left and tree and os.path.isdir(staging) and not os.path.islink(staging):
                shutil.rmtree(staging)
            elif left and os.path.lexists(staging):
                os.remove(staging)
        self.close()

    def _close_file(self):
        self._lane.drain()
        if self._file is not None:
            self._file[1].close()
            self._file[3].close()
            self._file = None

    def _location(self, index):
        """(directories under root, partial file's name) of file *index*."""
        parts = self.entries[index].parts
        staging, tree, _ = self._tops[parts[0]]
        if not tree:
            return [], os.path.basename(staging)
        dirs = [os.path.basename(staging)] + list(parts[1:-1])
        return dirs, ".%s%s" % (entry_key(self.entries[index]), S.PART_SUFFIX)

    def _paths(self, index):
        """(partial path, final path in staging) of file *index*; the same
        path twice for a single file (its staging is its partial file)."""
        parts = self.entries[index].parts
        staging, tree, _ = self._tops[parts[0]]
        if not tree:
            return staging, staging
        final = S.safe_join(staging, parts[1:])
        partial = os.path.join(os.path.dirname(final), self._location(index)[1])
        return partial, final

    def warm(self, index, offset, budget):
        """Make file *index* ready to be written at *offset* (to be checked:
        *offset* its size), hashing at most *budget* bytes of what is already
        on disk; True when ready (writing or checking it then hashes nothing
        more). A resumed file's prefix is so hashed a bit per call."""
        entry = self.entries[index]
        partial, final = self._paths(index)
        if offset == entry.size and final != partial and _size(final) == entry.size:
            return True
        current = self._open(index, offset, budget)
        return current[5] == current[6]

    def _open(self, index, offset, budget=None):
        """[index, file, hash, folder, name, bytes hashed, resume point] of
        file *index*, opened if need be, its prefix hashed (*budget* bytes of
        it at most, else all)."""
        current = self._file
        if current is None or current[0] != index:
            self._close_file()
            current = self._file = self._opened(index, offset)
        left = current[6] - current[5]
        if left:
            step = left if budget is None else min(budget, left)
            _hash_prefix(current[1], current[2], current[5], step)
            current[5] += step
            if current[5] == current[6]:
                current[1].truncate(current[6])
        return current

    def _opened(self, index, offset):
        dirs, name = self._location(index)
        folder = FS.open_folder(self.root, dirs)
        try:
            handle = folder.open_file(name)
            top = self.entries[index].parts[0]
            self._ids[top] = folder.ids[0] if dirs else FS.identity(os.fstat(handle.fileno()))
            if not offset:
                handle.truncate(0)
        except BaseException:
            folder.close()
            raise
        return [index, handle, hashlib.sha256(), folder, name, 0, offset]

    def _top_done(self, top):
        entry = self._tops[top]
        entry[2] -= 1
        if entry[2]:
            return None
        ident = self._ids.get(top)
        if ident is not None and not FS.same_file(entry[0], ident):
            raise FS.UnsafeFile("%s was replaced before it was placed" % entry[0])
        where = place(entry[0], self.root, top, entry[1])
        if ident is not None and not FS.same_file(where, ident):
            raise FS.UnsafeFile("%s was replaced while it was placed" % where)
        return where


def _claim_key(path):
    return os.path.normcase(os.path.abspath(path))


def _hash_prefix(handle, digest, start, length):
    """Hash *length* bytes of *handle* from *start* (it is left after them)."""
    handle.seek(start)
    left = length
    while left:
        block = handle.read(min(READ_SIZE, left))
        if not block:
            raise OSError("partial file shorter than its resume point")
        digest.update(block)
        left -= len(block)


def _size(path):
    """The size of the regular file at *path* (links not followed), else None."""
    try:
        info = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    return info.st_size if stat.S_ISREG(info.st_mode) else None


def place(source, directory, name, is_dir):
    """Move *source* to the first free ``name``/``name (N)`` in *directory*,
    never overwriting; the path it now has."""
    while True:
        path = os.path.join(directory, S.unique_name(directory, name, is_dir))
        try:
            if is_dir:
                os.mkdir(path)
            else:
                os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        except FileExistsError:
            continue                     # taken meanwhile: choose again
        if is_dir and os.name == "nt":
            os.rmdir(path)               # Windows cannot replace a directory
        os.replace(source, path)
        return path
