"""Opening the receiver's staging files without following anyone's links.

Theory of operation
-------------------
The download directory may be shared (``--auto-accept DIR`` writable by
others), and staging names are predictable, so nothing there is opened by
path alone. A staging tree's directories are made mode 0700 and each is
opened relative to its parent (``dir_fd``) with O_NOFOLLOW|O_DIRECTORY,
and must be a directory we own; a partial file is opened relative to its
directory with O_NOFOLLOW and must be a regular file we own with one link.
Anything else raises :class:`UnsafeFile` (an OSError: the transfer fails as
an I/O error; nothing outside the download directory is touched).

Where the system has no ``dir_fd`` (Windows) paths are used, with the same
checks after opening (O_NOFOLLOW where it exists).
"""

import os
import stat

NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
DIRECTORY = getattr(os, "O_DIRECTORY", 0)
CLOEXEC = getattr(os, "O_CLOEXEC", 0)
BINARY = getattr(os, "O_BINARY", 0)
RELATIVE = bool(DIRECTORY) and {os.open, os.mkdir, os.stat, os.rename,
                                 os.unlink} <= os.supports_dir_fd


class UnsafeFile(OSError):
    """A staging file or directory that is a link, not ours, or not what it should be."""


def _owned(info):
    uid = getattr(os, "geteuid", None)
    return uid is None or info.st_uid == uid()


def identity(info):
    """What tells one file from another: (device, inode) of a stat result."""
    return info.st_dev, info.st_ino


def same_file(path, ident):
    """True if *path* (not followed) is the file whose identity is *ident*."""
    try:
        return identity(os.lstat(path)) == ident
    except OSError:
        return False


class Folder:
    """A directory opened safely: *fd* (None without dir_fd support) and *path*."""

    def __init__(self, path, fd, ids=()):
        self.path = path
        self.fd = fd
        self.ids = tuple(ids)            # (st_dev, st_ino) of each sub-directory opened

    def close(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def _at(self, name):
        """(name, dir_fd) for an os call on *name* in this folder."""
        return (name, self.fd) if self.fd is not None else (os.path.join(self.path, name), None)

    def sub(self, name, private=True):
        """The sub-directory *name*, made 0700 if missing; UnsafeFile unless a
        directory of ours (*private*: checked)."""
        where, fd = self._at(name)
        try:
            os.mkdir(where, 0o700, dir_fd=fd)
        except FileExistsError:
            pass
        path = os.path.join(self.path, name)
        if self.fd is None:
            info = os.lstat(path)
            if not stat.S_ISDIR(info.st_mode) or (private and not _owned(info)):
                raise UnsafeFile("not a directory of ours: %s" % path)
            return Folder(path, None, self.ids + (identity(info),))
        try:
            sub = os.open(name, os.O_RDONLY | DIRECTORY | NOFOLLOW | CLOEXEC, dir_fd=self.fd)
        except OSError as exc:
            raise UnsafeFile("cannot open %s safely: %s" % (path, exc)) from None
        info = os.fstat(sub)
        if private and not _owned(info):
            os.close(sub)
            raise UnsafeFile("not a directory of ours: %s" % path)
        return Folder(path, sub, self.ids + (identity(info),))

    def open_file(self, name):
        """*name* here, created if missing, opened for reading and writing:
        a binary file object; UnsafeFile unless a regular file of ours with one link."""
        where, fd = self._at(name)
        flags = os.O_RDWR | os.O_CREAT | NOFOLLOW | CLOEXEC | BINARY
        try:
            handle = os.open(where, flags, 0o600, dir_fd=fd)
        except OSError as exc:
            raise UnsafeFile("cannot open %s safely: %s" % (os.path.join(self.path, name),
                                                             exc)) from None
        info = os.fstat(handle)
        if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1 or not _owned(info):
            os.close(handle)
            raise UnsafeFile("not a file of ours: %s" % os.path.join(self.path, name))
        return os.fdopen(handle, "r+b")

    def same(self, name, handle):
        """True if *name* here is still the file open as *handle*."""
        where, fd = self._at(name)
        try:
            info = os.stat(where, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            return False
        mine = os.fstat(handle.fileno())
        return (info.st_dev, info.st_ino) == (mine.st_dev, mine.st_ino)

    def replace(self, name, new):
        """Rename *name* to *new*, both here."""
        (src, fd), (dst, _) = self._at(name), self._at(new)
        os.replace(src, dst, src_dir_fd=fd, dst_dir_fd=fd)

    def remove(self, name):
        where, fd = self._at(name)
        os.unlink(where, dir_fd=fd)


def open_folder(root, parts, private_from=0):
    """The directory *root*/*parts* opened safely (missing ones made 0700);
    parts from index *private_from* on must be ours. Close it after use."""
    if RELATIVE:
        fd = os.open(root, os.O_RDONLY | DIRECTORY | CLOEXEC)
        folder = Folder(root, fd)
    else:
        folder = Folder(root, None)
    for n, part in enumerate(parts):
        try:
            sub = folder.sub(part, private=n >= private_from)
        finally:
            folder.close()
        folder = sub
    return folder
