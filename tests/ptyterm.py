"""A process on a real pseudo-terminal, and a tiny terminal to read it with.

:class:`PtyProc` starts a command with stdin, stdout and stderr on the
slave side of a pty (80 columns by 24 rows, ``TERM=xterm``), reads the
master side in a thread, and feeds every byte to a :class:`ScreenModel`:
printable characters overwrite, ``\\r``, ``\\n``, backspace and tab move,
and the CSI sequences readline and our views use are applied (cursor
up/down/left/right, erase in line and below, insert and delete
characters, insert mode); other sequences (modes, colours) change nothing
on the model but are counted, so a test can say none came at all.
"""

import fcntl
import os
import re
import select
import struct
import subprocess
import termios
import threading
import time

from .procs import env, terminate

COLUMNS, ROWS = 80, 24
CSI = re.compile(rb"\x1b\[([0-?]*)([ -/]*)([@-~])")
UNFINISHED = re.compile(rb"\x1b(\[[0-?]*[ -/]*)?\Z|[\xc0-\xff][\x80-\xbf]*\Z")


def _unfinished(data):
    """Where a sequence or character cut at the end of *data* starts (or None)."""
    m = UNFINISHED.search(data, max(0, len(data) - 64))
    if m is None:
        return None
    tail = m.group(0)
    if tail[0] >= 0xc0 and len(tail) >= (2 if tail[0] < 0xe0 else 3 if tail[0] < 0xf0 else 4):
        return None                          # a whole UTF-8 character
    return m.start()


class ScreenModel:
    """An endless screen: rows of text and a cursor (row, column)."""

    def __init__(self, columns=COLUMNS):
        self.columns = columns
        self.rows = [[]]
        self.row = self.col = 0
        self.insert = False
        self.bells = 0
        self.escapes = []            # every escape sequence seen, in order
        self._rest = b""             # the start of a sequence or character cut by a read

    def feed(self, data):
        data = self._rest + data
        cut = _unfinished(data)
        if cut is not None:
            data, self._rest = data[:cut], data[cut:]
        else:
            self._rest = b""
        i = 0
        while i < len(data):
            if data[i] == 0x1b:
                i = self._escape(data, i)
                continue
            end = i + 1
            while end < len(data) and data[end] >= 0x80 and data[end] < 0xc0:
                end += 1                           # a UTF-8 character's continuation bytes
            self._char(data[i:end].decode("utf-8", "replace"))
            i = end

    def _escape(self, data, i):
        m = CSI.match(data, i)
        if m is None:
            self.escapes.append(data[i:i + 2])
            return i + 2
        self.escapes.append(m.group(0))
        params, final = m.group(1).decode(), m.group(3).decode()
        n = int(params) if params.isdigit() else 1
        if final == "A":
            self.row = max(0, self.row - n)
        elif final == "B":
            self._down(n)
        elif final == "C":
            self.col = min(self.columns - 1, self.col + n)
        elif final == "D":
            self.col = max(0, self.col - n)
        elif final == "K":
            del self._line()[self.col:]
        elif final == "J":
            del self._line()[self.col:]
            del self.rows[self.row + 1:]
        elif final == "P":
            del self._line()[self.col:self.col + n]
        elif final == "@":
            self._line()[self.col:self.col] = [" "] * n
        elif final in "hl" and params == "4":
            self.insert = final == "h"
        return m.end()

    def _char(self, c):
        if c == "\r":
            self.col = 0
        elif c == "\n":
            self._down(1)
        elif c == "\b":
            self.col = max(0, self.col - 1)
        elif c == "\a":
            self.bells += 1
        elif c == "\t":
            self.col = min(self.columns - 1, (self.col // 8 + 1) * 8)
        elif c >= " ":
            if self.col >= self.columns:
                self._down(1)
                self.col = 0
            line = self._line()
            if self.insert:
                line.insert(self.col, c)
            elif self.col < len(line):
                line[self.col] = c
            else:
                line.append(c)
            self.col += 1

    def _down(self, n):
        self.row += n
        while len(self.rows) <= self.row:
            self.rows.append([])

    def _line(self):
        line = self.rows[self.row]
        line.extend(" " * (self.col - len(line)))
        return line

    def lines(self):
        return ["".join(row).rstrip() for row in self.rows]

    def cursor_line(self):
        return "".join(self.rows[self.row]).rstrip()


class PtyProc:
    """*argv* on a pseudo-terminal of its own."""

    def __init__(self, argv, config=None, extra_env=None, pass_fds=()):
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLUMNS, 0, 0))
        e = env(config)
        e.update(TERM="xterm", INPUTRC=os.devnull, COLUMNS=str(COLUMNS), LINES=str(ROWS))
        e.pop("NO_COLOR", None)
        e.update(extra_env or {})
        self.tty_name = os.ttyname(slave)
        self.initial_modes = termios.tcgetattr(slave)
        self.popen = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=e,
                                      start_new_session=True, pass_fds=pass_fds)
        os.close(slave)
        self.master = master
        self.raw = b""
        self.screen = ScreenModel()
        self._changed = threading.Condition()
        self._hanging_up = False
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        while True:
            try:
                ready, _, _ = select.select([self.master], [], [], 0.1)
                if self._hanging_up:
                    return
                data = os.read(self.master, 4096) if ready else None
            except OSError:
                data = b""
            if data is None:
                continue
            with self._changed:
                if not data:
                    self.eof = True
                    self._changed.notify_all()
                    return
                self.raw += data
                self.screen.feed(data)
                self._changed.notify_all()

    eof = False

    def wait_for(self, check, timeout=15.0, what=None):
        """Wait until *check(self)* is true (re-tried at each output); return it."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                result = check(self)
                if result:
                    return result
                left = deadline - time.monotonic()
                if left <= 0 or self.eof:
                    raise AssertionError("%s not seen on the terminal within %g s; screen:\n%s\n"
                                         "raw: %r" % (what or check, timeout,
                                                      "\n".join(self.screen.lines()[-30:]),
                                                      self.raw[-3000:]))
                self._changed.wait(min(left, 0.5))

    def expect(self, pattern, timeout=15.0):
        """Wait for a screen line matching *pattern* (a regex, searched)."""
        regex = re.compile(pattern)
        return self.wait_for(lambda t: next((m for m in map(regex.search, t.screen.lines()) if m),
                                            None), timeout, pattern)

    def slave_modes(self):
        """The terminal's modes as the process left them (its side of the pty)."""
        fd = os.open(self.tty_name, os.O_RDWR | os.O_NOCTTY)
        try:
            return termios.tcgetattr(fd)
        finally:
            os.close(fd)

    def hang_up(self):
        """Close the terminal as closing its window does (its master side)."""
        self._hanging_up = True
        self._reader.join()
        os.close(self.master)

    def type(self, text):
        os.write(self.master, text.encode("utf-8") if isinstance(text, str) else text)

    def stop(self):
        terminate(self.popen)
        try:
            os.close(self.master)
        except OSError:
            pass
