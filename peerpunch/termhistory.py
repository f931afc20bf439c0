"""What the terminal remembers and completes: the history file and Tab.

The history keeps the lines typed (commands and messages alike) across runs
in the config directory, one line per line of UTF-8, the last
:data:`HISTORY_LINES` only, mode 0600 (it holds what was said). It is read
once at start and written once at the end, merged with what another peer
using the same folder wrote meanwhile. Nothing here raises: a missing,
unreadable, binary or huge file reads as what can be made of its tail; a
folder that cannot be written to keeps the history in memory only.

The completer offers the /commands of :data:`peerpunch.console.HELP` for
the first word of a line that starts with ``/``, and the names seen so far
(partners, groups) for any other word. :func:`set_up` hands both to the
``readline`` module, and binds keys readline would otherwise insert in
part to nothing.
"""

import os
import re

from .console import HELP

HISTORY_LINES = 1000
READ_AT_MOST = 256 * 1024      # bytes read from the end of a history file
COMMANDS = tuple(sorted(set(re.findall(r"^\s+(/[a-z]+)\b", HELP, re.M))))
MAX_NAMES = 1000               # names remembered for completion
MAX_NAME = 64
# Keys readline leaves unbound, whose sequences it would insert in part ("~",
# "D"): function keys F5-F12, End as vt220 sends it, modified arrows.
QUIET_KEYS = ["\\e[%d~" % n for n in (15, 17, 18, 19, 20, 21, 23, 24)] + \
    ["\\e[1;%d%s" % (m, k) for m in (2, 3, 4, 6, 7, 8) for k in "ABCD"]


def load(path):
    """The last HISTORY_LINES lines of the file at *path* ([] if none)."""
    try:
        with open(path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(0, size - READ_AT_MOST))
            data = f.read(READ_AT_MOST)
    except (OSError, ValueError):
        return []
    lines = data.decode("utf-8", "replace").splitlines()
    if size > READ_AT_MOST:
        lines = lines[1:]             # the first one is cut
    return [line for line in lines if line.strip() and "\x00" not in line][-HISTORY_LINES:]


def save(path, lines):
    """Write *lines* (the last HISTORY_LINES) to *path*, mode 0600, in one
    step (a temporary file renamed); False if the folder does not allow it."""
    temporary = "%s.%d.tmp" % (path, os.getpid())
    data = "".join(line + "\n" for line in lines[-HISTORY_LINES:]).encode("utf-8", "replace")
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        os.replace(temporary, path)
        return True
    except OSError:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        return False


class History:
    """The lines of earlier runs (*loaded*) and this run's (:meth:`add`)."""

    def __init__(self, path):
        self.path = path
        self.loaded = load(path) if path else []
        self.new = []

    def add(self, line):
        if line.strip() and "\x00" not in line:
            self.new.append(line)
            del self.new[:-HISTORY_LINES]

    def save(self):
        """Merge this run's lines into the file (as another run left it)."""
        if not self.path or not self.new or not os.path.isdir(os.path.dirname(self.path) or "."):
            return False
        return save(self.path, load(self.path) + self.new)


class Completer:
    """The words Tab offers: /commands, and the names :meth:`add` saw."""

    def __init__(self, commands=COMMANDS):
        self.commands = commands
        self.names = {}               # a dict keeps the order they came in

    def add(self, name):
        if isinstance(name, str) and 0 < len(name) <= MAX_NAME and name.isprintable() \
                and not any(c.isspace() for c in name) and len(self.names) < MAX_NAMES:
            self.names[name] = True

    def matches(self, line, begin, text):
        """The completions of *text*, the word at *begin* of *line*."""
        if begin == 0 and text.startswith("/"):
            return [c for c in self.commands if c.startswith(text)]
        return sorted(n for n in list(self.names) if n.startswith(text))


def set_up(readline, history, completer):
    """History from earlier runs, and Tab completing commands and names."""
    for line in history.loaded:
        try:
            readline.add_history(line)
        except ValueError:
            pass

    def complete(text, state):
        if state == 0:
            complete.found = completer.matches(readline.get_line_buffer(),
                                               readline.get_begidx(), text)
        return complete.found[state] if state < len(complete.found) else None
    readline.set_completer(complete)
    readline.set_completer_delims(" \t\n")
    if "libedit" in (readline.__doc__ or ""):
        readline.parse_and_bind("bind ^I rl_complete")
        return
    readline.parse_and_bind("tab: complete")
    readline.parse_and_bind('"\\e[4~": end-of-line')
    for keys in QUIET_KEYS:
        readline.parse_and_bind('"%s": ""' % keys)
