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
        sub/dir/.7.peerpunch-part             file 7 of the offer, being written

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
:meth:`Store.close` (partner gone) keeps it for a resume.
"""

import hashlib
import json
import os
import shutil

from . import safename as S

READ_SIZE = 1 << 20
SPACE_MARGIN = 1 << 20          # keep this much free beyond the declared size


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


class Store:
    """The disk side of one accepted offer of *entries* under *root*."""

    def __init__(self, root, entries, disk_usage=shutil.disk_usage):
        self.root = root
        self.entries = list(entries)
        self._disk_usage = disk_usage
        self._tops = {}                  # top name -> [staging path, is a tree, files left]
        for entry in self.entries:
            self._tops.setdefault(entry.parts[0], []).append(entry)
        for top, group in self._tops.items():
            tree = len(group[0].parts) > 1
            staging = os.path.join(root, staging_name(top, top_key(group)))
            self._tops[top] = [staging, tree, len(group)]
        self._file = None                # (index, open file, hash) of the file being written

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
        """Check the free space for what is still to come; raises DiskFull."""
        needed = sum(e.size for e in self.entries) - sum(have.values())
        os.makedirs(self.root, exist_ok=True)
        free = self._disk_usage(self.root).free
        if needed + SPACE_MARGIN > free:
            raise DiskFull(needed, free)

    def write(self, index, offset, data):
        """Write *data* at *offset* of file *index* (offsets follow each other)."""
        handle = self._open(index, offset)
        handle[1].write(data)
        handle[2].update(data)

    def verify(self, index):
        """File *index* is whole: (True, where or None) if its SHA-256 matches
        (kept; *where* when its top-level name is now in place), else (False,
        None) with the partial file removed."""
        partial, final = self._paths(index)
        entry = self.entries[index]
        if final != partial and _size(final) == entry.size:
            return True, self._top_done(entry.parts[0])      # verified before a restart
        handle = self._open(index, entry.size)
        self._file = None
        handle[1].close()
        if handle[2].hexdigest() != entry.sha256 or _size(partial) != entry.size:
            os.remove(partial)
            return False, None
        if final != partial:
            os.replace(partial, final)
        return True, self._top_done(entry.parts[0])

    def close(self):
        """Stop writing; keep what is staged for a resume."""
        if self._file is not None:
            self._file[1].close()
            self._file = None

    def discard(self):
        """Stop and remove everything still staged (cancel, mismatch)."""
        self.close()
        for staging, tree, left in self._tops.values():
            if left and tree and os.path.isdir(staging) and not os.path.islink(staging):
                shutil.rmtree(staging)
            elif left and os.path.lexists(staging):
                os.remove(staging)

    def _paths(self, index):
        """(partial path, final path in staging) of file *index*; the same
        path twice for a single file (its staging is its partial file)."""
        parts = self.entries[index].parts
        staging, tree, _ = self._tops[parts[0]]
        if not tree:
            return staging, staging
        final = S.safe_join(staging, parts[1:])
        partial = os.path.join(os.path.dirname(final), ".%d%s" % (index, S.PART_SUFFIX))
        return partial, final

    def _open(self, index, offset):
        if self._file is not None and self._file[0] == index:
            return self._file
        self.close()
        partial, _ = self._paths(index)
        os.makedirs(os.path.dirname(partial), exist_ok=True)
        digest = hashlib.sha256()
        handle = open(partial, "r+b" if os.path.exists(partial) else "w+b")
        _hash_prefix(handle, digest, offset)
        handle.truncate(offset)
        self._file = (index, handle, digest)
        return self._file

    def _top_done(self, top):
        entry = self._tops[top]
        entry[2] -= 1
        if entry[2]:
            return None
        return place(entry[0], self.root, top, entry[1])


def _hash_prefix(handle, digest, length):
    handle.seek(0)
    left = length
    while left:
        block = handle.read(min(READ_SIZE, left))
        if not block:
            raise OSError("partial file shorter than its resume point")
        digest.update(block)
        left -= len(block)


def _size(path):
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return None


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
