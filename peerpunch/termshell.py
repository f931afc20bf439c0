"""The terminal's input side: line editing with readline, and the screen
the terminal view writes to.

Theory of operation
-------------------
When stdin and stdout are terminals, :func:`open_terminal` builds a
:class:`~peerpunch.termview.TerminalView` over one of three *screens*; the
screen's ``run(network)`` is the stdin thread's body (it posts ``("line",
text)`` and last ``("quit",)``), its ``show``/``prompt``/``close`` are
called by the main thread through the view.

* :class:`GnuScreen` (GNU readline, reached through ctypes): the stdin
  thread does not call ``input()``; it waits with ``select`` until a key is
  there and feeds it to readline's callback interface
  (``rl_callback_read_char``), which edits, echoes, and calls our handler
  with each finished line. Every call into readline, from either thread,
  is made holding one lock, so readline's state (which is global, and not
  thread-safe) is never touched by two threads at once. To print a line
  the main thread takes the lock, erases the input as readline drew it
  (``rl_clear_visible_line``: every screen row of it, the cursor left at
  its start), writes the line, and has readline draw prompt, input and
  cursor anew below it (``rl_forced_update_display``, which keeps
  ``rl_point``): the half-typed line and the cursor are intact, also in an
  incremental search (Ctrl+R), whose own prompt is redrawn too. A new
  prompt (``rl_set_prompt``) waits while a search or a numeric argument
  has readline's prompt saved. The library is the one the ``readline``
  module loaded (``ctypes.CDLL(readline.__file__)`` finds it among the
  module's dependencies), never another copy; readline's signal handlers
  are off (Ctrl+C stays the program's polite quit) and a resized window is
  noticed at the next key or line shown. Limits: a line shown while
  readline asks a question of its own (``Display all 120 possibilities? (y
  or n)``) erases the question (the answer still counts); after Ctrl+Z and
  ``fg`` the terminal's modes are as the shell restores them.
  (``rl_save_prompt``/``rl_replace_line``, the older way, would clobber the
  prompt a search saved: readline keeps one saved prompt.)
* :class:`BasicScreen` (a ``readline`` module without that: libedit, a
  readline older than 7.0, symbols missing): the stdin thread calls
  ``input(prompt)``; a line shown clears the terminal row and redraws the
  prompt and ``readline.get_line_buffer()`` with the cursor at its end. Its
  limits: the cursor is put at the end even if it was elsewhere (the next
  key redraws right on libedit, not always on others), an input longer than
  a row is not fully erased, a new prompt shows from the next line on, and
  the two threads may write at the same moment (a key echoed while a line
  is printed can land in the wrong place).
* :class:`PlainScreen` (no ``readline`` at all): plain lines, with one
  notice; escape sequences typed (arrow keys) are taken out of each line,
  and a line left empty is not sent.

Lines are split at newlines and stripped of escape sequences in every
case, so neither a paste nor a key readline did not bind sends terminal
codes to a partner. History, Tab and key bindings:
:mod:`peerpunch.termhistory`. The terminal's modes are saved at start and
put back by ``close()``; a terminal that hangs up (its window closed) ends
the input as Ctrl+D does.
"""

import errno
import os
import re
import select
import struct
import sys
import threading
import time

try:
    import fcntl
    import termios
except ImportError:             # not a Unix: no terminal modes to keep (and no readline)
    fcntl = termios = None

from . import rlctypes
from . import termhistory as TH
from .termview import NEUTRAL_PROMPT, TerminalView, use_colour

ESCAPES = re.compile(r"\x1b(\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)?|O.|[ -/]*[0-~]|$)"
                     r"|\x9b[0-?]*[ -/]*[@-~]")
RL_STATE_ISEARCH, RL_STATE_NSEARCH, RL_STATE_NUMERICARG = 0x80, 0x100, 0x400
PROMPT_SAVED = RL_STATE_ISEARCH | RL_STATE_NSEARCH | RL_STATE_NUMERICARG
HANGUPS = 3                    # "readable" with nothing to read this often in a row: hung up
READLINE_MISSING = "no readline module: plain line input (no editing, history or Tab)"


def typed_lines(text):
    """The lines to send for what was typed: split at newlines, escape
    sequences taken out, empty ones dropped."""
    lines = (ESCAPES.sub("", part) for part in re.split(r"\r\n|\r|\n", text))
    return [line for line in lines if line.strip()]


