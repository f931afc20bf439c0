"""dist/peerpunch.pyz and the systemd unit: the relay and the peer deployed as one file.

The archive is built by the real command line (tools/build_pyz.py -o), copied
alone into an empty folder and run with ``python -I`` (no PYTHONPATH, no user
site, on 3.11+ no unsafe sys.path entry) from another empty folder, so nothing
of this checkout can stand in for what the archive lacks.
"""

import importlib.util
import os
import re
import shutil
import signal
import subprocess
import sys
import zipfile

import pytest

from .procs import ROOT, Proc, env

pytestmark = pytest.mark.timeout(90)

BUILD = os.path.join(ROOT, "tools", "build_pyz.py")
UNIT = os.path.join(ROOT, "contrib", "peerpunch-relay.service")


@pytest.fixture(scope="module")
def pyz(tmp_path_factory):
    """The archive, built by ``tools/build_pyz.py -o`` and then copied alone into an empty folder."""
    built = tmp_path_factory.mktemp("build") / "peerpunch.pyz"
    result = subprocess.run([sys.executable, BUILD, "-o", str(built)], cwd=str(built.parent),
                            env=env(pythonpath=None), capture_output=True, timeout=60)
    assert result.returncode == 0, result
    assert result.stdout.decode().startswith("wrote %s (" % built)
    alone = tmp_path_factory.mktemp("alone") / "peerpunch.pyz"
    shutil.copyfile(str(built), str(alone))
    return str(alone)


@pytest.fixture
def run_pyz(pyz, tmp_path, procs):
    """Start ``python -I peerpunch.pyz ARGS`` in an empty folder, without the checkout on any path."""
    def start(*args, stdin=True):
        proc = Proc([sys.executable, "-I", pyz] + list(args), cwd=str(tmp_path), pythonpath=None,
                    stdin=stdin)
        procs.append(proc)
        return proc
    return start


def _oneshot(pyz, cwd, *args):
    return subprocess.run([sys.executable, "-I", pyz] + list(args), cwd=str(cwd),
                          env=env(pythonpath=None), stdin=subprocess.DEVNULL,
                          capture_output=True, timeout=30)


def test_pyz_relay_and_two_peers_chat_from_a_lone_copy(run_pyz):
    relay = run_pyz("relay", "--host", "127.0.0.1", "--port", "0", stdin=False)
    port = relay.expect(r"relay listening on 127\.0\.0\.1:(\d+)$", stream="stderr").group(1)
    where = ["--relay", "127.0.0.1:" + port, "--bind", "127.0.0.1:0"]
    alice = run_pyz("peer", *where, "--name", "alice", "--wait")
    alice.expect(r"^registered as alice")
    bob = run_pyz(*where, "--name", "bob", "--connect", "alice")       # no command: the peer
    bob.expect(r"^connected to alice at 127\.0\.0\.1:\d+ \(direct\)")
    alice.expect(r"^connected to bob ")
    bob.send("hello from a single file")
    alice.expect(r"^\[bob\]> hello from a single file$")
    alice.send("and back")
    bob.expect(r"^\[alice\]> and back$")
    bob.send("/quit")
    alice.expect(r"^\[bob\] has left the chat\.$")
    assert bob.wait() == 0
    alice.send("/quit")
    assert alice.wait() == 0
    relay.signal(signal.SIGTERM)
    relay.expect(r"relay stopped", stream="stderr")
    assert relay.wait() == 0


def test_pyz_peer_uses_the_same_crypto_backend_as_the_checkout(pyz, tmp_path):
    inside = _oneshot(pyz, tmp_path, "peer", "--version")
    checkout = subprocess.run([sys.executable, "-m", "peerpunch.peer", "--version"], cwd=ROOT,
                              env=env(), capture_output=True, timeout=30)
    assert inside.returncode == checkout.returncode == 0, (inside, checkout)
    in_use = re.search(rb"^in use: (\S+)", checkout.stdout, re.M)
    assert in_use, checkout.stdout
    assert inside.stdout == checkout.stdout            # same version, same backends, same choice


@pytest.mark.parametrize("args, prog", [
    (["peer", "--help"], "peerpunch.pyz peer"),
    (["relay", "--help"], "peerpunch.pyz relay"),
    (["gui", "--help"], "peerpunch.pyz gui"),
    (["--help"], "peerpunch.pyz"),
])
def test_pyz_help_names_the_command_it_was_started_as(pyz, tmp_path, args, prog):
    result = _oneshot(pyz, tmp_path, *args)
    assert result.returncode == 0, result
    out = result.stdout.decode()
    assert out.startswith("usage: %s [-h]" % prog)
    assert re.search(r"^ +peerpunch\.pyz relay --port 8080$", out, re.M), out       # the example


@pytest.mark.parametrize("args, line", [
    (["bogus"], "peerpunch.pyz: error: unknown command 'bogus'"),
    (["Gui"], "peerpunch.pyz: error: unknown command 'Gui'"),
    (["gui", "--name"], "peerpunch.pyz gui: error: argument --name: expected one argument"),
    (["--bogus"], "peerpunch.pyz: error: unrecognized arguments: --bogus"),
    (["peer", "--name"], "peerpunch.pyz peer: error: argument --name: expected one argument"),
    (["relay", "--port", "x"], "peerpunch.pyz relay: error: argument --port: 'x' is not a port"),
])
def test_pyz_bad_arguments_get_one_line_and_exit_2(pyz, tmp_path, args, line):
    result = _oneshot(pyz, tmp_path, *args)
    assert result.returncode == 2, result
    assert len(result.stderr.splitlines()) == 1 and result.stderr.decode().startswith(line), result
    assert result.stdout == b""


