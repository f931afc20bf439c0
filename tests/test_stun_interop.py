"""STUN against programs nobody here wrote (Debian packages coturn and
stun-client): their clients read our relay's answers, and our client reads
coturn's. The relay runs by its real command line with ``--alt-port``.

Skipped with one reason where the binaries are missing; with CI=true that is
a failure instead (``run-tests`` installs them).
"""

import os
import re
import shutil
import socket
import subprocess
import sys
import time

import pytest

from peerpunch import natcheck, stun
from peerpunch.protocol import format_endpoint
from peerpunch.peershell import run_check
from peerpunch.stun import is_stun

from .procs import (DEFAULT_WAIT, PEER, ROOT, Proc, env, free_port_pair, has_ipv6_loopback,
                    start_relay)

PACKAGES = {"turnutils_stunclient": "coturn", "turnserver": "coturn", "stun": "stun-client"}
TIMEOUT = 10           # turnutils_stunclient never times out by itself


def require(*binaries):
    missing = [b for b in binaries if shutil.which(b) is None]
    if missing:
        reason = "needs %s (apt-get install %s)" % (
            ", ".join(missing), " ".join(sorted({PACKAGES[b] for b in missing})))
        if os.environ.get("CI") == "true":
            pytest.fail("STUN interop must run in CI: " + reason)
        pytest.skip(reason)


def tool(*argv, timeout=TIMEOUT):
    return subprocess.run(["timeout", str(timeout)] + list(argv), cwd=ROOT, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=timeout + 5)


@pytest.fixture
def stun_relay(procs):
    """Start our relay with -v and --alt-port 0 on a loopback *host*;
    the process has .host, .port and .alt."""
    def start(host):
        if ":" in host and not has_ipv6_loopback():
            pytest.skip("no IPv6 loopback here")
        proc, port = start_relay("-v", "--alt-port", "0", host=host)
        procs.append(proc)
        proc.host, proc.port = host, port
        proc.alt = int(proc.expect(r"STUN alternate port \S+:(\d+)$", "stderr").group(1))
        return proc
    return start


BOTH = pytest.mark.parametrize("host", ["127.0.0.1", "::1"], ids=["ipv4", "ipv6"])


def answers_logged(relay):
    """(client endpoint, relay port) of every STUN answer the relay logged
    to others. Our own Binding request, sent last, is answered (and logged)
    after every request answered before it: once its line is read, so are
    theirs."""
    family = socket.AF_INET6 if ":" in relay.host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.bind((relay.host, 0))
        s.settimeout(DEFAULT_WAIT)
        s.sendto(bytes(stun.binding_request()), (relay.host, relay.port))
        s.recvfrom(2048)
        marker = format_endpoint(s.getsockname())
    relay.expect(r"STUN answer to %s from port" % re.escape(marker), "stderr")
    return [(m.group(1), int(m.group(2))) for m in
            (re.search(r"STUN answer to (\S+) from port (\d+)$", l) for l in relay.lines["stderr"])
            if m and m.group(1) != marker]


# ------------------------------------------------------ their clients, our relay


@BOTH
def test_interop_turnutils_stunclient_reads_our_mapped_address(stun_relay, host):
    require("turnutils_stunclient")
    relay = stun_relay(host)
    result = tool("turnutils_stunclient", "-p", str(relay.port), relay.host)
    assert result.returncode == 0, result
    reflexive = set(re.findall(r"UDP reflexive addr: (\S+)$", result.stdout, re.M))
    answered = answers_logged(relay)
    assert len(reflexive) == 1 and answered, (result.stdout, relay.transcript())
    (address,) = reflexive
    host, port = address.rsplit(":", 1)
    expected = "[%s]:%s" % (host, port) if ":" in host else address
    assert answered == [(expected, relay.port)], result.stdout


def test_interop_stun_client_reads_mapped_address_and_changed_port(stun_relay):
    """stun 0.97 (RFC 3489, IPv4 only) reads MAPPED-ADDRESS: test I from its
    first port; test III (change port) is answered from our alternate port;
    test II (change IP and port) gets no answer from a relay with one IP."""
    require("stun")
    relay = stun_relay("127.0.0.1")
    src = free_port_pair()
    result = tool("stun", "%s:%d" % (relay.host, relay.port), "-v", "-p", str(src))
    out = result.stdout + result.stderr
    mapped = re.findall(r"^MappedAddress = (\S+)$", out, re.M)
    assert mapped and set(mapped) <= {"127.0.0.1:%d" % src, "127.0.0.1:%d" % (src + 1)}, out
    assert "127.0.0.1:%d" % src in mapped, out
    tests = dict(re.findall(r"^(test I|test II|test III) = (\d)$", out, re.M))
    assert tests == {"test I": "1", "test II": "0", "test III": "1"}, out
    ports = {port for _, port in answers_logged(relay)}
    assert ports == {relay.port, relay.alt}, relay.transcript()
    assert result.returncode == 0x0B, out        # "Firewall": test II, change of IP, got nothing


