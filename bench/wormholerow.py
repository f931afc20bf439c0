"""magic-wormhole rows of file_bench.py, from a virtualenv of its own.

Theory of operation
-------------------
magic-wormhole never is a dependency of the project: it lives in a
separate virtualenv (``--wormhole-venv DIR``) holding magic-wormhole,
magic-wormhole-mailbox-server and magic-wormhole-transit-relay, and is
only run as programs from that virtualenv's ``bin``.

One transfer on a place (the same places as file_bench.py): the mailbox
server and the transit relay (``twistd -n`` with their plugins, on port 0,
the port read from their log) run where the project's relay runs (the
lab's public namespace); ``wormhole send --code CODE FILE`` runs on
alice's host and, once it has claimed its code, ``wormhole receive
--accept-file -o OUT CODE`` on bob's. Two times, both read on bob's side:
from its ``Receiving file`` line (the offer) to its ``Received file
written`` line, and the whole receive command (start to exit); the note
adds its data phase alone (from its ``Receiving (->ROUTE)`` line). The file
must be byte-identical and both commands must exit 0.
"""

import filecmp
import os
import re
import subprocess
import threading
import time

from relayproc import terminate

CODE = "7-peerpunch-bench"
PACKAGES = ("magic-wormhole", "magic-wormhole-mailbox-server", "magic-wormhole-transit-relay")
WAIT = 30.0
TRANSFER_WAIT = 900.0
OFFER = re.compile(r"Receiving (?:file|directory) \(")
WRITTEN = re.compile(r"Received file written to")
PATH = re.compile(r"Receiving \(->(\S+?)\)")


def check_venv(venv):
    """None if *venv* can run the rows, else why not (one line)."""
    for prog in ("wormhole", "twistd", "python"):
        if not os.access(os.path.join(venv, "bin", prog), os.X_OK):
            return "--wormhole-venv %s: no bin/%s there" % (venv, prog)
    try:
        versions(venv)
    except (OSError, subprocess.SubprocessError, ValueError) as exc:
        return "--wormhole-venv %s: cannot read versions of %s (%s)" % (
            venv, ", ".join(PACKAGES), str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    return None


def versions(venv):
    """{package: version} of the three packages in *venv*."""
    script = ("import importlib.metadata as m\n"
              "for p in %r: print(p, m.version(p))" % (PACKAGES,))
    out = subprocess.run([os.path.join(venv, "bin", "python"), "-c", script],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    found = dict(line.split() for line in out.splitlines() if line.strip())
    if set(found) != set(PACKAGES):
        raise ValueError("missing %s" % sorted(set(PACKAGES) - set(found)))
    return found


def describe(venv):
    return ", ".join("%s %s" % item for item in sorted(versions(venv).items()))


class Child:
    """A program whose output lines (stdout and stderr merged) are kept with
    the time they were read."""

    def __init__(self, argv, cwd):
        env = dict(os.environ, PYTHONUNBUFFERED="1", WORMHOLE_QR="0")
        env.pop("PYTHONPATH", None)
        self.started = time.monotonic()
        self.popen = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.lines = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for raw in self.popen.stdout:
            for part in raw.decode("utf-8", "replace").split("\r"):
                self.lines.append((time.monotonic(), part.rstrip("\n")))

    def wait_for(self, regex, seconds=WAIT):
        """(when, match) of the first line matching *regex*."""
        deadline = time.monotonic() + seconds
        while True:
            for when, line in list(self.lines):
                found = regex.search(line)
                if found:
                    return when, found
            done = self.popen.poll() is not None and not self.reader.is_alive()
            if done or time.monotonic() >= deadline:
                break
            time.sleep(0.01)
        raise SystemExit("file_bench: magic-wormhole: no %r; its output ends: %s"
                         % (regex.pattern, " | ".join(l for _, l in self.lines[-5:])))

    def finish(self, seconds):
        """Exit time; the program must exit 0 within *seconds*."""
        try:
            self.popen.wait(seconds)
        except subprocess.TimeoutExpired:
            raise SystemExit("file_bench: magic-wormhole: %s still running" % self.popen.args[-1])
        ended = time.monotonic()
        self.reader.join(5)
        if self.popen.returncode:
            raise SystemExit("file_bench: magic-wormhole: exit %d: %s" % (
                self.popen.returncode, " | ".join(l for _, l in self.lines[-5:])))
        return ended

    def stop(self):
        terminate(self.popen)


def servers(place, venv, work, children):
    """Start the mailbox server and transit relay; (relay URL, transit hint)."""
    twistd = place.command("relay") + [os.path.join(venv, "bin", "twistd"), "-n", "--pidfile=",
                                       "-l", "-"]
    host = place.relay_host
    mailbox = Child(twistd + ["wormhole-mailbox", "--port", "tcp:0:interface=%s" % host,
                              "--channel-db", os.path.join(work, "mailbox.sqlite")], work)
    children.append(mailbox)
    transit = Child(twistd + ["transitrelay", "--port", "tcp:0:interface=%s" % host], work)
    children.append(transit)
    mport = mailbox.wait_for(re.compile(r"PrivacyEnhancedSite starting on (\d+)"))[1].group(1)
    tport = transit.wait_for(re.compile(r"ServerFactory starting on (\d+)"))[1].group(1)
    return "ws://%s:%s/v1" % (host, mport), "tcp:%s:%s" % (host, tport)


def transfer(place, source, work, venv):
    """One transfer; (bytes, offer-to-written seconds, whole-command seconds, note)."""
    children = []
    out = os.path.join(work, "wormhole.out")
    try:
        url, helper = servers(place, venv, work, children)
        wormhole = [os.path.join(venv, "bin", "wormhole"), "--relay-url", url,
                    "--transit-helper", helper]
        send = Child(place.command("alice") + wormhole + ["send", "--no-qr", "--code", CODE,
                                                          source], work)
        children.append(send)
        send.wait_for(re.compile(r"Wormhole code is"))
        recv = Child(place.command("bob") + wormhole + ["receive", "--accept-file", "-o", out,
                                                        CODE], work)
        children.append(recv)
        ended = recv.finish(TRANSFER_WAIT)
        send.finish(WAIT)
        offered = recv.wait_for(OFFER, 0)[0]
        written = recv.wait_for(WRITTEN, 0)[0]
        connected, route = recv.wait_for(PATH, 0)
        if not filecmp.cmp(source, out, shallow=False):
            raise SystemExit("file_bench: magic-wormhole: the received file differs")
        data = os.path.getsize(source) / max(written - connected, 1e-9) / 1e6
        note = "%s, byte-identical, data phase alone %.0f MB/s" % (
            "via its transit relay" if route.group(1).startswith("relay")
            else "direct (%s)" % route.group(1), data)
        return os.path.getsize(source), written - offered, ended - recv.started, note
    finally:
        for child in reversed(children):
            child.stop()
        if os.path.exists(out):
            os.unlink(out)
