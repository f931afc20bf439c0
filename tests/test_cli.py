"""The command lines: bad arguments get one line and exit code 2."""

import ast
import configparser
import importlib
import os
import re
import signal
import subprocess
import sys

import pytest

from peerpunch import cli
from peerpunch import protocol as P
from peerpunch.console import HELP

from .procs import PEER, ROOT, Proc, env

RELAY = [sys.executable, "-m", "peerpunch.relay"]
PEER_CMD = [sys.executable, PEER]


def run(argv):
    return subprocess.run(argv, cwd=ROOT, env=env(), stdin=subprocess.DEVNULL,
                          capture_output=True, timeout=30)


@pytest.mark.parametrize("argv", [
    PEER_CMD + ["--relay", "nohostport"],
    PEER_CMD + ["--relay", "host:99999"],
    PEER_CMD + ["--relay", "host:"],
    PEER_CMD + ["--relay", "[::1"],
    PEER_CMD + ["--relay", "::1:8080"],
    PEER_CMD + ["--relay", "host:-1"],
    PEER_CMD + ["--bind", "0.0.0.0:x"],
    PEER_CMD + ["--bind", ""],
    PEER_CMD + ["--name", "x" * 100],
    PEER_CMD + ["--name", "bad\tname"],
    PEER_CMD + ["--connect", "bob", "--wait"],
    PEER_CMD + ["--keepalive", "0"],
    PEER_CMD + ["--keepalive", "nan"],
    PEER_CMD + ["--max-chats", "0"],
    PEER_CMD + ["--max-chats", "17"],
    PEER_CMD + ["--max-chats", "two"],
    PEER_CMD + ["--bogus"],
    PEER_CMD + ["--name", "#team", "--wait"],             # names starting with # are groups'
    PEER_CMD + ["--name", "alice", "--connect", "#team"],
    PEER_CMD + ["--relay", "no-such-host.invalid:8080", "--name", "a", "--wait"],
    PEER_CMD + ["--bind", "192.0.2.1:0", "--name", "a", "--wait"],
    RELAY + ["--port", "70000"],
    RELAY + ["--port", "abc"],
    RELAY + ["--host", ""],
    RELAY + ["--expire", "-5"],
    RELAY + ["--max-users", "0"],
    RELAY + ["extra"],
], ids=lambda argv: " ".join(argv[1:])[-40:])
def test_cli_bad_argument_gets_one_line_and_exit_2(argv):
    result = run(argv)
    assert result.returncode == 2, result
    lines = result.stderr.decode().splitlines()
    assert len(lines) == 1 and "error" in lines[0] and "Traceback" not in lines[0], lines
    assert result.stdout == b""


@pytest.mark.parametrize("argv", [PEER_CMD, RELAY, [sys.executable, "-m", "peerpunch.peer"]])
def test_cli_help_and_version(argv):
    assert b"usage:" in run(argv + ["--help"]).stdout
    version = run(argv + ["--version"])
    assert version.returncode == 0 and version.stdout.startswith(b"peerpunch ")


def test_cli_relay_port_in_use_is_one_line():
    import socket
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        result = run(RELAY + ["--host", "127.0.0.1", "--port", str(s.getsockname()[1])])
    assert result.returncode == 1
    assert result.stderr.decode().strip().startswith("relay: cannot listen on 127.0.0.1:")
    assert len(result.stderr.splitlines()) == 1


def test_cli_peer_eof_at_prompt_exits_without_traceback():
    result = run(PEER_CMD + ["--relay", "127.0.0.1:9"])
    assert result.returncode == 1
    assert b"Traceback" not in result.stderr


