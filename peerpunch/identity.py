"""Long-term identity keys and trust on first use (TOFU), as files.

* ``identity``: this user's X25519 private key, created on first run with
  mode 0600 and refused if anyone else may read it.
* ``known_peers``: one ``name<TAB>key`` line per peer whose key we pinned the
  first time we talked to them. A later session where that name presents
  another key is a *changed* key: the chat stays closed until the user says
  ``/trust``.

Both live in ``$XDG_CONFIG_HOME/peerpunch`` (default ``~/.config/peerpunch``).
Keys are written in base64. Nothing here touches the network.
"""

import base64
import binascii
import hashlib
import os
import stat

try:
    import fcntl
except ImportError:         # Windows: no advisory locks; pins still merge on write
    fcntl = None

from . import protocol as P

HEADER = "peerpunch-identity-v1"
KEY_LEN = 32
NEW, KNOWN, CHANGED = "new", "known", "changed"


class IdentityError(Exception):
    """A key file we cannot use; the message says which and why, in one line."""


def config_dir():
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(base, "peerpunch")


class Identity:
    """A key pair: ``private`` and ``public``, 32 bytes each."""

    def __init__(self, private, public):
        self.private = private
        self.public = public

    @property
    def fingerprint(self):
        return fingerprint(self.public)


def load_or_create(path, backend, generate):
    """The identity at *path*, created (mode 0600) if there is none.

    *generate* returns 32 random bytes; *backend* computes the public key.
    Raises IdentityError.
    """
    data = _read_small(path, "identity ", 4096, check=_check_private)
    if data is None:
        return _create(path, backend, generate)
    lines = data.decode("ascii", "replace").split()
    if len(lines) != 2 or lines[0] != HEADER:
        raise IdentityError("identity %s is not a peerpunch identity file" % path)
    private = decode_key(lines[1])
    if private is None:
        raise IdentityError("identity %s holds no valid key" % path)
    return Identity(private, backend.x25519_public(private))


def _create(path, backend, generate):
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, mode=0o700, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise IdentityError("cannot create identity %s: %s" % (path, exc.strerror)) from None
    private = generate()
    with os.fdopen(fd, "w") as f:
        f.write("%s\n%s\n" % (HEADER, encode_key(private)))
    return Identity(private, backend.x25519_public(private))


def _check_private(path, st):
    if os.name == "posix" and st.st_mode & 0o077:
        raise IdentityError("identity %s may be read by others (mode %03o): run chmod 600 %s"
                            % (path, st.st_mode & 0o777, path))


def encode_key(key):
    return base64.b64encode(key).decode("ascii")


def decode_key(text):
    """A 32-byte key from base64 *text*, or None."""
    try:
        key = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        return None
    return key if len(key) == KEY_LEN else None


def fingerprint(public):
    """A short readable name for a public key: ``3f9a-12cd-9e0b-77aa``."""
    digest = hashlib.blake2s(public, digest_size=8, person=b"pp-fpr").hexdigest()
    return "-".join(digest[i:i + 4] for i in range(0, 16, 4))


def safety_code(key_a, key_b):
    """Thirty digits two people can read to each other: the same on both
    sides, whatever the order of the keys."""
    digest = hashlib.blake2s(min(key_a, key_b) + max(key_a, key_b), person=b"pp-safe").digest()
    digits = "%030d" % (int.from_bytes(digest[:16], "big") % 10 ** 30)
    return " ".join(digits[i:i + 5] for i in range(0, 30, 5))


MAX_KNOWN_PEERS_BYTES = 1 << 20


class KnownPeers:
    """The pinned keys in a ``known_peers`` file.

    Several peers may run at once and pin at once: ``pin`` takes a lock
    file, reads the file again, adds its key and replaces the file
    atomically, so nobody's pins are lost.
    """

    def __init__(self, path):
        self.path = path
        self.keys = {}
        self.bad_lines = 0
        self._load()

    def _load(self):
        keys, self.bad_lines = {}, 0
        for line in _read_text(self.path).splitlines():
            entry = self._parse(line)
            if entry:
                keys[entry[0]] = entry[1]
        self.keys.update(keys)

    def _parse(self, line):
        name, sep, text = line.partition("\t")
        key = decode_key(text) if sep else None
        try:
            P.check_username(name)
        except ValueError:
            key = None
        if key is None:
            self.bad_lines += line.strip() != ""
            return None
        return name, key

    def check(self, name, key):
        """NEW, KNOWN or CHANGED."""
        pinned = self.keys.get(name)
        return NEW if pinned is None else KNOWN if pinned == key else CHANGED

    def pin(self, name, key):
        """Remember *key* for *name* (replacing any other) and save, merged
        with whatever other processes pinned meanwhile."""
        folder = os.path.dirname(os.path.abspath(self.path))
        tmp = "%s.%d.tmp" % (self.path, os.getpid())
        try:
            os.makedirs(folder, mode=0o700, exist_ok=True)
            with _Lock(self.path + ".lock"):
                self._load()
                self.keys[name] = key
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "w", encoding="utf-8") as f:
                    for n in sorted(self.keys):
                        f.write("%s\t%s\n" % (n, encode_key(self.keys[n])))
                os.replace(tmp, self.path)
        except (OSError, IdentityError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else exc
            raise IdentityError("cannot write %s: %s" % (self.path, reason)) from None


def _read_text(path):
    """known_peers' text; '' if there is none. Raises IdentityError."""
    data = _read_small(path, "", MAX_KNOWN_PEERS_BYTES)
    return "" if data is None else data.decode("utf-8", "replace")


def _read_small(path, what, limit, check=None):
    """The bytes of the regular file at *path* (at most *limit*), or None if
    it does not exist. A FIFO or device is refused without blocking;
    *check(path, stat)* may refuse more. Raises IdentityError."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise IdentityError("cannot read %s%s: %s" % (what, path, exc.strerror)) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise IdentityError("cannot read %s%s: not a regular file" % (what, path))
        if st.st_size > limit:
            raise IdentityError("cannot read %s%s: larger than %d bytes" % (what, path, limit))
        if check is not None:
            check(path, st)
        return os.read(fd, limit)
    except OSError as exc:
        raise IdentityError("cannot read %s%s: %s" % (what, path, exc.strerror)) from None
    finally:
        os.close(fd)


class _Lock:
    """An exclusive lock on a file, where the system has fcntl (POSIX)."""

    def __init__(self, path):
        self.path = path
        self.fd = None

    def __enter__(self):
        self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600)
        if fcntl is not None:
            fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        os.close(self.fd)       # releases the lock


class Pins:
    """The pinned keys, shared by every chat: name -> 32-byte public key.

    ``record`` pins in memory only; the shell writes known_peers when it
    sees the PinKey event that goes with it.
    """

    asking = False     # True in a chat request's view of them (peerpunch.consent.Request)

    def __init__(self, keys=None):
        self.keys = dict(keys or {})

    def get(self, name):
        return self.keys.get(name)

    def verdict(self, name, key):
        pinned = self.keys.get(name)
        return NEW if pinned is None else KNOWN if pinned == key else CHANGED

    def record(self, name, key):
        self.keys[name] = key
