"""The relay's STUN alternate port, as ``python -m peerpunch.relay`` opens it
with its default command line and with each flag that changes it: the real
process on 127.0.0.1, checked by what answers on which port."""

import re
import signal
import socket
import sys

import pytest

from peerpunch import stun

from .procs import Proc, free_port_pair, start_relay

pytestmark = pytest.mark.timeout(60)

ALT_LINE = r"STUN alternate port 127\.0\.0\.1:(\d+)$"
NO_ALT = r"warning: no STUN alternate port \((.*)\); peers cannot tell whether their NAT is symmetric"


def stun_answer(port):
    """The mapped address a Binding request to *port* comes back with, or None."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        s.settimeout(5)
        request = stun.binding_request()
        s.sendto(bytes(request), ("127.0.0.1", port))
        try:
            data = s.recv(2048)
        except socket.timeout:
            return None
        answer = stun.parse_message(data)
        assert answer.transaction_id == request.transaction_id
        return answer.mapped_address(), s.getsockname()


def registers(port):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(5)
        s.sendto(b'{"Register":{"username":"alice"}}', ("127.0.0.1", port))
        return s.recv(2048) == b'"RegisterAck"'


def relay(procs, *args, port=0):
    proc, port = start_relay(*args, port=port)
    procs.append(proc)
    return proc, port


def test_relay_alt_port_is_main_port_plus_one_by_default(procs):
    proc, port = relay(procs, port=free_port_pair())
    assert int(proc.expect(ALT_LINE, "stderr").group(1)) == port + 1
    mapped, ours = stun_answer(port + 1)
    assert mapped == ours
    assert not proc.has("warning", "stderr")


def test_relay_alt_port_taken_costs_one_warning_and_the_relay_serves(procs):
    port = free_port_pair()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as squatter:
        squatter.bind(("127.0.0.1", port + 1))
        proc, port = relay(procs, port=port)
        reason = proc.expect(NO_ALT, "stderr").group(1)
        assert reason == "port %d: Address already in use" % (port + 1)
        assert registers(port)
        assert stun_answer(port)[0] is not None          # STUN on the main port still works
    assert proc.popen.poll() is None
    lines = stopped(proc)
    assert not any(re.search(ALT_LINE, line) for line in lines)
    assert sum("warning" in line for line in lines) == 1


def test_relay_alt_port_with_port_zero_is_picked_freely(procs):
    proc, port = relay(procs)
    alt = int(proc.expect(ALT_LINE, "stderr").group(1))
    assert alt not in (0, port)
    assert stun_answer(alt)[0] is not None


def test_relay_alt_port_moved_by_flag(procs):
    port = free_port_pair()
    proc, main_port = relay(procs, "--alt-port", str(port + 1))
    assert int(proc.expect(ALT_LINE, "stderr").group(1)) == port + 1
    assert stun_answer(port + 1)[0] is not None


def test_relay_no_alt_port_opens_only_the_main_port(procs):
    proc, port = relay(procs, "--no-alt-port")
    assert registers(port)
    lines = stopped(proc)
    assert not any(re.search(ALT_LINE, line) or "warning" in line for line in lines)
    assert "relay stopped" in lines[-1]
    assert "internal_errors=0" in lines[-1] and "send_errors=0" in lines[-1]   # said even at 0


def test_relay_alt_port_flag_errors_are_one_line(procs):
    port = free_port_pair()
    for args, code, pattern in [
            (["--port", str(port), "--alt-port", str(port)], 2, r"--alt-port must differ from --port"),
            (["--alt-port", "1", "--no-alt-port"], 2, r"not allowed with argument"),
            (["--alt-port", "70000"], 2, r"is not a port number")]:
        proc = start_relay_raw(procs, *args)
        assert proc.wait() == code
        assert len(proc.lines_when_done("stderr")) == 1 and proc.has(pattern, "stderr")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as squatter:
        squatter.bind(("127.0.0.1", 0))
        taken = squatter.getsockname()[1]
        proc = start_relay_raw(procs, "--alt-port", str(taken))
        assert proc.wait() == 1                  # asked for by name: not silently dropped
        assert proc.has(r"^relay: cannot listen on 127\.0\.0\.1:%d: Address already in use$" % taken,
                        "stderr")


def stopped(proc):
    """Stop *proc* politely; every line it wrote on stderr."""
    proc.signal(signal.SIGTERM)
    return proc.lines_when_done("stderr")


def start_relay_raw(procs, *args):
    proc = Proc([sys.executable, "-m", "peerpunch.relay", "--host", "127.0.0.1"] + list(args),
                stdin=False)
    procs.append(proc)
    return proc
