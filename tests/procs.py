"""Real relay and peer processes, started by their real command lines.

Each process gets a reader thread per output stream that collects lines, so
a test can wait for a line matching a pattern without blocking forever.
"""

import atexit
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PEER = os.path.join(ROOT, "bin", "peer.py")
DEFAULT_WAIT = 10.0


_SHARED_CONFIG = []


def _shared_config():
    """One throwaway config folder for short-lived commands, removed at exit."""
    if not _SHARED_CONFIG:
        _SHARED_CONFIG.append(tempfile.mkdtemp(prefix="peerpunch-test-"))
        atexit.register(shutil.rmtree, _SHARED_CONFIG[0], True)
    return _SHARED_CONFIG[0]


def env(config=None, pythonpath=ROOT):
    """The environment for a child: unbuffered, *pythonpath* (this checkout)
    first if given, and *config* as its config folder (identity,
    known_peers), never the user's."""
    e = dict(os.environ, PYTHONUNBUFFERED="1", XDG_CONFIG_HOME=config or _shared_config())
    e.pop("PYTHONWARNINGS", None)
    e.pop("PYTHONPATH", None)
    if pythonpath:
        e["PYTHONPATH"] = pythonpath
    return e


def has_ipv6_loopback():
    """True if this host can bind a UDP socket on ::1."""
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def free_port_pair():
    """A port P with P and P + 1 both free for UDP on 127.0.0.1 (as far as
    one can tell): for a relay and its STUN alternate port."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as a:
            a.bind(("127.0.0.1", 0))
            port = a.getsockname()[1]
            if port >= 65535:
                continue
            try:
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as b:
                    b.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise RuntimeError("no two adjacent free UDP ports")


def terminate(popen, grace=5.0):
    """Stop *popen* politely (SIGTERM), and for good if it has not exited
    within *grace* seconds."""
    if popen.poll() is None:
        popen.send_signal(signal.SIGTERM)
        try:
            popen.wait(grace)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait()


class Proc:
    """A child process with line-by-line access to stdout and stderr."""

    def __init__(self, argv, prefix=(), stdin=True, config=None, cwd=ROOT, pythonpath=ROOT):
        """Start *prefix* + *argv* in *cwd*; *pythonpath* None leaves the
        checkout off the child's import path."""
        self.argv = list(prefix) + list(argv)
        self._own_config = None if config else tempfile.mkdtemp(prefix="peerpunch-test-")
        config = config or self._own_config
        self.popen = subprocess.Popen(
            self.argv, cwd=cwd, env=env(config, pythonpath),
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.lines = {"stdout": [], "stderr": []}
        self._new = queue.Queue()
        self._pumps = [threading.Thread(target=self._pump, args=(name,), daemon=True)
                       for name in ("stdout", "stderr")]
        for pump in self._pumps:
            pump.start()

    def _pump(self, name):
        for raw in getattr(self.popen, name):
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            self.lines[name].append(line)
            self._new.put((name, line))
        self._new.put((name, None))

    def expect(self, pattern, stream="stdout", timeout=DEFAULT_WAIT, start=0):
        """Wait for a line of *stream* matching *pattern* (a regex, searched);
        return the match. Lines seen earlier count too, from index *start*."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        seen = start
        while True:
            batch = self.lines[stream][seen:]     # a snapshot: the reader thread appends meanwhile
            for line in batch:
                m = regex.search(line)
                if m:
                    return m
            seen += len(batch)
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("no line matching %r on %s of %s within %gs; got:\n%s"
                                     % (pattern, stream, self.argv, timeout, self.transcript()))
            try:
                self._new.get(timeout=min(left, 0.5))
            except queue.Empty:
                pass

    def finish_output(self, timeout=DEFAULT_WAIT):
        """Wait until every line the process wrote has been read (both
        streams at their end: it exited); True if so within *timeout*."""
        deadline = time.monotonic() + timeout
        for pump in self._pumps:
            pump.join(max(0.0, deadline - time.monotonic()))
        return not any(pump.is_alive() for pump in self._pumps)

    def has(self, pattern, stream="stdout"):
        return any(re.search(pattern, line) for line in self.lines[stream])

    def send(self, line):
        self.popen.stdin.write((line + "\n").encode("utf-8"))
        self.popen.stdin.flush()

    def close_stdin(self):
        self.popen.stdin.close()

    def wait(self, timeout=DEFAULT_WAIT):
        return self.popen.wait(timeout)

    def lines_when_done(self, stream="stdout", timeout=DEFAULT_WAIT):
        """Every line of *stream*, once the process has exited and closed it."""
        self.popen.wait(timeout)
        self.finish_output(timeout)
        return self.lines[stream]

    def signal(self, sig):
        self.popen.send_signal(sig)

    def stop(self):
        terminate(self.popen)
        self.finish_output(5)       # its last lines too, before the pipes close
        for stream in (self.popen.stdin, self.popen.stdout, self.popen.stderr):
            if stream:
                try:
                    stream.close()
                except OSError:
                    pass
        if self._own_config:
            shutil.rmtree(self._own_config, ignore_errors=True)

    def transcript(self):
        return "\n".join("  out| " + l for l in self.lines["stdout"]) + "\n" + \
               "\n".join("  err| " + l for l in self.lines["stderr"])


def start_relay(*extra, host="127.0.0.1", prefix=(), port=0):
    """Start ``python -m peerpunch.relay`` on *port* (default: an ephemeral
    one; None: the relay's own default); return (proc, port)."""
    argv = [sys.executable, "-m", "peerpunch.relay", "--host", host]
    argv += [] if port is None else ["--port", str(port)]
    proc = Proc(argv + list(extra), prefix=prefix, stdin=False)
    m = proc.expect(r"relay listening on (\S+):(\d+)$", stream="stderr")
    return proc, int(m.group(2))


def start_peer(relay, *args, prefix=(), config=None):
    """Start ``python bin/peer.py --relay RELAY ARGS`` (with *config* as its
    XDG_CONFIG_HOME, else a fresh one)."""
    return Proc([sys.executable, PEER, "--relay", relay] + list(args), prefix=prefix, config=config)


def peer(procs, relay, *args, config=None):
    """Start a peer against the *relay* fixture and have *procs* stop it."""
    proc = start_peer(relay.addr, *args, config=config)
    procs.append(proc)
    return proc


CONNECTED = r"^connected to %s at 127\.0\.0\.1:\d+ \(direct\) encrypted, key [0-9a-f-]{19}, in \d+\.\d+ s$"


def chatting(procs, relay, a="alice", b="bob", a_args=(), b_args=(), a_config=None, b_config=None):
    """*b* waits, *a* connects; returns (a, b) once both print an encrypted connect line."""
    bob = peer(procs, relay, "--name", b, "--wait", *b_args, config=b_config)
    bob.expect("^registered as %s" % b)
    alice = peer(procs, relay, "--name", a, "--connect", b, *a_args, config=a_config)
    alice.expect(CONNECTED % b)
    bob.expect(CONNECTED % a)
    return alice, bob


def bound_port(proc):
    """The UDP port a peer process printed it is bound to."""
    return int(proc.expect(r"^bound to \S+:(\d+);").group(1))


