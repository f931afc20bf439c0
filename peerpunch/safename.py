"""File names from the network, made safe to create on this machine.

Theory of operation
-------------------
A partner names the files it offers; nothing it names is trusted. Every
name goes through :func:`safe_part` (one path component) or
:func:`safe_parts` (a relative path), which never fail: they return
something harmless to create on Linux, macOS and Windows alike.

* Separators (``/`` and ``\\``) split a path; a single part never holds one.
* Empty parts, ``.`` and ``..`` are dropped from a path; as a lone name
  they become FALLBACK. An absolute path or a drive letter (``C:``) loses
  its anchor: ``:`` and the other characters Windows refuses (``<>"|?*``)
  become ``_``.
* Every character that does not print is removed (``str.isprintable``:
  control characters, NUL included; format characters such as the
  bidirectional overrides that make ``evil\\u202etxt.exe`` read as
  ``evilexe.txt``, zero-width spaces, soft hyphens and tag characters; line
  and paragraph separators; every space but the ordinary one).
* Trailing dots and spaces are stripped (Windows drops them silently).
* Windows' reserved device names (``CON``, ``NUL``, ``COM1`` ... with any
  extension) get a ``_`` in front; a name ending in PART_SUFFIX, the
  suffix of our own partial files, one behind, so a partner cannot name one.
* A name longer than MAX_NAME_BYTES of UTF-8 is cut at a character
  boundary, keeping a short extension.

:func:`unique_name` then picks a name not yet taken in a directory
(``name (1).ext``, or ``NAME (1)`` for a directory), and :func:`safe_join`
joins safe parts under a root and proves the result stays inside it.
"""

import os
import re
import unicodedata

FALLBACK = "unnamed"
MAX_NAME_BYTES = 255
MAX_EXTENSION_BYTES = 16        # an extension longer than this is not kept when cutting
PART_SUFFIX = ".peerpunch-part"
RESERVED = frozenset(["CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"]
                     + [port + digit for port in ("COM", "LPT")
                        for digit in "0123456789\u00b9\u00b2\u00b3"])
_SEPARATORS = re.compile(r"[/\\]")
_REPLACED = re.compile(r'[<>:"|?*]')


class UnsafePath(ValueError, OSError):
    """A path that is not made of safe parts, or leaves its root (an
    OSError too: whoever handles disk errors handles it)."""


def safe_part(name):
    """*name* (one component, any str) as a safe file name; never empty."""
    if not isinstance(name, str):
        return FALLBACK
    name = _REPLACED.sub("_", _SEPARATORS.sub("_", _printable(name)))
    name = _cut(name.rstrip(". "), MAX_NAME_BYTES).rstrip(". ")
    if name in ("", ".", ".."):
        return FALLBACK
    if name.split(".")[0].upper().rstrip(" ") in RESERVED:
        name = _cut("_" + name, MAX_NAME_BYTES).rstrip(". ")
    if name.endswith(PART_SUFFIX):
        name = _cut(name, MAX_NAME_BYTES - 1) + "_"
    return name


def safe_parts(path):
    """A relative path (str with ``/`` or ``\\``, or a list of parts) as a
    list of safe parts; empty, ``.`` and ``..`` parts dropped; at least one."""
    pieces = _SEPARATORS.split(path) if isinstance(path, str) else list(path)
    parts = [safe_part(p) for p in pieces
             if isinstance(p, str) and _printable(p).strip(". ") != ""]
    return parts or [FALLBACK]


def _printable(name):
    """*name* without the characters that do not print (controls, format
    and invisible characters, separators other than the ordinary space)."""
    if name.isprintable():
        return name
    return "".join(c for c in name if c.isprintable())


def is_safe_part(name):
    """True if *name* is already what :func:`safe_part` makes of it."""
    return isinstance(name, str) and safe_part(name) == name


def fold(part):
    """*part* as a disk that ignores case and Unicode normalisation sees it:
    two parts with the same fold are one name there."""
    return unicodedata.normalize("NFC", part).casefold()


def _cut(name, limit):
    """*name* cut to at most *limit* bytes of UTF-8 at a character boundary,
    keeping an extension of at most MAX_EXTENSION_BYTES."""
    encoded = name.encode("utf-8", "surrogatepass")
    if len(encoded) <= limit:
        return name
    stem, ext = os.path.splitext(name)
    ext_bytes = ext.encode("utf-8", "surrogatepass")
    if not stem or len(ext_bytes) > MAX_EXTENSION_BYTES:
        stem, ext_bytes = name, b""
    room = limit - len(ext_bytes)
    head = stem.encode("utf-8", "surrogatepass")[:room].decode("utf-8", "ignore")
    return head + ext_bytes.decode("utf-8", "surrogatepass")


def numbered(name, number, is_dir=False):
    """*name* with `` (number)`` before its extension (after it all for a
    directory), within MAX_NAME_BYTES."""
    stem, ext = (name, "") if is_dir else os.path.splitext(name)
    mark = " (%d)" % number
    room = MAX_NAME_BYTES - len(mark.encode("utf-8")) - len(ext.encode("utf-8", "surrogatepass"))
    stem = stem.encode("utf-8", "surrogatepass")[:max(room, 1)].decode("utf-8", "ignore")
    return stem + mark + ext


def unique_name(directory, name, is_dir=False, exists=os.path.lexists, limit=100000):
    """*name*, or a ``name (N)`` not taken in *directory*: the first free
    one when the taken numbers run 1, 2, 3... without a gap (found in a
    logarithmic number of checks: doubling N, then halving the interval).

    Only a choice: create it exclusively (O_EXCL, mkdir) and choose again
    if that fails, since another program may take it meanwhile. Raises
    FileExistsError if every number up to *limit* looks taken."""
    def taken(number):
        return exists(os.path.join(directory, numbered(name, number, is_dir) if number else name))
    if not taken(0):
        return name
    low, high = 0, 1                 # low taken; high to be checked
    while taken(high):
        if high >= limit:
            raise FileExistsError(os.path.join(directory, name))
        low, high = high, min(high * 2, limit)
    while high - low > 1:            # low taken, high free
        middle = (low + high) // 2
        low, high = (middle, high) if taken(middle) else (low, middle)
    return numbered(name, high, is_dir)


def safe_join(root, parts):
    """*root* joined with *parts*, each a safe part; raises UnsafePath if a
    part is not safe or the result (symbolic links resolved) leaves *root*."""
    parts = list(parts)
    if not parts or not all(is_safe_part(p) for p in parts):
        raise UnsafePath("unsafe path parts %r" % (parts,))
    path = os.path.join(root, *parts)
    base = os.path.realpath(root)
    real = os.path.realpath(path)
    if os.path.commonpath([base, real]) != base or real == base:
        raise UnsafePath("%r leaves %r" % (path, root))
    return path