@BOTH
def test_interop_relay_alt_port_speaks_only_stun_and_main_port_both(stun_relay, host):
    """A peer still registers on the main port; JSON sent to the alternate
    port gets nothing; STUN on either port gets an answer from that port."""
    relay = stun_relay(host)
    family = socket.AF_INET6 if ":" in relay.host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.bind((relay.host, 0))
        s.settimeout(DEFAULT_WAIT)
        s.sendto(b'{"Register":{"username":"mallory"}}', (relay.host, relay.alt))
        # the alternate port first: an answer to the JSON would arrive before its STUN answer
        for port in (relay.alt, relay.port):
            request = stun.binding_request()
            s.sendto(bytes(request), (relay.host, port))
            data, source = s.recvfrom(2048)
            assert source[1] == port and is_stun(data), data
            assert stun.parse_message(data).mapped_address() == stun.canonical_address(s.getsockname())
        s.sendto(b'{"Register":{"username":"mallory"}}', (relay.host, relay.port))
        assert b"RegisterAck" in s.recvfrom(2048)[0]


def test_interop_relay_counts_stun_in_its_stop_line(stun_relay):
    relay = stun_relay("127.0.0.1")
    with socket.socket(socket.AF_INET6 if ":" in relay.host else socket.AF_INET,
                       socket.SOCK_DGRAM) as s:
        s.sendto(b"\x00\x01garbage", (relay.host, relay.port))   # handled before the request
        s.sendto(bytes(stun.binding_request()), (relay.host, relay.port))
        s.settimeout(DEFAULT_WAIT)
        s.recvfrom(2048)
    relay.stop()                             # which waits until its last line is read
    stop = [l for l in relay.lines["stderr"] if "relay stopped:" in l]
    assert stop and "stun_answered=1" in stop[0] and "stun_malformed=1" in stop[0], stop


# ---------------------------------------------------------- our client, coturn


@pytest.fixture
def coturn(procs):
    """turnserver on loopback (LAB-FACTS' command line, free ports): .port, .alt."""
    require("turnserver")
    for _ in range(5):
        port = free_port_pair()
        alt = port + 1
        proc = Proc(["turnserver", "-n", "-S", "--no-cli", "--no-tls", "--no-dtls",
                     "--log-file", "stdout", "--simple-log", "-L", "127.0.0.1", "-L", "127.0.0.2"]
                    + (["-L", "::1"] if has_ipv6_loopback() else [])
                    + ["-p", str(port), "--alt-listening-port", str(alt)], stdin=False)
        procs.append(proc)
        if _answers(("127.0.0.1", port)):
            proc.port, proc.alt = port, alt
            return proc
        proc.stop()
    pytest.fail("turnserver did not answer STUN:\n" + proc.transcript())


def _answers(server, wait=5.0):
    deadline = time.monotonic() + wait
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.2)
        while time.monotonic() < deadline:
            s.sendto(bytes(stun.binding_request()), server)
            try:
                s.recvfrom(2048)
                return True
            except OSError:
                pass
    return False


@BOTH
def test_interop_our_client_gets_mapped_address_from_coturn(coturn, host):
    if host == "::1" and not has_ipv6_loopback():
        pytest.skip("no IPv6 loopback here")
    family = socket.AF_INET6 if host == "::1" else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.bind((host, 0))
        check = natcheck.NatCheck((host, coturn.port))
        run_check(check, sock)
        local = stun.canonical_address(sock.getsockname())
    obs = check.obs
    assert obs.error is None, coturn.transcript()
    assert obs.public == obs.public_alt == local
    other_ip = "127.0.0.2" if host == "127.0.0.1" else "::1"
    assert obs.other == (other_ip, coturn.alt)
    assert obs.filtered is False


def test_interop_nat_check_command_against_coturn(coturn):
    result = subprocess.run([sys.executable, PEER, "--nat-check", "--relay", "127.0.0.1:%d" % coturn.port,
                             "--bind", "127.0.0.1:0"], cwd=ROOT, env=env(), stdin=subprocess.DEVNULL,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result
    assert "relay: 127.0.0.1:%d, alternate 127.0.0.2:%d\n" % (coturn.port, coturn.alt) in result.stdout
    assert ("mapping: endpoint-independent (no NAT: the relay sees our own address and port)\n"
            in result.stdout)
