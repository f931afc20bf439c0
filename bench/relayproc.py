"""The real relay for the benchmarks: ``python -m peerpunch.relay`` on
127.0.0.1 and a free port, its log in a file, its resources read from /proc;
and what every benchmark that starts processes needs: their environment,
stopping them, the benchmark's own limits and peak memory."""

import os
import re
import signal
import subprocess
import sys
import tempfile
import time

try:
    import resource
except ImportError:     # Windows
    resource = None

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
START_TIMEOUT = 10.0


def child_env(config=None):
    """A child's environment: unbuffered, this checkout first on its import
    path, *config* (if given) as its config folder."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=os.pathsep.join(
        p for p in (ROOT, os.environ.get("PYTHONPATH")) if p))
    if config:
        env["XDG_CONFIG_HOME"] = config
    return env


def terminate(popen, grace=5.0):
    """SIGTERM, then SIGKILL if it has not exited within *grace* seconds."""
    if popen.poll() is None:
        popen.send_signal(signal.SIGTERM)
        try:
            popen.wait(grace)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait()


def raise_fd_limit(wanted):
    """Allow this process *wanted* open files, as far as the hard limit lets."""
    if resource is None:
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))


def own_peak_rss_mb():
    """This process's peak RSS in MB, or None where it cannot be read."""
    if resource is None:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1 << 20) if sys.platform == "darwin" else peak / 1024


def mb(value):
    """Megabytes for a report, or ``n/a`` where they could not be read."""
    return "n/a" if value is None else "%.1f" % value


class RelayProcess:
    """Start the relay with *flags*; *name* prefixes temporary files and errors."""

    def __init__(self, name, *flags):
        self.name = name
        fd, self.log_path = tempfile.mkstemp(prefix=name + "-", suffix=".log")
        os.close(fd)
        with open(self.log_path, "ab") as log:      # append: our reads cannot clobber it
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "peerpunch.relay", "--host", "127.0.0.1", "--port", "0"]
                + list(flags), cwd=ROOT, env=child_env(), stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=log)
        self.addr = None

    def wait_listening(self):
        """The relay's (host, port), once it logs that it listens."""
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            found = re.search(r"relay listening on 127\.0\.0\.1:(\d+)", self.log())
            if found:
                self.addr = ("127.0.0.1", int(found.group(1)))
                return self.addr
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        raise SystemExit("%s: the relay did not start:\n%s" % (self.name, self.log()))

    def log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def log_size(self):
        """(bytes, lines) of the log so far."""
        text = self.log()
        return len(text.encode()), text.count("\n")

    def peak_rss_mb(self):
        """VmHWM of the relay (Linux), else None."""
        try:
            with open("/proc/%d/status" % self.proc.pid) as f:
                found = re.search(r"^VmHWM:\s+(\d+) kB", f.read(), re.M)
            return int(found.group(1)) / 1024 if found else None
        except OSError:
            return None

    def cpu_seconds(self):
        """User+system CPU time of the relay so far (Linux), else None."""
        try:
            with open("/proc/%d/stat" % self.proc.pid) as f:
                fields = f.read().rpartition(")")[2].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError):
            return None

    def stop(self, timeout=10):
        """SIGTERM, then SIGKILL if it lingers; its stop line's counters as
        text, or None if it wrote none."""
        terminate(self.proc, timeout)
        text = self.log()
        os.unlink(self.log_path)
        stopped = re.search(r"relay stopped: (.*)", text)
        return stopped.group(1) if stopped else None