def _imports(path):
    tree = ast.parse(open(path, "rb").read(), path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module


STDLIB_38 = {
    # what the runtime may use; every name here is in Python 3.8's standard library
    "bisect",       # the stream: ACK ranges and fragment ranges by binary search
    "_ssl", "argparse", "array", "base64", "binascii", "collections", "ctypes", "dataclasses", "enum",
    "fcntl", "functools", "glob", "hashlib", "hmac", "ipaddress", "json", "logging", "math", "os",
    "queue",
    "shutil", "unicodedata",   # file transfer: free disk space, staged trees; names a disk merges
    "errno", "shlex",          # file transfer: a full disk told from other errors; /send's paths
    "random", "re", "selectors", "signal", "socket", "stat", "struct", "sys", "threading", "time",
    "traceback", "typing", "zlib",
    "readline", "select", "termios",   # the terminal view: line editing, waiting for a key, tty modes
    "tkinter",                 # the GUI (--gui), imported only when asked for
    "weakref",                 # file offers: one peer's budget forgets the desks of ended chats
}


def test_runtime_imports_only_the_standard_library():
    files = []
    for top in ("peerpunch", "bin"):
        for folder, _, names in os.walk(os.path.join(ROOT, top)):
            files += [os.path.join(folder, n) for n in names if n.endswith(".py")]
    assert len(files) >= 8
    stdlib = getattr(sys, "stdlib_module_names", None)
    for path in files:
        for module in _imports(path):
            top = module.split(".")[0]
            if top == "peerpunch":
                continue
            assert top in STDLIB_38, "%s imports %s, not on the runtime allow-list" % (path, module)
            if stdlib is not None:
                assert top in stdlib, "%s imports %s, not in the standard library" % (path, module)


def test_cli_relay_flags_reach_the_relay(tmp_path):
    """--max-users-per-ip 1: a second name from the same IP is refused."""
    import socket
    from .procs import start_relay
    relay, port = start_relay("--max-users-per-ip", "1")
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as a, \
                socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as b:
            for s in (a, b):
                s.settimeout(10)           # milliseconds normally; 10 s for a loaded host
            for s, name in ((a, "one"), (b, "two")):      # through the cookie, as a peer does
                s.sendto(P.encode(P.Register(name, features=("ext", "relay1"))), ("127.0.0.1", port))
                cookie = P.decode(s.recv(2048)).cookie
                s.sendto(P.encode(P.Register(name, features=("ext", "relay1"), cookie=cookie)),
                         ("127.0.0.1", port))
            assert a.recv(2048).startswith(b'{"RegisterAck"')
            assert b.recv(2048).startswith(b'{"Error":{"code":"relay-full"')
    finally:
        relay.stop()


# --- the name a program shows: how it was started --------------------------------------

@pytest.mark.parametrize("argv, prog, relay_prog", [
    (["bin/peer.py"], "python bin/peer.py", "python bin/relay.py"),
    (["bin/relay.py"], "python bin/relay.py", "python bin/relay.py"),
    (["-m", "peerpunch"], "python -m peerpunch", "python -m peerpunch.relay"),
    (["-m", "peerpunch.peer"], "python -m peerpunch.peer", "python -m peerpunch.relay"),
    (["-m", "peerpunch.relay"], "python -m peerpunch.relay", "python -m peerpunch.relay"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_cli_help_and_errors_name_the_program_as_started(argv, prog, relay_prog):
    shown = run([sys.executable] + argv + ["--help"])
    out = shown.stdout.decode()
    assert shown.returncode == 0 and out.startswith("usage: %s [-h]" % prog), out
    assert re.search(r"^ +%s --port 8080$" % re.escape(relay_prog), out, re.M), out  # the example
    error = run([sys.executable] + argv + ["--bogus"])
    assert error.returncode == 2
    assert error.stderr.decode() == "%s: error: unrecognized arguments: --bogus\n" % prog


def _console_scripts():
    config = configparser.ConfigParser()
    config.read(os.path.join(ROOT, "setup.cfg"))
    lines = config["options.entry_points"]["console_scripts"].strip().splitlines()
    return dict((part.strip() for part in line.split("=")) for line in lines)


@pytest.mark.parametrize("script", ["peerpunch-peer", "peerpunch-relay"])
def test_cli_console_script_names_itself(script, monkeypatch, capsys):
    module, _, function = _console_scripts()[script].partition(":")
    main = getattr(importlib.import_module(module), function)
    for args, code in ((["--help"], 0), (["--bogus"], 2)):
        monkeypatch.setattr(sys, "argv", ["/usr/local/bin/" + script] + args)
        with pytest.raises(SystemExit) as exit:
            main()                                  # as the console script calls it
        assert exit.value.code == code
    out, err = capsys.readouterr()
    assert out.startswith("usage: %s [-h]" % script)
    assert err == "%s: error: unrecognized arguments: --bogus\n" % script


@pytest.mark.parametrize("argv, name", [
    (["/usr/bin/peerpunch-peer"], "peerpunch-peer"),
    (["C:/Scripts/peerpunch-peer.exe"], "peerpunch-peer"),
    (["../x/bin/peer.py"], "python ../x/bin/peer.py"),
    (["-c"], "fallback"),
    ([], "fallback"),
])
def test_cli_program_name_from_argv0(monkeypatch, argv, name):
    monkeypatch.setattr(sys, "argv", argv)
    assert cli.program_name("fallback") == name


def test_cli_peer_help_lists_the_in_chat_commands_and_two_peers():
    out = run(PEER_CMD + ["--help"]).stdout.decode()
    assert "\nin-chat commands:\n" in out
    for line in HELP.splitlines()[1:]:
        assert "\n" + line + "\n" in out, line
    prog = re.escape(PEER_CMD[1])
    assert re.search(r"^ +python %s --relay \S+:8080 --name bob --wait$" % prog, out, re.M), out
    assert re.search(r"^ +python %s --relay \S+:8080 --name alice --connect bob$" % prog, out, re.M)


@pytest.mark.parametrize("script", ["peer.py", "relay.py"])
def test_cli_bin_script_runs_from_any_folder(tmp_path, script):
    """-S (no site-packages): an installed peerpunch cannot stand in for the checkout."""
    argv = [sys.executable, "-S", os.path.join(ROOT, "bin", script), "--version"]
    result = subprocess.run(argv, cwd=str(tmp_path), env=env(pythonpath=None),
                            capture_output=True, timeout=30)
    assert result.returncode == 0 and result.stdout.startswith(b"peerpunch "), result


def test_cli_bin_relay_from_another_folder_serves_and_stops_on_sigterm(tmp_path):
    relay = Proc([sys.executable, "-S", os.path.join(ROOT, "bin", "relay.py"),
                  "--port", "0", "--host", "127.0.0.1"], cwd=str(tmp_path), pythonpath=None, stdin=False)
    try:
        relay.expect(r"relay listening on 127\.0\.0\.1:\d+$", stream="stderr")
        relay.signal(signal.SIGTERM)
        relay.expect(r"relay stopped", stream="stderr")
        assert relay.wait() == 0
    finally:
        relay.stop()