def test_pyz_gui_without_a_display_says_so_and_exits_2(pyz, tmp_path):
    bare = {k: v for k, v in env(pythonpath=None).items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    result = subprocess.run([sys.executable, "-I", pyz, "gui", "--name", "alice"],
                            cwd=str(tmp_path), env=bare, stdin=subprocess.DEVNULL,
                            capture_output=True, timeout=30)
    assert result.returncode == 2, result
    lines = result.stderr.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "peerpunch.pyz gui: error: --gui needs a display, and there is none"), result
    assert result.stdout == b""


# --- the build --------------------------------------------------------------------------

def _load_build():
    spec = importlib.util.spec_from_file_location("build_pyz", BUILD)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _package_copy(folder):
    shutil.copytree(os.path.join(ROOT, "peerpunch"), str(folder / "peerpunch"),
                    ignore=shutil.ignore_patterns("__pycache__"))
    return folder


def test_build_pyz_takes_the_package_sources_and_a_main_only(tmp_path):
    root = _package_copy(tmp_path)
    (root / "peerpunch" / "__pycache__").mkdir()
    (root / "peerpunch" / "__pycache__" / "cli.cpython-311.pyc").write_bytes(b"stale")
    (root / "peerpunch" / "notes.txt").write_text("not code")
    target = str(tmp_path / "out" / "peerpunch.pyz")
    _load_build().build(target, root=str(root))
    expected = sorted(os.path.relpath(os.path.join(folder, name), ROOT).replace(os.sep, "/")
                      for folder, _, names in os.walk(os.path.join(ROOT, "peerpunch"))
                      for name in names if name.endswith(".py"))
    with open(target, "rb") as f:
        assert f.readline() == b"#!/usr/bin/env python3\n"
    with zipfile.ZipFile(target) as archive:
        assert archive.namelist() == ["__main__.py"] + expected
        assert b"peerpunch._pyz_main" in archive.read("__main__.py")
    assert os.stat(target).st_mode & 0o777 == 0o755


def test_build_pyz_same_sources_same_bytes_whatever_their_times_and_modes(tmp_path):
    build = _load_build()
    root = _package_copy(tmp_path)
    first = build.archive_bytes(str(root))
    for folder, _, names in os.walk(str(root)):
        for name in names:
            path = os.path.join(folder, name)
            os.utime(path, (1e9, 1e9))
            os.chmod(path, 0o600)
    assert build.archive_bytes(str(root)) == first
    (root / "peerpunch" / "cli.py").write_text("# changed\n")
    assert build.archive_bytes(str(root)) != first


def test_build_pyz_unwritable_target_is_one_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = subprocess.run([sys.executable, BUILD, "-o", str(blocker / "x.pyz")],
                            env=env(pythonpath=None), capture_output=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr.decode().startswith("build_pyz.py: cannot write ")
    assert len(result.stderr.splitlines()) == 1


# --- the systemd unit -------------------------------------------------------------------

def _unit(path=UNIT):
    """{section: {key: [values]}} of a unit file (comments and blank lines skipped)."""
    sections, current = {}, None
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line or line[0] in "#;":
                continue
            if line.startswith("["):
                current = sections.setdefault(line.strip("[]"), {})
                continue
            key, sep, value = line.partition("=")
            assert sep and current is not None, line
            current.setdefault(key.strip(), []).append(value.strip())
    return sections


HARDENING = {
    "DynamicUser": "yes", "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
    "PrivateDevices": "yes", "NoNewPrivileges": "yes", "CapabilityBoundingSet": "",
    "AmbientCapabilities": "", "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
    "SystemCallArchitectures": "native", "MemoryDenyWriteExecute": "yes", "LockPersonality": "yes",
    "RestrictNamespaces": "yes", "Restart": "on-failure",
}


def test_unit_runs_the_pyz_relay_hardened():
    service = _unit()["Service"]
    for key, value in HARDENING.items():
        assert service.get(key) == [value], key
    (exec_start,) = service["ExecStart"]
    words = exec_start.split()
    assert words[0] == "/usr/bin/python3"
    at = words.index("/opt/peerpunch/peerpunch.pyz")
    assert words[at + 1] == "relay" and words[at + 2:] == ["--port", "8080"]
    assert _unit()["Install"]["WantedBy"] == ["multi-user.target"]


def test_unit_relay_does_not_load_ctypes():
    """MemoryDenyWriteExecute=yes is safe because the relay never loads ctypes (libffi)."""
    code = "import sys, peerpunch.relay; print(sorted(m for m in sys.modules if 'ctypes' in m))"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env(),
                            capture_output=True, timeout=30)
    assert result.stdout == b"[]\n", result


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze not installed")
def test_unit_passes_systemd_analyze_verify():
    if not os.path.exists("/usr/bin/python3"):
        pytest.skip("no /usr/bin/python3 here, which verify would rightly report")
    result = subprocess.run(["systemd-analyze", "verify", UNIT], capture_output=True, timeout=60)
    assert result.returncode == 0 and result.stderr == b"", result