def _isatty(stream):
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class Screen:
    """What every screen shares: the output streams, the lock, the prompt,
    the count of lines typed, and a progress line kept in place above the
    input (moved up to and rewritten while nothing came between)."""

    def __init__(self, stdin, out, err, history):
        self.stdin, self.out, self.err = stdin, out, err
        self.history = history
        self.lock = threading.Lock()
        self.typed = 0
        self.current_prompt = NEUTRAL_PROMPT
        self._progress_at = None           # lines typed when a progress line was shown
        self._closed = False
        self._modes = _modes(stdin)

    def _text(self, text, progress):
        """*text* as written: over the last progress line if it is just above."""
        again = self._progress_at is not None and self._progress_at == self.typed
        self._progress_at = self.typed if progress else None
        if progress:
            text = text[:_width(self.out) - 1]
        return ("\x1b[A\r\x1b[K" if again else "") + text + "\n"

    def _write(self, text, err, bell, progress):
        stream = self.err if err else self.out
        try:
            if err:
                self.out.flush()
            stream.write(("\a" if bell else "") + self._text(text, progress))
            stream.flush()
        except (OSError, ValueError):      # the terminal is gone: nothing to show on
            pass

    @staticmethod
    def _posted(network, text):
        for line in typed_lines(text):
            network.post("line", line)

    def close(self):
        if not self._closed:
            self._closed = True
            _restore_modes(self.stdin, self._modes)
            self.history.save()


class PlainScreen(Screen):
    """No readline: lines as the terminal's own line editing gives them."""

    def show(self, text, err=False, bell=False, progress=False):
        with self.lock:
            self._write(text, err, bell, progress)

    def prompt(self, text):
        self.current_prompt = text

    def run(self, network):
        for line in iter(self.stdin.readline, ""):
            self.typed += 1
            self._posted(network, line)
        network.post("quit")


class BasicScreen(Screen):
    """``input()`` with the readline module; lines shown redraw the prompt
    and the input with the cursor at its end."""

    def __init__(self, stdin, out, err, history, readline):
        super().__init__(stdin, out, err, history)
        self.readline = readline
        self._in_use = None                # the prompt input() shows now

    def show(self, text, err=False, bell=False, progress=False):
        with self.lock:
            if self._in_use is None:
                self._write(text, err, bell, progress)
                return
            self.out.write("\r\x1b[K")
            self._write(text, err, bell, progress)
            self.out.write(self._in_use + self.readline.get_line_buffer())
            self.out.flush()

    def prompt(self, text):
        self.current_prompt = text

    def run(self, network):
        while not self._closed:
            with self.lock:
                self._in_use = self.current_prompt
            try:
                line = input(self._in_use)
            except (EOFError, OSError, ValueError):
                break
            finally:
                self._in_use = None
            self.typed += 1
            self.history.add(line)
            self._posted(network, line)
        network.post("quit")


def _modes(stream):
    if termios is None:
        return None
    try:
        return termios.tcgetattr(stream.fileno())
    except (AttributeError, ValueError, OSError, termios.error):
        return None


def _restore_modes(stream, modes):
    if modes is not None:
        try:
            termios.tcsetattr(stream.fileno(), termios.TCSADRAIN, modes)
        except (ValueError, OSError, termios.error):
            pass


def _waiting_bytes(fd):
    """How many bytes can be read from *fd* now: 0 also for a terminal that
    hung up (as readable as ever, and reads fail), None if the system
    does not say."""
    try:
        return struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0]
    except OSError as exc:
        return 0 if exc.errno == errno.EIO else None
    except (AttributeError, ValueError, struct.error):
        return None


def _width(stream):
    try:
        return os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, ValueError, OSError):
        return 80


