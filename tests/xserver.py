"""A virtual X server for the GUI's tests, the test side of the GUI's hook,
and screenshots as PNG.

:func:`xvfb` starts Debian's ``Xvfb`` on a display number it picks itself
(``-displayfd``: it writes the number once it accepts connections, so there
is no race for a free number and no waiting by the clock). Where Xvfb is
missing the GUI tests skip, except in CI (``CI=true``), where they fail:
run-tests installs it as root, as it installs the NAT lab's packages.

:class:`GuiDriver` listens on the Unix socket the GUI's test hook
(:mod:`peerpunch.guitest`) connects to, and asks it to type, click and
report. :func:`screenshot` saves a window as PNG from ``xwd`` output
(written here with zlib and struct: no imaging library).
"""

import json
import os
import shutil
import socket
import struct
import subprocess
import time
import zlib

import pytest

from .procs import terminate

READY_WAIT = 15.0
ENV = "PEERPUNCH_GUI_TEST"


class Xvfb:
    """A running ``Xvfb``: *display* (":N"), *popen*."""

    def __init__(self, size="1024x768x24"):
        read, write = os.pipe()
        try:
            self.popen = subprocess.Popen(
                ["Xvfb", "-displayfd", str(write), "-screen", "0", size, "-nolisten", "tcp",
                 "-noreset"], pass_fds=(write,), stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE)
        finally:
            os.close(write)
        with os.fdopen(read, "rb") as ready:
            number = ready.readline().strip()      # written once it accepts clients; EOF if it died
        if not number.isdigit():
            self.stop()
            raise RuntimeError("Xvfb did not start: %r" % self.popen.stderr.read()[-500:])
        self.display = ":" + number.decode()

    def stop(self):
        terminate(self.popen)
        self.popen.stderr.close()


def xvfb_or_skip():
    """Skip (or, in CI, fail) when there is no Xvfb (or xwd); else start one.
    A Python built without tkinter skips: it has no GUI to test."""
    pytest.importorskip("tkinter", reason="this Python has no tkinter")
    missing = [tool for tool in ("Xvfb", "xwd") if shutil.which(tool) is None]
    if missing:
        why = "%s not installed (Debian: apt-get install xvfb x11-apps; run-tests does it as" \
              " root)" % " and ".join(missing)
        if os.environ.get("CI") == "true":
            pytest.fail("the GUI tests must run in CI: " + why)
        pytest.skip(why)
    return Xvfb()


class GuiDriver:
    """The test's end of the GUI's hook: a Unix socket at *path* the GUI
    connects to; :meth:`ask` sends one request and returns the answer."""

    def __init__(self, path):
        self.path = path
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(path)
        self.server.listen(1)
        self.conn = None
        self.buffer = b""

    def accept(self, timeout=20.0):
        self.server.settimeout(timeout)
        self.conn, _ = self.server.accept()
        self.conn.settimeout(timeout)

    def ask(self, do, **fields):
        if self.conn is None:
            self.accept()
        self.conn.sendall(json.dumps(dict(do=do, **fields)).encode() + b"\n")
        while b"\n" not in self.buffer:
            data = self.conn.recv(1 << 16)
            if not data:
                raise AssertionError("the GUI closed its hook")
            self.buffer += data
        line, self.buffer = self.buffer.split(b"\n", 1)
        answer = json.loads(line)
        assert answer.pop("ok"), answer
        return answer

    def wait_for(self, check, timeout=15.0, what="the GUI"):
        """Ask for the state until *check(state)* is true; return that state."""
        deadline = time.monotonic() + timeout
        while True:
            state = self.ask("state")
            if check(state):
                return state
            if time.monotonic() > deadline:
                raise AssertionError("%s: not so within %gs; state:\n%s"
                                     % (what, timeout, json.dumps(state, indent=1)))
            time.sleep(0.05)

    def close(self):
        for sock in (self.conn, self.server):
            if sock is not None:
                sock.close()


# -- screenshots

def screenshot(display, window, path):
    """Save X *window* (an id, "0x..." from ``wm frame``) on *display* as a PNG at *path*."""
    xwd = subprocess.run(["xwd", "-silent", "-display", display, "-id", window],
                         capture_output=True, timeout=30, check=True).stdout
    width, height, rows = xwd_pixels(xwd)
    with open(path, "wb") as f:
        f.write(png(width, height, rows))


def xwd_pixels(data):
    """(width, height, rows of RGB bytes) of an XWD dump (ZPixmap, 24 or 32
    bits per pixel, true colour: what Xvfb at depth 24 gives)."""
    fields = struct.unpack(">25I", data[:100])
    header_size, version, pixmap_format, depth, width, height = fields[:6]
    byte_order, bits_per_pixel, bytes_per_line = fields[7], fields[11], fields[12]
    masks, ncolors = fields[14:17], fields[19]
    if version != 7 or pixmap_format != 2 or bits_per_pixel not in (24, 32):
        raise ValueError("not a true-colour ZPixmap XWD (version %d, format %d, %d bpp)"
                         % (version, pixmap_format, bits_per_pixel))
    start = header_size + 12 * ncolors
    step = bits_per_pixel // 8
    order = "little" if byte_order == 0 else "big"
    shifts = [(m, (m & -m).bit_length() - 1) for m in masks]
    rows = []
    for y in range(height):
        line = data[start + y * bytes_per_line:start + y * bytes_per_line + width * step]
        out = bytearray()
        for x in range(0, len(line), step):
            pixel = int.from_bytes(line[x:x + step], order)
            out += bytes((pixel & m) >> s for m, s in shifts)
        rows.append(bytes(out))
    return width, height, rows


def png(width, height, rows):
    """A PNG file (8-bit RGB, no filter) of *rows*."""
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(
            ">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
    raw = b"".join(b"\0" + row for row in rows)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)      # 8-bit RGB
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 9))
            + chunk(b"IEND", b""))
