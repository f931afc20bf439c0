"""The GUI's test hook (peerpunch.guitest) obeys only a listener of its own
user and survives whatever that listener writes. No display is needed."""

import os
import shutil
import socket
import tempfile
import time

import pytest

from peerpunch import guitest

WAIT = 30.0


def _listener(path):
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(1)
    return server


def test_gui_hook_takes_its_own_users_listener_and_survives_bad_lines(tmp_path):
    path = str(tmp_path / "hook")
    server = _listener(path)
    hook = guitest.Hook(path)
    test, _ = server.accept()
    test.sendall(b'not json\n[1, 2]\n{"do": "state"}\n' + b"x" * (guitest.MAX_REQUEST + 10))
    deadline = time.monotonic() + WAIT
    got = []
    while not got and time.monotonic() < deadline:
        got = hook._requests()
    assert got == [{"do": "state"}]                  # the junk was skipped, nothing raised
    while time.monotonic() < deadline and len(hook.buffer) <= guitest.MAX_REQUEST:
        if hook._requests() == [] and hook.buffer == b"":
            break
    assert len(hook.buffer) <= guitest.MAX_REQUEST   # no line end in sight: not kept
    test.close()
    server.close()
    hook.sock.close()


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0,
                    reason="needs root to run a listener as another user")
def test_gui_hook_refuses_a_listener_of_another_user():
    folder = tempfile.mkdtemp()              # pytest's own is 0700: nobody could not reach it
    os.chmod(folder, 0o777)
    path = os.path.join(folder, "hook")
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:                                 # the child: nobody, listening
        try:
            os.setuid(65534)
            server = _listener(path)
            os.write(ready_w, b"up")
            server.accept()
            time.sleep(WAIT)
        finally:
            os._exit(0)
    try:
        os.close(ready_w)
        assert os.read(ready_r, 2) == b"up"
        with pytest.raises(PermissionError, match="uid 65534"):
            guitest.Hook(path)
    finally:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        os.close(ready_r)
        shutil.rmtree(folder)