class GnuScreen(Screen):
    """GNU readline driven key by key from the stdin thread; everything
    that touches readline holds the lock (see the module's doc)."""

    def __init__(self, stdin, out, err, history, readline, rl):
        super().__init__(stdin, out, err, history)
        self.readline = readline
        self.rl = rl
        self.encoding = getattr(out, "encoding", None) or "utf-8"
        self._handler = rlctypes.LINE_HANDLER(self._line)     # kept: readline holds a pointer
        self._active = False               # readline shows the prompt and input
        self._pending = None               # a prompt to set once readline allows
        self._got = []                     # lines finished by the last key (None: EOF)
        self._size = None

    def show(self, text, err=False, bell=False, progress=False):
        with self.lock:
            if not self._active:
                self._write(text, err, bell, progress)
                return
            self._fit()
            self.rl.clear_visible_line()
            self.rl.flush()
            self._write(text, err, bell, progress)
            self.rl.forced_update_display()

    def prompt(self, text):
        with self.lock:
            self._pending = text
            self._set_prompt()

    def run(self, network):
        fd = self.stdin.fileno()
        with self.lock:
            if self._closed:
                return
            self._install()
        hangups = 0
        while hangups < HANGUPS:
            try:
                select.select([fd], [], [])
            except (OSError, ValueError):
                break
            hangups = hangups + 1 if _waiting_bytes(fd) == 0 else 0
            with self.lock:
                if self._closed:
                    return
                if not self._active:       # readline aborts the program when called so
                    break
                self._fit()
                self.rl.callback_read_char()
                self._set_prompt()
                got, self._got = self._got, []
            for line in got:
                if line is None:
                    network.post("quit")
                    return
                self._posted(network, line)
        network.post("quit")

    def close(self):
        with self.lock:
            if self._active:
                self.rl.clear_visible_line()
                self.rl.callback_handler_remove()
                self.rl.flush()
                self._active = False
        super().close()

    def _install(self):
        self.current_prompt = self._pending or self.current_prompt
        self._pending = None
        self.rl.callback_handler_install(self._encode(self.current_prompt), self._handler)
        self.rl.flush()
        self._active = True

    def _set_prompt(self):
        """Show a new prompt, unless readline has saved its prompt for a
        while (a search or a numeric argument shows its own)."""
        if self._pending is None or not self._active or self.rl.state() & PROMPT_SAVED:
            return
        self.current_prompt, self._pending = self._pending, None
        self.rl.set_prompt(self._encode(self.current_prompt))
        self.rl.clear_visible_line()
        self.rl.forced_update_display()

    def _line(self, pointer):
        """readline's line handler (in the stdin thread, the lock held)."""
        data = self.rl.take_line(pointer)
        if data is None:
            self._got.append(None)
            self.rl.callback_handler_remove()
            self._active = False
            self.rl.flush()
            try:
                self.out.write("\n")
                self.out.flush()
            except (OSError, ValueError):      # the terminal is gone
                pass
            return
        line = data.decode(self.encoding, "replace")
        self.typed += 1                    # a new row: a progress line is no longer just above
        if line.strip():
            self._remember(line)
        self._got.append(line)

    def _remember(self, line):
        self.history.add(line)
        length = self.readline.get_current_history_length()
        if length == 0 or self.readline.get_history_item(length) != line:
            self.readline.add_history(line)
        if self.readline.get_current_history_length() > TH.HISTORY_LINES:
            self.readline.remove_history_item(0)

    def _fit(self):
        """Tell readline the window's new size, if it changed."""
        try:
            size = os.get_terminal_size(self.out.fileno())
        except (AttributeError, ValueError, OSError):
            return
        if self._size is not None and size != self._size:
            self.rl.resize_terminal()
        self._size = size

    def _encode(self, text):
        return text.encode(self.encoding, "replace")


# -------------------------------------------------------------- choosing


def open_terminal(folder, *, timestamps=False, bell=False, stdin=None, stdout=None, stderr=None,
                  environ=None):
    """A TerminalView (with ``read_input(network)`` for the stdin thread)
    if *stdin* and *stdout* are terminals, else None. *folder*: the config
    folder the history is kept in (None: no history file)."""
    stdin, stdout = stdin or sys.stdin, stdout or sys.stdout
    stderr, environ = stderr or sys.stderr, os.environ if environ is None else environ
    if not (_isatty(stdin) and _isatty(stdout)):
        return None
    history = TH.History(os.path.join(folder, "history") if folder else None)
    completer = TH.Completer()
    screen = _screen(stdin, stdout, stderr, history, completer)
    view = TerminalView(screen, colour=use_colour(environ), timestamps=timestamps, bell=bell,
                        clock=time.monotonic, hhmm=lambda: time.strftime("%H:%M"),
                        learn=completer.add)
    view.read_input = screen.run
    if isinstance(screen, PlainScreen):
        view.log(READLINE_MISSING)
    return view


def _screen(stdin, stdout, stderr, history, completer):
    try:
        import readline
    except ImportError:
        return PlainScreen(stdin, stdout, stderr, history)
    TH.set_up(readline, history, completer)
    rl = rlctypes.bind(readline)
    if rl is None:
        return BasicScreen(stdin, stdout, stderr, history, readline)
    return GnuScreen(stdin, stdout, stderr, history, readline, rl)
